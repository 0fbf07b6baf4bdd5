"""``veritee seal`` / ``unseal`` / ``reseal``: sealed files on the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from veritee.cli import AddCommand
from veritee.errors import ConfigError
from veritee.formats.sealed import HEADER_SIZE, SealedHeader, SealKind
from veritee.formats.sevsnp import TcbVersion
from veritee.sealing import (
    KeySource,
    MonotonicCounters,
    SealingPolicy,
    counter_id_for,
    reseal_path,
    seal_file,
    unseal_file,
    unseal_path,
)
from veritee.sealing._core import own_report
from veritee.sealing.stream import DEFAULT_CHUNK_SIZE

__all__ = ["register"]


def _make_policy(kind: str, min_svn: int | None, no_tcb: bool,
                 tcb_floor: TcbVersion | None = None, what: str = "") -> SealingPolicy:
    if kind == "measurement":
        if min_svn is not None:
            raise ConfigError(f"--{what}min-svn applies to --{what}policy signer only")
        return SealingPolicy.measurement(bind_tcb=not no_tcb, tcb_floor=tcb_floor)
    return SealingPolicy.signer(min_svn=min_svn, bind_tcb=not no_tcb, tcb_floor=tcb_floor)


def _policy(args: argparse.Namespace) -> SealingPolicy:
    """The policy new data is sealed under."""
    return _make_policy(args.policy, args.min_svn, args.no_tcb)


def _tcb_floor(text: str | None, source: KeySource, flag: str) -> TcbVersion | None:
    if text is None:
        return None
    try:
        value = int(text, 16)
    except ValueError:
        raise ConfigError(f"{flag}: got {text!r}, want a TCB_VERSION in hex (as "
                          "`veritee seal --inspect` prints it)") from None
    return TcbVersion.from_u64(value, own_report(source).tcb_layout, structure=flag)


def _expected(args: argparse.Namespace, source: KeySource) -> SealingPolicy:
    """What the reader expects of an existing sealed file (unseal; reseal's --expect-*)."""
    if hasattr(args, "expect_policy"):  # reseal: the old file's policy, then the new one's
        kind = args.expect_policy or args.policy
        return _make_policy(kind, args.expect_min_svn, args.no_tcb,
                            _tcb_floor(args.expect_min_tcb, source, "--expect-min-tcb"),
                            "expect-")
    return _make_policy(args.policy, args.min_svn, args.no_tcb,
                        _tcb_floor(args.min_tcb, source, "--min-tcb"))


def _read_header(path: Path) -> SealedHeader:
    try:
        with path.open("rb") as fh:
            return SealedHeader.from_bytes(fh.read(HEADER_SIZE))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None


def _cmd_seal(args: argparse.Namespace) -> int:
    from veritee.cli._platform import open_workload

    if args.inspect:
        header = _read_header(Path(args.input))
        if args.format == "json":
            print(json.dumps(header.to_dict(), indent=2))
        else:
            for key, value in header.to_dict().items():
                print(f"{key}: {value}")
        return 0
    if args.output is None:
        raise ConfigError("seal needs IN and OUT (or --inspect FILE)")
    if getattr(args, "tee", None) not in (None, "snp"):  # SGX/TDX/TPM seal their own way
        from veritee.cli._tee_sealing import seal_on_tee

        return seal_on_tee(args)
    work = open_workload(args)
    counters = _counters(args, work.counters)
    src = Path(args.input)
    if not src.is_file():
        raise ConfigError(f"{src}: no such file")
    seal_file(work.source, src, Path(args.output), _policy(args), chunk_size=args.chunk_size,
              counters=counters, counter_id=_counter_id(args.output, counters))
    print(f"sealed {src} -> {args.output} on {work.description}")
    return 0


def _counter_id(path: str | Path, counters: MonotonicCounters | None) -> bytes | None:
    # The CLI declares the counter of a protected file from its absolute path, so a copy made
    # under an abandoned counter (the file was hidden before a write) is refused. Moving a
    # protected file therefore makes it unreadable: move it with reseal, not mv.
    if counters is None:
        return None
    return counter_id_for(b"veritee-cli", str(Path(path).resolve()))


def _hint_rollback(args: argparse.Namespace, header: SealedHeader) -> None:
    # The header is public, so saying what it carries leaks nothing. The converse (--rollback
    # on a file without a counter) is what an attacker's substitute looks like: refused as
    # sealed data that cannot be opened, without a hint.
    if header.rollback_protected and not args.rollback:
        raise ConfigError(f"{args.input} carries a rollback counter: open it with --rollback "
                          "(only its current version opens)")


def _counters(args: argparse.Namespace,
              available: MonotonicCounters | None) -> MonotonicCounters | None:
    if not getattr(args, "rollback", False):
        return None
    if available is None:
        raise ConfigError("--rollback needs monotonic counters, which this platform lacks")
    return available


def _cmd_unseal(args: argparse.Namespace) -> int:
    from veritee._fs import atomic_write
    from veritee.cli._platform import open_workload

    if getattr(args, "tee", None) not in (None, "snp"):  # SGX/TDX/TPM seal their own way
        from veritee.cli._tee_sealing import unseal_on_tee

        return unseal_on_tee(args)
    work = open_workload(args)
    src, dst = Path(args.input), Path(args.output)
    header = _read_header(src)
    # The caller declares rollback protection (--rollback), never the file's header.
    _hint_rollback(args, header)
    counters = _counters(args, work.counters)
    expected = _expected(args, work.source)
    if header.kind is SealKind.STREAM:
        unseal_file(work.source, src, dst, expected, counters=counters,
                    counter_id=_counter_id(src, counters))
    else:
        atomic_write(dst, unseal_path(work.source, src, expected, counters=counters,
                                      counter_id=_counter_id(src, counters)))
    print(f"unsealed {src} -> {dst}")
    return 0


def _cmd_reseal(args: argparse.Namespace) -> int:
    from veritee.cli._platform import open_workload

    work = open_workload(args)
    path = Path(args.input)
    _hint_rollback(args, _read_header(path))
    counters = _counters(args, work.counters)
    reseal_path(work.source, path, _policy(args), expected=_expected(args, work.source),
                counters=counters, counter_id=_counter_id(path, counters))
    print(f"resealed {path} under the {args.policy} policy")
    return 0


def register(adder: AddCommand) -> None:
    """Add seal, unseal and reseal."""
    from veritee.cli._platform import add_platform_args

    def policy_args(p: argparse.ArgumentParser, reading: bool = False) -> None:
        p.add_argument("--policy", choices=("measurement", "signer"), default="measurement",
                       help="measurement: this exact workload; signer: the same signer at "
                       "SVN >= --min-svn" + (" (what the file must have been sealed to)"
                                             if reading else ""))
        p.add_argument("--min-svn", type=int, help=(
            "signer policy: refuse files sealed to an SVN below this (default: this "
            "workload's own SVN)" if reading else
            "signer policy: lowest SVN that may unseal (default: this workload's SVN)"))
        p.add_argument("--no-tcb", action="store_true", help="do not require/bind the "
                       "firmware TCB (by default a downgraded firmware cannot unseal)")
        if reading:
            p.add_argument("--min-tcb", metavar="HEX", help="refuse files sealed under a TCB "
                           "below this TCB_VERSION (default: this platform's COMMITTED_TCB)")

    def rollback_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--rollback", action="store_true", help="the file is rollback-"
                       "protected: only its current version opens (and a file without a "
                       "counter is refused)")

    p = adder("seal", "seal a file to this workload (streaming, any size)", _cmd_seal)
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT", nargs="?")
    p.add_argument("--inspect", action="store_true", help="print IN's header, do not decrypt")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--rollback", action="store_true", help="bind a monotonic counter: older "
                   "versions of OUT are refused once this one is written (then unseal and "
                   "reseal it with --rollback)")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    policy_args(p)
    add_platform_args(p)

    p = adder("unseal", "unseal a sealed file (blob or stream)", _cmd_unseal)
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    policy_args(p, reading=True)
    rollback_arg(p)
    add_platform_args(p)

    p = adder("reseal", "move a sealed file to a new policy in place, atomically", _cmd_reseal)
    p.add_argument("input", metavar="FILE")
    policy_args(p)
    p.add_argument("--expect-policy", choices=("measurement", "signer"), default=None,
                   help="the policy FILE must have been sealed to (default: --policy)")
    p.add_argument("--expect-min-svn", type=int, help="refuse FILE if sealed to an SVN below "
                   "this (default: this workload's own SVN)")
    p.add_argument("--expect-min-tcb", metavar="HEX", help="refuse FILE if sealed under a TCB "
                   "below this (default: this platform's COMMITTED_TCB)")
    rollback_arg(p)
    add_platform_args(p)
