"""``veritee seal`` / ``unseal`` / ``reseal``: sealed files on the command line (the options are
registered by ``veritee.cli._sealing_commands``, which imports this module only to run one)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from veritee.errors import ConfigError
from veritee.formats.sealed import (
    HEADER_SIZE,
    SealedHeader,
    SealKind,
    SealPolicyKind,
    SealTee,
    SgxKeyParams,
    TdxKeyParams,
    TpmKeyParams,
)
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

if TYPE_CHECKING:
    from veritee.cli._platform import Workload

__all__ = ["bound_identity"]


def _make_policy(args: argparse.Namespace, kind: str, min_svn: int | None, *,
                 tcb_floor: TcbVersion | None = None, what: str = "",
                 min_cpu_svn: bytes | None = None) -> SealingPolicy:
    tee = getattr(args, "tee", None) or "snp"
    if tee == "tpm" and kind == "signer":
        raise ConfigError(f"--{what}policy signer: a TPM has no signer identity; seal to PCR "
                          "values (--policy measurement, --pcrs)")
    if kind == "measurement":
        if min_svn is not None:
            raise ConfigError(f"--{what}min-svn applies to --{what}policy signer only")
        return SealingPolicy.measurement(bind_tcb=not args.no_tcb, tcb_floor=tcb_floor,
                                         min_cpu_svn=min_cpu_svn, pcrs=_pcrs(args),
                                         bind_rtmrs=bool(getattr(args, "bind_rtmrs", False)))
    return SealingPolicy.signer(min_svn=min_svn, bind_tcb=not args.no_tcb,
                                tcb_floor=tcb_floor, min_cpu_svn=min_cpu_svn)


def _pcrs(args: argparse.Namespace) -> tuple[int, ...] | None:
    text = getattr(args, "pcrs", None)
    if text is None:
        return None
    if (getattr(args, "tee", None) or "snp") != "tpm":
        raise ConfigError("--pcrs applies to --tee tpm only")
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--pcrs: got {text!r}, want PCR indices like 0,7,9") from None


def _policy(args: argparse.Namespace) -> SealingPolicy:
    """The policy new data is sealed under."""
    return _make_policy(args, args.policy, args.min_svn)


def _tcb_floor(text: str | None, work: Workload, flag: str
               ) -> tuple[TcbVersion | None, bytes | None]:
    """``--min-tcb``: a TCB_VERSION (SEV-SNP) or a CPUSVN (SGX), as ``seal --inspect``
    prints them."""
    if text is None:
        return None, None
    if work.tee == "sgx":
        try:
            cpu_svn = bytes.fromhex(text.removeprefix("0x"))
        except ValueError:
            cpu_svn = b""
        if len(cpu_svn) != 16:
            raise ConfigError(f"{flag}: got {text!r}, want the 16-byte CPUSVN in hex")
        return None, cpu_svn
    if work.tee != "snp":
        raise ConfigError(f"{flag}: --tee {work.tee} seals with no TCB floor to give")
    try:
        value = int(text, 16)
    except ValueError:
        raise ConfigError(f"{flag}: got {text!r}, want a TCB_VERSION in hex (as "
                          "`veritee seal --inspect` prints it)") from None
    source: KeySource = work.source  # type: ignore[assignment]  # --tee snp: the guest
    return TcbVersion.from_u64(value, own_report(source).tcb_layout, structure=flag), None


def _expected(args: argparse.Namespace, work: Workload) -> SealingPolicy:
    """What the reader expects of an existing sealed file (unseal; reseal's --expect-*)."""
    if hasattr(args, "expect_policy"):  # reseal: the old file's policy, then the new one's
        kind = args.expect_policy or args.policy
        floor, cpu = _tcb_floor(args.expect_min_tcb, work, "--expect-min-tcb")
        return _make_policy(args, kind, args.expect_min_svn, tcb_floor=floor, what="expect-",
                            min_cpu_svn=cpu)
    floor, cpu = _tcb_floor(args.min_tcb, work, "--min-tcb")
    return _make_policy(args, args.policy, args.min_svn, tcb_floor=floor, min_cpu_svn=cpu)


# GUEST_FIELD_SELECT bits (SEV-SNP ABI 56860, "MSG_KEY_REQ Message Structure"),
# described as what the sealed key is bound to.
_FIELDS = ((GuestFieldSelect.MEASUREMENT, "the exact launch MEASUREMENT of the sealing guest"),
           (GuestFieldSelect.FAMILY_ID, "its ID block's FAMILY_ID"),
           (GuestFieldSelect.IMAGE_ID, "its ID block's IMAGE_ID"),
           (GuestFieldSelect.GUEST_POLICY, "its guest POLICY"))


def _bound_elsewhere(header: SealedHeader) -> dict[str, object]:
    """:func:`bound_identity` for SGX, TDX and TPM headers."""
    params = header.key_params()
    parts: list[str]
    if isinstance(params, SgxKeyParams):
        who = ("the exact enclave (MRENCLAVE)" if params.key_policy & 1 else
               "the enclave signer (MRSIGNER) and ISVPRODID")
        parts = [who, f"ISVSVN floor {params.isv_svn} (enclaves with ISVSVN >= "
                      f"{params.isv_svn} may open it)",
                 f"CPUSVN {params.cpu_svn.hex()} (this microcode or newer)"
                 if any(params.cpu_svn) else "no CPUSVN floor",
                 "the CPU (EGETKEY seal key)"]
    elif isinstance(params, TdxKeyParams):
        parts = [{"mrtd": "the TD's MRTD and ATTRIBUTES",
                  "mrtd+rtmr": "the TD's MRTD, RTMR0-2 and ATTRIBUTES",
                  "mrowner": "MROWNER and MRCONFIGID (chosen by whoever launches the TD)"}[
                      params.selection], "the CPU (the key-service TD's secret)"]
    else:
        assert isinstance(params, TpmKeyParams)
        parts = [f"PCRs {','.join(map(str, params.pcrs))} (SHA-256) holding the values they "
                 "held when sealed", "this TPM (owner hierarchy seed)"]
    return {"tee": header.tee.name.lower(), "policy": header.policy.name.lower(),
            "rollback_protected": header.rollback_protected, "summary": "; ".join(parts)}


def bound_identity(header: SealedHeader) -> dict[str, object]:
    """What a sealed file's key is bound to, read from its (public) header.

    The measurement and signer digests themselves are not in the header (the key derivation
    mixes them in), so this names the fields; the values are those of the workload that
    sealed it.
    """
    if header.tee is not SealTee.SEVSNP:
        return _bound_elsewhere(header)
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
    return {"tee": "sevsnp", "policy": header.policy.name.lower(),
            "fields": [f.name for f in GuestFieldSelect if f in select],
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
    work = open_workload(args)
    header = _read_header(src)
    # The caller declares rollback protection (--rollback), never the file's header.
    _hint_rollback(args, header)
    counters = _counters(args, work.counters)
    expected = _expected(args, work)
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
    reseal_path(work.source, path, _policy(args), expected=_expected(args, work),
                counters=counters, counter_id=_counter_id(path, counters))
    print(f"resealed {path} under the {args.policy} policy")
    return 0
