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

from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from veritee._decode import LIMITS, decode_base64, decode_binary_text, load_json, read_bounded
from veritee.errors import ConfigError, FormatError

__all__ = ["load_public_key", "parse_public_key", "public_key_from_jwk", "read_token"]

_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32), "P-384": (ec.SECP384R1, 48), "P-521": (ec.SECP521R1, 66)}


def _b64url(value: Any, name: str) -> bytes:
    if not isinstance(value, str):
        raise ConfigError(f"JWK member {name!r} must be a base64url string")
    try:
        return decode_base64(value, structure="JWK", field=name, alphabet="url")
    except FormatError as exc:
        raise ConfigError(f"JWK member {name!r} is not base64url: {exc}") from None


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
            obj = load_json(text, structure="public key JSON")
            if not isinstance(obj, dict):
                raise ConfigError("key JSON must be an object")
            attrs = obj.get("attributes")
            if isinstance(attrs, dict) and isinstance(attrs.get("iak-pub"), str):
                return load_pem_public_key(attrs["iak-pub"].encode())
            return public_key_from_jwk(obj)
        return load_der_public_key(bytes(data))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:  # FormatError is a ValueError
        raise ConfigError(f"not a public key (PEM, DER, JWK or iak-pub endorsement): {exc}") \
            from exc


def load_public_key(path: str | Path) -> Any:
    """:func:`parse_public_key` of a file."""
    data = _read(path, "certificate")
    try:
        return parse_public_key(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def read_token(path: str | Path) -> bytes:
    """Token bytes from a file: binary CBOR, or hex / base64 text of it."""
    data = _read(path, "evidence")
    text = data.strip()
    if text and text[:1] not in (b"\xd2", b"\xd9", b"\x84") and text.isascii():
        try:  # hex (0x, whitespace allowed) or base64/base64url of the CBOR
            return decode_binary_text(text, structure=str(path), field="token")
        except FormatError:
            pass
    return data


def _read(path: str | Path, kind: str) -> bytes:
    try:
        return read_bounded(path, limit=LIMITS[kind], what=kind)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc}") from None
