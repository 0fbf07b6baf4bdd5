"""The ``veritee`` command: thin commands over the public API.

Every command returns an exit code from :data:`EXIT_CODES`; errors are printed as one line
on stderr, never as a traceback (``VERITEE_DEBUG=1`` shows the traceback too). With
``--format json`` the error also goes to stdout, as ``{"error": {...}}``.

Start-up is kept short (issue 14): this module and the registration modules in
:data:`_COMMAND_MODULES` import only argparse and ``veritee.errors``; every command imports
what it needs (httpx, ``cryptography``, trust and platform modules) when it runs, and
:func:`main` builds only the subparser of the command being run
(``tests/arch/test_cli_startup.py`` pins both).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

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

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (start-up)
if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

__all__ = ["EXIT_CODES", "main"]

# Modules that add subcommands (``register(add)`` where ``add(name, help, fn)`` returns the
# subparser). Keeping the list here keeps ``--help`` complete without importing on demand.
# Each must stay light at import (argparse and veritee.cli only): it is imported by every
# ``veritee`` run; the commands import their libraries when called.
_COMMAND_MODULES: tuple[str, ...] = (
    "veritee.cli._verify_commands",
    "veritee.cli",  # demo, emulate
    "veritee.cli._sealing_commands",
    "veritee.cli._keys_commands",
    "veritee.cli._cert_commands",
    "veritee.cli._isolation",
    "veritee.cli._service_commands",
    "veritee.cli._admin_commands",
    "veritee.cli._tpm_commands",
)

CommandFn = Callable[[argparse.Namespace], int]
AddCommand = Callable[..., argparse.ArgumentParser]

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
    EXIT_BAD_INPUT: "bad input (malformed evidence, certificate, policy or settings file; "
                    "a name the service does not know)",
    EXIT_VERIFICATION_FAILED: "verification failed (signature, chain, revocation or binding)",
    EXIT_COLLATERAL_UNAVAILABLE: "collateral unavailable (certificates or CRL missing, a "
                                 "service or AMD's/Intel's servers unreachable)",
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


class ServiceError(VeriteeError):
    """A service (the key broker, its admin API) refused a request or could not be reached.

    ``status`` is the HTTP status (0: no answer), ``code`` the problem's stable code. The exit
    code follows the status (:func:`service_exit`), never "verification failed" for a 404.
    """

    def __init__(self, status: int, code: str, detail: str) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}" + (f" (HTTP {status})" if status else ""))


def service_exit(status: int) -> int:
    """The exit code for a service's answer: 0 (no answer) and 5xx are "unavailable" (5),
    401/403 a refusal (4), anything else in 4xx (404 not found, 400, 409, 413) bad input (3)."""
    if status == 0 or status >= 500:
        return EXIT_COLLATERAL_UNAVAILABLE
    if status in (401, 403):
        return EXIT_VERIFICATION_FAILED
    return EXIT_BAD_INPUT


def exit_code_for(error: VeriteeError) -> int:
    """The exit code for an error family."""
    status = _service_status(error)
    if status is not None:
        return service_exit(status)
    for cls, code in _ERROR_EXITS:
        if isinstance(error, cls):
            return code
    return EXIT_INTERNAL


def _service_status(error: BaseException) -> int | None:
    """The HTTP status of a service's refusal (``ServiceError``, and the client's
    ``ServiceRefused``, a VerificationError by type but not a verification failure here)."""
    if isinstance(error, ServiceError):
        return error.status
    client = sys.modules.get("veritee.client")  # loaded if it raised: never imported here
    refused = getattr(client, "ServiceRefused", None)
    if refused is not None and isinstance(error, refused):
        return int(error.status)
    return None


def _network_failure(error: BaseException) -> str | None:
    """A one-line reason when ``error`` is a network failure (httpx's transport errors, a
    refused or reset connection, a DNS failure, a timeout), else None. httpx is looked up,
    not imported: if it is not loaded, it did not raise."""
    httpx = sys.modules.get("httpx")
    transport = getattr(httpx, "TransportError", None)
    if transport is not None and isinstance(error, transport):
        try:
            where = f"{error.request.url}: "
        except RuntimeError:  # raised outside a request
            where = ""
        reason = str(error) or type(error).__name__
        return f"cannot reach {where}{reason}"
    if isinstance(error, ConnectionError | TimeoutError):
        return f"cannot reach the service: {error}"
    return None


_WIDTH: list[int] = []


def _help_width() -> int:
    """The width argparse would use (``shutil.get_terminal_size``'s rule, less 2), found
    without importing shutil, which pulls in bz2 and lzma: argparse asks on every option."""
    if not _WIDTH:
        try:
            columns = int(os.environ.get("COLUMNS", "0"))
        except ValueError:
            columns = 0
        if columns <= 0:
            try:
                columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
            except (AttributeError, ValueError, OSError):
                columns = 0
        _WIDTH.append((columns or 80) - 2)
    return _WIDTH[0]


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, sized without importing shutil."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _help_width() if width is None else width)


class _RawFormatter(_Formatter, argparse.RawDescriptionHelpFormatter):
    """The same, keeping the description's (and the exit-code epilog's) line breaks."""


class _Parser(argparse.ArgumentParser):
    """argparse that exits with EXIT_USAGE (2), as documented."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(self, message)


class _UsageError(Exception):
    """A bad command line, reported by :func:`_parse` (which may first try the old order)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message

    def report(self) -> int:
        self.parser.print_usage(sys.stderr)
        print(f"{self.parser.prog}: error: {self.message}", file=sys.stderr)
        return EXIT_USAGE


class _Lazy:
    """A command function named ``"module:function"``, imported when the command runs, so
    registering it imports nothing."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __call__(self, args: argparse.Namespace) -> int:
        module, _, name = self.target.partition(":")
        fn: CommandFn = getattr(importlib.import_module(module), name)
        return fn(args)

    def __repr__(self) -> str:
        return f"lazy({self.target!r})"


def lazy(target: str) -> CommandFn:
    """The command ``"module:function"``, imported only when it runs."""
    return _Lazy(target)


class _Unbuilt:
    """Stands in for the subparser of a command that is not being run: every call that
    would add options is ignored (``main`` builds only the command it runs)."""

    _actions: tuple[object, ...] = ()

    def __getattr__(self, name: str) -> Callable[..., _Unbuilt]:
        return self._ignore

    def _ignore(self, *args: object, **kwargs: object) -> _Unbuilt:
        return self


def _parse_time(text: str) -> datetime:
    from datetime import UTC, datetime

    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--at: got {text!r}, want an ISO 8601 time such as 2025-01-01T00:00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def add_format_arg(p: argparse.ArgumentParser, *, what: str = "the result") -> None:
    """``--format text|json``: JSON on stdout, also on failure (with an ``error`` member)."""
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help=f"print {what} as text (default) or as JSON on stdout (on failure "
                   "too: {\"error\": {...}})")


# One spelling of key types across commands (``keys create --type``, ``cert ... --key-type``).
KEY_TYPES: tuple[str, ...] = ("ec-p256", "ec-p384", "ed25519", "rsa-3072", "rsa-4096")
_KEY_TYPE_ALIASES = {"p256": "ec-p256", "p384": "ec-p384", "rsa3072": "rsa-3072",
                     "rsa4096": "rsa-4096"}


def key_type_arg(text: str) -> str:
    """A key type as given on the command line, in its one spelling; the old ``cert``
    spellings (``p256``, ``rsa3072``, ...) are accepted with a deprecation note."""
    canonical = _KEY_TYPE_ALIASES.get(text)
    if canonical is None:
        return text
    print(f"veritee: note: key type {text!r} is deprecated; use {canonical!r}",
          file=sys.stderr)
    return canonical


def clip(text: str, limit: int = 200) -> str:
    """``text`` (a server's answer, say) cut to at most about ``limit`` characters, at a word
    boundary and marked with "...", never mid-word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return (text[:cut] if cut > limit // 2 else text[:limit]) + " ..."


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
        import json

        print(json.dumps(obj, indent=2))
    else:
        print(text)


# -- commands ---------------------------------------------------------------------------------
def _cmd_demo(args: argparse.Namespace) -> int:
    from veritee.cli._demo import run_demo

    if args.format == "json":
        from veritee.cli._demo import run_demo_json

        return run_demo_json(product=args.product, key_size=args.key_size, tee=args.tee)
    return run_demo(product=args.product, key_size=args.key_size, tee=args.tee)


def _cmd_emulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from veritee.cli._emulate import export_roots, run_emulate

    if getattr(args, "action", None) == "export-roots":
        return export_roots(state=args.state, out=Path(args.out), fmt=args.format)
    return run_emulate(out=Path(args.out), product=args.product,
                       report_data=args.report_data, key_size=args.key_size,
                       debug=args.debug_guest, tee=args.tee, fmt=args.format)


def register(add: AddCommand) -> None:
    """Add this module's own commands, demo and emulate (listed in :data:`_COMMAND_MODULES`
    after show, verify and appraise, so ``--help`` lists those first)."""
    from veritee.cli._options import path_arg

    p = add("demo", "run the whole attestation flow on an emulated SEV-SNP machine", _cmd_demo)
    p.add_argument("--product", choices=("Milan", "Genoa", "Turin"), default="Milan",
                   help="the emulated AMD processor (default Milan)")
    p.add_argument("--key-size", type=int, default=4096, choices=(2048, 3072, 4096),
                   help="RSA size of the emulated AMD roots")
    p.add_argument("--tee", choices=("snp", "tdx", "sgx", "tpm"), default="snp",
                   help="the emulated TEE to run the flow on")
    add_format_arg(p, what="each step and the result")

    p = add("emulate", "launch an emulated SEV-SNP guest and write its report and "
            "certificates to a directory", _cmd_emulate)
    p.add_argument("--out", required=True, metavar="DIR", help="the directory to write to")
    p.add_argument("--product", choices=("Milan", "Genoa", "Turin"), default="Milan",
                   help="the emulated AMD processor (default Milan)")
    p.add_argument("--report-data", metavar="HEX", default="",
                   help="up to 64 bytes of report data, hex")
    p.add_argument("--debug-guest", action="store_true", help="launch with the DEBUG policy bit")
    p.add_argument("--key-size", type=int, default=4096, choices=(2048, 3072, 4096),
                   help="RSA size of the emulated AMD roots")
    p.add_argument("--tee", choices=("snp", "tdx", "sgx", "tpm"), default="snp",
                   help="the emulated TEE (tdx/sgx: a quote and Intel collateral)")
    p.add_argument("action", nargs="?", choices=("export-roots",), help="export-roots: write "
                   "the ARK/ASK/VCEK of the machine in --state to --out (no guest launched)")
    p.add_argument("--state", metavar="DIR", type=path_arg, help="export-roots: the emulated "
                   "machine's state directory (default: $VERITEE_STATE_DIR or "
                   "~/.local/share/veritee/emulated-snp)")
    add_format_arg(p, what="what was written")


def _command_in(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` (the top level has only flags without values)."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word
    return ""  # no command: ``veritee --help``, ``--version`` or a usage error


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests).

    ``command``: build only that command's options (the others are listed, not built), as
    :func:`main` does for a fast start; None builds every command.
    """
    return _build(command)[0]


def _build(command: str | None) -> tuple[argparse.ArgumentParser, bool]:
    """The parser, and whether ``command`` named one of its commands."""
    epilog = "exit codes:\n" + "\n".join(f"  {k}  {v}" for k, v in EXIT_CODES.items())
    parser = _Parser(prog="veritee", description="Confidential computing toolkit: attest, "
                     "verify and appraise TEE evidence on real and emulated platforms.",
                     epilog=epilog, formatter_class=_RawFormatter)
    from veritee import __version__

    parser.add_argument("--version", action="version", version=f"veritee {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    found = False

    def add(name: str, help_: str, fn: CommandFn, *, aliases: Sequence[str] = ()
            ) -> argparse.ArgumentParser:
        nonlocal found
        if command is not None and command != name and command not in aliases:
            sub.add_parser(name, help=help_, aliases=list(aliases))
            return _Unbuilt()  # type: ignore[return-value]
        found = True
        p = sub.add_parser(name, help=help_, description=help_, epilog=epilog,
                           aliases=list(aliases),
                           formatter_class=_RawFormatter)
        p.set_defaults(fn=fn)
        return p

    # Feature modules register their own commands: each has ``register(add)``.
    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(add)
    return parser, found


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed; the old order of the command groups (options before the action, as
    in ``veritee keys --store DIR list``, from when a group was one parser) still works, with a
    note giving the new spelling."""
    try:
        return parser.parse_args(argv)
    except _UsageError as first:
        moved = _options_after_action(parser, argv)
        if moved is None:
            raise
        try:
            args = parser.parse_args(moved)
        except _UsageError:
            raise first from None
        print(f"veritee: note: options go after the action now; use: veritee "
              f"{' '.join(moved)}", file=sys.stderr)
        return args


def _options_after_action(parser: argparse.ArgumentParser, argv: list[str]
                          ) -> list[str] | None:
    """``argv`` with the options given between a group and its action moved after the action
    (``keys --store D create k`` -> ``keys create k --store D``), or None if there are none."""
    path: list[str] = []
    current = parser
    i = 0
    while i < len(argv):
        sub = next((a for a in current._actions
                    if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None:
            return None
        j = i  # the first word after position i that names an action of this level
        while j < len(argv) and argv[j] not in sub.choices:
            j += 1
        if j == len(argv):
            return None
        if j > i and path:  # options (and their values) between the group and its action
            return [*argv[:i], argv[j], *argv[j + 1:], *argv[i:j]]
        path.append(argv[j])
        current = sub.choices[argv[j]]
        i = j + 1
    return None


def json_reported(error: BaseException) -> BaseException:
    """Mark ``error`` as already printed on stdout as JSON by its command (a result document
    with its ``error`` member); :func:`main` then prints only the line on stderr."""
    setattr(error, "_veritee_json_reported", True)  # noqa: B010 - any exception type
    return error


def _error_json(args: argparse.Namespace | None, message: str, code: int,
                error: BaseException) -> None:
    """With ``--format json``, the error as JSON on stdout too (scripts read one stream)."""
    if args is None or getattr(args, "format", None) != "json":
        return
    if getattr(error, "_veritee_json_reported", False):
        return
    import json

    doc: dict[str, object] = {"message": message, "exit_code": code,
                              "exit_meaning": EXIT_CODES.get(code, "")}
    for attr in ("code", "reason", "status"):
        value = getattr(error, attr, None)
        if isinstance(value, str | int) and not isinstance(value, bool):
            doc[attr] = value
    print(json.dumps({"error": doc}, indent=2))


def _report(args: argparse.Namespace | None, message: str, code: int,
            error: BaseException) -> int:
    print(f"veritee: {message}", file=sys.stderr)
    _error_json(args, message, code, error)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_in(argv)
    parser, found = _build(command)
    if command and not found:
        parser = build_parser()  # not a command: argparse says so, with the list
    args: argparse.Namespace | None = None
    try:
        args = _parse(parser, argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    except _UsageError as exc:
        return exc.report()
    try:
        code: int = args.fn(args)
        return code
    except VeriteeError as exc:
        if os.environ.get("VERITEE_DEBUG"):
            import traceback

            traceback.print_exc()
        code = exit_code_for(exc)
        status = _service_status(exc)
        message = str(exc)
        if status is not None:  # the service's answer, not a verdict on evidence
            kind = ("not found" if status == 404 else "service unavailable"
                    if code == EXIT_COLLATERAL_UNAVAILABLE else "refused")
            message = f"{kind}: {message}"
        return _report(args, message, code, exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`veritee ... | head`): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        if os.environ.get("VERITEE_DEBUG"):
            import traceback

            traceback.print_exc()
        reason = _network_failure(exc)
        if reason is not None:  # the network, not a bug: "unavailable", as KDS/PCS failures
            return _report(args, reason, EXIT_COLLATERAL_UNAVAILABLE, exc)
        # a bug: say so plainly, with the traceback on request
        return _report(args, f"internal error: {type(exc).__name__}: {exc} (set "
                       "VERITEE_DEBUG=1 for the traceback)", EXIT_INTERNAL, exc)
