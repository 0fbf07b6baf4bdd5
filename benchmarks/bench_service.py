"""Whole exchanges over loopback HTTP per configuration: server CPU per exchange vs the floor.

Run: ``python benchmarks/bench_service.py [--seconds S] [--concurrency N] [--per-process N]
[--workers 1 2] [--backends sqlite postgresql] [--client-cpus auto|none|0,1]``

For each backend (a SQLite file; a throwaway PostgreSQL database at ``$VERITEE_BENCH_PG``,
default 127.0.0.1:5432, skipped if unreachable) and worker count, the service runs as
``veritee serve --workers N`` (what an operator runs) on 127.0.0.1. The load comes from
separate client processes (``benchmarks/_loadgen.py``: ``--per-process`` concurrent exchanges
per process on asyncio, keep-alive connections, pinned to ``--client-cpus``), each exchange a
whole one: challenge, fresh P-384 key, an emulated SEV-SNP report signed for that nonce, EAR
verified, JWE release verified and decrypted.

Printed per configuration: exchanges/s; p50/p99 of a whole exchange (as the client sees it);
server CPU per exchange (user + system of every service process, /proc, over the load
window); its ratio to the cryptographic floor (``floor()`` of ``bench_exchange.py``, measured
in this run); client CPU per exchange (all client processes, separately); for PostgreSQL the
database's CPU per exchange (every PostgreSQL process) and its transactions per exchange. Then
the in-process server CPU of one exchange (``bench_exchange.Bench``, no HTTP, SQLite), so the
HTTP layer's share is the SQLite rows' server CPU minus that.

``--rounds N`` repeats every configuration N times, interleaved, and keeps each one's best
round (highest exchanges/s): on a small shared machine other load only ever slows a round.

Caveat: on a machine with few CPUs the clients share cores with the service (``auto`` pins
the clients to the last quarter of the CPUs, and the service to the rest only with 4 or
more), so exchanges/s understates a dedicated server; CPU per exchange depends less on that.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from _loadgen import percentile, run_load
from _pg import PG_ADMIN, create_database, drop_database
from _sysstat import CpuMeter, pg_transactions, program_pids, tree_pids
from bench_exchange import Bench, floor
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

IMAGE_LABEL = b"bench workload"
RESOURCE = "bench/key"
SECRET = b"k" * 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_create() -> str | None:
    try:
        return create_database()
    except Exception as exc:
        print(f"postgresql unavailable ({type(exc).__name__}): skipped")
        return None


def cpu_plan(spec: str) -> tuple[list[int] | None, list[int] | None, str]:
    """(client CPUs, service CPUs, description) for ``--client-cpus``.

    ``auto``: the clients pinned to the last quarter of the CPUs (at least one), the service
    to the others when there are 4 or more (with 2 the service stays unpinned: pinning it to
    one CPU would stop a second worker from using the other); ``none``; or a comma list of
    CPUs for the clients (the service unpinned).
    """
    cpus = sorted(os.sched_getaffinity(0))
    if spec == "none" or (spec == "auto" and len(cpus) < 2):
        return None, None, f"clients and service share {len(cpus)} CPUs, unpinned"
    if spec == "auto":
        n = max(1, len(cpus) // 4)
        client = cpus[-n:]
        if len(cpus) >= 4:
            return client, cpus[:-n], f"clients pinned to CPUs {client}, service to {cpus[:-n]}"
        return client, None, (f"clients pinned to CPU {client}, service unpinned (only "
                              f"{len(cpus)} CPUs)")
    client = [int(c) for c in spec.split(",")]
    return client, None, f"clients pinned to CPUs {client}, service unpinned"


@dataclass
class Figures:
    """One configuration's figures."""

    rate: float
    p50_ms: float
    p99_ms: float
    server_ms: float  # service CPU per exchange
    client_ms: float
    db_ms: float  # PostgreSQL CPU per exchange (NaN for SQLite)
    db_tx: float  # PostgreSQL transactions per exchange (NaN for SQLite)
    exchanges: int
    errors: int
    samples: list[str]


def run_one(backend: str, workers: int, *, seconds: float, concurrency: int,
            per_process: int, vendor: EmulatedAmdVendor, client_cpus: list[int] | None,
            server_cpus: list[int] | None, extra: dict[str, Any]) -> Figures | None:
    """Start the service for one configuration, load it, stop it; None if no database."""
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
            "amd_crl_dir": str(crl), "host": "127.0.0.1",
            "master_key_file": str(tmp / "master.sealed"), "log_level": "warning",
            "nonce_ttl": 600, "token_ttl": 600, **extra}))
        InsecureEmulatedSnpMachine.open(tmp / "svc-machine", key_size=2048)
        # The token row is authenticated under the service's data key, as the CLI writes it.
        store = open_store(db_url)
        master = service_master_key(load_settings(settings))
        store.integrity = StateIntegrity(load_data_key(store, master, now=time.time()).key)
        _, admin = create_admin_token(store, "bench", "admin")
        store.close()
        # The guest's machine, saved for the client processes (same vendor, same chip).
        machine = InsecureEmulatedSnpMachine(vendor)
        machine.save(tmp / "guest-machine")
        guest = machine.launch(simple_guest_image(IMAGE_LABEL.ljust(4096, b"\0")))
        port = _free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("VERITEE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
        env["VERITEE_SETTINGS_FILE"] = str(settings)
        proc = subprocess.Popen(
            [sys.executable, "-c", "from veritee.cli import main; raise SystemExit(main())",
             "serve", "--settings", str(settings), "--port", str(port),
             "--workers", str(workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if server_cpus:
            os.sched_setaffinity(proc.pid, server_cpus)  # workers inherit it
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-2000:] \
                    if proc.poll() is not None and proc.stderr else ""
                raise RuntimeError(f"service did not start {err}")
            time.sleep(0.2)
        h = {"Authorization": f"Bearer {admin}"}
        with httpx.Client(timeout=10) as http:
            http.put(f"{url}/v1/admin/resources/{RESOURCE}", headers=h, json={
                "secret": base64.b64encode(SECRET).decode(),
                "policy": {"measurements": [guest.measurement.hex()]}}).raise_for_status()
            http.put(f"{url}/v1/admin/reference-values/bench", headers=h, json={
                "kind": "measurement", "value": guest.measurement.hex()}).raise_for_status()
        server = CpuMeter(lambda: tree_pids(proc.pid) if proc else [])
        database = CpuMeter(lambda: program_pids("postgres"))
        dbname = db_url.rsplit("/", 1)[1]
        tx: list[int] = []

        def start() -> None:
            server.start()
            if backend == "postgresql":
                database.start()
                tx.append(pg_transactions(PG_ADMIN, dbname))

        def stop() -> None:
            server.stop()
            if backend == "postgresql":
                database.stop()

        load = run_load(url, tmp / "guest-machine", IMAGE_LABEL, resource_path=RESOURCE,
                        secret=SECRET, concurrency=concurrency,
                        processes=math.ceil(concurrency / per_process), seconds=seconds,
                        cpus=client_cpus, on_start=start, on_stop=stop)
        n = max(1, load.exchanges)
        db_tx = float("nan")
        if backend == "postgresql":
            time.sleep(1.5)  # backends report their counts to the statistics at most each 1 s
            db_tx = (pg_transactions(PG_ADMIN, dbname) - tx[0]) / n
        return Figures(rate=load.rate, p50_ms=1e3 * percentile(load.latencies, 0.5),
                       p99_ms=1e3 * percentile(load.latencies, 0.99),
                       server_ms=1e3 * server.seconds / n, client_ms=1e3 * load.client_cpu / n,
                       db_ms=1e3 * database.seconds / n if backend == "postgresql"
                       else float("nan"),
                       db_tx=db_tx, exchanges=load.exchanges, errors=load.errors,
                       samples=load.error_samples)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            if proc.stderr:
                proc.stderr.close()
        if backend == "postgresql" and db_url is not None:
            drop_database(db_url)
        shutil.rmtree(tmp, ignore_errors=True)


def in_process_ms(exchanges: int) -> tuple[float, int]:
    """Server CPU ms of one exchange in process (no HTTP, SQLite): ``bench_exchange.Bench``,
    the best of 5 rounds as that benchmark measures it; and the EAR's signing input size."""
    with tempfile.TemporaryDirectory(prefix="veritee-bench-inproc-") as tmp:
        bench = Bench(Path(tmp))
        for _ in range(20):
            bench.exchange()
        best = float("inf")
        per_round = max(1, exchanges // 5)
        for _ in range(5):
            bench.cpu = 0.0
            for _ in range(per_round):
                bench.exchange()
            best = min(best, bench.cpu / per_round)
        return 1e3 * best, int(getattr(bench, "ear_size", 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="load time per configuration")
    ap.add_argument("--concurrency", type=int, default=32,
                    help="exchanges in flight at once (each on its own connection)")
    ap.add_argument("--per-process", type=int, default=32,
                    help="concurrent exchanges per client process")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"],
                    choices=["sqlite", "postgresql"])
    ap.add_argument("--client-cpus", default="auto",
                    help="auto (default), none, or a comma list of CPUs for the clients")
    ap.add_argument("--worker-threads", type=int, default=None, metavar="N",
                    help="the service's worker_threads setting (default: the service's)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat each configuration, keep its best round")
    ap.add_argument("--in-process", type=int, default=300, metavar="N",
                    help="exchanges for the in-process comparison (0: skip)")
    args = ap.parse_args()
    client_cpus, server_cpus, pinning = cpu_plan(args.client_cpus)
    extra: dict[str, Any] = {}
    if args.worker_threads is not None:
        extra["worker_threads"] = args.worker_threads
    vendor = EmulatedAmdVendor.generate(Product.MILAN, key_size=2048)
    # In process first: its real EAR size sizes the floor's signatures, as bench_exchange does.
    inproc, ear_size = in_process_ms(args.in_process) if args.in_process > 0 else (0.0, 0)
    parts = floor(150, ear_size) if ear_size else floor(150)
    floor_ms = 1e3 * sum(parts.values())
    load = os.getloadavg()[0]
    print(f"{args.concurrency} concurrent exchanges from "
          f"{math.ceil(args.concurrency / args.per_process)} client process(es), "
          f"{args.seconds:.0f} s per configuration; {pinning}; service settings "
          f"{extra or 'default'}; load average {load:.1f}")
    print(f"floor (crypto an exchange cannot avoid, this run): {floor_ms:.2f} ms CPU")
    if args.rounds > 1:
        print(f"best of {args.rounds} interleaved rounds per configuration")
    print(f"{'backend':<11} {'workers':>7} {'exch/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'srv ms':>7} {'/floor':>6} {'cli ms':>7} {'db ms':>6} {'db tx':>5} "
          f"{'n':>6} {'err':>4}")
    configs = [(b, w) for b in args.backends for w in args.workers]
    best: dict[tuple[str, int], Figures] = {}
    unreachable: set[str] = set()
    for _ in range(args.rounds):
        for backend, workers in configs:
            if backend in unreachable:
                continue
            r = run_one(backend, workers, seconds=args.seconds, concurrency=args.concurrency,
                        per_process=args.per_process, vendor=vendor, client_cpus=client_cpus,
                        server_cpus=server_cpus, extra=extra)
            if r is None:
                unreachable.add(backend)
                continue
            if (backend, workers) not in best or r.rate > best[(backend, workers)].rate:
                best[(backend, workers)] = r
    sqlite_server: list[float] = []
    for backend, workers in configs:
        r = best.get((backend, workers))
        if r is None:
            continue
        if backend == "sqlite":
            sqlite_server.append(r.server_ms)
        db = "" if math.isnan(r.db_ms) else f"{r.db_ms:.2f}"
        tx = "" if math.isnan(r.db_tx) else f"{r.db_tx:.1f}"
        print(f"{backend:<11} {workers:>7} {r.rate:>7.1f} {r.p50_ms:>7.1f} "
              f"{r.p99_ms:>7.1f} {r.server_ms:>7.2f} {r.server_ms / floor_ms:>5.2f}x "
              f"{r.client_ms:>7.2f} {db:>6} {tx:>5} {r.exchanges:>6} {r.errors:>4}",
              flush=True)
        for sample in r.samples:
            print(f"    error: {sample}")
    print("srv ms, cli ms, db ms: CPU ms per exchange of the service processes, the client "
          "processes, PostgreSQL (all its processes); db tx: its transactions per exchange")
    if args.in_process > 0:
        line = (f"in process (bench_exchange.Bench, no HTTP, SQLite): {inproc:.2f} ms CPU per "
                f"exchange, {inproc / floor_ms:.2f}x the floor")
        if sqlite_server:
            http = min(sqlite_server)
            line += (f"; over HTTP (SQLite, best of the rows) {http:.2f} ms: the HTTP layer "
                     f"adds {http - inproc:.2f} ms ({(http - inproc) / http:.0%} of it)")
        print(line)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
