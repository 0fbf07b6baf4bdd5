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
from veritee.trust.roots import TrustAnchors
from veritee.trust.sevsnp import AmdCertificates

__all__ = ["EXIT_CODES", "main"]

# Modules that add subcommands (``register(add)`` where ``add(name, help, fn)`` returns the
# subparser). Keeping the list here keeps ``--help`` complete without importing on demand.
_COMMAND_MODULES: tuple[str, ...] = (
    "veritee.cli._verify",
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


def _emit(args: argparse.Namespace, text: str, obj: object) -> None:
    if getattr(args, "format", "text") == "json":
        print(json.dumps(obj, indent=2))
    else:
        print(text)


# -- commands ---------------------------------------------------------------------------------
def _load_collateral(args: argparse.Namespace) -> tuple[AmdCertificates | None, TrustAnchors]:
    """SEV-SNP collateral and anchors from ``--certs``/``--crl``/``--trust-root`` for
    ``cert inspect`` (SNP-only until RA-TLS goes through the scheme registry; show/verify/
    appraise use the registry, see cli._verify)."""
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
