"""The KBS protocol's resource response: a flattened JWE (RFC 7516 section 7.2.2).

The content is always ``enc = A256GCM`` (RFC 7518 section 5.3) under a fresh 256-bit CEK; the
CEK goes to the TEE key of the Attestation's ``tee-pubkey`` by the key's ``alg``:

* ``ECDH-ES+A256KW`` (RFC 7518 section 4.6: ECDH-ES with the Concat KDF of NIST SP 800-56A
  section 5.8.1, then AES Key Wrap, RFC 3394) on P-256/P-384/P-521: attestation-agent's
  default ``TeeKeyPair`` (kbs_protocol ``keypair.rs``);
* ``RSA-OAEP-256`` (RFC 7518 section 4.3: RSAES-OAEP, SHA-256 and MGF1 with SHA-256): the
  RSA key attestation-agent sends when configured for RSA (protocol 0.2.0 and later), and
  ``RSA-OAEP`` (SHA-1 and MGF1 with SHA-1, the same section) for other JOSE clients;
* ``RSA1_5`` (RFC 7518 section 4.2, RSAES-PKCS1-v1_5): the only key guests of protocol
  0.1.x send. PKCS #1 v1.5 encryption is open to padding-oracle attacks (Bleichenbacher;
  draft-madden-jose-deprecate-none-rsa15) and Trustee marks it deprecated, so
  :func:`encrypt_response` refuses it unless the caller passes ``allow_rsa1_5=True`` (the
  service's ``kbs_allow_rsa1_5`` setting). The KBS only *encrypts* to the key, so no
  decryption oracle runs on the service side; the risk is the guest's, which is why it stays
  an explicit choice.

The AAD is ``ASCII(BASE64URL(protected))`` (RFC 7516 section 5.1 step 14). The client
re-serialises the protected header it parsed before computing it (kbs-types
``ProtectedHeader::generate_aad``: ``alg``, ``enc``, then the other members sorted), so the
header is written in exactly that form here. Protocol 0.1.x KBSes (before Trustee's RFC 7516
fix that defined protocol 0.2.0) also sent that AAD as an ``aad`` member, which old clients
read; ``legacy_aad=True`` adds it. RFC 7516 readers treat ``aad`` as *extra* AAD, so it is
never sent to 0.2.0+ clients.

Every primitive is ``cryptography``'s; this module only composes them.
"""

from __future__ import annotations

import base64
import functools
import json
import os
from collections.abc import Mapping
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from veritee._decode import b64url, b64url_canonical
from veritee.errors import FormatError, VerificationError

__all__ = [
    "ALG",
    "ENC",
    "RSA1_5",
    "RSA_ALGORITHMS",
    "RSA_OAEP",
    "RSA_OAEP_256",
    "decrypt_response",
    "encrypt_compact_ecdh_es",
    "encrypt_response",
    "protected_header_json",
    "rsa_public_key",
]

ALG = "ECDH-ES+A256KW"
ENC = "A256GCM"
RSA_OAEP_256 = "RSA-OAEP-256"
RSA_OAEP = "RSA-OAEP"
RSA1_5 = "RSA1_5"
RSA_ALGORITHMS = (RSA_OAEP_256, RSA_OAEP, RSA1_5)
_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32), "P-384": (ec.SECP384R1(), 48), "P-521": (ec.SECP521R1(), 66)}
_MIN_RSA_BITS = 2048  # NIST SP 800-57 part 1 table 2: 112-bit security at least
_MAX_RSA_BITS = 8192  # attestation-agent uses 2048; bounds the work a hostile key can cost


def _unb64url(text: object, field: str) -> bytes:
    if not isinstance(text, str) or len(text) > 4 << 20:
        raise FormatError("KBS Response", field, got=type(text).__name__, want="base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise FormatError("KBS Response", field, got="invalid base64url",
                          want="base64url text") from None


def _concat_kdf(shared: bytes, algorithm_id: str) -> bytes:
    # RFC 7518 4.6.2: OtherInfo = AlgorithmID || PartyUInfo || PartyVInfo || SuppPubInfo,
    # each a 32-bit big-endian length then the data; apu/apv are empty; keydatalen = 256.
    # AlgorithmID is the alg (key wrapping) or, in direct key agreement, the enc.
    alg = algorithm_id.encode()
    other = (len(alg).to_bytes(4, "big") + alg + bytes(4) + bytes(4)
             + (256).to_bytes(4, "big"))
    return ConcatKDFHash(hashes.SHA256(), 32, other).derive(shared)


def _kek(shared: bytes) -> bytes:
    return _concat_kdf(shared, ALG)


def _ecdh_ephemeral(recipient_jwk: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    """A fresh key on the recipient's curve: ``(its public JWK, the epk member; the ECDH
    shared secret Z)``. FormatError for a recipient key it cannot use."""
    recipient = ec_public_key(recipient_jwk)
    curve, size = _CURVES[str(recipient_jwk["crv"])]
    eph = ec.generate_private_key(curve)
    nums = eph.public_key().public_numbers()
    epk = {"crv": str(recipient_jwk["crv"]), "kty": "EC",
           "x": b64url(nums.x.to_bytes(size, "big")), "y": b64url(nums.y.to_bytes(size, "big"))}
    return epk, eph.exchange(ec.ECDH(), recipient)


def ec_public_key(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """The EC key of a public JWK ``{kty: EC, crv, x, y}`` (RFC 7518 section 6.2.1; P-256,
    P-384, P-521, each coordinate the field's size, the point on the curve); FormatError if
    bad. The last keys read are kept (the EAR check and the release read the same one).
    The coordinates must be canonical base64url, so the JWK's text names exactly one key."""
    crv, x, y = jwk.get("crv"), jwk.get("x"), jwk.get("y")
    if jwk.get("kty") != "EC" or not isinstance(crv, str) or crv not in _CURVES:
        raise FormatError("tee-pubkey", "crv", got=str(crv)[:20], want="P-256, P-384 or P-521")
    if not isinstance(x, str) or not isinstance(y, str):
        raise FormatError("tee-pubkey", "x/y", got="not text", want="base64url text")
    return _ec_point(crv, x, y)


@functools.lru_cache(maxsize=256)
def _ec_point(crv: str, x_text: str, y_text: str) -> ec.EllipticCurvePublicKey:
    # Cached by the exact text: the same coordinates always give the same key (or the same
    # refusal, which is raised again since exceptions are not cached).
    curve, size = _CURVES[crv]
    try:
        # Canonical base64url: one key has one text (the EAR's cnf is this text).
        x, y = b64url_canonical(x_text), b64url_canonical(y_text)
    except ValueError:
        raise FormatError("tee-pubkey", "x/y", got="not canonical base64url",
                          want="base64url without padding") from None
    if len(x) != size or len(y) != size:
        raise FormatError("tee-pubkey", "x/y", got=f"{len(x)}/{len(y)} bytes", want=size)
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, b"\x04" + x + y)
    except ValueError:
        raise FormatError("tee-pubkey", "x/y", got="not a point on the curve",
                          want="a valid public key") from None



def rsa_public_key(jwk: Mapping[str, Any]) -> rsa.RSAPublicKey:
    """The RSA key of a JWK ``{kty: RSA, n, e}`` (RFC 7518 section 6.3.1); FormatError if bad.

    The modulus must be 2048 to 8192 bits and the exponent odd and greater than 1 (a key
    outside those bounds is refused before any arithmetic runs on it).
    """
    if jwk.get("kty") != "RSA":
        raise FormatError("tee-pubkey", "kty", got=str(jwk.get("kty"))[:20], want="RSA")
    n_raw = _unb64url(jwk.get("n"), "n")
    e_raw = _unb64url(jwk.get("e"), "e")
    n, e = int.from_bytes(n_raw, "big"), int.from_bytes(e_raw, "big")
    if not _MIN_RSA_BITS <= n.bit_length() <= _MAX_RSA_BITS:
        raise FormatError("tee-pubkey", "n", got=f"a {n.bit_length()}-bit modulus",
                          want=f"{_MIN_RSA_BITS} to {_MAX_RSA_BITS} bits")
    if len(e_raw) > 8 or e < 3 or e % 2 == 0:
        raise FormatError("tee-pubkey", "e", got=f"{e_raw[:8].hex()}", want="an odd exponent > 1")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError:
        raise FormatError("tee-pubkey", "n/e", got="not an RSA public key",
                          want="a valid public key") from None


def _rsa_padding(alg: str) -> padding.AsymmetricPadding:
    if alg == RSA_OAEP_256:  # RFC 7518 4.3: SHA-256, MGF1 with SHA-256
        return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                            label=None)
    if alg == RSA_OAEP:
        # RFC 7518 4.3: the defaults of RFC 8017 A.2.1. SHA-1 here is OAEP's mask and label
        # hash, where collision resistance is not what the padding relies on.
        sha1 = hashes.SHA1()  # noqa: S303
        return padding.OAEP(mgf=padding.MGF1(sha1), algorithm=sha1, label=None)
    return padding.PKCS1v15()  # RSA1_5, RFC 7518 4.2


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


def _wrap_cek(cek: bytes, tee_pubkey: Mapping[str, Any], *, allow_rsa1_5: bool
              ) -> tuple[dict[str, Any], bytes]:
    """(the protected members that name the key management, encrypted_key) for ``cek``."""
    kty, alg = tee_pubkey.get("kty"), tee_pubkey.get("alg")
    if kty == "RSA":
        alg = RSA_OAEP_256 if alg is None else alg  # a bare RSA JWK: the safe default
        if alg not in RSA_ALGORITHMS:
            raise FormatError("tee-pubkey", "alg", got=str(alg)[:30],
                              want=", ".join(RSA_ALGORITHMS))
        if alg == RSA1_5 and not allow_rsa1_5:
            raise VerificationError("kbs.jwe.rsa1_5", "tee-pubkey.alg RSA1_5 (PKCS #1 v1.5, "
                                    "deprecated) is refused by default; the service allows "
                                    "it only with the kbs_allow_rsa1_5 setting")
        wrapped = rsa_public_key(tee_pubkey).encrypt(cek, _rsa_padding(str(alg)))
        return {"alg": alg}, wrapped
    if alg not in (None, ALG):
        raise FormatError("tee-pubkey", "alg", got=str(alg)[:30], want=ALG)
    epk, shared = _ecdh_ephemeral(tee_pubkey)
    return {"alg": ALG, "epk": epk}, aes_key_wrap(_kek(shared), cek)


def encrypt_response(plaintext: bytes, tee_pubkey: Mapping[str, Any],
                     extra_header: Mapping[str, Any] | None = None, *,
                     allow_rsa1_5: bool = False, legacy_aad: bool = False) -> dict[str, str]:
    """A KBS ``Response`` (flattened JWE) of ``plaintext`` to the TEE's EC or RSA key.

    Raises FormatError for a key it cannot use and VerificationError for ``RSA1_5`` unless
    ``allow_rsa1_5`` (see the module docstring). ``legacy_aad`` adds the ``aad`` member
    protocol 0.1.x clients read.
    """
    cek = os.urandom(32)
    members, wrapped = _wrap_cek(cek, tee_pubkey, allow_rsa1_5=allow_rsa1_5)
    header = {**members, "enc": ENC, **(extra_header or {})}
    protected = b64url(protected_header_json(header))
    iv = os.urandom(12)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode("ascii"))
    out = {"protected": protected, "encrypted_key": b64url(wrapped), "iv": b64url(iv),
           "ciphertext": b64url(sealed[:-16]), "tag": b64url(sealed[-16:])}
    if legacy_aad:
        out["aad"] = protected
    return out


def encrypt_compact_ecdh_es(plaintext: bytes, recipient_jwk: Mapping[str, Any],
                            extra_header: Mapping[str, Any] | None = None) -> str:
    """A compact JWE (RFC 7516 section 7.1) of ``plaintext`` with ``alg = ECDH-ES`` in direct
    key agreement mode (RFC 7518 section 4.6: the Concat KDF output *is* the CEK, with
    AlgorithmID = ``enc``) and ``enc = A256GCM``, to an EC public JWK (P-256/P-384/P-521).

    The service's /v1 release (the same format joserfc's ``jwe.encrypt_compact`` writes, and
    decrypts: see the tests), built here because joserfc's generic path cost more than the
    ECDH it wraps. ``extra_header`` members (``kid``, private names) join the protected
    header, which is the GCM AAD. Raises FormatError for a key it cannot use.
    """
    epk, shared = _ecdh_ephemeral(recipient_jwk)
    header = {"alg": "ECDH-ES", "enc": ENC, **(extra_header or {}), "epk": epk}
    protected = b64url(orjson.dumps(header))
    cek = _concat_kdf(shared, ENC)  # direct mode: AlgorithmID is the enc value
    iv = os.urandom(12)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode("ascii"))
    return ".".join((protected, "", b64url(iv), b64url(sealed[:-16]), b64url(sealed[-16:])))


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _unwrap_cek(header: Mapping[str, Any], wrapped: bytes, key: PrivateKey) -> bytes:
    alg = header.get("alg")
    if isinstance(key, rsa.RSAPrivateKey):
        if alg not in RSA_ALGORITHMS:
            raise VerificationError("kbs.jwe", f"protected header: alg {str(alg)[:30]!r} is "
                                    "not an RSA algorithm this key can decrypt")
        return key.decrypt(wrapped, _rsa_padding(str(alg)))
    if alg != ALG:
        raise VerificationError("kbs.jwe", f"protected header: want alg {ALG} for an EC key")
    epk = header.get("epk")
    if not isinstance(epk, dict):
        raise FormatError("KBS Response", "protected.epk", got=type(epk).__name__, want="a JWK")
    return aes_key_unwrap(_kek(key.exchange(ec.ECDH(), ec_public_key(epk))), wrapped)


def decrypt_response(response: Mapping[str, Any], key: PrivateKey
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
    if not isinstance(header, dict) or header.get("enc") != ENC:
        raise VerificationError("kbs.jwe", f"protected header: want enc {ENC}")
    aad = b64url(protected_header_json(header)).encode("ascii")
    try:
        cek = _unwrap_cek(header, _unb64url(response.get("encrypted_key"), "encrypted_key"),
                          key)
        plaintext = AESGCM(cek).decrypt(
            _unb64url(response.get("iv"), "iv"),
            _unb64url(response.get("ciphertext"), "ciphertext")
            + _unb64url(response.get("tag"), "tag"), aad)
    except (InvalidTag, InvalidUnwrap, ValueError):
        raise VerificationError("kbs.jwe", "the response does not decrypt with this TEE key "
                                "(wrong key, or the ciphertext, header or tag was changed)"
                                ) from None
    return plaintext, header
