"""The one schema, as numbered migrations applied in order inside a transaction each.

Each migration is written once with placeholders filled per dialect, so SQLite and
PostgreSQL share the schema text: ``{real}`` (REAL / DOUBLE PRECISION), ``{bigint}`` (INTEGER /
BIGINT), ``{random}`` (a random non-negative BIGINT), and two statements that stand for
triggers, spelled differently in each: the append-only guard on the audit log
(``{audit_guard}``) and the appraisal generation's (``{appraisal_generation}``).
``schema_migrations`` records what was applied; applying is idempotent and safe when several
processes start at once (the caller holds a lock: ``BEGIN IMMEDIATE`` on SQLite,
an advisory lock on PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "Migration", "render"]


@dataclass(frozen=True)
class Migration:
    """One schema step: a version, a name, and dialect-neutral SQL statements."""

    version: int
    name: str
    statements: tuple[str, ...]


_AUDIT_GUARD_SQLITE = (
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END",
)
_AUDIT_GUARD_PG = (
    "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
    "CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    # TRUNCATE bypasses row triggers; guard it too.
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
)

# The appraisal state's generation (migration 4): any change to a policy or reference row,
# however written, moves it, so a service that built its policies from authenticated rows
# reads one row per attestation to know they still stand. SQLite triggers fire per row;
# PostgreSQL's per statement (TRUNCATE included).
_GENERATION_TABLES = ("appraisal_policies", "reference_values")
_BUMP = "UPDATE state_generations SET generation = generation + 1 WHERE name = 'appraisal'"
_GENERATION_SQLITE = tuple(
    f"CREATE TRIGGER {table}_{op.lower()}_generation AFTER {op} ON {table} BEGIN {_BUMP}; END"
    for table in _GENERATION_TABLES for op in ("INSERT", "UPDATE", "DELETE"))
_GENERATION_PG = (
    "CREATE FUNCTION appraisal_generation_bump() RETURNS trigger LANGUAGE plpgsql AS $$ "
    f"BEGIN {_BUMP}; RETURN NULL; END $$",
    *(f"CREATE TRIGGER {table}_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON "
      f"{table} FOR EACH STATEMENT EXECUTE FUNCTION appraisal_generation_bump()"
      for table in _GENERATION_TABLES),
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", (
        # Nonces are stored by SHA-256 so a database dump does not hand out live challenges.
        "CREATE TABLE nonces (nonce_hash TEXT PRIMARY KEY, created_at {real} NOT NULL, "
        "expires_at {real} NOT NULL, used_at {real})",
        "CREATE INDEX nonces_expires ON nonces (expires_at)",
        # SevSnpPolicy documents (policy_to_mapping JSON) used to appraise evidence.
        "CREATE TABLE appraisal_policies (policy_id TEXT PRIMARY KEY, body TEXT NOT NULL, "
        "updated_at {real} NOT NULL)",
        # Reference values: accepted launch measurements, merged into the appraisal policy.
        "CREATE TABLE reference_values (name TEXT PRIMARY KEY, kind TEXT NOT NULL "
        "CHECK (kind IN ('measurement')), value TEXT NOT NULL, updated_at {real} NOT NULL)",
        # Secrets: AES-256-GCM under the sealed master key, AAD = path; policy is JSON.
        "CREATE TABLE resources (path TEXT PRIMARY KEY, policy TEXT NOT NULL, "
        "secret_ciphertext TEXT NOT NULL, version {bigint} NOT NULL, updated_at {real} NOT NULL)",
        "CREATE TABLE admin_tokens (token_id TEXT PRIMARY KEY, name TEXT NOT NULL, "
        "token_hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL CHECK (role IN ('admin', 'reader')),"
        " created_at {real} NOT NULL, revoked_at {real})",
        # The EAR signing key, its private half encrypted under the master key.
        "CREATE TABLE signing_keys (kid TEXT PRIMARY KEY, alg TEXT NOT NULL, "
        "private_ciphertext TEXT NOT NULL, public_jwk TEXT NOT NULL, created_at {real} NOT NULL,"
        " retired_at {real})",
        "CREATE TABLE audit_log (seq {bigint} PRIMARY KEY, at TEXT NOT NULL, event TEXT NOT NULL,"
        " outcome TEXT NOT NULL, subject TEXT NOT NULL, detail TEXT NOT NULL, "
        "prev_hash TEXT NOT NULL, entry_hash TEXT NOT NULL)",
        "{audit_guard}",
    )),
    # Integrity of the trust state (issue 9): a MAC per row under a key derived from the data
    # key, which is stored wrapped by the master key. Rows written before this migration have
    # no MAC and are refused on read (re-provision them; see docs/service.md).
    Migration(2, "row integrity and the wrapped data key", (
        "ALTER TABLE appraisal_policies ADD COLUMN mac TEXT",
        "ALTER TABLE reference_values ADD COLUMN mac TEXT",
        "ALTER TABLE resources ADD COLUMN mac TEXT",
        "ALTER TABLE admin_tokens ADD COLUMN mac TEXT",
        "ALTER TABLE signing_keys ADD COLUMN mac TEXT",
        "CREATE TABLE service_keys (name TEXT PRIMARY KEY, wrapped TEXT NOT NULL, "
        "master_key_id TEXT NOT NULL, created_at {real} NOT NULL)",
    )),
    # Reference values per scheme (issue 11): rows written before are SEV-SNP's.
    Migration(3, "reference values per scheme", (
        "ALTER TABLE reference_values ADD COLUMN scheme TEXT NOT NULL DEFAULT 'sevsnp'",
    )),
    # Issue 14: one row tells whether the appraisal policies and reference values changed,
    # instead of reading every row per attestation. It starts at a random value, so two
    # databases (a restored or replaced one) do not share a generation by chance.
    Migration(4, "appraisal state generation", (
        "CREATE TABLE state_generations (name TEXT PRIMARY KEY, generation {bigint} NOT NULL)",
        "INSERT INTO state_generations (name, generation) VALUES ('appraisal', {random})",
        "{appraisal_generation}",
    )),
)


def render(migration: Migration, dialect: str) -> list[str]:
    """The statements of ``migration`` for ``dialect`` (``sqlite`` or ``postgresql``)."""
    expand: dict[str, tuple[str, ...]]
    if dialect == "sqlite":
        subst = {"real": "REAL", "bigint": "INTEGER", "random": "abs(random() / 2)"}
        expand = {"{audit_guard}": _AUDIT_GUARD_SQLITE,
                  "{appraisal_generation}": _GENERATION_SQLITE}
    else:
        subst = {"real": "DOUBLE PRECISION", "bigint": "BIGINT",
                 "random": "floor(random() * 4e18)::bigint"}
        expand = {"{audit_guard}": _AUDIT_GUARD_PG, "{appraisal_generation}": _GENERATION_PG}
    out: list[str] = []
    for stmt in migration.statements:
        out.extend(expand.get(stmt) or (stmt.format(**subst),))
    return out
