"""Front-door throughput of the Nitro, PSA, CCA and NVIDIA schemes, as ratios to their crypto.

Run: ``python benchmarks/bench_schemes_cose_nvidia.py [--seconds S]``

For each scheme, evidence from its fake signer (``veritee.testing``) goes through a kept
``attest.Verifier`` (parse, verify, appraise, binding check). Baseline: the bare
``cryptography`` signature verifies that verification cannot avoid, measured in the same run
on the same keys and bytes (Nitro: the COSE signature and the five certificate signatures of
root + three intermediates + leaf; NVIDIA: the SPDM signature and five certificate
signatures; PSA: one ES256; CCA: the realm ES384 and platform ES384). A ratio near 1 means the
scheme adds little beyond the cryptography.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from _timing import rate
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import attest, schemes
from veritee.formats.cca import CcaToken
from veritee.formats.nitro import NitroDocument
from veritee.formats.psa import PsaToken
from veritee.policy.arm import CcaPolicy, PsaPolicy
from veritee.policy.nitro import NitroPolicy
from veritee.policy.nvidia import GpuPolicy
from veritee.testing.arm import FakeCca, FakePsa
from veritee.testing.nitro import FakeNitro
from veritee.testing.nvidia import FakeNvidia
from veritee.trust.psa import verify_sign1


def _chain_verifies(chain: tuple[x509.Certificate, ...]) -> Callable[[], None]:
    """Every certificate signature of a chain given root first (the root's own included)."""
    links = [(chain[0], chain[0]), *zip(chain[1:], chain[:-1], strict=True)]

    def run() -> None:
        for child, parent in links:
            child.verify_directly_issued_by(parent)
    return run


def main() -> None:
    """Run and print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    args = ap.parse_args()
    rows: list[tuple[str, float, float]] = []

    nitro = FakeNitro()
    doc = nitro.document(nonce=b"\x01" * 64)
    parsed = NitroDocument.from_bytes(doc)
    leaf_key = nitro.leaf.public_key()
    assert isinstance(leaf_key, ec.EllipticCurvePublicKey)
    nitro_chain = _chain_verifies((nitro.root, *[x509.load_der_x509_certificate(c) for c in
                                                 nitro.cabundle()[1:]], nitro.leaf))

    def nitro_base() -> None:
        nitro_chain()
        verify_sign1(parsed._envelope(), leaf_key, "bench")

    v = attest.Verifier(anchors=schemes.Anchors({"aws": nitro.anchors()}),
                        clock=lambda: nitro.now)
    policy_n = NitroPolicy(allow_debug=True, require_image_pin=False)
    rows.append(("nitro", rate(lambda: v.verify(doc, policy=policy_n,
                                                expected_binding=b"\x01" * 64), args.seconds),
                 rate(nitro_base, args.seconds)))

    psa = FakePsa()
    token = psa.token()
    msg = PsaToken.from_bytes(token).message
    v = attest.Verifier(anchors=schemes.Anchors({"arm": psa.anchors()}))
    rows.append(("psa", rate(lambda: v.verify(token, policy=PsaPolicy()), args.seconds),
                 rate(lambda: verify_sign1(msg, psa.iak.public_key(), "bench"), args.seconds)))

    cca = FakeCca()
    ctoken = cca.token()
    ct = CcaToken.from_bytes(ctoken)

    def cca_base() -> None:
        verify_sign1(ct.realm, cca.rak.public_key(), "bench")
        verify_sign1(ct.platform, cca.cpak.public_key(), "bench")

    v = attest.Verifier(anchors=schemes.Anchors({"arm": cca.anchors()}))
    rows.append(("cca", rate(lambda: v.verify(ctoken, policy=CcaPolicy()), args.seconds),
                 rate(cca_base, args.seconds)))

    gpu = FakeNvidia()
    transcript = gpu.transcript()
    report = transcript.to_bytes()
    gpu_chain = _chain_verifies(tuple(reversed(gpu.chain)))
    gpu_key = gpu.chain[0].public_key()
    assert isinstance(gpu_key, ec.EllipticCurvePublicKey)

    def gpu_base() -> None:
        gpu_chain()
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        sig = transcript.response.signature
        gpu_key.verify(encode_dss_signature(int.from_bytes(sig[:48], "big"),
                                            int.from_bytes(sig[48:], "big")),
                       transcript.signed_data, ec.ECDSA(hashes.SHA384()))

    v = attest.Verifier(anchors=schemes.Anchors({"nvidia": gpu.anchors()}),
                        clock=lambda: gpu.now)
    part = attest.EvidencePart(report, attached=gpu.chain_pem())
    rows.append(("nvidia", rate(lambda: v.verify(part, policy=GpuPolicy()), args.seconds),
                 rate(gpu_base, args.seconds)))

    print(f"{'scheme':8} {'front door/s':>13} {'crypto only/s':>14} {'ratio':>6}")
    for name, door, base in rows:
        print(f"{name:8} {door:13.0f} {base:14.0f} {door / base:6.2f}")


if __name__ == "__main__":
    main()
