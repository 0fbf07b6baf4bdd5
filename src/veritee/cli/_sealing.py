"""``veritee seal`` / ``unseal`` / ``reseal``: sealed files on the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from veritee.cli import AddCommand
from veritee.errors import ConfigError
from veritee.formats.sealed import HEADER_SIZE, SealedHeader, SealKind
from veritee.sealing import (
    MonotonicCounters,
    SealingPolicy,
    reseal_path,
    seal_file,
    unseal_file,
    unseal_path,
)
from veritee.sealing.stream import DEFAULT_CHUNK_SIZE

__all__ = ["register"]


def _policy(args: argparse.Namespace) -> SealingPolicy:
    if args.policy == "measurement":
        if args.min_svn is not None:
            raise ConfigError("--min-svn applies to --policy signer only")
        return SealingPolicy.measurement(bind_tcb=not args.no_tcb)
    return SealingPolicy.signer(min_svn=args.min_svn, bind_tcb=not args.no_tcb)


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
    work = open_workload(args)
    counters = _counters(args, work.counters)
    src = Path(args.input)
    if not src.is_file():
        raise ConfigError(f"{src}: no such file")
    seal_file(work.source, src, Path(args.output), _policy(args), chunk_size=args.chunk_size,
              counters=counters)
    print(f"sealed {src} -> {args.output} on {work.description}")
    return 0


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

    work = open_workload(args)
    src, dst = Path(args.input), Path(args.output)
    header = _read_header(src)
    counters = work.counters if header.rollback_protected else None
    if header.kind is SealKind.STREAM:
        unseal_file(work.source, src, dst, counters=counters)
    else:
        atomic_write(dst, unseal_path(work.source, src, counters=counters))
    print(f"unsealed {src} -> {dst}")
    return 0


def _cmd_reseal(args: argparse.Namespace) -> int:
    from veritee.cli._platform import open_workload

    work = open_workload(args)
    path = Path(args.input)
    header = _read_header(path)
    counters = work.counters if header.rollback_protected else None
    reseal_path(work.source, path, _policy(args), counters=counters)
    print(f"resealed {path} under the {args.policy} policy")
    return 0


def register(adder: AddCommand) -> None:
    """Add seal, unseal and reseal."""
    from veritee.cli._platform import add_platform_args

    def policy_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--policy", choices=("measurement", "signer"), default="measurement",
                       help="measurement: this exact workload; signer: the same signer at "
                       "SVN >= --min-svn")
        p.add_argument("--min-svn", type=int, help="signer policy: lowest SVN that may unseal "
                       "(default: this workload's SVN)")
        p.add_argument("--no-tcb", action="store_true", help="do not bind the firmware TCB "
                       "(by default a downgraded firmware cannot unseal)")

    p = adder("seal", "seal a file to this workload (streaming, any size)", _cmd_seal)
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT", nargs="?")
    p.add_argument("--inspect", action="store_true", help="print IN's header, do not decrypt")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--rollback", action="store_true", help="bind a monotonic counter: older "
                   "versions of OUT are refused once this one is written")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    policy_args(p)
    add_platform_args(p)

    p = adder("unseal", "unseal a sealed file (blob or stream)", _cmd_unseal)
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    add_platform_args(p)

    p = adder("reseal", "move a sealed file to a new policy in place, atomically", _cmd_reseal)
    p.add_argument("input", metavar="FILE")
    policy_args(p)
    add_platform_args(p)
