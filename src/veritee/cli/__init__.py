"""The ``veritee`` command: thin commands over the public API.

Every command returns an exit code from :data:`EXIT_CODES`; errors are printed as one line
on stderr, never as a traceback (``VERITEE_DEBUG=1`` shows the traceback too).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from veritee.collateral.kds import KdsClient
from veritee.errors import (
    CollateralError,
    ConfigError,
    FormatError,
    KeyStoreError,
    PlatformError,
    PolicyRejected,
    SealingError,
    VerificationError,
    VeriteeError,
)
from veritee.trust.intel import IntelCollateral
from veritee.trust.roots import TrustAnchors
from veritee.trust.sevsnp import AmdCertificates

__all__ = ["EXIT_CODES", "main"]

# Modules that add subcommands (``register(add)`` where ``add(name, help, fn)`` returns the
# subparser). Keeping the list here keeps ``--help`` complete without importing on demand.
_COMMAND_MODULES: tuple[str, ...] = (
    "veritee.cli._sealing",
    "veritee.cli._keys",
    "veritee.cli._cert",
    "veritee.cli._isolation",
    "veritee.cli._service",
    "veritee.cli._admin",
    "veritee.cli._tpm",
)

AddCommand = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_BAD_INPUT = 3
EXIT_VERIFICATION_FAILED = 4
EXIT_COLLATERAL_UNAVAILABLE = 5
EXIT_POLICY_REJECTED = 6
EXIT_PLATFORM = 7
EXIT_SEALING = 8
EXIT_KEYSTORE = 9

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success (verified / accepted)",
    EXIT_INTERNAL: "internal error (a bug: please report it)",
    EXIT_USAGE: "usage error (bad command line)",
    EXIT_BAD_INPUT: "bad input (malformed evidence, certificate, policy or settings file)",
    EXIT_VERIFICATION_FAILED: "verification failed (signature, chain, revocation or binding)",
    EXIT_COLLATERAL_UNAVAILABLE: "collateral unavailable (certificates or CRL missing)",
    EXIT_POLICY_REJECTED: "policy rejected the verified evidence",
    EXIT_PLATFORM: "platform error (TEE device absent or request refused)",
    EXIT_SEALING: "sealed data cannot be opened",
    EXIT_KEYSTORE: "key store refused the request (unknown key, wrong usage, locked)",
}

# One table from error family to exit code; order matters (subclasses first).
_ERROR_EXITS: tuple[tuple[type[VeriteeError], int], ...] = (
    (PolicyRejected, EXIT_POLICY_REJECTED),
    (VerificationError, EXIT_VERIFICATION_FAILED),
    (FormatError, EXIT_BAD_INPUT),
    (ConfigError, EXIT_BAD_INPUT),
    (CollateralError, EXIT_COLLATERAL_UNAVAILABLE),
    (PlatformError, EXIT_PLATFORM),
    (SealingError, EXIT_SEALING),
    (KeyStoreError, EXIT_KEYSTORE),
)


def exit_code_for(error: VeriteeError) -> int:
    """The exit code for an error family."""
    for cls, code in _ERROR_EXITS:
        if isinstance(error, cls):
            return code
    return EXIT_INTERNAL


class _Parser(argparse.ArgumentParser):
    """argparse that exits with EXIT_USAGE (2), as documented."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _parse_time(text: str) -> datetime:
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--at: got {text!r}, want an ISO 8601 time such as 2025-01-01T00:00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


# Input kinds whose size limit is not the default (veritee._decode.LIMITS, docs/limits.md).
_KINDS = {"evidence": "evidence", "quote": "evidence", "event log": "event log",
          "IMA log": "IMA log", "CRL": "collateral"}


def _read(path: str, what: str) -> bytes:
    """The file at ``path``: stat'ed and size-checked before reading (the limit of its kind,
    ``VERITEE_MAX_<KIND>`` overrides), never more than the limit read. An unreadable path is
    a ConfigError, a file over the limit a FormatError: both exit 3."""
    from veritee._decode import limit_for, read_bounded

    limit = limit_for(_KINDS.get(what, "certificate"), dict(os.environ))
    try:
        return read_bounded(path, limit=limit, what=what)
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None


def _read_evidence(path: str) -> bytes:
    """Evidence bytes: binary as-is; hex text (whitespace, ``0x``/``0X`` allowed) is decoded,
    base64 text when it decodes to an Intel quote, and JSON carrying a ``quote`` member."""
    from veritee._decode import decode_binary_text, decode_hex

    data = _read(path, "evidence")
    text = data.strip()
    if text[:1] == b"{" and b'"quote"' in text:  # a quote wrapped in JSON (hex or base64)
        from veritee.collateral.intel import decode_quote

        return decode_quote(data, source=path)
    if not text or not _TEXTUAL.issuperset(text[:4096]):
        return data
    try:
        return decode_hex(text, structure=path, field="evidence")
    except FormatError:
        pass
    try:
        decoded = decode_binary_text(text, structure=path, field="evidence")
    except FormatError:
        return data
    from veritee.attest import is_intel_quote

    return decoded if is_intel_quote(decoded) else data


_TEXTUAL = frozenset(b"0123456789abcdefABCDEFghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ"
                     b"+/-_=\r\n\t ")


def _emit(args: argparse.Namespace, text: str, obj: object) -> None:
    if getattr(args, "format", "text") == "json":
        print(json.dumps(obj, indent=2))
    else:
        print(text)


# -- commands ---------------------------------------------------------------------------------
def _plain(value: object) -> object:
    """A parsed structure as JSON-friendly values (bytes as hex, enums by name)."""
    import dataclasses
    import enum

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.repr}
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def _lines(obj: object, indent: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, dict | list) and value:
                out.append(f"{indent}{key}:")
                out += _lines(value, indent + "  ")
            else:
                out.append(f"{indent}{key}: {value}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out.append(f"{indent}[{i}]")
            out += _lines(value, indent + "  ")
    return out


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


def _cmd_demo(args: argparse.Namespace) -> int:
    from veritee.cli._demo import run_demo

    return run_demo(product=args.product, key_size=args.key_size, tee=args.tee)


def _cmd_emulate(args: argparse.Namespace) -> int:
    from veritee.cli._emulate import export_roots, run_emulate

    if getattr(args, "action", None) == "export-roots":
        return export_roots(state=args.state, out=Path(args.out))
    return run_emulate(out=Path(args.out), product=args.product,
                       report_data=args.report_data, key_size=args.key_size,
                       debug=args.debug_guest, tee=args.tee)


def _add_collateral_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("report", help="the evidence: an SEV-SNP report (binary or hex text), an "
                   "Azure HCL report, a configfs-tsm report, an Intel TDX/SGX quote, an AWS "
                   "Nitro document, or an Arm PSA/CCA token")
    p.add_argument("--certs", metavar="PATH", action="append",
                   help="collateral: a directory or file (repeatable) with the AMD ARK, ASK/ASVK "
                   "and VCEK/VLEK (PEM or DER, any names), or one directory of Intel TCB Info / "
                   "QE Identity / CRLs / chains")
    p.add_argument("--cert-table", metavar="FILE", help="an extended report's certificate "
                   "table (configfs-tsm auxblob)")
    p.add_argument("--crl", metavar="FILE", help="AMD CRL for the product (DER or PEM)")
    p.add_argument("--require-crl", action="store_true",
                   help="fail unless a valid CRL was checked")
    p.add_argument("--at", type=_parse_time, metavar="TIME",
                   help="verify as of this ISO 8601 time (default: now)")
    p.add_argument("--trust-root", action="append", metavar="PEM", help="trust this ARK "
                   "instead of the pinned AMD roots (e.g. an emulated machine's ark.pem)")
    p.add_argument("--key", metavar="FILE", help="the device key (IAK/CPAK) that signs an "
                   "Arm PSA or CCA token (PEM, DER or JWK)")
    p.add_argument("--fetch", action="store_true", help="fetch what the collateral lacks "
                   "(VCEK, chain, CRL) from AMD's KDS; fetched certificates are verified as any")
    p.add_argument("--kds-url", default=None, metavar="URL", help="KDS base URL (a mirror)")
    p.add_argument("--kds-cache", type=Path, metavar="DIR", help="cache directory for KDS "
                   "responses (default ~/.cache/veritee/kds)")
    p.add_argument("--format", choices=("text", "json"), default="text")


def _fetcher(args: argparse.Namespace) -> KdsClient | None:
    if not getattr(args, "fetch", False):
        return None
    from veritee.collateral.kds import DEFAULT_KDS

    cache = args.kds_cache or Path.home() / ".cache" / "veritee" / "kds"
    return KdsClient(args.kds_url or DEFAULT_KDS, cache_dir=cache,
                     now=lambda: args.at or datetime.now(UTC))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    epilog = "exit codes:\n" + "\n".join(f"  {k}  {v}" for k, v in EXIT_CODES.items())
    parser = _Parser(prog="veritee", description="Confidential computing toolkit: attest, "
                     "verify and appraise TEE evidence on real and emulated platforms.",
                     epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    from veritee import __version__

    parser.add_argument("--version", action="version", version=f"veritee {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, help_: str, fn: Callable[[argparse.Namespace], int]
            ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(fn=fn)
        return p

    p = add("show", "decode every field of a report for a human", _cmd_show)
    p.add_argument("report")
    p.add_argument("--format", choices=("text", "json"), default="text")

    _add_collateral_args(add("verify", "verify a report's signature and certificate chain",
                             _cmd_verify))
    p = add("appraise", "verify a report and appraise it against a policy", _cmd_appraise)
    _add_collateral_args(p)
    p.add_argument("--policy", metavar="FILE", help="policy file (TOML or JSON); default: the "
                   "secure default policy")

    p = add("demo", "run the whole attestation flow on an emulated SEV-SNP machine", _cmd_demo)
    p.add_argument("--product", choices=("Milan", "Genoa", "Turin"), default="Milan")
    p.add_argument("--key-size", type=int, default=4096, choices=(2048, 3072, 4096),
                   help="RSA size of the emulated AMD roots")
    p.add_argument("--tee", choices=("snp", "tdx", "sgx", "tpm"), default="snp",
                   help="the emulated TEE to run the flow on")

    p = add("emulate", "launch an emulated SEV-SNP guest and write its report and "
            "certificates to a directory", _cmd_emulate)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--product", choices=("Milan", "Genoa", "Turin"), default="Milan")
    p.add_argument("--report-data", metavar="HEX", default="",
                   help="up to 64 bytes of report data, hex")
    p.add_argument("--debug-guest", action="store_true", help="launch with the DEBUG policy bit")
    p.add_argument("--key-size", type=int, default=4096, choices=(2048, 3072, 4096))
    p.add_argument("--tee", choices=("snp", "tdx", "sgx", "tpm"), default="snp",
                   help="the emulated TEE (tdx/sgx: a quote and Intel collateral)")
    importlib.import_module("veritee.cli._emulate").add_export_roots_args(p)

    # Feature modules register their own commands: each has ``register(add)``.
    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code: int = args.fn(args)
        return code
    except VeriteeError as exc:
        if os.environ.get("VERITEE_DEBUG"):
            traceback.print_exc()
        print(f"veritee: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`veritee ... | head`): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # a bug: say so plainly, with the traceback on request
        if os.environ.get("VERITEE_DEBUG"):
            traceback.print_exc()
        print(f"veritee: internal error: {type(exc).__name__}: {exc} "
              "(set VERITEE_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
