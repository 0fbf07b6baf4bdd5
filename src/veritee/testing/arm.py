"""Fake Arm devices: a PSA device (IAK) and a CCA platform (CPAK) with a realm (RAK), signing
tokens with chosen claims and real keys.

The fakes sign for real, so tests run :mod:`veritee.trust.psa` / :mod:`veritee.trust.cca`
(and the ``psa``/``cca`` schemes) unchanged; only the device keys differ
(:meth:`FakePsa.anchors`, :meth:`FakeCca.anchors`: explicit opt-in)::

    psa = FakePsa()
    token = psa.token(nonce=binding)
    attest.verify(token, policy=PsaPolicy(), anchors=Anchors({"arm": psa.anchors()}))

Claims follow RFC 9783 s4 (PSA, P2 keys) and RMM DEN0137 A.7 (CCA): instance ids are
``0x01 || SHA-256(public key point)`` (RFC 9783 s4.2.1: type RAND, a hash of the IAK), the
platform challenge is the hash of the RAK claim bytes (RMM A.7.2.3.2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from veritee.formats.cose import COSE_SIGN1_TAG, CoseAlg, Tag, encode_cbor

__all__ = ["FakeCca", "FakePsa", "instance_id", "sign1"]

_EC: dict[CoseAlg, tuple[type[hashes.HashAlgorithm], int]] = {
    CoseAlg.ES256: (hashes.SHA256, 32), CoseAlg.ES384: (hashes.SHA384, 48),
    CoseAlg.ES512: (hashes.SHA512, 66)}
_ALG_FOR_CURVE = {"secp256r1": CoseAlg.ES256, "secp384r1": CoseAlg.ES384,
                  "secp521r1": CoseAlg.ES512}
SECURED = 0x3000  # RFC 9783 s4.3.1


def sign1(payload: bytes, key: ec.EllipticCurvePrivateKey, alg: CoseAlg | None = None) -> bytes:
    """A tagged COSE_Sign1 over ``payload`` (RFC 9052 s4.4), ECDSA ``r || s`` signature; the
    algorithm follows the key's curve unless given."""
    alg = alg or _ALG_FOR_CURVE[key.curve.name]
    protected = encode_cbor({1: int(alg)})
    hash_cls, size = _EC[alg]
    r, s = decode_dss_signature(key.sign(encode_cbor(("Signature1", protected, b"", payload)),
                                         ec.ECDSA(hash_cls())))
    sig = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return encode_cbor(Tag(COSE_SIGN1_TAG, (protected, {}, payload, sig)))


def instance_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """``0x01 || SHA-256(uncompressed point)``: the instance id of a device key."""
    point = key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return b"\x01" + hashlib.sha256(point).digest()


def _components(values: Sequence[bytes], signer: bytes) -> tuple[dict[int, Any], ...]:
    return tuple({1: f"BL{i}", 2: v, 4: "1.0.0", 5: signer} for i, v in enumerate(values))


class FakePsa:
    """A PSA device: an IAK (P-256 by default) and a token builder with every claim chosen."""

    def __init__(self, *, curve: ec.EllipticCurve | None = None) -> None:
        self.iak = ec.generate_private_key(curve or ec.SECP256R1())
        self.instance_id = instance_id(self.iak.public_key())
        self.implementation_id = b"\xaa" * 32
        self.sw_measurements: tuple[bytes, ...] = (b"\x01" * 32, b"\x03" * 32)

    def anchors(self) -> dict[bytes, ec.EllipticCurvePublicKey]:
        """``{instance id: IAK public key}`` for ``Anchors({"arm": ...})``."""
        return {self.instance_id: self.iak.public_key()}

    def claims(self, *, nonce: bytes = b"\x4e" * 32, lifecycle: int = SECURED,
               sw_measurements: Sequence[bytes] | None = None,
               implementation_id: bytes | None = None, instance: bytes | None = None,
               profile: str = "http://arm.com/psa/2.0.0", client_id: int = 1) -> dict[int, Any]:
        """The P2 claims map (RFC 9783 s4); every argument replaces one claim."""
        return {265: profile, 2394: client_id, 2395: lifecycle,
                2396: implementation_id or self.implementation_id, 2397: b"\xbb" * 32,
                2399: _components(sw_measurements or self.sw_measurements, b"\x02" * 32),
                10: nonce, 256: instance or self.instance_id}

    def token(self, *, key: ec.EllipticCurvePrivateKey | None = None, **claims: Any) -> bytes:
        """A token with :meth:`claims` (keyword overrides), signed by the IAK (or ``key``)."""
        return sign1(encode_cbor(self.claims(**claims)), key or self.iak)


def _cose_key(pub: ec.EllipticCurvePublicKey) -> bytes:
    """The RAK claim: a bstr-wrapped COSE_Key (RFC 9052 s7, kty EC2, crv P-384)."""
    n = pub.public_numbers()
    return encode_cbor({1: 2, -1: 2, -2: n.x.to_bytes(48, "big"), -3: n.y.to_bytes(48, "big")})


class FakeCca:
    """A CCA platform (CPAK, P-384) hosting a realm (RAK, P-384); tokens with chosen claims."""

    def __init__(self) -> None:
        self.cpak = ec.generate_private_key(ec.SECP384R1())
        self.rak = ec.generate_private_key(ec.SECP384R1())
        self.instance_id = instance_id(self.cpak.public_key())
        self.implementation_id = b"\xcc" * 32
        self.rim = b"\x43" * 48

    def anchors(self) -> dict[bytes, ec.EllipticCurvePublicKey]:
        """``{platform instance id: CPAK public key}`` for ``Anchors({"arm": ...})``."""
        return {self.instance_id: self.cpak.public_key()}

    def token(self, *, challenge: bytes = b"\x41" * 64, rim: bytes | None = None,
              rems: Sequence[bytes] | None = None, personalization: bytes = b"\x44" * 64,
              lifecycle: int = SECURED, sw_measurements: Sequence[bytes] = (b"\x03" * 48,),
              bound_rak: ec.EllipticCurvePublicKey | None = None,
              cpak: ec.EllipticCurvePrivateKey | None = None,
              legacy: bool = False) -> bytes:
        """A tag-399 token (907 with ``legacy``): a realm token signed by the RAK and a
        platform token signed by the CPAK (or ``cpak``) whose challenge is SHA-512 of the RAK
        claim (of ``bound_rak`` when given: a broken platform/realm binding)."""
        rak_claim = _cose_key(self.rak.public_key())
        bound = _cose_key(bound_rak) if bound_rak is not None else rak_claim
        realm = {265: "tag:arm.com,2023:realm#1.0.0", 10: challenge, 44235: personalization,
                 44236: "sha-384", 44237: rak_claim, 44238: rim or self.rim,
                 44239: tuple(rems or (bytes([0x50 + i]) * 48 for i in range(4))),
                 44240: "sha-512"}
        platform = {265: "tag:arm.com,2023:cca_platform#1.0.0",
                    10: hashlib.sha512(bound).digest(), 2396: self.implementation_id,
                    256: self.instance_id, 2401: b"\x01\x02\x03", 2395: lifecycle,
                    2399: _components(sw_measurements, b"\x04" * 32), 2402: "sha-384"}
        ptok = sign1(encode_cbor(platform), cpak or self.cpak)
        rtok = sign1(encode_cbor(realm), self.rak)
        if legacy:
            return encode_cbor(Tag(907, {44234: (263, ptok), 44241: (263, rtok)}))
        return encode_cbor(Tag(399, {44234: ptok, 44241: rtok}))
