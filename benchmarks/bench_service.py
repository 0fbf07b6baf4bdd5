"""Full challenge -> attest -> resource exchanges over loopback HTTP, 50 concurrent clients.

Run: ``python benchmarks/bench_service.py [--seconds S] [--clients N] [--workers 1 2]
[--backends sqlite postgresql]``

For each backend (SQLite file; a throwaway PostgreSQL database at 127.0.0.1:5432, skipped if
unreachable) and worker count, the service runs as ``uvicorn --workers N`` in its own
processes on 127.0.0.1; ``--clients`` threads each run whole exchanges (fresh nonce, fresh
P-384 key, an emulated SEV-SNP report bound to both, EAR, JWE release, decryption) until
``--seconds`` have passed. Printed: exchanges/s, p50/p99 latency of a whole exchange, and
the fraction of server time spent in evidence verification + appraisal (server-side
Prometheus histograms, aggregated over workers with PROMETHEUS_MULTIPROC_DIR) two ways:
``ver/wall`` = verification wall time / server-side request wall time (includes queueing
while 50 clients wait, so it is small under load), ``ver/cpu`` = CPU time of the threads
while verifying / CPU time of all service processes (the share of the work that is
verification; the rest is HTTP, JSON, database, EAR signing, JWE, audit hashing).

Caveat: the clients (which also *produce* the evidence, as the emulated TEE) share the
machine's cores with the service, so absolute figures understate a dedicated server.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.client import AttesterClient
from veritee.formats.sevsnp import Product
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import EmulatedAmdVendor, InsecureEmulatedSnpMachine
from veritee.service.app import service_master_key
from veritee.service.core import create_admin_token
from veritee.service.integrity import StateIntegrity
from veritee.service.keys import load_data_key
from veritee.service.settings import load_settings
from veritee.service.storage import open_store

PG_ADMIN = os.environ.get("VERITEE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_create() -> str | None:
    try:
        import psycopg

        name = f"veritee_bench_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    except Exception as exc:
        print(f"postgresql unavailable ({type(exc).__name__}): skipped")
        return None


def _pg_drop(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _metric_sum(text: str, name: str, label: str | None = None) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (label is None or label in line):
            m = re.match(r"^\S+(?:\{[^}]*\})? ([0-9.eE+-]+)$", line)
            if m:
                total += float(m.group(1))
    return total


def _cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and all its descendants (Linux /proc)."""
    total, stack = 0.0, [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while stack:
        p = stack.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            stack += [int(c) for c in
                      Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total


def run_one(backend: str, workers: int, *, seconds: float, clients: int,
            vendor: EmulatedAmdVendor) -> dict[str, float] | None:
    tmp = Path(tempfile.mkdtemp(prefix="veritee-bench-"))
    db_url = f"sqlite:///{tmp}/bench.db" if backend == "sqlite" else _pg_create()
    if db_url is None:
        return None
    proc: subprocess.Popen[bytes] | None = None
    try:
        ark = tmp / "ark.pem"
        ark.write_bytes(vendor.ark.public_bytes(Encoding.PEM))
        crl = tmp / "amd-crl"  # revocation is required: the emulated vendor's ARK CRL
        crl.mkdir()
        (crl / "ark.crl").write_bytes(vendor.crl(datetime.now(UTC)).public_bytes(Encoding.PEM))
        settings = tmp / "service.json"
        settings.write_text(json.dumps({
            "dev_mode": True, "database_url": db_url, "key_source": "emulated",
            "emulated_machine_dir": str(tmp / "svc-machine"), "trust_roots": [str(ark)],
            "amd_crl_dir": str(crl),
            "master_key_file": str(tmp / "master.sealed"), "log_level": "warning",
            "nonce_ttl": 600, "token_ttl": 600}))
        InsecureEmulatedSnpMachine.open(tmp / "svc-machine", key_size=2048)
        # The token row is authenticated under the service's data key, as the CLI writes it.
        store = open_store(db_url)
        master = service_master_key(load_settings(settings))
        store.integrity = StateIntegrity(load_data_key(store, master, now=time.time()).key)
        _, admin = create_admin_token(store, "bench", "admin")
        store.close()
        prom = tmp / "prom"
        prom.mkdir()
        port = _free_port()
        env = {**os.environ, "VERITEE_SETTINGS_FILE": str(settings),
               "PROMETHEUS_MULTIPROC_DIR": str(prom)}
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory",
                                 "veritee.service.server:app_from_env", "--host", "127.0.0.1",
                                 "--port", str(port), "--workers", str(workers),
                                 "--log-level", "warning", "--no-access-log"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("service did not start")
            time.sleep(0.2)
        machine = InsecureEmulatedSnpMachine(vendor)
        guest = machine.launch(simple_guest_image(b"bench workload".ljust(4096, b"\0")))
        h = {"Authorization": f"Bearer {admin}"}
        with httpx.Client(timeout=10) as http:
            http.put(f"{url}/v1/admin/resources/bench/key", headers=h, json={
                "secret": base64.b64encode(b"k" * 32).decode(),
                "policy": {"measurements": [guest.measurement.hex()]}}).raise_for_status()
            http.put(f"{url}/v1/admin/reference-values/bench", headers=h, json={
                "kind": "measurement", "value": guest.measurement.hex()}).raise_for_status()
            # Warm up every worker (chain cache, connection pools).
            with AttesterClient(url, guest, dev_mode=True) as c:
                for _ in range(4 * workers):
                    c.fetch("bench/key")
            before = http.get(f"{url}/metrics").text
        cpu_before = _cpu_seconds(proc.pid)

        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        stop_at = time.monotonic() + seconds

        def client_loop() -> None:
            # Each client its own connection, as 50 separate attesters would have.
            with httpx.Client(timeout=30) as http, \
                    AttesterClient(url, guest, http=http, dev_mode=True) as c:
                while time.monotonic() < stop_at:
                    t0 = time.perf_counter()
                    try:
                        assert c.fetch("bench/key") == b"k" * 32
                    except Exception:
                        with lock:
                            errors[0] += 1
                        continue
                    with lock:
                        latencies.append(time.perf_counter() - t0)

        t0 = time.monotonic()
        threads = [threading.Thread(target=client_loop) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 60)
        elapsed = time.monotonic() - t0
        cpu = _cpu_seconds(proc.pid) - cpu_before
        after = httpx.get(f"{url}/metrics", timeout=10).text

        def delta(name: str, label: str | None = None) -> float:
            return _metric_sum(after, name, label) - _metric_sum(before, name, label)

        verify = delta("veritee_verification_seconds_sum")
        verify_cpu = delta("veritee_verification_cpu_seconds_total")
        server = sum(delta("veritee_request_seconds_sum", f'route="{r}"') for r in
                     ("/v1/challenge", "/v1/attest", "/v1/resources/{path:path}"))
        lat = sorted(latencies)
        return {
            "exchanges_per_s": len(lat) / elapsed,
            "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat
            else float("nan"),
            "verify_fraction": verify / server if server else float("nan"),
            "verify_cpu_fraction": verify_cpu / cpu if cpu else float("nan"),
            "exchanges": float(len(lat)),
            "errors": float(errors[0]),
        }
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if backend == "postgresql" and db_url is not None:
            _pg_drop(db_url)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="load time per configuration")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"],
                    choices=["sqlite", "postgresql"])
    args = ap.parse_args()
    vendor = EmulatedAmdVendor.generate(Product.MILAN, key_size=2048)
    print(f"{args.clients} concurrent clients, {args.seconds:.0f} s per configuration, "
          f"{os.cpu_count()} CPUs (clients and service share them)")
    print(f"{'backend':<11} {'workers':>7} {'exch/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'ver/wall':>8} {'ver/cpu':>8} {'n':>6} {'err':>4}")
    for backend in args.backends:
        for workers in args.workers:
            r = run_one(backend, workers, seconds=args.seconds, clients=args.clients,
                        vendor=vendor)
            if r is None:
                continue
            print(f"{backend:<11} {workers:>7} {r['exchanges_per_s']:>8.1f} "
                  f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['verify_fraction']:>8.1%} "
                  f"{r['verify_cpu_fraction']:>8.1%} "
                  f"{int(r['exchanges']):>6} {int(r['errors']):>4}")


if __name__ == "__main__":
    main()
