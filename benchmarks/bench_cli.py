"""CLI start-up: ``veritee --help`` and ``veritee verify --help`` as ratios to a bare
``python -c pass``, measured in the same run (issue 14, target 4: <= 5x).

Run: ``python benchmarks/bench_cli.py [--runs N]``

Each command runs as a fresh interpreter, exactly as the ``veritee`` console script does
(``from veritee.cli import main; sys.exit(main())``), its output discarded. The three
commands are interleaved run by run (so a busy neighbour slows all of them alike); the
figures are medians over ``--runs`` runs of the wall time and of the CPU time (user + system)
the child used. ``tests/arch/test_cli_startup.py`` keeps the imports that decide this ratio
pinned without timing anything.

The CLI's modules are byte-compiled first and the children may use the ``.pyc`` files, as an
installed package does (``pip install`` compiles them; a source checkout run with
``PYTHONDONTWRITEBYTECODE=1`` would otherwise recompile every module on every start).
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import time

ENTRY = "import sys; from veritee.cli import main; sys.exit(main())"
COMMANDS: dict[str, list[str]] = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "veritee --help": [sys.executable, "-c", ENTRY, "--help"],
    "veritee verify --help": [sys.executable, "-c", ENTRY, "verify", "--help"],
}


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {
    "COLUMNS": "100"}


def _run(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env=ENV)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    """Run and print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40, help="runs of each command (median)")
    args = ap.parse_args()
    walls: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpus: dict[str, list[float]] = {name: [] for name in COMMANDS}
    import veritee

    compileall.compile_dir(os.path.dirname(veritee.__file__), quiet=1)
    for cmd in COMMANDS.values():  # warm the page cache
        _run(cmd)
    for _ in range(args.runs):
        for name, cmd in COMMANDS.items():
            wall, cpu = _run(cmd)
            walls[name].append(wall)
            cpus[name].append(cpu)
    base_wall = statistics.median(walls["python -c pass (baseline)"])
    base_cpu = statistics.median(cpus["python -c pass (baseline)"])
    print(f"{args.runs} interleaved runs each, medians; target <= 5x the baseline")
    print(f"{'command':28} {'wall ms':>9} {'ratio':>7} {'cpu ms':>9} {'ratio':>7}")
    for name in COMMANDS:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        print(f"{name:28} {wall * 1e3:9.1f} {wall / base_wall:7.2f} {cpu * 1e3:9.1f} "
              f"{cpu / base_cpu if base_cpu else float('nan'):7.2f}")


if __name__ == "__main__":
    main()
