"""The append-only, keyed (HMAC-chained) audit log: chaining and chain verification.

Every attestation, release and refusal appends one entry. Entry *n* stores
``entry_hash_n = HMAC-SHA256(K_audit, prev_hash || canonical JSON of (seq, at, event,
outcome, subject, detail))`` with ``prev_hash`` = ``entry_hash_{n-1}`` (64 zero hex digits for
the first entry) and ``K_audit`` derived from the service's data key
(:class:`~veritee.service.integrity.StateIntegrity`). Without that key nobody can compute a
valid entry: appending, changing, removing, reordering or *recomputing* entries (which an
unkeyed hash chain would allow) all break a link, which :func:`verify_chain` (and
``veritee audit verify``) reports with the first bad ``seq`` and what is wrong with it.

Append-only is enforced twice: database triggers refuse UPDATE/DELETE (and TRUNCATE on
PostgreSQL) on ``audit_log``, and the chain detects whoever bypasses them (e.g. with direct
file access). What a chain alone cannot detect is truncation of the *tail*: pass the last
head you saw (``expect_head``) to check the log still contains it.

Details never contain secrets, tokens or nonces, only their SHA-256 prefixes and codes.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from typing import Any

from veritee.errors import ConfigError
from veritee.service.integrity import StateIntegrity
from veritee.service.storage import AuditRow

__all__ = ["GENESIS", "ChainReport", "detail_json", "entry_hash", "entry_hash_text",
           "verify_chain"]

GENESIS = "0" * 64


def entry_hash(integrity: StateIntegrity, prev_hash: str, *, seq: int, at: str, event: str,
               outcome: str, subject: str, detail: dict[str, Any]) -> str:
    """HMAC-SHA256 hex (audit key) over the previous hash and the entry's canonical JSON."""
    return entry_hash_text(integrity, prev_hash, seq=seq, at=at, event=event, outcome=outcome,
                           subject=subject, detail_text=detail_json(detail))


# json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=True), the encoder
# built once: the chain's hash is defined over exactly that output.
_DETAIL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def detail_json(detail: dict[str, Any]) -> str:
    """An entry's detail as stored and as hashed: canonical JSON (sorted keys, ASCII)."""
    return _DETAIL_JSON.encode(detail)


def _json_text(value: str) -> str:
    # json.dumps(value) for a str, without building an encoder (json.dumps's own fast path).
    return encode_basestring_ascii(value) if type(value) is str else json.dumps(value)


def entry_hash_text(integrity: StateIntegrity, prev_hash: str, *, seq: int, at: str,
                    event: str, outcome: str, subject: str, detail_text: str) -> str:
    """:func:`entry_hash` for a detail already in :func:`detail_json` form (the append path
    stores that text too, so it is encoded once). The body is the canonical JSON of
    ``{seq, at, event, outcome, subject, detail}`` with sorted keys, byte for byte."""
    body = (f'{{"at":{_json_text(at)},"detail":{detail_text},"event":{_json_text(event)},'
            f'"outcome":{_json_text(outcome)},"seq":{int(seq)},'
            f'"subject":{_json_text(subject)}}}')
    return integrity.audit_mac(prev_hash, body.encode())


@dataclass(frozen=True)
class ChainReport:
    """The outcome of checking a chain: ``ok``, how many entries, the head, and any problem."""

    ok: bool
    entries: int
    head: str
    bad_seq: int | None = None
    problem: str = ""


def verify_chain(rows: Iterable[AuditRow], integrity: StateIntegrity | None, *,
                 expect_head: str | None = None) -> ChainReport:
    """Walk the log from the first entry; report the first entry that does not link.

    ``problem`` says what is wrong: a gap in ``seq`` (removed or reordered), a ``prev_hash``
    that is not the previous entry's value (inserted or reordered), or an ``entry_hash`` the
    audit key did not produce (changed, forged, or recomputed without the key).
    """
    if integrity is None:
        raise ConfigError("the audit chain is keyed: verifying it needs the service's master "
                          "key (--settings)")
    rows = list(rows)
    prev, count, expected_seq = GENESIS, 0, 1
    for row in rows:
        if row.seq != expected_seq:
            return ChainReport(False, count, prev, row.seq,
                               f"seq: got {row.seq}, want {expected_seq} (entry removed?)")
        if not _same(row.prev_hash, prev):
            return ChainReport(False, count, prev, row.seq,
                               "prev_hash does not match the previous entry's hash")
        want = entry_hash(integrity, prev, seq=row.seq, at=row.at, event=row.event,
                          outcome=row.outcome, subject=row.subject, detail=row.detail)
        if not _same(row.entry_hash, want):
            return ChainReport(False, count, prev, row.seq,
                               "entry_hash is not the audit key's MAC of this entry (changed, "
                               "forged or recomputed without the key)")
        prev, count, expected_seq = row.entry_hash, count + 1, expected_seq + 1
    if expect_head is not None and expect_head != prev and not _seen(expect_head, rows):
        return ChainReport(False, count, prev, None,
                           f"expected head {expect_head[:16]}... not in the log (truncated?)")
    return ChainReport(True, count, prev)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogatepass"),
                               b.encode("utf-8", "surrogatepass"))


def _seen(head: str, rows: Iterable[AuditRow]) -> bool:
    return any(r.entry_hash == head for r in rows)
