"""Real processes: two uvicorn services on one PostgreSQL, and the CLI end to end.

The services run as separate OS processes from a settings file (dev_mode, emulated key source
and the emulated vendor's root): a nonce consumed at one is refused at the other, and both
hold the same sealed master key and signing key.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.client import evidence_for
from veritee.platform.emulated.snp import EmulatedAmdVendor, InsecureEmulatedSnpMachine
from veritee.service.storage import Store, open_store

from _service_support import crl_dir, pg_schema_url


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited: {proc.stderr.read().decode()[-2000:]}"
                               if proc.stderr else "service exited")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready in {timeout} s")


def _settings_file(tmp: Path, database_url: str, vendor: EmulatedAmdVendor) -> Path:
    ark = tmp / "ark.pem"
    ark.write_bytes(vendor.ark.public_bytes(Encoding.PEM))
    settings = tmp / "service.json"
    settings.write_text(json.dumps({
        "dev_mode": True, "database_url": database_url, "key_source": "emulated",
        "emulated_machine_dir": str(tmp / "service-machine"),
        "master_key_file": str(tmp / "master.sealed"), "trust_roots": [str(ark)],
        "amd_crl_dir": crl_dir(vendor, tmp / "amd-crl"), "log_level": "warning"}))
    return settings


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(settings: Path) -> str:
        port = _free_port()
        env = {**os.environ, "VERITEE_SETTINGS_FILE": str(settings)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory",
             "veritee.service.server:app_from_env", "--host", "127.0.0.1", "--port",
             str(port), "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, proc)
        return url

    yield start
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_two_processes_on_one_postgresql_share_nonces(
        pg_database: str, tmp_path: Path, spawn: object, vendor: EmulatedAmdVendor,
        machine: InsecureEmulatedSnpMachine) -> None:
    url = pg_schema_url(pg_database)
    settings = _settings_file(tmp_path, url, vendor)
    # The service's own emulated machine is created once before both processes open it.
    InsecureEmulatedSnpMachine.open(tmp_path / "service-machine", key_size=2048)
    start = spawn
    assert callable(start)
    one, two = start(settings), start(settings)
    guest = machine.launch(__import__("_service_support").image(b"workload A"))
    with httpx.Client(timeout=10) as http:
        text = http.post(f"{one}/v1/challenge").json()["nonce"]
        nonce = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        body = evidence_for(guest, nonce, ec.generate_private_key(ec.SECP384R1()))
        assert http.post(f"{one}/v1/attest", json=body).status_code == 200
        r = http.post(f"{two}/v1/attest", json=body)
        assert (r.status_code, r.json()["code"]) == (403, "nonce.used")
        # A fresh nonce from process two works at process one: shared state, one key.
        text = http.post(f"{two}/v1/challenge").json()["nonce"]
        nonce = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        body = evidence_for(guest, nonce, ec.generate_private_key(ec.SECP384R1()))
        assert http.post(f"{one}/v1/attest", json=body).status_code == 200
        assert http.get(f"{one}/v1/jwks").json() == http.get(f"{two}/v1/jwks").json()
    store = open_state(settings)
    with store.transaction(write=False) as tx:
        rows = tx.audit_rows()
    from veritee.service.audit import verify_chain

    assert verify_chain(rows, store.integrity).ok
    store.close()
    assert [r.detail.get("code") for r in rows if r.outcome == "refused"] == ["nonce.used"]


def open_state(settings: Path) -> Store:
    """The service's store with its integrity keys, opened as the CLI does."""
    import time

    from veritee.service.app import service_master_key
    from veritee.service.integrity import StateIntegrity
    from veritee.service.keys import load_data_key
    from veritee.service.settings import load_settings

    loaded = load_settings(settings)
    store = open_store(loaded.database_url)
    data = load_data_key(store, service_master_key(loaded), now=time.time(), create=False)
    store.integrity = StateIntegrity(data.key)
    return store


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys, veritee.cli as c; sys.exit(c.main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_cli_kbs_get_and_audit_verify(tmp_path: Path, spawn: object,
                                      vendor: EmulatedAmdVendor) -> None:
    db = f"sqlite:///{tmp_path}/svc.db"
    settings = _settings_file(tmp_path, db, vendor)
    # The client's emulated machine must chain to the root the service trusts.
    client_dir = tmp_path / "client-machine"
    InsecureEmulatedSnpMachine(vendor).save(client_dir)
    InsecureEmulatedSnpMachine.open(tmp_path / "service-machine", key_size=2048)
    start = spawn
    assert callable(start)
    url = start(settings)
    m = _cli("kbs", "measurement", "--state", str(client_dir))
    assert m.returncode == 0, m.stderr
    measurement = m.stdout.strip()
    made = _cli("admin", "token-create", "--settings", str(settings), "--name", "cli test")
    assert made.returncode == 0, made.stderr
    admin = made.stdout.strip()
    h = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(timeout=10) as http:
        http.put(f"{url}/v1/admin/reference-values/client", headers=h,
                 json={"kind": "measurement", "value": measurement}).raise_for_status()
        http.put(f"{url}/v1/admin/resources/disk/key", headers=h, json={
            "secret": base64.b64encode(b"disk key 42").decode(),
            "policy": {"measurements": [measurement]}}).raise_for_status()
    out = tmp_path / "secret.bin"
    r = _cli("kbs", "get", "disk/key", "--url", url, "--state", str(client_dir),
             "--out", str(out), "--dev-mode")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == b"disk key 42" and out.stat().st_mode & 0o777 == 0o600
    sealed = tmp_path / "secret.sealed"
    r = _cli("kbs", "get", "disk/key", "--url", url, "--state", str(client_dir),
             "--out", str(sealed), "--seal", "--dev-mode")
    assert r.returncode == 0, r.stderr
    assert b"disk key 42" not in sealed.read_bytes()
    from veritee.cli._demo import demo_image
    from veritee.formats.sevsnp import GuestPolicy
    from veritee.platform.emulated.measurement import simple_guest_image
    from veritee.sealing import SealingPolicy, unseal

    guest = InsecureEmulatedSnpMachine.open(client_dir).launch(
        simple_guest_image(demo_image()), policy=GuestPolicy(smt=True))
    assert unseal(guest, sealed.read_bytes(), SealingPolicy.measurement(),
                  aad=b"disk/key") == b"disk key 42"
    r = _cli("kbs", "get", "disk/key", "--url", url, "--state", str(client_dir),
             "--out", str(out), "--debug-guest", "--dev-mode")
    assert r.returncode == 6 or r.returncode == 4, r.stderr  # refused: debug guest
    assert "sevsnp.policy.debug" in r.stderr or "attestation.rejected" in r.stderr
    ok = _cli("audit", "verify", "--settings", str(settings))
    assert ok.returncode == 0 and "audit log OK" in ok.stdout
    import sqlite3

    con = sqlite3.connect(tmp_path / "svc.db")
    con.execute("DROP TRIGGER audit_log_no_update")
    con.execute("UPDATE audit_log SET subject = 'resource:other' WHERE seq = 2")
    con.commit()
    con.close()
    bad = _cli("audit", "verify", "--settings", str(settings))
    assert bad.returncode == 4 and "BROKEN at seq 2" in bad.stderr
    # Without the master key the keyed chain cannot be checked at all (nor forged).
    http_only = _cli("kbs", "get", "disk/key", "--url", url, "--state", str(client_dir),
                     "--out", str(out))
    assert http_only.returncode != 0 and "http" in http_only.stderr
