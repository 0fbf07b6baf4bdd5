"""Arm PSA/CCA verification keys and tokens from files (no network I/O).

Key forms read by :func:`load_public_key` (content sniffed, not the file name):

* PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo), as TF-M/TF-RMM ship ``public.pem`` /
  ``cca_platform.pub``; DER SPKI;
* JWK JSON (RFC 7517/7518 s6.2: ``kty`` ``EC`` with ``crv`` P-256/P-384/P-521 and base64url
  ``x``/``y``; ``OKP``/``Ed25519``). A private member ``d`` is refused: verifiers never need it;
* a veraison endorsement (``{"attributes": {"iak-pub": "<PEM>"}}``).

:func:`read_token` reads token bytes: raw CBOR, or hex / base64 text of it.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from veritee.errors import ConfigError

__all__ = ["load_public_key", "parse_public_key", "public_key_from_jwk", "read_token"]

_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32), "P-384": (ec.SECP384R1, 48), "P-521": (ec.SECP521R1, 66)}


def _b64url(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise ConfigError(f"JWK member {name!r} must be a base64url string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ConfigError(f"JWK member {name!r} is not base64url: {exc}") from exc


def public_key_from_jwk(jwk: dict[str, Any]) -> Any:
    """A public key from a JWK dict (EC P-256/384/521 or OKP Ed25519); private JWKs refused."""
    if "d" in jwk:
        raise ConfigError("JWK holds a private key ('d'); give the public key only")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "EC" and crv in _CURVES:
        curve, size = _CURVES[crv]
        x, y = _b64url(jwk.get("x"), "x"), _b64url(jwk.get("y"), "y")
        if len(x) != size or len(y) != size:
            raise ConfigError(f"JWK {crv} coordinates must be {size} bytes")
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(curve(), b"\x04" + x + y)
        except ValueError as exc:
            raise ConfigError(f"JWK is not a valid {crv} point") from exc
    if kty == "OKP" and crv == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(_b64url(jwk.get("x"), "x"))
    raise ConfigError(f"unsupported JWK kty={kty!r} crv={crv!r}")


def parse_public_key(data: bytes) -> Any:
    """A public key from PEM, DER SPKI, JWK JSON or a veraison ``iak-pub`` endorsement."""
    text = data.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            return load_pem_public_key(text)
        if text.startswith(b"{"):
            obj = json.loads(text)
            if not isinstance(obj, dict):
                raise ConfigError("key JSON must be an object")
            attrs = obj.get("attributes")
            if isinstance(attrs, dict) and isinstance(attrs.get("iak-pub"), str):
                return load_pem_public_key(attrs["iak-pub"].encode())
            return public_key_from_jwk(obj)
        return load_der_public_key(bytes(data))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not a public key (PEM, DER, JWK or iak-pub endorsement): {exc}") \
            from exc


def load_public_key(path: str | Path) -> Any:
    """:func:`parse_public_key` of a file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return parse_public_key(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def read_token(path: str | Path) -> bytes:
    """Token bytes from a file: binary CBOR, or hex / base64 text of it."""
    data = Path(path).read_bytes()
    text = data.strip()
    if text and all(c in b"0123456789abcdefABCDEF" for c in text) and len(text) % 2 == 0:
        return bytes.fromhex(text.decode())
    if text and text[:1] not in (b"\xd2", b"\xd9", b"\x84") and text.isascii():
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            pass
    return data
