"""Small-blob sealing on every emulated TEE through the one ``veritee.sealing`` API.

Run: ``python benchmarks/bench_sealing_tees.py [--n 200] [--tpm]``

For each TEE (SEV-SNP, SGX, TDX; the swtpm TPM with ``--tpm``) it times N ``seal`` and N
``unseal`` (the reader's policy check and the platform's key derivation included) of a 1 KiB
blob, and reports each as a ratio to the bare AES-256-GCM of the same blob (the floor: what
sealing would cost with a key already in hand), so the figures travel between machines. What
dominates per TEE: SEV-SNP the own-report signature (ECDSA P-384) per operation, SGX an
AES-CMAC (EGETKEY), TDX a TDREPORT HMAC and HKDF (the key service), TPM a primary-key creation
and TPM2_HMAC round trip to swtpm.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

DATA = os.urandom(1024)
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _per_op(fn: Callable[[], object], n: int) -> float:
    fn()  # warm
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def _sources(with_tpm: bool, workdir: Path) -> dict[str, object]:
    from veritee.formats.sevsnp import Product
    from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor
    from veritee.platform.emulated.measurement import simple_guest_image
    from veritee.platform.emulated.sgx import InsecureEmulatedSgxMachine
    from veritee.platform.emulated.snp import EmulatedAmdVendor, InsecureEmulatedSnpMachine
    from veritee.platform.emulated.tdx import InsecureEmulatedTdxMachine

    amd = EmulatedAmdVendor.generate(Product.MILAN, key_size=2048, now=NOW)
    intel = EmulatedIntelVendor.generate(now=NOW)
    image = b"benchmark workload".ljust(8192, b"\0")
    signer = rsa.generate_private_key(public_exponent=3, key_size=3072)
    out: dict[str, object] = {
        "sevsnp": InsecureEmulatedSnpMachine(amd).launch(simple_guest_image(image)),
        "sgx": InsecureEmulatedSgxMachine(intel, cpu=EmulatedIntelCpu(intel)).load(
            image, signer, isv_svn=1),
        "tdx": InsecureEmulatedTdxMachine(intel, cpu=EmulatedIntelCpu(intel)).launch(image),
    }
    if with_tpm:
        from veritee.platform.tpm import InsecureSwtpmPlatform

        out["tpm"] = InsecureSwtpmPlatform.open(workdir / "swtpm")
    return out


def main() -> None:
    """Print one line per TEE: ms per seal / unseal and the ratio to bare AES-GCM."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="operations per measurement")
    ap.add_argument("--tpm", action="store_true", help="also the swtpm TPM (needs swtpm)")
    args = ap.parse_args()

    from veritee.sealing import SealingPolicy, seal, unseal

    aead, nonce = AESGCM(os.urandom(32)), os.urandom(12)
    floor = _per_op(lambda: aead.encrypt(nonce, DATA, b""), args.n * 10)
    workdir = Path(tempfile.mkdtemp(prefix="veritee-bench-tees-"))
    try:
        sources = _sources(args.tpm, workdir)
        policy = SealingPolicy.measurement()
        print(f"bare AES-256-GCM of 1 KiB: {floor * 1e3:.4f} ms (the ratio's base)")
        print(f"{'tee':8} {'seal ms':>9} {'x base':>8} {'unseal ms':>10} {'x base':>8}")
        for name, source in sources.items():
            n = max(args.n // 10, 5) if name == "tpm" else args.n
            blob = seal(source, DATA, policy)
            t_seal = _per_op(lambda s=source: seal(s, DATA, policy), n)
            t_open = _per_op(lambda s=source, b=blob: unseal(s, b, policy), n)
            print(f"{name:8} {t_seal * 1e3:9.3f} {t_seal / floor:8.0f} {t_open * 1e3:10.3f} "
                  f"{t_open / floor:8.0f}")
        tpm = sources.get("tpm")
        close = getattr(tpm, "close", None)
        if callable(close):
            close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
