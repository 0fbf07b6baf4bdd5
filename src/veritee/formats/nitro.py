"""AWS Nitro Enclaves attestation documents: a COSE_Sign1 (ES384) over a CBOR payload map.

Format, as followed here:

* AWS, ``aws-nitro-enclaves-nsm-api`` ``docs/attestation_process.md`` section 2.2 (the CDDL of
  ``AttestationDocument``), 3.1 (the ``COSE_Sign1`` layout: protected ``{1: -35}``, empty
  unprotected map, payload ``bstr .size (1..16384)``, signature) and 3.2.2 (mandatory and
  optional fields, their CBOR types and sizes); the same text is in the AWS Nitro Enclaves
  User Guide, "Verifying the root of trust".
* RFC 9052 (COSE) section 4.2 (``COSE_Sign1 = [protected: bstr, unprotected: map, payload:
  bstr, signature: bstr]``, CBOR tag 18 optional) and 4.4 (``Sig_structure``); RFC 9053
  section 2.1 (ES384 = COSE algorithm -35, the signature is ``r || s``, 48 bytes each).
* RFC 8949 (CBOR) section 3 for the encoding read by the small strict decoder below.

The decoder is deliberately narrow: definite lengths only, no floating point, no tags except
the optional outer tag 18, integer or text map keys, no duplicate keys, bounded depth and
size. Anything else is a :class:`~veritee.errors.FormatError`, which is the only exception
:meth:`NitroDocument.from_bytes` raises.

Choices worth writing down:

* ``public_key``, ``user_data`` and ``nonce`` may be CBOR ``null``: real NSM documents carry
  all three keys and encode an absent value as ``null`` (every sample we have does), although
  section 3.2.2.1 says "no field content can be null". ``null`` is read as "absent" (``None``).
* ``public_key`` may be empty (the brave-core example document has ``h''``), although section
  3.2.2.2 says ``1..1024``; the CDDL's ``user_data = bytes .size (0..1024)`` is used for all
  three optional fields (section 3.2.2.2 says 512 for ``user_data``/``nonce``; 1024 is the
  looser of the two and still bounded).
* ``digest`` is read as any short text here; :mod:`veritee.trust.nitro` requires ``"SHA384"``
  and 48-byte PCRs (the only digest the specification allows).
* Non-shortest CBOR heads are accepted; ``to_bytes`` writes shortest form, so the round trip
  is exact for documents the NSM produced (they are shortest form).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, ClassVar

from veritee.errors import FormatError

__all__ = [
    "COSE_ALG_ES384",
    "COSE_SIGN1_TAG",
    "NitroDocument",
    "NitroPayload",
    "is_debug_pcrs",
]

COSE_SIGN1_TAG = 18
"""CBOR tag of a tagged ``COSE_Sign1`` (RFC 9052 section 2)."""
COSE_ALG_ES384 = -35
"""COSE algorithm identifier of ECDSA P-384 with SHA-384 (RFC 9053 section 2.1)."""

_DOC = "NitroDocument"
_PAYLOAD = "NitroPayload"
_MAX_DOCUMENT = 32 * 1024  # payload <= 16 KiB (section 3.1) plus a small COSE envelope
_MAX_PAYLOAD = 16384  # bstr .size (1..16384), section 3.1
_MAX_DEPTH = 4  # document -> payload map -> pcrs / cabundle -> bytes
_MAX_CERT = 1024  # cert = bytes .size (1..1024)
_MAX_USER = 1024  # user_data = bytes .size (0..1024)
_MAX_CABUNDLE = 16  # real bundles hold 4; a chain longer than 16 is not a Nitro chain
_MAX_MODULE_ID = 256
_MAX_DIGEST_NAME = 16
_PCR_SIZES = (32, 48, 64)  # pcr = bytes .size (32/48/64)
_PCR_COUNT = 32  # index = 0..31, 1..32 entries (section 3.2.2.2)
_ES384_SIGNATURE = 96  # r || s, 48 bytes each (RFC 9053 section 2.1)
_TIMESTAMP_MAX = 253402300799999  # uint .size 8, capped at 9999-12-31T23:59:59.999Z (datetime)

_MANDATORY = ("module_id", "digest", "timestamp", "pcrs", "certificate", "cabundle")
_OPTIONAL = ("public_key", "user_data", "nonce")
_KEY_ORDER = (*_MANDATORY, *_OPTIONAL)  # the order the NSM writes them in


# --- a small strict CBOR reader (RFC 8949 section 3) ------------------------------------------

class _Null:
    """CBOR ``null`` (kept apart from Python ``None`` only inside the decoder)."""


_NULL = _Null()


class _Decoder:
    """Reads one CBOR data item at a time from ``data``; every failure is a FormatError."""

    def __init__(self, structure: str, data: bytes) -> None:
        self.structure = structure
        self.data = data
        self.pos = 0

    def fail(self, fld: str, got: object, want: object, detail: str | None = None) -> FormatError:
        return FormatError(self.structure, fld, offset=self.pos, got=got, want=want,
                           detail=detail)

    def _take(self, fld: str, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise self.fail(fld, f"{len(self.data) - self.pos} byte(s) left", f"{n} byte(s)",
                            "truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def head(self, fld: str) -> tuple[int, int]:
        """(major type, argument) of the next item; indefinite lengths are refused."""
        first = self._take(fld, 1)[0]
        major, info = first >> 5, first & 0x1F
        if info < 24:
            return major, info
        if info in (24, 25, 26, 27):
            size = 1 << (info - 24)
            return major, int.from_bytes(self._take(fld, size), "big")
        self.pos -= 1
        raise self.fail(fld, f"initial byte 0x{first:02x}", "a definite-length CBOR item",
                        "indefinite length or reserved additional information")

    def item(self, fld: str, depth: int = 0) -> Any:
        """The next data item as int / bytes / str / list / dict / bool / _NULL."""
        if depth > _MAX_DEPTH:
            raise self.fail(fld, f"depth {depth}", f"<= {_MAX_DEPTH}", "nested too deeply")
        start = self.pos
        major, arg = self.head(fld)
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major in (2, 3):
            raw = self._take(fld, arg)
            if major == 2:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.pos = start
                raise self.fail(fld, raw[:16], "UTF-8 text") from exc
        if major == 4:
            if arg > len(self.data) - self.pos:  # every item takes at least one byte
                self.pos = start
                raise self.fail(fld, f"array of {arg}", "fewer items than bytes left")
            return [self.item(f"{fld}[{i}]", depth + 1) for i in range(arg)]
        if major == 5:
            if 2 * arg > len(self.data) - self.pos:
                self.pos = start
                raise self.fail(fld, f"map of {arg}", "fewer entries than bytes left")
            out: dict[int | str, Any] = {}
            for _ in range(arg):
                key_at = self.pos
                key = self.item(f"{fld}.<key>", depth + 1)
                if isinstance(key, bool) or not isinstance(key, int | str):
                    self.pos = key_at
                    raise self.fail(f"{fld}.<key>", type(key).__name__, "an integer or text key")
                if key in out:
                    self.pos = key_at
                    raise self.fail(f"{fld}.{key}", "a duplicate key", "unique map keys")
                out[key] = self.item(f"{fld}.{key}", depth + 1)
            return out
        if major == 6:
            self.pos = start
            raise self.fail(fld, f"tag {arg}", "no tag", "tags are only allowed around COSE_Sign1")
        # major 7: simple values and floats; only false / true / null are allowed
        if arg == 20:
            return False
        if arg == 21:
            return True
        if arg == 22:
            return _NULL
        self.pos = start
        raise self.fail(fld, f"simple/float 0x{self.data[start]:02x}", "false, true or null")

    def end(self) -> None:
        if self.pos != len(self.data):
            raise self.fail("<end>", f"{len(self.data) - self.pos} trailing byte(s)",
                            "end of data")


# --- shortest-form CBOR writer for the same subset --------------------------------------------

def _head(major: int, arg: int) -> bytes:
    if arg < 24:
        return bytes([major << 5 | arg])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg < 1 << (8 * size):
            return bytes([major << 5 | info]) + arg.to_bytes(size, "big")
    raise ValueError("CBOR argument too large")


def _encode(value: object) -> bytes:
    if value is None:
        return b"\xf6"
    if isinstance(value, bool):
        return b"\xf5" if value else b"\xf4"
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, bytes):
        return _head(2, len(value)) + value
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _head(3, len(raw)) + raw
    if isinstance(value, list | tuple):
        return _head(4, len(value)) + b"".join(_encode(v) for v in value)
    if isinstance(value, Mapping):
        return _head(5, len(value)) + b"".join(_encode(k) + _encode(v)
                                               for k, v in value.items())
    raise TypeError(f"cannot encode {type(value).__name__}")


# --- the payload ------------------------------------------------------------------------------

def _bstr(fld: str, value: object, lo: int, hi: int) -> bytes:
    if not isinstance(value, bytes):
        raise FormatError(_PAYLOAD, fld, got=type(value).__name__, want="a byte string")
    if not lo <= len(value) <= hi:
        raise FormatError(_PAYLOAD, fld, got=f"{len(value)} bytes", want=f"{lo}..{hi} bytes")
    return value


def _optional(fld: str, value: object) -> bytes | None:
    if value is _NULL:
        return None
    return _bstr(fld, value, 0, _MAX_USER)


def is_debug_pcrs(pcrs: Mapping[int, bytes]) -> bool:
    """True when PCR0, PCR1 and PCR2 are present and all zero: the enclave runs in debug mode.

    AWS Nitro Enclaves User Guide, "Nitro Enclaves concepts" / ``nitro-cli run-enclave
    --debug-mode``: "attestation documents generated by enclaves in debug mode have PCRs made
    up of all zeros" (PCR0-2 measure the enclave image, kernel and application).
    """
    return all(i in pcrs and not any(pcrs[i]) for i in (0, 1, 2))


@dataclass(frozen=True)
class NitroPayload:
    """The ``AttestationDocument`` map (nsm-api ``attestation_process.md`` section 2.2).

    ``pcrs`` maps PCR index (0..31) to its value; ``cabundle`` is ``[root, intermediate...]``
    as the NSM writes it (section 3.2.3); ``None`` optional fields were absent or ``null``.
    ``raw`` is the exact payload bytes the signature covers.
    """

    module_id: str
    digest: str
    timestamp_ms: int
    pcrs: Mapping[int, bytes]
    certificate: bytes
    cabundle: tuple[bytes, ...]
    public_key: bytes | None
    user_data: bytes | None
    nonce: bytes | None
    raw: bytes

    @property
    def timestamp(self) -> datetime:
        """``timestamp`` (milliseconds since the UNIX epoch) as an aware UTC datetime."""
        return datetime.fromtimestamp(self.timestamp_ms / 1000, tz=UTC)

    @property
    def debug_mode(self) -> bool:
        """PCR0, PCR1 and PCR2 all zero (see :func:`is_debug_pcrs`)."""
        return is_debug_pcrs(self.pcrs)

    @classmethod
    def from_bytes(cls, data: bytes) -> NitroPayload:
        """Parse the payload map; every unknown, duplicate, missing or mistyped key raises."""
        data = bytes(data)
        if not 1 <= len(data) <= _MAX_PAYLOAD:
            raise FormatError(_PAYLOAD, "<payload>", got=f"{len(data)} bytes",
                              want=f"1..{_MAX_PAYLOAD} bytes")
        d = _Decoder(_PAYLOAD, data)
        m = d.item("<payload>")
        d.end()
        if not isinstance(m, dict):
            raise FormatError(_PAYLOAD, "<payload>", offset=0, got=type(m).__name__,
                              want="a CBOR map")
        unknown = sorted(str(k) for k in m if k not in _KEY_ORDER)
        if unknown:
            raise FormatError(_PAYLOAD, unknown[0], got="an unknown key",
                              want=f"one of {', '.join(_KEY_ORDER)}")
        missing = [k for k in _MANDATORY if k not in m]
        if missing:
            raise FormatError(_PAYLOAD, missing[0], got="absent", want="present (mandatory)")
        module_id, digest, ts = m["module_id"], m["digest"], m["timestamp"]
        if not isinstance(module_id, str) or not 1 <= len(module_id) <= _MAX_MODULE_ID:
            raise FormatError(_PAYLOAD, "module_id", got=module_id,
                              want=f"text of 1..{_MAX_MODULE_ID} characters")
        if not isinstance(digest, str) or not 1 <= len(digest) <= _MAX_DIGEST_NAME:
            raise FormatError(_PAYLOAD, "digest", got=digest, want="a digest name such as SHA384")
        if isinstance(ts, bool) or not isinstance(ts, int) or not 0 < ts <= _TIMESTAMP_MAX:
            raise FormatError(_PAYLOAD, "timestamp", got=ts,
                              want="uint > 0 (milliseconds, before year 10000)")
        pcrs_in = m["pcrs"]
        if not isinstance(pcrs_in, dict) or not 1 <= len(pcrs_in) <= _PCR_COUNT:
            raise FormatError(_PAYLOAD, "pcrs", got=pcrs_in if not isinstance(pcrs_in, dict)
                              else f"{len(pcrs_in)} entries", want=f"a map of 1..{_PCR_COUNT}")
        pcrs: dict[int, bytes] = {}
        for idx, value in pcrs_in.items():
            if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx < _PCR_COUNT:
                raise FormatError(_PAYLOAD, "pcrs.<index>", got=idx, want="an integer 0..31")
            if not isinstance(value, bytes) or len(value) not in _PCR_SIZES:
                raise FormatError(_PAYLOAD, f"pcrs.{idx}",
                                  got=type(value).__name__ if not isinstance(value, bytes)
                                  else f"{len(value)} bytes", want="32, 48 or 64 bytes")
            pcrs[idx] = value
        certificate = _bstr("certificate", m["certificate"], 1, _MAX_CERT)
        bundle = m["cabundle"]
        if not isinstance(bundle, list) or not 1 <= len(bundle) <= _MAX_CABUNDLE:
            raise FormatError(_PAYLOAD, "cabundle", got=type(bundle).__name__
                              if not isinstance(bundle, list) else f"{len(bundle)} entries",
                              want=f"an array of 1..{_MAX_CABUNDLE} certificates")
        cabundle = tuple(_bstr(f"cabundle[{i}]", c, 1, _MAX_CERT)
                         for i, c in enumerate(bundle))
        return cls(module_id=module_id, digest=digest, timestamp_ms=ts,
                   pcrs=MappingProxyType(dict(sorted(pcrs.items()))), certificate=certificate,
                   cabundle=cabundle,
                   public_key=_optional("public_key", m.get("public_key", _NULL)),
                   user_data=_optional("user_data", m.get("user_data", _NULL)),
                   nonce=_optional("nonce", m.get("nonce", _NULL)),
                   raw=data)

    def to_bytes(self) -> bytes:
        """Encode the fields (not ``raw``) as the NSM does: shortest form, NSM key order,
        optional fields written as ``null`` when ``None``."""
        return _encode({
            "module_id": self.module_id, "digest": self.digest, "timestamp": self.timestamp_ms,
            "pcrs": dict(self.pcrs), "certificate": self.certificate,
            "cabundle": list(self.cabundle), "public_key": self.public_key,
            "user_data": self.user_data, "nonce": self.nonce,
        })


# --- the COSE_Sign1 envelope ------------------------------------------------------------------

@dataclass(frozen=True)
class NitroDocument:
    """A parsed ``COSE_Sign1`` attestation document (RFC 9052 section 4.2).

    ``protected`` is the exact serialized protected header (``{1: -35}``), ``payload`` the
    parsed payload (its ``raw`` the signed bytes), ``signature`` the raw ``r || s`` (96 bytes),
    ``tagged`` whether the document carried CBOR tag 18, ``raw`` the bytes parsed.
    """

    protected: bytes
    payload: NitroPayload
    signature: bytes
    tagged: bool
    raw: bytes

    algorithm: ClassVar[int] = COSE_ALG_ES384

    @property
    def sig_structure(self) -> bytes:
        """The bytes the signature covers: ``Sig_structure = ["Signature1", protected,
        external_aad (empty), payload]`` (RFC 9052 section 4.4)."""
        return _encode(["Signature1", self.protected, b"", self.payload.raw])

    @classmethod
    def from_bytes(cls, data: bytes) -> NitroDocument:
        """Parse a tagged (18) or untagged ``COSE_Sign1``; raises only :class:`FormatError`."""
        data = bytes(data)
        if not 1 <= len(data) <= _MAX_DOCUMENT:
            raise FormatError(_DOC, "<document>", got=f"{len(data)} bytes",
                              want=f"1..{_MAX_DOCUMENT} bytes")
        d = _Decoder(_DOC, data)
        tagged = data[0] >> 5 == 6
        if tagged:
            _major, tag = d.head("<tag>")
            if tag != COSE_SIGN1_TAG:
                raise FormatError(_DOC, "<tag>", offset=0, got=tag, want=COSE_SIGN1_TAG)
        at = d.pos
        envelope = d.item("COSE_Sign1")
        d.end()
        if not isinstance(envelope, list) or len(envelope) != 4:
            raise FormatError(_DOC, "COSE_Sign1", offset=at, got=type(envelope).__name__
                              if not isinstance(envelope, list) else f"{len(envelope)} items",
                              want="an array of 4 items")
        protected, unprotected, payload, signature = envelope
        if not isinstance(protected, bytes):
            raise FormatError(_DOC, "protected", got=type(protected).__name__, want="bstr")
        hd = _Decoder(f"{_DOC}.protected", protected)
        header = hd.item("protected") if protected else {}
        hd.end()
        if header != {1: COSE_ALG_ES384}:
            raise FormatError(_DOC, "protected", got=protected,
                              want="{1: -35} (alg ES384 and nothing else)")
        if unprotected != {}:
            raise FormatError(_DOC, "unprotected", got=str(unprotected)[:40],
                              want="an empty map")
        if not isinstance(payload, bytes):
            raise FormatError(_DOC, "payload", got=type(payload).__name__,
                              want="bstr (not detached)")
        if not isinstance(signature, bytes) or len(signature) != _ES384_SIGNATURE:
            raise FormatError(_DOC, "signature", got=signature if isinstance(signature, bytes)
                              else type(signature).__name__, want="96 bytes (ES384 r || s)")
        return cls(protected=protected, payload=NitroPayload.from_bytes(payload),
                   signature=signature, tagged=tagged, raw=data)

    def to_bytes(self) -> bytes:
        """Serialize (shortest form) with the same tag choice; ``raw`` is not consulted."""
        body = _encode([self.protected, {}, self.payload.raw, self.signature])
        return (_head(6, COSE_SIGN1_TAG) + body) if self.tagged else body
