"""One Platform interface: the emulated SEV-SNP guest, TDX TD and SGX enclave answer the same
calls, and their evidence verifies through the production ``trust`` code."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from veritee.attest import verify_only
from veritee.errors import PlatformError
from veritee.formats.intel import Quote
from veritee.formats.sevsnp import AttestationReport
from veritee.platform.adapters import SgxPlatform, SnpPlatform, TdxPlatform
from veritee.platform.base import Platform
from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.sgx import InsecureEmulatedSgxMachine
from veritee.platform.emulated.snp import EmulatedAmdVendor, InsecureEmulatedSnpMachine
from veritee.platform.emulated.tdx import InsecureEmulatedTdxMachine
from veritee.trust.intel import verify_quote

NOW = datetime(2026, 6, 1, tzinfo=UTC)
IMAGE = bytes(range(256)) * 16 * 2


@pytest.fixture(scope="module")
def intel() -> EmulatedIntelVendor:
    return EmulatedIntelVendor.generate(now=NOW)


@pytest.fixture(scope="module")
def platforms(milan_vendor: EmulatedAmdVendor,
              intel: EmulatedIntelVendor) -> dict[str, Platform]:
    snp = InsecureEmulatedSnpMachine(milan_vendor, clock=NOW)
    cpu = EmulatedIntelCpu(intel, now=NOW)
    author = rsa.generate_private_key(public_exponent=3, key_size=3072)
    return {
        "sevsnp": SnpPlatform(snp.launch(simple_guest_image(IMAGE)), counters=snp, trng=snp),
        "tdx": TdxPlatform(InsecureEmulatedTdxMachine(intel, cpu=cpu).launch(IMAGE)),
        "sgx": SgxPlatform(InsecureEmulatedSgxMachine(intel, cpu=cpu).load(IMAGE, author)),
    }


POLICIES = {"sevsnp": ("measurement", "signer"), "tdx": ("mrtd", "mrowner"),
            "sgx": ("mrenclave", "mrsigner")}


@pytest.mark.parametrize("tee", sorted(POLICIES))
def test_evidence_carries_the_report_data_and_verifies(
        tee: str, platforms: dict[str, Platform], milan_vendor: EmulatedAmdVendor,
        intel: EmulatedIntelVendor) -> None:
    p = platforms[tee]
    assert isinstance(p, Platform) and p.name == tee
    data = bytes(range(64))
    ev = p.evidence(data)
    assert ev.tee == tee
    if tee == "sevsnp":
        assert AttestationReport.from_bytes(ev.data).report_data == data
        verify_only(ev.data, cert_table=ev.endorsements, anchors=milan_vendor.anchors(),
                    now=NOW)
    else:
        assert ev.endorsements == b"" and Quote.from_bytes(ev.data).body.report_data == data
        verify_quote(ev.data, intel.collateral(tee.upper(), NOW), now=NOW,
                     trusted_roots=[intel.root])
    with pytest.raises(PlatformError):
        p.evidence(b"short")


@pytest.mark.parametrize("tee", sorted(POLICIES))
def test_derived_keys_are_stable_and_separated(tee: str,
                                               platforms: dict[str, Platform]) -> None:
    p = platforms[tee]
    a, b = POLICIES[tee]
    if tee == "sevsnp":
        b = a  # "signer" needs an ID block; covered by the sealing tests
    k = p.derive_key(a, b"ctx")
    assert len(k) == 32 and p.derive_key(a, b"ctx") == k
    assert p.derive_key(a, b"other") != k
    if b != a:
        assert p.derive_key(b, b"ctx") != k
    with pytest.raises(PlatformError):
        p.derive_key("no-such-policy")


@pytest.mark.parametrize("tee", sorted(POLICIES))
def test_randomness_and_counters(tee: str, platforms: dict[str, Platform]) -> None:
    p = platforms[tee]
    assert len(p.random(48)) == 48 and p.random(16) != p.random(16)
    # Only the SEV-SNP secure processor keeps monotonic counters; TDX 1.x and SGX have none.
    assert (p.counters is not None) is (tee == "sevsnp")


def test_tpm_answers_the_same_calls(tmp_path: object) -> None:
    """The swtpm TPM through the same interface; its evidence through ``trust.tpm``."""
    from pathlib import Path

    from veritee.formats.tpm import TpmtSignature
    from veritee.platform.adapters import TpmAdapter
    from veritee.platform.tpm import InsecureSwtpmPlatform, swtpm_unavailable_reason
    from veritee.trust.tpm import verify_quote as verify_tpm_quote

    reason = swtpm_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    assert isinstance(tmp_path, Path)
    with InsecureSwtpmPlatform.open(tmp_path / "tpm") as tpm:
        p = TpmAdapter(tpm)
        assert isinstance(p, Platform) and p.name == "tpm"
        ev = p.evidence(bytes(range(64)))
        # Trustee's tpm evidence JSON: one container with the quote, AK and PCRs.
        from veritee.collateral.tpm import load_trustee_tpm

        q = load_trustee_tpm(ev.data)
        assert q.ak is not None
        verify_tpm_quote(q.attest, TpmtSignature.from_bytes(q.signature.to_bytes()), q.ak,
                         nonce=bytes(range(64)), pcrs=q.pcrs)
        k = p.derive_key("pcr", b"ctx")
        assert k == p.derive_key("pcr", b"ctx") != p.derive_key("tpm", b"ctx")
        assert len(p.random(16)) == 16 and p.counters is tpm
        with pytest.raises(PlatformError):
            p.derive_key("mrenclave")
        with pytest.raises(PlatformError):
            p.extended_report(bytes(64))
