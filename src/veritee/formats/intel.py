"""Intel DCAP ECDSA quotes (SGX v3, TDX v4/v5) and their collateral JSON: bytes <-> frozen objects.

No crypto, no I/O, no policy. Sources (cited below by short name):

* "Intel SGX ECDSA Quote Library API" (Intel DCAP docs), Appendix "Quote Format": the v3
  quote header (48 bytes), the ISV enclave report body (``sgx_report_body_t``, 384 bytes) and
  the "Quote Signature Data" / "ECDSA 256-bit Quote Signature Data Structure" /
  "Certification Data" tables. Cited as "SGX QL API".
* "Intel TDX DCAP Quoting Library API" (Intel DCAP docs), Appendix "Quote Format": the v4
  header, the TD Quote Body (TD 1.0, 584 bytes), the v5 "Quote Body Descriptor"
  (``u16 type``, ``u32 size``; type 1 = SGX, 2 = TD 1.0, 3 = TD 1.5 with TEE_TCB_SVN2 and
  MRSERVICETD, 648 bytes) and "QE Report Certification Data" (certification data type 6 that
  nests type 5). Cited as "TDX QL API".
* google/go-tdx-guest ``abi/abi.go`` (same offsets, used to cross-check) and
  Phala-Network/dcap-qvl ``src/quote.rs``.
* Intel PCS API documentation, "TCB Info V3" / "Enclave Identity V2" JSON models, and the
  SGX PCK Certificate and CRL Profile (OIDs 1.2.840.113741.1.13.1.*) for the PCK extensions.

What the parser accepts, exactly:

* header version 3 (SGX, TEE type 0), 4 (TEE type 0 or 0x81) or 5 (body descriptor present);
  attestation key type 2 (ECDSA-256-with-P-256) only;
* the signature-data length field must be met exactly by the nested lengths (signature,
  key, QE report, auth data, certification data) - no slack inside the signature data;
* after the signature data, **only zero bytes** may follow. Real quote buffers carry such
  padding (GCE hands out an 8000-byte buffer; dcap-qvl and trustee samples carry 70 zero
  bytes). Their count is kept as :attr:`Quote.padding` so that ``to_bytes`` round-trips;
  a non-zero trailing byte is a :class:`FormatError` unless the caller opts in with
  ``Quote.from_bytes(data, allow_nonzero_trailer=True)``: go-tdx-guest's test quote
  ``tdx_prod_quote_SPR_E4.dat`` ends with the 39 ASCII bytes "\\nextra bytes(only for testing
  purpose)\\n", which go-tdx-guest ignores. Trailing bytes are never covered by any signature;
  they are kept in :attr:`Quote.trailer` only so that ``to_bytes`` round-trips.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from veritee._decode import load_json
from veritee._wire import Reader, Writer
from veritee.errors import FormatError

__all__ = [
    "HEADER_SIZE",
    "INTEL_QE_VENDOR_ID",
    "SGX_REPORT_SIZE",
    "TD10_REPORT_SIZE",
    "TD15_REPORT_SIZE",
    "BodyType",
    "CertificationData",
    "CertificationDataType",
    "EnclaveIdentity",
    "EnclaveIdentityLevel",
    "PckExtensions",
    "QeReportCertificationData",
    "Quote",
    "QuoteHeader",
    "QuoteSignatureData",
    "SgxReportBody",
    "TcbInfo",
    "TcbLevel",
    "TcbStatus",
    "TdReportBody",
    "TdxModule",
    "TdxModuleIdentity",
    "TdxModuleLevel",
    "TeeType",
    "signed_json_member",
    "split_der",
]

HEADER_SIZE = 48
SGX_REPORT_SIZE = 384
TD10_REPORT_SIZE = 584
TD15_REPORT_SIZE = 648
ECDSA_SIG_SIZE = 64
ECDSA_KEY_SIZE = 64
ATT_KEY_TYPE_ECDSA_P256 = 2
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
"""QE vendor ID of Intel's quoting enclaves (SGX QL API, header table)."""


class TeeType(enum.IntEnum):
    """Header ``tee_type`` (TDX QL API header table): 0x00 SGX, 0x81 TDX."""

    SGX = 0x00
    TDX = 0x81


class BodyType(enum.IntEnum):
    """v5 Quote Body Descriptor ``type`` (TDX QL API); implied by the TEE type in v3/v4."""

    SGX = 1
    TD10 = 2
    TD15 = 3


_BODY_SIZES = {BodyType.SGX: SGX_REPORT_SIZE, BodyType.TD10: TD10_REPORT_SIZE,
               BodyType.TD15: TD15_REPORT_SIZE}


class CertificationDataType(enum.IntEnum):
    """Certification data types (SGX QL API "Certification Data" table)."""

    PPID_CLEARTEXT = 1
    PPID_RSA2048_OAEP = 2
    PPID_RSA3072_OAEP = 3
    PCK_LEAF = 4
    PCK_CHAIN = 5
    QE_REPORT = 6
    PLATFORM_MANIFEST = 7


class TcbStatus(enum.StrEnum):
    """TCB level statuses as Intel PCS spells them (TCB Info V3 ``tcbStatus``)."""

    UP_TO_DATE = "UpToDate"
    SW_HARDENING_NEEDED = "SWHardeningNeeded"
    CONFIGURATION_NEEDED = "ConfigurationNeeded"
    CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
    OUT_OF_DATE = "OutOfDate"
    OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
    REVOKED = "Revoked"


# -- header and bodies -----------------------------------------------------------------------


@dataclass(frozen=True)
class QuoteHeader:
    """The 48-byte quote header (SGX QL API / TDX QL API header tables).

    Offsets: version u16 @0, att_key_type u16 @2, tee_type u32 @4 (v3: reserved, zero),
    qe_svn u16 @8, pce_svn u16 @10 (TDX QL API v4 calls both "reserved"; go-tdx-guest keeps
    them as QeSvn/PceSvn; no constraint is put on them), qe_vendor_id 16 @12, user_data 20 @28.
    """

    version: int
    att_key_type: int
    tee_type: TeeType
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> QuoteHeader:
        """Parse exactly 48 bytes."""
        r = Reader("QuoteHeader", data, size=HEADER_SIZE)
        version = r.u16("version", 0)
        if version not in (3, 4, 5):
            raise FormatError("QuoteHeader", "version", offset=0, got=version, want="3, 4 or 5")
        key_type = r.u16("att_key_type", 2)
        if key_type != ATT_KEY_TYPE_ECDSA_P256:
            raise FormatError("QuoteHeader", "att_key_type", offset=2, got=key_type,
                              want="2 (ECDSA-256-with-P-256)")
        raw_tee = r.u32("tee_type", 4)
        if raw_tee not in (TeeType.SGX, TeeType.TDX) or (version == 3 and raw_tee != 0):
            raise FormatError("QuoteHeader", "tee_type", offset=4, got=raw_tee,
                              want="0 (v3) or 0 / 0x81 (v4, v5)")
        return cls(version=version, att_key_type=key_type, tee_type=TeeType(raw_tee),
                   qe_svn=r.u16("qe_svn", 8), pce_svn=r.u16("pce_svn", 10),
                   qe_vendor_id=r.raw("qe_vendor_id", 12, 16),
                   user_data=r.raw("user_data", 28, 20))

    def to_bytes(self) -> bytes:
        """Inverse of :meth:`from_bytes`."""
        w = Writer("QuoteHeader", HEADER_SIZE)
        w.uint("version", 0, 2, self.version)
        w.uint("att_key_type", 2, 2, self.att_key_type)
        w.u32("tee_type", 4, int(self.tee_type))
        w.uint("qe_svn", 8, 2, self.qe_svn)
        w.uint("pce_svn", 10, 2, self.pce_svn)
        w.raw("qe_vendor_id", 12, self.qe_vendor_id, 16)
        w.raw("user_data", 28, self.user_data, 20)
        return w.getvalue()


@dataclass(frozen=True)
class SgxReportBody:
    """``sgx_report_body_t`` (384 bytes): the ISV enclave report and the QE report.

    SGX QL API "Enclave Report" table: cpu_svn 16 @0, misc_select u32 @16, reserved 12 @20,
    isv_ext_prod_id 16 @32, attributes 16 @48, mr_enclave 32 @64, reserved 32 @96,
    mr_signer 32 @128, reserved 32 @160, config_id 64 @192, isv_prod_id u16 @256,
    isv_svn u16 @258, config_svn u16 @260, reserved 42 @262, isv_family_id 16 @304,
    report_data 64 @320.
    """

    cpu_svn: bytes
    misc_select: int
    isv_ext_prod_id: bytes
    attributes: bytes
    mr_enclave: bytes
    mr_signer: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    isv_family_id: bytes
    report_data: bytes

    _RESERVED = ((20, 12), (96, 32), (160, 32), (262, 42))

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str = "SgxReportBody") -> SgxReportBody:
        """Parse exactly 384 bytes; every reserved range must be zero."""
        r = Reader(name, data, size=SGX_REPORT_SIZE)
        for i, (off, n) in enumerate(cls._RESERVED, 1):
            r.zero(f"reserved{i}", off, n)
        return cls(cpu_svn=r.raw("cpu_svn", 0, 16), misc_select=r.u32("misc_select", 16),
                   isv_ext_prod_id=r.raw("isv_ext_prod_id", 32, 16),
                   attributes=r.raw("attributes", 48, 16),
                   mr_enclave=r.raw("mr_enclave", 64, 32), mr_signer=r.raw("mr_signer", 128, 32),
                   config_id=r.raw("config_id", 192, 64), isv_prod_id=r.u16("isv_prod_id", 256),
                   isv_svn=r.u16("isv_svn", 258), config_svn=r.u16("config_svn", 260),
                   isv_family_id=r.raw("isv_family_id", 304, 16),
                   report_data=r.raw("report_data", 320, 64))

    def to_bytes(self) -> bytes:
        """Inverse of :meth:`from_bytes`."""
        w = Writer("SgxReportBody", SGX_REPORT_SIZE)
        w.raw("cpu_svn", 0, self.cpu_svn, 16)
        w.u32("misc_select", 16, self.misc_select)
        w.raw("isv_ext_prod_id", 32, self.isv_ext_prod_id, 16)
        w.raw("attributes", 48, self.attributes, 16)
        w.raw("mr_enclave", 64, self.mr_enclave, 32)
        w.raw("mr_signer", 128, self.mr_signer, 32)
        w.raw("config_id", 192, self.config_id, 64)
        w.uint("isv_prod_id", 256, 2, self.isv_prod_id)
        w.uint("isv_svn", 258, 2, self.isv_svn)
        w.uint("config_svn", 260, 2, self.config_svn)
        w.raw("isv_family_id", 304, self.isv_family_id, 16)
        w.raw("report_data", 320, self.report_data, 64)
        return w.getvalue()

    @property
    def attribute_flags(self) -> int:
        """ATTRIBUTES.FLAGS (the first 8 bytes, little endian)."""
        return int.from_bytes(self.attributes[:8], "little")

    @property
    def debug(self) -> bool:
        """ATTRIBUTES.DEBUG (flags bit 1; SDM Vol. 3D "SECS", ATTRIBUTES table)."""
        return bool(self.attribute_flags & 0x2)


@dataclass(frozen=True)
class TdReportBody:
    """TD Quote Body: TD 1.0 (584 bytes) or TD 1.5 (648 bytes).

    TDX QL API "TD Quote Body" table: tee_tcb_svn 16 @0, mr_seam 48 @16, mr_signer_seam 48 @64,
    seam_attributes 8 @112, td_attributes 8 @120, xfam 8 @128, mr_td 48 @136,
    mr_config_id 48 @184, mr_owner 48 @232, mr_owner_config 48 @280, rtmr0..3 48 each @328,
    report_data 64 @520; TD 1.5 adds tee_tcb_svn2 16 @584 and mr_servicetd 48 @600.
    There are no reserved ranges in the TD body.
    """

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmrs: tuple[bytes, bytes, bytes, bytes]
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    mr_servicetd: bytes | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> TdReportBody:
        """Parse 584 (TD 1.0) or 648 (TD 1.5) bytes."""
        if not isinstance(data, bytes | bytearray) or len(data) not in (TD10_REPORT_SIZE,
                                                                        TD15_REPORT_SIZE):
            got = len(data) if isinstance(data, bytes | bytearray) else type(data).__name__
            raise FormatError("TdReportBody", "<length>", got=got, want="584 or 648")
        r = Reader("TdReportBody", data)
        td15 = len(data) == TD15_REPORT_SIZE
        rtmrs = tuple(r.raw(f"rtmr{i}", 328 + 48 * i, 48) for i in range(4))
        return cls(tee_tcb_svn=r.raw("tee_tcb_svn", 0, 16), mr_seam=r.raw("mr_seam", 16, 48),
                   mr_signer_seam=r.raw("mr_signer_seam", 64, 48),
                   seam_attributes=r.raw("seam_attributes", 112, 8),
                   td_attributes=r.raw("td_attributes", 120, 8), xfam=r.raw("xfam", 128, 8),
                   mr_td=r.raw("mr_td", 136, 48), mr_config_id=r.raw("mr_config_id", 184, 48),
                   mr_owner=r.raw("mr_owner", 232, 48),
                   mr_owner_config=r.raw("mr_owner_config", 280, 48),
                   rtmrs=(rtmrs[0], rtmrs[1], rtmrs[2], rtmrs[3]),
                   report_data=r.raw("report_data", 520, 64),
                   tee_tcb_svn2=r.raw("tee_tcb_svn2", 584, 16) if td15 else None,
                   mr_servicetd=r.raw("mr_servicetd", 600, 48) if td15 else None)

    @property
    def is_td15(self) -> bool:
        """True for the TD 1.5 body."""
        return self.tee_tcb_svn2 is not None

    def to_bytes(self) -> bytes:
        """Inverse of :meth:`from_bytes`."""
        w = Writer("TdReportBody", TD15_REPORT_SIZE if self.is_td15 else TD10_REPORT_SIZE)
        w.raw("tee_tcb_svn", 0, self.tee_tcb_svn, 16)
        w.raw("mr_seam", 16, self.mr_seam, 48)
        w.raw("mr_signer_seam", 64, self.mr_signer_seam, 48)
        w.raw("seam_attributes", 112, self.seam_attributes, 8)
        w.raw("td_attributes", 120, self.td_attributes, 8)
        w.raw("xfam", 128, self.xfam, 8)
        w.raw("mr_td", 136, self.mr_td, 48)
        w.raw("mr_config_id", 184, self.mr_config_id, 48)
        w.raw("mr_owner", 232, self.mr_owner, 48)
        w.raw("mr_owner_config", 280, self.mr_owner_config, 48)
        for i, rtmr in enumerate(self.rtmrs):
            w.raw(f"rtmr{i}", 328 + 48 * i, rtmr, 48)
        w.raw("report_data", 520, self.report_data, 64)
        if self.tee_tcb_svn2 is not None:
            w.raw("tee_tcb_svn2", 584, self.tee_tcb_svn2, 16)
            w.raw("mr_servicetd", 600, self.mr_servicetd or b"", 48)
        return w.getvalue()

    @property
    def debug(self) -> bool:
        """TD ATTRIBUTES.DEBUG (bit 0; TDX module ABI "ATTRIBUTES" table)."""
        return bool(self.td_attributes[0] & 0x1)


# -- signature data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificationData:
    """One certification-data record: ``u16 type``, ``u32 size``, ``size`` bytes.

    Type 6 (TDX QL API "QE Report Certification Data") nests a
    :class:`QeReportCertificationData`, kept in :attr:`qe_report_data`; other types keep their
    bytes raw in :attr:`data` (type 5 is the PEM PCK chain).
    """

    cert_type: int
    data: bytes
    qe_report_data: QeReportCertificationData | None = None

    @classmethod
    def parse_at(cls, r: Reader, offset: int) -> tuple[CertificationData, int]:
        """Parse the record at ``offset`` of ``r``; return it and the offset after it."""
        cert_type = r.u16("certification_data_type", offset)
        if not 1 <= cert_type <= 7:
            raise FormatError(r.name, "certification_data_type", offset=offset, got=cert_type,
                              want="1..7")
        size = r.u32("certification_data_size", offset + 2)
        data = r.raw("certification_data", offset + 6, size)
        nested = None
        if cert_type == CertificationDataType.QE_REPORT:
            nested = QeReportCertificationData.from_bytes(data)
        return cls(cert_type, data, nested), offset + 6 + size

    def to_bytes(self) -> bytes:
        """Inverse of :meth:`parse_at`."""
        data = self.qe_report_data.to_bytes() if self.qe_report_data is not None else self.data
        return (self.cert_type.to_bytes(2, "little") + len(data).to_bytes(4, "little") + data)

    @property
    def pck_chain_bytes(self) -> bytes | None:
        """The PCK chain (type 5) with trailing NUL bytes removed, else ``None``."""
        if self.cert_type != CertificationDataType.PCK_CHAIN:
            return None
        return self.data.rstrip(b"\x00")


@dataclass(frozen=True)
class QeReportCertificationData:
    """QE report (384), its ECDSA signature (64), ``u16`` auth-data size, auth data, and the
    certification data of the PCK (TDX QL API "QE Report Certification Data"; in a v3 quote
    the same fields sit directly in the ECDSA signature data, SGX QL API)."""

    qe_report: SgxReportBody
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification_data: CertificationData

    @property
    def qe_report_bytes(self) -> bytes:
        """The 384 signed bytes of the QE report."""
        return self.qe_report.to_bytes()

    @classmethod
    def parse_at(cls, r: Reader, offset: int) -> tuple[QeReportCertificationData, int]:
        """Parse at ``offset``; return the record and the offset after it."""
        qe_report = SgxReportBody.from_bytes(r.raw("qe_report", offset, SGX_REPORT_SIZE),
                                             name="QeReport")
        sig = r.raw("qe_report_signature", offset + 384, ECDSA_SIG_SIZE)
        auth_len = r.u16("qe_auth_data_size", offset + 448)
        auth = r.raw("qe_auth_data", offset + 450, auth_len)
        cert, end = CertificationData.parse_at(r, offset + 450 + auth_len)
        return cls(qe_report, sig, auth, cert), end

    @classmethod
    def from_bytes(cls, data: bytes) -> QeReportCertificationData:
        """Parse the type-6 payload; its length must be met exactly."""
        r = Reader("QeReportCertificationData", data)
        value, end = cls.parse_at(r, 0)
        if end != len(r.data):
            raise FormatError(r.name, "<length>", got=len(r.data), want=end,
                              detail="bytes after the nested certification data")
        return value

    def to_bytes(self) -> bytes:
        """Inverse of :meth:`from_bytes`."""
        return (self.qe_report.to_bytes() + self.qe_report_signature
                + len(self.qe_auth_data).to_bytes(2, "little") + self.qe_auth_data
                + self.certification_data.to_bytes())


@dataclass(frozen=True)
class QuoteSignatureData:
    """ECDSA-256 quote signature data: signature ``r||s`` (64, big-endian halves) over the
    signed region, attestation public key ``x||y`` (64), then the QE report certification
    data (v3: inline; v4/v5: certification data type 6)."""

    signature: bytes
    attestation_key: bytes
    qe: QeReportCertificationData

    @classmethod
    def from_bytes(cls, data: bytes, *, version: int) -> QuoteSignatureData:
        """Parse; the length must be met exactly."""
        r = Reader("QuoteSignatureData", data)
        sig = r.raw("signature", 0, ECDSA_SIG_SIZE)
        key = r.raw("attestation_key", 64, ECDSA_KEY_SIZE)
        if version == 3:
            qe, end = QeReportCertificationData.parse_at(r, 128)
        else:
            outer, end = CertificationData.parse_at(r, 128)
            if outer.qe_report_data is None:
                raise FormatError(r.name, "certification_data_type", offset=128,
                                  got=outer.cert_type, want="6 (QE report certification data)")
            qe = outer.qe_report_data
        if end != len(r.data):
            raise FormatError(r.name, "<length>", got=len(r.data), want=end,
                              detail="signature data length does not match its contents")
        return cls(sig, key, qe)

    def to_bytes(self, *, version: int) -> bytes:
        """Inverse of :meth:`from_bytes`."""
        if version == 3:
            rest = self.qe.to_bytes()
        else:
            rest = CertificationData(CertificationDataType.QE_REPORT, b"", self.qe).to_bytes()
        return self.signature + self.attestation_key + rest


@dataclass(frozen=True)
class Quote:
    """An Intel DCAP ECDSA-256 quote: SGX v3, TDX v4 or v5 (SGX, TD 1.0 or TD 1.5 body).

    :attr:`signed_bytes` is what the attestation key signs: header || body (v3/v4) and
    header || body descriptor || body (v5, TDX QL API "Quote Format v5").
    """

    header: QuoteHeader
    body_type: BodyType
    body: SgxReportBody | TdReportBody
    signature_data: QuoteSignatureData
    trailer: bytes = b""
    raw: bytes = field(default=b"", compare=False, repr=False)

    @classmethod
    def from_bytes(cls, data: bytes, *, allow_nonzero_trailer: bool = False) -> Quote:
        """Parse a quote; only zero bytes may follow the signature data (see module doc).

        ``allow_nonzero_trailer`` accepts any (unsigned, ignored) bytes after it instead.
        """
        r = Reader("Quote", data)
        header = QuoteHeader.from_bytes(r.raw("header", 0, HEADER_SIZE))
        off = HEADER_SIZE
        if header.version == 5:
            raw_type = r.u16("body_type", off)
            if raw_type not in (1, 2, 3):
                raise FormatError("Quote", "body_type", offset=off, got=raw_type, want="1, 2, 3")
            body_type = BodyType(raw_type)
            size = r.u32("body_size", off + 2)
            if size != _BODY_SIZES[body_type]:
                raise FormatError("Quote", "body_size", offset=off + 2, got=size,
                                  want=_BODY_SIZES[body_type])
            off += 6
        else:
            body_type = BodyType.SGX if header.tee_type is TeeType.SGX else BodyType.TD10
        if (body_type is BodyType.SGX) != (header.tee_type is TeeType.SGX):
            raise FormatError("Quote", "body_type", offset=HEADER_SIZE, got=int(body_type),
                              want=f"a body for tee_type 0x{int(header.tee_type):x}")
        body_bytes = r.raw("body", off, _BODY_SIZES[body_type])
        body: SgxReportBody | TdReportBody = (SgxReportBody.from_bytes(body_bytes)
                                              if body_type is BodyType.SGX
                                              else TdReportBody.from_bytes(body_bytes))
        off += len(body_bytes)
        sig_len = r.u32("signature_data_size", off)
        sig_data = QuoteSignatureData.from_bytes(r.raw("signature_data", off + 4, sig_len),
                                                 version=header.version)
        end = off + 4 + sig_len
        if not allow_nonzero_trailer:
            r.zero("trailer", end, len(r.data) - end)
        return cls(header, body_type, body, sig_data, r.data[end:], bytes(r.data))

    def to_bytes(self) -> bytes:
        """Inverse of :meth:`from_bytes` (trailer included)."""
        sig = self.signature_data.to_bytes(version=self.header.version)
        return self.signed_region() + len(sig).to_bytes(4, "little") + sig + self.trailer

    @property
    def padding(self) -> int:
        """Number of bytes after the signature data."""
        return len(self.trailer)

    def signed_region(self) -> bytes:
        """Header || [v5 body descriptor] || body, rebuilt from the fields."""
        out = self.header.to_bytes()
        body = self.body.to_bytes()
        if self.header.version == 5:
            out += int(self.body_type).to_bytes(2, "little") + len(body).to_bytes(4, "little")
        return out + body

    @property
    def signed_bytes(self) -> bytes:
        """The bytes the attestation key signs."""
        return self.signed_region()

    @property
    def is_tdx(self) -> bool:
        """True for a TDX quote."""
        return self.header.tee_type is TeeType.TDX


# -- DER (PCK certificate SGX extensions, concatenated DER certificates) -------------------


def _der_tlv(data: bytes, offset: int, structure: str) -> tuple[int, int, int]:
    """Return (tag, value offset, value end) of the DER TLV at ``offset``.

    Bounds are checked inline, with the errors :class:`~veritee._wire.Reader` gives (no
    Reader per TLV: a PCK certificate's SGX extensions hold a few hundred of them).
    """
    size = len(data)
    if offset < 0 or offset + 2 > size:
        field, at = ("tag", offset) if offset < 0 or offset + 1 > size else ("length",
                                                                               offset + 1)
        raise FormatError(structure, field, offset=at, got=f"{size} bytes", want=f">= {at + 1}")
    tag, first = data[offset], data[offset + 1]
    if first < 0x80:
        start, length = offset + 2, first
    else:
        n = first & 0x7F
        if n == 0 or n > 4:
            raise FormatError(structure, "length", offset=offset + 1, got=first,
                              want="definite length of at most 4 bytes")
        start = offset + 2 + n
        if start > size:
            raise FormatError(structure, "length", offset=offset + 2, got=f"{size} bytes",
                              want=f">= {start}")
        length = int.from_bytes(data[offset + 2:start], "big")
    end = start + length
    if end > size:
        raise FormatError(structure, "value", offset=start, got=f"{size} bytes",
                          want=f">= {end}")
    return tag, start, end


def split_der(data: bytes) -> list[bytes]:
    """Split concatenated DER objects (e.g. certificates) into their encodings."""
    out: list[bytes] = []
    off = 0
    while off < len(data):
        tag, _, end = _der_tlv(data, off, "DER")
        if tag != 0x30:
            raise FormatError("DER", "tag", offset=off, got=tag, want="0x30 (SEQUENCE)")
        out.append(data[off:end])
        off = end
    return out


@functools.lru_cache(maxsize=256)  # a PCK certificate repeats the same ~25 OIDs
def _oid(value: bytes) -> str:
    if not value:
        raise FormatError("PckExtensions", "oid", got=value, want="a non-empty OID")
    parts = [value[0] // 40, value[0] % 40]
    acc = 0
    for b in value[1:]:
        acc = (acc << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(acc)
            acc = 0
    return ".".join(map(str, parts))


def _der_items(data: bytes, start: int, end: int, structure: str) -> list[tuple[int, bytes]]:
    """The (tag, content) children of a constructed value spanning ``start``..``end``."""
    items: list[tuple[int, bytes]] = []
    off = start
    while off < end:
        tag, vs, ve = _der_tlv(data, off, structure)
        if ve > end:
            raise FormatError(structure, "length", offset=off, got=ve, want=f"<= {end}")
        items.append((tag, data[vs:ve]))
        off = ve
    return items


SGX_EXTENSIONS_OID = "1.2.840.113741.1.13.1"
"""PCK certificate SGX Extensions (Intel "SGX PCK Certificate and CRL Profile")."""


@dataclass(frozen=True)
class PckExtensions:
    """The PCK certificate's SGX Extensions (OID 1.2.840.113741.1.13.1).

    ``.1`` PPID, ``.2`` TCB (``.2.1``-``.2.16`` SGX TCB component SVNs, ``.2.17`` PCESVN,
    ``.2.18`` CPUSVN), ``.3`` PCE-ID, ``.4`` FMSPC, ``.5`` SGX Type, ``.6`` PlatformInstanceID
    and ``.7`` Configuration (Platform CA certificates only).
    """

    ppid: bytes
    tcb_components: tuple[int, ...]
    pcesvn: int
    cpusvn: bytes
    pce_id: bytes
    fmspc: bytes
    sgx_type: int
    platform_instance_id: bytes | None = None

    @classmethod
    def from_der(cls, data: bytes) -> PckExtensions:
        """Parse the DER value of the extension (a SEQUENCE of {OID, value})."""
        name = "PckExtensions"
        data = bytes(data)
        tag, start, end = _der_tlv(data, 0, name)
        if tag != 0x30 or end != len(data):
            raise FormatError(name, "<outer>", got=tag, want="one SEQUENCE")
        values: dict[str, tuple[int, bytes]] = {}
        for sub_tag, content in _der_items(data, start, end, name):
            pair = _der_items(content, 0, len(content), name)
            if sub_tag != 0x30 or len(pair) != 2 or pair[0][0] != 0x06:
                raise FormatError(name, "entry", got=content[:8], want="SEQUENCE {OID, value}")
            values[_oid(pair[0][1])] = pair[1]

        def get(suffix: str, tag: int, *, size: int | None = None) -> bytes:
            oid = f"{SGX_EXTENSIONS_OID}.{suffix}"
            if oid not in values:
                raise FormatError(name, oid, got="absent", want="present")
            got_tag, content = values[oid]
            if got_tag != tag or (size is not None and len(content) != size):
                raise FormatError(name, oid, got=f"tag {got_tag}, {len(content)} bytes",
                                  want=f"tag {tag}" + (f", {size} bytes" if size else ""))
            return content

        tcb_tag, tcb_raw = values.get(f"{SGX_EXTENSIONS_OID}.2", (0, b""))
        if tcb_tag != 0x30:
            raise FormatError(name, f"{SGX_EXTENSIONS_OID}.2", got=tcb_tag, want="SEQUENCE")
        tcb: dict[str, tuple[int, bytes]] = {}
        for sub_tag, content in _der_items(tcb_raw, 0, len(tcb_raw), name):
            pair = _der_items(content, 0, len(content), name)
            if sub_tag != 0x30 or len(pair) != 2 or pair[0][0] != 0x06:
                raise FormatError(name, "tcb entry", got=content[:8], want="SEQUENCE {OID, v}")
            tcb[_oid(pair[0][1])] = pair[1]

        def tcb_int(i: int) -> int:
            oid = f"{SGX_EXTENSIONS_OID}.2.{i}"
            got_tag, content = tcb.get(oid, (0, b""))
            if got_tag != 0x02 or not content or len(content) > 3:
                raise FormatError(name, oid, got=f"tag {got_tag}", want="small INTEGER")
            return int.from_bytes(content, "big", signed=True)

        cpusvn_tag, cpusvn = tcb.get(f"{SGX_EXTENSIONS_OID}.2.18", (0, b""))
        if cpusvn_tag != 0x04 or len(cpusvn) != 16:
            raise FormatError(name, f"{SGX_EXTENSIONS_OID}.2.18", got=cpusvn,
                              want="16-byte OCTET STRING")
        sgx_type = get("5", 0x0A)
        pid = values.get(f"{SGX_EXTENSIONS_OID}.6")
        return cls(ppid=get("1", 0x04, size=16),
                   tcb_components=tuple(tcb_int(i) for i in range(1, 17)),
                   pcesvn=tcb_int(17), cpusvn=cpusvn, pce_id=get("3", 0x04, size=2),
                   fmspc=get("4", 0x04, size=6), sgx_type=int.from_bytes(sgx_type, "big"),
                   platform_instance_id=pid[1] if pid and pid[0] == 0x04 else None)


# -- collateral JSON (TCB Info, Enclave Identity) ------------------------------------------------


_MAX_COLLATERAL_JSON = 4 << 20
"""Largest TCB Info / QE Identity JSON accepted (real ones are 2-20 KiB)."""


def signed_json_member(body: bytes, key: str) -> tuple[bytes, bytes]:
    """Split a PCS response body ``{"<key>": {...}, "signature": "<hex>"}``.

    Returns the exact bytes of the ``key`` member's value (what Intel signed, byte for byte)
    and the signature decoded from hex. Scans the top-level object token by token so that the
    span is exact whatever the whitespace.
    """
    name = "SignedJson"
    # The whole body through the bounded decoder first (size, depth, integer digits, duplicate
    # member names): the span scan below then only meets JSON that is known to be sane.
    top = load_json(body, structure=name, max_size=_MAX_COLLATERAL_JSON)
    if not isinstance(top, dict):
        raise FormatError(name, "<top>", got=type(top).__name__, want="a JSON object")
    text = bytes(body).decode("utf-8")
    dec = json.JSONDecoder()
    spans: dict[str, tuple[int, int, Any]] = {}

    def ws(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    try:
        i = ws(0)
        if text[i:i + 1] != "{":
            raise FormatError(name, "<top>", offset=i, got=text[i:i + 1], want="{")
        i = ws(i + 1)
        while text[i:i + 1] != "}":
            k, i = dec.raw_decode(text, i)
            i = ws(i)
            if not isinstance(k, str) or text[i:i + 1] != ":":
                raise FormatError(name, "<member>", offset=i, got=text[i:i + 1], want=":")
            i = ws(i + 1)
            start = i
            v, i = dec.raw_decode(text, i)
            spans[k] = (start, i, v)
            i = ws(i)
            if text[i:i + 1] == ",":
                i = ws(i + 1)
            elif text[i:i + 1] != "}":
                raise FormatError(name, "<member>", offset=i, got=text[i:i + 1], want=", or }")
        if ws(i + 1) != len(text):
            raise FormatError(name, "<trailing>", offset=i + 1, got="data", want="end")
    except json.JSONDecodeError as exc:
        raise FormatError(name, "<json>", offset=exc.pos, got=exc.msg, want="JSON") from exc
    if key not in spans or "signature" not in spans:
        raise FormatError(name, key, got=sorted(spans), want=[key, "signature"])
    sig = spans["signature"][2]
    try:
        signature = bytes.fromhex(sig) if isinstance(sig, str) else b""
    except ValueError:
        signature = b""
    if len(signature) != 64:
        raise FormatError(name, "signature", got=sig, want="128 hex digits (ECDSA r||s)")
    start, end, _ = spans[key]
    return text[start:end].encode("utf-8"), signature


def _load_obj(raw: bytes, structure: str) -> Mapping[str, Any]:
    value = load_json(raw, structure=structure, max_size=_MAX_COLLATERAL_JSON)
    if not isinstance(value, dict):
        raise FormatError(structure, "<json>", got=type(value).__name__, want="object")
    return value


def _field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], structure: str,
           *, default: Any = ...) -> Any:
    if not isinstance(obj, Mapping):
        raise FormatError(structure, key, got=type(obj).__name__, want="a JSON object")
    if key not in obj:
        if default is not ...:
            return default
        raise FormatError(structure, key, got="absent", want="present")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise FormatError(structure, key, got=repr(value)[:40], want=str(kind))
    return value


def _hex(obj: Mapping[str, Any], key: str, size: int | None, structure: str) -> bytes:
    text = _field(obj, key, str, structure)
    try:
        value = bytes.fromhex(text)
    except ValueError as exc:
        raise FormatError(structure, key, got=text, want="hex") from exc
    if size is not None and len(value) != size:
        raise FormatError(structure, key, got=f"{len(value)} bytes", want=f"{size} bytes")
    return value


def _date(obj: Mapping[str, Any], key: str, structure: str) -> datetime:
    text = _field(obj, key, str, structure)
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise FormatError(structure, key, got=text, want="ISO 8601 date") from exc
    if value.tzinfo is None:
        raise FormatError(structure, key, got=text, want="a UTC timestamp")
    return value


def _status(obj: Mapping[str, Any], structure: str) -> TcbStatus:
    text = _field(obj, "tcbStatus", str, structure)
    try:
        return TcbStatus(text)
    except ValueError as exc:
        raise FormatError(structure, "tcbStatus", got=text, want=[s.value for s in TcbStatus]
                          ) from exc


def _advisories(obj: Mapping[str, Any], structure: str) -> tuple[str, ...]:
    ids = _field(obj, "advisoryIDs", list, structure, default=[])
    if not all(isinstance(i, str) for i in ids):
        raise FormatError(structure, "advisoryIDs", got=ids, want="strings")
    return tuple(ids)


def _svn(value: Any, structure: str, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
        raise FormatError(structure, key, got=value, want="an SVN 0..65535")
    return value


@dataclass(frozen=True)
class TcbLevel:
    """One TCB level: 16 SGX component SVNs, PCESVN, TDX component SVNs (TDX only)."""

    sgx_components: tuple[int, ...]
    pcesvn: int
    tdx_components: tuple[int, ...] | None
    tcb_date: datetime
    status: TcbStatus
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True)
class TdxModule:
    """``tdxModule``: expected MRSIGNERSEAM and SEAMATTRIBUTES (with mask)."""

    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes


@dataclass(frozen=True)
class TdxModuleLevel:
    """A TDX module TCB level: minimum ISVSVN (TEE_TCB_SVN[0]) and its status."""

    isvsvn: int
    tcb_date: datetime
    status: TcbStatus
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True)
class TdxModuleIdentity:
    """``tdxModuleIdentities[]``: ``id`` is ``TDX_<TEE_TCB_SVN[1] as 2 hex digits>``."""

    id: str
    module: TdxModule
    levels: tuple[TdxModuleLevel, ...]


@dataclass(frozen=True)
class TcbInfo:
    """Intel PCS TCB Info (v2 SGX with ``sgxtcbcompNNsvn``; v3 SGX/TDX with components).

    ``raw`` is the exact signed JSON text of the ``tcbInfo`` object.
    """

    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pce_id: bytes
    tcb_type: int
    tcb_evaluation_data_number: int
    tcb_levels: tuple[TcbLevel, ...]
    tdx_module: TdxModule | None
    tdx_module_identities: tuple[TdxModuleIdentity, ...]
    raw: bytes

    @classmethod
    def from_json(cls, raw: bytes) -> TcbInfo:
        """Parse the ``tcbInfo`` object's JSON text."""
        s = "TcbInfo"
        obj = _load_obj(raw, s)
        version = _field(obj, "version", int, s)
        if version not in (2, 3):
            raise FormatError(s, "version", got=version, want="2 or 3")
        tee_id = _field(obj, "id", str, s, default="SGX")
        if tee_id not in ("SGX", "TDX"):
            raise FormatError(s, "id", got=tee_id, want="SGX or TDX")
        levels: list[TcbLevel] = []
        for item in _field(obj, "tcbLevels", list, s):
            if not isinstance(item, dict):
                raise FormatError(s, "tcbLevels", got=item, want="objects")
            tcb = _field(item, "tcb", dict, s)
            tdx: tuple[int, ...] | None = None
            if version == 2:
                sgx = tuple(_svn(tcb.get(f"sgxtcbcomp{i:02d}svn"), s, f"sgxtcbcomp{i:02d}svn")
                            for i in range(1, 17))
            else:
                comps = _field(tcb, "sgxtcbcomponents", list, s)
                if len(comps) != 16:
                    raise FormatError(s, "sgxtcbcomponents", got=len(comps), want=16)
                sgx = tuple(_svn(c.get("svn") if isinstance(c, dict) else None, s,
                                 "sgxtcbcomponents.svn") for c in comps)
                if tee_id == "TDX":
                    tcomps = _field(tcb, "tdxtcbcomponents", list, s)
                    if len(tcomps) != 16:
                        raise FormatError(s, "tdxtcbcomponents", got=len(tcomps), want=16)
                    tdx = tuple(_svn(c.get("svn") if isinstance(c, dict) else None, s,
                                     "tdxtcbcomponents.svn") for c in tcomps)
            levels.append(TcbLevel(sgx, _svn(tcb.get("pcesvn"), s, "pcesvn"), tdx,
                                   _date(item, "tcbDate", s), _status(item, s),
                                   _advisories(item, s)))
        module = None
        if "tdxModule" in obj:
            module = _module(_field(obj, "tdxModule", dict, s), s)
        identities: list[TdxModuleIdentity] = []
        for ident in _field(obj, "tdxModuleIdentities", list, s, default=[]):
            if not isinstance(ident, dict):
                raise FormatError(s, "tdxModuleIdentities", got=ident, want="objects")
            mlevels = tuple(
                TdxModuleLevel(_svn(_field(_field(lv, "tcb", dict, s), "isvsvn", int, s), s,
                                    "isvsvn"), _date(lv, "tcbDate", s), _status(lv, s),
                               _advisories(lv, s))
                for lv in _field(ident, "tcbLevels", list, s))
            identities.append(TdxModuleIdentity(_field(ident, "id", str, s), _module(ident, s),
                                                 mlevels))
        return cls(id=tee_id, version=version, issue_date=_date(obj, "issueDate", s),
                   next_update=_date(obj, "nextUpdate", s), fmspc=_hex(obj, "fmspc", 6, s),
                   pce_id=_hex(obj, "pceId", 2, s), tcb_type=_field(obj, "tcbType", int, s),
                   tcb_evaluation_data_number=_field(obj, "tcbEvaluationDataNumber", int, s),
                   tcb_levels=tuple(levels), tdx_module=module,
                   tdx_module_identities=tuple(identities), raw=bytes(raw))


def _module(obj: Mapping[str, Any], s: str) -> TdxModule:
    return TdxModule(_hex(obj, "mrsigner", 48, s), _hex(obj, "attributes", 8, s),
                     _hex(obj, "attributesMask", 8, s))


@dataclass(frozen=True)
class EnclaveIdentityLevel:
    """A QE identity TCB level: minimum ISVSVN and its status."""

    isvsvn: int
    tcb_date: datetime
    status: TcbStatus
    advisory_ids: tuple[str, ...]


@dataclass(frozen=True)
class EnclaveIdentity:
    """Intel PCS Enclave Identity V2 (``QE``, ``TD_QE``, ``QVE``); ``raw`` is the signed text."""

    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    tcb_evaluation_data_number: int
    miscselect: int
    miscselect_mask: int
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isvprodid: int
    tcb_levels: tuple[EnclaveIdentityLevel, ...]
    raw: bytes

    @classmethod
    def from_json(cls, raw: bytes) -> EnclaveIdentity:
        """Parse the ``enclaveIdentity`` object's JSON text."""
        s = "EnclaveIdentity"
        obj = _load_obj(raw, s)
        version = _field(obj, "version", int, s)
        if version != 2:
            raise FormatError(s, "version", got=version, want=2)
        levels = tuple(
            EnclaveIdentityLevel(_svn(_field(_field(lv, "tcb", dict, s), "isvsvn", int, s), s,
                                      "isvsvn"), _date(lv, "tcbDate", s), _status(lv, s),
                                 _advisories(lv, s))
            for lv in _field(obj, "tcbLevels", list, s))
        return cls(id=_field(obj, "id", str, s), version=version,
                   issue_date=_date(obj, "issueDate", s),
                   next_update=_date(obj, "nextUpdate", s),
                   tcb_evaluation_data_number=_field(obj, "tcbEvaluationDataNumber", int, s),
                   # MISCSELECT hex is the u32 in report byte order (little endian): Intel
                   # QVL compares bytes; Intel's sample qeIdentity.json shows it (D182B18C).
                   miscselect=int.from_bytes(_hex(obj, "miscselect", 4, s), "little"),
                   miscselect_mask=int.from_bytes(_hex(obj, "miscselectMask", 4, s),
                                                  "little"),
                   attributes=_hex(obj, "attributes", 16, s),
                   attributes_mask=_hex(obj, "attributesMask", 16, s),
                   mrsigner=_hex(obj, "mrsigner", 32, s),
                   isvprodid=_field(obj, "isvprodid", int, s), tcb_levels=levels, raw=bytes(raw))
