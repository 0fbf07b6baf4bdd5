"""The emulated Intel platforms: measurement, quoting and verification, as ratios to baselines.

Run: ``python benchmarks/bench_intel_emulated.py [--seconds S] [--mib N]``

* MRTD of an N MiB firmware (TDH.MEM.PAGE.ADD + 16 TDH.MR.EXTEND per page) vs a bare
  SHA-384 of the same bytes: the measurement hashes 1.53x the data (a 128-byte buffer per
  256-byte chunk and per page), so 0.65 is the ceiling; the rest is Python per-chunk work.
* MRENCLAVE of the same bytes (ECREATE/EADD/EEXTEND) vs a bare SHA-256 (ceiling 0.8).
* A TD quote (TDREPORT + MAC check + QE signature) and an SGX quote (EREPORT + CMAC check +
  QE signature) vs a bare ECDSA P-256 sign.
* ``trust.intel.verify_quote`` with full collateral (PCK chain, CRLs, TCB Info, QE identity,
  TCB evaluation) vs a bare ECDSA P-256 verify: it does 6 signature checks plus 2 CRLs.
"""

from __future__ import annotations

import argparse
import hashlib
from datetime import UTC, datetime

from _timing import rate
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor
from veritee.platform.emulated.sgx import InsecureEmulatedSgxMachine, SecInfo
from veritee.platform.emulated.tdx import InsecureEmulatedTdxMachine
from veritee.trust.intel import verify_quote


def main() -> None:
    """Run and print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--mib", type=int, default=2, help="firmware size for the measurements")
    args = ap.parse_args()
    now = datetime.now(UTC)
    vendor = EmulatedIntelVendor.generate(now=now)
    cpu = EmulatedIntelCpu(vendor, now=now)
    tdx = InsecureEmulatedTdxMachine(vendor, cpu=cpu)
    sgx = InsecureEmulatedSgxMachine(vendor, cpu=cpu)
    image = bytes(range(256)) * 4096 * args.mib

    def mrtd() -> None:
        tdx.launch(image, hob_pages=0)

    def mrenclave() -> None:
        b = sgx.build(size=1 << (len(image).bit_length()))
        b.add_pages(0, image, SecInfo.PT_REG | SecInfo.R | SecInfo.X)

    td = tdx.launch(image[:8192])
    author = rsa.generate_private_key(public_exponent=3, key_size=3072)
    enclave = sgx.load(image[:8192], author)
    key = ec.generate_private_key(ec.SECP256R1())
    data = bytes(632)
    sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
    td_quote = td.quote(bytes(64))
    col = vendor.collateral("TDX", now)

    sha384 = rate(lambda: hashlib.sha384(image).digest(), args.seconds)
    sha256 = rate(lambda: hashlib.sha256(image).digest(), args.seconds)
    sign = rate(lambda: key.sign(data, ec.ECDSA(hashes.SHA256())), args.seconds)
    verify = rate(lambda: key.public_key().verify(sig, data, ec.ECDSA(hashes.SHA256())),
                  args.seconds)
    rows = [
        (f"SHA-384 of {args.mib} MiB (baseline)", sha384, sha384),
        (f"MRTD of {args.mib} MiB", rate(mrtd, args.seconds), sha384),
        (f"SHA-256 of {args.mib} MiB (baseline)", sha256, sha256),
        (f"MRENCLAVE of {args.mib} MiB", rate(mrenclave, args.seconds), sha256),
        ("ECDSA P-256 sign (baseline)", sign, sign),
        ("TD quote v4 (TDREPORT -> TD QE)", rate(lambda: td.quote(bytes(64)), args.seconds),
         sign),
        ("SGX quote v3 (EREPORT -> QE)", rate(lambda: enclave.quote(bytes(64)), args.seconds),
         sign),
        ("ECDSA P-256 verify (baseline)", verify, verify),
        ("verify_quote TDX, full collateral", rate(
            lambda: verify_quote(td_quote, col, now=now, trusted_roots=[vendor.root]),
            args.seconds), verify),
    ]
    print(f"{'case':40} {'ops/s':>10} {'ratio':>7}")
    for name, value, base in rows:
        print(f"{name:40} {value:10.1f} {value / base:7.3f}")


if __name__ == "__main__":
    main()
