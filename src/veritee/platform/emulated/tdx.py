"""An emulated Intel TDX machine: a TDX module that builds TDs, TDREPORTs and TD quotes.

INSECURE BY NAME: the "TDX module" is Python in the host's memory. What is faithful is the
arithmetic and the byte formats:

* **MRTD** (Intel TDX Module ABI spec, TDH.MEM.PAGE.ADD and TDH.MR.EXTEND leaves): MRTD is one
  SHA-384 over 128-byte extension buffers, finalised by TDH.MR.FINALIZE. TDH.MEM.PAGE.ADD
  hashes "MEM.PAGE.ADD" at bytes 0-11 and the page's GPA (u64 LE) at bytes 16-23, zero
  elsewhere; TDH.MR.EXTEND hashes "MR.EXTEND" at 0-8 and the 256-byte chunk's GPA at 16-23,
  then the chunk itself as two more 128-byte buffers. :meth:`TdBuilder.add_region` issues
  them page by page as KVM's ``KVM_TDX_INIT_MEM_REGION`` with ``KVM_TDX_MEASURE_MEMORY_REGION``
  does (PAGE.ADD, then 16 MR.EXTENDs of that page).
* **RTMRs** (TDG.MR.RTMR.EXTEND): RTMR[i] = SHA-384(RTMR[i] || digest48), from zero.
* **TDREPORT_STRUCT** (TDX module ABI, 1024 bytes): REPORTMACSTRUCT (256) @0 with
  REPORTTYPE {0x81, 0, version, 0} @0, CPUSVN @16, SHA-384(TEE_TCB_INFO) @32,
  SHA-384(TDINFO) @80, REPORTDATA @128, MAC @224; TEE_TCB_INFO (239) @256 with VALID @0,
  TEE_TCB_SVN @8, MRSEAM @24, MRSIGNERSEAM @72, ATTRIBUTES @120, TEE_TCB_SVN2 @128; TDINFO
  (512) @512 with ATTRIBUTES @0, XFAM @8, MRTD @16, MRCONFIGID @64, MROWNER @112,
  MROWNERCONFIG @160, RTMR0-3 @208, SERVTD_HASH @400. The MAC is an HMAC-SHA-256 under a key
  only the emulated CPU holds (the real CPU's MAC key and algorithm are not public); the TD QE
  checks it as EVERIFYREPORT2 would, so only a TD on the same CPU gets a quote.
* **TD quote**: the TD QE (``platform.emulated.intel.QuotingEnclave``) turns a verified
  TDREPORT into a v4 (TD 1.0 body) or v5 (TD 1.0 or TD 1.5 body) quote.

**Keys for a TD.** TDX 1.x has no hardware sealing key (no EGETKEY for TDs). A real TD gets
persistent keys from outside its memory, after attestation: a key broker that releases them
to a quote with the right MRTD/RTMRs (``veritee kbs get``), or a vTPM in a service TD that
seals to its TD's measurements (TDX 1.5: MRSERVICETD binds the service TD). The emulation
models the second: :class:`TdKeyService` is a service TD on the same CPU that checks the
caller's TDREPORT (as EVERIFYREPORT2) and derives a key from the identity fields the policy
selects. There is no SVN in a TD's identity, so there is no "SVN up, not down" for TDs: an
``mrowner`` key survives a firmware change, an ``mrtd`` key does not.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field, replace
from datetime import datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veritee._wire import Reader, Writer
from veritee.errors import FormatError, PlatformError, SealingError
from veritee.formats.intel import TdReportBody
from veritee.platform.emulated.intel import (
    MR_SIGNER_SEAM,
    TDX_MODULE_MAJOR,
    EmulatedIntelCpu,
    EmulatedIntelVendor,
)

__all__ = [
    "PAGE_SIZE",
    "TDREPORT_SIZE",
    "TD_ATTR_DEBUG",
    "TD_ATTR_SEPT_VE_DISABLE",
    "EmulatedTd",
    "InsecureEmulatedTdxMachine",
    "TdBuilder",
    "TdKeyService",
    "TdReport",
    "mem_page_add_buffer",
    "mr_extend_buffer",
    "td_seal",
    "td_unseal",
]

PAGE_SIZE = 4096
CHUNK = 256
TDREPORT_SIZE = 1024
TD_ATTR_DEBUG = 1 << 0  # TD ATTRIBUTES.DEBUG (TDX module ABI, ATTRIBUTES table)
TD_ATTR_SEPT_VE_DISABLE = 1 << 28
DEFAULT_XFAM = 0x0618E7  # x87, SSE, AVX, AVX-512 state, PK, AMX: a common QEMU TD's XFAM
_TDX_REPORT_TYPE = 0x81


_OP_BUFFER = struct.Struct("<16sQ104x")  # name @0 (zero padded), GPA u64 @16, zero to 128


def mem_page_add_buffer(gpa: int) -> bytes:
    """The 128-byte buffer TDH.MEM.PAGE.ADD extends MRTD with."""
    return _OP_BUFFER.pack(b"MEM.PAGE.ADD", gpa)


def mr_extend_buffer(gpa: int) -> bytes:
    """The first 128-byte buffer of TDH.MR.EXTEND (the chunk's two buffers follow it)."""
    return _OP_BUFFER.pack(b"MR.EXTEND", gpa)


def _check_gpa(gpa: int, align: int) -> None:
    if gpa % align or not 0 <= gpa < 1 << 52:
        raise PlatformError(f"GPA 0x{gpa:x}: want a {align}-aligned guest physical address")


class TdBuilder:
    """The host VMM driving the TDX module while a TD is built (before TDH.MR.FINALIZE)."""

    def __init__(self, machine: InsecureEmulatedTdxMachine, *, attributes: int,
                 xfam: int, mr_config_id: bytes, mr_owner: bytes,
                 mr_owner_config: bytes) -> None:
        for name, value in (("mr_config_id", mr_config_id), ("mr_owner", mr_owner),
                            ("mr_owner_config", mr_owner_config)):
            if len(value) != 48:
                raise PlatformError(f"{name}: want 48 bytes")
        self.machine = machine
        self.attributes = attributes
        self.xfam = xfam
        self.mr_config_id = mr_config_id
        self.mr_owner = mr_owner
        self.mr_owner_config = mr_owner_config
        self._mrtd = hashlib.sha384()
        self._pages: dict[int, bytearray] = {}
        self._finalized = False

    def page_add(self, gpa: int, page: bytes) -> None:
        """TDH.MEM.PAGE.ADD: copy a 4 KiB page in at ``gpa`` and extend MRTD with its GPA."""
        self._open()
        _check_gpa(gpa, PAGE_SIZE)
        if len(page) != PAGE_SIZE:
            raise PlatformError(f"page at 0x{gpa:x}: want {PAGE_SIZE} bytes")
        if gpa in self._pages:
            raise PlatformError(f"page at 0x{gpa:x} already added")
        self._pages[gpa] = bytearray(page)
        self._mrtd.update(mem_page_add_buffer(gpa))

    def mr_extend(self, gpa: int) -> None:
        """TDH.MR.EXTEND: extend MRTD with the 256-byte chunk at ``gpa`` (already added)."""
        self._open()
        _check_gpa(gpa, CHUNK)
        page = self._pages.get(gpa - gpa % PAGE_SIZE)
        if page is None:
            raise PlatformError(f"chunk at 0x{gpa:x}: its page was not added")
        off = gpa % PAGE_SIZE
        self._mrtd.update(mr_extend_buffer(gpa))
        self._mrtd.update(bytes(page[off:off + CHUNK]))

    def add_region(self, gpa: int, data: bytes, *, measure: bool = True) -> None:
        """Add ``data`` (padded to pages) at ``gpa``; with ``measure``, MR.EXTEND every chunk
        of each page right after adding it (KVM's order)."""
        data = data.ljust(-(-max(len(data), 1) // PAGE_SIZE) * PAGE_SIZE, b"\0")
        update = self._mrtd.update
        for i in range(0, len(data), PAGE_SIZE):
            page = data[i:i + PAGE_SIZE]
            self.page_add(gpa + i, page)
            if measure:  # mr_extend's buffers, inline (the page was just added, aligned)
                view = memoryview(page)
                for c in range(0, PAGE_SIZE, CHUNK):
                    update(_OP_BUFFER.pack(b"MR.EXTEND", gpa + i + c))
                    update(view[c:c + CHUNK])

    def finalize(self) -> EmulatedTd:
        """TDH.MR.FINALIZE: MRTD is fixed and the TD can run."""
        self._open()
        self._finalized = True
        return EmulatedTd(self.machine, mr_td=self._mrtd.digest(), attributes=self.attributes,
                          xfam=self.xfam, mr_config_id=self.mr_config_id,
                          mr_owner=self.mr_owner, mr_owner_config=self.mr_owner_config)

    def _open(self) -> None:
        if self._finalized:
            raise PlatformError("TD already finalized (TDH.MR.FINALIZE)")


@dataclass(frozen=True)
class TdReport:
    """TDREPORT_STRUCT (1024 bytes; see the module docstring for the offsets)."""

    report_type_version: int
    cpu_svn: bytes
    report_data: bytes
    mac: bytes
    tee_tcb_info: bytes  # 239 bytes
    td_info: bytes  # 512 bytes
    tee_tcb_info_hash: bytes
    td_info_hash: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> TdReport:
        """Parse exactly 1024 bytes (report type must be TDX)."""
        r = Reader("TdReport", data, size=TDREPORT_SIZE)
        if r.u8("report_type", 0) != _TDX_REPORT_TYPE:
            raise FormatError("TdReport", "report_type", offset=0, got=r.u8("report_type", 0),
                              want="0x81 (TDX)")
        return cls(report_type_version=r.u8("version", 2), cpu_svn=r.raw("cpu_svn", 16, 16),
                   tee_tcb_info_hash=r.raw("tee_tcb_info_hash", 32, 48),
                   td_info_hash=r.raw("tee_info_hash", 80, 48),
                   report_data=r.raw("report_data", 128, 64), mac=r.raw("mac", 224, 32),
                   tee_tcb_info=r.raw("tee_tcb_info", 256, 239),
                   td_info=r.raw("td_info", 512, 512))

    def to_bytes(self) -> bytes:
        """Inverse of :meth:`from_bytes`."""
        w = Writer("TdReport", TDREPORT_SIZE)
        w.raw("mac_struct", 0, self.mac_struct(), 224)
        w.raw("mac", 224, self.mac, 32)
        w.raw("tee_tcb_info", 256, self.tee_tcb_info, 239)
        w.raw("td_info", 512, self.td_info, 512)
        return w.getvalue()

    def mac_struct(self) -> bytes:
        """REPORTMACSTRUCT without its MAC: what the MAC covers."""
        w = Writer("ReportMacStruct", 224)
        w.raw("report_type", 0, bytes([_TDX_REPORT_TYPE, 0, self.report_type_version, 0]))
        w.raw("cpu_svn", 16, self.cpu_svn, 16)
        w.raw("tee_tcb_info_hash", 32, self.tee_tcb_info_hash, 48)
        w.raw("tee_info_hash", 80, self.td_info_hash, 48)
        w.raw("report_data", 128, self.report_data, 64)
        return w.getvalue()

    def body(self) -> TdReportBody:
        """The TD quote body carrying this report's fields (TD 1.5 when TEE_TCB_SVN2 or
        SERVTD_HASH is set)."""
        tcb, td = self.tee_tcb_info, self.td_info
        svn2, servtd = tcb[128:144], td[400:448]
        td15 = any(svn2) or any(servtd)
        rtmrs = tuple(td[208 + 48 * i:256 + 48 * i] for i in range(4))
        return TdReportBody(
            tee_tcb_svn=tcb[8:24], mr_seam=tcb[24:72], mr_signer_seam=tcb[72:120],
            seam_attributes=tcb[120:128], td_attributes=td[0:8], xfam=td[8:16],
            mr_td=td[16:64], mr_config_id=td[64:112], mr_owner=td[112:160],
            mr_owner_config=td[160:208], rtmrs=(rtmrs[0], rtmrs[1], rtmrs[2], rtmrs[3]),
            report_data=self.report_data, tee_tcb_svn2=svn2 if td15 else None,
            mr_servicetd=servtd if td15 else None)


@dataclass
class EmulatedTd:
    """A running TD: its launch identity (fixed at TDH.MR.FINALIZE) and its RTMRs."""

    machine: InsecureEmulatedTdxMachine
    mr_td: bytes
    attributes: int
    xfam: int
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmrs: list[bytes] = field(default_factory=lambda: [bytes(48)] * 4)
    servtd_hash: bytes = bytes(48)

    @property
    def debug(self) -> bool:
        """ATTRIBUTES.DEBUG: the host can read and write this TD's memory."""
        return bool(self.attributes & TD_ATTR_DEBUG)

    def rtmr_extend(self, index: int, digest: bytes) -> bytes:
        """TDG.MR.RTMR.EXTEND: RTMR[index] = SHA-384(RTMR[index] || digest); return it."""
        if not 0 <= index <= 3 or len(digest) != 48:
            raise PlatformError("RTMR extend: want index 0..3 and a 48-byte digest")
        self.rtmrs[index] = hashlib.sha384(self.rtmrs[index] + digest).digest()
        return self.rtmrs[index]

    def measure_event(self, index: int, event: bytes) -> bytes:
        """Extend RTMR[index] with SHA-384(event), as a CC event log entry would."""
        return self.rtmr_extend(index, hashlib.sha384(event).digest())

    def td_info(self) -> bytes:
        """TDINFO_STRUCT (512 bytes)."""
        w = Writer("TdInfo", 512)
        w.u64("attributes", 0, self.attributes)
        w.u64("xfam", 8, self.xfam)
        w.raw("mrtd", 16, self.mr_td, 48)
        w.raw("mrconfigid", 64, self.mr_config_id, 48)
        w.raw("mrowner", 112, self.mr_owner, 48)
        w.raw("mrownerconfig", 160, self.mr_owner_config, 48)
        for i, rtmr in enumerate(self.rtmrs):
            w.raw(f"rtmr{i}", 208 + 48 * i, rtmr, 48)
        w.raw("servtd_hash", 400, self.servtd_hash, 48)
        return w.getvalue()

    def tdreport(self, report_data: bytes) -> bytes:
        """TDG.MR.REPORT: the 1024-byte TDREPORT for 64 bytes of REPORTDATA."""
        if len(report_data) != 64:
            raise PlatformError(f"REPORTDATA: want 64 bytes, got {len(report_data)}")
        return self.machine.report(self, report_data)

    def quote(self, report_data: bytes, *, version: int = 4) -> bytes:
        """A TD quote (v4, or v5) for ``report_data``, from the TD QE of this machine."""
        return self.machine.quote(self.tdreport(report_data), version=version)

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]:
        """Evidence for ``report_data`` as the attester client wants it: a v4 quote (it
        carries its own PCK chain, so the certificate table is empty). ``vmpl`` must be
        ``None``: TDX has no VMPLs."""
        if vmpl is not None:
            raise PlatformError("a TD has no VMPL")
        return self.quote(report_data), b""

    def derived_key(self, policy: str = "mrtd", context: bytes = b"") -> bytes:
        """A 32-byte key from the machine's :class:`TdKeyService` (see the module docstring):
        ``mrtd`` (this firmware and TD attributes), ``mrtd+rtmr`` (also RTMR0-2: the boot
        chain) or ``mrowner`` (MROWNER and MRCONFIGID: survives firmware changes)."""
        return self.machine.key_service.derive(self.tdreport(bytes(64)), policy, context)


class TdKeyService:
    """A key-derivation service TD on the same CPU (the vTPM-in-a-service-TD pattern).

    It accepts only a TDREPORT whose MAC the CPU verifies (EVERIFYREPORT2), so a caller
    cannot claim another TD's identity, and derives HKDF-SHA-256 over its own secret and the
    identity fields ``policy`` selects.
    """

    POLICIES = ("mrtd", "mrtd+rtmr", "mrowner")

    def __init__(self, machine: InsecureEmulatedTdxMachine) -> None:
        self.machine = machine
        self._secret = machine.cpu.derive(b"TD key service TD secret")

    def derive(self, tdreport: bytes, policy: str, context: bytes = b"") -> bytes:
        """The key for the TD that produced ``tdreport``."""
        if policy not in self.POLICIES:
            raise PlatformError(f"TD key policy {policy!r}: want one of {self.POLICIES}")
        report = self.machine.verify_report(tdreport)
        td = report.td_info
        fields = [td[0:8]]  # ATTRIBUTES: a debug TD never gets a production TD's key
        if policy.startswith("mrtd"):
            fields.append(td[16:64])
        if policy == "mrtd+rtmr":
            fields.append(td[208:352])  # RTMR0..2
        if policy == "mrowner":
            fields += [td[112:160], td[64:112]]
        info = b"veritee TD key|" + policy.encode() + b"|" + b"".join(fields) + b"|" + context
        return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(self._secret)


class InsecureEmulatedTdxMachine:
    """An emulated TDX host: one CPU (PCK, TD QE) and a TDX module of a given minor SVN."""

    def __init__(self, vendor: EmulatedIntelVendor, *, cpu: EmulatedIntelCpu | None = None,
                 module_svn: int = 5, now: datetime | None = None) -> None:
        self.vendor = vendor
        self.cpu = cpu or EmulatedIntelCpu(vendor, now=now)
        self.module_svn = module_svn
        self.key_service = TdKeyService(self)

    @property
    def mr_seam(self) -> bytes:
        """MRSEAM: the measurement of the loaded TDX module (changes with its version)."""
        return hashlib.sha384(b"emulated TDX module 1.5 svn %d" % self.module_svn).digest()

    @property
    def tee_tcb_svn(self) -> bytes:
        """TEE_TCB_SVN: [0] module minor SVN, [1] module major version (``TDX_03``)."""
        return bytes([self.module_svn, TDX_MODULE_MAJOR]) + bytes(14)

    def update_module(self, svn: int) -> None:
        """Load another TDX module release (changes MRSEAM and TEE_TCB_SVN[0])."""
        self.module_svn = svn

    def build(self, *, debug: bool = False, attributes: int | None = None,
              xfam: int = DEFAULT_XFAM, mr_config_id: bytes = bytes(48),
              mr_owner: bytes = bytes(48), mr_owner_config: bytes = bytes(48)) -> TdBuilder:
        """TDH.MNG.CREATE/INIT: start building a TD."""
        attrs = attributes if attributes is not None else TD_ATTR_SEPT_VE_DISABLE
        if debug:
            attrs |= TD_ATTR_DEBUG
        return TdBuilder(self, attributes=attrs, xfam=xfam, mr_config_id=mr_config_id,
                         mr_owner=mr_owner, mr_owner_config=mr_owner_config)

    def launch(self, firmware: bytes, *, firmware_gpa: int | None = None,
               hob_pages: int = 2, **build: object) -> EmulatedTd:
        """Build a TD as QEMU does with a TDVF: ``firmware`` measured page by page at the top
        of 4 GiB, then ``hob_pages`` TD HOB pages added at 8 MiB without MR.EXTEND."""
        b = self.build(**build)  # type: ignore[arg-type]
        size = -(-max(len(firmware), 1) // PAGE_SIZE) * PAGE_SIZE
        gpa = firmware_gpa if firmware_gpa is not None else (1 << 32) - size
        b.add_region(gpa, firmware, measure=True)
        if hob_pages:
            b.add_region(0x800000, bytes(hob_pages * PAGE_SIZE), measure=False)
        return b.finalize()

    def _tee_tcb_info(self) -> bytes:
        w = Writer("TeeTcbInfo", 239)
        # VALID: TEE_TCB_SVN, MRSEAM, MRSIGNERSEAM, ATTRIBUTES are valid (bits 0-3 of the
        # field-validity bitmap); the rest stays zero.
        w.u64("valid", 0, 0x0F)
        w.raw("tee_tcb_svn", 8, self.tee_tcb_svn, 16)
        w.raw("mrseam", 24, self.mr_seam, 48)
        w.raw("mrsignerseam", 72, MR_SIGNER_SEAM, 48)
        w.u64("attributes", 120, 0)
        return w.getvalue()

    def _mac_key(self) -> bytes:
        return self.cpu.derive(b"TDREPORT MAC key")

    def report(self, td: EmulatedTd, report_data: bytes) -> bytes:
        """The SEAM side of TDG.MR.REPORT."""
        tcb, info = self._tee_tcb_info(), td.td_info()
        r = TdReport(report_type_version=1 if any(td.servtd_hash) else 0,
                     cpu_svn=self.cpu.cpusvn, report_data=report_data, mac=bytes(32),
                     tee_tcb_info=tcb, td_info=info,
                     tee_tcb_info_hash=hashlib.sha384(tcb).digest(),
                     td_info_hash=hashlib.sha384(info).digest())
        mac = hmac.new(self._mac_key(), r.mac_struct(), hashlib.sha256).digest()
        return replace(r, mac=mac).to_bytes()

    def verify_report(self, tdreport: bytes) -> TdReport:
        """EVERIFYREPORT2: the MAC and both hashes must check on this CPU."""
        r = TdReport.from_bytes(tdreport)
        want = hmac.new(self._mac_key(), r.mac_struct(), hashlib.sha256).digest()
        if not hmac.compare_digest(want, r.mac):
            raise PlatformError("TDREPORT MAC does not verify on this CPU")
        if (hashlib.sha384(r.tee_tcb_info).digest() != r.tee_tcb_info_hash
                or hashlib.sha384(r.td_info).digest() != r.td_info_hash):
            raise PlatformError("TDREPORT TEE_TCB_INFO/TDINFO do not match their hashes")
        return r

    def quote(self, tdreport: bytes, *, version: int = 4) -> bytes:
        """The TD QE: verify the TDREPORT locally, then sign a quote of ``version``."""
        return self.cpu.td_qe.quote(self.verify_report(tdreport).body(), version=version)



_TD_SEAL_MAGIC = b"VTTDXSL1"


def td_seal(td: EmulatedTd, data: bytes, policy: str = "mrtd", *, aad: bytes = b"") -> bytes:
    """Seal ``data`` with a key from the key-service TD (see the module docstring).

    Layout: magic, the policy name (u8 length, ASCII), a 12-byte nonce, AES-256-GCM with the
    magic and policy as associated data. The key is derived for ``policy`` over this TD's
    identity, so only a TD matching it on the same CPU gets it again.
    """
    if policy not in TdKeyService.POLICIES:
        raise PlatformError(f"TD seal policy {policy!r}: want one of {TdKeyService.POLICIES}")
    head = _TD_SEAL_MAGIC + bytes([len(policy)]) + policy.encode()
    nonce = os.urandom(12)
    key = td.derived_key(policy, b"veritee td_seal")
    return head + nonce + AESGCM(key).encrypt(nonce, data, head + aad)


def td_unseal(td: EmulatedTd, blob: bytes, *, policy: str = "mrtd", aad: bytes = b"") -> bytes:
    """Open a :func:`td_seal` blob as the reader expects it: the blob must name exactly
    ``policy`` (a header naming a weaker one is refused, not followed). Every failure is the
    same :class:`SealingError`."""
    try:
        head = _TD_SEAL_MAGIC + bytes([len(policy)]) + policy.encode()
        if not blob.startswith(head) or len(blob) < len(head) + 12 + 16:
            raise ValueError
        key = td.derived_key(policy, b"veritee td_seal")
        nonce = blob[len(head):len(head) + 12]
        return AESGCM(key).decrypt(nonce, blob[len(head) + 12:], head + aad)
    except (ValueError, PlatformError, InvalidTag) as exc:  # one message: no oracle
        raise SealingError("sealed data cannot be opened") from exc
