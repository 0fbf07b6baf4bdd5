"""Guest memory throughput per protection mode, as ratios to ``plain``.

Run: ``python benchmarks/bench_memory.py [--mib 256] [--seconds 2]``

For each mode (plain, sev, sev-snp, sgx-client, sgx-scalable) one emulated machine is built
with a guest of ``--mib`` MiB (default 256; at least 256 for the documented figures),
launched and filled.
Then the guest reads and writes 4 KiB pages through the mode's hardware rules, sequentially
(page 0, 1, 2, ...) and at random pages across the whole guest. Each measurement stops after
one pass over the guest or ``--seconds``, whichever comes first, so a run stays bounded.

What is measured is the *emulation* (Python + ``cryptography``), not hardware: the ratios
show the relative cost of each mode's rules in this model (AES-128-XTS per page for the
encrypted AMD modes on the default EPYC 7003, an RMP lookup for SEV-SNP, counter-mode
encryption with MACs and an integrity-tree walk for client SGX, AES-128-XTS without either
for scalable SGX). ``--generation genoa`` runs the AMD modes with AES-256-XTS instead.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable

from veritee.platform.emulated.isolation import PAGE_SIZE, CpuGeneration, Machine, Mode

MODES = tuple(Mode)
KINDS = ("seq read", "seq write", "rand read", "rand write")


def measure(op: Callable[[int], object], order: list[int], seconds: float) -> float:
    """MiB/s of ``op`` over ``order``, stopping at the end of the pass or the deadline."""
    t0 = time.perf_counter()
    deadline = t0 + seconds
    done = 0
    for page in order:
        op(page)
        done += 1
        if done % 64 == 0 and time.perf_counter() >= deadline:
            break
    return done * PAGE_SIZE / (time.perf_counter() - t0) / 2**20


def bench_mode(mode: Mode, pages: int, seconds: float, seed: int,
               generation: CpuGeneration | None = None) -> dict[str, float]:
    """Build, launch and fill one guest; return MiB/s per access kind."""
    t0 = time.perf_counter()
    machine = Machine.for_guest(mode, pages, generation=generation if mode.amd else None)
    guest = machine.launch(pages)
    data = bytes(range(256)) * (PAGE_SIZE // 256)
    for page in range(pages):
        machine.guest_store(guest, page, data)
    setup = time.perf_counter() - t0
    sequential = list(range(pages))
    rnd = random.Random(seed)
    scattered = [rnd.randrange(pages) for _ in range(pages)]

    def load(page: int) -> object:
        return machine.guest_load(guest, page)

    def store(page: int) -> object:
        machine.guest_store(guest, page, data)
        return None

    result = {
        "seq read": measure(load, sequential, seconds),
        "seq write": measure(store, sequential, seconds),
        "rand read": measure(load, scattered, seconds),
        "rand write": measure(store, scattered, seconds),
        "setup s": setup,
    }
    assert machine.guest_load(guest, pages - 1) == data
    return result


def main() -> None:
    """Run and print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256, help="guest memory in MiB (default 256)")
    ap.add_argument("--seconds", type=float, default=2.0,
                    help="time cap per measurement (default 2)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--generation", choices=("milan", "genoa", "turin"),
                    default="milan", help="AMD generation for plain/sev/sev-snp")
    args = ap.parse_args()
    generation = CpuGeneration[args.generation.upper()]
    pages = args.mib * 2**20 // PAGE_SIZE
    print(f"guest memory: {args.mib} MiB ({pages} pages of 4 KiB); cap {args.seconds} s "
          f"per measurement; AMD modes on {generation.value} ({generation.cipher})")
    rows: dict[Mode, dict[str, float]] = {}
    for mode in MODES:
        rows[mode] = bench_mode(mode, pages, args.seconds, args.seed, generation)
        gc.collect()
    base = rows[Mode.PLAIN]
    print(f"\n{'mode':<13}" + "".join(f"{k + ' MiB/s':>17}" for k in KINDS)
          + f"{'setup s':>10}")
    for mode, row in rows.items():
        print(f"{mode.value:<13}" + "".join(f"{row[k]:>17.1f}" for k in KINDS)
              + f"{row['setup s']:>10.1f}")
    print(f"\n{'ratio':<13}" + "".join(f"{k:>17}" for k in KINDS) + "   (mode / plain)")
    for mode, row in rows.items():
        print(f"{mode.value:<13}" + "".join(f"{row[k] / base[k]:>17.3f}" for k in KINDS))


if __name__ == "__main__":
    main()
