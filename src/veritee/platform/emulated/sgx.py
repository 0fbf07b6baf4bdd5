"""An emulated Intel SGX machine: enclaves built page by page, SIGSTRUCT/EINIT, EREPORT,
local attestation, EGETKEY and quotes from the emulated Quoting Enclave.

INSECURE BY NAME: the "CPU" is Python in ordinary memory. The byte formats and the rules are
the SDM's (Intel SDM Vol. 3D, cited as "SDM" with the section):

* **MRENCLAVE** (SDM 35.7 / 38.x "Enclave Measurement"): one SHA-256 over 64-byte records.
  ECREATE: "ECREATE\\0", SSAFRAMESIZE (u32, pages) @8, SIZE (u64) @12, zero to 64.
  EADD: "EADD\\0\\0\\0\\0", the page's offset in the enclave (u64) @8, the first 48 bytes of
  SECINFO (FLAGS u64, then zero) @16. EEXTEND: "EEXTEND\\0", the 256-byte chunk's offset
  (u64) @8, zero to 64, then the chunk's 256 bytes.
* **SIGSTRUCT** (SDM 35.14, 1808 bytes): HEADER @0, VENDOR @16, DATE @20, HEADER2 @24,
  SWDEFINED @40, MODULUS (384, little endian) @128, EXPONENT (3) @512, SIGNATURE (384, LE)
  @516, MISCSELECT @900, MISCMASK @904, ISVFAMILYID @912, ATTRIBUTES @928, ATTRIBUTEMASK
  @944, ENCLAVEHASH @960, ISVEXTPRODID @1008, ISVPRODID @1024, ISVSVN @1026, Q1 @1040,
  Q2 @1424. RSA-3072, e = 3, PKCS#1 v1.5 SHA-256 over bytes 0..128 || 900..1028.
  MRSIGNER = SHA-256(MODULUS as stored). EINIT (SDM EINIT) refuses a bad signature, an
  ENCLAVEHASH other than the measured MRENCLAVE, and SECS ATTRIBUTES/MISCSELECT that differ
  from SIGSTRUCT's under its masks.
* **REPORT** (SDM 35.15, 432 bytes): the 384-byte body (``formats.intel.SgxReportBody``),
  KEYID @384, MAC @416: AES-128-CMAC over the body under the *target's* report key.
  TARGETINFO (512 bytes): MEASUREMENT @0, ATTRIBUTES @32, CONFIGSVN @50, MISCSELECT @52,
  CONFIGID @64.
* **EGETKEY** (SDM 35.17 KEYREQUEST, 512 bytes: KEYNAME @0, KEYPOLICY @2, ISVSVN @4, CPUSVN
  @8, ATTRIBUTEMASK @24, KEYID @40, MISCMASK @72, CONFIGSVN @76). Refuses an ISVSVN,
  CONFIGSVN or CPUSVN above the enclave's / the CPU's (SGX_INVALID_ISVSVN / _CPUSVN): keys
  of older SVNs are reachable, newer ones are not. KEYPOLICY bit 0 MRENCLAVE, bit 1
  MRSIGNER, bit 2 NOISVPRODID, bit 3 CONFIGID, bit 4 ISVFAMILYID, bit 5 ISVEXTPRODID. The
  attribute mask always includes INIT and DEBUG, so a debug enclave never derives a
  production enclave's key. Derivation is AES-128-CMAC over the selected fields under a key
  that HKDF derives from the CPU secret and the requested CPUSVN (the real derivation from
  fuses is not public; only its inputs are).

Not modelled: EPC paging (EWB/ELDU: see the isolation model's SGX rules, the memory side of
the same enclave), EINITTOKEN / launch control, AEX and SSA contents, TCS semantics beyond
the page type, EDMM.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, replace
from datetime import date

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.ciphers.algorithms import AES
from cryptography.hazmat.primitives.cmac import CMAC

from veritee._wire import Reader, Writer
from veritee.errors import FormatError, PlatformError, SealingError
from veritee.formats.intel import SgxReportBody
from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor

__all__ = [
    "ATTR_DEBUG",
    "ATTR_INIT",
    "ATTR_KSS",
    "ATTR_MODE64BIT",
    "ATTR_PROVISIONKEY",
    "PAGE_SIZE",
    "SIGSTRUCT_SIZE",
    "EmulatedEnclave",
    "EnclaveBuilder",
    "InsecureEmulatedSgxMachine",
    "KeyName",
    "KeyPolicy",
    "KeyRequest",
    "SecInfo",
    "Sigstruct",
    "TargetInfo",
    "sgx_seal",
    "sgx_unseal",
    "sign_enclave",
]

PAGE_SIZE = 4096
CHUNK = 256
SIGSTRUCT_SIZE = 1808
REPORT_SIZE = 432
TARGETINFO_SIZE = 512
KEYREQUEST_SIZE = 512

# SECS.ATTRIBUTES.FLAGS (SDM 35.7.1, Table "Layout of ATTRIBUTES Structure")
ATTR_INIT = 1 << 0
ATTR_DEBUG = 1 << 1
ATTR_MODE64BIT = 1 << 2
ATTR_PROVISIONKEY = 1 << 4
ATTR_EINITTOKEN_KEY = 1 << 5
ATTR_KSS = 1 << 7
DEFAULT_XFRM = 0x3  # x87 | SSE

_EEXTEND = struct.Struct("<8sQ48x")
_HEADER = bytes.fromhex("06000000e10000000000010000000000")
_HEADER2 = bytes.fromhex("01010000600000006000000001000000")


class SecInfo(enum.IntFlag):
    """SECINFO.FLAGS (SDM 35.11): R/W/X permissions and the page type in bits 8-15."""

    R = 1 << 0
    W = 1 << 1
    X = 1 << 2
    PT_TCS = 1 << 8
    PT_REG = 2 << 8


class KeyName(enum.IntEnum):
    """KEYREQUEST.KEYNAME (SDM 35.17.1)."""

    EINITTOKEN = 0
    PROVISION = 1
    PROVISION_SEAL = 2
    REPORT = 3
    SEAL = 4


class KeyPolicy(enum.IntFlag):
    """KEYREQUEST.KEYPOLICY (SDM 35.17.1)."""

    MRENCLAVE = 1 << 0
    MRSIGNER = 1 << 1
    NOISVPRODID = 1 << 2
    CONFIGID = 1 << 3
    ISVFAMILYID = 1 << 4
    ISVEXTPRODID = 1 << 5


def _attributes(flags: int, xfrm: int = DEFAULT_XFRM) -> bytes:
    return flags.to_bytes(8, "little") + xfrm.to_bytes(8, "little")


def _cmac(key: bytes, data: bytes) -> bytes:
    c = CMAC(AES(key))
    c.update(data)
    return c.finalize()


# -- measurement --------------------------------------------------------------------------------


class EnclaveBuilder:
    """ECREATE, then EADD/EEXTEND page by page; :meth:`einit` checks the SIGSTRUCT."""

    def __init__(self, machine: InsecureEmulatedSgxMachine, *, size: int,
                 ssa_frame_pages: int = 1, flags: int = ATTR_MODE64BIT,
                 xfrm: int = DEFAULT_XFRM, miscselect: int = 0,
                 config_id: bytes = bytes(64), config_svn: int = 0) -> None:
        if size < PAGE_SIZE or size & (size - 1):
            raise PlatformError(f"ECREATE: SECS.SIZE {size}: want a power of two >= 4096")
        self.machine = machine
        self.size = size
        self.ssa_frame_pages = ssa_frame_pages
        self.attributes = _attributes(flags | ATTR_INIT, xfrm)
        self._flags = flags
        self.miscselect = miscselect
        self.config_id = config_id
        self.config_svn = config_svn
        self._pages: dict[int, bytes] = {}
        self._digest = hashlib.sha256()
        # ECREATE record (SDM "ECREATE" operation: the measured SECS fields).
        w = Writer("ECREATE", 64)
        w.raw("tag", 0, b"ECREATE\0")
        w.u32("ssaframesize", 8, ssa_frame_pages)
        w.u64("size", 12, size)
        self._digest.update(w.getvalue())
        self._initialized = False

    @property
    def debug(self) -> bool:
        """SECS.ATTRIBUTES.DEBUG."""
        return bool(self._flags & ATTR_DEBUG)

    def eadd(self, offset: int, page: bytes, flags: SecInfo) -> None:
        """EADD a 4 KiB page at ``offset`` with SECINFO ``flags`` (measures offset + SECINFO)."""
        self._open()
        if offset % PAGE_SIZE or not 0 <= offset < self.size or len(page) != PAGE_SIZE:
            raise PlatformError(f"EADD at 0x{offset:x}: want a page-aligned offset in the "
                                "enclave and 4096 bytes")
        if offset in self._pages:
            raise PlatformError(f"EADD at 0x{offset:x}: page already present (EPCM)")
        self._pages[offset] = bytes(page)
        w = Writer("EADD", 64)
        w.raw("tag", 0, b"EADD\0\0\0\0")
        w.u64("offset", 8, offset)
        w.u64("secinfo.flags", 16, int(flags))
        self._digest.update(w.getvalue())

    def eextend(self, offset: int) -> None:
        """EEXTEND the 256-byte chunk at ``offset`` (its page must have been added)."""
        self._open()
        page = self._pages.get(offset - offset % PAGE_SIZE)
        if offset % CHUNK or page is None:
            raise PlatformError(f"EEXTEND at 0x{offset:x}: want a 256-aligned chunk of an "
                                "added page")
        # "EEXTEND\0", offset u64 @8, zero to 64 (packed directly: this is the hot path).
        self._digest.update(_EEXTEND.pack(b"EEXTEND", offset))
        self._digest.update(page[offset % PAGE_SIZE:offset % PAGE_SIZE + CHUNK])

    def add_pages(self, offset: int, data: bytes, flags: SecInfo, *,
                  measure: bool = True) -> None:
        """EADD ``data`` (padded to pages) from ``offset``; EEXTEND every chunk when
        ``measure`` (as the SDK's loader and Gramine's ``include_page`` do)."""
        data = data.ljust(-(-max(len(data), 1) // PAGE_SIZE) * PAGE_SIZE, b"\0")
        update = self._digest.update
        for i in range(0, len(data), PAGE_SIZE):
            page = data[i:i + PAGE_SIZE]
            self.eadd(offset + i, page, flags)
            if measure:  # eextend's records, inline (the page was just added, aligned)
                view = memoryview(page)
                for c in range(0, PAGE_SIZE, CHUNK):
                    update(_EEXTEND.pack(b"EEXTEND", offset + i + c))
                    update(view[c:c + CHUNK])

    @property
    def mrenclave(self) -> bytes:
        """MRENCLAVE as EINIT would finalise it now."""
        return self._digest.copy().digest()

    def einit(self, sigstruct: bytes) -> EmulatedEnclave:
        """EINIT: check the SIGSTRUCT against this build; the enclave can then run."""
        self._open()
        try:
            sig = Sigstruct.from_bytes(sigstruct)
        except FormatError as exc:
            raise PlatformError(f"EINIT: SGX_INVALID_SIGNATURE ({exc})") from None
        if not sig.signature_valid():
            raise PlatformError("EINIT: SGX_INVALID_SIGNATURE (SIGSTRUCT signature)")
        if not hmac.compare_digest(sig.enclave_hash, self.mrenclave):
            raise PlatformError("EINIT: SGX_INVALID_MEASUREMENT (ENCLAVEHASH != MRENCLAVE)")
        masked = bytes(a & m for a, m in zip(self.attributes, sig.attribute_mask, strict=True))
        want = bytes(a & m for a, m in zip(sig.attributes, sig.attribute_mask, strict=True))
        if masked != want:
            raise PlatformError("EINIT: SGX_INVALID_ATTRIBUTE (SECS.ATTRIBUTES vs SIGSTRUCT)")
        if self.miscselect & sig.misc_mask != sig.misc_select & sig.misc_mask:
            raise PlatformError("EINIT: SGX_INVALID_ATTRIBUTE (MISCSELECT vs SIGSTRUCT)")
        if self._flags & ATTR_KSS == 0 and any(self.config_id):
            raise PlatformError("EINIT: CONFIGID needs ATTRIBUTES.KSS")
        self._initialized = True
        return EmulatedEnclave(self.machine, mr_enclave=self.mrenclave,
                               mr_signer=sig.mrsigner, attributes=self.attributes,
                               misc_select=self.miscselect, isv_prod_id=sig.isv_prod_id,
                               isv_svn=sig.isv_svn, config_id=self.config_id,
                               config_svn=self.config_svn, isv_family_id=sig.isv_family_id,
                               isv_ext_prod_id=sig.isv_ext_prod_id)

    def _open(self) -> None:
        if self._initialized:
            raise PlatformError("enclave already initialized (EINIT)")


# -- SIGSTRUCT ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sigstruct:
    """SIGSTRUCT (1808 bytes; offsets in the module docstring)."""

    vendor: int
    date: int
    sw_defined: int
    modulus: bytes
    exponent: int
    signature: bytes
    misc_select: int
    misc_mask: int
    isv_family_id: bytes
    attributes: bytes
    attribute_mask: bytes
    enclave_hash: bytes
    isv_ext_prod_id: bytes
    isv_prod_id: int
    isv_svn: int
    q1: bytes = bytes(384)
    q2: bytes = bytes(384)

    @classmethod
    def from_bytes(cls, data: bytes) -> Sigstruct:
        """Parse exactly 1808 bytes (headers and reserved ranges checked)."""
        r = Reader("Sigstruct", data, size=SIGSTRUCT_SIZE)
        if r.raw("header", 0, 16) != _HEADER or r.raw("header2", 24, 16) != _HEADER2:
            raise FormatError("Sigstruct", "header", offset=0, got=r.raw("header", 0, 16),
                              want=_HEADER)
        r.zero("reserved1", 44, 84)
        r.zero("reserved4", 992, 16)
        r.zero("reserved5", 1028, 12)
        return cls(vendor=r.u32("vendor", 16), date=r.u32("date", 20),
                   sw_defined=r.u32("swdefined", 40), modulus=r.raw("modulus", 128, 384),
                   exponent=r.u32("exponent", 512), signature=r.raw("signature", 516, 384),
                   misc_select=r.u32("miscselect", 900), misc_mask=r.u32("miscmask", 904),
                   isv_family_id=r.raw("isvfamilyid", 912, 16),
                   attributes=r.raw("attributes", 928, 16),
                   attribute_mask=r.raw("attributemask", 944, 16),
                   enclave_hash=r.raw("enclavehash", 960, 32),
                   isv_ext_prod_id=r.raw("isvextprodid", 1008, 16),
                   isv_prod_id=r.u16("isvprodid", 1024), isv_svn=r.u16("isvsvn", 1026),
                   q1=r.raw("q1", 1040, 384), q2=r.raw("q2", 1424, 384))

    def to_bytes(self) -> bytes:
        """Inverse of :meth:`from_bytes`."""
        w = Writer("Sigstruct", SIGSTRUCT_SIZE)
        w.raw("header", 0, _HEADER)
        w.u32("vendor", 16, self.vendor)
        w.u32("date", 20, self.date)
        w.raw("header2", 24, _HEADER2)
        w.u32("swdefined", 40, self.sw_defined)
        w.raw("modulus", 128, self.modulus, 384)
        w.u32("exponent", 512, self.exponent)
        w.raw("signature", 516, self.signature, 384)
        w.u32("miscselect", 900, self.misc_select)
        w.u32("miscmask", 904, self.misc_mask)
        w.raw("isvfamilyid", 912, self.isv_family_id, 16)
        w.raw("attributes", 928, self.attributes, 16)
        w.raw("attributemask", 944, self.attribute_mask, 16)
        w.raw("enclavehash", 960, self.enclave_hash, 32)
        w.raw("isvextprodid", 1008, self.isv_ext_prod_id, 16)
        w.uint("isvprodid", 1024, 2, self.isv_prod_id)
        w.uint("isvsvn", 1026, 2, self.isv_svn)
        w.raw("q1", 1040, self.q1, 384)
        w.raw("q2", 1424, self.q2, 384)
        return w.getvalue()

    def signed_bytes(self) -> bytes:
        """What the enclave signing key signs: bytes 0..128 and 900..1028."""
        raw = self.to_bytes()
        return raw[:128] + raw[900:1028]

    @property
    def mrsigner(self) -> bytes:
        """MRSIGNER: SHA-256 of the modulus as stored (little endian)."""
        return hashlib.sha256(self.modulus).digest()

    def signature_valid(self) -> bool:
        """RSA-3072 e=3 PKCS#1 v1.5 SHA-256, and Q1/Q2 consistent with it (EINIT)."""
        if self.exponent != 3:
            return False
        n = int.from_bytes(self.modulus, "little")
        s = int.from_bytes(self.signature, "little")
        if n.bit_length() != 3072 or s >= n:
            return False
        if (int.from_bytes(self.q1, "little"), int.from_bytes(self.q2, "little")) != _q1q2(s, n):
            return False
        key = rsa.RSAPublicNumbers(3, n).public_key()
        try:
            key.verify(s.to_bytes(384, "big"), self.signed_bytes(), padding.PKCS1v15(),
                       hashes.SHA256())
        except InvalidSignature:
            return False
        return True


def _q1q2(s: int, n: int) -> tuple[int, int]:
    """SIGSTRUCT Q1 = floor(S^2 / M), Q2 = floor((S^3 - Q1*S*M) / M) (SDM 35.14)."""
    q1 = s * s // n
    q2 = (s * s * s - q1 * s * n) // n
    return q1, q2


def _bcd_date(d: date) -> int:
    return int(f"{d.year:04d}{d.month:02d}{d.day:02d}", 16)


def sign_enclave(key: rsa.RSAPrivateKey, mrenclave: bytes, *, isv_prod_id: int = 0,
                 isv_svn: int = 0, flags: int = ATTR_MODE64BIT, xfrm: int = DEFAULT_XFRM,
                 attribute_mask: bytes | None = None, misc_select: int = 0,
                 misc_mask: int = 0xFFFFFFFF, vendor: int = 0,
                 isv_family_id: bytes = bytes(16), isv_ext_prod_id: bytes = bytes(16),
                 signed_on: date | None = None) -> bytes:
    """A SIGSTRUCT for ``mrenclave``, signed with the enclave signing key ``key`` (RSA-3072,
    e = 3, as ``sgx_sign`` requires). The default attribute mask pins every flag except
    DEBUG (so one SIGSTRUCT serves the debug and production builds, as the SDK's does)."""
    pub = key.public_key().public_numbers()
    if pub.e != 3 or pub.n.bit_length() != 3072:
        raise PlatformError("enclave signing key: want RSA-3072 with e = 3")
    mask = attribute_mask if attribute_mask is not None else _attributes(
        0xFFFFFFFFFFFFFFFF & ~ATTR_DEBUG, 0xFFFFFFFFFFFFFFFF)
    unsigned = Sigstruct(
        vendor=vendor, date=_bcd_date(signed_on or date.today()), sw_defined=0,
        modulus=pub.n.to_bytes(384, "little"), exponent=3, signature=bytes(384),
        misc_select=misc_select, misc_mask=misc_mask, isv_family_id=isv_family_id,
        attributes=_attributes(flags | ATTR_INIT, xfrm), attribute_mask=mask,
        enclave_hash=mrenclave, isv_ext_prod_id=isv_ext_prod_id, isv_prod_id=isv_prod_id,
        isv_svn=isv_svn)
    s = int.from_bytes(key.sign(unsigned.signed_bytes(), padding.PKCS1v15(), hashes.SHA256()),
                       "big")
    q1, q2 = _q1q2(s, pub.n)
    return replace(unsigned, signature=s.to_bytes(384, "little"),
                   q1=q1.to_bytes(384, "little"), q2=q2.to_bytes(384, "little")).to_bytes()


# -- TARGETINFO, REPORT, KEYREQUEST -----------------------------------------------------------


@dataclass(frozen=True)
class TargetInfo:
    """TARGETINFO (512 bytes): whom an EREPORT is for."""

    measurement: bytes
    attributes: bytes
    misc_select: int
    config_id: bytes = bytes(64)
    config_svn: int = 0

    def to_bytes(self) -> bytes:
        """The 512-byte structure."""
        w = Writer("TargetInfo", TARGETINFO_SIZE)
        w.raw("measurement", 0, self.measurement, 32)
        w.raw("attributes", 32, self.attributes, 16)
        w.uint("config_svn", 50, 2, self.config_svn)
        w.u32("miscselect", 52, self.misc_select)
        w.raw("config_id", 64, self.config_id, 64)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TargetInfo:
        """Parse 512 bytes."""
        r = Reader("TargetInfo", data, size=TARGETINFO_SIZE)
        return cls(r.raw("measurement", 0, 32), r.raw("attributes", 32, 16),
                   r.u32("miscselect", 52), r.raw("config_id", 64, 64), r.u16("config_svn", 50))


@dataclass(frozen=True)
class KeyRequest:
    """KEYREQUEST (512 bytes)."""

    key_name: KeyName
    key_policy: KeyPolicy = KeyPolicy.MRENCLAVE
    isv_svn: int = 0
    cpu_svn: bytes = bytes(16)
    attribute_mask: bytes = _attributes(0xFFFFFFFFFFFFFFFF, 0)
    key_id: bytes = bytes(32)
    misc_mask: int = 0xFFFFFFFF
    config_svn: int = 0

    def to_bytes(self) -> bytes:
        """The 512-byte structure."""
        w = Writer("KeyRequest", KEYREQUEST_SIZE)
        w.uint("keyname", 0, 2, int(self.key_name))
        w.uint("keypolicy", 2, 2, int(self.key_policy))
        w.uint("isvsvn", 4, 2, self.isv_svn)
        w.raw("cpusvn", 8, self.cpu_svn, 16)
        w.raw("attributemask", 24, self.attribute_mask, 16)
        w.raw("keyid", 40, self.key_id, 32)
        w.u32("miscmask", 72, self.misc_mask)
        w.uint("configsvn", 76, 2, self.config_svn)
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyRequest:
        """Parse 512 bytes (reserved bytes must be zero; KEYNAME must be known)."""
        r = Reader("KeyRequest", data, size=KEYREQUEST_SIZE)
        r.zero("reserved", 78, KEYREQUEST_SIZE - 78)
        name = r.u16("keyname", 0)
        if name not in set(KeyName):
            raise FormatError("KeyRequest", "keyname", offset=0, got=name, want="0..4")
        return cls(KeyName(name), KeyPolicy(r.u16("keypolicy", 2) & 0x3F), r.u16("isvsvn", 4),
                   r.raw("cpusvn", 8, 16), r.raw("attributemask", 24, 16),
                   r.raw("keyid", 40, 32), r.u32("miscmask", 72), r.u16("configsvn", 76))


# -- the enclave --------------------------------------------------------------------------------


@dataclass
class EmulatedEnclave:
    """An initialized enclave: its identity (fixed at EINIT) and the leaves it may call."""

    machine: InsecureEmulatedSgxMachine
    mr_enclave: bytes
    mr_signer: bytes
    attributes: bytes
    misc_select: int
    isv_prod_id: int
    isv_svn: int
    config_id: bytes = bytes(64)
    config_svn: int = 0
    isv_family_id: bytes = bytes(16)
    isv_ext_prod_id: bytes = bytes(16)

    @property
    def debug(self) -> bool:
        """ATTRIBUTES.DEBUG."""
        return bool(self.attributes[0] & ATTR_DEBUG)

    def body(self, report_data: bytes) -> SgxReportBody:
        """The report body EREPORT would fill in for this enclave."""
        return SgxReportBody(
            cpu_svn=self.machine.cpu.cpusvn, misc_select=self.misc_select,
            isv_ext_prod_id=self.isv_ext_prod_id, attributes=self.attributes,
            mr_enclave=self.mr_enclave, mr_signer=self.mr_signer, config_id=self.config_id,
            isv_prod_id=self.isv_prod_id, isv_svn=self.isv_svn, config_svn=self.config_svn,
            isv_family_id=self.isv_family_id, report_data=report_data)

    def target_info(self) -> bytes:
        """This enclave's TARGETINFO (what another enclave's EREPORT needs)."""
        return TargetInfo(self.mr_enclave, self.attributes, self.misc_select, self.config_id,
                          self.config_svn).to_bytes()

    def ereport(self, target_info: bytes, report_data: bytes) -> bytes:
        """EREPORT: a 432-byte REPORT about this enclave, MAC'd for ``target_info``."""
        if len(report_data) != 64:
            raise PlatformError(f"REPORTDATA: want 64 bytes, got {len(report_data)}")
        target = TargetInfo.from_bytes(target_info)
        body = self.body(report_data).to_bytes()
        key_id = self.machine.key_id
        mac = _cmac(self.machine.report_key(target, key_id), body)
        return body + key_id + mac

    def verify_report(self, report: bytes) -> SgxReportBody:
        """Local attestation, target side: EGETKEY(REPORT) and check the MAC.

        Raises :class:`~veritee.errors.PlatformError` for a report made for another target,
        on another CPU or boot, or altered after EREPORT.
        """
        if len(report) != REPORT_SIZE:
            raise PlatformError(f"REPORT: want {REPORT_SIZE} bytes, got {len(report)}")
        body, key_id, mac = report[:384], report[384:416], report[416:432]
        key = self.egetkey(KeyRequest(KeyName.REPORT, key_id=key_id))
        if not hmac.compare_digest(_cmac(key, body), mac):
            raise PlatformError("REPORT MAC does not verify: not for this enclave, not from "
                                "this CPU, or altered")
        return SgxReportBody.from_bytes(body)

    def egetkey(self, request: KeyRequest | bytes) -> bytes:
        """EGETKEY: a 128-bit key for ``request`` (see the module docstring for the rules)."""
        req = request if isinstance(request, KeyRequest) else KeyRequest.from_bytes(request)
        return self.machine.derive_key(self, req)

    def seal_key_request(self, policy: KeyPolicy = KeyPolicy.MRENCLAVE, *,
                         isv_svn: int | None = None, cpu_svn: bytes | None = None,
                         key_id: bytes | None = None) -> KeyRequest:
        """A SEAL KEYREQUEST at this enclave's SVNs (or lower ones) with a fresh KEYID."""
        return KeyRequest(KeyName.SEAL, policy,
                          isv_svn=self.isv_svn if isv_svn is None else isv_svn,
                          cpu_svn=self.machine.cpu.cpusvn if cpu_svn is None else cpu_svn,
                          key_id=os.urandom(32) if key_id is None else key_id,
                          config_svn=self.config_svn,
                          attribute_mask=_attributes(0xFF0000000000000B, 0))

    def quote(self, report_data: bytes, *, version: int = 3) -> bytes:
        """An SGX quote: EREPORT for the QE, which checks it and signs (v3, or v5)."""
        qe = self.machine.quoting_enclave
        return qe.quote_report(self.ereport(qe.target_info(), report_data), version=version)


    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]:
        """Evidence for ``report_data``: a v3 quote and an empty certificate table."""
        if vmpl is not None:
            raise PlatformError("an enclave has no VMPL")
        return self.quote(report_data), b""


class _QeEnclave:
    """The Quoting Enclave as a local-attestation target (checks the MAC, then quotes)."""

    def __init__(self, machine: InsecureEmulatedSgxMachine) -> None:
        self.machine = machine
        ident = machine.cpu.qe.qe_report()
        self.enclave = EmulatedEnclave(machine, mr_enclave=ident.mr_enclave,
                                       mr_signer=ident.mr_signer, attributes=ident.attributes,
                                       misc_select=ident.misc_select,
                                       isv_prod_id=ident.isv_prod_id, isv_svn=ident.isv_svn)

    def target_info(self) -> bytes:
        return self.enclave.target_info()

    def quote_report(self, report: bytes, *, version: int = 3) -> bytes:
        body = self.enclave.verify_report(report)
        return self.machine.cpu.qe.quote(body, version=version)


class InsecureEmulatedSgxMachine:
    """An emulated SGX-capable CPU: enclaves, report/seal keys, the QE."""

    def __init__(self, vendor: EmulatedIntelVendor, *, cpu: EmulatedIntelCpu | None = None,
                 owner_epoch: bytes | None = None) -> None:
        self.vendor = vendor
        self.cpu = cpu or EmulatedIntelCpu(vendor)
        self.owner_epoch = owner_epoch if owner_epoch is not None else bytes(16)
        self.key_id = os.urandom(32)  # CR_REPORT_KEYID: new at every power cycle
        self.quoting_enclave = _QeEnclave(self)

    def reboot(self) -> None:
        """A power cycle: the report KEYID changes, so old REPORTs no longer verify."""
        self.key_id = os.urandom(32)

    def build(self, *, size: int = 1 << 20, debug: bool = False, flags: int = ATTR_MODE64BIT,
              **kw: object) -> EnclaveBuilder:
        """ECREATE an enclave of ``size`` bytes."""
        return EnclaveBuilder(self, size=size, flags=flags | (ATTR_DEBUG if debug else 0),
                              **kw)  # type: ignore[arg-type]

    def load(self, code: bytes, signing_key: rsa.RSAPrivateKey, *, isv_prod_id: int = 0,
             isv_svn: int = 0, debug: bool = False, size: int = 1 << 20) -> EmulatedEnclave:
        """Build an enclave as a loader does (one TCS page, ``code`` as RX pages, one RW data
        page), sign it with ``signing_key`` and EINIT it."""
        b = self.build(size=size, debug=debug)
        b.add_pages(0, _tcs_page(), SecInfo.PT_TCS)
        b.add_pages(PAGE_SIZE, code, SecInfo.PT_REG | SecInfo.R | SecInfo.X)
        data_at = PAGE_SIZE + -(-max(len(code), 1) // PAGE_SIZE) * PAGE_SIZE
        b.add_pages(data_at, bytes(PAGE_SIZE), SecInfo.PT_REG | SecInfo.R | SecInfo.W,
                    measure=False)
        sig = sign_enclave(signing_key, b.mrenclave, isv_prod_id=isv_prod_id, isv_svn=isv_svn)
        return b.einit(sig)

    def report_key(self, target: TargetInfo, key_id: bytes) -> bytes:
        """The report key of ``target`` (EGETKEY(REPORT) inside it yields the same)."""
        data = (b"REPORT" + target.measurement + target.attributes
                + target.misc_select.to_bytes(4, "little") + target.config_id
                + target.config_svn.to_bytes(2, "little") + self.owner_epoch + key_id)
        return _cmac(self.cpu.derive(b"SGX report key " + self.cpu.cpusvn, 16), data)

    def derive_key(self, enclave: EmulatedEnclave, req: KeyRequest) -> bytes:
        """EGETKEY's checks and derivation for ``enclave``."""
        if req.key_name is KeyName.REPORT:
            target = TargetInfo(enclave.mr_enclave, enclave.attributes, enclave.misc_select,
                                enclave.config_id, enclave.config_svn)
            return self.report_key(target, req.key_id)
        if req.key_name not in (KeyName.SEAL, KeyName.PROVISION, KeyName.PROVISION_SEAL):
            raise PlatformError(f"EGETKEY: {req.key_name.name} key not available "
                                "(launch control is not modelled)")
        if req.key_name is not KeyName.SEAL and not enclave.attributes[0] & ATTR_PROVISIONKEY:
            raise PlatformError("EGETKEY: SGX_INVALID_ATTRIBUTE (PROVISIONKEY not set)")
        if req.isv_svn > enclave.isv_svn:
            raise PlatformError("EGETKEY: SGX_INVALID_ISVSVN (above the enclave's ISVSVN)")
        if req.config_svn > enclave.config_svn:
            raise PlatformError("EGETKEY: SGX_INVALID_ISVSVN (above the enclave's CONFIGSVN)")
        if any(r > c for r, c in zip(req.cpu_svn, self.cpu.cpusvn, strict=True)):
            raise PlatformError("EGETKEY: SGX_INVALID_CPUSVN (above the CPU's CPUSVN)")
        pol = req.key_policy
        # INIT and DEBUG always take part: a debug enclave never gets a production key.
        mask = bytes([req.attribute_mask[0] | ATTR_INIT | ATTR_DEBUG]) + req.attribute_mask[1:]
        fields = [
            int(req.key_name).to_bytes(2, "little"), int(pol).to_bytes(2, "little"),
            enclave.mr_enclave if pol & KeyPolicy.MRENCLAVE else bytes(32),
            enclave.mr_signer if pol & KeyPolicy.MRSIGNER else bytes(32),
            (0 if pol & KeyPolicy.NOISVPRODID else enclave.isv_prod_id).to_bytes(2, "little"),
            req.isv_svn.to_bytes(2, "little"), req.config_svn.to_bytes(2, "little"),
            bytes(a & m for a, m in zip(enclave.attributes, mask, strict=True)),
            (enclave.misc_select & req.misc_mask).to_bytes(4, "little"),
            enclave.config_id if pol & KeyPolicy.CONFIGID else bytes(64),
            enclave.isv_family_id if pol & KeyPolicy.ISVFAMILYID else bytes(16),
            enclave.isv_ext_prod_id if pol & KeyPolicy.ISVEXTPRODID else bytes(16),
            self.owner_epoch, req.key_id]
        # The base key depends on the *requested* CPUSVN: an older TCB's key stays reachable
        # after a microcode update (the check above keeps newer ones out of reach).
        base = self.cpu.derive(b"SGX seal key base " + req.cpu_svn, 16)
        return _cmac(base, b"".join(fields))


def _tcs_page() -> bytes:
    """A TCS page: OSSA at 0x1000 past the TCS, one SSA frame, entry at 0x1000 (SDM 35.8)."""
    w = Writer("TCS", PAGE_SIZE)
    w.u64("ossa", 16, 0x2000)
    w.u32("nssa", 28, 1)
    w.u64("oentry", 32, 0x1000)
    return w.getvalue()


# -- sealing (the SGX SDK's sealed-data layout: KEYREQUEST in the clear, AES-GCM) ---------------

_SEAL_MAGIC = b"VTSGXSL1"


def sgx_seal(enclave: EmulatedEnclave, data: bytes, policy: KeyPolicy = KeyPolicy.MRENCLAVE,
             *, aad: bytes = b"") -> bytes:
    """Seal ``data`` to ``enclave`` under ``policy`` (MRENCLAVE or MRSIGNER).

    Layout (like the SDK's ``sgx_sealed_data_t``): magic, the 512-byte KEYREQUEST (in the
    clear: the unsealer re-derives the key from it), a 12-byte nonce, AES-128-GCM of ``data``
    with the magic and KEYREQUEST as associated data. The KEYREQUEST records this enclave's
    ISVSVN and the CPU's CPUSVN, so an enclave with a higher ISVSVN on a CPU with a higher
    CPUSVN can still unseal, and a lower one cannot.
    """
    req = enclave.seal_key_request(policy)
    key = enclave.egetkey(req)
    nonce = os.urandom(12)
    head = _SEAL_MAGIC + req.to_bytes()
    return head + nonce + AESGCM(key).encrypt(nonce, data, head + aad)


def sgx_unseal(enclave: EmulatedEnclave, blob: bytes, *,
               policy: KeyPolicy = KeyPolicy.MRENCLAVE, min_isv_svn: int | None = None,
               min_cpu_svn: bytes | None = None, aad: bytes = b"") -> bytes:
    """Open a :func:`sgx_seal` blob as the *reader* expects it; every failure is the same
    :class:`SealingError`.

    The KEYREQUEST in the blob is not trusted (issue 16, finding 1): it must name exactly
    ``policy`` with the standard masks, its ISVSVN must be at least ``min_isv_svn`` (default:
    this enclave's own ISVSVN; pass a lower floor to read an older release's data) and its
    CPUSVN at least ``min_cpu_svn`` component-wise when given. Otherwise a weaker writer (an
    older release of the same signer, or any enclave of the signer for an MRENCLAVE reader)
    could forge data the reader accepts as its own.
    """
    floor = enclave.isv_svn if min_isv_svn is None else min_isv_svn
    try:
        if blob[:8] != _SEAL_MAGIC or len(blob) < 8 + KEYREQUEST_SIZE + 12 + 16:
            raise ValueError
        head = blob[:8 + KEYREQUEST_SIZE]
        req = KeyRequest.from_bytes(head[8:])
        canonical = enclave.seal_key_request(policy, isv_svn=req.isv_svn, cpu_svn=req.cpu_svn,
                                             key_id=req.key_id)
        if req != canonical or req.isv_svn < floor:
            raise ValueError
        if min_cpu_svn is not None and any(
                r < m for r, m in zip(req.cpu_svn, min_cpu_svn, strict=True)):
            raise ValueError
        key = enclave.egetkey(req)
        nonce = blob[len(head):len(head) + 12]
        return AESGCM(key).decrypt(nonce, blob[len(head) + 12:], head + aad)
    except (ValueError, PlatformError, InvalidTag) as exc:  # one message: no oracle
        raise SealingError("sealed data cannot be opened") from exc
