"""Integrity of the trust state: row MACs and the keyed audit chain.

Every database row that decides a release (EAR signing keys, appraisal policies, reference
values, resources, admin tokens) carries ``mac = HMAC-SHA256(K_row, canonical JSON of
[table, primary key, every column that matters])``; the audit log is an HMAC chain under
``K_audit``. Both keys are derived (HKDF-SHA256, RFC 5869) from the service's *data key*,
which is stored in the database wrapped (AES-256-GCM) under the master key
(:func:`veritee.service.keys.load_data_key`). So a database writer who does not hold the
master key can neither insert nor alter a row that the service will use: it is refused on
read, loudly (audit entry, metric, log), never used.

What a MAC cannot stop is *replay of an older valid row* (a database writer restoring a
snapshot of one row, e.g. an admin token before its revocation, or an older version of a
resource). The keyed audit chain records every change, and ``veritee audit verify
--expect-head`` with a head kept elsewhere detects a rolled-back log; see docs/service.md.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veritee.errors import VeriteeError

__all__ = ["IntegrityViolation", "StateIntegrity"]

_ROW_INFO = b"veritee/service/row-mac/v1"
_AUDIT_INFO = b"veritee/service/audit-chain/v1"
_CHALLENGE_INFO = b"veritee/service/challenge/v1"


class IntegrityViolation(VeriteeError):  # noqa: N818 - named as the alarm operators see
    """A stored row failed its integrity check: the database was changed behind the service.

    ``table`` and ``key`` name the row; the service refuses to use it.
    """

    code = "state.integrity"

    def __init__(self, table: str, key: str) -> None:
        self.table = table
        self.key = key
        super().__init__(f"{table} row {key!r} failed its integrity check (changed outside "
                         "the service?); it is not used")


def _canonical(values: Sequence[Any]) -> bytes:
    # ensure_ascii keeps lone surrogates and NULs encodable; floats use repr (round-trips).
    return json.dumps(list(values), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False).encode()


class StateIntegrity:
    """The row-MAC and audit-chain keys, derived from the 32-byte data key."""

    def __init__(self, data_key: bytes) -> None:
        if len(data_key) != 32:
            raise ValueError("data key: want 32 bytes")
        self._row = HKDF(hashes.SHA256(), 32, salt=None, info=_ROW_INFO).derive(data_key)
        self._audit = HKDF(hashes.SHA256(), 32, salt=None, info=_AUDIT_INFO).derive(data_key)
        self._challenge = HKDF(hashes.SHA256(), 32, salt=None,
                               info=_CHALLENGE_INFO).derive(data_key)
        # Keyed once and copied per use: each use then skips the key schedule and the
        # digest lookup by name (two MACs per attestation, one per release, one per nonce).
        self._challenge_hmac = hmac.new(self._challenge, digestmod="sha256")
        self._audit_hmac = hmac.new(self._audit, digestmod="sha256")

    def __repr__(self) -> str:
        return "StateIntegrity(<keys hidden>)"

    def row_mac(self, table: str, values: Sequence[Any]) -> str:
        """HMAC-SHA256 hex over the table name and the row's values (primary key first)."""
        return hmac.digest(self._row, _canonical([table, *values]), "sha256").hex()

    def check_row(self, table: str, values: Sequence[Any], mac: object) -> None:
        """Raise :class:`IntegrityViolation` unless ``mac`` authenticates the row."""
        if not isinstance(mac, str) or not hmac.compare_digest(mac, self.row_mac(table, values)):
            raise IntegrityViolation(table, str(values[0]) if values else "?")

    def challenge_tag(self, body: bytes) -> bytes:
        """The 16-byte tag that makes a challenge nonce this service's (HMAC-SHA256, cut)."""
        mac = self._challenge_hmac.copy()
        mac.update(body)
        return mac.digest()[:16]

    def audit_mac(self, prev_hash: str, body: bytes) -> str:
        """HMAC-SHA256 hex of one audit entry, chained to the previous entry's value."""
        try:
            prev = bytes.fromhex(prev_hash)
        except ValueError:
            prev = prev_hash.encode("utf-8", "surrogatepass")
        mac = self._audit_hmac.copy()
        mac.update(prev + body)
        return mac.hexdigest()
