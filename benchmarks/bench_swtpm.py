"""The swtpm TPM platform: what each TPM operation costs, against a software baseline.

Run: ``python benchmarks/bench_swtpm.py [--rounds 50]``

Every figure is a median over ``--rounds`` runs, printed with its ratio to a baseline measured
in the same run with ``cryptography`` (the same primitive in software, no TPM):

* quote (TPM2_Quote + TPM2_PCR_Read of 10 PCRs, through swtpm's socket) vs an ECDSA P-256
  signature in process; its verification (``verify_quote`` with event-log replay) vs a bare
  ECDSA P-256 verify;
* seal / unseal of 4 KiB (TPM2_Create; TPM2_Load + PolicyPCR + TPM2_Unseal) vs AES-256-GCM;
* NV counter increment vs a durable file counter (write + fsync), TPM2_GetRandom(32) vs
  ``os.urandom(32)``, derive_key (CreatePrimary + TPM2_HMAC) vs HMAC-SHA256;
* one-off: manufacture (swtpm_setup with EK certificates), power-on + measured boot, reboot.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.formats.eventlog import EventLog
from veritee.platform.tpm import InsecureSwtpmPlatform, swtpm_unavailable_reason
from veritee.trust.tpm import verify_quote


def _median(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=50)
    args = ap.parse_args()
    reason = swtpm_unavailable_reason()
    if reason:
        raise SystemExit(f"skipped: {reason}")
    n = args.rounds
    root = Path(tempfile.mkdtemp(prefix="veritee-bench-swtpm-"))
    try:
        t0 = time.perf_counter()
        InsecureSwtpmPlatform.open(root / "tpm").close()
        manufacture = time.perf_counter() - t0  # includes one power-on and boot
        t0 = time.perf_counter()
        tpm = InsecureSwtpmPlatform.open(root / "tpm")
        power_on = time.perf_counter() - t0
        try:
            reboot = _median(tpm.reboot, max(3, n // 10))
            nonce = os.urandom(32)
            quote = tpm.quote(nonce)
            ak = tpm.ak_public()
            key = ec.generate_private_key(ec.SECP256R1())
            sig = key.sign(b"x" * 150, ec.ECDSA(hashes.SHA256()))
            data = os.urandom(4096)
            blob = tpm.seal(data)
            aead = AESGCM(os.urandom(32))
            sealed = aead.encrypt(bytes(12), data, None)
            rows = {
                "quote": (_median(lambda: tpm.quote(nonce), n),
                          _median(lambda: key.sign(b"x" * 150, ec.ECDSA(hashes.SHA256())), n),
                          "ECDSA P-256 sign"),
                "verify_quote+replay": (
                    _median(lambda: verify_quote(quote.attest, quote.signature, ak, nonce=nonce,
                                                 pcrs=quote.pcrs,
                                                 event_log=EventLog.from_bytes(
                                                     quote.event_log)), n),
                    _median(lambda: key.public_key().verify(sig, b"x" * 150,
                                                            ec.ECDSA(hashes.SHA256())), n),
                    "ECDSA P-256 verify"),
                "seal 4 KiB": (_median(lambda: tpm.seal(data), n),
                               _median(lambda: aead.encrypt(bytes(12), data, None), n),
                               "AES-256-GCM encrypt"),
                "unseal 4 KiB": (_median(lambda: tpm.unseal(blob), n),
                                 _median(lambda: aead.decrypt(bytes(12), sealed, None), n),
                                 "AES-256-GCM decrypt"),
                "GetRandom 32": (_median(lambda: tpm.trng(32), n),
                                 _median(lambda: os.urandom(32), n), "os.urandom(32)"),
                "derive_key": (_median(lambda: tpm.derive_key(b"ctx"), n),
                               _median(lambda: hmac.digest(b"k" * 32, b"ctx", "sha256"), n),
                               "HMAC-SHA256"),
            }
            cid = tpm.counter_create()
            value = [0]

            def bump() -> None:
                value[0] += 1
                tpm.counter_advance(cid, value[0])

            counter_file = root / "counter"

            def file_counter() -> None:
                # A software counter kept durably: write and fsync 8 bytes.
                with counter_file.open("wb") as f:
                    f.write(value[0].to_bytes(8, "big"))
                    f.flush()
                    os.fsync(f.fileno())

            rows["NV counter +1"] = (_median(bump, n), _median(file_counter, n),
                                     "8-byte file write + fsync")
        finally:
            tpm.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"swtpm platform, median of {n} rounds (ms; ratio = TPM / software baseline)")
    print(f"  manufacture + first boot {manufacture * 1e3:8.1f} ms")
    print(f"  power-on + boot          {power_on * 1e3:8.1f} ms")
    print(f"  reboot                   {reboot * 1e3:8.1f} ms")
    out = {}
    for name, (t, base, what) in rows.items():
        ratio = t / base if base > 0 else float("inf")
        print(f"  {name:22} {t * 1e3:8.3f} ms  x{ratio:9.1f}  vs {what} ({base * 1e6:.1f} us)")
        out[name] = {"ms": t * 1e3, "baseline_us": base * 1e6, "ratio": ratio}
    print(json.dumps({"manufacture_ms": manufacture * 1e3, "power_on_ms": power_on * 1e3,
                      "reboot_ms": reboot * 1e3, "ops": out}))


if __name__ == "__main__":
    main()
