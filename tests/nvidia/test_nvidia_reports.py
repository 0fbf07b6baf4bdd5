"""NVIDIA GPU / NVSwitch reports: every manifest sample gets its expected verdict, and
forgeries (one change each) are refused with one stable code."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes

from veritee.collateral.nvidia import load_cert_chain, load_nvat_evidence, load_report, load_root
from veritee.errors import VerificationError
from veritee.findings import Outcome
from veritee.formats.nvidia import GpuReport
from veritee.trust.nvidia import (
    NVIDIA_DEVICE_IDENTITY_CA_SHA256,
    VerifiedGpuReport,
    parse_cert_chain,
    verify_gpu_report,
)

from _evidence import evidence_available
from _nvidia_support import (
    CHAIN_NEGATIVES,
    CHAIN_NEGATIVES_DIR,
    GOOD,
    NOW,
    NVIDIA,
    ROOT_PEM,
    ReportCase,
    cases_if_available,
    make_fake_pki,
)

needs_evidence = pytest.mark.skipif(not evidence_available(), reason="shared evidence absent")


def _verify(case: ReportCase, **kw: object) -> VerifiedGpuReport:
    report, pem = case.load()
    return verify_gpu_report(report, pem, now=NOW, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", cases_if_available(), ids=lambda c: c.id)
def test_every_sample_gets_the_manifest_verdict(case: ReportCase) -> None:
    if case.error is None:
        v = _verify(case, nonce=case.nonce())
        assert v.leaf.subject == v.chain[0].subject
        assert v.root_fingerprint == NVIDIA_DEVICE_IDENTITY_CA_SHA256
        codes = {f.code: f.outcome for f in v.checks}
        assert codes["nvidia.signature"] is Outcome.PASS
        assert codes["nvidia.nonce"] is Outcome.PASS
        # OCSP (the cert-hold sample's only fault) cannot be checked offline: said, not hidden.
        assert codes["nvidia.chain.revocation"] is Outcome.SKIP
    else:
        with pytest.raises(VerificationError) as err:
            _verify(case, nonce=case.nonce())
        assert err.value.code == case.error


@needs_evidence
def test_pinned_fingerprint_is_the_root_file() -> None:
    fingerprint = load_root(ROOT_PEM).fingerprint(hashes.SHA256()).hex()
    assert fingerprint == NVIDIA_DEVICE_IDENTITY_CA_SHA256


@needs_evidence
@pytest.mark.parametrize("name", sorted(CHAIN_NEGATIVES))
def test_trustee_chain_negatives_are_refused(name: str) -> None:
    report, _ = GOOD.load()
    chain = parse_cert_chain((CHAIN_NEGATIVES_DIR / name).read_bytes())
    root = load_root(ROOT_PEM)
    # Also with the real root offered as a certificate (appended when the chain stops short).
    for roots in (None, [root]):
        with pytest.raises(VerificationError) as err:
            verify_gpu_report(report, chain, now=NOW, trusted_roots=roots)
        assert err.value.code == CHAIN_NEGATIVES[name]


@needs_evidence
def test_cert_hold_sample_passes_offline_with_revocation_marked_not_checked() -> None:
    ev = load_nvat_evidence(NVIDIA / "h100-sdk-evidence-json-570.86.10-cert-hold"
                            / "hopper_evidence_cert_hold.json")[0]
    v = verify_gpu_report(ev.report, ev.certificate_pem, now=NOW, nonce=ev.nonce)
    (rev,) = [f for f in v.checks if f.code == "nvidia.chain.revocation"]
    assert rev.outcome is Outcome.SKIP and "OCSP" in rev.message


@needs_evidence
def test_collateral_loaders_read_the_sample_files() -> None:
    report = load_report(GOOD.dir / GOOD.report)
    chain = load_cert_chain(GOOD.dir / str(GOOD.chain))
    assert len(chain) == 5
    assert verify_gpu_report(report, chain, now=NOW).report == report


# --- forgeries against the real report ------------------------------------------------------

@needs_evidence
def test_flipped_measurement_byte_breaks_the_signature() -> None:
    report, pem = GOOD.load()
    raw = bytearray(report.to_bytes())
    raw[37 + 8 + 4 + 3 + 48 + 4 + 3] ^= 1  # inside block 2's value (block 1 is 55 bytes)
    forged = GpuReport.from_bytes(bytes(raw))
    assert forged.response.blocks[1].value != report.response.blocks[1].value
    with pytest.raises(VerificationError) as err:
        verify_gpu_report(forged, pem, now=NOW)
    assert err.value.code == "nvidia.signature"


@needs_evidence
@pytest.mark.parametrize("where", [0, 47, 48, 95])
def test_flipped_signature_byte_is_refused(where: int) -> None:
    report, pem = GOOD.load()
    sig = bytearray(report.response.signature)
    sig[where] ^= 0x80
    forged = dataclasses.replace(report, response=dataclasses.replace(report.response,
                                                                      signature=bytes(sig)))
    with pytest.raises(VerificationError) as err:
        verify_gpu_report(forged, pem, now=NOW)
    assert err.value.code == "nvidia.signature"


@needs_evidence
def test_flipped_request_nonce_breaks_the_signature() -> None:
    report, pem = GOOD.load()
    req = dataclasses.replace(report.request, nonce=bytes(32))
    with pytest.raises(VerificationError) as err:
        verify_gpu_report(dataclasses.replace(report, request=req), pem, now=NOW)
    assert err.value.code == "nvidia.signature"


@needs_evidence
def test_wrong_nonce_is_refused() -> None:
    # attestation-sdk create_bad_nonce_scenario: an all-zero nonce -> GpuEvidenceNonceMismatch.
    case = next(c for c in cases_if_available() if c.sample_id.endswith("535.86.09-rims"))
    with pytest.raises(VerificationError) as err:
        _verify(case, nonce=bytes(32))
    assert err.value.code == "nvidia.nonce.mismatch"


@needs_evidence
def test_nonce_of_wrong_length_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        _verify(GOOD, nonce=bytes(48))


@needs_evidence
def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        verify_gpu_report(*GOOD.load(), now=datetime(2026, 1, 1))


@needs_evidence
def test_chain_with_a_self_made_root_is_refused() -> None:
    report, _ = GOOD.load()
    pki = make_fake_pki(fwid=report.opaque.fwid)
    forged = pki.sign(report)
    with pytest.raises(VerificationError) as err:
        verify_gpu_report(forged, pki.chain, now=NOW)
    assert err.value.code == "nvidia.chain.root_untrusted"
    # The same chain verifies only when its root is trusted explicitly: the path is real.
    v = verify_gpu_report(forged, pki.chain, now=NOW, trusted_roots=[pki.root])
    assert v.leaf == pki.leaf


@needs_evidence
def test_real_chain_does_not_verify_a_report_signed_by_another_key() -> None:
    report, pem = GOOD.load()
    forged = make_fake_pki(fwid=report.opaque.fwid).sign(report)
    with pytest.raises(VerificationError) as err:
        verify_gpu_report(forged, pem, now=NOW)
    assert err.value.code == "nvidia.signature"


@needs_evidence
def test_expired_chain_is_refused() -> None:
    report, _ = GOOD.load()
    pki = make_fake_pki(fwid=report.opaque.fwid, not_after=datetime(2025, 1, 1, tzinfo=UTC))
    forged = pki.sign(report)
    with pytest.raises(VerificationError) as err:
        verify_gpu_report(forged, pki.chain, now=NOW, trusted_roots=[pki.root])
    assert err.value.code == "nvidia.chain.expired"
    verify_gpu_report(forged, pki.chain, now=datetime(2024, 6, 1, tzinfo=UTC),
                      trusted_roots=[pki.root])


@needs_evidence
def test_real_chain_before_its_not_before_is_refused() -> None:
    with pytest.raises(VerificationError) as err:
        verify_gpu_report(*GOOD.load(), now=datetime(2020, 1, 1, tzinfo=UTC))
    assert err.value.code == "nvidia.chain.not_yet_valid"


@needs_evidence
def test_fwid_not_in_leaf_is_refused() -> None:
    report, _ = GOOD.load()
    pki = make_fake_pki(fwid=bytes(48))
    with pytest.raises(VerificationError) as err:
        verify_gpu_report(pki.sign(report), pki.chain, now=NOW, trusted_roots=[pki.root])
    assert err.value.code == "nvidia.fwid.mismatch"


@needs_evidence
def test_leaf_without_tcb_info_is_refused() -> None:
    report, _ = GOOD.load()
    pki = make_fake_pki(fwid=None)
    with pytest.raises(VerificationError) as err:
        verify_gpu_report(pki.sign(report), pki.chain, now=NOW, trusted_roots=[pki.root])
    assert err.value.code == "nvidia.fwid.missing"


@needs_evidence
def test_chain_in_wrong_order_is_refused() -> None:
    report, pem = GOOD.load()
    chain = parse_cert_chain(pem)
    swapped = (chain[1], chain[0], *chain[2:])
    with pytest.raises(VerificationError) as err:
        verify_gpu_report(report, swapped, now=NOW)
    assert err.value.code == "nvidia.chain.signature"


@needs_evidence
def test_chain_without_root_is_completed_only_from_a_trusted_certificate() -> None:
    report, pem = GOOD.load()
    chain = parse_cert_chain(pem)[:-1]
    with pytest.raises(VerificationError) as err:
        verify_gpu_report(report, chain, now=NOW)
    assert err.value.code == "nvidia.chain.root_untrusted"
    v = verify_gpu_report(report, chain, now=NOW, trusted_roots=[load_root(ROOT_PEM)])
    assert len(v.chain) == 5
