"""``veritee seal`` / ``unseal`` / ``reseal``: sealed files on the command line (the options are
registered by ``veritee.cli._sealing_commands``, which imports this module only to run one)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from veritee.errors import ConfigError
from veritee.formats.sealed import HEADER_SIZE, SealedHeader, SealKind, SealPolicyKind
from veritee.formats.sevsnp import GuestFieldSelect, TcbVersion
from veritee.sealing import (
    KeySource,
    MonotonicCounters,
    SealingPolicy,
    counter_id_for,
    reseal_path,
    seal_file,
    seal_to_path,
    unseal_file,
    unseal_path,
)
from veritee.sealing._core import own_report

__all__ = ["bound_identity"]


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


# GUEST_FIELD_SELECT bits (SEV-SNP ABI 56860, "MSG_KEY_REQ Message Structure"),
# described as what the sealed key is bound to.
_FIELDS = ((GuestFieldSelect.MEASUREMENT, "the exact launch MEASUREMENT of the sealing guest"),
           (GuestFieldSelect.FAMILY_ID, "its ID block's FAMILY_ID"),
           (GuestFieldSelect.IMAGE_ID, "its ID block's IMAGE_ID"),
           (GuestFieldSelect.GUEST_POLICY, "its guest POLICY"))


def bound_identity(header: SealedHeader) -> dict[str, object]:
    """What a sealed file's key is bound to, read from its (public) header.

    The measurement and signer digests themselves are not in the header (the key derivation
    mixes them in), so this names the fields; the values are those of the workload that
    sealed it.
    """
    select = GuestFieldSelect(header.guest_field_select)
    parts = [text for bit, text in _FIELDS if bit in select]
    if header.policy is SealPolicyKind.SIGNER:
        parts.insert(0, "the launch signer (ID / author key digest)")
    if GuestFieldSelect.GUEST_SVN in select:
        parts.append(f"guest SVN floor {header.guest_svn} (the sealer's --min-svn: readers "
                     f"with SVN >= {header.guest_svn} may open it; --svn is the workload's own)")
    if GuestFieldSelect.TCB_VERSION in select:
        parts.append(f"firmware TCB >= 0x{header.tcb_version:016x}")
    parts.append(f"VMPL {header.vmpl}")
    root = "VM root key (this launch only)" if header.root_key_select else "chip (VCEK root)"
    parts.append(f"key root: {root}")
    return {"policy": header.policy.name.lower(), "fields": [f.name for f in GuestFieldSelect
                                                              if f in select],
            "guest_svn_floor": header.guest_svn, "rollback_protected": header.rollback_protected,
            "summary": "; ".join(parts)}


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
        binding = bound_identity(header)
        if args.format == "json":
            print(json.dumps({**header.to_dict(), "bound_to": binding}, indent=2))
        else:
            print(f"bound to: {binding['summary']}")
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
    if args.aad is not None:  # associated data: only the blob form carries it
        seal_to_path(work.source, Path(args.output), src.read_bytes(), _policy(args),
                     aad=args.aad.encode(), counters=counters,
                     counter_id=_counter_id(args.output, counters))
    else:
        seal_file(work.source, src, Path(args.output), _policy(args),
                  chunk_size=args.chunk_size, counters=counters,
                  counter_id=_counter_id(args.output, counters))
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

    src, dst = Path(args.input), Path(args.output)
    if (dst.exists() or dst.is_symlink()) and not args.force:
        raise ConfigError(f"{dst} exists: give --force to overwrite it")
    if getattr(args, "tee", None) not in (None, "snp"):  # SGX/TDX/TPM seal their own way
        from veritee.cli._tee_sealing import unseal_on_tee

        return unseal_on_tee(args)
    work = open_workload(args)
    header = _read_header(src)
    # The caller declares rollback protection (--rollback), never the file's header.
    _hint_rollback(args, header)
    counters = _counters(args, work.counters)
    expected = _expected(args, work.source)
    aad = args.aad.encode() if args.aad is not None else b""
    if header.kind is SealKind.STREAM:
        if aad:  # streams carry no associated data: refuse rather than ignore it
            raise ConfigError(f"{src} is a sealed stream, which has no associated data: "
                              "drop --aad")
        unseal_file(work.source, src, dst, expected, counters=counters,
                    counter_id=_counter_id(src, counters))
    else:
        atomic_write(dst, unseal_path(work.source, src, expected, aad=aad, counters=counters,
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
