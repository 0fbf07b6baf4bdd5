"""Crash safety: a writer SIGKILLed at any point leaves a sealed file that still opens.

(A writer killed after its counter commit and before its rename leaves the new version in
the pending file; opening the path finds it there and completes the rename.)

A child process keeps resealing a multi-megabyte file (rollback-protected, so the counter
in the emulated secure processor's persisted NV state advances with every version) while the
parent kills it at random moments. After each kill the file at the path must open and hold
one complete version, never a mix, never a refusal.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine
from veritee.sealing import SealingPolicy, open_sealed

CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from veritee.platform.emulated.measurement import simple_guest_image
    from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine
    from veritee.sealing import SealingPolicy, seal_file

    state, dst, srcs = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    machine = InsecureEmulatedSnpMachine.load(state)
    guest = machine.launch(simple_guest_image(b"K" * 4096))
    print("ready", flush=True)
    i = 0
    while True:
        seal_file(guest, Path(srcs[i % len(srcs)]), dst, SealingPolicy.measurement(),
                  chunk_size=64 * 1024, counters=machine)
        i += 1
""")


def _digest_of(machine: InsecureEmulatedSnpMachine, path: Path) -> bytes:
    guest = machine.launch(simple_guest_image(b"K" * 4096))
    h = hashlib.sha256()
    with open_sealed(guest, path, SealingPolicy.measurement(), machine) as reader:
        for chunk in reader.chunks():
            h.update(chunk)
    return h.digest()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_seal_never_loses_the_sealed_file(tmp_path: Path) -> None:
    state = tmp_path / "machine"
    InsecureEmulatedSnpMachine.open(state, key_size=2048)
    versions = []
    for name in ("a", "b", "c"):
        data = os.urandom(4 * 1024 * 1024)
        (tmp_path / name).write_bytes(data)
        versions.append(hashlib.sha256(data).digest())
    dst = tmp_path / "data.sealed"
    rng = random.Random(1234)
    kills = 0
    seen: set[bytes] = set()
    for _ in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(state), str(dst),
             *(str(tmp_path / n) for n in "abc")],
            stdout=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
        if not dst.exists():  # killed before the very first rename
            continue
        digest = _digest_of(InsecureEmulatedSnpMachine.load(state), dst)
        assert digest in versions
        seen.add(digest)
        leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".data.sealed.")]
        for p in leftovers:  # temp files of killed writers are garbage, never the real file
            p.unlink()
    assert kills == 12
    assert seen, "the writer never completed a seal: lengthen the delays"
