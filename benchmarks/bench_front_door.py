"""The one front door's cost over the trust layer it calls, for TDX, SGX and SEV-SNP.

Run: ``python benchmarks/bench_front_door.py [--seconds S]``

Each row is operations/second and the ratio to its baseline, measured in the same run:

* ``trust.intel.verify_quote`` of a fake-Intel TD / SGX quote with full collateral (the
  baseline) vs ``attest.Verifier.verify`` of the same bytes under a policy with a challenge
  (registry recognition, parse, the same verification, appraisal, claims, AR4SI vector,
  binding check): the ratio is what the scheme layer costs (1.0 = nothing).
* ``trust.sevsnp.verify_report`` with a warm chain cache (the baseline) vs the front door with
  the verifier's own chain cache.
"""

from __future__ import annotations

import argparse

from _timing import rate
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import attest, schemes
from veritee.formats.sevsnp import AttestationReport
from veritee.policy.intel import SgxPolicy, TdxPolicy
from veritee.policy.sevsnp import SevSnpPolicy, TcbFloor
from veritee.testing.amd import DEFAULT_NOW, FakeAmd, FakeAmdKeys
from veritee.testing.intel import FakeIntel
from veritee.trust.intel import verify_quote
from veritee.trust.sevsnp import ChainCache, verify_report


def main() -> None:
    """Run and print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    args = ap.parse_args()
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    challenge = attest.Challenge.for_key(b"n" * 32, key)
    bound = schemes.expected_binding(challenge.nonce, challenge.key_spki, 64)

    intel = FakeIntel.generate()
    anchors = schemes.Anchors({"intel": intel.roots})
    rows = []
    for tee, quote, policy in (("TDX", intel.td_quote(report_data=bound), TdxPolicy()),
                               ("SGX", intel.sgx_quote(report_data=bound), SgxPolicy())):
        col = intel.collateral(tee)
        verifier = attest.Verifier(anchors=anchors,
                                   collateral=schemes.Collateral({"intel": col}))
        base = rate(lambda q=quote, c=col: verify_quote(q, c, now=intel.now,
                                                        trusted_roots=intel.roots),
                    args.seconds)
        door = rate(lambda q=quote, v=verifier, p=policy: v.verify(
            q, policy=p, challenge=challenge, now=intel.now), args.seconds)
        rows += [(f"verify_quote {tee} (baseline)", base, base),
                 (f"attest.Verifier.verify {tee}", door, base)]

    amd = FakeAmd(keys=FakeAmdKeys.generate(key_size=2048))
    report = amd.make_report(report_data=bound)
    data = report.to_bytes()
    certs = amd.certificates(crl=amd.crl())
    cache = ChainCache()
    snp_policy = SevSnpPolicy(min_tcb=TcbFloor(bootloader=1, tee=0, snp=1, microcode=1))
    verifier = attest.Verifier(anchors=schemes.Anchors({"amd": amd.anchors()}),
                               collateral=schemes.Collateral({"amd": certs}))
    base = rate(lambda: verify_report(AttestationReport.from_bytes(data), certs,
                                      anchors=amd.anchors(), now=DEFAULT_NOW, cache=cache),
                args.seconds)
    door = rate(lambda: verifier.verify(data, policy=snp_policy, challenge=challenge,
                                        now=DEFAULT_NOW), args.seconds)
    rows += [("verify_report SEV-SNP, warm cache (baseline)", base, base),
             ("attest.Verifier.verify SEV-SNP", door, base)]

    print(f"{'case':46} {'ops/s':>10} {'ratio':>7}")
    for name, value, baseline in rows:
        print(f"{name:46} {value:10.1f} {value / baseline:7.2f}")


if __name__ == "__main__":
    main()
