"""``veritee show``, ``verify`` and ``appraise``: the SEV-SNP/Intel implementations, moved
verbatim out of ``veritee.cli`` so that importing the CLI (and ``--help``) stays light.

They are being rewritten on the scheme registry (``veritee.cli._verify``); until then the
registration in :func:`veritee.cli.build_parser` reaches them lazily.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from veritee.cli import (
    EXIT_OK,
    EXIT_POLICY_REJECTED,
    _emit,
    _lines,
    _plain,
    _read,
    _read_evidence,
)
from veritee.collateral.kds import KdsClient
from veritee.errors import ConfigError, PolicyRejected
from veritee.trust.intel import IntelCollateral
from veritee.trust.roots import TrustAnchors
from veritee.trust.sevsnp import AmdCertificates

__all__ = ["_cmd_appraise", "_cmd_show", "_cmd_verify", "_load_collateral"]


def _cmd_show(args: argparse.Namespace) -> int:
    from veritee.attest import is_intel_quote, parse_evidence

    data = _read_evidence(args.report)
    if is_intel_quote(data):
        from veritee.formats.intel import Quote

        quote = Quote.from_bytes(data, allow_nonzero_trailer=True)
        doc = {"format": f"intel-{'tdx' if quote.is_tdx else 'sgx'}-quote", "quote":
               _plain(quote)}
        _emit(args, "\n".join(_lines(doc)), doc)
        return EXIT_OK
    ev = parse_evidence(data)
    fields = ev.report.to_dict()
    obj = {"format": ev.format, "report": fields}
    if ev.hcl is not None:
        obj["hcl"] = {"report_type": str(ev.hcl.report_type),
                      "runtime_claims": ev.hcl.runtime_claims()}
    lines = [f"format: {ev.format}"]
    for key, value in fields.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k}: {v}" for k, v in value.items()]
        else:
            lines.append(f"{key}: {value}")
    _emit(args, "\n".join(lines), obj)
    return EXIT_OK


def _load_collateral(args: argparse.Namespace) -> tuple[AmdCertificates | None, TrustAnchors]:
    from veritee.collateral.amd import load_crl, load_paths

    certs: AmdCertificates | None = load_paths(*args.certs) if args.certs else None
    if args.crl:
        crl = load_crl(Path(args.crl))  # collateral.amd.load_crl: size-checked there
        base = certs or AmdCertificates(ark=None, ask=None, vek=None, crl=None)
        certs = AmdCertificates(ark=base.ark, ask=base.ask, vek=base.vek, crl=crl)
    anchors = TrustAnchors.amd()
    if args.trust_root:
        from veritee.crypto.amd_certs import load_certificates

        roots = [c for path in args.trust_root
                 for c in load_certificates(_read(path, "trust root"), source=path)]
        anchors = TrustAnchors.from_certificates(*roots)
    return certs, anchors


def _intel_collateral(args: argparse.Namespace
                      ) -> tuple[IntelCollateral | None, list[x509.Certificate] | None]:
    from veritee.collateral.intel import load_directory
    from veritee.trust.intel import load_certificates

    if args.certs and len(args.certs) > 1:
        raise ConfigError("Intel collateral: give one --certs directory")
    collateral = load_directory(Path(args.certs[0])) if args.certs else None
    roots = ([c for path in args.trust_root
              for c in load_certificates(_read(path, "trust root"))]
             if args.trust_root else None)
    return collateral, roots


def _cmd_verify_intel(args: argparse.Namespace, data: bytes) -> int:
    from veritee.collateral.intel import load_crl
    from veritee.trust.intel import verify_quote

    collateral, roots = _intel_collateral(args)
    if args.crl:
        extra = load_crl(_read(args.crl, "CRL"))
        base = collateral or IntelCollateral()
        import dataclasses

        collateral = dataclasses.replace(base, pck_crl=extra)
    verified = verify_quote(data, collateral, now=args.at or datetime.now(UTC),
                            trusted_roots=roots)
    status = verified.tcb.status.value if verified.tcb and verified.tcb.status else (
        "not evaluated (no TCB Info)" if verified.tcb is None else "no matching TCB level")
    lines = [f"verified Intel {verified.tee.upper()} quote v{verified.quote.header.version}",
             *[f"  {c}" for c in verified.checks], f"TCB status: {status}", "verdict: VERIFIED"]
    _emit(args, "\n".join(lines), {"verdict": "verified", "tee": verified.tee,
                                   "tcb_status": status,
                                   "checks": [c.to_dict() for c in verified.checks]})
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from veritee.attest import is_intel_quote, verify_only

    data = _read_evidence(args.report)
    if is_intel_quote(data):
        return _cmd_verify_intel(args, data)
    from veritee.cli._tokens import identify, verify_token

    kind = identify(data)
    if kind is not None:
        return verify_token(args, data, kind, appraise=False,
                            emit=lambda text, obj: _emit(args, text, obj))
    certs, anchors = _load_collateral(args)
    cert_table = _read(args.cert_table, "certificate table") if args.cert_table else None
    verified = verify_only(data, collateral=certs,
                           anchors=anchors, now=args.at, require_crl=args.require_crl,
                           cert_table=cert_table, fetcher=_fetcher(args))
    lines = [f"verified SEV-SNP report ({verified.product}, signed by "
             f"{verified.vek.kind.name})"]
    lines += [f"  {c}" for c in verified.checks]
    revocation = "checked against the ARK's CRL" if verified.crl_checked else (
        "NOT checked (no CRL: pass --crl FILE, a CRL in --certs, or --fetch --require-crl;"
        " the default appraisal policy refuses an unchecked chain)")
    lines += [f"revocation: {revocation}", "verdict: VERIFIED"]
    _emit(args, "\n".join(lines), {"verdict": "verified", "product": str(verified.product),
                                   "signing_key": verified.vek.kind.name,
                                   "revocation_checked": verified.crl_checked,
                                   "checks": [c.to_dict() for c in verified.checks]})
    return EXIT_OK


def _cmd_appraise(args: argparse.Namespace) -> int:
    from veritee.attest import is_intel_quote, verify_evidence, verify_intel_evidence
    from veritee.policy.sevsnp import SevSnpPolicy, load_policy

    data = _read_evidence(args.report)
    from veritee.cli._tokens import identify, verify_token

    kind = identify(data)
    if kind is not None:
        return verify_token(args, data, kind, appraise=True,
                            emit=lambda text, obj: _emit(args, text, obj))
    if is_intel_quote(data):
        if args.policy:
            raise ConfigError("--policy files are SEV-SNP policies; Intel quotes are appraised "
                              "with the default TDX/SGX policy (use the Python API for others)")
        collateral, roots = _intel_collateral(args)
        try:
            appraisal = verify_intel_evidence(data, collateral=collateral, now=args.at,
                                              trusted_roots=roots)
        except PolicyRejected as rejected:
            _emit(args, rejected.appraisal.to_text(), rejected.appraisal.to_dict())
            return EXIT_POLICY_REJECTED
        _emit(args, appraisal.to_text(), appraisal.to_dict())
        return EXIT_OK
    certs, anchors = _load_collateral(args)
    policy = load_policy(Path(args.policy)) if args.policy else SevSnpPolicy()
    cert_table = _read(args.cert_table, "certificate table") if args.cert_table else None
    try:
        appraisal = verify_evidence(data, policy=policy,
                                    collateral=certs, anchors=anchors,
                                    now=args.at, require_crl=args.require_crl,
                                    cert_table=cert_table, fetcher=_fetcher(args))
    except PolicyRejected as rejected:
        _emit(args, rejected.appraisal.to_text(), rejected.appraisal.to_dict())
        return EXIT_POLICY_REJECTED
    _emit(args, appraisal.to_text(), appraisal.to_dict())
    return EXIT_OK


def _fetcher(args: argparse.Namespace) -> KdsClient | None:
    if not getattr(args, "fetch", False):
        return None
    from veritee.collateral.kds import DEFAULT_KDS

    cache = args.kds_cache or Path.home() / ".cache" / "veritee" / "kds"
    return KdsClient(args.kds_url or DEFAULT_KDS, cache_dir=cache,
                     now=lambda: args.at or datetime.now(UTC))
