"""The append-only, hash-chained audit log: hashing and chain verification.

Every attestation, release and refusal appends one entry. Entry *n* stores
``entry_hash_n = SHA-256(prev_hash || canonical JSON of (seq, at, event, outcome, subject,
detail))`` with ``prev_hash`` = ``entry_hash_{n-1}`` (64 zero hex digits for the first entry).
Changing, removing or reordering any entry breaks every later link, which
:func:`verify_chain` (and ``veritee audit verify``) reports with the first bad ``seq``.

Append-only is enforced twice: database triggers refuse UPDATE/DELETE (and TRUNCATE on
PostgreSQL) on ``audit_log``, and the chain detects whoever bypasses them (e.g. with direct
file access). What a chain alone cannot detect is truncation of the *tail*: pass the last
head you saw (``expect_head``) to check the log still contains it.

Details never contain secrets, tokens or nonces, only their SHA-256 prefixes and codes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from veritee.service.storage import AuditRow

__all__ = ["GENESIS", "ChainReport", "entry_hash", "verify_chain"]

GENESIS = "0" * 64


def entry_hash(prev_hash: str, *, seq: int, at: str, event: str, outcome: str, subject: str,
               detail: dict[str, Any]) -> str:
    """SHA-256 hex over the previous hash and the canonical JSON of the entry."""
    body = json.dumps({"seq": seq, "at": at, "event": event, "outcome": outcome,
                       "subject": subject, "detail": detail},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(bytes.fromhex(prev_hash) + body.encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """The outcome of checking a chain: ``ok``, how many entries, the head, and any problem."""

    ok: bool
    entries: int
    head: str
    bad_seq: int | None = None
    problem: str = ""


def verify_chain(rows: Iterable[AuditRow], *, expect_head: str | None = None) -> ChainReport:
    """Walk the log from the first entry; report the first entry that does not link."""
    rows = list(rows)
    prev, count, expected_seq = GENESIS, 0, 1
    for row in rows:
        if row.seq != expected_seq:
            return ChainReport(False, count, prev, row.seq,
                               f"seq: got {row.seq}, want {expected_seq} (entry removed?)")
        if not hmac.compare_digest(row.prev_hash, prev):
            return ChainReport(False, count, prev, row.seq,
                               "prev_hash does not match the previous entry's hash")
        want = entry_hash(prev, seq=row.seq, at=row.at, event=row.event, outcome=row.outcome,
                          subject=row.subject, detail=row.detail)
        if not hmac.compare_digest(row.entry_hash, want):
            return ChainReport(False, count, prev, row.seq,
                               "entry_hash does not match the entry's content (modified?)")
        prev, count, expected_seq = row.entry_hash, count + 1, expected_seq + 1
    if expect_head is not None and expect_head != prev and not _seen(expect_head, rows):
        return ChainReport(False, count, prev, None,
                           f"expected head {expect_head[:16]}... not in the log (truncated?)")
    return ChainReport(True, count, prev)


def _seen(head: str, rows: Iterable[AuditRow]) -> bool:
    return any(r.entry_hash == head for r in rows)
