"""NVIDIA GPU / NVSwitch attestation reports: an SPDM 1.1 GET_MEASUREMENTS transcript.

An NVIDIA attestation report is the requester's ``GET_MEASUREMENTS`` request followed by the
device's ``MEASUREMENTS`` response, signed by the device's attestation key (ECDSA P-384 /
SHA-384, raw ``r || s``) over ``request || response-without-signature``. Layouts, as followed:

* DMTF DSP0274 1.1 (SPDM), "GET_MEASUREMENTS request message format" (SPDMVersion,
  RequestResponseCode 0xE0, Param1 bit 0 = signature requested, Param2 = measurement
  operation (0xFF: all blocks), Nonce (32 bytes) and SlotIDParam (1 byte) present only when a
  signature is requested); "Successful MEASUREMENTS response message format"
  (RequestResponseCode 0x60, Param2 = slot ID, NumberOfBlocks, MeasurementRecordLength
  (3-byte little endian), MeasurementRecord, Nonce (32), OpaqueLength (u16), OpaqueData,
  Signature (size from the negotiated asymmetric algorithm: 96 for ECDSA P-384));
  "Measurement block format" (Index, MeasurementSpecification (bit 0 = DMTF),
  MeasurementSize (u16), Measurement) and "DMTF measurement specification format"
  (DMTFSpecMeasurementValueType (bit 7 = raw bit stream), DMTFSpecMeasurementValueSize
  (u16), DMTFSpecMeasurementValue). All integers are little endian.
* NVIDIA's opaque data: a sequence of ``(u16 type, u16 size, value)`` items; the type numbers
  (1 cert issuer name ... 36 feature flag) follow NVIDIA nvtrust ``local_gpu_verifier``
  ``spdm_msrt_resp_msg.py`` and confidential-containers/trustee
  ``deps/verifier/src/nvidia/spdm_response.rs`` (``OpaqueDataType``), which also give the
  VBIOS version rendering used by :meth:`OpaqueData.vbios_version`.
* The "nvat" serialised evidence JSON of NVIDIA's attestation SDK (and trustee
  ``deps/verifier/src/nvidia/nvat.rs``): ``[{"arch", "nonce" (hex), "evidence" (base64 of
  the transcript), "certificate" (base64 of the PEM chain)}]``.

Choices written down:

* Only SPDM 1.1 (``0x11``) with a signed request (Param1 bit 0 set) is accepted: an unsigned
  transcript cannot be verified, and every NVIDIA report is SPDM 1.1.
* The signature is located by parsing (after the opaque data), not as "the last 96 bytes":
  one real report (trustee ``hopper_coco_report1.txt``) carries a trailing ``0x00``. Up to
  :data:`MAX_TRAILING` trailing zero bytes are kept in :attr:`GpuReport.trailing` (outside the
  signed region, so they cannot change any verified value); anything else is refused.
* Measurement blocks must use the DMTF specification (MeasurementSpecification == 1), the
  block sizes must add up to MeasurementRecordLength exactly and the count must equal
  NumberOfBlocks; opaque items must tile OpaqueData exactly; a repeated opaque type is refused.
  Unknown opaque types are kept (as :class:`OpaqueField` with their number) rather than
  refused, so a new firmware field does not break parsing; the policy never reads them.

:meth:`GpuReport.from_bytes`, :meth:`GpuReport.from_hex` and :func:`parse_nvat_evidence` raise
only :class:`~veritee.errors.FormatError`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from veritee._decode import decode_base64, decode_hex, load_json
from veritee._wire import Reader
from veritee.errors import FormatError

__all__ = [
    "GET_MEASUREMENTS",
    "MAX_TRAILING",
    "MEASUREMENTS",
    "NONCE_SIZE",
    "SIGNATURE_SIZE",
    "SPDM_VERSION_11",
    "DmtfMeasurement",
    "GpuReport",
    "MeasurementBlock",
    "MeasurementsRequest",
    "MeasurementsResponse",
    "NvatEvidence",
    "OpaqueData",
    "OpaqueField",
    "OpaqueType",
    "parse_nvat_evidence",
]

SPDM_VERSION_11 = 0x11
GET_MEASUREMENTS = 0xE0
MEASUREMENTS = 0x60
NONCE_SIZE = 32
SIGNATURE_SIZE = 96  # ECDSA P-384 raw r || s (DSP0274 1.1, "Signature" field size)
MAX_TRAILING = 16
_DMTF_SPEC = 0x01  # MeasurementSpecification bit 0 = DMTF
_REQUEST_SIZE = 4 + NONCE_SIZE + 1  # header + nonce + SlotIDParam (signature requested)
_MAX_REPORT = 64 * 1024
_MAX_JSON = 1024 * 1024
_REQ = "MeasurementsRequest"
_RSP = "MeasurementsResponse"


class OpaqueType(enum.IntEnum):
    """NVIDIA opaque-data item types (nvtrust local_gpu_verifier; trustee ``OpaqueDataType``)."""

    CERT_ISSUER_NAME = 1
    CERT_AUTHORITY_KEY_IDENTIFIER = 2
    DRIVER_VERSION = 3
    GPU_INFO = 4
    ID_SKU = 5
    VBIOS_VERSION = 6
    MANUFACTURER_ID = 7
    TAMPER_DETECTION = 8
    SMC = 9
    VPR = 10
    NVDEC0_STATUS = 11
    MSRSCNT = 12
    CPRINFO = 13
    BOARD_ID = 14
    CHIP_SKU = 15
    CHIP_SKU_MOD = 16
    PROJECT = 17
    PROJECT_SKU = 18
    PROJECT_SKU_MOD = 19
    FWID = 20
    PROTECTED_PCIE_STATUS = 21
    SWITCH_PDI = 22
    FLOORSWEPT_PORTS = 23
    POSITION_ID = 24
    LOCK_SWITCH_STATUS = 25
    GPU_LINK_CONN = 32
    SYS_ENABLE_STATUS = 33
    OPAQUE_DATA_VERSION = 34
    CHIP_INFO = 35
    FEATURE_FLAG = 36


@dataclass(frozen=True)
class MeasurementsRequest:
    """A signed SPDM 1.1 ``GET_MEASUREMENTS`` request (37 bytes)."""

    param1: int
    param2: int
    nonce: bytes
    slot_id: int
    version: int = SPDM_VERSION_11

    @property
    def signature_requested(self) -> bool:
        """Param1 bit 0 (always true for a parsed request)."""
        return bool(self.param1 & 1)

    @classmethod
    def from_bytes(cls, data: bytes) -> MeasurementsRequest:
        """Parse exactly 37 bytes."""
        r = Reader(_REQ, data, size=_REQUEST_SIZE)
        version = r.u8("SPDMVersion", 0)
        if version != SPDM_VERSION_11:
            raise FormatError(_REQ, "SPDMVersion", offset=0, got=hex(version), want="0x11")
        code = r.u8("RequestResponseCode", 1)
        if code != GET_MEASUREMENTS:
            raise FormatError(_REQ, "RequestResponseCode", offset=1, got=hex(code),
                              want="0xe0 (GET_MEASUREMENTS)")
        param1 = r.u8("Param1", 2)
        if not param1 & 1:
            raise FormatError(_REQ, "Param1", offset=2, got=param1,
                              want="bit 0 set (signature requested)")
        return cls(param1=param1, param2=r.u8("Param2", 3), nonce=r.raw("Nonce", 4, NONCE_SIZE),
                   slot_id=r.u8("SlotIDParam", 4 + NONCE_SIZE), version=version)

    def to_bytes(self) -> bytes:
        """Serialise; inverse of :meth:`from_bytes`."""
        if len(self.nonce) != NONCE_SIZE:
            raise FormatError(_REQ, "Nonce", got=len(self.nonce), want=NONCE_SIZE)
        return (bytes([self.version, GET_MEASUREMENTS, self.param1, self.param2]) + self.nonce
                + bytes([self.slot_id]))


@dataclass(frozen=True)
class DmtfMeasurement:
    """DMTF measurement: value type (bit 7 = raw bit stream, bits 0-6 = kind) and value."""

    value_type: int
    value: bytes

    @property
    def raw_bitstream(self) -> bool:
        """True when the value is a raw bit stream rather than a digest."""
        return bool(self.value_type & 0x80)

    def to_bytes(self) -> bytes:
        """``type || u16 size || value``."""
        return bytes([self.value_type]) + len(self.value).to_bytes(2, "little") + self.value


@dataclass(frozen=True)
class MeasurementBlock:
    """One measurement block: ``index`` (1-based in NVIDIA reports) and a DMTF measurement."""

    index: int
    measurement: DmtfMeasurement

    @property
    def value(self) -> bytes:
        """The measurement value (a SHA-384 digest in NVIDIA reports)."""
        return self.measurement.value

    def to_bytes(self) -> bytes:
        """``Index || MeasurementSpecification (DMTF) || u16 size || DMTF measurement``."""
        inner = self.measurement.to_bytes()
        return bytes([self.index, _DMTF_SPEC]) + len(inner).to_bytes(2, "little") + inner


@dataclass(frozen=True)
class OpaqueField:
    """One opaque-data item: ``kind`` (an :class:`OpaqueType` number) and its raw value."""

    kind: int
    value: bytes

    @property
    def name(self) -> str:
        """The type's name (``DRIVER_VERSION``), or ``TYPE_<n>`` for an unknown type."""
        try:
            return OpaqueType(self.kind).name
        except ValueError:
            return f"TYPE_{self.kind}"


def _text(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode("ascii", errors="replace")


@dataclass(frozen=True)
class OpaqueData:
    """NVIDIA's opaque data: the items in their order, with typed accessors."""

    fields: tuple[OpaqueField, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> OpaqueData:
        """Parse a sequence of ``(u16 type, u16 size, value)`` items tiling ``data`` exactly."""
        r = Reader("OpaqueData", data)
        out: list[OpaqueField] = []
        seen: set[int] = set()
        off = 0
        while off < len(r.data):
            kind = r.u16("type", off)
            size = r.u16("size", off + 2)
            value = r.raw("value", off + 4, size)
            if kind in seen:
                raise FormatError("OpaqueData", "type", offset=off, got=kind,
                                  want="each type at most once")
            seen.add(kind)
            out.append(OpaqueField(kind, value))
            off += 4 + size
        return cls(tuple(out))

    def to_bytes(self) -> bytes:
        """Serialise; inverse of :meth:`from_bytes`."""
        return b"".join(f.kind.to_bytes(2, "little") + len(f.value).to_bytes(2, "little")
                        + f.value for f in self.fields)

    def get(self, kind: int) -> bytes | None:
        """The raw value of type ``kind``, or ``None``."""
        for f in self.fields:
            if f.kind == kind:
                return f.value
        return None

    @property
    def driver_version(self) -> str | None:
        """Driver version text (``"550.90.07"``), NUL padding removed."""
        v = self.get(OpaqueType.DRIVER_VERSION)
        return None if v is None else _text(v)

    @property
    def vbios_version(self) -> str | None:
        """VBIOS version as NVIDIA prints it (``"96.00.9f.00.01"``).

        GPUs: the first half of the bytes reversed, then the first byte of the second half
        (nvtrust ``format_vbios_version``; trustee ``format_vbios_version``). NVSwitch reports
        carry the version as ASCII text (``b"96.10.55.00.01"``), returned as is. For a binary
        value shorter than 2 bytes the raw hex is returned.
        """
        v = self.get(OpaqueType.VBIOS_VERSION)
        if v is None:
            return None
        ascii_form = v.rstrip(b"\0")
        if ascii_form and all(c in b"0123456789abcdefABCDEF." for c in ascii_form):
            return ascii_form.decode("ascii").lower()  # NVSwitch: ASCII "96.10.55.00.01"
        if len(v) < 2:
            return v.hex()
        half = len(v) // 2
        return ".".join(f"{b:02x}" for b in reversed(v[:half])) + f".{v[half]:02x}"

    @property
    def fwid(self) -> bytes | None:
        """The firmware ID (SHA-384 of the FMC, matched against the leaf certificate)."""
        return self.get(OpaqueType.FWID)

    @property
    def measurement_counts(self) -> tuple[int, ...] | None:
        """MSRSCNT: one u32 per measurement block (a length not a multiple of 4 is cut)."""
        v = self.get(OpaqueType.MSRSCNT)
        if v is None:
            return None
        return tuple(int.from_bytes(v[i:i + 4], "little") for i in range(0, len(v) - 3, 4))

    def text(self, kind: int) -> str | None:
        """Type ``kind`` read as NUL-terminated ASCII (chip SKU, project, ...)."""
        v = self.get(kind)
        return None if v is None else _text(v)


@dataclass(frozen=True)
class MeasurementsResponse:
    """A successful SPDM 1.1 ``MEASUREMENTS`` response with its 96-byte signature."""

    param1: int
    slot_id: int
    blocks: tuple[MeasurementBlock, ...]
    nonce: bytes
    opaque: OpaqueData
    signature: bytes
    opaque_raw: bytes
    version: int = SPDM_VERSION_11

    @classmethod
    def parse(cls, data: bytes) -> tuple[MeasurementsResponse, int]:
        """Parse a response at the start of ``data``; return it and the bytes it used."""
        r = Reader(_RSP, data)
        version = r.u8("SPDMVersion", 0)
        if version != SPDM_VERSION_11:
            raise FormatError(_RSP, "SPDMVersion", offset=0, got=hex(version), want="0x11")
        code = r.u8("RequestResponseCode", 1)
        if code != MEASUREMENTS:
            raise FormatError(_RSP, "RequestResponseCode", offset=1, got=hex(code),
                              want="0x60 (MEASUREMENTS)")
        param1, slot = r.u8("Param1", 2), r.u8("Param2", 3)
        count = r.u8("NumberOfBlocks", 4)
        rec_len = r.uint("MeasurementRecordLength", 5, 3)
        record = r.raw("MeasurementRecord", 8, rec_len)
        blocks = _parse_record(record, count)
        off = 8 + rec_len
        nonce = r.raw("Nonce", off, NONCE_SIZE)
        off += NONCE_SIZE
        opaque_len = r.u16("OpaqueLength", off)
        off += 2
        opaque_raw = r.raw("OpaqueData", off, opaque_len)
        opaque = OpaqueData.from_bytes(opaque_raw)
        off += opaque_len
        signature = r.raw("Signature", off, SIGNATURE_SIZE)
        off += SIGNATURE_SIZE
        return cls(param1=param1, slot_id=slot, blocks=blocks, nonce=nonce, opaque=opaque,
                   signature=signature, opaque_raw=opaque_raw, version=version), off

    def unsigned_bytes(self) -> bytes:
        """The response without its signature (the part the signature covers)."""
        record = b"".join(b.to_bytes() for b in self.blocks)
        if len(record) >= 1 << 24 or len(self.blocks) > 0xFF or len(self.opaque_raw) > 0xFFFF:
            raise FormatError(_RSP, "MeasurementRecord", got=len(record), want="< 2**24")
        if len(self.nonce) != NONCE_SIZE:
            raise FormatError(_RSP, "Nonce", got=len(self.nonce), want=NONCE_SIZE)
        return (bytes([self.version, MEASUREMENTS, self.param1, self.slot_id, len(self.blocks)])
                + len(record).to_bytes(3, "little") + record + self.nonce
                + len(self.opaque_raw).to_bytes(2, "little") + self.opaque_raw)

    def to_bytes(self) -> bytes:
        """Serialise with the signature."""
        return self.unsigned_bytes() + self.signature

    def block(self, index: int) -> MeasurementBlock | None:
        """The block with SPDM index ``index``, or ``None``."""
        return next((b for b in self.blocks if b.index == index), None)


def _parse_record(record: bytes, count: int) -> tuple[MeasurementBlock, ...]:
    r = Reader("MeasurementRecord", record)
    blocks: list[MeasurementBlock] = []
    off = 0
    seen: set[int] = set()
    while off < len(record):
        index = r.u8("Index", off)
        spec = r.u8("MeasurementSpecification", off + 1)
        if spec != _DMTF_SPEC:
            raise FormatError("MeasurementRecord", "MeasurementSpecification", offset=off + 1,
                              got=spec, want="1 (DMTF)")
        size = r.u16("MeasurementSize", off + 2)
        inner = Reader("DmtfMeasurement", r.raw("Measurement", off + 4, size))
        vtype = inner.u8("DMTFSpecMeasurementValueType", 0)
        vsize = inner.u16("DMTFSpecMeasurementValueSize", 1)
        if vsize + 3 != size:
            raise FormatError("DmtfMeasurement", "DMTFSpecMeasurementValueSize", offset=off + 5,
                              got=vsize, want=f"{size - 3} (MeasurementSize - 3)")
        if index in seen:
            raise FormatError("MeasurementRecord", "Index", offset=off, got=index,
                              want="each index at most once")
        seen.add(index)
        blocks.append(MeasurementBlock(index, DmtfMeasurement(vtype, inner.raw(
            "DMTFSpecMeasurementValue", 3, vsize))))
        off += 4 + size
    if len(blocks) != count:
        raise FormatError("MeasurementRecord", "NumberOfBlocks", got=len(blocks), want=count)
    return tuple(blocks)


@dataclass(frozen=True)
class GpuReport:
    """An NVIDIA attestation report: request, response and where the signature sits."""

    request: MeasurementsRequest
    response: MeasurementsResponse
    trailing: bytes = b""

    @classmethod
    def from_bytes(cls, data: bytes) -> GpuReport:
        """Parse a binary transcript ``request || response [|| up to 16 zero bytes]``."""
        r = Reader("GpuReport", data)
        if len(r.data) > _MAX_REPORT:
            raise FormatError("GpuReport", "<length>", got=len(r.data), want=f"<= {_MAX_REPORT}")
        request = MeasurementsRequest.from_bytes(r.raw("request", 0, _REQUEST_SIZE))
        response, used = MeasurementsResponse.parse(r.data[_REQUEST_SIZE:])
        trailing = r.data[_REQUEST_SIZE + used:]
        if len(trailing) > MAX_TRAILING or any(trailing):
            raise FormatError("GpuReport", "trailing", offset=_REQUEST_SIZE + used,
                              got=trailing[:32], want=f"at most {MAX_TRAILING} zero bytes")
        return cls(request=request, response=response, trailing=trailing)

    @classmethod
    def from_hex(cls, text: str | bytes) -> GpuReport:
        """Parse the hex text form (whitespace ignored; optional ``0x``)."""
        try:
            s = text.decode("ascii") if isinstance(text, bytes) else text
            s = "".join(s.split())
            s = s.removeprefix("0x")
            raw = bytes.fromhex(s)
        except (UnicodeDecodeError, ValueError) as exc:
            raise FormatError("GpuReport", "<hex>", got=str(exc)[:60],
                              want="hex text of an SPDM transcript") from exc
        return cls.from_bytes(raw)

    def to_bytes(self) -> bytes:
        """Serialise; inverse of :meth:`from_bytes`."""
        return self.signed_data + self.response.signature + self.trailing

    @property
    def signed_data(self) -> bytes:
        """``request || response-without-signature``: the bytes the device key signs."""
        return self.request.to_bytes() + self.response.unsigned_bytes()

    @property
    def nonce(self) -> bytes:
        """The requester's nonce (the freshness challenge)."""
        return self.request.nonce

    @property
    def opaque(self) -> OpaqueData:
        """The response's opaque data."""
        return self.response.opaque


@dataclass(frozen=True)
class NvatEvidence:
    """One device entry of the nvat serialised evidence JSON."""

    arch: str
    nonce: bytes
    report: GpuReport
    certificate_pem: bytes


def _field(entry: dict[str, Any], name: str, i: int) -> str:
    v = entry.get(name)
    if not isinstance(v, str):
        raise FormatError("NvatEvidence", f"[{i}].{name}", got=type(v).__name__, want="str")
    return v


def parse_nvat_evidence(text: str | bytes) -> tuple[NvatEvidence, ...]:
    """Parse ``[{"arch", "nonce", "evidence", "certificate"}, ...]`` (nvat serialised form)."""
    doc = load_json(text, structure="NvatEvidence", max_size=_MAX_JSON)
    if not isinstance(doc, list) or not doc:
        raise FormatError("NvatEvidence", "<root>", got=type(doc).__name__,
                          want="a non-empty JSON array")
    out: list[NvatEvidence] = []
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict):
            raise FormatError("NvatEvidence", f"[{i}]", got=type(entry).__name__, want="object")
        nonce = decode_hex(_field(entry, "nonce", i), structure="NvatEvidence",
                           field=f"[{i}].nonce")
        report = decode_base64(_field(entry, "evidence", i), structure="NvatEvidence",
                               field=f"[{i}].evidence", alphabet="standard")
        pem = decode_base64(_field(entry, "certificate", i), structure="NvatEvidence",
                            field=f"[{i}].certificate", alphabet="standard")
        out.append(NvatEvidence(arch=_field(entry, "arch", i), nonce=nonce,
                                report=GpuReport.from_bytes(report), certificate_pem=pem))
    return tuple(out)
