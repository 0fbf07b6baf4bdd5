"""Helpers for the Arm PSA/CCA tests: mint real signed tokens with fresh keys, read the samples.

Tokens are built with :func:`veritee.formats.cose.encode_cbor` and signed with real keys so the
production verification path runs (no fakes inside ``src``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from veritee.formats.cose import CoseAlg, Tag, encode_cbor

from _evidence import EVIDENCE_DIR

MANIFEST = "MANIFEST-2.json"

# Each PSA/CCA sample of MANIFEST-2.json: [(token role, key role or None for the manifest's
# known-fields key, verdict)]; verdict: "valid", "format" (FormatError), or a VerificationError
# code (tests/arm/test_arm_samples.py, tests/schemes/test_samples_cose_nvidia.py).
SAMPLE_VERDICTS: dict[str, list[tuple[str, str | None, str]]] = {
    "tfm-psa-2.0.0-sign1": [("token_sign1", "iak_public_key", "valid"),
                            ("token_mac0", "iak_public_key", "format")],
    "tfm-psa-iot-profile1-sign1": [("token_sign1", "iak_public_key", "valid"),
                                   ("token_sign1_test_variant", "iak_public_key", "valid"),
                                   ("token_mac0", "iak_public_key", "format")],
    "veraison-psa-iot-token": [("token", "trust_anchor_endorsement", "valid")],
    "veraison-psa-integ-token": [("token", "trust_anchor_endorsement", "valid")],
    "veraison-psa-good-cose-p2": [("token", "iak_public_jwk", "valid")],
    "tf-rmm-cca-token-399": [("cca_token", "cpak_public_key", "valid")],
    "tf-rmm-legacy-cca-token-907": [("cca_token", "cpak_public_jwk", "valid")],
    "ccatoken-test-good-tokens": [("good_token_399", None, "valid"),
                                  ("good_legacy_token_907", None, "valid"),
                                  ("negative_bad_unwrapped", None, "format")],
    "trustee-cca-example-token": [("cca_token", "cpak_public_jwk", "valid")],
    "veraison-parsec-cca": [("pat_extracted", "iak_public_jwk", "valid")],
}

_EC = {CoseAlg.ES256: (hashes.SHA256, 32), CoseAlg.ES384: (hashes.SHA384, 48)}


def sample_path(sample: dict[str, Any], role: str) -> Path:
    """Path of a sample file by its manifest role (the text before any parenthesis)."""
    name: str = sample["files"][role].split(" (")[0]
    path: Path = EVIDENCE_DIR / sample["dir"] / name
    return path


def sign1(payload: bytes, key: ec.EllipticCurvePrivateKey, alg: CoseAlg = CoseAlg.ES256, *,
          tagged: bool = True) -> bytes:
    """A COSE_Sign1 over ``payload`` (RFC 9052 s4.4), ECDSA r||s signature."""
    protected = encode_cbor({1: int(alg)})
    to_sign = encode_cbor(("Signature1", protected, b"", payload))
    hash_cls, size = _EC[alg]
    r, s = decode_dss_signature(key.sign(to_sign, ec.ECDSA(hash_cls())))
    sig = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    body: tuple[bytes, dict[int, Any], bytes, bytes] = (protected, {}, payload, sig)
    return encode_cbor(Tag(18, body) if tagged else body)


def psa_claims(**over: Any) -> dict[int, Any]:
    """A valid P2 (RFC 9783) claims map; keyword overrides by claim key name."""
    base: dict[str, tuple[int, Any]] = {
        "profile": (265, "http://arm.com/psa/2.0.0"),
        "client_id": (2394, 1),
        "lifecycle": (2395, 0x3000),
        "implementation_id": (2396, b"\xaa" * 32),
        "boot_seed": (2397, b"\xbb" * 32),
        "sw_components": (2399, ({1: "BL", 2: b"\x01" * 32, 5: b"\x02" * 32},
                                 {1: "PRoT", 2: b"\x03" * 32, 5: b"\x02" * 32})),
        "nonce": (10, b"\x4e" * 32),
        "instance_id": (256, b"\x01" + b"\xcc" * 32),
    }
    out: dict[int, Any] = {}
    for name, (key, default) in base.items():
        value = over.pop(name, default)
        if value is not None:
            out[key] = value
    assert not over, over
    return out


def psa_token(key: ec.EllipticCurvePrivateKey, **over: Any) -> bytes:
    """A signed PSA token with :func:`psa_claims` (overrides applied)."""
    return sign1(encode_cbor(psa_claims(**over)), key)


@dataclass(frozen=True)
class CcaParts:
    """A minted CCA token and the keys behind it."""

    token: bytes
    cpak: ec.EllipticCurvePrivateKey
    rak: ec.EllipticCurvePrivateKey


def rak_cose_key(pub: ec.EllipticCurvePublicKey) -> bytes:
    """The RAK as a bstr-wrapped COSE_Key (kty EC2, crv P-384)."""
    n = pub.public_numbers()
    return encode_cbor({1: 2, -1: 2, -2: n.x.to_bytes(48, "big"), -3: n.y.to_bytes(48, "big")})


def cca_token(*, cpak: ec.EllipticCurvePrivateKey | None = None,
              rak: ec.EllipticCurvePrivateKey | None = None,
              bound_rak: ec.EllipticCurvePublicKey | None = None,
              lifecycle: int = 0x3000, realm_challenge: bytes = b"\x41" * 64,
              legacy: bool = False) -> CcaParts:
    """Mint a CCA token (tag 399, or 907 with ``legacy``).

    The platform challenge is SHA-512 of the COSE_Key of ``bound_rak`` (default: the signing
    RAK), so passing another key produces a realm/platform binding mismatch.
    """
    cpak = cpak or ec.generate_private_key(ec.SECP256R1())
    rak = rak or ec.generate_private_key(ec.SECP384R1())
    rak_claim = rak_cose_key(rak.public_key())
    bound = rak_cose_key(bound_rak) if bound_rak is not None else rak_claim
    realm = {265: "tag:arm.com,2023:realm#1.0.0", 10: realm_challenge,
             44235: b"\x44" * 64, 44236: "sha-256", 44237: rak_claim,
             44238: b"\x43" * 32, 44239: tuple(bytes([0x50 + i]) * 32 for i in range(4)),
             44240: "sha-512"}
    platform = {265: "tag:arm.com,2023:cca_platform#1.0.0",
                10: hashlib.sha512(bound).digest(), 2396: b"\x00" * 32,
                256: b"\x01" + b"\x02" * 32, 2401: b"\x01\x02\x03", 2395: lifecycle,
                2399: ({2: b"\x03" * 32, 5: b"\x04" * 32},), 2402: "sha-256"}
    ptok = sign1(encode_cbor(platform), cpak, CoseAlg.ES256)
    rtok = sign1(encode_cbor(realm), rak, CoseAlg.ES384)
    if legacy:
        coll = Tag(907, {44234: (263, ptok), 44241: (263, rtok)})
    else:
        coll = Tag(399, {44234: ptok, 44241: rtok})
    return CcaParts(encode_cbor(coll), cpak, rak)
