"""The atheris (libFuzzer) harness for every target in ``fuzz/targets.py``.

    python -m fuzz.run list                         # the targets
    python -m fuzz.run fuzz TARGET [libFuzzer args] # one coverage-guided run
    python -m fuzz.run smoke [--seconds N] [--jobs J]  # every target N s each (CI: 1 s)
    python -m fuzz.run long [--parse-runs N] [--verify-runs N] [TARGET...]  # the long run
    python -m fuzz.run replay                       # every kept crash input, in process
    python -m fuzz.run sweep [TARGET...]            # every byte flip of every signed region

``fuzz`` instruments ``veritee`` for coverage (``atheris.instrument_imports``), writes the
seeds to ``fuzz/corpus/<target>/`` (gitignored) and starts libFuzzer there; a crash input is
written to ``tests/fuzz/crashes/<target>/`` so that it becomes a regression input (see
``tests/fuzz/test_crash_corpus.py``). Long runs and their figures: docs/limits.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "fuzz" / "corpus"


_MODULES = (
    "veritee.attest", "veritee._decode", "veritee.crypto._x509", "veritee.crypto.amd_certs",
    "veritee.collateral.intel", "veritee.collateral.amd",
    *(f"veritee.formats.{m}" for m in ("azure", "cca", "cose", "eventlog", "ima", "intel",
                                         "nitro", "nvidia", "psa", "sealed", "sevsnp", "tpm",
                                         "tsm")),
    *(f"veritee.trust.{m}" for m in ("intel", "nitro", "nvidia", "sevsnp", "tpm_ek")),
)


def _targets() -> dict[str, object]:
    from fuzz.targets import targets

    return dict(targets())


def _fuzz(name: str, libfuzzer_args: list[str]) -> int:
    import warnings

    import atheris

    # cryptography warns (serial 0, long name attributes) on inputs it still accepts: noise.
    warnings.simplefilter("ignore")

    with atheris.instrument_imports(include=["veritee"]):
        # Every module a target reaches is imported here, so that it is instrumented.
        import importlib

        for module in _MODULES:
            importlib.import_module(module)
        from fuzz.targets import CRASHES, targets

        targets()

    target = targets()[name]
    corpus = CORPUS / name
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in target.seeds():
        (corpus / hashlib.sha256(seed).hexdigest()[:16]).write_bytes(seed)
    crashes = CRASHES / name
    crashes.mkdir(parents=True, exist_ok=True)
    check = target.check

    def one(data: bytes) -> None:
        check(data)

    argv = [sys.argv[0], *libfuzzer_args, f"-artifact_prefix={crashes}/", str(corpus)]
    atheris.Setup(argv, one)
    atheris.Fuzz()
    return 0


def _stats(stderr: str) -> dict[str, str]:
    return dict(re.findall(r"^stat::(\w+):\s*(\S+)", stderr, re.M))


def _run_each(names: list[str], limit: list[str], timeout: int, jobs: int = 1) -> int:
    """Run every target in its own process (libFuzzer ends the process), ``jobs`` at a time;
    print a table."""
    from concurrent.futures import ThreadPoolExecutor

    failed = []
    started = time.monotonic()
    print(f"{'target':24s} {'exit':>4s} {'executions':>11s} {'exec/s':>7s} "
          f"{'slowest s':>9s} {'peak MB':>7s} {'wall s':>6s}", flush=True)

    def one(name: str) -> tuple[str, subprocess.CompletedProcess[str], float]:
        cmd = [sys.executable, "-m", "fuzz.run", "fuzz", name, *limit, "-print_final_stats=1",
               "-rss_limit_mb=2048", "-malloc_limit_mb=2048", f"-timeout={timeout}"]
        t0 = time.monotonic()
        res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,  # noqa: S603
                             check=False)
        return name, res, time.monotonic() - t0

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for name, res, wall in pool.map(one, names):
            st = _stats(res.stderr)
            print(f"{name:24s} {res.returncode:4d} "
                  f"{st.get('number_of_executed_units', '?'):>11s} "
                  f"{st.get('average_exec_per_sec', '?'):>7s} "
                  f"{st.get('slowest_unit_time_sec', '?'):>9s} {st.get('peak_rss_mb', '?'):>7s} "
                  f"{wall:6.0f}", flush=True)
            if res.returncode != 0:
                failed.append(name)
                print(res.stderr[-3000:], file=sys.stderr, flush=True)
    print(f"{len(names)} targets in {time.monotonic() - started:.0f} s, "
          f"{len(failed)} failed {failed}", flush=True)
    return 1 if failed else 0


def _smoke(seconds: int, only: list[str], jobs: int) -> int:
    return _run_each(only or sorted(_targets()), [f"-max_total_time={seconds}"], timeout=10,
                     jobs=jobs)


def _long(parse_runs: int, verify_runs: int, only: list[str]) -> int:
    from fuzz.targets import targets

    code = 0
    for kind, runs in (("parse", parse_runs), ("verify", verify_runs)):
        # In the order given (the most valuable first when time is short), else the registry's.
        names = [n for n in (only or list(targets())) if targets()[n].kind == kind]
        if names:
            code |= _run_each(names, [f"-runs={runs}"], timeout=5)
    return code


def _sweep(only: list[str]) -> int:
    """Every single-byte flip of every signed region of every verify seed, through verify."""
    import warnings

    from fuzz.targets import sweep, targets

    warnings.simplefilter("ignore")
    accepted = 0
    for t in targets().values():
        if t.kind != "verify" or (only and t.name not in only):
            continue
        t0 = time.monotonic()
        c = sweep(t)
        accepted += c["accepted"]
        print(f"{t.name:20s} samples {c['samples']:3d} mutants {c['mutants']:7d} refused "
              f"{c['refused']:7d} accepted {c['accepted']} ({time.monotonic() - t0:.0f} s)",
              flush=True)
    return 1 if accepted else 0


def _replay() -> int:
    from fuzz.targets import crash_inputs, targets

    bad = 0
    for name, path in crash_inputs():
        try:
            targets()[name].check(path.read_bytes())
        except Exception as exc:
            bad += 1
            print(f"{name}/{path.name}: {type(exc).__name__}: {exc}")
    print(f"replayed {len(crash_inputs())} crash inputs, {bad} still failing")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    """Entry point (see the module docstring)."""
    args = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m fuzz.run")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    p = sub.add_parser("fuzz")
    p.add_argument("target")
    p = sub.add_parser("smoke")
    p.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SMOKE_SECONDS", "1")))
    p.add_argument("--jobs", type=int, default=int(os.environ.get("FUZZ_JOBS", "0")) or
                   max(1, min(4, (os.cpu_count() or 2) // 2)),
                   help="targets run at once (default: half the CPUs, at most 4)")
    p.add_argument("targets", nargs="*")
    p = sub.add_parser("long")
    p.add_argument("--parse-runs", type=int, default=1_000_000)
    p.add_argument("--verify-runs", type=int, default=100_000)
    p.add_argument("targets", nargs="*")
    sub.add_parser("replay")
    p = sub.add_parser("sweep")
    p.add_argument("targets", nargs="*")
    if args[:1] == ["fuzz"]:  # libFuzzer flags pass through untouched
        if len(args) < 2:
            parser.error("fuzz TARGET")
        return _fuzz(args[1], args[2:])
    ns = parser.parse_args(args)
    if ns.cmd == "list":
        from fuzz.targets import targets

        for t in targets().values():
            print(f"{t.name:24s} {t.kind:6s} {t.doc}")
        return 0
    if ns.cmd == "smoke":
        return _smoke(ns.seconds, ns.targets, ns.jobs)
    if ns.cmd == "long":
        return _long(ns.parse_runs, ns.verify_runs, ns.targets)
    if ns.cmd == "sweep":
        return _sweep(ns.targets)
    return _replay()


if __name__ == "__main__":
    sys.exit(main())
