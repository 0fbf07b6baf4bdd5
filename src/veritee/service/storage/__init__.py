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

import contextlib
import json
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from veritee.errors import ConfigError
from veritee.service.storage.migrations import MIGRATIONS, render

__all__ = ["AuditRow", "NonceState", "Store", "Tx", "open_store"]

# Arbitrary constants naming this schema's advisory locks (PostgreSQL).
_LOCK_MIGRATE = 0x7665_7269_0001
_LOCK_AUDIT = 0x7665_7269_0002
_LOCK_KEYS = 0x7665_7269_0003


class NonceState:
    """Outcomes of consuming a nonce (strings, so they go straight into audit details)."""

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

    # -- nonces -----------------------------------------------------------------------------
    def nonce_create(self, nonce_hash: str, now: float, expires_at: float) -> None:
        """Record a fresh challenge."""
        self.execute("INSERT INTO nonces (nonce_hash, created_at, expires_at) VALUES (?, ?, ?)",
                     (nonce_hash, now, expires_at))

    def nonce_consume(self, nonce_hash: str, now: float) -> str:
        """Mark a nonce used; return :class:`NonceState` (``ok`` exactly once per nonce).

        One conditional UPDATE is the whole protocol: whichever transaction flips
        ``used_at`` first wins, in any number of processes, because the row lock (or
        SQLite's write lock) makes the second one see ``used_at`` already set.
        """
        cur = self.execute("UPDATE nonces SET used_at = ? WHERE nonce_hash = ? AND used_at IS "
                           "NULL AND expires_at > ?", (now, nonce_hash, now))
        if cur.rowcount == 1:
            return NonceState.OK
        row = self.one("SELECT used_at FROM nonces WHERE nonce_hash = ?", (nonce_hash,))
        if row is None:
            return NonceState.UNKNOWN
        return NonceState.USED if row[0] is not None else NonceState.EXPIRED

    def nonce_purge(self, before: float) -> int:
        """Forget nonces that expired before ``before`` (they would be refused anyway)."""
        return self.execute("DELETE FROM nonces WHERE expires_at < ?", (before,)).rowcount

    # -- appraisal policies and reference values ---------------------------------------------
    def policy_get(self, policy_id: str) -> dict[str, Any] | None:
        """A stored appraisal policy document, or None."""
        row = self.one("SELECT body FROM appraisal_policies WHERE policy_id = ?", (policy_id,))
        return None if row is None else dict(json.loads(row[0]))

    def policy_list(self) -> list[str]:
        """Every stored appraisal policy id."""
        return [r[0] for r in self.all("SELECT policy_id FROM appraisal_policies "
                                       "ORDER BY policy_id")]

    def policy_put(self, policy_id: str, body: dict[str, Any], now: float) -> bool:
        """Create or replace; True when it was created."""
        existed = self.one("SELECT 1 FROM appraisal_policies WHERE policy_id = ?", (policy_id,))
        if existed:
            self.execute("UPDATE appraisal_policies SET body = ?, updated_at = ? "
                         "WHERE policy_id = ?", (json.dumps(body), now, policy_id))
        else:
            self.execute("INSERT INTO appraisal_policies (policy_id, body, updated_at) "
                         "VALUES (?, ?, ?)", (policy_id, json.dumps(body), now))
        return existed is None

    def policy_delete(self, policy_id: str) -> bool:
        """Delete; True when something was deleted."""
        return self.execute("DELETE FROM appraisal_policies WHERE policy_id = ?",
                            (policy_id,)).rowcount == 1

    def reference_list(self) -> list[tuple[str, str, str]]:
        """``(name, kind, value)`` for every reference value."""
        return [(r[0], r[1], r[2]) for r in
                self.all("SELECT name, kind, value FROM reference_values ORDER BY name")]

    def reference_put(self, name: str, kind: str, value: str, now: float) -> bool:
        """Create or replace; True when it was created."""
        existed = self.one("SELECT 1 FROM reference_values WHERE name = ?", (name,))
        if existed:
            self.execute("UPDATE reference_values SET kind = ?, value = ?, updated_at = ? "
                         "WHERE name = ?", (kind, value, now, name))
        else:
            self.execute("INSERT INTO reference_values (name, kind, value, updated_at) "
                         "VALUES (?, ?, ?, ?)", (name, kind, value, now))
        return existed is None

    def reference_delete(self, name: str) -> bool:
        """Delete; True when something was deleted."""
        return self.execute("DELETE FROM reference_values WHERE name = ?",
                            (name,)).rowcount == 1

    # -- resources --------------------------------------------------------------------------
    def resource_get(self, path: str) -> tuple[dict[str, Any], str, int] | None:
        """``(policy, secret_ciphertext, version)`` or None."""
        row = self.one("SELECT policy, secret_ciphertext, version FROM resources WHERE path = ?",
                       (path,))
        return None if row is None else (dict(json.loads(row[0])), str(row[1]), int(row[2]))

    def resource_list(self) -> list[tuple[str, dict[str, Any], int]]:
        """``(path, policy, version)`` for every resource (never the secret)."""
        return [(r[0], dict(json.loads(r[1])), int(r[2])) for r in
                self.all("SELECT path, policy, version FROM resources ORDER BY path")]

    def resource_put(self, path: str, policy: dict[str, Any], ciphertext: str | None,
                     now: float) -> int:
        """Create or update (``ciphertext`` None keeps the secret); return the new version."""
        row = self.one("SELECT version FROM resources WHERE path = ?", (path,))
        if row is None:
            if ciphertext is None:
                raise ConfigError("secret: a new resource needs a secret")
            self.execute("INSERT INTO resources (path, policy, secret_ciphertext, version, "
                         "updated_at) VALUES (?, ?, ?, 1, ?)",
                         (path, json.dumps(policy), ciphertext, now))
            return 1
        version = int(row[0]) + 1
        if ciphertext is None:
            self.execute("UPDATE resources SET policy = ?, version = ?, updated_at = ? "
                         "WHERE path = ?", (json.dumps(policy), version, now, path))
        else:
            self.execute("UPDATE resources SET policy = ?, secret_ciphertext = ?, version = ?, "
                         "updated_at = ? WHERE path = ?",
                         (json.dumps(policy), ciphertext, version, now, path))
        return version

    def resource_delete(self, path: str) -> bool:
        """Delete; True when something was deleted."""
        return self.execute("DELETE FROM resources WHERE path = ?", (path,)).rowcount == 1

    # -- admin tokens -----------------------------------------------------------------------
    def token_add(self, token_id: str, name: str, token_hash: str, role: str,
                  now: float) -> None:
        """Store a new admin token by its hash."""
        self.execute("INSERT INTO admin_tokens (token_id, name, token_hash, role, created_at) "
                     "VALUES (?, ?, ?, ?, ?)", (token_id, name, token_hash, role, now))

    def token_lookup(self, token_hash: str) -> tuple[str, str, str] | None:
        """``(token_id, name, role)`` of a live token with this hash, or None."""
        row = self.one("SELECT token_id, name, role FROM admin_tokens WHERE token_hash = ? AND "
                       "revoked_at IS NULL", (token_hash,))
        return None if row is None else (str(row[0]), str(row[1]), str(row[2]))

    def token_list(self) -> list[dict[str, Any]]:
        """Every token's metadata (never the hash)."""
        return [{"token_id": r[0], "name": r[1], "role": r[2], "created_at": r[3],
                 "revoked": r[4] is not None} for r in
                self.all("SELECT token_id, name, role, created_at, revoked_at FROM admin_tokens "
                         "ORDER BY created_at")]

    def token_revoke(self, token_id: str, now: float) -> bool:
        """Revoke; True when a live token was revoked."""
        return self.execute("UPDATE admin_tokens SET revoked_at = ? WHERE token_id = ? AND "
                            "revoked_at IS NULL", (now, token_id)).rowcount == 1

    # -- signing keys -----------------------------------------------------------------------
    def signing_key_active(self) -> tuple[str, str, str, str] | None:
        """``(kid, alg, private_ciphertext, public_jwk)`` of the newest live key."""
        self.lock(_LOCK_KEYS)
        row = self.one("SELECT kid, alg, private_ciphertext, public_jwk FROM signing_keys WHERE "
                       "retired_at IS NULL ORDER BY created_at DESC LIMIT 1")
        return None if row is None else (str(row[0]), str(row[1]), str(row[2]), str(row[3]))

    def signing_key_add(self, kid: str, alg: str, private_ciphertext: str, public_jwk: str,
                        now: float) -> None:
        """Store a new signing key."""
        self.execute("INSERT INTO signing_keys (kid, alg, private_ciphertext, public_jwk, "
                     "created_at) VALUES (?, ?, ?, ?, ?)",
                     (kid, alg, private_ciphertext, public_jwk, now))

    def signing_keys_public(self) -> list[dict[str, Any]]:
        """Public JWKs of every key, live or retired (old tokens still verify until exp)."""
        return [dict(json.loads(r[0])) for r in
                self.all("SELECT public_jwk FROM signing_keys ORDER BY created_at")]

    # -- audit log --------------------------------------------------------------------------
    def audit_head(self) -> tuple[int, str]:
        """``(seq, entry_hash)`` of the last entry, ``(0, genesis)`` when empty."""
        from veritee.service.audit import GENESIS

        row = self.one("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))

    def audit_append(self, event: str, outcome: str, subject: str, detail: dict[str, Any],
                     at: str) -> AuditRow:
        """Append one chained entry; the lock gives the chain its total order."""
        from veritee.service.audit import entry_hash

        self.lock(_LOCK_AUDIT)
        seq, prev = self.audit_head()
        seq += 1
        digest = entry_hash(prev, seq=seq, at=at, event=event, outcome=outcome,
                            subject=subject, detail=detail)
        self.execute("INSERT INTO audit_log (seq, at, event, outcome, subject, detail, "
                     "prev_hash, entry_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (seq, at, event, outcome, subject,
                      json.dumps(detail, sort_keys=True, separators=(",", ":")), prev, digest))
        return AuditRow(seq, at, event, outcome, subject, detail, prev, digest)

    def audit_rows(self, after: int = 0, limit: int | None = None) -> list[AuditRow]:
        """Entries with ``seq > after`` in order."""
        sql = ("SELECT seq, at, event, outcome, subject, detail, prev_hash, entry_hash "
               "FROM audit_log WHERE seq > ? ORDER BY seq")
        params: list[Any] = [after]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [AuditRow(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]),
                         dict(json.loads(r[5])), str(r[6]), str(r[7]))
                for r in self.all(sql, params)]


class Store:
    """A database: a connection source plus the migrations. Thread-safe."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
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
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._closed = False
        # SQLite: one writer per process at a time, queued here instead of in SQLite's busy
        # handler, which sleeps with growing back-off and wrecks latency under load.
        self._write_lock = threading.Lock()

    # -- connections ------------------------------------------------------------------------
    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA foreign_keys=ON")
            return conn
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            raise ConfigError(f"database_url: cannot connect to PostgreSQL "
                              f"({str(exc).splitlines()[0]})") from None

    def _acquire(self) -> Any:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            return self._connect()

    def _release(self, conn: Any, *, broken: bool) -> None:
        if broken or self._closed or self._pool.qsize() >= 32:
            # Closing a broken connection may fail too; there is nothing more to do.
            with contextlib.suppress(Exception):
                conn.close()
            return
        self._pool.put(conn)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Tx]:
        """A transaction: commit on clean exit, roll back on any exception."""
        conn = self._acquire()
        broken = False
        try:
            if self.dialect == "sqlite":
                with self._write_lock if write else contextlib.nullcontext():
                    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    try:
                        yield Tx(self, conn)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
            else:
                import psycopg

                try:
                    with conn.transaction():
                        yield Tx(self, conn)
                except psycopg.OperationalError:
                    broken = True
                    raise
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
                self._pool.get_nowait().close()
            except queue.Empty:
                return


def open_store(url: str, *, migrate: bool = True) -> Store:
    """Open the database at ``url`` and (by default) bring its schema up to date."""
    store = Store(url)
    if migrate:
        store.migrate()
    return store
