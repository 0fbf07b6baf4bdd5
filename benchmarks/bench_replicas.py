"""Whole exchanges through HAProxy in front of 1, 2 and 3 service replicas on one PostgreSQL.

Run: ``python benchmarks/bench_replicas.py [--seconds S] [--clients N] [--replicas 1 2 3]``

Each configuration starts the replicas (one uvicorn worker each) and Debian's HAProxy on
127.0.0.1 with ``tests/cli/_cluster.py`` (the harness the replica-kill test uses), on a
throwaway PostgreSQL database, then runs ``--clients`` threads of whole exchanges (challenge,
emulated SEV-SNP report, EAR, JWE release, decryption) through the balancer for ``--seconds``.
Printed: exchanges/s, p50/p99 of a whole exchange, errors.

Caveat: on this machine the clients (which also produce the evidence), the replicas, HAProxy
and PostgreSQL share the same 2 CPUs, so adding replicas adds processes, not cores: the figures
show the cost of the balancer and of sharing one database, not a scale-out gain.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "cli"))
from veritee.client import AttesterClient
from veritee.formats.sevsnp import Product
from veritee.platform.emulated.snp import EmulatedAmdVendor

from _cluster import RESOURCE, SECRET, Cluster, haproxy_binary

PG_ADMIN = os.environ.get("VERITEE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_create() -> str:
    import psycopg

    name = f"veritee_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def _pg_drop(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def run_one(replicas: int, *, seconds: float, clients: int,
            vendor: EmulatedAmdVendor) -> dict[str, float]:
    db = _pg_create()
    try:
        with Cluster(db, replicas, vendor=vendor) as cluster:
            with httpx.Client(timeout=30) as http, \
                    AttesterClient(cluster.url, cluster.guest, http=http, dev_mode=True) as c:
                for _ in range(4 * replicas):  # warm every replica
                    assert c.fetch(RESOURCE) == SECRET
            latencies: list[float] = []
            errors = [0]
            lock = threading.Lock()
            stop_at = time.monotonic() + seconds

            def loop() -> None:
                with httpx.Client(timeout=60) as http, \
                        AttesterClient(cluster.url, cluster.guest, http=http, dev_mode=True) as c:
                    while time.monotonic() < stop_at:
                        t0 = time.perf_counter()
                        try:
                            assert c.fetch(RESOURCE) == SECRET
                        except Exception:
                            with lock:
                                errors[0] += 1
                            continue
                        with lock:
                            latencies.append(time.perf_counter() - t0)

            t0 = time.monotonic()
            threads = [threading.Thread(target=loop) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - t0
    finally:
        _pg_drop(db)
    lat = sorted(latencies)
    return {"exchanges_per_s": len(lat) / elapsed,
            "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat
            else float("nan"),
            "exchanges": float(len(lat)), "errors": float(errors[0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    args = ap.parse_args()
    if haproxy_binary() is None:
        sys.exit("haproxy is not installed (apt-get install haproxy)")
    vendor = EmulatedAmdVendor.generate(Product.MILAN, key_size=2048)
    print(f"{args.clients} clients through HAProxy, {args.seconds:.0f} s per configuration, "
          f"{os.cpu_count()} CPUs shared by clients, replicas, HAProxy and PostgreSQL")
    print(f"{'replicas':>8} {'exch/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'n':>6} {'err':>4}")
    for n in args.replicas:
        r = run_one(n, seconds=args.seconds, clients=args.clients, vendor=vendor)
        print(f"{n:>8} {r['exchanges_per_s']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{int(r['exchanges']):>6} {int(r['errors']):>4}", flush=True)


if __name__ == "__main__":
    main()
