"""A TPM attester's evidence as a CoCo guest sends it (``tee: tpm``), through the KBS shape
conversion and the registered ``tpm`` scheme, bound by the protocol's rule.

swtpm produces Trustee-tpm-JSON evidence whose qualifying data (``TPMS_ATTEST.extraData``) is
the runtime-data digest regularized to the scheme's binding size: what ``/kbs/v0`` hands the
broker as the raw expected binding. Skipped without swtpm, as the TPM scheme's tests are.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from veritee import attest
from veritee.attest import EvidencePart
from veritee.errors import PolicyRejected
from veritee.formats.coco import canonical_json, primary_evidence, regularize, runtime_data
from veritee.policy import Appraisal
from veritee.policy.tpm import TpmPolicy
from veritee.schemes import Anchors, get
from veritee.trust.tpm import TpmAnchors

swtpm = pytest.importorskip("veritee.platform.tpm")
REASON = swtpm.swtpm_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

KEY = {"alg": "ECDH-ES+A256KW", "crv": "P-256", "kty": "EC", "x": "AAAA", "y": "BBBB"}


@pytest.fixture(scope="module")
def tpm() -> Iterator[Any]:
    state = Path(tempfile.mkdtemp(prefix="veritee-kbs-tpm-"))
    platform = swtpm.InsecureSwtpmPlatform.open(state)
    try:
        yield platform
    finally:
        platform.close()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def anchors(tpm: Any) -> Anchors:
    registered = swtpm.register_ak(tpm, roots=[tpm.ca_root()],
                                   intermediates=tpm.ca_intermediates(),
                                   now=datetime.now(UTC))
    return Anchors({"tpm": TpmAnchors(registered_aks=(registered,))})


def _binding(nonce: str) -> bytes:
    digest = hashlib.sha384(canonical_json(runtime_data(nonce, KEY, ""))).digest()
    return regularize(digest, get("tpm").binding_size)


def test_tpm_evidence_in_the_kbs_shape_carries_the_runtime_data_digest(
        tpm: Any, anchors: Anchors) -> None:
    from veritee.platform.adapters import TpmAdapter

    binding = _binding("bm9uY2Ux")
    doc = json.loads(TpmAdapter(tpm).evidence(binding).data)
    part = primary_evidence("tpm", doc)  # the kbs-types tee name -> the veritee scheme
    assert part.scheme == "tpm"
    a = attest.verify(EvidencePart(part.data, part.scheme, part.attached),
                      policy=TpmPolicy(), anchors=anchors, expected_binding=binding)
    assert isinstance(a, Appraisal) and a.accepted, a.to_text()
    # Another session's nonce (or /v1's rule) is not what the quote carries.
    with pytest.raises(PolicyRejected) as info:
        attest.verify(EvidencePart(part.data, part.scheme), policy=TpmPolicy(),
                      anchors=anchors, expected_binding=_binding("bm9uY2Uy"))
    assert info.value.appraisal.codes() == ["tpm.binding.mismatch"]
