"""NVIDIA samples of ../shared/evidence/MANIFEST-2.json (never copied here) and a fake device
PKI that signs for real, so forged reports run the production verification path.

``REPORT_CASES`` lists every attestation report of every ``family: nvidia`` sample with the
manifest's expected verdict (``None`` = valid, else the stable error code veritee raises) and
the nonce the source's test uses. The manifest pins no time for device chains (they run to
9999-12-31); :data:`NOW` is a fixed time inside every chain's validity.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from veritee.formats.nvidia import GpuReport, NvatEvidence, parse_nvat_evidence

from _evidence import EVIDENCE_DIR, evidence_available

MANIFEST = "MANIFEST-2.json"
NVIDIA = EVIDENCE_DIR / "nvidia"
ROOT_PEM = EVIDENCE_DIR / "roots" / "nvidia-device-identity-ca.pem"
NOW = datetime(2026, 6, 1, tzinfo=UTC)


@cache
def manifest_sample(sample_id: str) -> dict[str, Any]:
    """One sample of the manifest by id."""
    data = json.loads((EVIDENCE_DIR / MANIFEST).read_text())
    for s in data["samples"]:
        if s["id"] == sample_id:
            return dict(s)
    raise KeyError(sample_id)


@dataclass(frozen=True)
class ReportCase:
    """One report file (hex text, or an nvat JSON) with its chain and expected verdict."""

    sample_id: str
    report: str
    chain: str | None  # None: the chain is inside the nvat JSON
    error: str | None  # None: valid
    nonce_from: str  # known_fields key holding the nonce the source test uses

    @property
    def id(self) -> str:
        return f"{self.sample_id}/{self.report}"

    @property
    def dir(self) -> Path:
        return NVIDIA / self.sample_id

    def nonce(self) -> bytes:
        kf = manifest_sample(self.sample_id)["known_fields"]
        value = kf[self.nonce_from] if self.nonce_from != "request" else kf["request"]["nonce"]
        return bytes.fromhex(value)[:32]  # trustee truncates 48-byte REPORT_DATA to 32

    def load(self) -> tuple[GpuReport, bytes]:
        """The parsed report and the PEM chain."""
        if self.chain is None:
            (ev,) = parse_nvat_evidence((self.dir / self.report).read_text())
            return ev.report, ev.certificate_pem
        return (GpuReport.from_hex((self.dir / self.report).read_text()),
                (self.dir / self.chain).read_bytes())

    def nvat(self) -> NvatEvidence:
        """The nvat JSON entry (JSON cases only)."""
        (ev,) = parse_nvat_evidence((self.dir / self.report).read_text())
        return ev


REPORT_CASES = (
    ReportCase("h100-nvtrust-sample-550.90.07", "hopperAttestationReport.txt",
               "hopperCertChain.txt", None, "nonce"),
    ReportCase("h100-sdk-unit-580.159.03", "hopperAttestationReport.txt",
               "hopperCertChain.txt", None, "request"),
    ReportCase("h100-sdk-sample-535.86.09-rims", "hopperAttestationReport.txt",
               "hopperCertChain.txt", None, "nonce"),
    ReportCase("h100-sdk-570.124.03-expired-driver-rim", "hopperAttestationReportExpired.txt",
               "hopperCertChainExpired.txt", None, "nonce"),
    ReportCase("h100-sdk-invalid-signature", "hopperAttestationReportInvalidSignature.txt",
               "hopperCertChainExpired.txt", "nvidia.signature", "request"),
    ReportCase("h100-sdk-evidence-json-570.86.10-cert-hold", "hopper_evidence_cert_hold.json",
               None, None, "json_nonce"),
    ReportCase("b200-sdk-sample-575.32", "blackwellAttestationReport.txt",
               "blackwellCertChain.txt", None, "request"),
    ReportCase("b200-veraison-evidence-json", "blackwell-evidence.json", None, None,
               "json_nonce"),
    ReportCase("nvswitch-ls10-sdk", "switchAttestationReport.txt", "switchCertChain.txt", None,
               "request"),
    ReportCase("nvswitch-ls10-sdk", "switchAttestationReportInvalidSignature.txt",
               "switchCertChain.txt", "nvidia.signature", "request"),
    ReportCase("h100-trustee-coco-580.95.05", "hopper_coco_report1.txt",
               "hopper_coco_certs1.txt", None, "expected_report_data_48B"),
)

CHAIN_NEGATIVES = {  # trustee cert_chain.rs test_verify_certificate_chain_for_hopper
    "hopper_cert_chain_case2.txt": "nvidia.chain.length",  # one certificate
    "hopper_cert_chain_case3.txt": "nvidia.chain.signature",  # issuer does not match
    "hopper_cert_chain_case4.txt": "nvidia.chain.constraints",  # signing cert is the BROM CA
}
CHAIN_NEGATIVES_DIR = NVIDIA / "h100-cert-chain-negatives-trustee"
GOOD = REPORT_CASES[0]


def cases_if_available() -> tuple[ReportCase, ...]:
    """``REPORT_CASES`` when the corpus is present, else ``()`` (parametrize then skips)."""
    return REPORT_CASES if evidence_available() else ()


# --- a fake device PKI that signs for real -------------------------------------------------

TCB_INFO_OID = x509.ObjectIdentifier("2.23.133.5.4.1")


@dataclass(frozen=True)
class FakeDevicePki:
    """A self-made root -> leaf P-384 chain and the leaf key."""

    root: x509.Certificate
    leaf: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return (self.leaf, self.root)

    def sign(self, report: GpuReport) -> GpuReport:
        """Re-sign ``report`` with the fake leaf key (raw r || s)."""
        der = self.leaf_key.sign(report.signed_data, ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        sig = r.to_bytes(48, "big") + s.to_bytes(48, "big")
        return dataclasses.replace(report, response=dataclasses.replace(report.response,
                                                                         signature=sig))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_fake_pki(*, fwid: bytes | None, not_after: datetime | None = None) -> FakeDevicePki:
    """A root CA and a leaf whose TcbInfo carries ``fwid`` (``04 30 <fwid>``)."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = not_after or start + timedelta(days=3650 * 3)
    root_key = ec.generate_private_key(ec.SECP384R1())
    leaf_key = ec.generate_private_key(ec.SECP384R1())
    root = (x509.CertificateBuilder().subject_name(_name("Fake NVIDIA Device Identity CA"))
            .issuer_name(_name("Fake NVIDIA Device Identity CA"))
            .public_key(root_key.public_key()).serial_number(1)
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(root_key, hashes.SHA384()))
    builder = (x509.CertificateBuilder().subject_name(_name("Fake GSP FMC LF"))
               .issuer_name(root.subject).public_key(leaf_key.public_key()).serial_number(2)
               .not_valid_before(start).not_valid_after(end))
    if fwid is not None:
        inner = b"\x04" + bytes([len(fwid)]) + fwid
        builder = builder.add_extension(
            x509.UnrecognizedExtension(TCB_INFO_OID, b"\x30" + bytes([len(inner)]) + inner),
            critical=False)
    leaf = builder.sign(root_key, hashes.SHA384())
    return FakeDevicePki(root=root, leaf=leaf, leaf_key=leaf_key)
