"""``veritee tpm``: verify a TPM 2.0 quote, and replay a firmware event log.

The files are the forms tpm2-tools writes: the TPMS_ATTEST (``tpm2_quote -m``), the
TPMT_SIGNATURE (``-s``), the PCR values (``-o``), and the AK as a TPM2B_PUBLIC or as a PEM/DER
SubjectPublicKeyInfo. The nonce is the quote's qualifying data (``-q``), as hex or as text.
"""

from __future__ import annotations

import argparse

from veritee.cli import _read
from veritee.errors import ConfigError, FormatError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any

    from veritee.formats.eventlog import EventLog
    from veritee.formats.tpm import HashAlg, PcrValues

__all__ = ["eventlog_against_pcrs", "read_pcr_values"]


def _dump(obj: object) -> None:
    import json

    print(json.dumps(obj, indent=2))


def _nonce(text: str) -> bytes:
    raw = text.strip()
    if raw.startswith("@"):
        return _read(raw[1:], "nonce").strip()
    try:
        return bytes.fromhex(raw.removeprefix("0x"))
    except ValueError:
        return raw.encode()


def _cmd_quote(args: argparse.Namespace) -> int:
    from veritee.collateral.tpm import load_spki_public_key
    from veritee.formats.eventlog import EventLog
    from veritee.formats.tpm import TpmtSignature, parse_tpm2b_public, parse_tpm2tools_pcrs
    from veritee.trust.tpm import verify_quote

    ak_bytes = _read(args.ak, "AK")
    ak = (load_spki_public_key(ak_bytes) if ak_bytes.startswith(b"-----BEGIN") or
          ak_bytes[:1] == b"\x30" else parse_tpm2b_public(ak_bytes))
    verified = verify_quote(
        _read(args.quote, "quote"), TpmtSignature.from_bytes(_read(args.signature, "signature")),
        ak, nonce=_nonce(args.nonce),
        pcrs=parse_tpm2tools_pcrs(_read(args.pcrs, "PCRs")) if args.pcrs else None,
        event_log=EventLog.from_bytes(_read(args.eventlog, "event log")) if args.eventlog
        else None)
    lines = ["verified TPM 2.0 quote", *[f"  {c}" for c in verified.checks],
             "verdict: VERIFIED"]
    if args.format == "json":
        _dump({"verdict": "verified", "checks": [c.to_dict() for c in verified.checks]})
    else:
        print("\n".join(lines))
    return 0


def read_pcr_values(data: bytes) -> dict[HashAlg, dict[int, bytes]]:
    """PCR values from a file: ``tpm2_pcrread`` YAML or JSON text, or the binary
    ``tpm2_quote -o`` writes."""
    from veritee.formats.tpm import parse_pcr_values_text, parse_tpm2tools_pcrs

    head = data.lstrip()[:1]
    if head in (b"{",) or head.isalpha():
        return parse_pcr_values_text(data)
    return parse_tpm2tools_pcrs(data)


def eventlog_against_pcrs(log: EventLog, pcrs: PcrValues) -> tuple[dict[str, Any], int]:
    """Replay ``log`` against PCR values in hand: the JSON document and the exit code (0 when
    every given bank the log has replays to the given values, 4 otherwise: a mismatch, no
    bank in common, or a bank this verifier cannot hash). For ``veritee tpm eventlog --pcrs``
    and any command that wants the same verdict."""
    from veritee.cli import EXIT_OK, EXIT_VERIFICATION_FAILED
    from veritee.trust.tpm import replay_event_log

    result = replay_event_log(log, pcrs)
    unchecked = sorted({b.name for b in pcrs if b not in result.banks})
    ok = result.ok and not unchecked
    doc: dict[str, Any] = {
        "verdict": "verified" if ok else "failed",
        "banks": [b.name for b in result.banks],
        "matched": [f"{b.name}:{i}" for b, i in result.matched],
        "mismatched": [{"pcr": f"{b.name}:{i}", "replayed": want.hex(), "given": got.hex()}
                       for b, i, want, got in result.mismatched],
        "banks_not_checked": unchecked,
        "not_replayable": list(result.unreplayable_banks),
        "exit_boot_services_workaround": result.workaround,
        "log_pcrs_not_given": sorted(result.unquoted),
    }
    return doc, EXIT_OK if ok else EXIT_VERIFICATION_FAILED


def _cmd_eventlog(args: argparse.Namespace) -> int:
    from veritee.formats.eventlog import EventLog

    log = EventLog.from_bytes(_read(args.eventlog, "event log"))
    if args.pcrs:
        doc, code = eventlog_against_pcrs(log, read_pcr_values(_read(args.pcrs, "PCRs")))
        if args.format == "json":
            _dump(doc)
            return code
        print(f"{len(log.events)} events replayed against {args.pcrs} "
              f"(banks {', '.join(doc['banks']) or 'none in common'})")
        print(f"  {len(doc['matched'])} PCR values match")
        for m in doc["mismatched"]:
            print(f"  [fail] PCR {m['pcr']}: log replays to {m['replayed']}, given {m['given']}")
        for name in doc["banks_not_checked"]:
            why = "not replayable here" if name in doc["not_replayable"] else "not in the log"
            print(f"  [fail] bank {name}: {why}")
        if doc["exit_boot_services_workaround"]:
            print("  [note] PCR 5 matches only with the ExitBootServices events appended "
                  f"({doc['exit_boot_services_workaround']}): the firmware did not log them")
        print(f"verdict: {'VERIFIED' if code == 0 else 'FAILED'}")
        return code
    replayed = log.replay_all()
    banks = [b.name for b in log.banks]
    doc = {"events": len(log.events), "banks": banks,
           "not_replayable": list(log.unreplayable_banks),
           "pcrs": {alg.name: {str(i): v.hex() for i, v in sorted(pcrs.items())}
                    for alg, pcrs in replayed.items()}}
    if args.format == "json":
        _dump(doc)
    else:
        print(f"{len(log.events)} events, banks {', '.join(banks)}")
        if log.unreplayable_banks:
            print(f"  not replayable here: {', '.join(log.unreplayable_banks)}")
        for alg, pcrs in replayed.items():
            for index, value in sorted(pcrs.items()):
                print(f"  {alg.name} PCR[{index:2}] = {value.hex()}")
    return 0


def _cmd_ima(args: argparse.Namespace) -> int:
    from veritee.collateral.tpm import load_spki_public_key
    from veritee.formats.ima import ImaLog
    from veritee.trust.ima import verify_ima_log

    raw = _read(args.ima_log, "IMA log")
    log = ImaLog.from_ascii(raw) if raw[:1].isdigit() else ImaLog.from_binary(raw)
    keys = []
    for path in args.ima_key or ():
        try:
            keys.append(load_spki_public_key(_read(path, "IMA key")))
        except FormatError as exc:  # the loader names it "AK": say which file and what it is
            raise ConfigError(f"--ima-key {path}: not a PEM or DER SubjectPublicKeyInfo "
                              f"public key ({exc})") from None
    pcr10: bytes | None = args.pcr10
    verified = verify_ima_log(log, pcr10=pcr10, keys=keys)
    lines = [f"verified IMA log: {len(log.entries)} entries, PCR 10 = "
             f"{verified.replayed.hex()}", *[f"  {c}" for c in verified.checks]]
    if args.format == "json":
        _dump({"entries": len(log.entries), "pcr10": verified.replayed.hex(),
               "checks": [c.to_dict() for c in verified.checks]})
    else:
        print("\n".join(lines))
    return 0


def _cmd_ek(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from veritee.trust.tpm_ek import verify_ek_chain

    verified = verify_ek_chain(
        _read(args.ek_cert, "EK certificate"),
        [_read(p, "intermediate") for p in args.intermediate or ()],
        roots=[_read(p, "root") for p in args.root or ()],
        now=args.at or datetime.now(UTC))
    lines = ["verified TPM EK certificate chain", *[f"  {c}" for c in verified.checks]]
    if args.format == "json":
        _dump({"verdict": "verified", "checks": [c.to_dict() for c in verified.checks]})
    else:
        print("\n".join(lines))
    return 0


def _cmd_tpm_help(args: argparse.Namespace) -> int:  # pragma: no cover - ACTION is required
    raise ConfigError("tpm: an action is required (quote, eventlog, ima, ek)")
