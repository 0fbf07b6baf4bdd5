"""Verification throughput of SEV-SNP reports, as ratios to a bare P-384 verify.

Run: ``python benchmarks/bench_verify.py [--seconds S]``

Baseline: ``cryptography``'s ECDSA P-384/SHA-384 verify of the same report bytes with the
same VCEK public key, measured in the same run. Then:

* warm: ``verify_report`` on a parsed report with the chain already validated (ChainCache)
* warm+parse: ``attest.verify_only`` from the raw 1184 bytes, chain cached
* cold: the full chain (ARK self-signature, ASK, VCEK: three RSA-PSS verifies) every time

Target: warm >= 0.8 of the baseline.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from _timing import rate
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.attest import verify_only
from veritee.formats.sevsnp import AttestationReport, Product
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine
from veritee.trust.sevsnp import ChainCache, verify_report


def main() -> None:
    """Run and print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = ap.parse_args()

    machine = InsecureEmulatedSnpMachine.create(Product.MILAN, key_size=4096)
    guest = machine.launch(simple_guest_image(bytes(4096 * 4)))
    raw = guest.attestation_report(bytes(64))
    report = AttestationReport.from_bytes(raw)
    certs, anchors = machine.certificates(), machine.anchors()
    now = datetime.now(UTC)
    assert certs.vek is not None
    pub = certs.vek.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    sig = encode_dss_signature(report.signature.r, report.signature.s)
    signed = report.signed_bytes

    def baseline() -> None:
        pub.verify(sig, signed, ec.ECDSA(hashes.SHA384()))

    cache = ChainCache()
    verify_report(report, certs, anchors=anchors, now=now, cache=cache)  # warm the cache

    results = {
        "baseline: bare P-384 verify": rate(baseline, args.seconds),
        "warm: verify_report (chain cached)": rate(
            lambda: verify_report(report, certs, anchors=anchors, now=now, cache=cache),
            args.seconds),
        "warm+parse: verify_only(bytes)": rate(
            lambda: verify_only(raw, collateral=certs, anchors=anchors, now=now, cache=cache),
            args.seconds),
        "cold: verify_report (full chain)": rate(
            lambda: verify_report(report, certs, anchors=anchors, now=now), args.seconds),
    }
    base = results["baseline: bare P-384 verify"]
    print(f"{'case':40} {'ops/s':>10} {'ratio':>7}")
    for name, value in results.items():
        print(f"{name:40} {value:10.1f} {value / base:7.3f}")


if __name__ == "__main__":
    main()
