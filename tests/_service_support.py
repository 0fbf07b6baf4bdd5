"""Shared support for the service tests (fixtures re-exported by tests/service/conftest.py).

PostgreSQL tests use a throwaway database created for the session and dropped afterwards,
with a fresh schema per test; they are skipped when 127.0.0.1:5432 does not answer.
"""

from __future__ import annotations

import base64
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from veritee.formats.sevsnp import GuestPolicy, Product
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import (
    EmulatedAmdVendor,
    EmulatedSnpGuest,
    InsecureEmulatedSnpMachine,
)
from veritee.service import MasterKey, Settings, create_app
from veritee.service.core import create_admin_token
from veritee.service.server import LoopbackServer
from veritee.service.storage import Store, open_store

PG_ADMIN_URL = os.environ.get("VERITEE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throwaway PostgreSQL database URL for the session (dropped at the end)."""
    if not pg_available():
        pytest.skip("PostgreSQL is not reachable at 127.0.0.1:5432")
    import psycopg

    name = f"veritee_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_schema_url(database_url: str) -> str:
    """A fresh schema in the session database, as a URL whose search_path selects it."""
    import psycopg

    schema = f"t_{secrets.token_hex(5)}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{database_url}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/veritee.db"
    return pg_schema_url(request.getfixturevalue("pg_database"))


@pytest.fixture(scope="session")
def vendor() -> EmulatedAmdVendor:
    """One emulated AMD vendor (RSA-2048: fast; the verifier path is the same)."""
    return EmulatedAmdVendor.generate(Product.MILAN, key_size=2048)


@pytest.fixture(scope="session")
def machine(vendor: EmulatedAmdVendor) -> InsecureEmulatedSnpMachine:
    """The emulated host the attesting guests run on."""
    return InsecureEmulatedSnpMachine(vendor)


def image(label: bytes) -> Any:
    """A one-page guest image whose launch digest depends on ``label``."""
    return simple_guest_image(label.ljust(4096, b"\0"))


@dataclass
class Guests:
    """Guests A and B (both known to the verifier), C (unknown) and a debug guest."""

    a: EmulatedSnpGuest
    b: EmulatedSnpGuest
    unknown: EmulatedSnpGuest
    debug: EmulatedSnpGuest


@pytest.fixture(scope="session")
def guests(machine: InsecureEmulatedSnpMachine) -> Guests:
    return Guests(a=machine.launch(image(b"workload A")),
                  b=machine.launch(image(b"workload B")),
                  unknown=machine.launch(image(b"workload C, not registered")),
                  debug=machine.launch(image(b"workload A"),
                                       policy=GuestPolicy(smt=True, debug=True)))


class Clock:
    """A clock tests can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset





@dataclass
class Service:
    """A running service with its store, admin token, clock and guests' resources."""

    url: str
    store: Store
    admin: str
    clock: Clock
    app: Any
    server: LoopbackServer
    http: httpx.Client

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin}"}

    def audit(self) -> list[Any]:
        with self.store.transaction(write=False) as tx:
            return tx.audit_rows()

    def refusals(self) -> list[Any]:
        return [r for r in self.audit() if r.outcome == "refused"]

    def close(self) -> None:
        """Stop the server and release its client and database connections."""
        self.http.close()
        self.server.stop()
        self.store.close()


def challenge_nonce(svc: Service) -> bytes:
    """A fresh nonce from ``POST /v1/challenge`` (base64url decoded)."""
    text = svc.http.post(f"{svc.url}/v1/challenge").json()["nonce"]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


SECRET_A = b"model key for A: 7f3a9c"
SECRET_B = b"database password for B"


def provision(svc: Service, guests: Guests) -> None:
    """Reference values for A and B, a resource for each pinned to its own workload."""
    h = svc.admin_headers()
    for name, g in (("a", guests.a), ("b", guests.b)):
        r = svc.http.put(f"{svc.url}/v1/admin/reference-values/{name}", headers=h,
                         json={"kind": "measurement", "value": g.measurement.hex()})
        assert r.status_code == 201, r.text
    for path, secret, g in (("apps/a/key", SECRET_A, guests.a),
                            ("apps/b/password", SECRET_B, guests.b)):
        r = svc.http.put(f"{svc.url}/v1/admin/resources/{path}", headers=h,
                         json={"secret": base64.b64encode(secret).decode(),
                               "policy": {"measurements": [g.measurement.hex()]}})
        assert r.status_code == 200, r.text


def crl_dir(vendor: EmulatedAmdVendor, path: Path | None = None) -> str:
    """A directory holding the emulated vendor's current ARK CRL (the service's
    ``amd_crl_dir``: revocation is required by default)."""
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives.serialization import Encoding

    path = path or Path(tempfile.mkdtemp(prefix="veritee-amd-crl-"))
    path.mkdir(parents=True, exist_ok=True)
    crl = vendor.crl(datetime.now(UTC))
    (path / "ark.crl").write_bytes(crl.public_bytes(Encoding.PEM))
    return str(path)


def start_service(database_url: str, machine: InsecureEmulatedSnpMachine, *,
                  master: MasterKey, clock: Clock | None = None, anchors: Any = None,
                  **overrides: Any) -> Service:
    if overrides.get("require_crl", True):
        overrides.setdefault("amd_crl_dir", crl_dir(machine.vendor))
    settings = Settings(database_url=database_url, dev_mode=True, key_source="emulated",
                        emulated_machine_dir="/nonexistent", **overrides)
    clock = clock or Clock()
    store = open_store(database_url, statement_timeout_ms=settings.db_statement_timeout_ms)
    app = create_app(settings, master_key=master, anchors=anchors or machine.anchors(),
                     store=store,
                     clock=clock)
    server = LoopbackServer(app).start()
    _, token = create_admin_token(store, "test admin", "admin")
    return Service(url=server.url, store=store, admin=token, clock=clock, app=app,
                   server=server, http=httpx.Client(timeout=10))


@pytest.fixture
def service_factory(machine: InsecureEmulatedSnpMachine
                    ) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def make(database_url: str, **kw: Any) -> Service:
        kw.setdefault("master", MasterKey(b"\x11" * 32))
        svc = start_service(database_url, machine, **kw)
        started.append(svc)
        return svc

    yield make
    for svc in started:
        svc.close()


@pytest.fixture
def service(service_factory: Callable[..., Service], database_url: str,
            guests: Guests) -> Service:
    """A provisioned, running service on a fresh database (SQLite and PostgreSQL)."""
    svc = service_factory(database_url)
    provision(svc, guests)
    return svc
