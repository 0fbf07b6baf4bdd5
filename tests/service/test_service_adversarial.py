"""The adversarial suite: a real ``veritee serve`` subprocess on loopback, attacked from outside.

* processes: ``kill -9`` of the supervisor (its workers must follow and free the port), of a
  worker (the supervisor replaces it), and of the whole service in the middle of admin writes
  and attestations; after a restart nothing acknowledged is lost, nothing is half-written,
  the audit chain verifies and used nonces stay used;
* a second ``serve`` on a taken port fails with a clear message;
* a private PostgreSQL (``initdb``/``pg_ctl`` on its own port, never the shared 5432)
  stopped, then frozen with SIGSTOP: 503 ``service.unavailable`` problems, and recovery
  without a restart;
* the database tampered row by row, table by table, through the real process: no secret.

Skipped when the PostgreSQL server binaries are absent (the PostgreSQL parts only).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from test_service_processes import open_state

from veritee.client import AttesterClient, ServiceRefused, evidence_for
from veritee.platform.emulated.snp import EmulatedAmdVendor, InsecureEmulatedSnpMachine
from veritee.service.audit import verify_chain

from _service_support import crl_dir, image

PROBLEM = "application/problem+json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As uvicorn binds: connections the killed server left in TIME_WAIT must not count,
        # only a process still listening does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _wait(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
    return out


class Served:
    """One ``veritee serve`` subprocess."""

    def __init__(self, settings: Path, port: int, workers: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        code = "import sys, veritee.cli as c; sys.exit(c.main(sys.argv[1:]))"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "serve", "--settings", str(settings), "--port",
             str(port), "--workers", str(workers)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self) -> Served:
        def up() -> bool:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"serve exited {self.proc.returncode}: {err[-2000:]}")
            return _ready(self.url)

        _wait(up, f"{self.url} ready")
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def deployment(tmp_path: Path, vendor: EmulatedAmdVendor) -> Iterator[Any]:
    """Settings for a served instance (dev_mode, emulated key source, the test vendor)."""
    started: list[Served] = []

    def settings(database_url: str) -> Path:
        ark = tmp_path / "ark.pem"
        ark.write_bytes(vendor.ark.public_bytes(Encoding.PEM))
        path = tmp_path / "service.json"
        path.write_text(json.dumps({
            "dev_mode": True, "database_url": database_url, "key_source": "emulated",
            "emulated_machine_dir": str(tmp_path / "service-machine"),
            "master_key_file": str(tmp_path / "master.sealed"), "trust_roots": [str(ark)],
            "amd_crl_dir": crl_dir(vendor, tmp_path / "amd-crl"),
            "log_level": "warning", "db_statement_timeout_ms": 1000,
            "db_connect_timeout": 2}))
        return path

    def serve(settings_path: Path, port: int | None = None, workers: int = 2) -> Served:
        s = Served(settings_path, port or _free_port(), workers)
        started.append(s)
        return s

    yield settings, serve
    for s in started:
        s.stop()


def _admin_token(settings: Path) -> str:
    """An admin token written as ``veritee admin token-create`` does (with the master key)."""
    from veritee.service.core import create_admin_token

    store = open_state(settings)
    try:
        return create_admin_token(store, "adversary test", "admin")[1]
    finally:
        store.close()


def _provision(url: str, admin: str, measurement: str) -> None:
    h = {"Authorization": f"Bearer {admin}"}
    httpx.put(f"{url}/v1/admin/reference-values/a", headers=h, timeout=10,
              json={"kind": "measurement", "value": measurement}).raise_for_status()
    httpx.put(f"{url}/v1/admin/resources/apps/a/key", headers=h, timeout=10, json={
        "secret": base64.b64encode(b"secret of A").decode(),
        "policy": {"measurements": [measurement]}}).raise_for_status()


def test_worker_and_supervisor_kill9_then_restart_and_a_taken_port(
        deployment: Any, tmp_path: Path) -> None:
    """Finding 7: kill -9 of the supervisor left its workers serving the port, and a restart
    then failed with "Address already in use". Now: a killed worker is replaced; killed
    supervisor's workers exit and free the port; the restart opens the same keys; and a
    second serve on a taken port fails with a clear message, not a traceback."""
    settings_for, serve = deployment
    settings = settings_for(f"sqlite:///{tmp_path}/svc.db")
    first = serve(settings).wait_ready()
    kid = httpx.get(f"{first.url}/v1/jwks", timeout=5).json()["keys"][0]["kid"]
    victim = _children(first.proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    _wait(lambda: len([p for p in _children(first.proc.pid) if p != victim]) >= 2,
          "the supervisor starts a replacement worker")
    _wait(lambda: _ready(first.url), "ready again after a worker died")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    _wait(lambda: _port_free(first.port), "the orphaned workers exit and free the port")
    again = serve(settings, port=first.port).wait_ready()
    assert httpx.get(f"{again.url}/v1/jwks", timeout=5).json()["keys"][0]["kid"] == kid
    second = serve(settings, port=first.port, workers=1)
    assert second.proc.wait(timeout=120) != 0
    err = second.proc.stderr.read().decode() if second.proc.stderr else ""
    assert f"cannot listen on 127.0.0.1:{first.port}" in err and "Traceback" not in err


def test_kill9_of_the_whole_service_loses_nothing_acknowledged(
        deployment: Any, tmp_path: Path, machine: InsecureEmulatedSnpMachine) -> None:
    """Admin writes and attestations acknowledged before a kill -9 of every process are all
    there after the restart; the audit chain verifies; a used nonce stays used."""
    settings_for, serve = deployment
    settings = settings_for(f"sqlite:///{tmp_path}/svc.db")
    served = serve(settings, workers=1).wait_ready()
    admin = _admin_token(settings)
    guest = machine.launch(image(b"workload A"))
    _provision(served.url, admin, guest.measurement.hex())
    h = {"Authorization": f"Bearer {admin}"}
    nonce_text = httpx.post(f"{served.url}/v1/challenge", timeout=5).json()["nonce"]
    nonce = base64.urlsafe_b64decode(nonce_text + "=" * (-len(nonce_text) % 4))
    body = evidence_for(guest, nonce, ec.generate_private_key(ec.SECP384R1()))
    assert httpx.post(f"{served.url}/v1/attest", json=body, timeout=30).status_code == 200
    # Admin writes keep coming while every process is killed: some are acknowledged, one
    # may be in flight. After the restart all acknowledged ones are there, and every row
    # present (whole or not at all) still authenticates.
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        for i in range(10_000):
            if stop.is_set():
                return
            try:
                r = httpx.put(f"{served.url}/v1/admin/reference-values/r{i}", headers=h,
                              timeout=10, json={"kind": "measurement", "value": "ab" * 48})
            except httpx.HTTPError:
                return
            if r.status_code in (200, 201):
                acknowledged.append(f"r{i}")

    thread = threading.Thread(target=writer)
    thread.start()
    _wait(lambda: len(acknowledged) >= 3, "some admin writes acknowledged")
    for pid in [*_children(served.proc.pid), served.proc.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stop.set()
    thread.join(timeout=60)
    served.proc.wait()
    _wait(lambda: _port_free(served.port), "port free after kill -9")
    again = serve(settings, port=served.port, workers=1).wait_ready()
    r = httpx.get(f"{again.url}/v1/admin/reference-values", headers=h, timeout=5)
    assert r.status_code == 200, r.text  # every row present authenticates
    refs = r.json()
    names = {r["name"] for r in refs["reference_values"]}
    assert set(acknowledged) <= names
    replay = httpx.post(f"{again.url}/v1/attest", json=body, timeout=30)
    assert (replay.status_code, replay.json()["code"]) == (403, "nonce.used")
    with AttesterClient(again.url, guest, dev_mode=True) as client:
        assert client.fetch("apps/a/key") == b"secret of A"
    store = open_state(settings)
    with store.transaction(write=False) as tx:
        assert verify_chain(tx.audit_rows(), store.integrity).ok
    store.close()


# -- tampering through the real process ---------------------------------------------------

_TAMPER = [
    ("resources", "UPDATE resources SET policy = '{{\"allow_any_workload\": true}}'"),
    ("resources", "UPDATE resources SET version = version + 1"),
    ("resources", "UPDATE resources SET secret_ciphertext = "
                  "substr(secret_ciphertext, 1, length(secret_ciphertext) - 4) || 'AAA='"),
    ("admin_tokens", "UPDATE admin_tokens SET role = 'admin'"),
    ("resources", "UPDATE resources SET mac = NULL"),
    ("reference_values", "INSERT INTO reference_values (name, kind, value, updated_at) VALUES "
                         "('b', 'measurement', '{b}', 0)"),
    ("reference_values", "UPDATE reference_values SET value = '{b}'"),
    ("appraisal_policies", "INSERT INTO appraisal_policies (policy_id, body, updated_at) VALUES "
                           "('default', '{{\"policy_id\": \"default\"}}', 0)"),
]


def test_database_tampered_row_by_row_releases_no_secret(
        deployment: Any, tmp_path: Path, machine: InsecureEmulatedSnpMachine) -> None:
    """Guest B (not registered) tries to get A's secret after each single tampering; so does
    guest A after tampering that would change what it gets. Nothing leaves."""
    import sqlite3

    settings_for, serve = deployment
    db = tmp_path / "svc.db"
    settings = settings_for(f"sqlite:///{db}")
    served = serve(settings, workers=1).wait_ready()
    admin = _admin_token(settings)
    a, b = machine.launch(image(b"workload A")), machine.launch(image(b"workload B"))
    _provision(served.url, admin, a.measurement.hex())
    con = sqlite3.connect(db, isolation_level=None)
    try:
        for table, sql in _TAMPER:
            # The service reads the trust state on every request: tamper it live.
            saved = con.execute(f"SELECT * FROM {table}").fetchall()
            con.execute(sql.format(b=b.measurement.hex()))
            with AttesterClient(served.url, b, dev_mode=True) as client, \
                    pytest.raises(ServiceRefused) as info:
                client.fetch("apps/a/key")
            assert info.value.status in (403, 500), (sql, info.value.problem)
            with AttesterClient(served.url, a, dev_mode=True) as client:
                try:
                    got = client.fetch("apps/a/key")
                except ServiceRefused as refused:
                    assert refused.code == "state.integrity", (sql, refused.problem)
                else:
                    assert got == b"secret of A"  # an untouched row still serves its owner
            con.execute(f"DELETE FROM {table}")
            for row in saved:
                con.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * len(row))})",
                            row)
    finally:
        con.close()
    with AttesterClient(served.url, a, dev_mode=True) as client:
        assert client.fetch("apps/a/key") == b"secret of A"


# -- a private PostgreSQL, stopped and frozen ----------------------------------------------

def _pg_bin() -> Path | None:
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / "initdb").exists() and (base / "pg_ctl").exists():
            return base
    return None


@pytest.fixture(scope="module")
def private_pg() -> Iterator[dict[str, Any]]:
    """A PostgreSQL of our own: initdb in a temp dir, pg_ctl on a free port (never 5432)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    import tempfile

    # Not under pytest's 0700 tmp tree: the postgres user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="veritee-pg-"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser")
        as_user = ["runuser", "-u", "postgres", "--"]
        os.chown(root, _uid("postgres"), -1)
    port = _free_port()
    made = subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                           "--auth=trust", "-E", "UTF8"], capture_output=True, text=True,
                          check=False)
    assert made.returncode == 0, made.stderr[-2000:]
    ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-t", "60"]
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    subprocess.run([*ctl, "-o", opts, "-l", str(root / "log"), "start"], check=True,
                   capture_output=True)
    info = {"ctl": ctl, "opts": opts, "root": root, "port": port, "data": data,
            "url": f"postgresql://postgres@127.0.0.1:{port}/postgres"}
    yield info
    subprocess.run([*ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def _uid(name: str) -> int:
    import pwd

    return pwd.getpwnam(name).pw_uid


def _postmaster_pid(pg: dict[str, Any]) -> int:
    return int((pg["data"] / "postmaster.pid").read_text().splitlines()[0])


def test_private_postgresql_stopped_then_frozen_gives_503_and_recovers(
        deployment: Any, private_pg: dict[str, Any],
        machine: InsecureEmulatedSnpMachine) -> None:
    """Finding 6: stopped, clients got 400 ConfigError exposing host and port; frozen, every
    request hung as long as the freeze, /readyz included."""
    settings_for, serve = deployment
    settings = settings_for(private_pg["url"])
    served = serve(settings, workers=1).wait_ready()
    admin = _admin_token(settings)
    guest = machine.launch(image(b"workload A"))
    _provision(served.url, admin, guest.measurement.hex())

    def unavailable(route: str, method: str = "GET", body: Any = None) -> None:
        r = httpx.request(method, f"{served.url}{route}", timeout=60, json=body)
        assert r.status_code == 503, (route, r.status_code, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == "service.unavailable"
        for leak in (str(private_pg["port"]), "127.0.0.1", "psycopg", "postgres"):
            assert leak not in r.text

    def attest_unavailable() -> None:
        # A challenge needs no database (the nonce authenticates itself); using it does.
        text = httpx.post(f"{served.url}/v1/challenge", timeout=60).json()["nonce"]
        nonce = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        unavailable("/v1/attest", "POST",
                    evidence_for(guest, nonce, ec.generate_private_key(ec.SECP384R1())))

    # Stopped.
    subprocess.run([*private_pg["ctl"], "-m", "fast", "stop"], check=True, capture_output=True)
    unavailable("/readyz")
    attest_unavailable()
    subprocess.run([*private_pg["ctl"], "-o", private_pg["opts"], "-l",
                    str(private_pg["root"] / "log"), "start"], check=True, capture_output=True)
    _wait(lambda: _ready(served.url), "recovery after the restart of PostgreSQL")
    with AttesterClient(served.url, guest, dev_mode=True) as client:
        assert client.fetch("apps/a/key") == b"secret of A"

    # Frozen: the postmaster and every backend stopped with SIGSTOP.
    master = _postmaster_pid(private_pg)
    frozen = [master, *_children(master)]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        unavailable("/readyz")
        attest_unavailable()
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    _wait(lambda: _ready(served.url), "recovery after the freeze")
    with AttesterClient(served.url, guest, dev_mode=True) as client:
        assert client.fetch("apps/a/key") == b"secret of A"
