"""Helpers for the TPM tests: load the real quote samples, and mint quotes with real keys.

Real samples are read from ../shared/evidence (MANIFEST-2.json; never copied). The fake TPM
signs with a freshly generated key so the production verification path runs unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from veritee.collateral.tpm import (
    QuoteEvidence,
    load_go_attestation_dump,
    load_go_tpm_tools_attestation,
    load_spki_public_key,
    load_trustee_azure_vtpm,
    load_trustee_tpm,
)
from veritee.formats.azure import HclReport
from veritee.formats.eventlog import EventLog
from veritee.formats.tpm import (
    TPM_GENERATED_VALUE,
    HashAlg,
    PcrSelection,
    SigAlg,
    StructureTag,
    TpmsAttest,
    TpmsClockInfo,
    TpmsQuoteInfo,
    TpmtSignature,
    parse_tpm2b_public,
    parse_tpm2tools_pcrs,
)
from veritee.trust.tpm import AkPublic

from _evidence import EVIDENCE_DIR, evidence_available

MANIFEST2 = "MANIFEST-2.json"


def samples(*families: str) -> list[dict[str, Any]]:
    """MANIFEST-2 samples of the given families ([] when the corpus is absent)."""
    if not evidence_available() or not (EVIDENCE_DIR / MANIFEST2).is_file():
        return []
    data = json.loads((EVIDENCE_DIR / MANIFEST2).read_text())
    return [s for s in data["samples"] if s["family"] in families]


def sample_dir(sample: dict[str, Any]) -> Path:
    """The sample's directory under the evidence corpus."""
    return Path(EVIDENCE_DIR / sample["dir"])


def file_of(sample: dict[str, Any], role: str) -> Path:
    """The file for ``role`` (the manifest may append a note after the name)."""
    return sample_dir(sample) / str(sample["files"][role]).split(" ")[0]


@dataclass(frozen=True)
class QuoteCase:
    """One quote ready for verify_quote / verify_azure_vtpm_quote."""

    name: str
    attest: bytes
    signature: TpmtSignature
    ak: AkPublic | None
    nonce: bytes
    pcrs: dict[HashAlg, dict[int, bytes]] | None
    event_log: EventLog | None = None
    hcl: HclReport | None = None


def _with(ev: QuoteEvidence, name: str, nonce: bytes, **kw: Any) -> QuoteCase:
    log = EventLog.from_bytes(ev.event_log) if ev.event_log else None
    hcl = HclReport.from_bytes(ev.hcl_report) if ev.hcl_report else None
    case = QuoteCase(name, ev.attest, ev.signature, ev.ak, nonce, ev.pcrs, log, hcl)
    return replace(case, **kw)


def quote_cases(sample: dict[str, Any]) -> list[QuoteCase]:
    """Every quote a MANIFEST-2 sample carries, with the nonce the manifest says is expected.

    Samples that carry no quote (EK certificates only) give [].
    """
    sid, files, kf = sample["id"], sample["files"], sample.get("known_fields", {})
    if sid == "keylime-checkquote-rsa2048-sha256":
        return [QuoteCase(
            sid, file_of(sample, "quote_tpms_attest").read_bytes(),
            TpmtSignature.from_bytes(file_of(sample, "signature_tpmt_signature").read_bytes()),
            load_spki_public_key(file_of(sample, "ak_public_key").read_bytes()),
            file_of(sample, "nonce").read_bytes().strip(),
            parse_tpm2tools_pcrs(file_of(sample, "pcr_values").read_bytes()))]
    if sid == "keylime-tpm2tools-quote-files":
        return [QuoteCase(
            sid, file_of(sample, "quote_tpms_attest").read_bytes(),
            TpmtSignature.from_bytes(file_of(sample, "signature_tpmt_signature").read_bytes()),
            parse_tpm2b_public(file_of(sample, "ak_tpm2b_public").read_bytes()),
            bytes.fromhex(kf["extraData_hex"]),
            parse_tpm2tools_pcrs(file_of(sample, "pcr_values").read_bytes()))]
    if sid == "trustee-tpm-verifier-fixture":
        ev = load_trustee_tpm(file_of(sample, "evidence_json").read_text())
        return [_with(ev, sid, bytes.fromhex(kf["extraData"]))]
    if "dump_json" in files:
        ev = load_go_attestation_dump(file_of(sample, "dump_json").read_text())
        assert ev.nonce is not None
        return [_with(ev, sid, ev.nonce)]
    if "attestation_protobuf" in files:
        evs = load_go_tpm_tools_attestation(file_of(sample, "attestation_protobuf").read_bytes())
        return [_with(ev, f"{sid}[{next(iter(ev.pcrs)).name}]",
                      bytes.fromhex(kf.get("nonce_hex", ""))) for ev in evs]
    if sample["family"] == "azure-vtpm":
        nonce = bytes.fromhex(kf["quote"]["extraData"])
        out: list[QuoteCase] = []
        for role in ("evidence_json", "evidence_json_v0", "evidence_json_v1"):
            if role in files:
                ev = load_trustee_azure_vtpm(file_of(sample, role).read_text())
                out.append(_with(ev, f"{sid}[{role}]", nonce))
        if "tpm_quote_json" in files:
            ev = load_trustee_azure_vtpm(file_of(sample, "tpm_quote_json").read_text())
            hcl = HclReport.from_bytes(file_of(sample, "hcl_report").read_bytes())
            out.append(_with(ev, f"{sid}[tpm_quote_json]", nonce, hcl=hcl))
        return out
    return []


def azure_snp_manifest1_samples() -> list[dict[str, Any]]:
    """MANIFEST.json azure-snp samples whose trustee evidence JSON carries a vTPM quote."""
    if not evidence_available():
        return []
    data = json.loads((EVIDENCE_DIR / "MANIFEST.json").read_text())
    out = []
    for s in data["samples"]:
        path = s["files"].get("evidence_json")
        if s["dir"].startswith("azure-snp/") and path:
            doc = json.loads((EVIDENCE_DIR / s["dir"] / path).read_text())
            if "tpm_quote" in doc or "quote" in doc:
                out.append(s)
    return out


# -- a fake TPM that signs for real ---------------------------------------------------------
def pcr_values(bank: HashAlg, indices: list[int], seed: int = 1) -> dict[int, bytes]:
    """Distinct deterministic PCR values."""
    return {i: bank.digest(bytes([seed, i])) for i in indices}


def make_attest(pcrs: dict[HashAlg, dict[int, bytes]], nonce: bytes, sig_hash: HashAlg,
                *, magic: int = TPM_GENERATED_VALUE,
                tag: StructureTag = StructureTag.ATTEST_QUOTE) -> TpmsAttest:
    """A TPMS_ATTEST quoting ``pcrs`` (selection order: bank order given, index ascending)."""
    sel = tuple(PcrSelection(bank, tuple(sorted(vals))) for bank, vals in pcrs.items())
    digest = sig_hash.digest(b"".join(pcrs[s.hash_alg][i] for s in sel for i in s.pcrs))
    return TpmsAttest(magic, tag, b"\x00\x0b" + bytes(32), nonce,
                      TpmsClockInfo(123456, 3, 1, True), 0x2019102300163636,
                      TpmsQuoteInfo(sel, digest))


def sign(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, data: bytes,
         alg: SigAlg = SigAlg.RSASSA, hash_alg: HashAlg = HashAlg.SHA256) -> TpmtSignature:
    """TPM2_Sign-like: a TPMT_SIGNATURE over ``data``."""
    h: hashes.HashAlgorithm = {HashAlg.SHA1: hashes.SHA1(), HashAlg.SHA256: hashes.SHA256(),
                               HashAlg.SHA384: hashes.SHA384()}[hash_alg]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(h)))
        size = (key.curve.key_size + 7) // 8
        return TpmtSignature(SigAlg.ECDSA, hash_alg, r=r.to_bytes(size, "big"),
                             s=s.to_bytes(size, "big"))
    pad: padding.AsymmetricPadding = (
        padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
        if alg is SigAlg.RSAPSS else padding.PKCS1v15())
    return TpmtSignature(alg, hash_alg, signature=key.sign(data, pad, h))


# -- synthetic event logs -------------------------------------------------------------------
EV_NO_ACTION = 0x00000003
EV_EFI_ACTION = 0x80000007
EV_EFI_HCRTM_EVENT = 0x80000010
EV_SEPARATOR = 0x00000004


def build_log(events: list[tuple[int, bytes] | tuple[int, int, bytes]], *,
              banks: tuple[HashAlg, ...] = (HashAlg.SHA1, HashAlg.SHA256),
              locality: int | None = None) -> bytes:
    """A crypto-agile log (PFP 10.2.2): the Spec ID event, an optional StartupLocality event
    (PFP 10.4.5.3), then one TCG_PCR_EVENT2 per ``(pcr, data)`` / ``(pcr, type, data)`` whose
    digests are each bank's hash of the data (default type EV_SEPARATOR-like 0x0d EV_IPL)."""
    import struct

    from veritee.formats.eventlog import SPEC_ID_SIGNATURE, STARTUP_LOCALITY_SIGNATURE

    algs = b"".join(struct.pack("<HH", b, b.digest_size) for b in banks)
    spec = SPEC_ID_SIGNATURE + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(banks)) + algs + b"\0"
    out = [struct.pack("<II", 0, EV_NO_ACTION) + bytes(20) + struct.pack("<I", len(spec)) + spec]

    def event2(pcr: int, etype: int, data: bytes, zero: bool = False) -> bytes:
        digests = b"".join(struct.pack("<H", b) + (bytes(b.digest_size) if zero else
                                                   b.digest(data)) for b in banks)
        return (struct.pack("<III", pcr, etype, len(banks)) + digests
                + struct.pack("<I", len(data)) + data)

    if locality is not None:
        out.append(event2(0, EV_NO_ACTION, STARTUP_LOCALITY_SIGNATURE + bytes([locality]),
                          zero=True))
    for item in events:
        pcr, etype, data = (item[0], 0x0D, item[1]) if len(item) == 2 else item  # type: ignore[misc]
        out.append(event2(pcr, etype, data))
    return b"".join(out)


def replay_by_hand(bank: HashAlg, digests: list[bytes], start: bytes | None = None) -> bytes:
    """PCR := H(PCR || d) for each digest, from ``start`` (default zero)."""
    pcr = start if start is not None else bytes(bank.digest_size)
    for d in digests:
        pcr = bank.digest(pcr + d)
    return pcr
