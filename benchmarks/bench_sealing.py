"""Sealing throughput of a large file against raw AES-256-GCM, and peak memory.

Run: ``python benchmarks/bench_sealing.py [--mib 1024] [--dir /tmp]``

Each phase runs in its own process so its peak RSS (``ru_maxrss``) is its own:

* baseline seal: read the file in 1 MiB chunks, AES-256-GCM each chunk with ``cryptography``,
  write the ciphertext (the same I/O and chunking as a sealed file, none of its format);
* seal: ``veritee.sealing.seal_file`` on the emulated platform;
* baseline open / unseal likewise in the other direction.

Targets: seal and unseal >= 0.8 of the baseline; peak memory < 64 MiB for a 1 GiB file.

``--small N`` instead times N small-blob operations (issue 16): ``unseal`` with the reader's
policy check (one own report per call) against the bare key derivation + AES-GCM it used to
be, and rollback-protected ``seal_to_path`` / ``unseal_path`` (reserve, pending, commit).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHUNK = 1 << 20


def _phase(name: str, workdir: Path) -> dict[str, float]:
    """Run one phase in this process; return seconds and peak RSS in MiB."""
    src, raw, sealed = workdir / "plain", workdir / "raw.gcm", workdir / "data.sealed"
    out = workdir / "out"
    t0 = time.perf_counter()
    if name in ("baseline-seal", "baseline-open"):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        aead = AESGCM(bytes(32))
        fin, fout = (src, raw) if name == "baseline-seal" else (raw, out)
        size = CHUNK if name == "baseline-seal" else CHUNK + 16
        with fin.open("rb") as i, fout.open("wb") as o:
            n = 0
            while chunk := i.read(size):
                nonce = n.to_bytes(12, "big")
                o.write(aead.encrypt(nonce, chunk, None) if name == "baseline-seal"
                        else aead.decrypt(nonce, chunk, None))
                n += 1
            o.flush()
            os.fsync(o.fileno())
    else:
        from veritee.platform.emulated.measurement import simple_guest_image
        from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine
        from veritee.sealing import SealingPolicy, seal_file, unseal_file

        machine = InsecureEmulatedSnpMachine.load(workdir / "machine")
        guest = machine.launch(simple_guest_image(bytes(4096)))
        t0 = time.perf_counter()
        if name == "seal":
            seal_file(guest, src, sealed, SealingPolicy.measurement(), chunk_size=CHUNK)
        else:
            unseal_file(guest, sealed, out, SealingPolicy.measurement())
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mib": peak}


def _small(n: int, workdir: Path) -> None:
    """Per-operation cost of small blobs: the expected-policy check and the rollback protocol."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from veritee.formats.sealed import HEADER_SIZE, SealedHeader
    from veritee.platform.emulated.measurement import simple_guest_image
    from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine
    from veritee.sealing import SealingPolicy, seal, seal_to_path, unseal, unseal_path
    from veritee.sealing._core import data_key, request_from_header

    machine = InsecureEmulatedSnpMachine.open(workdir / "small-machine", key_size=2048)
    guest = machine.launch(simple_guest_image(bytes(4096)))
    policy = SealingPolicy.measurement()
    blob = seal(guest, b"x" * 64, policy)
    header = SealedHeader.from_bytes(blob)

    def bare() -> None:  # what unseal did before the reader's check: derive + decrypt
        key = data_key(guest.derived_key(request_from_header(header)), header,
                       b"veritee-seal-blob-v1")
        AESGCM(key).decrypt(header.nonce, blob[HEADER_SIZE:], blob[:HEADER_SIZE])

    path = workdir / "small.sealed"
    ops = {
        "unseal, bare derive+decrypt": bare,
        "unseal (reader's check)": lambda: unseal(guest, blob, policy),
        "seal blob": lambda: seal(guest, b"x" * 64, policy),
        "seal_to_path, no counter": lambda: seal_to_path(guest, path, b"x" * 64, policy),
        "seal_to_path, rollback": lambda: seal_to_path(guest, path, b"x" * 64, policy,
                                                       counters=machine),
        "unseal_path, rollback": lambda: unseal_path(guest, path, policy, counters=machine),
    }
    times: dict[str, float] = {}
    for name, op in ops.items():
        op()  # warm up (and leave a protected file for the unseal_path run)
        t0 = time.perf_counter()
        for _ in range(n):
            op()
        times[name] = (time.perf_counter() - t0) / n
    base = times["unseal, bare derive+decrypt"]
    print(f"{n} operations each, emulated machine state in {workdir}")
    print(f"{'operation':30} {'ms/op':>8} {'x bare unseal':>14}")
    for name, t in times.items():
        print(f"{name:30} {t * 1e3:8.3f} {t / base:14.2f}")


def _default_dir() -> Path | None:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


def main() -> None:
    """Drive the phases and print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=1024, help="file size in MiB")
    ap.add_argument("--dir", type=Path, default=_default_dir(),
                    help="work directory, 3x the file size (default: /dev/shm when present, "
                    "so the figures compare CPU cost rather than disk noise)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per phase; the best counts")
    ap.add_argument("--small", type=int, metavar="N",
                    help="time N small-blob operations instead (reader's check, rollback)")
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(_phase(args.phase, args.workdir)))
        return

    if args.small:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            _small(args.small, Path(tmp))
        return

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        workdir = Path(tmp)
        from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine

        InsecureEmulatedSnpMachine.open(workdir / "machine", key_size=2048)
        block = os.urandom(CHUNK)
        with (workdir / "plain").open("wb") as fh:
            for _ in range(args.mib):
                fh.write(block)
        size = args.mib * CHUNK

        def run(phase: str) -> dict[str, float]:
            # Every phase writes a fresh file: freeing the old one must not land in its time.
            target = {"baseline-seal": "raw.gcm", "seal": "data.sealed"}.get(phase, "out")
            (workdir / target).unlink(missing_ok=True)
            res = subprocess.run([sys.executable, __file__, "--phase", phase, "--workdir",
                                  str(workdir)], check=True, capture_output=True, text=True)
            result: dict[str, float] = json.loads(res.stdout)
            return result

        results: dict[str, dict[str, float]] = {}
        for _ in range(args.repeat):  # interleaved, so cache state affects every phase alike
            for p in ("baseline-seal", "seal", "baseline-open", "unseal"):
                r = run(p)
                if p not in results or r["seconds"] < results[p]["seconds"]:
                    results[p] = r
        print(f"file: {args.mib} MiB in {workdir}")
        print(f"{'phase':15} {'MB/s':>9} {'ratio':>7} {'peak RSS MiB':>13}")
        for phase, base in (("baseline-seal", "baseline-seal"), ("seal", "baseline-seal"),
                            ("baseline-open", "baseline-open"), ("unseal", "baseline-open")):
            r = results[phase]
            mbs = size / r["seconds"] / 1e6
            ratio = results[base]["seconds"] / r["seconds"]
            print(f"{phase:15} {mbs:9.1f} {ratio:7.3f} {r['peak_mib']:13.1f}")


if __name__ == "__main__":
    main()
