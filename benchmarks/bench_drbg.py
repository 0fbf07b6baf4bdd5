"""DRBG throughput in MB/s, as ratios to ``os.urandom`` measured in the same run.

Run: ``python benchmarks/bench_drbg.py [--seconds S] [--size BYTES]``

Baseline: ``os.urandom(size)`` (the kernel CSPRNG through getrandom(2)). Then each SP 800-90A
DRBG from ``veritee.crypto.random`` generating ``size``-byte requests (default 65536 bytes =
2^19 bits, the largest request SP 800-90A allows; use ``--size 32`` for key-sized requests),
seeded from the OS source through the SP 800-90B health tests. Reseeds do not occur (the
interval is 2^48 requests). Figures are best-of-three windows; MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from _timing import rate

from veritee.crypto.random import (
    MAX_BYTES_PER_REQUEST,
    Drbg,
    HealthTestedSource,
    OsEntropySource,
    ctr_drbg,
    hash_drbg,
    hmac_drbg,
)


def throughput(fn: Callable[[], bytes], size: int, seconds: float) -> float:
    """MB/s of ``fn``, which returns ``size`` bytes per call."""
    return rate(fn, seconds) * size / 1e6


def main() -> None:
    """Run and print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--size", type=int, default=MAX_BYTES_PER_REQUEST, help="bytes per request")
    args = ap.parse_args()
    size = min(args.size, MAX_BYTES_PER_REQUEST)

    source = HealthTestedSource(OsEntropySource())
    drbgs: list[Drbg] = [
        hmac_drbg(source, "SHA-256"),
        hmac_drbg(source, "SHA-384"),
        hmac_drbg(source, "SHA-512"),
        hash_drbg(source, "SHA-256"),
        hash_drbg(source, "SHA-512"),
        ctr_drbg(source, "AES-128"),
        ctr_drbg(source, "AES-256"),
        ctr_drbg(source, "AES-256", derivation_function=False),
    ]

    base = throughput(lambda: os.urandom(size), size, args.seconds)
    print(f"request size {size} bytes, {args.seconds:.1f} s per row")
    print(f"{'generator':36} {'MB/s':>10} {'ratio':>8}")
    print(f"{'os.urandom (baseline)':36} {base:10.1f} {1.0:8.3f}")
    for drbg in drbgs:
        rate = throughput(lambda d=drbg: d.generate(size), size, args.seconds)  # type: ignore[misc]
        print(f"{drbg.name:36} {rate:10.1f} {rate / base:8.3f}")


if __name__ == "__main__":
    main()
