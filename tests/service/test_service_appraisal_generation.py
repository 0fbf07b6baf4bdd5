"""The appraisal state's generation (migration 4, issue 14): an attestation reads one row to
know whether the appraisal policies and reference values it built from changed.

What must hold, on SQLite and PostgreSQL: every write to those rows moves the generation
(whatever writes it, raw SQL included); a change another process makes is used by the next
attestation; rows changed without moving it (a writer who disabled the triggers) change
nothing the service uses, and are refused once it moves; with the generation row gone or
garbled every attestation reads and checks every row, as before migration 4.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.client import evidence_for
from veritee.service.core import Broker
from veritee.service.integrity import IntegrityViolation
from veritee.service.problems import AttestationRejected
from veritee.service.storage import Store, open_store

from _service_support import Guests, Service


def _broker(svc: Service) -> Broker:
    broker = svc.app.state.broker
    assert isinstance(broker, Broker)
    return broker


def _attest(broker: Broker, guest: Any) -> str:
    """The status of an attestation of ``guest``; AttestationRejected when checks fail."""
    key = ec.generate_private_key(ec.SECP384R1())
    body = evidence_for(guest, broker.challenge().nonce, key)
    out = broker.attest(body["evidence"], body.get("attached"), body["runtime_data"]["nonce"],
                        body["runtime_data"]["key"])
    return str(out.result.status)


def _generation(store: Store) -> int | None:
    with store.transaction() as tx:
        return tx.appraisal_generation()


def _raw(store: Store, sql: str, params: tuple[Any, ...] = ()) -> None:
    """A database writer without the key: SQL straight to the database."""
    with store.transaction() as tx:
        tx.execute(sql, params)


@contextmanager
def _triggers_off(store: Store, table: str) -> Iterator[None]:
    """A writer who can also switch the generation's triggers off (then back on)."""
    if store.dialect == "postgresql":
        _raw(store, f"ALTER TABLE {table} DISABLE TRIGGER {table}_generation")
        yield
        _raw(store, f"ALTER TABLE {table} ENABLE TRIGGER {table}_generation")
        return
    with store.transaction() as tx:
        saved = [str(r[0]) for r in tx.all(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? "
            "AND name LIKE '%_generation'", (table,))]
        assert len(saved) == 3  # insert, update, delete
        for op in ("insert", "update", "delete"):
            tx.execute(f"DROP TRIGGER {table}_{op}_generation")
    yield
    with store.transaction() as tx:
        for sql in saved:
            tx.execute(sql)


@pytest.mark.parametrize("sql, params", [
    ("INSERT INTO reference_values (name, kind, value, updated_at, mac, scheme) "
     "VALUES ('x', 'measurement', 'ab', 0, 'forged', 'sevsnp')", ()),
    ("UPDATE reference_values SET value = 'ab' WHERE name = 'a'", ()),
    ("UPDATE reference_values SET updated_at = updated_at WHERE name = 'b'", ()),
    ("DELETE FROM reference_values WHERE name = 'b'", ()),
    ("INSERT INTO appraisal_policies (policy_id, body, updated_at, mac) "
     "VALUES ('p', '{}', 0, 'forged')", ()),
    ("UPDATE appraisal_policies SET body = '{}'", ()),
    ("DELETE FROM appraisal_policies", ()),
], ids=["reference insert", "reference update", "reference touch", "reference delete",
        "policy insert", "policy update", "policy delete"])
def test_every_write_to_the_rows_moves_the_generation(service: Service, sql: str,
                                                      params: tuple[Any, ...]) -> None:
    r = service.http.put(f"{service.url}/v1/admin/policies/default",
                         headers=service.admin_headers(), json={"min_guest_svn": 0})
    assert r.status_code == 201, r.text
    before = _generation(service.store)
    assert isinstance(before, int)
    _raw(service.store, sql, params)
    assert _generation(service.store) != before


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgresql_truncate_moves_the_generation(service: Service) -> None:
    """TRUNCATE skips row triggers: the statement trigger covers it (SQLite has none)."""
    assert service.store.dialect == "postgresql"
    for table in ("reference_values", "appraisal_policies"):
        before = _generation(service.store)
        _raw(service.store, f"TRUNCATE {table}")
        assert _generation(service.store) != before


def test_admin_writes_move_the_generation(service: Service, guests: Guests) -> None:
    """Through the API too (each write: a new generation; a read: none)."""
    h, url = service.admin_headers(), service.url
    seen = [_generation(service.store)]
    for method, path, body in [
            ("PUT", "/v1/admin/reference-values/c", {"kind": "measurement",
                                                     "value": guests.unknown.measurement.hex()}),
            ("DELETE", "/v1/admin/reference-values/c", None),
            ("PUT", "/v1/admin/policies/default", {"min_guest_svn": 0}),
            ("DELETE", "/v1/admin/policies/default", None)]:
        r = service.http.request(method, url + path, headers=h, json=body)
        assert r.status_code in (200, 201, 204), r.text
        seen.append(_generation(service.store))
    assert len(set(seen)) == len(seen), seen
    assert service.http.get(url + "/v1/admin/reference-values", headers=h).status_code == 200
    assert _generation(service.store) == seen[-1]


def test_a_change_another_process_writes_is_used_at_once(service: Service,
                                                         guests: Guests) -> None:
    """A replica's write (authenticated, through its own connection) reaches this broker's
    next attestation: the kept policy is dropped when the generation moves."""
    broker = _broker(service)
    with pytest.raises(AttestationRejected):
        _attest(broker, guests.unknown)
    assert _attest(broker, guests.a) == "affirming"  # the policy is kept now
    other = open_store(service.store.url)  # another process's connection
    other.integrity = service.store.integrity
    try:
        with other.transaction() as tx:
            tx.reference_put("c", "measurement", guests.unknown.measurement.hex(), time.time())
        assert _attest(broker, guests.unknown) == "affirming"
        with other.transaction() as tx:
            tx.reference_delete("a")
        with pytest.raises(AttestationRejected):
            _attest(broker, guests.a)
    finally:
        other.close()


def test_rows_changed_without_moving_the_generation_change_nothing(
        service: Service, guests: Guests) -> None:
    """A writer who switched the triggers off and changed a row: the service goes on with
    what it built from the authenticated rows (the forged value is not used), and refuses
    the row once the generation moves."""
    broker, store = _broker(service), service.store
    assert _attest(broker, guests.a) == "affirming"
    with _triggers_off(store, "reference_values"):
        # Reference 'a' now names the unknown guest: unauthenticated, and not seen.
        _raw(store, "UPDATE reference_values SET value = ? WHERE name = 'a'",
             (guests.unknown.measurement.hex(),))
        with pytest.raises(AttestationRejected):
            _attest(broker, guests.unknown)
        assert _attest(broker, guests.a) == "affirming"
    _raw(store, "UPDATE state_generations SET generation = generation + 1")
    with pytest.raises(IntegrityViolation):
        _attest(broker, guests.a)
    with pytest.raises(IntegrityViolation):  # every time, not only once
        _attest(broker, guests.unknown)


@pytest.mark.parametrize("garble", ["DELETE FROM state_generations",
                                    "UPDATE state_generations SET name = 'other'"],
                         ids=["row deleted", "row renamed"])
def test_without_a_generation_every_row_is_read(service: Service, guests: Guests,
                                                garble: str) -> None:
    """The generation row gone: nothing is kept, a tampered row is refused at once."""
    broker, store = _broker(service), service.store
    assert _attest(broker, guests.a) == "affirming"
    _raw(store, garble)
    assert _generation(store) is None
    assert _attest(broker, guests.a) == "affirming"
    _raw(store, "UPDATE reference_values SET value = ? WHERE name = 'a'",
         (guests.unknown.measurement.hex(),))
    with pytest.raises(IntegrityViolation):
        _attest(broker, guests.a)


def test_a_generation_that_is_not_a_number_is_none(tmp_path: Path) -> None:
    """SQLite stores any type in the column: text there means no generation."""
    store = open_store(f"sqlite:///{tmp_path}/g.db")
    try:
        _raw(store, "UPDATE state_generations SET generation = 'x'")
        assert _generation(store) is None
        _raw(store, "UPDATE state_generations SET generation = 1.5")
        assert _generation(store) is None
    finally:
        store.close()


def test_each_database_starts_at_its_own_generation(tmp_path: Path) -> None:
    """Random at creation: a database put in another's place does not share its generation
    (nor what a service kept under it) by chance."""
    found = set()
    for i in range(4):
        store = open_store(f"sqlite:///{tmp_path}/{i}.db")
        try:
            found.add(_generation(store))
        finally:
            store.close()
    assert None not in found and len(found) == 4



def test_a_database_from_before_migration_4_is_upgraded(database_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A version-3 database with rows in it gains the generation and its triggers when the
    service opens it, on either backend."""
    import veritee.service.storage as storage

    monkeypatch.setattr(storage, "MIGRATIONS", storage.MIGRATIONS[:3])
    old = open_store(database_url)
    try:
        assert old.schema_version() == 3
        _raw(old, "INSERT INTO reference_values (name, kind, value, updated_at, mac, scheme) "
             "VALUES ('r', 'measurement', 'ab', 0, 'm', 'sevsnp')")
    finally:
        old.close()
    monkeypatch.undo()
    store = open_store(database_url)
    try:
        assert store.schema_version() == 4
        before = _generation(store)
        assert isinstance(before, int)
        _raw(store, "DELETE FROM reference_values WHERE name = 'r'")
        assert _generation(store) != before
    finally:
        store.close()
