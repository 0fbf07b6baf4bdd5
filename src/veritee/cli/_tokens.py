"""``veritee verify``/``appraise`` for COSE-signed evidence: AWS Nitro documents, Arm PSA and
CCA tokens. ``identify`` tells them apart; each goes through its own verifier and policy.

Nitro documents chain to the pinned AWS Nitro root G1 (``--trust-root`` replaces it); PSA and
CCA tokens are signed by a device key the verifier already knows (the IAK or CPAK), given with
``--key`` (PEM, DER or JWK).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from veritee.errors import ConfigError, FormatError
from veritee.findings import Finding
from veritee.policy import Appraisal

__all__ = ["identify", "verify_token"]

_COSE_SIGN1_TAG = b"\xd2"  # CBOR tag 18
_CCA_TAGS = (b"\xd9\x01\x8f", b"\xd9\x03\x8b")  # tag 399 (and the legacy 907)


def identify(data: bytes) -> str | None:
    """``"cca"``, ``"cose"`` (Nitro or PSA), ``"nvidia"`` (an SPDM 1.1 GET_MEASUREMENTS
    transcript) or ``"nvat"`` (NVIDIA's evidence JSON) when ``data`` starts like one."""
    if data[:3] in _CCA_TAGS:
        return "cca"
    if data[:2] == b"\x11\xe0":  # SPDM 1.1, GET_MEASUREMENTS
        return "nvidia"
    if data.lstrip()[:1] == b"[" and b'"evidence"' in data and b'"arch"' in data:
        return "nvat"
    if data[:1] == _COSE_SIGN1_TAG or data[:1] == b"\x84":
        return "cose"
    return None


def _key(args: argparse.Namespace, what: str) -> Any:
    from veritee.collateral.arm import load_public_key

    if not getattr(args, "key", None):
        raise ConfigError(f"{what} tokens are signed by a device key: give it with --key FILE "
                          "(PEM, DER or JWK)")
    return load_public_key(args.key)


def verify_token(args: argparse.Namespace, data: bytes, kind: str, *, appraise: bool,
                 emit: Callable[[str, object], None]) -> int:
    """Verify (and with ``appraise``, appraise) a Nitro/PSA/CCA token; return the exit code."""
    now = args.at or datetime.now(UTC)
    verified: Any
    judge: Callable[[], Appraisal]
    if kind in ("nvidia", "nvat"):
        return _verify_nvidia(args, data, kind, now, appraise=appraise, emit=emit)
    if kind == "cca":
        from veritee.policy.arm import CcaPolicy
        from veritee.policy.arm import appraise as appraise_arm
        from veritee.trust.cca import verify_cca_token

        verified = verify_cca_token(data, cpak_public_key=_key(args, "CCA"))
        name, judge = "Arm CCA token", lambda: appraise_arm(verified, CcaPolicy())
    else:
        from veritee.formats.nitro import NitroDocument

        try:
            NitroDocument.from_bytes(data)
            is_nitro = True
        except FormatError:
            is_nitro = False
        if is_nitro:
            from veritee.crypto.amd_certs import load_certificates
            from veritee.policy.nitro import NitroPolicy
            from veritee.policy.nitro import appraise as appraise_nitro
            from veritee.trust.nitro import verify_document

            roots = None
            if args.trust_root:
                from cryptography import x509

                from veritee.cli import _read

                roots = [x509.load_der_x509_certificate(c.der) for path in args.trust_root
                         for c in load_certificates(_read(path, "trust root"), source=path)]
            verified = verify_document(data, now=now, trusted_roots=roots)
            name, judge = "AWS Nitro attestation document", lambda: appraise_nitro(
                verified, NitroPolicy())
        else:
            from veritee.policy.arm import PsaPolicy
            from veritee.policy.arm import appraise as appraise_arm
            from veritee.trust.psa import verify_psa_token

            verified = verify_psa_token(data, iak_public_key=_key(args, "PSA"))
            name, judge = "Arm PSA token", lambda: appraise_arm(verified, PsaPolicy())
    checks: tuple[Finding, ...] = verified.checks
    if not appraise:
        lines = [f"verified {name}", *[f"  {c}" for c in checks], "verdict: VERIFIED"]
        emit("\n".join(lines), {"verdict": "verified", "format": name,
                                "checks": [c.to_dict() for c in checks]})
        return 0
    if args.policy:
        raise ConfigError(f"--policy files are SEV-SNP policies; {name}s are appraised with "
                          "the default policy here (use the Python API for others)")
    appraisal: Appraisal = judge()
    emit(appraisal.to_text(), appraisal.to_dict())
    return 0 if appraisal.accepted else 6  # EXIT_POLICY_REJECTED


def _verify_nvidia(args: argparse.Namespace, data: bytes, kind: str, now: datetime, *,
                   appraise: bool, emit: Callable[[str, object], None]) -> int:
    """NVIDIA GPU/NVSwitch reports: the device chain comes with ``--certs FILE`` (PEM) for a
    bare transcript, or inside nvat's evidence JSON."""
    from veritee.collateral.nvidia import load_cert_chain
    from veritee.formats.nvidia import GpuReport, parse_nvat_evidence
    from veritee.policy.nvidia import GpuPolicy
    from veritee.policy.nvidia import appraise as appraise_gpu
    from veritee.trust.nvidia import parse_cert_chain, verify_gpu_report

    items: list[tuple[GpuReport, Any, bytes | None]] = []
    if kind == "nvat":
        for ev in parse_nvat_evidence(data):
            items.append((ev.report, parse_cert_chain(ev.certificate_pem), ev.nonce))
    else:
        if not args.certs:
            raise ConfigError("an NVIDIA report needs its device certificate chain: "
                              "--certs chain.pem")
        items.append((GpuReport.from_bytes(data), load_cert_chain(args.certs[0]), None))
    code = 0
    for report, chain, nonce in items:
        verified = verify_gpu_report(report, chain, now=now, nonce=nonce)
        if appraise:
            appraisal = appraise_gpu(verified, GpuPolicy(nonce=nonce))
            emit(appraisal.to_text(), appraisal.to_dict())
            code = code or (0 if appraisal.accepted else 6)
        else:
            lines = ["verified NVIDIA SPDM measurement report", *[f"  {c}" for c in
                                                                  verified.checks],
                     "verdict: VERIFIED"]
            emit("\n".join(lines), {"verdict": "verified", "format": "nvidia-spdm",
                                    "checks": [c.to_dict() for c in verified.checks]})
    return code
