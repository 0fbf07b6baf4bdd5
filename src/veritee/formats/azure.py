"""Azure confidential VM "HCL report": bytes <-> frozen typed objects. No crypto, no I/O, no policy.

An Azure confidential VM's paravisor (the HCL, now OpenHCL) exposes, at vTPM NV index
``0x01400001``, an ``IgvmAttestRequestBase`` followed by JSON runtime claims. The hardware report
inside binds the claims: its REPORT_DATA holds a hash of the claims, and the claims carry the
public part of the vTPM attestation key (``HCLAkPub``) that signs TPM quotes.

Sources (cited below by these short names):

* **openhcl** - microsoft/openvmm,
  ``openhcl/openhcl_attestation_protocol/src/igvm_attest/get.rs``: ``IgvmAttestRequestHeader``,
  ``IgvmAttestRequestBase``, ``IgvmAttestRequestData``, ``IgvmAttestReportType``,
  ``IgvmAttestHashType``, ``IgvmAttestRequestType`` and ``runtime_claims::RuntimeClaims`` /
  ``RsaJwk`` (key ids ``HCLAkPub`` and ``HCLEkPub``).
* **openvmm-vtpm** - the openvmm vTPM helper describing "the user-facing attestation report that
  is accessible via TPM NV Index 0x01400001": the same structures "with IgvmAttestRequestVersion
  as VERSION_1", and ``IGVM_ATTESTATION_REPORT_SIZE_MAX = 0x4a0``.
* **kinvolk** - kinvolk/azure-cvm-tooling ``az-cvm-vtpm/src/hcl/mod.rs``: SNP report type 2,
  TDX report type 4, the TD report at the start of the hardware-report area, the variable data
  right after ``IgvmRequestData``, and its SHA-256 in REPORT_DATA.

Layout (all integers little-endian u32)::

    0x000  header (32 bytes)     signature "HCLA" (0x414C4348), version, report_size,
                                 request_type, status, reserved[3]
    0x020  hardware report area  0x4A0 bytes: an SEV-SNP ATTESTATION_REPORT (1184 bytes), or a
                                 TDX TDREPORT (1024 bytes) followed by 160 zero bytes
    0x4C0  IGVM request data     data_size, version, report_type, report_data_hash_type,
                                 variable_data_size (20 bytes)
    0x4D4  variable data         variable_data_size bytes of JSON runtime claims
    ...    zero padding          up to the size of the NV index the blob was read from

``header.report_size`` is 0x4C0 + data_size and ``data_size`` is 20 + variable_data_size (both
hold in every published sample). The NV index is read whole, so the blob is longer than
``report_size`` (2600 bytes in the trustee samples, 2048 in kinvolk's older capture); the
bytes past ``report_size`` must be zero and :attr:`HclReport.total_size` keeps the length so that
``to_bytes`` reproduces the input.

Checks deliberately left out: the status word in the header is carried but not interpreted (no
published source gives it meaning beyond "status"), and nothing here verifies the hardware
report's signature or the REPORT_DATA binding - that is ``veritee.trust``'s job, given
:meth:`HclReport.expected_report_data`.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from typing import Any, TypeVar

from veritee._wire import Reader, Writer
from veritee.errors import FormatError
from veritee.formats.sevsnp import REPORT_SIZE as SNP_REPORT_SIZE
from veritee.formats.sevsnp import AttestationReport

__all__ = [
    "HCL_AK_KID",
    "HCL_EK_KID",
    "HCL_SIGNATURE",
    "HEADER_SIZE",
    "HW_REPORT_OFFSET",
    "HW_REPORT_SIZE",
    "REQUEST_DATA_OFFSET",
    "REQUEST_DATA_SIZE",
    "TD_REPORT_SIZE",
    "VARIABLE_DATA_OFFSET",
    "HclHeader",
    "HclReport",
    "IgvmHashType",
    "IgvmReportType",
    "IgvmRequestType",
]

_NAME = "HCL_REPORT"
_E = TypeVar("_E", bound=enum.IntEnum)

HCL_SIGNATURE = b"HCLA"
"""Header signature: the u32 0x414C4348 ('HCLA' in little-endian bytes) (openhcl)."""
HEADER_SIZE = 0x20
"""``IgvmAttestRequestHeader``: eight u32 fields (openhcl)."""
HW_REPORT_OFFSET = HEADER_SIZE
HW_REPORT_SIZE = 0x4A0
"""The hardware-report area is sized for the largest report, SEV-SNP's (openvmm-vtpm)."""
REQUEST_DATA_OFFSET = HW_REPORT_OFFSET + HW_REPORT_SIZE  # 0x4C0
REQUEST_DATA_SIZE = 20
"""``IgvmAttestRequestData``: five u32 fields (openhcl)."""
VARIABLE_DATA_OFFSET = REQUEST_DATA_OFFSET + REQUEST_DATA_SIZE  # 0x4D4
TD_REPORT_SIZE = 1024
"""TDX ``TDREPORT_STRUCT`` (Intel TDX Module ABI); it sits at the start of the area (kinvolk)."""
_TD_REPORT_DATA_OFFSET = 128
"""REPORTDATA inside ``REPORTMACSTRUCT``, the first 256 bytes of ``TDREPORT_STRUCT``: after
REPORTTYPE (4), reserved (12), CPUSVN (16), TEE_TCB_INFO_HASH (48), TEE_INFO_HASH (48)."""
_REPORT_DATA_SIZE = 64

HCL_AK_KID = "HCLAkPub"
"""Key id of the vTPM attestation key in the runtime claims (openhcl ``RsaJwk::get_tpm_jwks``)."""
HCL_EK_KID = "HCLEkPub"
"""Key id of the vTPM endorsement key in the runtime claims (openhcl)."""

_HEADER_VERSIONS = (1, 2)
"""Header versions seen: 1 (older HCL), 2 (openhcl ``ATTESTATION_VERSION``)."""
_REQUEST_DATA_VERSION = 1
"""The NV-index report uses ``IgvmAttestRequestVersion::VERSION_1`` (openvmm-vtpm); version 2
appends an ``IgvmAttestRequestDataExt`` that the NV-index report does not carry."""


class IgvmReportType(enum.IntEnum):
    """``IgvmAttestReportType`` (openhcl): which TEE report fills the hardware-report area."""

    INVALID = 0
    VBS = 1
    SNP = 2
    TVM = 3
    TDX = 4
    CCA = 5


class IgvmHashType(enum.IntEnum):
    """``IgvmAttestHashType`` (openhcl): how the runtime claims are hashed into REPORT_DATA."""

    INVALID = 0
    SHA256 = 1
    SHA384 = 2
    SHA512 = 3


class IgvmRequestType(enum.IntEnum):
    """``IgvmAttestRequestType`` (openhcl). The NV-index report is an ``AK_CERT`` request."""

    INVALID = 0
    KEY_RELEASE = 1
    AK_CERT = 2
    WRAPPED_KEY = 3


_HASHES = {
    IgvmHashType.SHA256: hashlib.sha256,
    IgvmHashType.SHA384: hashlib.sha384,
    IgvmHashType.SHA512: hashlib.sha512,
}


@dataclass(frozen=True)
class HclHeader:
    """``IgvmAttestRequestHeader`` minus what is fixed or derived.

    The signature is always "HCLA", the reserved words are zero and ``report_size`` follows
    from the variable data (see :attr:`HclReport.report_size`).
    """

    version: int = 2
    request_type: IgvmRequestType = IgvmRequestType.AK_CERT
    status: int = 0


@dataclass(frozen=True)
class HclReport:
    """An Azure HCL report (the vTPM NV-index attestation blob).

    Exactly one of ``snp_report`` (when ``report_type`` is SNP) and ``tdx_report`` (the raw
    1024-byte TDREPORT, when ``report_type`` is TDX) is set. ``variable_data`` is the raw JSON
    runtime claims, kept byte-exact because its hash is what the hardware report binds.
    ``total_size`` is the length of the whole blob including the zero padding after
    ``report_size``.
    """

    header: HclHeader
    report_type: IgvmReportType
    snp_report: AttestationReport | None
    tdx_report: bytes | None
    request_version: int
    report_data_hash_type: IgvmHashType
    variable_data: bytes
    total_size: int

    # -- derived sizes ---------------------------------------------------------------------
    @property
    def variable_data_size(self) -> int:
        """``IgvmAttestRequestData.variable_data_size``."""
        return len(self.variable_data)

    @property
    def data_size(self) -> int:
        """``IgvmAttestRequestData.data_size``: the request data plus the variable data."""
        return REQUEST_DATA_SIZE + len(self.variable_data)

    @property
    def report_size(self) -> int:
        """``IgvmAttestRequestHeader.report_size``: everything up to the end of the claims."""
        return REQUEST_DATA_OFFSET + self.data_size

    # -- parsing ---------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes) -> HclReport:
        """Parse an HCL report; bytes past ``report_size`` must be zero padding."""
        rd = Reader(_NAME, data)
        buf = rd.data
        if len(buf) < VARIABLE_DATA_OFFSET:
            raise FormatError(_NAME, "<length>", got=len(buf),
                              want=f">= {VARIABLE_DATA_OFFSET} (header, hardware report, "
                                   "request data)")
        # Header (openhcl IgvmAttestRequestHeader).
        signature = rd.raw("signature", 0x00, 4)
        if signature != HCL_SIGNATURE:
            raise FormatError(_NAME, "signature", offset=0x00, got=signature,
                              want=HCL_SIGNATURE.hex() + " ('HCLA')")
        version = rd.u32("version", 0x04)
        if version not in _HEADER_VERSIONS:
            raise FormatError(_NAME, "version", offset=0x04, got=version,
                              want=f"one of {_HEADER_VERSIONS}")
        report_size = rd.u32("report_size", 0x08)
        request_type = _enum(IgvmRequestType, rd.u32("request_type", 0x0C), "request_type",
                             0x0C, exclude=(IgvmRequestType.INVALID,))
        status = rd.u32("status", 0x10)
        rd.zero("reserved", 0x14, 12)

        # Request data (openhcl IgvmAttestRequestData), after the hardware-report area.
        o = REQUEST_DATA_OFFSET
        data_size = rd.u32("data_size", o)
        request_version = rd.u32("request_data.version", o + 4)
        if request_version != _REQUEST_DATA_VERSION:
            raise FormatError(_NAME, "request_data.version", offset=o + 4, got=request_version,
                              want=_REQUEST_DATA_VERSION,
                              detail="the NV-index report is IgvmAttestRequestVersion 1")
        report_type = _enum(IgvmReportType, rd.u32("report_type", o + 8), "report_type", o + 8,
                            exclude=(IgvmReportType.INVALID, IgvmReportType.VBS,
                                     IgvmReportType.TVM, IgvmReportType.CCA),
                            want="2 (SNP) or 4 (TDX)")
        hash_type = _enum(IgvmHashType, rd.u32("report_data_hash_type", o + 12),
                          "report_data_hash_type", o + 12, exclude=(IgvmHashType.INVALID,))
        var_size = rd.u32("variable_data_size", o + 16)
        if data_size != REQUEST_DATA_SIZE + var_size:
            raise FormatError(_NAME, "data_size", offset=o, got=data_size,
                              want=f"{REQUEST_DATA_SIZE} + variable_data_size = "
                                   f"{REQUEST_DATA_SIZE + var_size}")
        if report_size != REQUEST_DATA_OFFSET + data_size:
            raise FormatError(_NAME, "report_size", offset=0x08, got=report_size,
                              want=f"0x4C0 + data_size = {REQUEST_DATA_OFFSET + data_size}")
        if report_size > len(buf):
            raise FormatError(_NAME, "variable_data_size", offset=o + 16, got=var_size,
                              want=f"<= {len(buf) - VARIABLE_DATA_OFFSET} (bytes left)")
        variable_data = rd.raw("variable_data", VARIABLE_DATA_OFFSET, var_size)
        # The NV index is read whole: what follows the claims is zero padding.
        rd.zero("padding", report_size, len(buf) - report_size)

        # Hardware report.
        hw = rd.raw("hw_report", HW_REPORT_OFFSET, HW_REPORT_SIZE)
        snp: AttestationReport | None = None
        tdx: bytes | None = None
        if report_type is IgvmReportType.SNP:
            snp = _parse_snp(hw)
        else:
            tdx = hw[:TD_REPORT_SIZE]
            rd.zero("hw_report.padding", HW_REPORT_OFFSET + TD_REPORT_SIZE,
                    HW_REPORT_SIZE - TD_REPORT_SIZE)
        return cls(
            header=HclHeader(version=version, request_type=request_type, status=status),
            report_type=report_type,
            snp_report=snp,
            tdx_report=tdx,
            request_version=request_version,
            report_data_hash_type=hash_type,
            variable_data=variable_data,
            total_size=len(buf),
        )

    # -- serialising -----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Serialise to ``total_size`` bytes; ``from_bytes(h.to_bytes()) == h``."""
        if self.total_size < self.report_size:
            raise FormatError(_NAME, "total_size", got=self.total_size,
                              want=f">= report_size {self.report_size}")
        w = Writer(_NAME, self.total_size)
        w.raw("signature", 0x00, HCL_SIGNATURE)
        w.u32("version", 0x04, self.header.version)
        w.u32("report_size", 0x08, self.report_size)
        w.u32("request_type", 0x0C, int(self.header.request_type))
        w.u32("status", 0x10, self.header.status)
        if self.report_type is IgvmReportType.SNP:
            if self.snp_report is None or self.tdx_report is not None:
                raise FormatError(_NAME, "hw_report", offset=HW_REPORT_OFFSET,
                                  got="tdx_report" if self.tdx_report is not None else None,
                                  want="snp_report only, for report_type SNP")
            w.raw("hw_report", HW_REPORT_OFFSET, self.snp_report.to_bytes(), SNP_REPORT_SIZE)
        elif self.report_type is IgvmReportType.TDX:
            if self.tdx_report is None or self.snp_report is not None:
                raise FormatError(_NAME, "hw_report", offset=HW_REPORT_OFFSET,
                                  got="snp_report" if self.snp_report is not None else None,
                                  want="tdx_report only, for report_type TDX")
            w.raw("hw_report", HW_REPORT_OFFSET, self.tdx_report, TD_REPORT_SIZE)
        else:
            raise FormatError(_NAME, "report_type", offset=REQUEST_DATA_OFFSET + 8,
                              got=self.report_type, want="2 (SNP) or 4 (TDX)")
        o = REQUEST_DATA_OFFSET
        w.u32("data_size", o, self.data_size)
        w.u32("request_data.version", o + 4, self.request_version)
        w.u32("report_type", o + 8, int(self.report_type))
        w.u32("report_data_hash_type", o + 12, int(self.report_data_hash_type))
        w.u32("variable_data_size", o + 16, self.variable_data_size)
        w.raw("variable_data", VARIABLE_DATA_OFFSET, self.variable_data)
        return w.getvalue()

    # -- binding ---------------------------------------------------------------------------
    def expected_report_data(self) -> bytes:
        """The 64 bytes the hardware report's REPORT_DATA must hold to bind the claims.

        The hash of ``variable_data`` under ``report_data_hash_type`` (openhcl: "The hash of
        RuntimeClaims in IgvmAttestHashType will be captured in the report_data"), zero-padded
        to 64 bytes.
        """
        try:
            hasher = _HASHES[self.report_data_hash_type]
        except KeyError:
            raise FormatError(_NAME, "report_data_hash_type", offset=REQUEST_DATA_OFFSET + 12,
                              got=self.report_data_hash_type,
                              want="SHA256 (1), SHA384 (2) or SHA512 (3)") from None
        return hasher(self.variable_data).digest().ljust(_REPORT_DATA_SIZE, b"\0")

    @property
    def hw_report_data(self) -> bytes:
        """The 64-byte REPORT_DATA of the hardware report (SNP REPORT_DATA or TDX REPORTDATA)."""
        if self.snp_report is not None:
            return self.snp_report.report_data
        if self.tdx_report is not None:
            return self.tdx_report[_TD_REPORT_DATA_OFFSET:_TD_REPORT_DATA_OFFSET
                                   + _REPORT_DATA_SIZE]
        raise FormatError(_NAME, "hw_report", offset=HW_REPORT_OFFSET, got=None,
                          want="an SNP or TDX report")

    # -- runtime claims --------------------------------------------------------------------
    def runtime_claims(self) -> dict[str, Any]:
        """The variable data parsed as a JSON object (openhcl ``RuntimeClaims``).

        Strict: the data must be UTF-8 JSON whose top level is an object; duplicate member
        names and the non-standard constants NaN/Infinity are rejected, so two parsers cannot
        read different claims from the same bound bytes.
        """
        try:
            # Decode explicitly: json.loads(bytes) would also accept UTF-16/UTF-32.
            claims = json.loads(self.variable_data.decode("utf-8"),
                                object_pairs_hook=_no_duplicates,
                                parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            raise FormatError(_NAME, "variable_data", offset=VARIABLE_DATA_OFFSET,
                              got=self.variable_data[:40], want="UTF-8 JSON runtime claims",
                              detail=str(exc)) from None
        if not isinstance(claims, dict):
            raise FormatError(_NAME, "variable_data", offset=VARIABLE_DATA_OFFSET,
                              got=type(claims).__name__, want="a JSON object")
        return claims

    def public_jwk(self, kid: str) -> dict[str, Any]:
        """The JWK with key id ``kid`` from the claims' ``keys`` array."""
        keys = self.runtime_claims().get("keys")
        if not isinstance(keys, list):
            raise FormatError(_NAME, "variable_data.keys", offset=VARIABLE_DATA_OFFSET,
                              got=type(keys).__name__, want="a JSON array of JWKs")
        for key in keys:
            if isinstance(key, dict) and key.get("kid") == kid:
                return key
        kids = [k.get("kid") for k in keys if isinstance(k, dict)]
        raise FormatError(_NAME, "variable_data.keys", offset=VARIABLE_DATA_OFFSET, got=kids,
                          want=f"a key with kid {kid!r}")

    def ak_public_jwk(self) -> dict[str, Any]:
        """The vTPM attestation key (``HCLAkPub``) as a JWK: it signs the vTPM's quotes."""
        return self.public_jwk(HCL_AK_KID)

    def ek_public_jwk(self) -> dict[str, Any]:
        """The vTPM endorsement key (``HCLEkPub``) as a JWK (absent in older reports)."""
        return self.public_jwk(HCL_EK_KID)


def _parse_snp(hw: bytes) -> AttestationReport:
    """Parse the SNP report, re-raising errors with offsets into the HCL report."""
    try:
        return AttestationReport.from_bytes(hw)
    except FormatError as exc:
        raise FormatError(_NAME, f"hw_report.{exc.field}",
                          offset=None if exc.offset is None else HW_REPORT_OFFSET + exc.offset,
                          got=exc.got, want=exc.want, detail=exc.structure) from exc


def _enum(kind: type[_E], value: int, field: str, offset: int, *,
          exclude: tuple[_E, ...] = (), want: str | None = None) -> _E:
    """Decode ``value`` as ``kind``; unknown or excluded values raise :class:`FormatError`."""
    allowed = [m for m in kind if m not in exclude]
    try:
        member = kind(value)
    except ValueError:
        member = None
    if member is None or member in exclude:
        raise FormatError(_NAME, field, offset=offset, got=value,
                          want=want or ", ".join(f"{int(m)} ({m.name})" for m in allowed))
    return member


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member name {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")
