"""A TPM 2.0 platform: evidence, sealing, counters and randomness from a real TPM implementation.

:class:`TpmPlatform` drives any TPM 2.0 that tpm2-tss reaches through a TCTI (``/dev/tpmrm0``
with :meth:`TpmPlatform.device`, or a software TPM); :class:`InsecureSwtpmPlatform` starts and
stops Debian's ``swtpm`` (libtpms, the TCG reference code) on a private Unix socket, with an EK
certificate from a private ``swtpm_localca``. Every TPM command goes through tpm2-pytss (the
tpm2-software project's Python binding of the ESAPI), none is hand-built here.

What a TPM gives the four pillars:

* **Attestation**: an attestation key (AK) - a restricted ECC P-256 signing key, the primary of
  the endorsement hierarchy for a fixed template, so the same AK comes back after every restart
  (TPM 2.0 Part 1, "Primary Keys": derived from the hierarchy seed and the template).
  The verifier ties it to the EK by credential activation
  (:mod:`veritee.platform._swtpm_credential`); TPM2_Quote over chosen PCRs with the verifier's
  nonce as qualifyingData; a measured boot written as a TCG crypto-agile event log (PC Client
  PFP 10.2.2, 10.4.5.1) whose replay gives the PCRs.
* **Sealing**: TPM2_Create of a sealed data object (KEYEDHASH, fixedTPM|fixedParent, no
  userWithAuth) whose authPolicy is a PolicyPCR digest; TPM2_Unseal only in a policy session
  in which TPM2_PolicyPCR succeeded, i.e. while the PCRs hold the sealed values. The object
  holds a 256-bit key; the data is AES-256-GCM under it, so data of any size can be sealed.
* **Counters**: NV indices of type TPM_NT_COUNTER (Part 2, 13.2 TPMA_NV): the TPM itself only
  ever increments them, which is what rollback protection needs. One veritee counter is a
  pair of them (sealing's RESERVED and COMMITTED halves), so each step is one increment.
* **Randomness**: TPM2_GetRandom.

What it does not protect: swtpm is a process of the same user, its state directory holds the
TPM's seeds in a file, and its CA key sits next to it. It runs the TPM's rules (policy
sessions, restricted keys, NV semantics) faithfully, and its evidence is in the real byte
formats, so the verifier's code is the one for hardware TPMs; only the CA root differs, and it
is trusted only when passed explicitly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
import time
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import FormatError, PlatformError, SealingError, VerificationError
from veritee.formats.eventlog import SPEC_ID_SIGNATURE, EventType
from veritee.formats.tpm import (
    HashAlg,
    ObjectAttr,
    PcrSelection,
    TpmtPublic,
    TpmtSignature,
    parse_tpm2b_public,
)
from veritee.platform._swtpm import SwtpmLayout, SwtpmProcess, manufacture, missing_tools
from veritee.platform._swtpm_credential import make_credential
from veritee.trust.tpm_ek import CertificateInput, VerifiedEkChain, verify_ek_chain

__all__ = [
    "DEFAULT_QUOTE_PCRS",
    "EK_CERT_NV_INDEX",
    "EK_HANDLE",
    "FIRMWARE_LOG",
    "BootEvent",
    "InsecureSwtpmPlatform",
    "RegisteredAk",
    "TpmPlatform",
    "TpmQuote",
    "default_boot_chain",
    "default_swtpm_state_dir",
    "encode_event_log",
    "encode_tpm2tools_pcrs",
    "policy_pcr_digest",
    "register_ak",
    "swtpm_unavailable_reason",
]

EK_HANDLE = 0x81010001
"""The RSA-2048 EK's persistent handle (TCG TPM v2.0 Provisioning Guidance)."""
EK_CERT_NV_INDEX = 0x01C00002
"""NV index of the RSA-2048 EK certificate (TCG EK Credential Profile 2.0, low range)."""
FIRMWARE_LOG = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
"""Where Linux exposes the firmware's event log of a hardware TPM."""
DEFAULT_QUOTE_PCRS: Mapping[HashAlg, tuple[int, ...]] = {HashAlg.SHA256: tuple(range(10))}
"""Firmware PCRs 0-7 and the boot loader's 8-9, SHA-256 bank."""

_TPM_CC_POLICY_PCR = 0x0000017F  # Part 2, Table 12 (TPM_CC_PolicyPCR)
_EV_NO_ACTION = 0x00000003
_COUNTER_TAG = b"V2"  # a pair of NV counters (b"VTPM" was one: refused, see _decode)
_HALF_MAX = (1 << 32) - 1  # sealing packs two 32-bit halves into one counter value
_COUNTER_RANGE = (0x01500000, 0x015FFFFF)  # owner NV range (TCG Handles registry 2.2)
_SEAL_MAGIC = b"VTPMSEAL"
_MAX_RANDOM = 32  # TPM2_GetRandom returns at most the largest digest; ask for 32 at a time
_EFI_GLOBAL_VARIABLE = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")


def default_swtpm_state_dir() -> Path:
    """Where a command keeps its software TPM unless told otherwise:
    ``$VERITEE_SWTPM_STATE``, else ``~/.local/share/veritee/swtpm``."""
    env = os.environ.get("VERITEE_SWTPM_STATE")
    return Path(env) if env else Path.home() / ".local" / "share" / "veritee" / "swtpm"


def swtpm_unavailable_reason() -> str | None:
    """Why :class:`InsecureSwtpmPlatform` cannot run here, or ``None`` when it can."""
    missing = missing_tools()
    if missing:
        return f"swtpm tools not installed: {', '.join(missing)}"
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the machine
        return f"tpm2-pytss not importable: {exc}"
    return None


# -- measured boot: the TCG crypto-agile event log -------------------------------------------
@dataclass(frozen=True)
class BootEvent:
    """One measurement: extend ``pcr`` with H(``measured``) and log it with ``event_data``.

    ``measured`` is what the firmware hashes (an image, a variable); ``None`` means the event
    data itself (PFP 10.4.1: e.g. EV_SEPARATOR, EV_S_CRTM_VERSION).
    """

    pcr: int
    event_type: EventType
    event_data: bytes
    measured: bytes | None = None

    def digest(self, bank: HashAlg) -> bytes:
        """The digest extended into ``bank``."""
        return bank.digest(self.event_data if self.measured is None else self.measured)


def _efi_variable(guid: uuid.UUID, name: str, data: bytes) -> bytes:
    """UEFI_VARIABLE_DATA (PFP 10.4.4): GUID, name length, data length, UTF-16 name, data."""
    return (guid.bytes_le + struct.pack("<QQ", len(name), len(data)) + name.encode("utf-16-le")
            + data)


def _image_load_event(address: int, length: int) -> bytes:
    """UEFI_IMAGE_LOAD_EVENT (PFP, "UEFI_IMAGE_LOAD_EVENT") with an empty device path."""
    return struct.pack("<QQQQ", address, length, 0, 0)


def default_boot_chain(*, firmware: bytes = b"veritee swtpm demo firmware",
                       bootloader: bytes = b"veritee demo boot loader",
                       kernel: bytes = b"veritee demo kernel",
                       cmdline: bytes = b"console=ttyS0 ro",
                       secure_boot: bool = True) -> tuple[BootEvent, ...]:
    """The measurements a UEFI boot makes, in PC Client PFP order (3.3.4).

    PCR 0: CRTM version and the firmware blob; PCR 7: the SecureBoot variable; PCRs 0-7: the
    separator; PCR 4: the boot loader and kernel images (EV_EFI_BOOT_SERVICES_APPLICATION);
    PCR 8: the kernel command line and PCR 9: the kernel file, as GRUB measures them (EV_IPL).
    """
    ev: list[BootEvent] = [
        BootEvent(0, EventType.EV_S_CRTM_VERSION, "1.0\0".encode("utf-16-le")),
        BootEvent(0, EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB,
                  struct.pack("<QQ", 0xFFC00000, len(firmware)), firmware),
        BootEvent(7, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
                  _efi_variable(_EFI_GLOBAL_VARIABLE, "SecureBoot",
                                b"\x01" if secure_boot else b"\x00")),
    ]
    ev += [BootEvent(pcr, EventType.EV_SEPARATOR, bytes(4)) for pcr in range(8)]
    ev += [
        BootEvent(4, EventType.EV_EFI_BOOT_SERVICES_APPLICATION,
                  _image_load_event(0x7E000000, len(bootloader)), bootloader),
        BootEvent(4, EventType.EV_EFI_BOOT_SERVICES_APPLICATION,
                  _image_load_event(0x7C000000, len(kernel)), kernel),
        BootEvent(8, EventType.EV_IPL, b"kernel_cmdline: " + cmdline + b"\0"),
        BootEvent(9, EventType.EV_IPL, b"/boot/vmlinuz\0", kernel),
    ]
    return tuple(ev)


def encode_event_log(banks: Sequence[HashAlg], events: Sequence[BootEvent]) -> bytes:
    """A crypto-agile event log: the Spec ID event, then one TCG_PCR_EVENT2 per event.

    First event (PFP 10.2.1, 10.4.5.1): TCG_PCClientPCREvent, PCR 0, EV_NO_ACTION, 20 zero
    bytes, TCG_EfiSpecIdEvent ("Spec ID Event03", platform class 0 = client, spec 2.0 errata 0,
    uintnSize 2 = UINT64, one (algorithmId, digestSize) per bank, no vendor info). Then
    TCG_PCR_EVENT2 (PFP 10.2.2): pcrIndex, eventType, TPML_DIGEST_VALUES (count, then
    hashAlg || digest per bank in Spec ID order), eventSize, event. Little-endian throughout.
    """
    algs = b"".join(struct.pack("<HH", b, b.digest_size) for b in banks)
    spec = SPEC_ID_SIGNATURE + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(banks)) + algs + b"\0"
    out = [struct.pack("<II", 0, _EV_NO_ACTION) + bytes(20) + struct.pack("<I", len(spec)) + spec]
    for e in events:
        digests = b"".join(struct.pack("<H", b) + e.digest(b) for b in banks)
        out.append(struct.pack("<III", e.pcr, int(e.event_type), len(banks)) + digests
                   + struct.pack("<I", len(e.event_data)) + e.event_data)
    return b"".join(out)


def _selection_list(pcrs: Mapping[HashAlg, Sequence[int]]) -> tuple[PcrSelection, ...]:
    out = []
    for bank, indices in pcrs.items():
        if not indices or any(not 0 <= i < 24 for i in indices):
            raise PlatformError(f"PCR selection {bank.name}: want indices 0..23, got "
                                f"{list(indices)}")
        out.append(PcrSelection(bank, tuple(sorted(set(indices)))))
    if not out:
        raise PlatformError("PCR selection: empty")
    return tuple(out)


def _tpml_pcr_selection(sel: Sequence[PcrSelection]) -> bytes:
    """TPML_PCR_SELECTION (Part 2, 10.9.7): u32 count, then TPMS_PCR_SELECTIONs."""
    return struct.pack(">I", len(sel)) + b"".join(s.to_bytes() for s in sel)


def policy_pcr_digest(pcrs: Mapping[HashAlg, Mapping[int, bytes]],
                      policy_hash: HashAlg = HashAlg.SHA256) -> bytes:
    """The policy digest of one TPM2_PolicyPCR from a fresh session, for the given values.

    Part 3, TPM2_PolicyPCR: ``policyDigest' = H(policyDigest || TPM_CC_PolicyPCR || pcrs ||
    digestTPM)``, policyDigest starting at zeros, ``pcrs`` the TPML_PCR_SELECTION and
    ``digestTPM`` the hash of the selected values concatenated in selection order (banks as
    listed, indices ascending). Computing it here lets data be sealed to a *predicted* state
    (e.g. replayed from a future boot's event log), not only to the current PCRs.
    """
    sel = _selection_list({bank: list(vals) for bank, vals in pcrs.items()})
    values = b"".join(pcrs[s.hash_alg][i] for s in sel for i in s.pcrs)
    digest_tpm = policy_hash.digest(values)
    return policy_hash.digest(bytes(policy_hash.digest_size)
                              + struct.pack(">I", _TPM_CC_POLICY_PCR)
                              + _tpml_pcr_selection(sel) + digest_tpm)


def encode_tpm2tools_pcrs(pcrs: Mapping[HashAlg, Mapping[int, bytes]]) -> bytes:
    """The PCR file ``tpm2_quote -o`` writes (tpm2-tools' host-endian C structures), the
    inverse of :func:`veritee.formats.tpm.parse_tpm2tools_pcrs`: TPML_PCR_SELECTION (u32
    count, 16 slots of u16 hash, u8 sizeofSelect, u8[4] pcrSelect, 1 pad byte), a u32 number
    of TPML_DIGEST, each a u32 count and 8 slots of TPM2B_DIGEST (u16 size, u8[64])."""
    sel = _selection_list({b: list(v) for b, v in pcrs.items()})
    if len(sel) > 16:
        raise PlatformError("tpm2-tools PCR file: at most 16 banks")
    out = struct.pack("<I", len(sel))
    for s in sel:
        bitmap = bytearray(4)
        for i in s.pcrs:
            bitmap[i // 8] |= 1 << (i % 8)
        out += struct.pack("<HB", s.hash_alg, 3) + bytes(bitmap) + b"\0"
    out += bytes(8 * (16 - len(sel)))
    values = [pcrs[s.hash_alg][i] for s in sel for i in s.pcrs]
    lists = [values[k:k + 8] for k in range(0, len(values), 8)]
    out += struct.pack("<I", len(lists))
    for chunk in lists:
        out += struct.pack("<I", len(chunk))
        out += b"".join(struct.pack("<H", len(v)) + v.ljust(64, b"\0") for v in chunk)
        out += bytes(66 * (8 - len(chunk)))
    return out


@dataclass(frozen=True)
class TpmQuote:
    """A TPM2_Quote and what a verifier needs with it.

    ``attest`` is the TPMS_ATTEST exactly as signed, ``signature`` the AK's TPMT_SIGNATURE,
    ``pcrs`` the quoted PCR values (TPM2_PCR_Read), ``event_log`` the crypto-agile log of the
    current boot and ``ak_public`` the AK (a TPMT_PUBLIC: restricted signing key).
    """

    attest: bytes
    signature: TpmtSignature
    ak_public: TpmtPublic
    pcrs: dict[HashAlg, dict[int, bytes]]
    event_log: bytes
    nonce: bytes

    def export(self, directory: Path) -> dict[str, Path]:
        """Write the quote as tpm2-tools and the kernel write it (the files ``veritee tpm quote``
        and any other TPM verifier read): ``quote.attest`` (``tpm2_quote -m``), ``quote.sig``
        (``-s``), ``quote.pcrs`` (``-o``), ``ak.pub`` (TPM2B_PUBLIC), ``nonce`` (hex) and
        ``binary_bios_measurements`` (the event log)."""
        directory.mkdir(parents=True, exist_ok=True)
        ak = self.ak_public.raw or self.ak_public.to_bytes()
        files = {"quote": ("quote.attest", self.attest),
                 "signature": ("quote.sig", self.signature.to_bytes()),
                 "pcrs": ("quote.pcrs", encode_tpm2tools_pcrs(self.pcrs)),
                 "ak": ("ak.pub", struct.pack(">H", len(ak)) + ak),
                 "nonce": ("nonce", self.nonce.hex().encode()),
                 "eventlog": ("binary_bios_measurements", self.event_log)}
        out = {}
        for role, (name, data) in files.items():
            (directory / name).write_bytes(data)
            out[role] = directory / name
        return out


# -- the platform ----------------------------------------------------------------------------
def _pytss() -> Any:
    # tpm2-tss logs every TPM error response to stderr; refusals are expected here (a PCR
    # policy that fails is the point), so keep it quiet unless the user asked for logs.
    os.environ.setdefault("TSS2_LOG", "all+none")
    try:
        import tpm2_pytss
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise PlatformError(f"tpm2-pytss is not installed ({exc}); pip install tpm2-pytss "
                            "with Debian's libtss2-dev") from None
    return tpm2_pytss


@contextmanager
def _tpm_errors(what: str) -> Iterator[None]:
    """TSS errors (a TPM response code, a TCTI failure) become :class:`PlatformError`."""
    tss = _pytss()
    try:
        yield
    except tss.TSS2_Exception as exc:
        raise PlatformError(f"TPM {what}: {exc}") from None


class TpmPlatform:
    """A TPM 2.0 reached through a tpm2-tss TCTI; see the module docstring.

    It answers the same calls as the other platforms: :meth:`evidence` bound to report data,
    sealing (:meth:`seal`/:meth:`unseal`), monotonic counters (the
    :class:`veritee.sealing.MonotonicCounters` protocol) and randomness (:meth:`trng`, so
    ``PlatformTrngSource(platform)`` works).
    """

    def __init__(self, tcti_name: str, tcti_conf: str, *, description: str = "TPM 2.0",
                 firmware_log: Path | None = None) -> None:
        self.description = description
        self._firmware_log = firmware_log
        self._tcti_args = (tcti_name, tcti_conf)
        self._esys: Any = None
        self._tcti: Any = None
        self._ak: Any = None
        self._srk: Any = None
        self._events: list[BootEvent] = []
        self._banks: tuple[HashAlg, ...] = ()
        self._connect()

    @classmethod
    def device(cls, path: str = "/dev/tpmrm0") -> TpmPlatform:
        """The TPM of this machine through the kernel's resource manager."""
        if not Path(path).exists():
            raise PlatformError(f"{path} not found: no TPM, or no access to it")
        return cls("device", path, description=f"TPM 2.0 ({path})", firmware_log=FIRMWARE_LOG)

    # connection -----------------------------------------------------------------------------
    _CONNECT_ATTEMPTS = 1

    def _connect(self) -> None:
        tss = _pytss()
        for attempt in range(self._CONNECT_ATTEMPTS):
            try:
                self._tcti = tss.TCTILdr(*self._tcti_args)
                self._esys = tss.ESAPI(self._tcti)
                break
            except tss.TSS2_Exception as exc:
                if attempt + 1 == self._CONNECT_ATTEMPTS:
                    raise PlatformError(f"TPM connect: {exc}") from None
                time.sleep(0.02)
        self._ak = self._srk = None
        self._banks = self._active_banks()

    def _disconnect(self) -> None:
        if self._esys is not None:
            self._esys.close()
            self._tcti.close()
        self._esys = self._tcti = self._ak = self._srk = None

    def close(self) -> None:
        """Close the connection (the TPM keeps its state)."""
        self._disconnect()

    def __enter__(self) -> TpmPlatform:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def esys(self) -> Any:
        """The tpm2-pytss ``ESAPI`` context, for callers that need another command."""
        if self._esys is None:
            raise PlatformError("TPM connection closed")
        return self._esys

    def _active_banks(self) -> tuple[HashAlg, ...]:
        tss = _pytss()
        with _tpm_errors("GetCapability(PCRS)"):
            _, cap = self.esys.get_capability(tss.constants.TPM2_CAP.PCRS, 0, 1)
        banks = []
        for sel in cap.data.assignedPCR:
            if any(bytes(sel.pcrSelect)[:sel.sizeofSelect]):
                try:
                    banks.append(HashAlg(int(sel.hash)))
                except ValueError:
                    continue
        return tuple(banks)

    @property
    def banks(self) -> tuple[HashAlg, ...]:
        """The active PCR banks (what every extend writes, and what the event log carries)."""
        return self._banks

    # randomness ----------------------------------------------------------------------------
    def trng(self, n: int) -> bytes:
        """``n`` bytes from TPM2_GetRandom (the TPM's RNG; Part 3, TPM2_GetRandom)."""
        out = bytearray()
        with _tpm_errors("GetRandom"):
            while len(out) < n:
                out += bytes(self.esys.get_random(min(_MAX_RANDOM, n - len(out))))
        return bytes(out)

    random = trng

    # PCRs and the event log -----------------------------------------------------------------
    def pcr_values(self, pcrs: Mapping[HashAlg, Sequence[int]]) -> dict[HashAlg, dict[int, bytes]]:
        """TPM2_PCR_Read of the selection (the TPM returns at most 8 values per call)."""
        tss = _pytss()
        todo = {bank: set(indices) for bank, indices in pcrs.items()}
        out: dict[HashAlg, dict[int, bytes]] = {bank: {} for bank in todo}
        while any(todo.values()):
            spec = "+".join(f"{b.name.lower()}:{','.join(map(str, sorted(ix)))}"
                            for b, ix in todo.items() if ix)
            with _tpm_errors("PCR_Read"):
                _, read, digests = self.esys.pcr_read(tss.types.TPML_PCR_SELECTION.parse(spec))
            values = iter(digests)
            got = 0
            for sel in read:
                bank = HashAlg(int(sel.hash))
                bitmap = bytes(sel.pcrSelect)[:sel.sizeofSelect]
                for index in range(8 * len(bitmap)):
                    if bitmap[index // 8] >> (index % 8) & 1:
                        out[bank][index] = bytes(next(values))
                        todo[bank].discard(index)
                        got += 1
            if got == 0:
                raise PlatformError(f"PCR_Read returned nothing for {spec} (bank not active?)")
        return out

    def extend(self, event: BootEvent) -> None:
        """TPM2_PCR_Extend ``event``'s digest into every active bank, and log it."""
        tss = _pytss()
        t = tss.types
        values = t.TPML_DIGEST_VALUES([
            t.TPMT_HA(hashAlg=int(b), digest=t.TPMU_HA(**{b.name.lower(): event.digest(b)}))
            for b in self._banks])
        with _tpm_errors(f"PCR_Extend({event.pcr})"):
            self.esys.pcr_extend(tss.ESYS_TR.parse(f"pcr{event.pcr}"), values)
        self._events.append(event)

    def measured_boot(self, events: Sequence[BootEvent]) -> None:
        """Extend and log every event in order, as firmware does from power-on."""
        for event in events:
            self.extend(event)

    def event_log(self) -> bytes:
        """The event log of this boot: on a device TPM the firmware's (the kernel's
        ``binary_bios_measurements``), else the crypto-agile log of everything
        :meth:`extend` measured since power-on."""
        if self._firmware_log is not None:
            try:
                return self._firmware_log.read_bytes()
            except OSError as exc:
                raise PlatformError(f"{self._firmware_log}: {exc.strerror}") from None
        return encode_event_log(self._banks, self._events)

    # keys ----------------------------------------------------------------------------------
    def _public_of(self, handle: Any) -> TpmtPublic:
        with _tpm_errors("ReadPublic"):
            pub, _, _ = self.esys.read_public(handle)
        return parse_tpm2b_public(pub.marshal())

    def _nv_read(self, index: int) -> bytes:
        """The whole of NV index ``index`` (TPM2_NV_Read in chunks; authorised by the index's
        own empty auth value, as EK certificate indices are)."""
        with _tpm_errors(f"NV_Read(0x{index:08x})"):
            nv = self.esys.tr_from_tpmpublic(index)
            pub, _ = self.esys.nv_read_public(nv)
            size = int(pub.nvPublic.dataSize)
            data = bytearray()
            while len(data) < size:
                chunk = min(512, size - len(data))
                data += bytes(self.esys.nv_read(nv, chunk, len(data), auth_handle=nv))
        return bytes(data)

    @contextmanager
    def _ek(self) -> Iterator[Any]:
        """The RSA EK: the persistent one at :data:`EK_HANDLE`, or (a TPM whose owner did not
        persist it) CreatePrimary of the TCG template, flushed after use."""
        tss = _pytss()
        try:
            handle = self.esys.tr_from_tpmpublic(EK_HANDLE)
        except tss.TSS2_Exception:
            handle = None
        if handle is not None:
            yield handle
            return
        handle = self._ek_from_template()
        try:
            yield handle
        finally:
            self.esys.flush_context(handle)

    def _ek_from_template(self) -> Any:
        """CreatePrimary(endorsement) of the EK template of the TCG EK Credential Profile
        (template L-1, or the template/nonce the manufacturer stored in NV), via
        tpm2-pytss' ``create_ek_template``."""
        tss = _pytss()
        from tpm2_pytss.utils import NoSuchIndex, create_ek_template

        def nv_read(index: int) -> bytes:
            try:
                return self._nv_read(int(index))
            except PlatformError:
                raise NoSuchIndex(index) from None

        _, template = create_ek_template("EK-RSA2048", nv_read)
        with _tpm_errors("CreatePrimary(EK)"):
            return self.esys.create_primary(tss.types.TPM2B_SENSITIVE_CREATE(), template,
                                            tss.ESYS_TR.ENDORSEMENT)[0]

    def ek_public(self) -> TpmtPublic:
        """The RSA-2048 EK (see :meth:`_ek`)."""
        with self._ek() as handle:
            return self._public_of(handle)

    def ek_certificate(self) -> bytes:
        """The EK certificate (DER) from NV index :data:`EK_CERT_NV_INDEX`."""
        return self._nv_read(EK_CERT_NV_INDEX)

    def _ak_handle(self) -> Any:
        if self._ak is None:
            tss = _pytss()
            attrs = tss.constants.TPMA_OBJECT
            template = tss.types.TPM2B_PUBLIC.parse(
                "ecc256:ecdsa-sha256:null",
                objectAttributes=(attrs.RESTRICTED | attrs.SIGN_ENCRYPT | attrs.FIXEDTPM
                                  | attrs.FIXEDPARENT | attrs.SENSITIVEDATAORIGIN
                                  | attrs.USERWITHAUTH))
            with _tpm_errors("CreatePrimary(AK)"):
                self._ak = self.esys.create_primary(tss.types.TPM2B_SENSITIVE_CREATE(), template,
                                                    tss.ESYS_TR.ENDORSEMENT)[0]
        return self._ak

    def ak_public(self) -> TpmtPublic:
        """The AK: restricted ECC P-256 ECDSA-SHA256 signing key, endorsement-hierarchy primary."""
        return self._public_of(self._ak_handle())

    def activate_credential(self, credential_blob: bytes, encrypted_secret: bytes) -> bytes:
        """TPM2_ActivateCredential with the AK and the EK: the verifier's challenge, recovered
        only if this TPM holds both the EK and an object with the AK's Name.

        The EK's authPolicy is PolicySecret(TPM_RH_ENDORSEMENT) (EK Credential Profile,
        "policy A"), so the EK is authorised by a policy session that runs it.
        """
        tss = _pytss()
        t, c = tss.types, tss.constants
        ak = self._ak_handle()
        with _tpm_errors("ActivateCredential"), self._ek() as ek:
            blob, _ = t.TPM2B_ID_OBJECT.unmarshal(bytes(credential_blob))
            secret, _ = t.TPM2B_ENCRYPTED_SECRET.unmarshal(bytes(encrypted_secret))
            session = self.esys.start_auth_session(
                tss.ESYS_TR.NONE, tss.ESYS_TR.NONE, c.TPM2_SE.POLICY,
                t.TPMT_SYM_DEF(algorithm=c.TPM2_ALG.NULL), c.TPM2_ALG.SHA256)
            try:
                self.esys.policy_secret(tss.ESYS_TR.ENDORSEMENT, session, expiration=0)
                answer = self.esys.activate_credential(ak, ek, blob, secret,
                                                       session1=tss.ESYS_TR.PASSWORD,
                                                       session2=session)
            finally:
                self.esys.flush_context(session)
        return bytes(answer)

    def certify_storage_key(self, nonce: bytes) -> tuple[TpmtPublic, bytes, TpmtSignature]:
        """TPM2_Certify of the storage key that parents sealed objects, signed by the AK:
        (its TPMT_PUBLIC, the TPMS_ATTEST, the signature), for ``verify_certify``. It proves
        that key lives in the same TPM as the AK (Part 3, TPM2_Certify)."""
        tss = _pytss()
        srk, ak = self._srk_handle(), self._ak_handle()
        with _tpm_errors("Certify"):
            attest, sig = self.esys.certify(srk, ak, tss.types.TPM2B_DATA(bytes(nonce)),
                                            tss.types.TPMT_SIG_SCHEME(
                                                scheme=tss.constants.TPM2_ALG.NULL),
                                            session1=tss.ESYS_TR.PASSWORD,
                                            session2=tss.ESYS_TR.PASSWORD)
        return (self._public_of(srk), bytes(attest), TpmtSignature.from_bytes(sig.marshal()))

    def derive_key(self, context: bytes, *,
                   pcrs: Mapping[HashAlg, Sequence[int]] | None = None) -> bytes:
        """A 32-byte key that only this TPM derives: TPM2_HMAC(K, ``context``) with K an HMAC
        primary key of the owner hierarchy (fixedTPM; derived from the owner seed and its
        template, so the same after every restart: Part 1, "Primary Keys").

        With ``pcrs`` K's template carries the PolicyPCR digest of their current values and no
        userWithAuth: K is a different key for every PCR state, and the TPM computes the HMAC
        only in a policy session where those PCRs still hold those values - the TPM analogue
        of an SNP key derived with MEASUREMENT mixed in.
        """
        if len(context) > 1024:  # MAX_DIGEST_BUFFER (Part 2, TPM2B_MAX_BUFFER)
            raise PlatformError(f"derive_key context: got {len(context)} bytes, want <= 1024")
        tss = _pytss()
        t, c = tss.types, tss.constants
        a = c.TPMA_OBJECT
        attrs = a.SIGN_ENCRYPT | a.FIXEDTPM | a.FIXEDPARENT | a.SENSITIVEDATAORIGIN | a.NODA
        policy = b""
        sel: tuple[PcrSelection, ...] = ()
        if pcrs is None:
            attrs |= a.USERWITHAUTH
        else:
            sel = _selection_list(pcrs)
            policy = policy_pcr_digest(self.pcr_values({x.hash_alg: x.pcrs for x in sel}))
        public = t.TPM2B_PUBLIC(publicArea=t.TPMT_PUBLIC(
            type=c.TPM2_ALG.KEYEDHASH, nameAlg=c.TPM2_ALG.SHA256, objectAttributes=attrs,
            authPolicy=t.TPM2B_DIGEST(policy)))
        detail = public.publicArea.parameters.keyedHashDetail.scheme
        detail.scheme = c.TPM2_ALG.HMAC
        detail.details.hmac.hashAlg = c.TPM2_ALG.SHA256
        with _tpm_errors("derive_key"):
            key = self.esys.create_primary(t.TPM2B_SENSITIVE_CREATE(), public,
                                           tss.ESYS_TR.OWNER)[0]
            try:
                if pcrs is None:
                    return bytes(self.esys.hmac(key, bytes(context), c.TPM2_ALG.SHA256))
                session = self.esys.start_auth_session(
                    tss.ESYS_TR.NONE, tss.ESYS_TR.NONE, c.TPM2_SE.POLICY,
                    t.TPMT_SYM_DEF(algorithm=c.TPM2_ALG.NULL), c.TPM2_ALG.SHA256)
                try:
                    spec = "+".join(f"{x.hash_alg.name.lower()}:{','.join(map(str, x.pcrs))}"
                                    for x in sel)
                    self.esys.policy_pcr(session, t.TPM2B_DIGEST(),
                                         t.TPML_PCR_SELECTION.parse(spec))
                    return bytes(self.esys.hmac(key, bytes(context), c.TPM2_ALG.SHA256,
                                                session1=session))
                finally:
                    self.esys.flush_context(session)
            finally:
                self.esys.flush_context(key)

    # attestation -----------------------------------------------------------------------------
    def quote(self, nonce: bytes,
              pcrs: Mapping[HashAlg, Sequence[int]] = DEFAULT_QUOTE_PCRS) -> TpmQuote:
        """TPM2_Quote of ``pcrs`` with ``nonce`` as qualifyingData (TPMS_ATTEST.extraData)."""
        tss = _pytss()
        sel = _selection_list(pcrs)
        spec = "+".join(f"{s.hash_alg.name.lower()}:{','.join(map(str, s.pcrs))}" for s in sel)
        ak = self._ak_handle()
        with _tpm_errors("Quote"):
            attest, sig = self.esys.quote(ak, tss.types.TPML_PCR_SELECTION.parse(spec),
                                          tss.types.TPM2B_DATA(bytes(nonce)),
                                          tss.types.TPMT_SIG_SCHEME(
                                              scheme=tss.constants.TPM2_ALG.NULL))
        values = self.pcr_values({s.hash_alg: s.pcrs for s in sel})
        return TpmQuote(bytes(attest), TpmtSignature.from_bytes(sig.marshal()),
                        self.ak_public(), values, self.event_log(), bytes(nonce))

    def evidence(self, report_data: bytes) -> TpmQuote:
        """Evidence bound to ``report_data``: a quote of :data:`DEFAULT_QUOTE_PCRS` whose
        extraData is ``report_data`` (at most 64 bytes: TPM2B_DATA holds one TPMT_HA)."""
        if len(report_data) > 64:
            raise PlatformError(f"report data: got {len(report_data)} bytes, want <= 64")
        return self.quote(report_data)

    # sealing -------------------------------------------------------------------------------
    def _srk_handle(self) -> Any:
        if self._srk is None:
            tss = _pytss()
            a = tss.constants.TPMA_OBJECT
            template = tss.types.TPM2B_PUBLIC.parse(
                "ecc256:aes128cfb",
                objectAttributes=(a.RESTRICTED | a.DECRYPT | a.FIXEDTPM | a.FIXEDPARENT
                                  | a.SENSITIVEDATAORIGIN | a.USERWITHAUTH | a.NODA))
            with _tpm_errors("CreatePrimary(SRK)"):
                self._srk = self.esys.create_primary(tss.types.TPM2B_SENSITIVE_CREATE(),
                                                     template, tss.ESYS_TR.OWNER)[0]
        return self._srk

    def seal(self, data: bytes, pcrs: Mapping[HashAlg, Sequence[int]] = DEFAULT_QUOTE_PCRS, *,
             expected: Mapping[HashAlg, Mapping[int, bytes]] | None = None,
             aad: bytes = b"") -> bytes:
        """Seal ``data`` so that only this TPM, with ``pcrs`` holding the values they hold
        now (or ``expected``), can unseal it. Returns the sealed blob (see :meth:`unseal`)."""
        tss = _pytss()
        t, c = tss.types, tss.constants
        sel = _selection_list(pcrs if expected is None
                              else {b: list(v) for b, v in expected.items()})
        values = (self.pcr_values({s.hash_alg: s.pcrs for s in sel}) if expected is None
                  else {b: dict(v) for b, v in expected.items()})
        policy = policy_pcr_digest(values)
        key = self.trng(32)
        public = t.TPM2B_PUBLIC(publicArea=t.TPMT_PUBLIC(
            type=c.TPM2_ALG.KEYEDHASH, nameAlg=c.TPM2_ALG.SHA256,
            objectAttributes=c.TPMA_OBJECT.FIXEDTPM | c.TPMA_OBJECT.FIXEDPARENT,
            authPolicy=t.TPM2B_DIGEST(policy)))
        public.publicArea.parameters.keyedHashDetail.scheme.scheme = c.TPM2_ALG.NULL
        sensitive = t.TPM2B_SENSITIVE_CREATE(t.TPMS_SENSITIVE_CREATE(
            data=t.TPM2B_SENSITIVE_DATA(key)))
        with _tpm_errors("Create(sealed object)"):
            private, out_public, _, _, _ = self.esys.create(self._srk_handle(), sensitive, public)
        header = _encode_seal_header(_tpml_pcr_selection(sel), out_public.marshal(),
                                     private.marshal())
        nonce = self.trng(12)
        return header + nonce + AESGCM(key).encrypt(nonce, bytes(data), header + aad)

    def unseal(self, blob: bytes, *, aad: bytes = b"") -> bytes:
        """Open a :meth:`seal` blob: TPM2_Load, a policy session running TPM2_PolicyPCR, then
        TPM2_Unseal. Every failure (other TPM, changed PCRs, tampered blob) is the same
        :class:`SealingError`."""
        tss = _pytss()
        t, c = tss.types, tss.constants
        try:
            header, sel_bytes, pub_bytes, priv_bytes = _decode_seal_header(bytes(blob))
            nonce, ciphertext = blob[len(header):len(header) + 12], blob[len(header) + 12:]
            selection, _ = t.TPML_PCR_SELECTION.unmarshal(sel_bytes)
            public, _ = t.TPM2B_PUBLIC.unmarshal(pub_bytes)
            private, _ = t.TPM2B_PRIVATE.unmarshal(priv_bytes)
            obj = self.esys.load(self._srk_handle(), private, public)
            try:
                session = self.esys.start_auth_session(
                    tss.ESYS_TR.NONE, tss.ESYS_TR.NONE, c.TPM2_SE.POLICY,
                    t.TPMT_SYM_DEF(algorithm=c.TPM2_ALG.NULL), c.TPM2_ALG.SHA256)
                try:
                    self.esys.policy_pcr(session, t.TPM2B_DIGEST(), selection)
                    key = bytes(self.esys.unseal(obj, session1=session))
                finally:
                    self.esys.flush_context(session)
            finally:
                self.esys.flush_context(obj)
            return AESGCM(key).decrypt(bytes(nonce), bytes(ciphertext), header + aad)
        except (tss.TSS2_Exception, FormatError, InvalidTag, ValueError, TypeError,
                struct.error):
            raise SealingError() from None

    # NV counters (veritee.sealing.MonotonicCounters) ----------------------------------------
    # One veritee counter is a PAIR of TPM NV counters, because sealing packs two 32-bit
    # halves into one value (veritee.sealing._core: RESERVED in bits 63..32, COMMITTED in
    # bits 31..0) and a TPM counter only ever moves by one (TPM2_NV_Increment). Reserving
    # raises the high counter, committing raises the low one, burning raises both: one or
    # two increments per step instead of ~2**32.
    def _counter_pair(self, counter_id: bytes) -> tuple[tuple[Any, int], tuple[Any, int]]:
        """((high NV, base), (low NV, base)) for a counter id, once both indices are checked
        to still be NV counters (a host that redefines one as an ordinary, writable index
        could lower it)."""
        hi_off, lo_off, hi_base, lo_base = _decode_counter_id(counter_id)
        tss = _pytss()
        c = tss.constants
        out = []
        for off, base in ((hi_off, hi_base), (lo_off, lo_base)):
            with _tpm_errors("NV counter"):
                nv = self.esys.tr_from_tpmpublic(_COUNTER_RANGE[0] + off)
                public, _ = self.esys.nv_read_public(nv)
            attrs = int(public.nvPublic.attributes)
            kind = (attrs & int(c.TPMA_NV.TPM2_NT_MASK)) >> int(c.TPMA_NV.TPM2_NT_SHIFT)
            if kind != int(c.TPM2_NT.COUNTER):
                raise PlatformError(f"counter id {counter_id.hex()}: NV index "
                                    f"0x{_COUNTER_RANGE[0] + off:08x} is not an NV counter")
            out.append((nv, base))
        return out[0], out[1]

    def _nv_counter_value(self, nv: Any) -> int:
        with _tpm_errors("NV_Read(counter)"):
            return int.from_bytes(bytes(self.esys.nv_read(nv, 8, 0, auth_handle=nv)), "big")

    def _half(self, nv: Any, base: int) -> int:
        value = self._nv_counter_value(nv) - base
        if not 0 <= value <= _HALF_MAX:
            raise PlatformError(f"NV counter: {value} is outside one 32-bit half")
        return value

    def _define_counter(self) -> tuple[int, int]:
        """Define one NV counter at a free owner index; return (index offset, base)."""
        tss = _pytss()
        t, c = tss.types, tss.constants
        attrs = (c.TPMA_NV.AUTHREAD | c.TPMA_NV.AUTHWRITE | c.TPMA_NV.NO_DA
                 | (c.TPM2_NT.COUNTER << c.TPMA_NV.TPM2_NT_SHIFT))
        span = _COUNTER_RANGE[1] - _COUNTER_RANGE[0] + 1
        for _ in range(64):
            offset = int.from_bytes(self.trng(3), "big") % span
            info = t.TPM2B_NV_PUBLIC(nvPublic=t.TPMS_NV_PUBLIC(
                nvIndex=_COUNTER_RANGE[0] + offset, nameAlg=c.TPM2_ALG.SHA256,
                attributes=attrs, dataSize=8))
            try:
                nv = self.esys.nv_define_space(t.TPM2B_AUTH(), info,
                                               auth_handle=tss.ESYS_TR.OWNER)
            except tss.TSS2_Exception as exc:
                if exc.error == c.TPM2_RC.NV_DEFINED:
                    continue
                raise PlatformError(f"TPM NV_DefineSpace: {exc}") from None
            # A counter cannot be read before its first write (TPMA_NV_WRITTEN).
            with _tpm_errors("NV_Increment"):
                self.esys.nv_increment(nv, auth_handle=nv)
            base = self._nv_counter_value(nv)
            if base > _HALF_MAX:
                raise PlatformError(f"NV counter starts at {base}: a counter id records "
                                    "its base in 32 bits (this TPM's counts are too high)")
            return offset, base
        raise PlatformError("no free NV index for a counter")

    def _define_counter_at(self, offset: int) -> None:
        """Make sure an NV counter exists at ``offset`` and has been written (a declared
        counter: defined on first use, kept afterwards)."""
        tss = _pytss()
        t, c = tss.types, tss.constants
        attrs = (c.TPMA_NV.AUTHREAD | c.TPMA_NV.AUTHWRITE | c.TPMA_NV.NO_DA
                 | (c.TPM2_NT.COUNTER << c.TPMA_NV.TPM2_NT_SHIFT))
        info = t.TPM2B_NV_PUBLIC(nvPublic=t.TPMS_NV_PUBLIC(
            nvIndex=_COUNTER_RANGE[0] + offset, nameAlg=c.TPM2_ALG.SHA256, attributes=attrs,
            dataSize=8))
        try:
            nv = self.esys.nv_define_space(t.TPM2B_AUTH(), info, auth_handle=tss.ESYS_TR.OWNER)
        except tss.TSS2_Exception as exc:
            if exc.error != c.TPM2_RC.NV_DEFINED:
                raise PlatformError(f"TPM NV_DefineSpace: {exc}") from None
            with _tpm_errors("NV counter"):
                nv = self.esys.tr_from_tpmpublic(_COUNTER_RANGE[0] + offset)
                public, _ = self.esys.nv_read_public(nv)
            if not int(public.nvPublic.attributes) & int(c.TPMA_NV.WRITTEN):
                with _tpm_errors("NV_Increment"):  # defined, but a crash came before its
                    self.esys.nv_increment(nv, auth_handle=nv)  # first write
            return
        with _tpm_errors("NV_Increment"):  # readable only once written (TPMA_NV_WRITTEN)
            self.esys.nv_increment(nv, auth_handle=nv)

    def counter_create(self, counter_id: bytes | None = None) -> bytes:
        """Define a pair of NV counters and return their 16-byte id (value 0).

        A new TPM counter starts at the highest count any counter of this TPM ever had (Part 1,
        "NV Counters"), not at 0: the first TPM2_NV_Increment sets it, and that value is
        recorded in the id as the counter's zero. The id is
        ``"V2" || high offset (3) || low offset (3) || high base (4) || low base (4)``, the
        offsets from NV index 0x01500000, big-endian; sealing authenticates it (it is in the
        sealed header).

        ``counter_id`` (a caller-declared id): an id this TPM handed out is accepted only while
        its counters exist (returned as it is). Any other 16-byte id (e.g.
        :func:`veritee.sealing.counter_id_for`, what ``Sealer`` and the key store declare)
        names a *declared* pair at NV offsets derived from SHA-256 of the id, defined on first
        use, whose value is the counters' absolute count (base 0). That stays sound when the
        host deletes and redefines them: a redefined counter starts at the highest count the
        TPM ever had, so the value only jumps up (the committed version then matches no file:
        availability lost, never integrity). An id that starts with ``"V2"`` is read as a
        created id (a declared id does so with probability 2**-16; it is then refused).
        """
        if counter_id is not None:
            cid = bytes(counter_id)
            if len(cid) != 16:
                raise PlatformError(f"counter id: got {len(cid)} bytes, want 16")
            if cid[:2] != _COUNTER_TAG:
                hi_off, lo_off, _, _ = _decode_counter_id(cid)
                self._define_counter_at(hi_off)
                self._define_counter_at(lo_off)
            self._counter_pair(cid)  # exists and is still a pair of NV counters
            return cid
        hi_off, hi_base = self._define_counter()
        try:
            lo_off, lo_base = self._define_counter()
        except BaseException:
            self._undefine(hi_off)
            raise
        return _encode_counter_id(hi_off, lo_off, hi_base, lo_base)

    def _undefine(self, offset: int) -> None:
        tss = _pytss()
        with contextlib.suppress(tss.TSS2_Exception):
            nv = self.esys.tr_from_tpmpublic(_COUNTER_RANGE[0] + offset)
            self.esys.nv_undefine_space(nv, auth_handle=tss.ESYS_TR.OWNER)

    def counter_read(self, counter_id: bytes) -> int:
        """The counter's value: high half << 32 | low half (each TPM2_NV_Read less its base)."""
        (hi, hi_base), (lo, lo_base) = self._counter_pair(counter_id)
        return self._half(hi, hi_base) << 32 | self._half(lo, lo_base)

    def counter_advance(self, counter_id: bytes, to: int) -> int:
        """Increment each half of the counter up to its half of ``to``; return the new value.

        Each half only grows: a ``to`` whose half is below the current one leaves that half
        as it is, so the result can be above ``to`` (still monotone; the return value says
        where the counter is). Sealing's protocol only ever raises both halves.

        The low half (COMMITTED) moves first: a crash between the two halves of a burn
        (``v<<32|v`` to ``v+1<<32|v+1``) leaves committed = v+1, a version no writer was
        ever given (sealing reads RESERVED as the larger half), so nothing opens; the other
        order would leave the burned version v current.
        """
        if not 0 <= to < 1 << 64:
            raise PlatformError(f"counter value: got {to}, want 0..2**64-1")
        (hi, hi_base), (lo, lo_base) = self._counter_pair(counter_id)
        for nv, base, target in ((lo, lo_base, to & _HALF_MAX), (hi, hi_base, to >> 32)):
            value = self._half(nv, base)
            with _tpm_errors("NV_Increment"):
                while value < target:
                    self.esys.nv_increment(nv, auth_handle=nv)
                    value += 1
        return self.counter_read(counter_id)


@dataclass(frozen=True)
class RegisteredAk:
    """An AK a verifier has enrolled: its EK certificate chained to a given root and the TPM
    proved, by credential activation, that the AK sits next to that EK."""

    ak_public: TpmtPublic
    ek_chain: VerifiedEkChain


def register_ak(tpm: TpmPlatform, *, roots: Sequence[CertificateInput],
                intermediates: Sequence[CertificateInput] = (), now: datetime) -> RegisteredAk:
    """The verifier's enrolment of a TPM's AK (what a registrar such as keylime's does):

    1. ``tpm.ek.*``: the EK certificate chains to one of ``roots`` (there is no default: for
       swtpm pass ``InsecureSwtpmPlatform.ca_root()``) and names the TPM's EK;
    2. ``tpm.ak.attributes``: the AK is a restricted, fixedTPM signing key;
    3. ``tpm.ak.credential``: a challenge encrypted to the EK for the AK's Name comes back.

    The two parties talk in-process here; over a network the same three messages travel.
    Raises :class:`VerificationError` with the code of the failed step.
    """
    ek = tpm.ek_public()
    chain = verify_ek_chain(tpm.ek_certificate(), intermediates, roots=roots, now=now,
                            ek_public=ek)
    ak = tpm.ak_public()
    need = ObjectAttr.RESTRICTED | ObjectAttr.SIGN_ENCRYPT | ObjectAttr.FIXED_TPM
    if ak.attributes & need != need:
        raise VerificationError("tpm.ak.attributes", f"TPMT_PUBLIC.objectAttributes: got "
                                f"0x{ak.object_attributes:x}, want restricted|sign|fixedTPM")
    challenge = make_credential(ek, ak.name())
    try:
        answer = tpm.activate_credential(challenge.credential_blob, challenge.encrypted_secret)
    except PlatformError as exc:
        raise VerificationError("tpm.ak.credential", f"ActivateCredential refused: {exc}"
                                ) from None
    if not challenge.check(answer):
        raise VerificationError("tpm.ak.credential", "the TPM answered the wrong secret")
    return RegisteredAk(ak, chain)


def _encode_counter_id(hi_off: int, lo_off: int, hi_base: int, lo_base: int) -> bytes:
    """``"V2" || u24 high offset || u24 low offset || u32 high base || u32 low base``."""
    return (_COUNTER_TAG + hi_off.to_bytes(3, "big") + lo_off.to_bytes(3, "big")
            + struct.pack(">II", hi_base, lo_base))


def _decode_counter_id(counter_id: bytes) -> tuple[int, int, int, int]:
    """(high offset, low offset, high base, low base) of a TPM counter id, or PlatformError.

    A created id (``"V2"``) records its offsets and bases; any other 16-byte id is a declared
    one (see :meth:`TpmPlatform.counter_create`): offsets from SHA-256 of it, bases 0."""
    cid = bytes(counter_id)
    if len(cid) != 16:
        raise PlatformError(f"counter id {cid.hex()}: not a TPM NV counter-pair id")
    if cid[:2] != _COUNTER_TAG:
        span = _COUNTER_RANGE[1] - _COUNTER_RANGE[0] + 1
        digest = hashlib.sha256(b"veritee declared TPM counter\0" + cid).digest()
        hi = int.from_bytes(digest[0:4], "big") % span
        lo = int.from_bytes(digest[4:8], "big") % span
        return hi, (lo + 1) % span if lo == hi else lo, 0, 0
    hi_off, lo_off = int.from_bytes(cid[2:5], "big"), int.from_bytes(cid[5:8], "big")
    hi_base, lo_base = struct.unpack(">II", cid[8:])
    span = _COUNTER_RANGE[1] - _COUNTER_RANGE[0]
    if hi_off > span or lo_off > span or hi_off == lo_off:
        raise PlatformError(f"counter id {cid.hex()}: NV index offsets outside the owner "
                            "range or equal")
    return hi_off, lo_off, hi_base, lo_base


def _encode_seal_header(selection: bytes, public: bytes, private: bytes) -> bytes:
    """magic "VTPMSEAL" || TPML_PCR_SELECTION || TPM2B_PUBLIC || TPM2B_PRIVATE, each with a
    u16 length; authenticated as AES-GCM associated data."""
    out = _SEAL_MAGIC
    for part in (selection, public, private):
        out += struct.pack(">H", len(part)) + part
    return out


def _decode_seal_header(blob: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    name = "TPM sealed blob"
    if blob[:8] != _SEAL_MAGIC:
        raise FormatError(name, "magic", got=blob[:8], want=_SEAL_MAGIC)
    pos = 8
    parts: list[bytes] = []
    for field_name in ("pcrSelection", "public", "private"):
        if pos + 2 > len(blob):
            raise FormatError(name, field_name, offset=pos, got="end of data", want="u16 size")
        (size,) = struct.unpack_from(">H", blob, pos)
        if pos + 2 + size > len(blob):
            raise FormatError(name, field_name, offset=pos, got=size, want="within the blob")
        parts.append(blob[pos + 2:pos + 2 + size])
        pos += 2 + size
    if len(blob) < pos + 12 + 16:
        raise FormatError(name, "ciphertext", offset=pos, got=len(blob) - pos,
                          want=">= 28 (nonce and tag)")
    return blob[:pos], parts[0], parts[1], parts[2]


class InsecureSwtpmPlatform(TpmPlatform):
    """A software TPM (``swtpm``) started and stopped by this object; see the module docstring.

    :meth:`open` manufactures the TPM on first use (EKs, EK certificates from a private
    ``swtpm_localca``), powers it on and runs the measured boot ``boot`` (default:
    :func:`default_boot_chain`), so the same boot gives the same PCRs in every process.
    :meth:`close` shuts the TPM down (TPM2_Shutdown, then swtpm's control channel).
    """

    # swtpm's socket file appears when it binds, a moment before it accepts connections.
    _CONNECT_ATTEMPTS = 250

    def __init__(self, process: SwtpmProcess, *, description: str) -> None:
        self._process = process
        self._finalizer = weakref.finalize(self, process.cleanup)
        name, conf = process.tcti
        try:
            super().__init__(name, conf, description=description)
        except PlatformError:
            # The connection failed: if swtpm exited meanwhile (another one holds the
            # state's lock), say why it did rather than the TCTI's "IO failure".
            exited = process.exit_message()
            process.cleanup()
            if exited is not None:
                raise PlatformError(f"swtpm exited at start: {exited}") from None
            raise
        except BaseException:
            process.cleanup()
            raise

    @classmethod
    def open(cls, state_dir: Path, *,
             boot: Sequence[BootEvent] | None = None) -> InsecureSwtpmPlatform:
        """Manufacture (first time), power on and boot the software TPM kept in ``state_dir``."""
        reason = swtpm_unavailable_reason()
        if reason is not None:
            raise PlatformError(reason)
        layout = SwtpmLayout(Path(state_dir))
        manufacture(layout)
        process = SwtpmProcess(layout)
        try:
            process.start()
        except BaseException:
            process.cleanup()  # no socket directory left behind by a refused start
            raise
        platform = cls(process, description=f"swtpm TPM 2.0 (state {state_dir}, INSECURE)")
        platform.measured_boot(default_boot_chain() if boot is None else boot)
        return platform

    @property
    def layout(self) -> SwtpmLayout:
        """Where this TPM's state and CA live."""
        return self._process.layout

    def ca_root(self) -> bytes:
        """The swtpm_localca root certificate (PEM): the anchor a verifier must be given."""
        return self.layout.root_ca.read_bytes()

    def ca_intermediates(self) -> list[bytes]:
        """The certificates between the EK certificate and the root (PEM)."""
        return [self.layout.intermediate_ca.read_bytes()]

    def _power_off(self) -> None:
        if self._esys is not None:
            tss = _pytss()
            # A TPM that refuses an orderly shutdown still has its NV on disk.
            with contextlib.suppress(tss.TSS2_Exception):
                self._esys.shutdown(tss.constants.TPM2_SU.CLEAR)
        self._disconnect()
        self._process.stop()

    def reboot(self, boot: Sequence[BootEvent] | None = None) -> None:
        """Power-cycle: PCRs return to their reset values, the event log starts again and
        ``boot`` (default :func:`default_boot_chain`) is measured. NV (counters, the EK
        certificate) and the hierarchy seeds persist."""
        self._power_off()
        self._events = []
        self._process.start()
        self._connect()
        self.measured_boot(default_boot_chain() if boot is None else boot)

    def close(self) -> None:
        """Shut the TPM down and stop swtpm."""
        self._power_off()
        self._process.cleanup()

    def __enter__(self) -> InsecureSwtpmPlatform:
        return self

