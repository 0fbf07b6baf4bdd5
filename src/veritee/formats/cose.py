"""A small, strict CBOR reader/writer and COSE_Sign1 (RFC 9052) parser shared by the Arm formats.

Only what attestation tokens need is accepted, and anything else raises
:class:`~veritee.errors.FormatError`:

* CBOR (RFC 8949): unsigned/negative integers, byte and text strings, arrays, maps, tags,
  ``false``/``true``/``null``. Definite lengths only (indefinite-length items are rejected:
  no PSA/CCA producer emits them and they complicate bounding), no floats, no duplicate map
  keys (RFC 8949 s5.6: a "valid" map has unique keys; :mod:`cbor2` silently keeps the last),
  nesting depth <= :data:`MAX_DEPTH`, no trailing bytes, whole input <= :data:`MAX_TOKEN_SIZE`.
  Non-shortest integer/length encodings are accepted (RFC 8949 s4.2 deterministic encoding is
  not required of attesters).
* COSE_Sign1 (RFC 9052 s4.2): ``[protected: bstr .cbor header_map, unprotected: map,
  payload: bstr, signature: bstr]``, tagged with CBOR tag 18 or untagged. The protected header
  must be a non-empty bstr carrying ``alg`` (label 1) in :class:`CoseAlg`; a detached
  (``nil``) payload is rejected. The signed bytes are the ``Sig_structure`` of RFC 9052 s4.4:
  ``["Signature1", body_protected, external_aad, payload]`` (:meth:`CoseSign1.sig_structure`).

Decoded maps are plain ``dict`` (keys ``int``/``str``/``bytes``), arrays are ``tuple``, tags are
:class:`Tag`. Nothing here does cryptography.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from veritee._decode import Tag, load_cbor
from veritee.errors import FormatError

__all__ = [
    "COSE_SIGN1_TAG",
    "MAX_DEPTH",
    "MAX_TOKEN_SIZE",
    "CoseAlg",
    "CoseSign1",
    "Tag",
    "decode_cbor",
    "encode_cbor",
]

MAX_TOKEN_SIZE = 64 * 1024
"""Upper bound on any CBOR input here: real PSA/CCA tokens are 0.5-2 KiB."""

MAX_DEPTH = 16
"""Maximum nesting of arrays/maps/tags."""

COSE_SIGN1_TAG = 18
"""RFC 9052 s2, Table 1: COSE_Sign1 tag."""

_STRUCT = "cbor"


class CoseAlg(enum.IntEnum):
    """COSE algorithms accepted in a protected header (IANA COSE Algorithms registry)."""

    ES256 = -7
    ES384 = -35
    ES512 = -36
    EDDSA = -8
    PS256 = -37


def decode_cbor(data: bytes, *, structure: str = _STRUCT) -> Any:
    """Decode exactly one CBOR item filling ``data`` (strict rules in the module docstring).

    The reader is the one bounded CBOR decoder, :func:`veritee._decode.load_cbor`, held to
    :data:`MAX_TOKEN_SIZE` and :data:`MAX_DEPTH`.
    """
    return load_cbor(data, structure=structure, max_size=MAX_TOKEN_SIZE, max_depth=MAX_DEPTH)


def _head(major: int, arg: int) -> bytes:
    if arg < 24:
        return bytes([major << 5 | arg])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg < 1 << (8 * size):
            return bytes([major << 5 | info]) + arg.to_bytes(size, "big")
    raise FormatError(_STRUCT, "integer", got=arg, want="< 2**64")


def encode_cbor(value: Any) -> bytes:
    """Encode ``value`` (int, bytes, str, bool, None, list/tuple, Mapping, :class:`Tag`).

    Shortest-form heads; map entries in insertion order (callers control the order because
    signatures are computed over the exact bytes).
    """
    if value is None:
        return b"\xf6"
    if isinstance(value, bool):
        return b"\xf5" if value else b"\xf4"
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, bytes | bytearray):
        return _head(2, len(value)) + bytes(value)
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _head(3, len(raw)) + raw
    if isinstance(value, list | tuple):
        return _head(4, len(value)) + b"".join(encode_cbor(v) for v in value)
    if isinstance(value, Mapping):
        return _head(5, len(value)) + b"".join(encode_cbor(k) + encode_cbor(v)
                                               for k, v in value.items())
    if isinstance(value, Tag):
        return _head(6, value.number) + encode_cbor(value.value)
    raise FormatError(_STRUCT, "value", got=type(value).__name__, want="a CBOR-encodable type")


@dataclass(frozen=True)
class CoseSign1:
    """A parsed COSE_Sign1 message (RFC 9052 s4.2).

    ``protected`` is the exact protected-header bstr content (it is signed as is),
    ``header`` its decoded map, ``alg`` the algorithm from it.
    """

    protected: bytes
    header: dict[Any, Any]
    alg: CoseAlg
    unprotected: dict[Any, Any]
    payload: bytes
    signature: bytes
    tagged: bool = True
    raw: bytes = field(default=b"", compare=False, repr=False)

    @classmethod
    def from_bytes(cls, data: bytes, *, structure: str = "COSE_Sign1") -> CoseSign1:
        """Parse a (tagged or untagged) COSE_Sign1 from its exact bytes."""
        msg = cls.from_item(decode_cbor(data, structure=structure), structure=structure)
        return cls(msg.protected, msg.header, msg.alg, msg.unprotected, msg.payload,
                   msg.signature, msg.tagged, bytes(data))

    @classmethod
    def from_item(cls, item: Any, *, structure: str = "COSE_Sign1") -> CoseSign1:
        """Build from an already decoded CBOR item (``raw`` is then re-encoded)."""
        tagged = False
        if isinstance(item, Tag):
            if item.number != COSE_SIGN1_TAG:
                raise FormatError(structure, "tag", got=item.number, want=COSE_SIGN1_TAG)
            tagged, item = True, item.value
        if not isinstance(item, tuple) or len(item) != 4:
            raise FormatError(structure, "message", got=type(item).__name__,
                              want="array of 4 (protected, unprotected, payload, signature)")
        protected, unprotected, payload, signature = item
        if not isinstance(protected, bytes) or not protected:
            raise FormatError(structure, "protected", got=protected if not protected else
                              type(protected).__name__, want="non-empty bstr")
        header = decode_cbor(protected, structure=f"{structure}.protected")
        if not isinstance(header, dict):
            raise FormatError(structure, "protected", got=type(header).__name__, want="map")
        if not isinstance(unprotected, dict):
            raise FormatError(structure, "unprotected", got=type(unprotected).__name__,
                              want="map")
        if 1 in unprotected:
            raise FormatError(structure, "unprotected.alg", got="present",
                              want="alg only in the protected header")
        if not isinstance(payload, bytes):
            raise FormatError(structure, "payload", got=type(payload).__name__,
                              want="bstr (detached payloads are not accepted)")
        if not isinstance(signature, bytes) or not signature:
            raise FormatError(structure, "signature", got=type(signature).__name__,
                              want="non-empty bstr")
        alg_value = header.get(1)
        if isinstance(alg_value, bool) or not isinstance(alg_value, int):
            raise FormatError(structure, "protected.alg", got=alg_value,
                              want=[a.name for a in CoseAlg])
        try:
            alg = CoseAlg(alg_value)
        except ValueError as exc:
            raise FormatError(structure, "protected.alg", got=alg_value,
                              want=[a.name for a in CoseAlg]) from exc
        msg = cls(protected, header, alg, unprotected, payload, signature, tagged)
        return cls(protected, header, alg, unprotected, payload, signature, tagged,
                   msg.to_bytes())

    def to_bytes(self) -> bytes:
        """Serialise (inverse of :meth:`from_bytes` for shortest-form inputs)."""
        body = (self.protected, self.unprotected, self.payload, self.signature)
        return encode_cbor(Tag(COSE_SIGN1_TAG, body) if self.tagged else body)

    def sig_structure(self, external_aad: bytes = b"") -> bytes:
        """The bytes that were signed: RFC 9052 s4.4 ``Sig_structure`` for ``Signature1``."""
        return encode_cbor(("Signature1", self.protected, external_aad, self.payload))
