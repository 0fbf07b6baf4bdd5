"""The KBS protocol's resource response: a flattened JWE (RFC 7516 section 7.2.2).

``alg = ECDH-ES+A256KW`` (RFC 7518 section 4.6: ECDH-ES with the Concat KDF of NIST SP
800-56A section 5.8.1, then AES Key Wrap, RFC 3394) and ``enc = A256GCM`` (RFC 7518 section
5.3), to the TEE key of the Attestation's ``tee-pubkey``: what attestation-agent's
``TeeKeyPair`` decrypts by default (kbs_protocol ``keypair.rs``).

The AAD is ``ASCII(BASE64URL(protected))`` (RFC 7516 section 5.1 step 14). The client
re-serialises the protected header it parsed before computing it (kbs-types
``ProtectedHeader::generate_aad``: ``alg``, ``enc``, then the other members sorted), so the
header is written in exactly that form here.

Every primitive is ``cryptography``'s; this module only composes them.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from veritee.errors import FormatError, VerificationError

__all__ = ["ALG", "ENC", "decrypt_response", "encrypt_response", "protected_header_json"]

ALG = "ECDH-ES+A256KW"
ENC = "A256GCM"
_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32), "P-384": (ec.SECP384R1(), 48), "P-521": (ec.SECP521R1(), 66)}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: object, field: str) -> bytes:
    if not isinstance(text, str) or len(text) > 4 << 20:
        raise FormatError("KBS Response", field, got=type(text).__name__, want="base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise FormatError("KBS Response", field, got="invalid base64url",
                          want="base64url text") from None


def _kek(shared: bytes) -> bytes:
    # RFC 7518 4.6.2: OtherInfo = AlgorithmID || PartyUInfo || PartyVInfo || SuppPubInfo,
    # each a 32-bit big-endian length then the data; apu/apv are empty; keydatalen = 256.
    alg = ALG.encode()
    other = (len(alg).to_bytes(4, "big") + alg + bytes(4) + bytes(4)
             + (256).to_bytes(4, "big"))
    return ConcatKDFHash(hashes.SHA256(), 32, other).derive(shared)


def _public_key(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    crv = jwk.get("crv")
    if jwk.get("kty") != "EC" or not isinstance(crv, str) or crv not in _CURVES:
        raise FormatError("tee-pubkey", "crv", got=str(crv)[:20], want="P-256, P-384 or P-521")
    curve, size = _CURVES[crv]
    x = _unb64url(jwk.get("x"), "x")
    y = _unb64url(jwk.get("y"), "y")
    if len(x) != size or len(y) != size:
        raise FormatError("tee-pubkey", "x/y", got=f"{len(x)}/{len(y)} bytes", want=size)
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
    except ValueError:
        raise FormatError("tee-pubkey", "x/y", got="not a point on the curve",
                          want="a valid public key") from None


def protected_header_json(header: Mapping[str, Any]) -> bytes:
    """The protected header as the client re-serialises it: alg, enc, then the others.

    kbs-types' ``ProtectedHeader`` is ``{alg, enc, #[serde(flatten)] other_fields}`` and
    ``other_fields`` a serde_json ``Map``: sorted keys, at every depth (``epk`` too).
    """
    def dump(value: object) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)

    members = [f"{dump(k)}:{dump(header[k])}" for k in ("alg", "enc")]
    members += [f"{dump(k)}:{dump(header[k])}" for k in sorted(header)
                if k not in ("alg", "enc")]
    return ("{" + ",".join(members) + "}").encode()


def encrypt_response(plaintext: bytes, tee_pubkey: Mapping[str, Any],
                     extra_header: Mapping[str, Any] | None = None) -> dict[str, str]:
    """A KBS ``Response`` (flattened JWE) of ``plaintext`` to the TEE's EC key."""
    recipient = _public_key(tee_pubkey)
    curve, size = _CURVES[str(tee_pubkey["crv"])]
    eph = ec.generate_private_key(curve)
    nums = eph.public_key().public_numbers()
    epk = {"crv": str(tee_pubkey["crv"]), "kty": "EC",
           "x": _b64url(nums.x.to_bytes(size, "big")), "y": _b64url(nums.y.to_bytes(size, "big"))}
    header = {"alg": ALG, "enc": ENC, "epk": epk, **(extra_header or {})}
    protected = _b64url(protected_header_json(header))
    cek = os.urandom(32)
    wrapped = aes_key_wrap(_kek(eph.exchange(ec.ECDH(), recipient)), cek)
    iv = os.urandom(12)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode("ascii"))
    return {"protected": protected, "encrypted_key": _b64url(wrapped), "iv": _b64url(iv),
            "ciphertext": _b64url(sealed[:-16]), "tag": _b64url(sealed[-16:])}


def decrypt_response(response: Mapping[str, Any], key: ec.EllipticCurvePrivateKey
                     ) -> tuple[bytes, dict[str, Any]]:
    """Decrypt a KBS ``Response`` with the TEE key; return ``(plaintext, protected header)``.

    The AAD is recomputed from the header as parsed (as the Rust client does), so a header
    the sender wrote in another order or with other members fails the tag.
    """
    try:
        header = json.loads(_unb64url(response.get("protected"), "protected"))
    except (ValueError, UnicodeDecodeError):
        raise FormatError("KBS Response", "protected", got="not JSON",
                          want="a JOSE header") from None
    if not isinstance(header, dict) or header.get("alg") != ALG or header.get("enc") != ENC:
        raise VerificationError("kbs.jwe", f"protected header: want alg {ALG}, enc {ENC}")
    epk = header.get("epk")
    if not isinstance(epk, dict):
        raise FormatError("KBS Response", "protected.epk", got=type(epk).__name__, want="a JWK")
    aad = _b64url(protected_header_json(header)).encode("ascii")
    try:
        shared = key.exchange(ec.ECDH(), _public_key(epk))
        cek = aes_key_unwrap(_kek(shared), _unb64url(response.get("encrypted_key"),
                                                     "encrypted_key"))
        plaintext = AESGCM(cek).decrypt(
            _unb64url(response.get("iv"), "iv"),
            _unb64url(response.get("ciphertext"), "ciphertext")
            + _unb64url(response.get("tag"), "tag"), aad)
    except (InvalidTag, InvalidUnwrap, ValueError):
        raise VerificationError("kbs.jwe", "the response does not decrypt with this TEE key "
                                "(wrong key, or the ciphertext, header or tag was changed)"
                                ) from None
    return plaintext, header
