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
* RFC 8949 (CBOR) section 3, read and written by the shared strict reader of
  :mod:`veritee.formats.cose` (``decode_cbor`` / ``encode_cbor`` / ``CoseSign1``).

The reader is deliberately narrow (see :mod:`veritee.formats.cose`): definite lengths only, no
floating point, no duplicate keys, bounded depth and size, no trailing bytes. On top of it the
document must be ``{1: -35}`` / ``{}`` / payload / 96-byte signature, and the payload map is
checked field by field, so an inner CBOR tag (decoded as :class:`~veritee.formats.cose.Tag`)
never has a place to go and is refused as a mistyped field. Size is bounded here first
(32 KiB document, 16 KiB payload: well under :data:`veritee.formats.cose.MAX_TOKEN_SIZE`).
Anything else is a :class:`~veritee.errors.FormatError`, which is the only exception
:meth:`NitroDocument.from_bytes` raises; errors of the CBOR layer carry the shared reader's
field names (``length``, ``map_key``, ``trailing``...) under structure ``NitroDocument`` or
``NitroPayload``.

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
from typing import ClassVar

from veritee.errors import FormatError
from veritee.formats.cose import COSE_SIGN1_TAG, CoseAlg, CoseSign1, decode_cbor, encode_cbor

__all__ = [
    "COSE_ALG_ES384",
    "COSE_SIGN1_TAG",
    "NitroDocument",
    "NitroPayload",
    "is_debug_pcrs",
]

COSE_ALG_ES384 = int(CoseAlg.ES384)
"""COSE algorithm identifier of ECDSA P-384 with SHA-384 (RFC 9053 section 2.1)."""

_DOC = "NitroDocument"
_PAYLOAD = "NitroPayload"
_MAX_DOCUMENT = 32 * 1024  # payload <= 16 KiB (section 3.1) plus a small COSE envelope
_MAX_PAYLOAD = 16384  # bstr .size (1..16384), section 3.1
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


# --- the payload ------------------------------------------------------------------------------

def _bstr(fld: str, value: object, lo: int, hi: int) -> bytes:
    if not isinstance(value, bytes):
        raise FormatError(_PAYLOAD, fld, got=type(value).__name__, want="a byte string")
    if not lo <= len(value) <= hi:
        raise FormatError(_PAYLOAD, fld, got=f"{len(value)} bytes", want=f"{lo}..{hi} bytes")
    return value


def _optional(fld: str, value: object) -> bytes | None:
    if value is None:  # CBOR null, or the key is absent
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
        m = decode_cbor(data, structure=_PAYLOAD)
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
        if not isinstance(bundle, tuple) or not 1 <= len(bundle) <= _MAX_CABUNDLE:
            raise FormatError(_PAYLOAD, "cabundle", got=type(bundle).__name__
                              if not isinstance(bundle, tuple) else f"{len(bundle)} entries",
                              want=f"an array of 1..{_MAX_CABUNDLE} certificates")
        cabundle = tuple(_bstr(f"cabundle[{i}]", c, 1, _MAX_CERT)
                         for i, c in enumerate(bundle))
        return cls(module_id=module_id, digest=digest, timestamp_ms=ts,
                   pcrs=MappingProxyType(dict(sorted(pcrs.items()))), certificate=certificate,
                   cabundle=cabundle,
                   public_key=_optional("public_key", m.get("public_key")),
                   user_data=_optional("user_data", m.get("user_data")),
                   nonce=_optional("nonce", m.get("nonce")),
                   raw=data)

    def to_bytes(self) -> bytes:
        """Encode the fields (not ``raw``) as the NSM does: shortest form, NSM key order,
        optional fields written as ``null`` when ``None``."""
        return encode_cbor({
            "module_id": self.module_id, "digest": self.digest, "timestamp": self.timestamp_ms,
            "pcrs": dict(self.pcrs), "certificate": self.certificate,
            "cabundle": self.cabundle, "public_key": self.public_key,
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

    def _envelope(self) -> CoseSign1:
        """The shared :class:`~veritee.formats.cose.CoseSign1` view of this document."""
        return CoseSign1(protected=self.protected, header={1: COSE_ALG_ES384},
                         alg=CoseAlg.ES384, unprotected={}, payload=self.payload.raw,
                         signature=self.signature, tagged=self.tagged)

    @property
    def sig_structure(self) -> bytes:
        """The bytes the signature covers: ``Sig_structure = ["Signature1", protected,
        external_aad (empty), payload]`` (RFC 9052 section 4.4)."""
        return self._envelope().sig_structure()

    @classmethod
    def from_bytes(cls, data: bytes) -> NitroDocument:
        """Parse a tagged (18) or untagged ``COSE_Sign1``; raises only :class:`FormatError`."""
        data = bytes(data)
        if not 1 <= len(data) <= _MAX_DOCUMENT:
            raise FormatError(_DOC, "<document>", got=f"{len(data)} bytes",
                              want=f"1..{_MAX_DOCUMENT} bytes")
        msg = CoseSign1.from_bytes(data, structure=_DOC)
        # Exactly {1: -35}; the type test keeps a CBOR ``true`` key (== 1 in Python) out.
        if [(type(k), k, v) for k, v in msg.header.items()] != [(int, 1, COSE_ALG_ES384)]:
            raise FormatError(_DOC, "protected", got=msg.protected,
                              want="{1: -35} (alg ES384 and nothing else)")
        if msg.unprotected != {}:
            raise FormatError(_DOC, "unprotected", got=str(msg.unprotected)[:40],
                              want="an empty map")
        if len(msg.signature) != _ES384_SIGNATURE:
            raise FormatError(_DOC, "signature", got=msg.signature,
                              want="96 bytes (ES384 r || s)")
        return cls(protected=msg.protected, payload=NitroPayload.from_bytes(msg.payload),
                   signature=msg.signature, tagged=msg.tagged, raw=data)

    def to_bytes(self) -> bytes:
        """Serialize (shortest form) with the same tag choice; ``raw`` is not consulted."""
        return self._envelope().to_bytes()
