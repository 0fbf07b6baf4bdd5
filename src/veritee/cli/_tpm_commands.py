"""Registration of ``veritee tpm ACTION`` (the actions are in ``veritee.cli._tpm``, imported
when one runs: registering imports argparse only)."""

from __future__ import annotations

import argparse

from veritee.cli import AddCommand, CommandFn, add_format_arg, lazy

__all__ = ["register"]


def _hex(text: str) -> bytes:
    """argparse ``type=`` for a hex value (``0x`` allowed): a usage error, not a traceback."""
    try:
        return bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, want hex digits") from None


def _impl(name: str) -> CommandFn:
    """``name`` in ``veritee.cli._tpm``, imported when the command runs."""
    return lazy(f"veritee.cli._tpm:{name}")


def register(add: AddCommand) -> None:
    """Add ``veritee tpm ACTION``: quote, eventlog, ima and ek, each with its own options."""
    from veritee.cli import _parse_time, _Parser

    tpm = add("tpm", "TPM 2.0: verify a quote, replay an event log or an IMA log, verify an "
              "EK certificate chain", _impl("_cmd_tpm_help"))
    actions = tpm.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True

    def action(name: str, help_: str, fn: object) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_, description=help_)
        p.set_defaults(fn=fn)
        return p

    p = action("quote", "verify a TPM 2.0 quote (signature by the AK, nonce, PCR digest; "
               "with --eventlog, the log replayed against the quoted PCRs)", _impl("_cmd_quote"))
    p.add_argument("--quote", metavar="FILE", required=True,
                   help="TPMS_ATTEST as signed (tpm2_quote -m)")
    p.add_argument("--signature", metavar="FILE", required=True,
                   help="TPMT_SIGNATURE (tpm2_quote -s)")
    p.add_argument("--ak", metavar="FILE", required=True,
                   help="AK: TPM2B_PUBLIC, or PEM/DER SPKI")
    p.add_argument("--nonce", required=True, metavar="NONCE",
                   help="qualifying data: hex, text, or @FILE")
    p.add_argument("--pcrs", metavar="FILE", help="PCR values (tpm2_quote -o)")
    p.add_argument("--eventlog", metavar="FILE", help="TCG PC Client event log (binary) to "
                   "replay against the quoted PCRs")
    add_format_arg(p)

    p = action("eventlog", "replay a TCG PC Client event log: every PCR of every bank, or "
               "against given PCR values (--pcrs)",
               _impl("_cmd_eventlog"))
    p.add_argument("--eventlog", metavar="FILE", required=True,
                   help="TCG PC Client event log (binary_bios_measurements)")
    p.add_argument("--pcrs", metavar="FILE", help="PCR values to replay the log against: "
                   "tpm2_pcrread YAML / JSON, or tpm2_quote -o (exit 0 when the log replays to "
                   "them, 4 when not)")
    add_format_arg(p, what="the replayed PCRs")

    p = action("ima", "replay an IMA log to PCR 10 and check its file signatures",
               _impl("_cmd_ima"))
    p.add_argument("--ima-log", metavar="FILE", required=True,
                   help="IMA runtime measurements (binary or ascii)")
    p.add_argument("--ima-key", metavar="PEM", action="append",
                   help="a key that signs IMA file signatures (repeatable)")
    p.add_argument("--pcr10", metavar="HEX", type=_hex, help="the quoted PCR 10 the IMA log "
                   "must replay to")
    add_format_arg(p)

    p = action("ek", "verify a TPM endorsement key (EK) certificate chain to a vendor root",
               _impl("_cmd_ek"))
    p.add_argument("--ek-cert", metavar="FILE", required=True,
                   help="EK certificate (DER or PEM)")
    p.add_argument("--intermediate", metavar="FILE", action="append",
                   help="an intermediate CA certificate (repeatable)")
    p.add_argument("--root", metavar="FILE", action="append", required=True,
                   help="a trusted TPM vendor root (repeatable)")
    p.add_argument("--at", type=_parse_time, metavar="TIME",
                   help="verify as of this ISO 8601 time (default: now)")
    add_format_arg(p)
