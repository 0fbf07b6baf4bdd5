"""The fake Intel signs for real: the production verifier and policy run unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from veritee.attest import verify_intel_evidence
from veritee.errors import PolicyRejected, VerificationError
from veritee.formats.intel import TcbStatus
from veritee.policy.intel import SgxPolicy, TdxPolicy
from veritee.testing.intel import FakeIntel
from veritee.trust.intel import verify_quote

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def intel() -> FakeIntel:
    return FakeIntel.generate(NOW)


def test_td_quote_with_chosen_fields_verifies(intel: FakeIntel) -> None:
    q = intel.td_quote(mr_td=b"\x07" * 48, version=5)
    v = verify_quote(q, intel.collateral("TDX"), now=NOW, trusted_roots=intel.roots)
    assert v.quote.body.mr_td == b"\x07" * 48  # type: ignore[union-attr]
    assert v.tcb is not None and v.tcb.status is TcbStatus.UP_TO_DATE


def test_sgx_quote_with_chosen_fields_verifies(intel: FakeIntel) -> None:
    q = intel.sgx_quote(mr_enclave=b"\x01" * 32, isv_svn=4)
    ok = verify_intel_evidence(q, collateral=intel.collateral("SGX"), now=NOW,
                               trusted_roots=intel.roots,
                               policy=SgxPolicy(mrenclave={b"\x01" * 32}, min_isv_svn=4))
    assert ok.accepted


def test_debug_td_body_is_refused_by_policy(intel: FakeIntel) -> None:
    q = intel.td_quote(td_attributes=bytes([1]) + bytes(7))
    with pytest.raises(PolicyRejected) as e:
        verify_intel_evidence(q, collateral=intel.collateral("TDX"), now=NOW,
                              trusted_roots=intel.roots, policy=TdxPolicy())
    assert e.value.appraisal.codes() == ["tdx.debug"]


def test_fake_root_is_not_trusted_by_default(intel: FakeIntel) -> None:
    with pytest.raises(VerificationError, match="root"):
        verify_quote(intel.td_quote(), intel.collateral("TDX"), now=NOW)
