"""Registration of ``veritee seal`` / ``unseal`` / ``reseal`` (the commands are in
``veritee.cli._sealing``, imported when one runs)."""

from __future__ import annotations

import argparse

from veritee.cli import AddCommand, add_format_arg, lazy
from veritee.cli._options import add_platform_args

__all__ = ["DEFAULT_CHUNK_SIZE", "register"]

# veritee.sealing.stream.DEFAULT_CHUNK_SIZE, restated so that registering imports no
# cryptography (tests/cli/test_cli_help.py keeps the two equal).
DEFAULT_CHUNK_SIZE = 1 << 20


def register(adder: AddCommand) -> None:
    """Add seal, unseal and reseal."""
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
                       "firmware TCB (by default a downgraded firmware cannot unseal; SGX: "
                       "the CPUSVN)")
        p.add_argument("--pcrs", metavar="LIST", help="--tee tpm: the SHA-256 PCRs the key "
                       "is bound to, e.g. 0,7,9 (default: 0-7)" + (
                           "; the file must bind at least these" if reading else ""))
        p.add_argument("--bind-rtmrs", action="store_true", help="--tee tdx: also bind "
                       "RTMR0-2 (the measured boot chain), not only MRTD")
        if reading:
            p.add_argument("--min-tcb", metavar="HEX", help="refuse files sealed under a TCB "
                           "below this TCB_VERSION (default: this platform's COMMITTED_TCB; "
                           "SGX: a 16-byte CPUSVN, default none)")

    def rollback_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--rollback", action="store_true", help="the file is rollback-"
                       "protected: only its current version opens (and a file without a "
                       "counter is refused)")

    p = adder("seal", "seal a file to this workload (streaming, any size)",
              lazy("veritee.cli._sealing:_cmd_seal"))
    p.add_argument("input", metavar="IN", help="the file to seal (with --inspect: a sealed "
                   "file)")
    p.add_argument("output", metavar="OUT", nargs="?", help="the sealed file to write")
    p.add_argument("--inspect", action="store_true", help="print IN's header, do not decrypt")
    add_format_arg(p, what="--inspect's header")
    p.add_argument("--rollback", action="store_true", help="bind a monotonic counter: older "
                   "versions of OUT are refused once this one is written (then unseal and "
                   "reseal it with --rollback)")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, metavar="BYTES",
                   help="plaintext bytes per sealed chunk of a stream (default 1 MiB)")
    p.add_argument("--aad", metavar="TEXT", help="associated data the reader must give "
                   "(writes a blob, read whole into memory)")
    policy_args(p)
    add_platform_args(p)

    p = adder("unseal", "unseal a sealed file (blob or stream)",
              lazy("veritee.cli._sealing:_cmd_unseal"))
    p.add_argument("input", metavar="IN", help="the sealed file")
    p.add_argument("output", metavar="OUT", help="where to write the plaintext")
    p.add_argument("--aad", metavar="TEXT", help="the associated data the file was sealed "
                   "with (`kbs get --seal` uses the resource path, e.g. --aad db/password)")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    policy_args(p, reading=True)
    rollback_arg(p)
    add_platform_args(p)

    p = adder("reseal", "move a sealed file to a new policy in place, atomically",
              lazy("veritee.cli._sealing:_cmd_reseal"))
    p.add_argument("input", metavar="FILE", help="the sealed file, rewritten in place")
    policy_args(p)
    p.add_argument("--expect-policy", choices=("measurement", "signer"), default=None,
                   help="the policy FILE must have been sealed to (default: --policy)")
    p.add_argument("--expect-min-svn", type=int, help="refuse FILE if sealed to an SVN below "
                   "this (default: this workload's own SVN)")
    p.add_argument("--expect-min-tcb", metavar="HEX", help="refuse FILE if sealed under a TCB "
                   "below this (default: this platform's COMMITTED_TCB)")
    rollback_arg(p)
    add_platform_args(p)
