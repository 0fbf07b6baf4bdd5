"""Durable storage: SQLite by default, PostgreSQL by URL, one schema, one transaction API.

``open_store(url)`` picks the backend from the URL scheme (``sqlite:///path/to.db`` or
``postgresql://user@host/db``). Every read and write goes through :meth:`Store.transaction`,
which yields a :class:`Tx` whose methods are the service's whole data vocabulary (nonces,
policies, reference values, resources, admin tokens, signing keys, audit log). A transaction
commits on clean exit and rolls back on any exception: nothing is ever half-written.

SQL is written once with ``?`` placeholders; the PostgreSQL backend rewrites them to ``%s``.
Write transactions are serialised where it matters:

* SQLite: ``BEGIN IMMEDIATE`` takes the database write lock at the start, so two processes
  (or threads) never interleave writes; WAL mode lets readers continue meanwhile.
* PostgreSQL: row locks do the work for nonces (``UPDATE ... WHERE used_at IS NULL`` can
  succeed once), and an advisory transaction lock orders audit-log appends (the hash chain
  needs a total order) and first-start key creation.
"""

from __future__ import annotations

import collections
import contextlib
import hmac
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from veritee._memo import remember
from veritee.errors import ConfigError, VeriteeError
from veritee.service.integrity import IntegrityViolation, StateIntegrity
from veritee.service.storage.migrations import MIGRATIONS, render

__all__ = ["AuditRow", "DatabaseUnavailable", "NonceState", "Store", "Tx", "open_store"]

# The two ways an admin token row is looked up (fixed statements, no formatting).
_TOKEN_ROW_BY = {
    "token_id": "SELECT token_id, name, token_hash, role, revoked_at, mac FROM admin_tokens "
                "WHERE token_id = ?",
    "token_hash": "SELECT token_id, name, token_hash, role, revoked_at, mac FROM admin_tokens "
                  "WHERE token_hash = ?",
}


class DatabaseUnavailable(VeriteeError):  # noqa: N818 - a state, named as operators see it
    """The database did not answer (down, frozen, timed out, locked): HTTP 503.

    ``reason`` is for the log only; clients get ``service.unavailable`` without it (no host,
    port or driver text).
    """

    code = "service.unavailable"

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__("the database is unavailable")

# Arbitrary constants naming this schema's advisory locks (PostgreSQL).
_LOCK_MIGRATE = 0x7665_7269_0001
_LOCK_AUDIT = 0x7665_7269_0002
_LOCK_KEYS = 0x7665_7269_0003
_VERIFIED_ROWS = 4096  # verified rows remembered (policies, references, resources, keys)


class NonceState:
    """Outcomes of checking and consuming a nonce (strings, so they go straight into audit
    details): ``unknown`` (not this service's), ``expired``, ``used``, ``ok``."""

    OK = "ok"
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


@dataclass(frozen=True)
class AuditRow:
    """One audit-log entry as stored."""

    seq: int
    at: str
    event: str
    outcome: str
    subject: str
    detail: dict[str, Any]
    prev_hash: str
    entry_hash: str


class _Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Sequence[Any] | None: ...
    def fetchall(self) -> Sequence[Sequence[Any]]: ...


class Tx:
    """One open transaction; the service's data operations."""

    def __init__(self, store: Store, conn: Any) -> None:
        self._store = store
        self._conn = conn
        self.dialect = store.dialect

    # -- plumbing ---------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        """Run one statement with ``?`` placeholders."""
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        cur: _Cursor = self._conn.execute(sql, tuple(params))
        return cur

    def one(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Any] | None:
        """The first row of a query, or None."""
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        """Every row of a query."""
        return list(self.execute(sql, params).fetchall())

    def lock(self, key: int) -> None:
        """Serialise with other transactions taking ``key`` (PostgreSQL advisory lock).

        SQLite write transactions already hold the database write lock (BEGIN IMMEDIATE).
        """
        if self.dialect == "postgresql":
            self.execute("SELECT pg_advisory_xact_lock(?)", (key,))

    def _locked_one(self, key: int, sql: str) -> Sequence[Any] | None:
        """:meth:`lock` then :meth:`one`, in one round trip on PostgreSQL (a pipeline: the
        query runs once the lock is granted, with a snapshot taken after it, so it sees
        what the previous holder committed), one round trip fewer with the lock held."""
        if self.dialect != "postgresql":
            return self.one(sql)
        with self._conn.pipeline():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            cur = self._conn.execute(sql.replace("?", "%s"))
        row: Sequence[Any] | None = cur.fetchone()
        return row

    # -- nonces -----------------------------------------------------------------------------
    def nonce_consume(self, nonce_hash: str, now: float, expires_at: float) -> str:
        """Record a (MAC-checked, unexpired) challenge nonce as used; return
        :class:`NonceState` ``ok`` exactly once per nonce, ``used`` after that.

        One conditional INSERT is the whole protocol: whichever transaction inserts the row
        first wins, in any number of processes, because the primary key (and SQLite's write
        lock) makes the second one find it. The row is kept until ``expires_at`` has passed
        (then the nonce is refused as expired without it, see :meth:`nonce_purge`).
        """
        cur = self.execute("INSERT INTO nonces (nonce_hash, created_at, expires_at, used_at) "
                           "VALUES (?, ?, ?, ?) ON CONFLICT (nonce_hash) DO NOTHING",
                           (nonce_hash, now, expires_at, now))
        return NonceState.OK if cur.rowcount == 1 else NonceState.USED

    def nonce_purge(self, before: float) -> int:
        """Forget nonces that expired before ``before`` (they would be refused anyway)."""
        return self.execute("DELETE FROM nonces WHERE expires_at < ?", (before,)).rowcount

    # -- integrity --------------------------------------------------------------------------
    def _integrity(self) -> StateIntegrity:
        integrity = self._store.integrity
        if integrity is None:
            raise ConfigError("this database holds authenticated state: open it with the "
                              "service's master key (--settings)")
        return integrity

    def _mac(self, table: str, values: Sequence[Any]) -> str:
        return self._integrity().row_mac(table, values)

    def _checked(self, table: str, row: Sequence[Any], width: int) -> Sequence[Any]:
        """``row`` = (values..., mac): raise IntegrityViolation unless the MAC matches.

        A row stored exactly as one this process verified under the same key needs no new
        HMAC: the MAC is a function of those values and the key alone (any changed byte, or
        another key, is a different entry and is checked in full)."""
        self._verified(table, row[:width], row[width])
        return row[:width]

    def _verified(self, table: str, values: Sequence[Any], mac: Any) -> None:
        """Raise IntegrityViolation unless ``mac`` is the row MAC of ``values`` (see
        :meth:`_checked`: values and MAC this process checked under this key pass again)."""
        integrity = self._integrity()
        seen = self._store._verified_rows
        key = (table, *values, mac)
        try:
            known = seen.get(key) is integrity
        except TypeError:  # a value a driver returns unhashable: checked, not remembered
            integrity.check_row(table, values, mac)
            return
        if not known:
            integrity.check_row(table, values, mac)
            remember(seen, key, integrity, _VERIFIED_ROWS)  # bounded: refilled by rows in use

    # -- appraisal policies and reference values ---------------------------------------------
    def appraisal_generation(self) -> int | None:
        """The appraisal state's generation: a number that every change to an appraisal
        policy or reference value row moves (database triggers, migration 4), or None when
        the row is missing or not a number. Not authenticated, and it need not be: it only
        tells a reader that rows it verified before may have changed (see
        :meth:`Broker._appraisal_policy <veritee.service.core.Broker._appraisal_policy>`)."""
        row = self.one("SELECT generation FROM state_generations WHERE name = 'appraisal'")
        value = row[0] if row is not None else None
        return value if type(value) is int else None

    def policy_texts(self, policy_ids: Sequence[str]) -> dict[str, str]:
        """The stored JSON text (authenticated) of each of ``policy_ids`` that exists, in one
        statement."""
        marks = ", ".join("?" * len(policy_ids))
        rows = self.all(f"SELECT policy_id, body, mac FROM appraisal_policies "  # noqa: S608
                        f"WHERE policy_id IN ({marks})", policy_ids) if policy_ids else []
        return {str(pid): str(body) for pid, body in
                (self._checked("appraisal_policies", r, 2) for r in rows)}

    def policy_get(self, policy_id: str) -> dict[str, Any] | None:
        """A stored appraisal policy document (authenticated), or None."""
        text = self.policy_texts((policy_id,)).get(policy_id)
        return None if text is None else dict(json.loads(text))

    def policy_list(self) -> list[str]:
        """Every stored appraisal policy id (each row authenticated)."""
        return [str(self._checked("appraisal_policies", r, 2)[0]) for r in
                self.all("SELECT policy_id, body, mac FROM appraisal_policies "
                         "ORDER BY policy_id")]

    def policy_put(self, policy_id: str, body: dict[str, Any], now: float) -> bool:
        """Create or replace; True when it was created."""
        text = json.dumps(body)
        mac = self._mac("appraisal_policies", (policy_id, text))
        existed = self.one("SELECT 1 FROM appraisal_policies WHERE policy_id = ?", (policy_id,))
        if existed:
            self.execute("UPDATE appraisal_policies SET body = ?, updated_at = ?, mac = ? "
                         "WHERE policy_id = ?", (text, now, mac, policy_id))
        else:
            self.execute("INSERT INTO appraisal_policies (policy_id, body, updated_at, mac) "
                         "VALUES (?, ?, ?, ?)", (policy_id, text, now, mac))
        return existed is None

    def policy_delete(self, policy_id: str) -> bool:
        """Delete; True when something was deleted."""
        return self.execute("DELETE FROM appraisal_policies WHERE policy_id = ?",
                            (policy_id,)).rowcount == 1

    # A reference value's scheme is a column (migration 3); a row of the legacy scheme keeps
    # the MAC it always had, others add the scheme to it, so moving a row to another scheme
    # breaks its MAC either way.
    _LEGACY_SCHEME = "sevsnp"

    def _reference_mac_values(self, name: str, kind: str, value: str,
                              scheme: str) -> tuple[str, ...]:
        if scheme == self._LEGACY_SCHEME:
            return (name, kind, value)
        return (name, kind, value, scheme)

    def reference_list(self) -> list[tuple[str, str, str]]:
        """``(name, kind, value)`` for every reference value (each row authenticated);
        ``kind`` is ``measurement`` for an SEV-SNP value, ``<scheme>:measurement`` else."""
        out = []
        for r in self.all("SELECT name, kind, value, scheme, mac FROM reference_values "
                          "ORDER BY name"):
            name, kind, value, scheme, mac = (str(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4])
            self._verified("reference_values",
                           self._reference_mac_values(name, kind, value, scheme), mac)
            out.append((name, kind if scheme == self._LEGACY_SCHEME else f"{scheme}:{kind}",
                        value))
        return out

    def reference_put(self, name: str, kind: str, value: str, now: float) -> bool:
        """Create or replace; True when it was created. ``kind`` as :meth:`reference_list`
        gives it (``<scheme>:measurement`` names the scheme)."""
        scheme, sep, kind = kind.rpartition(":")
        scheme = scheme if sep else self._LEGACY_SCHEME
        mac = self._mac("reference_values", self._reference_mac_values(name, kind, value,
                                                                       scheme))
        existed = self.one("SELECT 1 FROM reference_values WHERE name = ?", (name,))
        if existed:
            self.execute("UPDATE reference_values SET kind = ?, value = ?, scheme = ?, "
                         "updated_at = ?, mac = ? WHERE name = ?",
                         (kind, value, scheme, now, mac, name))
        else:
            self.execute("INSERT INTO reference_values (name, kind, value, scheme, updated_at, "
                         "mac) VALUES (?, ?, ?, ?, ?, ?)", (name, kind, value, scheme, now, mac))
        return existed is None

    def reference_delete(self, name: str) -> bool:
        """Delete; True when something was deleted."""
        return self.execute("DELETE FROM reference_values WHERE name = ?",
                            (name,)).rowcount == 1

    # -- resources --------------------------------------------------------------------------
    def resource_row(self, path: str) -> tuple[str, str, int] | None:
        """``(policy JSON text, secret_ciphertext, version)`` (authenticated) or None."""
        row = self.one("SELECT path, policy, secret_ciphertext, version, mac "
                       "FROM resources WHERE path = ?", (path,))
        if row is None:
            return None
        _, policy, ciphertext, version = self._checked("resources", row, 4)
        return str(policy), str(ciphertext), int(version)

    def resource_list(self) -> list[tuple[str, dict[str, Any], int]]:
        """``(path, policy, version)`` for every resource (never the secret)."""
        out = []
        for r in self.all("SELECT path, policy, secret_ciphertext, version, mac "
                          "FROM resources ORDER BY path"):
            path, policy, _, version = self._checked("resources", r, 4)
            out.append((str(path), dict(json.loads(policy)), int(version)))
        return out

    def resource_put(self, path: str, policy: dict[str, Any], ciphertext: str | None,
                     now: float) -> int:
        """Create or update (``ciphertext`` None keeps the secret); return the new version.

        The kept secret comes from the *authenticated* old row: an update never blesses a
        ciphertext someone slipped into the database.
        """
        text = json.dumps(policy)
        found = self.resource_row(path)
        if found is None:
            if ciphertext is None:
                raise ConfigError("secret: a new resource needs a secret")
            self.execute("INSERT INTO resources (path, policy, secret_ciphertext, version, "
                         "updated_at, mac) VALUES (?, ?, ?, 1, ?, ?)",
                         (path, text, ciphertext, now,
                          self._mac("resources", (path, text, ciphertext, 1))))
            return 1
        _, old_ciphertext, old_version = found
        version = old_version + 1
        ciphertext = old_ciphertext if ciphertext is None else ciphertext
        self.execute("UPDATE resources SET policy = ?, secret_ciphertext = ?, version = ?, "
                     "updated_at = ?, mac = ? WHERE path = ?",
                     (text, ciphertext, version, now,
                      self._mac("resources", (path, text, ciphertext, version)), path))
        return version

    def resource_delete(self, path: str) -> bool:
        """Delete; True when something was deleted."""
        return self.execute("DELETE FROM resources WHERE path = ?", (path,)).rowcount == 1

    # -- admin tokens -----------------------------------------------------------------------
    def token_add(self, token_id: str, name: str, token_hash: str, role: str,
                  now: float) -> None:
        """Store a new admin token by its hash."""
        mac = self._mac("admin_tokens", (token_id, name, token_hash, role, None))
        self.execute("INSERT INTO admin_tokens (token_id, name, token_hash, role, created_at, "
                     "mac) VALUES (?, ?, ?, ?, ?, ?)",
                     (token_id, name, token_hash, role, now, mac))

    def _token_row(self, column: str, value: str) -> tuple[Any, ...] | None:
        """The authenticated ``(token_id, name, token_hash, role, revoked_at)`` of the token
        whose ``column`` (``token_id`` or ``token_hash``) is ``value``."""
        row = self.one(_TOKEN_ROW_BY[column], (value,))
        return None if row is None else tuple(self._checked("admin_tokens", row, 5))

    def token_lookup(self, token_hash: str) -> tuple[str, str, str] | None:
        """``(token_id, name, role)`` of a live, authenticated token with this hash, or None."""
        row = self._token_row("token_hash", token_hash)
        if row is None:
            return None
        token_id, name, _, role, revoked_at = row
        if revoked_at is not None:
            return None
        return str(token_id), str(name), str(role)

    def token_list(self) -> list[dict[str, Any]]:
        """Every token's metadata (never the hash), each row authenticated."""
        out = []
        for r in self.all("SELECT token_id, name, token_hash, role, revoked_at, mac, created_at "
                          "FROM admin_tokens "
                          "ORDER BY created_at"):
            token_id, name, _, role, revoked_at = self._checked("admin_tokens", r, 5)
            out.append({"token_id": token_id, "name": name, "role": role, "created_at": r[6],
                        "revoked": revoked_at is not None})
        return out

    def token_revoke(self, token_id: str, now: float) -> bool:
        """Revoke; True when a live token was revoked."""
        row = self._token_row("token_id", token_id)
        if row is None:
            return False
        _, name, token_hash, role, revoked_at = row
        if revoked_at is not None:
            return False
        mac = self._mac("admin_tokens", (token_id, name, token_hash, role, float(now)))
        return self.execute("UPDATE admin_tokens SET revoked_at = ?, mac = ? WHERE token_id = ? "
                            "AND revoked_at IS NULL", (float(now), mac, token_id)).rowcount == 1

    # -- signing keys -----------------------------------------------------------------------
    def signing_key_active(self) -> tuple[str, str, str, str] | None:
        """``(kid, alg, private_ciphertext, public_jwk)`` of the newest live key.

        Only authenticated rows count: an injected key is refused (IntegrityViolation).
        """
        self.lock(_LOCK_KEYS)
        row = self.one("SELECT kid, alg, private_ciphertext, public_jwk, retired_at, mac "
                       "FROM signing_keys WHERE retired_at IS NULL "
                       "ORDER BY created_at DESC LIMIT 1")
        if row is None:
            return None
        kid, alg, ciphertext, jwk, _ = self._checked("signing_keys", row, 5)
        return str(kid), str(alg), str(ciphertext), str(jwk)

    def signing_key_add(self, kid: str, alg: str, private_ciphertext: str, public_jwk: str,
                        now: float) -> None:
        """Store a new signing key."""
        mac = self._mac("signing_keys", (kid, alg, private_ciphertext, public_jwk, None))
        self.execute("INSERT INTO signing_keys (kid, alg, private_ciphertext, public_jwk, "
                     "created_at, mac) VALUES (?, ?, ?, ?, ?, ?)",
                     (kid, alg, private_ciphertext, public_jwk, now, mac))

    def signing_key_retire(self, kid: str, now: float) -> bool:
        """Mark a live key retired at ``now`` (row MAC re-computed); True if one was."""
        self.lock(_LOCK_KEYS)
        row = self.one("SELECT kid, alg, private_ciphertext, public_jwk, retired_at, mac "
                       "FROM signing_keys WHERE kid = ?", (kid,))
        if row is None:
            return False
        _, alg, ciphertext, jwk, retired_at = self._checked("signing_keys", row, 5)
        if retired_at is not None:
            return False
        mac = self._mac("signing_keys", (kid, alg, ciphertext, jwk, float(now)))
        return self.execute("UPDATE signing_keys SET retired_at = ?, mac = ? WHERE kid = ? "
                            "AND retired_at IS NULL", (float(now), mac, kid)).rowcount == 1

    def signing_keys_public(self, *, now: float | None = None, grace: float = 0.0,
                            until: list[float] | None = None
                            ) -> tuple[list[dict[str, Any]], list[str]]:
        """Public JWKs of every *authenticated* key, live or retired, and the kids refused.

        Retired keys stay published while their tokens can still be valid: with ``now``,
        a key retired before ``now - grace`` (``grace`` = the EAR lifetime) is left out.
        A row that fails its MAC is left out and named in the second list so the caller
        can raise the alarm. ``until`` (if given) collects when each still-published
        retired key is due to leave, so a cache knows when to reload.
        """
        keys: list[dict[str, Any]] = []
        refused: list[str] = []
        for r in self.all("SELECT kid, alg, private_ciphertext, public_jwk, retired_at, mac "
                          "FROM signing_keys ORDER BY created_at"):
            try:
                kid, _, _, jwk, retired_at = self._checked("signing_keys", r, 5)
                doc = json.loads(jwk)
            except (IntegrityViolation, ValueError):
                refused.append(str(r[0]))
                continue
            if now is not None and retired_at is not None and float(retired_at) + grace < now:
                continue  # every token it signed has expired
            if until is not None and retired_at is not None:
                until.append(float(retired_at) + grace)
            if isinstance(doc, dict) and doc.get("kid") == kid:
                keys.append(doc)
            else:
                refused.append(str(kid))
        return keys, refused

    # -- data key (wrapped by the master key) -----------------------------------------------
    def service_key_get(self, name: str) -> tuple[str, str] | None:
        """``(wrapped, master_key_id)`` of a wrapped service key, or None."""
        row = self.one("SELECT wrapped, master_key_id FROM service_keys WHERE name = ?",
                       (name,))
        return None if row is None else (str(row[0]), str(row[1]))

    def service_key_put(self, name: str, wrapped: str, master_key_id: str, now: float) -> None:
        """Create or replace a wrapped service key (AES-GCM authenticates it itself)."""
        if self.one("SELECT 1 FROM service_keys WHERE name = ?", (name,)):
            self.execute("UPDATE service_keys SET wrapped = ?, master_key_id = ?, "
                         "created_at = ? WHERE name = ?", (wrapped, master_key_id, now, name))
        else:
            self.execute("INSERT INTO service_keys (name, wrapped, master_key_id, created_at) "
                         "VALUES (?, ?, ?, ?)", (name, wrapped, master_key_id, now))

    # -- audit log --------------------------------------------------------------------------
    def audit_head(self) -> tuple[int, str]:
        """``(seq, entry_hash)`` of the last entry, ``(0, genesis)`` when empty."""
        from veritee.service.audit import GENESIS

        row = self.one("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))

    def audit_append(self, event: str, outcome: str, subject: str, detail: dict[str, Any],
                     at: str) -> AuditRow:
        """Append one chained entry; the lock gives the chain its total order.

        The head entry is checked before the new one is chained to it, so the service never
        extends (and so never vouches for) a row it did not write.
        """
        from veritee.service.audit import GENESIS, detail_json, entry_hash, entry_hash_text

        integrity = self._integrity()
        # Everything that does not need the chain's head is done before its lock is taken:
        # the lock serialises every replica's audit appends until this transaction commits.
        text = detail_json(detail)
        raw = self._locked_one(_LOCK_AUDIT, "SELECT seq, at, event, outcome, subject, detail, "
                               "prev_hash, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        if raw is not None:
            # The MAC is a function of the row's stored columns and the key: a head stored
            # exactly as this process last checked or wrote it under this key needs no new
            # computation (any changed byte, another key or another row is checked in full).
            known = self._store._audit_head
            if known is None or known[0] is not integrity or known[1] != tuple(raw):
                head = self._audit_row(raw)
                want = entry_hash(integrity, head.prev_hash, seq=head.seq, at=head.at,
                                  event=head.event, outcome=head.outcome,
                                  subject=head.subject, detail=head.detail)
                if not hmac.compare_digest(head.entry_hash.encode("utf-8", "surrogatepass"),
                                           want.encode()):
                    raise IntegrityViolation("audit_log", str(head.seq))
            seq, prev = int(raw[0]), str(raw[7])
        else:
            seq, prev = 0, GENESIS
        seq += 1
        digest = entry_hash_text(integrity, prev, seq=seq, at=at, event=event,
                                 outcome=outcome, subject=subject, detail_text=text)
        stored = (seq, at, event, outcome, subject, text, prev, digest)
        self.execute("INSERT INTO audit_log (seq, at, event, outcome, subject, detail, "
                     "prev_hash, entry_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", stored)
        # Remembered even if this transaction rolls back: only an identical stored row (whose
        # MAC is then this one, which verifies) would ever match it.
        self._store._audit_head = (integrity, stored)
        return AuditRow(seq, at, event, outcome, subject, detail, prev, digest)

    def _audit_row(self, r: Sequence[Any]) -> AuditRow:
        try:
            detail = json.loads(r[5])
        except ValueError:
            detail = {"unparsable": str(r[5])[:200]}
        return AuditRow(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]),
                        detail if isinstance(detail, dict) else {"not_an_object": detail},
                        str(r[6]), str(r[7]))

    def audit_rows_desc(self, limit: int) -> list[AuditRow]:
        """The last ``limit`` entries, newest first."""
        return [self._audit_row(r) for r in self.all(
            "SELECT seq, at, event, outcome, subject, detail, prev_hash, entry_hash "
            "FROM audit_log ORDER BY seq DESC LIMIT ?", (limit,))]

    def audit_rows(self, after: int = 0, limit: int | None = None) -> list[AuditRow]:
        """Entries with ``seq > after`` in order."""
        sql = ("SELECT seq, at, event, outcome, subject, detail, prev_hash, entry_hash "
               "FROM audit_log WHERE seq > ? ORDER BY seq")
        params: list[Any] = [after]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [self._audit_row(r) for r in self.all(sql, params)]


class _Watchdog:
    """Cuts the socket of a PostgreSQL transaction that outlives its deadline.

    ``statement_timeout`` is enforced by the server, so a server that is frozen (SIGSTOP, a
    hung VM, a black-holed network) never enforces it, and libpq waits forever. One thread
    per store checks the open transactions twice a second and shuts down the socket of any
    past its deadline; the blocked call then fails with OperationalError, which the store
    turns into :class:`DatabaseUnavailable` (HTTP 503), and the connection is discarded.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._open: dict[int, tuple[float, Any]] = {}
        self._cut: set[int] = set()
        self._next = 0
        threading.Thread(target=self._run, name="veritee-db-watchdog", daemon=True).start()

    def arm(self, conn: Any) -> int:
        import time

        with self._lock:
            self._next += 1
            self._open[self._next] = (time.monotonic() + self.limit, conn)
            return self._next

    def disarm(self, ticket: int) -> bool:
        """Forget ``ticket``; True when its connection was cut."""
        with self._lock:
            self._open.pop(ticket, None)
            if ticket in self._cut:
                self._cut.discard(ticket)
                return True
            return False

    def _run(self) -> None:
        import socket
        import time

        while True:
            time.sleep(0.5)
            now = time.monotonic()
            with self._lock:
                late = [(t, c) for t, (d, c) in self._open.items() if d < now]
                for ticket, _ in late:
                    self._open.pop(ticket, None)
                    self._cut.add(ticket)
            for _, conn in late:
                with contextlib.suppress(Exception):
                    sock = socket.socket(fileno=os.dup(conn.fileno()))
                    with sock:
                        sock.shutdown(socket.SHUT_RDWR)


class Store:
    """A database: a connection source plus the migrations. Thread-safe."""

    def __init__(self, url: str, *, connect_timeout: int = 5,
                 statement_timeout_ms: int = 5000) -> None:
        parts = urlsplit(url)
        self.connect_timeout = connect_timeout
        self.statement_timeout_ms = statement_timeout_ms
        self.url = url
        if parts.scheme == "sqlite":
            self.dialect = "sqlite"
            path = url[len("sqlite://"):]
            # sqlite:///rel.db is relative, sqlite:////abs.db absolute (SQLAlchemy's rule).
            path = path[1:] if path.startswith("/") else path
            if not path or path == ":memory:":
                # Each connection would see its own empty database.
                raise ConfigError("database_url: got an in-memory SQLite database, want a file "
                                  "(sqlite:///path/to/veritee.db)")
            self.path = Path(path)
        elif parts.scheme in ("postgresql", "postgres"):
            self.dialect = "postgresql"
        else:
            raise ConfigError(f"database_url: got scheme {parts.scheme!r}, want sqlite:/// or "
                              "postgresql://")
        # Idle connections, most recent last: deque's append and pop are atomic (no lock).
        self._pool: collections.deque[Any] = collections.deque()
        self._closed = False
        # The row-MAC and audit keys (set by create_app once the data key is unwrapped).
        self.integrity: StateIntegrity | None = None
        # (integrity, the audit head's stored columns) as last written here: see audit_append.
        self._audit_head: tuple[StateIntegrity, tuple[Any, ...]] | None = None
        # Rows whose MAC this process checked, with the key it checked them under: _checked.
        self._verified_rows: dict[tuple[Any, ...], StateIntegrity] = {}
        # SQLite: one writer per process at a time, queued here instead of in SQLite's busy
        # handler, which sleeps with growing back-off and wrecks latency under load.
        self._write_lock = threading.Lock()
        self._watchdog: _Watchdog | None = None

    # -- connections ------------------------------------------------------------------------
    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            if not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, mode=0o700)
            if not self.path.exists():
                # Created owner-only (0600): the database holds the wrapped keys and secrets.
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            timeout = self.statement_timeout_ms / 1000
            conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA busy_timeout={int(self.statement_timeout_ms)}")
            conn.execute("PRAGMA foreign_keys=ON")
            return conn
        import psycopg

        try:
            pg = psycopg.connect(self.url, autocommit=True,
                                 connect_timeout=self.connect_timeout)
            # Server-side bounds: a statement or a lock wait never runs past the timeout.
            pg.execute(f"SET statement_timeout = {int(self.statement_timeout_ms)}")
            pg.execute(f"SET lock_timeout = {int(self.statement_timeout_ms)}")
            return pg
        except psycopg.Error as exc:
            # The detail (host, port, driver text) goes to the log, never to a client.
            raise DatabaseUnavailable(f"connect: {str(exc).splitlines()[0] if str(exc) else ''}"
                                      ) from None

    def _acquire(self) -> Any:
        try:
            return self._pool.pop()
        except IndexError:
            return self._connect()

    def _release(self, conn: Any, *, broken: bool) -> None:
        if broken or self._closed or len(self._pool) >= 32:
            # Closing a broken connection may fail too; there is nothing more to do.
            with contextlib.suppress(Exception):
                conn.close()
            return
        self._pool.append(conn)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        """A transaction: commit on clean exit, roll back on any exception."""
        conn = self._acquire()
        broken = False
        try:
            if self.dialect == "sqlite":
                with self._write_lock if write else contextlib.nullcontext():
                    try:
                        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                        try:
                            yield Tx(self, conn)
                        except BaseException:
                            conn.execute("ROLLBACK")
                            raise
                        conn.execute("COMMIT")
                    except sqlite3.OperationalError as exc:
                        # Locked past the busy timeout, disk I/O, a vanished file.
                        broken = True
                        raise DatabaseUnavailable(f"sqlite: {exc}") from None
            else:
                import psycopg

                if self._watchdog is None:
                    self._watchdog = _Watchdog(self.statement_timeout_ms / 1000 + 2.0)
                ticket = self._watchdog.arm(conn)
                try:
                    with conn.transaction():
                        yield Tx(self, conn)
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    # Connection lost, server gone, statement or lock timeout.
                    broken = True
                    raise DatabaseUnavailable(f"postgresql: {type(exc).__name__}: "
                                              f"{str(exc).splitlines()[0] if str(exc) else ''}"
                                              ) from None
                finally:
                    if self._watchdog.disarm(ticket):
                        broken = True  # its socket was cut: never reuse it
        finally:
            self._release(conn, broken=broken or getattr(conn, "closed", False) is True)

    def ping(self) -> None:
        """Raise unless the database answers (for /readyz)."""
        with self.transaction(write=False) as tx:
            tx.one("SELECT 1")

    def migrate(self) -> list[int]:
        """Apply missing migrations; return the versions applied now. Safe to race."""
        applied_now: list[int] = []
        with self.transaction() as tx:
            tx.lock(_LOCK_MIGRATE)
            tx.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY "
                       "KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
            done = {int(r[0]) for r in tx.all("SELECT version FROM schema_migrations")}
            for m in MIGRATIONS:
                if m.version in done:
                    continue
                for stmt in render(m, self.dialect):
                    tx.execute(stmt)
                tx.execute("INSERT INTO schema_migrations (version, name, applied_at) "
                           "VALUES (?, ?, CURRENT_TIMESTAMP)", (m.version, m.name))
                applied_now.append(m.version)
        return applied_now

    def schema_version(self) -> int:
        """The highest applied migration (0 for an empty database)."""
        with self.transaction(write=False) as tx:
            try:
                row = tx.one("SELECT MAX(version) FROM schema_migrations")
            except Exception:
                raise ConfigError("database has no veritee schema (run the service once or "
                                  "check database_url)") from None
            return int(row[0]) if row and row[0] is not None else 0

    def close(self) -> None:
        """Close pooled connections."""
        self._closed = True
        while True:
            try:
                self._pool.pop().close()
            except IndexError:
                return


def open_store(url: str, *, migrate: bool = True, connect_timeout: int = 5,
               statement_timeout_ms: int = 5000) -> Store:
    """Open the database at ``url`` and (by default) bring its schema up to date."""
    store = Store(url, connect_timeout=connect_timeout,
                  statement_timeout_ms=statement_timeout_ms)
    if migrate:
        store.migrate()
    return store
