"""AMD SEV-SNP byte formats: bytes <-> frozen typed objects. No crypto, no I/O, no policy.

Source: "SEV Secure Nested Paging Firmware ABI Specification", AMD publication 56860
(revisions 1.55-1.58), cited below as "ABI 56860". Table names are used rather than numbers
because AMD renumbers tables between revisions:

* ``ATTESTATION_REPORT`` structure ("ATTESTATION_REPORT Structure" table; 1184 bytes).
* ``TCB_VERSION`` ("TCB_VERSION Structure": the Milan/Genoa layout, and the Turin layout that
  adds FMC and moves the fields).
* ``GUEST_POLICY`` ("Guest Policy Structure"), ``PLATFORM_INFO`` ("PLATFORM_INFO Field"),
  the signer-info word at 0x48 (AUTHOR_KEY_EN, MASK_CHIP_KEY, SIGNING_KEY).
* ECDSA signature ("ECDSA P-384 with SHA-384 Signature" in the "Digital Signatures" chapter):
  R and S little-endian, each zero-padded to 72 bytes, then reserved bytes to 512.
* ``MSG_REPORT_REQ`` ("MSG_REPORT_REQ Message Structure").
* The extended-report certificate table from the GHCB specification (AMD 56421,
  "SNP Extended Guest Request"): 24-byte entries {GUID, offset u32, length u32} ending with an
  all-zero entry; offsets are from the start of the table.
"""

from __future__ import annotations

import enum
import itertools
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from veritee._wire import Reader, Writer
from veritee.errors import FormatError

__all__ = [
    "REPORT_SIZE",
    "SIGNED_SIZE",
    "SUPPORTED_REPORT_VERSIONS",
    "AttestationReport",
    "CertTable",
    "CertTableEntry",
    "Cpuid",
    "EcdsaP384Signature",
    "FirmwareVersion",
    "GuestFieldSelect",
    "GuestPolicy",
    "MsgKeyReq",
    "MsgReportReq",
    "PlatformInfo",
    "Product",
    "RootKeySelect",
    "SignerInfo",
    "SigningKey",
    "TcbLayout",
    "TcbVersion",
    "product_from_cpuid",
]

REPORT_SIZE = 0x4A0
"""ATTESTATION_REPORT is 1184 bytes for every report version."""
SIGNED_SIZE = 0x2A0
"""The signature covers bytes 0x000-0x29F."""
SUPPORTED_REPORT_VERSIONS = (2, 3, 5)
SIGNATURE_ALGO_ECDSA_P384_SHA384 = 1


class Product(enum.StrEnum):
    """AMD EPYC generations that run SEV-SNP, named as AMD's KDS names them."""

    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"


class TcbLayout(enum.Enum):
    """Which ``TCB_VERSION`` layout a 64-bit TCB value uses."""

    MILAN_GENOA = "milan-genoa"  # BL, TEE, 4 reserved, SNP, UCODE
    TURIN = "turin"  # FMC, BL, TEE, SNP, 3 reserved, UCODE

    @classmethod
    def for_product(cls, product: Product | None) -> TcbLayout:
        """Return the layout that ``product`` uses (Milan/Genoa when unknown)."""
        return cls.TURIN if product is Product.TURIN else cls.MILAN_GENOA


def product_from_cpuid(family: int, model: int) -> Product | None:
    """Map CPUID family/model (report v3+ fields) to a product, or ``None`` if unknown.

    Family 19h models 00h-0Fh are Milan, 10h-1Fh and A0h-AFh (Siena) are Genoa-class,
    family 1Ah is Turin (the KDS serves Siena under Genoa).
    """
    if family == 0x19:
        if model <= 0x0F:
            return Product.MILAN
        if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:
            return Product.GENOA
    if family == 0x1A:
        return Product.TURIN
    return None


@dataclass(frozen=True)
class TcbVersion:
    """A ``TCB_VERSION``: security patch levels of each firmware component.

    ``fmc`` is present only in the Turin layout (``None`` for Milan/Genoa).
    """

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @property
    def layout(self) -> TcbLayout:
        """The layout this value is encoded in."""
        return TcbLayout.MILAN_GENOA if self.fmc is None else TcbLayout.TURIN

    @classmethod
    def from_u64(cls, value: int, layout: TcbLayout, *, structure: str = "TCB_VERSION",
                 offset: int | None = None) -> TcbVersion:
        """Decode a 64-bit TCB value in ``layout``; reserved bytes must be zero."""
        if not 0 <= value < 1 << 64:
            raise FormatError(structure, "TCB_VERSION", offset=offset, got=value,
                              want="an unsigned 64-bit value")
        b = value.to_bytes(8, "little")
        if layout is TcbLayout.MILAN_GENOA:
            reserved = b[2:6]
            tcb = cls(bootloader=b[0], tee=b[1], snp=b[6], microcode=b[7])
            res_at = 2
        else:
            reserved = b[4:7]
            tcb = cls(fmc=b[0], bootloader=b[1], tee=b[2], snp=b[3], microcode=b[7])
            res_at = 4
        if any(reserved):
            res_at += next(i for i, x in enumerate(reserved) if x)
            raise FormatError(structure, "TCB_VERSION.reserved",
                              offset=None if offset is None else offset + res_at,
                              got=reserved, want="all zero (reserved)",
                              detail=f"{layout.value} layout")
        return tcb

    def to_u64(self) -> int:
        """Encode back to the 64-bit value."""
        for name in ("bootloader", "tee", "snp", "microcode", "fmc"):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 0xFF:
                raise FormatError("TCB_VERSION", name, got=v, want="0..255")
        if self.fmc is None:
            b = bytes([self.bootloader, self.tee, 0, 0, 0, 0, self.snp, self.microcode])
        else:
            b = bytes([self.fmc, self.bootloader, self.tee, self.snp, 0, 0, 0, self.microcode])
        return int.from_bytes(b, "little")

    def components(self) -> dict[str, int]:
        """The SPL of each component present in this layout, by name."""
        out = {"bootloader": self.bootloader, "tee": self.tee, "snp": self.snp,
               "microcode": self.microcode}
        if self.fmc is not None:
            out["fmc"] = self.fmc
        return out

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.components().items())


@dataclass(frozen=True)
class GuestPolicy:
    """``GUEST_POLICY`` (ABI 56860 "Guest Policy Structure"), a 64-bit field.

    Bit 17 is reserved and must be one; bits 26-63 are reserved and must be zero.
    """

    abi_minor: int = 0
    abi_major: int = 0
    smt: bool = True
    migrate_ma: bool = False
    debug: bool = False
    single_socket: bool = False
    cxl_allow: bool = False
    mem_aes_256_xts: bool = False
    rapl_dis: bool = False
    ciphertext_hiding: bool = False
    page_swap_disable: bool = False

    _FLAGS = (("smt", 16), ("migrate_ma", 18), ("debug", 19), ("single_socket", 20),
              ("cxl_allow", 21), ("mem_aes_256_xts", 22), ("rapl_dis", 23),
              ("ciphertext_hiding", 24), ("page_swap_disable", 25))

    @classmethod
    def from_u64(cls, value: int, *, structure: str = "GUEST_POLICY",
                 offset: int | None = None) -> GuestPolicy:
        """Decode; the must-be-one bit 17 and the must-be-zero bits 26-63 are checked."""
        if not value >> 17 & 1:
            raise FormatError(structure, "POLICY.bit17", offset=offset, got=hex(value),
                              want="bit 17 set (reserved, must be one)")
        if value >> 26:
            raise FormatError(structure, "POLICY.reserved", offset=offset, got=hex(value),
                              want="bits 26-63 zero")
        flags = {name: bool(value >> bit & 1) for name, bit in cls._FLAGS}
        return cls(abi_minor=value & 0xFF, abi_major=value >> 8 & 0xFF, **flags)

    def to_u64(self) -> int:
        """Encode back to the 64-bit value (bit 17 set)."""
        for name in ("abi_minor", "abi_major"):
            if not 0 <= getattr(self, name) <= 0xFF:
                raise FormatError("GUEST_POLICY", name.upper(), got=getattr(self, name),
                                  want="0..255")
        v = self.abi_minor | self.abi_major << 8 | 1 << 17
        for name, bit in self._FLAGS:
            if getattr(self, name):
                v |= 1 << bit
        return v


@dataclass(frozen=True)
class PlatformInfo:
    """``PLATFORM_INFO`` (ABI 56860 "PLATFORM_INFO Field"): how the host is configured."""

    smt_enabled: bool = False
    tsme_enabled: bool = False
    ecc_enabled: bool = False
    rapl_disabled: bool = False
    ciphertext_hiding_enabled: bool = False
    alias_check_complete: bool = False
    iommu_write_safe: bool = False
    tio_enabled: bool = False

    # Bit 6 (IOMMU_WRITE_SAFE) is set by Turin firmware; bits 8-63 are reserved.
    _FLAGS = (("smt_enabled", 0), ("tsme_enabled", 1), ("ecc_enabled", 2), ("rapl_disabled", 3),
              ("ciphertext_hiding_enabled", 4), ("alias_check_complete", 5),
              ("iommu_write_safe", 6), ("tio_enabled", 7))
    _KNOWN_MASK = 0xFF

    @classmethod
    def from_u64(cls, value: int, *, structure: str = "PLATFORM_INFO",
                 offset: int | None = None) -> PlatformInfo:
        """Decode; bits not defined by ABI 56860 rev 1.58 must be zero."""
        if value & ~cls._KNOWN_MASK:
            raise FormatError(structure, "PLATFORM_INFO.reserved", offset=offset, got=hex(value),
                              want=f"only bits in {hex(cls._KNOWN_MASK)}")
        return cls(**{name: bool(value >> bit & 1) for name, bit in cls._FLAGS})

    def to_u64(self) -> int:
        """Encode back to the 64-bit value."""
        return sum(1 << bit for name, bit in self._FLAGS if getattr(self, name))


class SigningKey(enum.IntEnum):
    """SIGNING_KEY in the signer-info word: which key signed the report."""

    VCEK = 0
    VLEK = 1
    NONE = 7


@dataclass(frozen=True)
class SignerInfo:
    """The 32-bit word at 0x48: AUTHOR_KEY_EN (bit 0), MASK_CHIP_KEY (1), SIGNING_KEY (4:2)."""

    author_key_en: bool = False
    mask_chip_key: bool = False
    signing_key: SigningKey = SigningKey.VCEK

    @classmethod
    def from_u32(cls, value: int, *, structure: str = "ATTESTATION_REPORT",
                 offset: int | None = None) -> SignerInfo:
        """Decode; bits 5-31 must be zero and SIGNING_KEY one of 0, 1, 7."""
        if value >> 5:
            raise FormatError(structure, "SIGNER_INFO.reserved", offset=offset, got=hex(value),
                              want="bits 5-31 zero")
        sk = value >> 2 & 0b111
        try:
            signing_key = SigningKey(sk)
        except ValueError:
            raise FormatError(structure, "SIGNER_INFO.SIGNING_KEY", offset=offset, got=sk,
                              want="0 (VCEK), 1 (VLEK) or 7 (none)") from None
        return cls(author_key_en=bool(value & 1), mask_chip_key=bool(value >> 1 & 1),
                   signing_key=signing_key)

    def to_u32(self) -> int:
        """Encode back to the 32-bit word."""
        return int(self.author_key_en) | int(self.mask_chip_key) << 1 | int(self.signing_key) << 2


@dataclass(frozen=True)
class FirmwareVersion:
    """A firmware version major.minor.build (CURRENT_* / COMMITTED_* bytes)."""

    major: int
    minor: int
    build: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.build}"

    def as_tuple(self) -> tuple[int, int, int]:
        """(major, minor, build) for ordering."""
        return (self.major, self.minor, self.build)


@dataclass(frozen=True)
class Cpuid:
    """CPUID family, model and stepping of the chip (report version 3 and later)."""

    family: int
    model: int
    stepping: int

    @property
    def product(self) -> Product | None:
        """The product these CPUID values belong to, if known."""
        return product_from_cpuid(self.family, self.model)


@dataclass(frozen=True)
class EcdsaP384Signature:
    """An ECDSA P-384 signature as the AMD-SP stores it: R and S as integers.

    On the wire each is 72 bytes little-endian, zero-padded above 48 bytes, followed by 368
    reserved zero bytes (512 in all).
    """

    r: int
    s: int

    SIZE = 512
    COMPONENT = 72

    @classmethod
    def from_bytes(cls, data: bytes, *, structure: str = "SIGNATURE",
                   base: int = 0) -> EcdsaP384Signature:
        """Parse the 512-byte signature field."""
        rd = Reader(structure, data, size=cls.SIZE)
        # P-384 values fit in 48 bytes: the padding above them is part of the format.
        _zero_at(rd, "R.padding", 48, 24, base)
        _zero_at(rd, "S.padding", 72 + 48, 24, base)
        _zero_at(rd, "reserved", 144, cls.SIZE - 144, base)
        return cls(r=rd.uint("R", 0, 48), s=rd.uint("S", 72, 48))

    def to_bytes(self) -> bytes:
        """Serialise to the 512-byte field."""
        w = Writer("SIGNATURE", self.SIZE)
        w.uint("R", 0, 48, self.r)
        w.uint("S", 72, 48, self.s)
        return w.getvalue()


def _zero_at(rd: Reader, field_name: str, offset: int, length: int, base: int) -> None:
    """Like ``Reader.zero`` but reports offsets relative to an enclosing structure."""
    span = rd.raw(field_name, offset, length)
    if any(span):
        first = next(i for i, b in enumerate(span) if b)
        raise FormatError(rd.name, field_name, offset=base + offset + first, got=span,
                          want="all zero (reserved)")


# ATTESTATION_REPORT offsets (ABI 56860, "ATTESTATION_REPORT Structure").
_OFF = {
    "VERSION": 0x000, "GUEST_SVN": 0x004, "POLICY": 0x008, "FAMILY_ID": 0x010,
    "IMAGE_ID": 0x020, "VMPL": 0x030, "SIGNATURE_ALGO": 0x034, "CURRENT_TCB": 0x038,
    "PLATFORM_INFO": 0x040, "SIGNER_INFO": 0x048, "REPORT_DATA": 0x050,
    "MEASUREMENT": 0x090, "HOST_DATA": 0x0C0, "ID_KEY_DIGEST": 0x0E0,
    "AUTHOR_KEY_DIGEST": 0x110, "REPORT_ID": 0x140, "REPORT_ID_MA": 0x160,
    "REPORTED_TCB": 0x180, "CPUID_FAM_ID": 0x188, "CPUID_MOD_ID": 0x189, "CPUID_STEP": 0x18A,
    "CHIP_ID": 0x1A0, "COMMITTED_TCB": 0x1E0, "CURRENT_BUILD": 0x1E8, "CURRENT_MINOR": 0x1E9,
    "CURRENT_MAJOR": 0x1EA, "COMMITTED_BUILD": 0x1EC, "COMMITTED_MINOR": 0x1ED,
    "COMMITTED_MAJOR": 0x1EE, "LAUNCH_TCB": 0x1F0, "LAUNCH_MIT_VECTOR": 0x1F8,
    "CURRENT_MIT_VECTOR": 0x200, "SIGNATURE": 0x2A0,
}


@dataclass(frozen=True)
class AttestationReport:
    """An SEV-SNP ``ATTESTATION_REPORT`` (versions 2, 3 and 5; 1184 bytes).

    ``cpuid`` exists from version 3, the mitigation vectors from version 5; in older versions
    those ranges are reserved and must be zero. TCB fields are decoded in the Turin layout when
    the CPUID says Turin, else in the Milan/Genoa layout (a v2 report carries no CPUID and no
    Turin part produces v2 reports).
    """

    version: int
    guest_svn: int
    policy: GuestPolicy
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: PlatformInfo
    signer_info: SignerInfo
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    chip_id: bytes
    committed_tcb: TcbVersion
    current_version: FirmwareVersion
    committed_version: FirmwareVersion
    launch_tcb: TcbVersion
    signature: EcdsaP384Signature
    cpuid: Cpuid | None = None
    launch_mit_vector: int | None = None
    current_mit_vector: int | None = None

    # -- parsing ---------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes) -> AttestationReport:
        """Parse exactly 1184 bytes; every reserved range must be zero."""
        name = "ATTESTATION_REPORT"
        rd = Reader(name, data, size=REPORT_SIZE)
        o = _OFF
        version = rd.u32("VERSION", o["VERSION"])
        if version not in SUPPORTED_REPORT_VERSIONS:
            raise FormatError(name, "VERSION", offset=0, got=version,
                              want=f"one of {', '.join(map(str, SUPPORTED_REPORT_VERSIONS))}")
        rd.zero("reserved0", 0x04C, 4)
        cpuid: Cpuid | None = None
        if version >= 3:
            cpuid = Cpuid(family=rd.u8("CPUID_FAM_ID", o["CPUID_FAM_ID"]),
                          model=rd.u8("CPUID_MOD_ID", o["CPUID_MOD_ID"]),
                          stepping=rd.u8("CPUID_STEP", o["CPUID_STEP"]))
            rd.zero("reserved1", 0x18B, 0x1A0 - 0x18B)
        else:
            rd.zero("reserved1", 0x188, 0x1A0 - 0x188)
        rd.zero("reserved2", 0x1EB, 1)
        rd.zero("reserved3", 0x1EF, 1)
        launch_mit: int | None = None
        current_mit: int | None = None
        if version >= 5:
            launch_mit = rd.u64("LAUNCH_MIT_VECTOR", o["LAUNCH_MIT_VECTOR"])
            current_mit = rd.u64("CURRENT_MIT_VECTOR", o["CURRENT_MIT_VECTOR"])
            rd.zero("reserved4", 0x208, SIGNED_SIZE - 0x208)
        else:
            rd.zero("reserved4", 0x1F8, SIGNED_SIZE - 0x1F8)
        layout = TcbLayout.for_product(cpuid.product if cpuid else None)

        def tcb(fname: str) -> TcbVersion:
            return TcbVersion.from_u64(rd.u64(fname, o[fname]), layout, structure=name,
                                       offset=o[fname])

        report = cls(
            version=version,
            guest_svn=rd.u32("GUEST_SVN", o["GUEST_SVN"]),
            policy=GuestPolicy.from_u64(rd.u64("POLICY", o["POLICY"]), structure=name,
                                        offset=o["POLICY"]),
            family_id=rd.raw("FAMILY_ID", o["FAMILY_ID"], 16),
            image_id=rd.raw("IMAGE_ID", o["IMAGE_ID"], 16),
            vmpl=rd.u32("VMPL", o["VMPL"]),
            signature_algo=rd.u32("SIGNATURE_ALGO", o["SIGNATURE_ALGO"]),
            current_tcb=tcb("CURRENT_TCB"),
            platform_info=PlatformInfo.from_u64(rd.u64("PLATFORM_INFO", o["PLATFORM_INFO"]),
                                                structure=name, offset=o["PLATFORM_INFO"]),
            signer_info=SignerInfo.from_u32(rd.u32("SIGNER_INFO", o["SIGNER_INFO"]),
                                            structure=name, offset=o["SIGNER_INFO"]),
            report_data=rd.raw("REPORT_DATA", o["REPORT_DATA"], 64),
            measurement=rd.raw("MEASUREMENT", o["MEASUREMENT"], 48),
            host_data=rd.raw("HOST_DATA", o["HOST_DATA"], 32),
            id_key_digest=rd.raw("ID_KEY_DIGEST", o["ID_KEY_DIGEST"], 48),
            author_key_digest=rd.raw("AUTHOR_KEY_DIGEST", o["AUTHOR_KEY_DIGEST"], 48),
            report_id=rd.raw("REPORT_ID", o["REPORT_ID"], 32),
            report_id_ma=rd.raw("REPORT_ID_MA", o["REPORT_ID_MA"], 32),
            reported_tcb=tcb("REPORTED_TCB"),
            chip_id=rd.raw("CHIP_ID", o["CHIP_ID"], 64),
            committed_tcb=tcb("COMMITTED_TCB"),
            current_version=FirmwareVersion(rd.u8("CURRENT_MAJOR", o["CURRENT_MAJOR"]),
                                            rd.u8("CURRENT_MINOR", o["CURRENT_MINOR"]),
                                            rd.u8("CURRENT_BUILD", o["CURRENT_BUILD"])),
            committed_version=FirmwareVersion(rd.u8("COMMITTED_MAJOR", o["COMMITTED_MAJOR"]),
                                              rd.u8("COMMITTED_MINOR", o["COMMITTED_MINOR"]),
                                              rd.u8("COMMITTED_BUILD", o["COMMITTED_BUILD"])),
            launch_tcb=tcb("LAUNCH_TCB"),
            signature=EcdsaP384Signature.from_bytes(
                rd.raw("SIGNATURE", o["SIGNATURE"], EcdsaP384Signature.SIZE),
                structure=name, base=o["SIGNATURE"]),
            cpuid=cpuid,
            launch_mit_vector=launch_mit,
            current_mit_vector=current_mit,
        )
        if report.vmpl > 3:
            raise FormatError(name, "VMPL", offset=o["VMPL"], got=report.vmpl, want="0..3")
        # The parse is exact, so the input bytes *are* the serialisation; keep them.
        report.__dict__["raw"] = rd.data
        return report

    # -- serialising -----------------------------------------------------------------------
    @cached_property
    def raw(self) -> bytes:
        """The 1184-byte serialisation (the exact input bytes for a parsed report)."""
        return self.to_bytes()

    @property
    def signed_bytes(self) -> bytes:
        """Bytes 0x000-0x29F, the region the ECDSA signature covers."""
        return self.raw[:SIGNED_SIZE]

    @property
    def tcb_layout(self) -> TcbLayout:
        """The TCB layout this report's TCB fields are encoded in."""
        return TcbLayout.for_product(self.cpuid.product if self.cpuid else None)

    def to_bytes(self) -> bytes:
        """Serialise to 1184 bytes; ``from_bytes(r.to_bytes()) == r``."""
        name = "ATTESTATION_REPORT"
        if self.version not in SUPPORTED_REPORT_VERSIONS:
            raise FormatError(name, "VERSION", got=self.version,
                              want=f"one of {SUPPORTED_REPORT_VERSIONS}")
        if (self.cpuid is not None) != (self.version >= 3):
            raise FormatError(name, "CPUID", got=self.cpuid, want="present iff version >= 3")
        has_mit = self.launch_mit_vector is not None and self.current_mit_vector is not None
        if has_mit != (self.version >= 5):
            raise FormatError(name, "MIT_VECTOR", got=self.launch_mit_vector,
                              want="present iff version >= 5")
        layout = self.tcb_layout
        for fname in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
            if getattr(self, fname).layout is not layout:
                raise FormatError(name, fname.upper(), got=getattr(self, fname).layout.value,
                                  want=layout.value)
        o = _OFF
        w = Writer(name, REPORT_SIZE)
        w.u32("VERSION", o["VERSION"], self.version)
        w.u32("GUEST_SVN", o["GUEST_SVN"], self.guest_svn)
        w.u64("POLICY", o["POLICY"], self.policy.to_u64())
        w.raw("FAMILY_ID", o["FAMILY_ID"], self.family_id, 16)
        w.raw("IMAGE_ID", o["IMAGE_ID"], self.image_id, 16)
        w.u32("VMPL", o["VMPL"], self.vmpl)
        w.u32("SIGNATURE_ALGO", o["SIGNATURE_ALGO"], self.signature_algo)
        w.u64("CURRENT_TCB", o["CURRENT_TCB"], self.current_tcb.to_u64())
        w.u64("PLATFORM_INFO", o["PLATFORM_INFO"], self.platform_info.to_u64())
        w.u32("SIGNER_INFO", o["SIGNER_INFO"], self.signer_info.to_u32())
        w.raw("REPORT_DATA", o["REPORT_DATA"], self.report_data, 64)
        w.raw("MEASUREMENT", o["MEASUREMENT"], self.measurement, 48)
        w.raw("HOST_DATA", o["HOST_DATA"], self.host_data, 32)
        w.raw("ID_KEY_DIGEST", o["ID_KEY_DIGEST"], self.id_key_digest, 48)
        w.raw("AUTHOR_KEY_DIGEST", o["AUTHOR_KEY_DIGEST"], self.author_key_digest, 48)
        w.raw("REPORT_ID", o["REPORT_ID"], self.report_id, 32)
        w.raw("REPORT_ID_MA", o["REPORT_ID_MA"], self.report_id_ma, 32)
        w.u64("REPORTED_TCB", o["REPORTED_TCB"], self.reported_tcb.to_u64())
        if self.cpuid is not None:
            w.u8("CPUID_FAM_ID", o["CPUID_FAM_ID"], self.cpuid.family)
            w.u8("CPUID_MOD_ID", o["CPUID_MOD_ID"], self.cpuid.model)
            w.u8("CPUID_STEP", o["CPUID_STEP"], self.cpuid.stepping)
        w.raw("CHIP_ID", o["CHIP_ID"], self.chip_id, 64)
        w.u64("COMMITTED_TCB", o["COMMITTED_TCB"], self.committed_tcb.to_u64())
        for prefix, ver in (("CURRENT", self.current_version),
                            ("COMMITTED", self.committed_version)):
            w.u8(f"{prefix}_BUILD", o[f"{prefix}_BUILD"], ver.build)
            w.u8(f"{prefix}_MINOR", o[f"{prefix}_MINOR"], ver.minor)
            w.u8(f"{prefix}_MAJOR", o[f"{prefix}_MAJOR"], ver.major)
        w.u64("LAUNCH_TCB", o["LAUNCH_TCB"], self.launch_tcb.to_u64())
        if self.launch_mit_vector is not None and self.current_mit_vector is not None:
            w.u64("LAUNCH_MIT_VECTOR", o["LAUNCH_MIT_VECTOR"], self.launch_mit_vector)
            w.u64("CURRENT_MIT_VECTOR", o["CURRENT_MIT_VECTOR"], self.current_mit_vector)
        w.raw("SIGNATURE", o["SIGNATURE"], self.signature.to_bytes())
        return w.getvalue()

    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-friendly values (bytes as hex) for display."""
        def tcb(t: TcbVersion) -> dict[str, Any]:
            return {**t.components(), "raw": f"0x{t.to_u64():016x}"}

        out: dict[str, Any] = {
            "version": self.version,
            "guest_svn": self.guest_svn,
            "policy": {"raw": f"0x{self.policy.to_u64():x}", **_flags(self.policy)},
            "family_id": self.family_id.hex(),
            "image_id": self.image_id.hex(),
            "vmpl": self.vmpl,
            "signature_algo": self.signature_algo,
            "current_tcb": tcb(self.current_tcb),
            "platform_info": {"raw": f"0x{self.platform_info.to_u64():x}",
                              **_flags(self.platform_info)},
            "signer_info": {"author_key_en": self.signer_info.author_key_en,
                            "mask_chip_key": self.signer_info.mask_chip_key,
                            "signing_key": self.signer_info.signing_key.name},
            "report_data": self.report_data.hex(),
            "measurement": self.measurement.hex(),
            "host_data": self.host_data.hex(),
            "id_key_digest": self.id_key_digest.hex(),
            "author_key_digest": self.author_key_digest.hex(),
            "report_id": self.report_id.hex(),
            "report_id_ma": self.report_id_ma.hex(),
            "reported_tcb": tcb(self.reported_tcb),
            "cpuid": None if self.cpuid is None else {
                "family": f"0x{self.cpuid.family:02x}", "model": f"0x{self.cpuid.model:02x}",
                "stepping": f"0x{self.cpuid.stepping:02x}",
                "product": self.cpuid.product.value if self.cpuid.product else None},
            "chip_id": self.chip_id.hex(),
            "committed_tcb": tcb(self.committed_tcb),
            "current_version": str(self.current_version),
            "committed_version": str(self.committed_version),
            "launch_tcb": tcb(self.launch_tcb),
            "launch_mit_vector": None if self.launch_mit_vector is None
            else f"0x{self.launch_mit_vector:016x}",
            "current_mit_vector": None if self.current_mit_vector is None
            else f"0x{self.current_mit_vector:016x}",
            "signature": {"r": f"{self.signature.r:096x}", "s": f"{self.signature.s:096x}"},
        }
        return out


def _flags(obj: GuestPolicy | PlatformInfo) -> dict[str, Any]:
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


@dataclass(frozen=True)
class MsgReportReq:
    """``MSG_REPORT_REQ``: what a guest sends its secure processor to get a report.

    KEY_SEL (bits 1:0 of the word at 0x44): 0 = VLEK if installed else VCEK, 1 = VCEK,
    2 = VLEK.
    """

    report_data: bytes
    vmpl: int = 0
    key_sel: int = 0

    SIZE = 0x60

    @classmethod
    def from_bytes(cls, data: bytes) -> MsgReportReq:
        """Parse the 96-byte request; reserved bytes must be zero."""
        rd = Reader("MSG_REPORT_REQ", data, size=cls.SIZE)
        word = rd.u32("KEY_SEL", 0x44)
        if word >> 2:
            raise FormatError("MSG_REPORT_REQ", "KEY_SEL.reserved", offset=0x44, got=hex(word),
                              want="bits 2-31 zero")
        rd.zero("reserved", 0x48, cls.SIZE - 0x48)
        req = cls(report_data=rd.raw("REPORT_DATA", 0, 64), vmpl=rd.u32("VMPL", 0x40),
                  key_sel=word & 0b11)
        req.validate()
        return req

    def validate(self) -> None:
        """Check field ranges; raise :class:`FormatError` naming the bad field."""
        if len(self.report_data) != 64:
            raise FormatError("MSG_REPORT_REQ", "REPORT_DATA", offset=0,
                              got=f"{len(self.report_data)} bytes", want="64 bytes")
        if not 0 <= self.vmpl <= 3:
            raise FormatError("MSG_REPORT_REQ", "VMPL", offset=0x40, got=self.vmpl, want="0..3")
        if self.key_sel not in (0, 1, 2):
            raise FormatError("MSG_REPORT_REQ", "KEY_SEL", offset=0x44, got=self.key_sel,
                              want="0, 1 or 2")

    def to_bytes(self) -> bytes:
        """Serialise to 96 bytes."""
        self.validate()
        w = Writer("MSG_REPORT_REQ", self.SIZE)
        w.raw("REPORT_DATA", 0, self.report_data, 64)
        w.u32("VMPL", 0x40, self.vmpl)
        w.u32("KEY_SEL", 0x44, self.key_sel)
        return w.getvalue()


class GuestFieldSelect(enum.IntFlag):
    """GUEST_FIELD_SELECT of ``MSG_KEY_REQ``: which guest fields the derived key mixes in."""

    GUEST_POLICY = 1 << 0
    IMAGE_ID = 1 << 1
    FAMILY_ID = 1 << 2
    MEASUREMENT = 1 << 3
    GUEST_SVN = 1 << 4
    TCB_VERSION = 1 << 5


class RootKeySelect(enum.IntEnum):
    """ROOT_KEY_SELECT of ``MSG_KEY_REQ``."""

    VCEK = 0  # the chip's VCEK-root, for the requested TCB: survives relaunch
    VMRK = 1  # the VM root key: per launch, migrates with the guest


@dataclass(frozen=True)
class MsgKeyReq:
    """``MSG_KEY_REQ`` (ABI 56860 "MSG_KEY_REQ Message Structure"): ask for a derived key.

    The firmware refuses a ``guest_svn`` above the guest's SVN, a ``tcb_version`` above the
    current TCB, and a ``vmpl`` below the requester's: an older identity's key can be
    derived by a newer workload, never the reverse.
    """

    root_key_select: RootKeySelect = RootKeySelect.VCEK
    key_sel: int = 0
    guest_field_select: GuestFieldSelect = GuestFieldSelect(0)  # noqa: RUF009 - immutable
    vmpl: int = 0
    guest_svn: int = 0
    tcb_version: int = 0

    SIZE = 0x20

    @classmethod
    def from_bytes(cls, data: bytes) -> MsgKeyReq:
        """Parse the 32-byte request; reserved bits must be zero."""
        name = "MSG_KEY_REQ"
        rd = Reader(name, data, size=cls.SIZE)
        word = rd.u32("ROOT_KEY_SELECT/KEY_SEL", 0)
        if word >> 3:
            raise FormatError(name, "reserved", offset=0, got=hex(word), want="bits 3-31 zero")
        rd.zero("reserved", 0x04, 4)
        fields = rd.u64("GUEST_FIELD_SELECT", 0x08)
        if fields >> 6:
            raise FormatError(name, "GUEST_FIELD_SELECT", offset=0x08, got=hex(fields),
                              want="bits 6-63 zero")
        req = cls(root_key_select=RootKeySelect(word & 1), key_sel=word >> 1 & 0b11,
                  guest_field_select=GuestFieldSelect(fields), vmpl=rd.u32("VMPL", 0x10),
                  guest_svn=rd.u32("GUEST_SVN", 0x14), tcb_version=rd.u64("TCB_VERSION", 0x18))
        req.validate()
        return req

    def validate(self) -> None:
        """Check field ranges."""
        if self.key_sel not in (0, 1, 2):
            raise FormatError("MSG_KEY_REQ", "KEY_SEL", offset=0, got=self.key_sel,
                              want="0, 1 or 2")
        if not 0 <= self.vmpl <= 3:
            raise FormatError("MSG_KEY_REQ", "VMPL", offset=0x10, got=self.vmpl, want="0..3")

    def to_bytes(self) -> bytes:
        """Serialise to 32 bytes."""
        self.validate()
        w = Writer("MSG_KEY_REQ", self.SIZE)
        w.u32("ROOT_KEY_SELECT/KEY_SEL", 0, int(self.root_key_select) | self.key_sel << 1)
        w.u64("GUEST_FIELD_SELECT", 0x08, int(self.guest_field_select))
        w.u32("VMPL", 0x10, self.vmpl)
        w.u32("GUEST_SVN", 0x14, self.guest_svn)
        w.u64("TCB_VERSION", 0x18, self.tcb_version)
        return w.getvalue()


# Certificate-table GUIDs (GHCB spec 56421, "SNP Extended Guest Request"), RFC 4122 byte order.
CERT_GUIDS: dict[uuid.UUID, str] = {
    uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae"): "ARK",
    uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"): "ASK",
    uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd"): "VCEK",
    uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1"): "VLEK",
    uuid.UUID("92f81bc3-5811-4d3d-97ff-d19f88dc67ea"): "CRL",
}
_GUID_BY_NAME = {v: k for k, v in CERT_GUIDS.items()}


@dataclass(frozen=True)
class CertTableEntry:
    """One certificate in an extended report's table."""

    guid: uuid.UUID
    data: bytes

    @property
    def kind(self) -> str | None:
        """"ARK", "ASK", "VCEK", "VLEK" or "CRL" for the GUIDs AMD defines, else ``None``."""
        return CERT_GUIDS.get(self.guid)


@dataclass(frozen=True)
class CertTable:
    """The certificate table that accompanies an extended report (configfs-tsm auxblob)."""

    entries: tuple[CertTableEntry, ...]

    ENTRY = 24

    @classmethod
    def from_bytes(cls, data: bytes) -> CertTable:
        """Parse the table; entries must lie inside the buffer and the terminator must exist."""
        name = "CERT_TABLE"
        rd = Reader(name, data)
        headers: list[tuple[int, bytes, int, int]] = []
        pos = 0
        while True:
            if pos + cls.ENTRY > len(rd.data):
                raise FormatError(name, "terminator", offset=pos, got="end of buffer",
                                  want="an all-zero 24-byte entry")
            guid_bytes = rd.raw("GUID", pos, 16)
            off = rd.u32("OFFSET", pos + 16)
            length = rd.u32("LENGTH", pos + 20)
            if not any(guid_bytes):
                if off or length:
                    raise FormatError(name, "terminator", offset=pos + 16,
                                      got=f"offset={off} length={length}", want="zero")
                break
            headers.append((pos, guid_bytes, off, length))
            pos += cls.ENTRY
        # Payloads live after every header (terminator included) and never overlap.
        headers_end = pos + cls.ENTRY
        spans: list[tuple[int, int, int]] = []
        for at, _guid, off, length in headers:
            if off < headers_end or off + length > len(rd.data):
                raise FormatError(name, "OFFSET/LENGTH", offset=at + 16,
                                  got=f"[{off}, {off + length})",
                                  want=f"inside [{headers_end}, {len(rd.data)}) after the headers")
            spans.append((off, off + length, at))
        spans.sort()
        for (_s1, end1, _a1), (start2, _e2, at2) in itertools.pairwise(spans):
            if start2 < end1:
                raise FormatError(name, "OFFSET/LENGTH", offset=at2 + 16,
                                  got=f"payload starts at {start2}",
                                  want=f">= {end1} (payloads must not overlap)")
        entries = [CertTableEntry(uuid.UUID(bytes=g), rd.raw("data", off, length))
                   for _at, g, off, length in headers]
        return cls(tuple(entries))

    def to_bytes(self) -> bytes:
        """Serialise: headers, terminator, then the payloads in order."""
        header_len = (len(self.entries) + 1) * self.ENTRY
        out = bytearray()
        payload = bytearray()
        for e in self.entries:
            out += e.guid.bytes
            out += (header_len + len(payload)).to_bytes(4, "little")
            out += len(e.data).to_bytes(4, "little")
            payload += e.data
        out += bytes(self.ENTRY)
        return bytes(out + payload)

    def get(self, kind: str) -> bytes | None:
        """The payload for ``kind`` ("ARK", "ASK", "VCEK", "VLEK", "CRL"), if present."""
        guid = _GUID_BY_NAME[kind]
        return next((e.data for e in self.entries if e.guid == guid), None)

    @classmethod
    def build(cls, items: dict[str, bytes]) -> CertTable:
        """Build a table from ``{"VCEK": der, "ASK": der, ...}``."""
        return cls(tuple(CertTableEntry(_GUID_BY_NAME[k], v) for k, v in items.items()))
