"""N ``veritee`` service replicas on one PostgreSQL database behind a real HAProxy, on loopback.

Used by ``test_replicas_haproxy.py`` and by ``benchmarks/bench_replicas.py``. Each replica is
a separate uvicorn process (one worker) reading the same settings file: the same database, the
same emulated key source and master key file (so all replicas open the same master key), the
emulated vendor's ARK as the trust root. HAProxy (Debian's package) balances round-robin and
health-checks ``/readyz``; ``retries`` with ``option redispatch`` move a request whose
connection is refused to another replica.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.formats.sevsnp import Product
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import EmulatedAmdVendor, InsecureEmulatedSnpMachine
from veritee.service.app import service_master_key
from veritee.service.core import create_admin_token
from veritee.service.integrity import StateIntegrity
from veritee.service.keys import load_data_key
from veritee.service.settings import load_settings
from veritee.service.storage import open_store

from _service_support import crl_dir

SECRET = b"replicated secret 0123456789"
RESOURCE = "cluster/key"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def haproxy_binary() -> str | None:
    """The haproxy executable, if installed."""
    return shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None)


def _wait(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(900):  # start-up polling
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            raise RuntimeError(f"{what} exited: {err}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready")


class Cluster:
    """Replicas + HAProxy; ``url`` is the balancer's. Use as a context manager."""

    def __init__(self, database_url: str, replicas: int, *,
                 vendor: EmulatedAmdVendor | None = None,
                 settings: dict[str, Any] | None = None) -> None:
        self.database_url = database_url
        self.extra_settings = dict(settings or {})  # more service settings, e.g. worker_threads
        self.n = replicas
        self.vendor = vendor or EmulatedAmdVendor.generate(Product.MILAN, key_size=2048)
        self.tmp = Path(tempfile.mkdtemp(prefix="veritee-cluster-"))
        self.replicas: list[subprocess.Popen[bytes]] = []
        self.replica_urls: list[str] = []
        self.haproxy: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.admin = ""
        self.integrity: StateIntegrity | None = None
        machine = InsecureEmulatedSnpMachine(self.vendor)
        self.guest = machine.launch(simple_guest_image(b"cluster workload".ljust(4096, b"\0")))

    def __enter__(self) -> Cluster:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _start(self) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise RuntimeError("haproxy is not installed")
        ark = self.tmp / "ark.pem"
        ark.write_bytes(self.vendor.ark.public_bytes(Encoding.PEM))
        settings = self.tmp / "service.json"
        settings.write_text(json.dumps({
            "dev_mode": True, "database_url": self.database_url, "key_source": "emulated",
            "emulated_machine_dir": str(self.tmp / "svc-machine"), "trust_roots": [str(ark)],
            "master_key_file": str(self.tmp / "master.sealed"), "log_level": "warning",
            "amd_crl_dir": crl_dir(self.vendor, self.tmp / "amd-crl"),
            "nonce_ttl": 600, "token_ttl": 600, **self.extra_settings}))
        InsecureEmulatedSnpMachine.open(self.tmp / "svc-machine", key_size=2048)
        # Migrate once, before the replicas start; the token row is authenticated under the
        # service's data key, as `veritee admin token-create` writes it.
        store = open_store(self.database_url)
        master = service_master_key(load_settings(settings))
        store.integrity = StateIntegrity(load_data_key(store, master, now=time.time()).key)
        self.integrity = store.integrity
        _, self.admin = create_admin_token(store, "cluster", "admin")
        store.close()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("VERITEE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
        env["VERITEE_SETTINGS_FILE"] = str(settings)
        for i in range(self.n):
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--factory",
                 "veritee.service.server:app_from_env", "--host", "127.0.0.1", "--port",
                 str(port), "--log-level", "warning", "--no-access-log"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.replicas.append(proc)
            self.replica_urls.append(f"http://127.0.0.1:{port}")
            # One at a time: the first creates the sealed master key the others then open.
            _wait(f"{self.replica_urls[-1]}/readyz", proc, f"replica {i}")
        port = free_port()
        servers = "\n".join(f"    server r{i} {u.removeprefix('http://')} check"
                            for i, u in enumerate(self.replica_urls))
        cfg = self.tmp / "haproxy.cfg"
        cfg.write_text(f"""global
    maxconn 512
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 5s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
frontend veritee
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 1s fall 3 rise 2
{servers}
""")
        check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True,
                               check=False)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy config: {check.stderr.decode()[-1000:]}")
        self.haproxy = subprocess.Popen([binary, "-db", "-f", str(cfg)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.url = f"http://127.0.0.1:{port}"
        _wait(f"{self.url}/readyz", self.haproxy, "haproxy")
        h = {"Authorization": f"Bearer {self.admin}"}
        with httpx.Client(timeout=30) as http:
            http.put(f"{self.url}/v1/admin/reference-values/cluster", headers=h, json={
                "kind": "measurement", "value": self.guest.measurement.hex()}
            ).raise_for_status()
            http.put(f"{self.url}/v1/admin/resources/{RESOURCE}", headers=h, json={
                "secret": base64.b64encode(SECRET).decode(),
                "policy": {"measurements": [self.guest.measurement.hex()]}}
            ).raise_for_status()

    def kill(self, index: int) -> None:
        """SIGKILL one replica (no graceful shutdown: in-flight requests are cut)."""
        self.replicas[index].send_signal(signal.SIGKILL)
        self.replicas[index].wait()

    def close(self) -> None:
        """Stop HAProxy and every replica; remove the temporary directory."""
        procs: list[subprocess.Popen[Any]] = [
            *([self.haproxy] if self.haproxy else []), *self.replicas]
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stderr:
                p.stderr.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
