"""Key generation, certificate issuance and attested-certificate rates, as ratios to a baseline.

Run: ``python benchmarks/bench_certs.py [--seconds S]``

Baseline: raw ``cryptography`` P-256 key generation (``ec.generate_private_key``), measured in
the same run. Then, each as operations/second and as a ratio to the baseline:

* key generation per type (P-256, P-384, Ed25519, RSA-3072, RSA-4096) through
  ``certs.generate_private_key`` (RSA is slow and variable: prime search);
* leaf issuance from a public key, signed by a P-256 CA and by a P-384 CA;
* ``verify_leaf`` of a P-256 leaf against its CA;
* attested certificate issue (emulated guest report with the key bound, self-signed) and
  verify (``verify_attested_certificate``: report signature, cached chain, policy).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from _timing import rate
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.crypto.certs import (
    KeyType,
    create_ca,
    generate_private_key,
    issue_leaf,
    verify_leaf,
)
from veritee.formats.sevsnp import Product
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine
from veritee.policy.sevsnp import SevSnpPolicy
from veritee.ratls import issue_attested_certificate, verify_attested_certificate
from veritee.trust.sevsnp import ChainCache


def main() -> None:
    """Run and print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = ap.parse_args()
    s = args.seconds
    now = datetime.now(UTC)

    rows: list[tuple[str, float]] = []
    base = rate(lambda: ec.generate_private_key(ec.SECP256R1()), s)
    rows.append(("baseline: raw P-256 keygen (cryptography)", base))
    for kt in KeyType:
        # RSA takes a while per key: give it a longer window so at least a few keys complete.
        window = s * 3 if kt in (KeyType.RSA3072, KeyType.RSA4096) else s
        rows.append((f"keygen {kt.value}", rate(lambda kt=kt: generate_private_key(kt), window)))

    subject_key = generate_private_key(KeyType.P256).public_key()
    for ca_type in (KeyType.P256, KeyType.P384):
        ca = create_ca(generate_private_key(ca_type), f"CN={ca_type.value} CA", now=now)
        rows.append((f"issue leaf (CA {ca_type.value})",
                     rate(lambda ca=ca: issue_leaf(ca, subject_key, now=now, subject="CN=x",
                                                   dns_names=["x.example"]), s)))
    ca = create_ca(generate_private_key(KeyType.P256), "CN=CA", now=now)
    leaf = issue_leaf(ca, subject_key, now=now, subject="CN=x")
    rows.append(("verify_leaf (P-256 CA)", rate(lambda: verify_leaf(leaf, ca.certificate,
                                                                    now=now), s)))

    machine = InsecureEmulatedSnpMachine.create(Product.MILAN, key_size=4096)
    guest = machine.launch(simple_guest_image(bytes(4096 * 4)))
    key = generate_private_key(KeyType.P256)
    rows.append(("attested cert issue (P-256, emulated report)",
                 rate(lambda: issue_attested_certificate(guest, key, now=now), s)))
    cert = issue_attested_certificate(guest, key, now=now)
    policy = SevSnpPolicy(measurements=frozenset({guest.measurement}))
    anchors, cache = machine.anchors(), ChainCache()
    rows.append(("attested cert verify (chain cached)",
                 rate(lambda: verify_attested_certificate(cert, policy=policy, anchors=anchors,
                                                          now=now, cache=cache), s)))
    rows.append(("attested cert verify (cold chain)",
                 rate(lambda: verify_attested_certificate(cert, policy=policy, anchors=anchors,
                                                          now=now), s)))

    print(f"{'operation':48} {'ops/s':>10} {'x baseline':>11}")
    for name, r in rows:
        print(f"{name:48} {r:10.1f} {r / base:11.3g}")


if __name__ == "__main__":
    main()
