"""Azure's HCL-wrapped SEV-SNP reports through the front door, at the manifest's times.

The HCL report's runtime claims are bound to the hardware report (REPORT_DATA = hash of the
variable data); the front door checks that binding as a verification step, then the usual
VCEK signature and AMD chain.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from veritee.attest import parse_evidence, verify_evidence, verify_only
from veritee.collateral.amd import load_files
from veritee.errors import PolicyRejected, VerificationError
from veritee.policy.sevsnp import SevSnpPolicy

from _evidence import EVIDENCE_DIR, manifest_samples, sample_time

SAMPLES = manifest_samples("azure-snp/")


def _files(sample: dict[str, Any]) -> tuple[bytes, list[Path]]:
    d = EVIDENCE_DIR / sample["dir"]
    files = sample["files"]
    evidence = (d / files["hcl_report"]).read_bytes()
    certs = [d / files[k] for k in ("vcek", "vcek_chain", "certs") if k in files]
    product = "genoa" if sample["product"].startswith("Genoa") else "milan"
    if not any(k in files for k in ("vcek_chain", "certs")):
        certs.append(EVIDENCE_DIR / "roots" / f"amd_{product}_cert_chain_vcek.pem")
    return evidence, certs


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s["expected"] == "valid"],
                         ids=lambda s: s["id"])
def test_valid_azure_sample_verifies(sample: dict[str, Any]) -> None:
    evidence, certs = _files(sample)
    verified = verify_only(evidence, collateral=load_files(*certs), now=sample_time(sample))
    codes = [c.code for c in verified.checks]
    assert "azure.hcl.report_data_binding" in codes
    assert "sevsnp.report.signature" in codes
    ev = parse_evidence(evidence)
    assert ev.format == "azure-hcl+sevsnp"
    assert verified.report == ev.report


_REFUSED_BY_DEFAULT = {"azure-snp-milan-v2-trustee-hcl": [
    "sevsnp.tcb.bootloader.below_minimum", "sevsnp.tcb.snp.below_minimum",
    "sevsnp.tcb.microcode.below_minimum", "sevsnp.committed_tcb.below_minimum",
    "sevsnp.launch_tcb.below_minimum", "sevsnp.firmware.provisional",
    "sevsnp.revocation.unchecked"]}


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s["expected"] == "valid"],
                         ids=lambda s: s["id"])
def test_azure_sample_appraised_under_measurement_policy(sample: dict[str, Any]) -> None:
    evidence, certs = _files(sample)
    report = parse_evidence(evidence).report
    # The secure defaults (issue 18) refuse every sample for a stated reason: none ships the
    # ARK's CRL, and the 2023 trustee HCL report runs 1.52 firmware below the shipped Milan
    # floor with microcode committed below current (provisional).
    good = SevSnpPolicy(measurements=frozenset({report.measurement}))
    with pytest.raises(PolicyRejected) as refused:
        verify_evidence(evidence, policy=good, collateral=load_files(*certs),
                        now=sample_time(sample))
    assert refused.value.appraisal.codes() == _REFUSED_BY_DEFAULT.get(
        sample["id"], ["sevsnp.revocation.unchecked"])
    lax: dict[str, Any] = {"allow_unchecked_revocation": True}
    if sample["id"] == "azure-snp-milan-v2-trustee-hcl":
        lax |= {"min_tcb": None, "require_committed_equals_current": False}
    good = SevSnpPolicy(measurements=frozenset({report.measurement}), **lax)
    appraisal = verify_evidence(evidence, policy=good, collateral=load_files(*certs),
                                now=sample_time(sample))
    assert appraisal.accepted
    other = SevSnpPolicy(measurements=frozenset({bytes(48)}), **lax)
    with pytest.raises(PolicyRejected) as exc:
        verify_evidence(evidence, policy=other, collateral=load_files(*certs),
                        now=sample_time(sample))
    assert exc.value.appraisal.codes() == ["sevsnp.measurement.mismatch"]


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s["expected"] != "valid"],
                         ids=lambda s: s["id"])
def test_invalid_azure_sample_rejected(sample: dict[str, Any]) -> None:
    """kinvolk's certs.pem holds another chip's VCEK: the hwID binding fails."""
    evidence, certs = _files(sample)
    with pytest.raises(VerificationError) as exc:
        verify_only(evidence, collateral=load_files(*certs), now=sample_time(sample))
    assert exc.value.code in {"sevsnp.vek.hwid_mismatch", "sevsnp.report.signature"}


@pytest.mark.parametrize("sample", [s for s in SAMPLES if s["expected"] == "valid"][:1],
                         ids=lambda s: s["id"])
def test_tampered_runtime_claims_break_the_binding(sample: dict[str, Any]) -> None:
    evidence, certs = _files(sample)
    tampered = bytearray(evidence)
    start = 0x4D4  # variable data (JSON runtime claims)
    idx = tampered.index(b'"', start)
    tampered[idx + 1] ^= 0x01
    with pytest.raises(VerificationError) as exc:
        verify_only(bytes(tampered), collateral=load_files(*certs), now=sample_time(sample))
    assert exc.value.code == "azure.hcl.report_data_binding"
