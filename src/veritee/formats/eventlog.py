"""TCG PC Client firmware event logs (``binary_bios_measurements``): parse and replay.

Sources (cited below by these short names):

* **PFP** - TCG "PC Client Platform Firmware Profile Specification" (version 1.05 rev 23):
  10.2.1 ``TCG_PCClientPCREvent`` (the SHA-1 event format, and the first event of a
  crypto-agile log), 10.2.2 ``TCG_PCR_EVENT2`` with ``TPML_DIGEST_VALUES``, 10.4.5.1
  ``TCG_EfiSpecIdEvent`` ("Spec ID Event03": platform class, spec version, uintnSize,
  numberOfAlgorithms, digestSizes[], vendorInfo), 10.4.5.3 ``TCG_EfiStartupLocalityEvent``
  ("StartupLocality"), 10.4.1 event types (Table 9), 10.4.4 ``UEFI_VARIABLE_DATA``.
* **Part 2** - TPM 2.0 Library Part 2, ``TPML_DIGEST_VALUES`` / ``TPMT_HA`` and ``TPM_ALG_ID``.
* Reference replays read for behaviour (not copied): go-attestation ``attest/eventlog.go``,
  go-tpm-tools ``server/eventlog.go``, keylime ``tpm_bootlog_enrich``.

Two log formats exist and both are handled:

* **SHA-1 legacy** (TPM 1.2-era firmware, and some TPM 2.0 firmware): every event is a
  ``TCG_PCClientPCREvent`` (u32 pcrIndex, u32 eventType, 20-byte SHA-1 digest, u32 eventDataSize,
  event data); only the SHA-1 bank can be replayed.
* **Crypto-agile**: the first event is a ``TCG_PCClientPCREvent`` of type EV_NO_ACTION whose
  data is the Spec ID event; it lists the algorithms and their digest sizes, and every later
  event is a ``TCG_PCR_EVENT2`` carrying one digest per listed bank.

All integers are little-endian. Parsing is bounded: every length is checked against the bytes
that remain, digest counts against the Spec ID algorithm list, and the number of events against
:data:`MAX_EVENTS`, so hostile input raises :class:`~veritee.errors.FormatError` and never makes
the parser allocate or loop more than the input's size allows.

Replay (PFP 3.3.4 / TPM Part 1 "PCR extend"): every event except EV_NO_ACTION extends its PCR
in each bank, ``PCR := H(PCR || digest)``. PCRs start at zero, except PCR 0, whose reset value
records the locality the platform started from (PFP 3.3.4.1 and 10.4.5.3; TPM Part 1,
"Locality and PCR 0"): a StartupLocality event gives it (3: TPM2_Startup from locality 3, so PCR 0
starts at 0..03; 4: an H-CRTM measured from locality 4 with _TPM_Hash_Start, so 0..04). A log
with an EV_EFI_HCRTM_EVENT in PCR 0 and no StartupLocality event is an H-CRTM log too (the
H-CRTM sequence is only possible from locality 4), so PCR 0 then starts at 0..04 as well.

Banks: every algorithm the Spec ID event lists is kept with its digests. SM3_256 (0x0012, on
TPMs sold in China) is replayed with ``cryptography``'s SM3 when the OpenSSL build has it; an
algorithm that cannot be hashed here is named in :attr:`EventLog.unreplayable_banks` rather
than silently dropped. Checks
deliberately left out here: that an event's digest equals the hash of its data (firmware hashes
many events over data not in the log, e.g. a PE image), and any interpretation of what the
events mean - that is policy's job.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from veritee.errors import FormatError
from veritee.formats.tpm import HashAlg, sm3_available

__all__ = [
    "EXIT_BOOT_SERVICES_ACTIONS",
    "EXIT_BOOT_SERVICES_WORKAROUNDS",
    "HCRTM_LOCALITY",
    "MAX_EVENTS",
    "SPEC_ID_SIGNATURE",
    "STARTUP_LOCALITY_SIGNATURE",
    "AlgorithmSize",
    "EfiVariable",
    "Event",
    "EventLog",
    "EventType",
    "SpecIdEvent",
]

MAX_EVENTS = 65536
"""Upper bound on the number of events in one log (real logs hold tens to a few thousand)."""
MAX_EVENT_DATA = 16 * 1024 * 1024
"""Upper bound on one event's data (bounded by the buffer anyway; a cap keeps errors clear)."""
MAX_PCR_INDEX = 31
"""PC-client TPMs have 24 PCRs; anything above 31 is not a PCR this replay will create."""

SPEC_ID_SIGNATURE = b"Spec ID Event03\0"
"""``TCG_EfiSpecIdEvent.signature`` for TPM 2.0 crypto-agile logs (PFP 10.4.5.1)."""
STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\0"
"""``TCG_EfiStartupLocalityEvent.Signature`` (PFP 10.4.5.3)."""

HCRTM_LOCALITY = 4
"""The locality an H-CRTM measures from (_TPM_Hash_Start): PCR 0 then starts at 0..04."""
_STARTUP_LOCALITIES = (0, 3, HCRTM_LOCALITY)
"""StartupLocality values the PFP defines (10.4.5.3): 0, 3, and 4 for an H-CRTM."""

EXIT_BOOT_SERVICES_ACTIONS = (b"Exit Boot Services Invocation",
                              b"Exit Boot Services Returned with Success",
                              b"Exit Boot Services Returned with Failure")
"""The EV_EFI_ACTION strings UEFI firmware measures into PCR 5 at ExitBootServices (PFP
10.4.4 Table 10, "EV_EFI_ACTION event strings")."""
EXIT_BOOT_SERVICES_WORKAROUNDS: tuple[tuple[bytes, ...], ...] = (
    (EXIT_BOOT_SERVICES_ACTIONS[0], EXIT_BOOT_SERVICES_ACTIONS[1]),
    (EXIT_BOOT_SERVICES_ACTIONS[0], EXIT_BOOT_SERVICES_ACTIONS[2]),
    (EXIT_BOOT_SERVICES_ACTIONS[0], EXIT_BOOT_SERVICES_ACTIONS[2], EXIT_BOOT_SERVICES_ACTIONS[1]),
)
"""The ExitBootServices event sequences some firmware extends into PCR 5 without logging
them; go-attestation (``attest/eventlog_workarounds.go``) appends each in turn when PCR 5 does
not replay, and so does :func:`veritee.trust.tpm.replay_event_log` (reported as a finding)."""

_NAME = "TCG_EVENT_LOG"
_SHA1_SIZE = 20
_LEGACY_HEADER = 4 + 4 + _SHA1_SIZE + 4


class EventType(enum.IntEnum):
    """Event types (PFP 10.4.1, Table 9). Unknown values are kept as plain ints."""

    EV_PREBOOT_CERT = 0x00000000
    EV_POST_CODE = 0x00000001
    EV_UNUSED = 0x00000002
    EV_NO_ACTION = 0x00000003
    EV_SEPARATOR = 0x00000004
    EV_ACTION = 0x00000005
    EV_EVENT_TAG = 0x00000006
    EV_S_CRTM_CONTENTS = 0x00000007
    EV_S_CRTM_VERSION = 0x00000008
    EV_CPU_MICROCODE = 0x00000009
    EV_PLATFORM_CONFIG_FLAGS = 0x0000000A
    EV_TABLE_OF_DEVICES = 0x0000000B
    EV_COMPACT_HASH = 0x0000000C
    EV_IPL = 0x0000000D
    EV_IPL_PARTITION_DATA = 0x0000000E
    EV_NONHOST_CODE = 0x0000000F
    EV_NONHOST_CONFIG = 0x00000010
    EV_NONHOST_INFO = 0x00000011
    EV_OMIT_BOOT_DEVICE_EVENTS = 0x00000012
    EV_POST_CODE2 = 0x00000013
    EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
    EV_EFI_VARIABLE_BOOT = 0x80000002
    EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
    EV_EFI_BOOT_SERVICES_DRIVER = 0x80000004
    EV_EFI_RUNTIME_SERVICES_DRIVER = 0x80000005
    EV_EFI_GPT_EVENT = 0x80000006
    EV_EFI_ACTION = 0x80000007
    EV_EFI_PLATFORM_FIRMWARE_BLOB = 0x80000008
    EV_EFI_HANDOFF_TABLES = 0x80000009
    EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000000A
    EV_EFI_HANDOFF_TABLES2 = 0x8000000B
    EV_EFI_VARIABLE_BOOT2 = 0x8000000C
    EV_EFI_GPT_EVENT2 = 0x8000000D
    EV_EFI_HCRTM_EVENT = 0x80000010
    EV_EFI_VARIABLE_AUTHORITY = 0x800000E0
    EV_EFI_SPDM_FIRMWARE_BLOB = 0x800000E1
    EV_EFI_SPDM_FIRMWARE_CONFIG = 0x800000E2


_VARIABLE_EVENTS = frozenset({EventType.EV_EFI_VARIABLE_DRIVER_CONFIG,
                              EventType.EV_EFI_VARIABLE_BOOT, EventType.EV_EFI_VARIABLE_BOOT2,
                              EventType.EV_EFI_VARIABLE_AUTHORITY})


@dataclass(frozen=True)
class AlgorithmSize:
    """``TCG_EfiSpecIdEventAlgorithmSize`` (PFP 10.4.5.1): an algorithm id and its size.

    ``hash_alg`` is ``None`` for an algorithm this module cannot replay (e.g. SM3); its
    digests are still skipped correctly using ``digest_size``.
    """

    algorithm_id: int
    digest_size: int
    hash_alg: HashAlg | None


@dataclass(frozen=True)
class SpecIdEvent:
    """``TCG_EfiSpecIdEvent`` (PFP 10.4.5.1), the data of a crypto-agile log's first event."""

    platform_class: int
    spec_version_minor: int
    spec_version_major: int
    spec_errata: int
    uintn_size: int
    algorithms: tuple[AlgorithmSize, ...]
    vendor_info: bytes

    @classmethod
    def from_bytes(cls, data: bytes, *, base: int = 0) -> SpecIdEvent:
        """Parse the Spec ID event data (the whole of the first event's data)."""
        name = "TCG_EfiSpecIdEvent"
        min_len = 16 + 4 + 4 + 4 + 1
        if len(data) < min_len:
            raise FormatError(name, "<length>", offset=base, got=len(data), want=f">= {min_len}")
        if data[:16] != SPEC_ID_SIGNATURE:
            raise FormatError(name, "signature", offset=base, got=data[:16],
                              want=SPEC_ID_SIGNATURE)
        platform_class, minor, major, errata, uintn, count = struct.unpack_from(
            "<IBBBBI", data, 16)
        if uintn not in (1, 2):
            raise FormatError(name, "uintnSize", offset=base + 23, got=uintn,
                              want="1 (UINT32) or 2 (UINT64)")
        if count == 0 or count > 16 or len(data) < 28 + 4 * count + 1:
            raise FormatError(name, "numberOfAlgorithms", offset=base + 24, got=count,
                              want="1..16, within the event")
        algs: list[AlgorithmSize] = []
        seen: set[int] = set()
        for n in range(count):
            o = 28 + 4 * n
            alg_id, size = struct.unpack_from("<HH", data, o)
            if alg_id in seen or not 0 < size <= 64:
                raise FormatError(name, f"digestSizes[{n}]", offset=base + o,
                                  got=f"alg 0x{alg_id:04x} size {size}",
                                  want="distinct algorithms, sizes 1..64")
            seen.add(alg_id)
            known: HashAlg | None
            try:
                known = HashAlg(alg_id)
            except ValueError:
                known = None
            if known is not None and known.digest_size != size:
                raise FormatError(name, f"digestSizes[{n}].digestSize", offset=base + o + 2,
                                  got=size, want=known.digest_size)
            algs.append(AlgorithmSize(alg_id, size, known))
        o = 28 + 4 * count
        vendor_size = data[o]
        if len(data) != o + 1 + vendor_size:
            raise FormatError(name, "vendorInfoSize", offset=base + o, got=vendor_size,
                              want=f"{len(data) - o - 1} (the rest of the event)")
        return cls(platform_class, minor, major, errata, uintn, tuple(algs),
                   data[o + 1:])


@dataclass(frozen=True)
class EfiVariable:
    """``UEFI_VARIABLE_DATA`` (PFP 10.4.4): the data of an EV_EFI_VARIABLE_* event."""

    guid: bytes  # 16 bytes, EFI_GUID in its mixed-endian wire form
    name: str
    data: bytes

    @property
    def guid_str(self) -> str:
        """The GUID in its canonical text form."""
        g = self.guid
        d1, d2, d3 = struct.unpack_from("<IHH", g)
        return f"{d1:08x}-{d2:04x}-{d3:04x}-{g[8:10].hex()}-{g[10:16].hex()}"


@dataclass(frozen=True)
class Event:
    """One measured event. ``digests`` maps each bank to the digest that was extended.

    ``type`` is an :class:`EventType` when known, else the raw u32. ``offset`` is where the
    event starts in the log.
    """

    index: int
    pcr: int
    type: EventType | int
    digests: Mapping[int, bytes]
    data: bytes = field(repr=False)
    offset: int = 0

    @property
    def type_name(self) -> str:
        """``EV_*`` name, or the hex value of an unknown type."""
        return self.type.name if isinstance(self.type, EventType) else f"0x{self.type:08x}"

    def digest(self, alg: HashAlg) -> bytes | None:
        """The digest for bank ``alg``, if the event carries one."""
        return self.digests.get(int(alg))

    def efi_variable(self) -> EfiVariable:
        """Decode the data of an EV_EFI_VARIABLE_* event (PFP 10.4.4)."""
        name = "UEFI_VARIABLE_DATA"
        if self.type not in _VARIABLE_EVENTS:
            raise FormatError(name, "eventType", offset=self.offset, got=self.type_name,
                              want="an EV_EFI_VARIABLE_* event")
        d = self.data
        if len(d) < 32:
            raise FormatError(name, "<length>", offset=self.offset, got=len(d), want=">= 32")
        name_len, data_len = struct.unpack_from("<QQ", d, 16)
        if 32 + 2 * name_len + data_len != len(d):
            raise FormatError(name, "UnicodeNameLength/VariableDataLength",
                              offset=self.offset, got=f"{name_len}/{data_len}",
                              want=f"lengths adding up to {len(d)} bytes")
        try:
            text = d[32:32 + 2 * name_len].decode("utf-16-le")
        except UnicodeDecodeError:
            raise FormatError(name, "UnicodeName", offset=self.offset, got=d[32:64],
                              want="UTF-16LE") from None
        return EfiVariable(d[:16], text, d[32 + 2 * name_len:])


@dataclass(frozen=True)
class EventLog:
    """A parsed event log.

    ``spec_id`` is ``None`` for a SHA-1 legacy log. ``events`` excludes the crypto-agile
    header event (it is not measured) but includes every other event, EV_NO_ACTION ones too.
    ``startup_locality`` is the locality from a StartupLocality event, if any.
    """

    spec_id: SpecIdEvent | None
    events: tuple[Event, ...]
    startup_locality: int | None
    raw: bytes = field(repr=False, compare=False, default=b"")

    @property
    def crypto_agile(self) -> bool:
        """True for a TCG_PCR_EVENT2 log."""
        return self.spec_id is not None

    @property
    def banks(self) -> tuple[HashAlg, ...]:
        """The banks this log can be replayed in (SM3_256 only where SM3 is available)."""
        if self.spec_id is None:
            return (HashAlg.SHA1,)
        sm3 = sm3_available()
        return tuple(a.hash_alg for a in self.spec_id.algorithms if a.hash_alg is not None
                     and (a.hash_alg is not HashAlg.SM3_256 or sm3))

    @property
    def unreplayable_banks(self) -> tuple[str, ...]:
        """Banks the log carries digests for but this verifier cannot hash, by name
        (``SM3_256`` without an SM3-capable OpenSSL, or an algorithm id it does not know):
        kept in :attr:`Event.digests`, reported, never silently dropped."""
        if self.spec_id is None:
            return ()
        known = set(self.banks)
        return tuple(a.hash_alg.name if a.hash_alg is not None else f"0x{a.algorithm_id:04x}"
                     for a in self.spec_id.algorithms
                     if a.hash_alg is None or a.hash_alg not in known)

    @property
    def hcrtm(self) -> bool:
        """True when PCR 0 holds an EV_EFI_HCRTM_EVENT (an H-CRTM platform)."""
        return any(e.pcr == 0 and e.type == EventType.EV_EFI_HCRTM_EVENT for e in self.events)

    @property
    def pcr0_locality(self) -> int:
        """The locality PCR 0 was reset for (its reset value is 0..0 || locality): the
        StartupLocality event's, else 4 for an H-CRTM log, else 0 (PFP 10.4.5.3)."""
        if self.startup_locality is not None:
            return self.startup_locality
        return HCRTM_LOCALITY if self.hcrtm else 0

    def has_exit_boot_services(self) -> bool:
        """True when PCR 5 has an ExitBootServices EV_EFI_ACTION event."""
        return any(e.pcr == 5 and e.type == EventType.EV_EFI_ACTION
                   and bytes(e.data) in EXIT_BOOT_SERVICES_ACTIONS for e in self.events)

    def measured(self) -> Iterable[Event]:
        """The events that extend a PCR (everything but EV_NO_ACTION)."""
        return (e for e in self.events if e.type != EventType.EV_NO_ACTION)

    def pcrs_extended(self) -> frozenset[int]:
        """PCR indices at least one measured event extends."""
        return frozenset(e.pcr for e in self.measured())

    def replay(self, alg: HashAlg) -> dict[int, bytes]:
        """Replay bank ``alg``: the final value of every PCR a measured event touches.

        Raises :class:`FormatError` when the log has no digests for ``alg``.
        """
        if alg not in self.banks:
            raise FormatError(_NAME, "bank", got=alg.name,
                              want=f"one of {[b.name for b in self.banks]}")
        size = alg.digest_size
        pcrs: dict[int, bytes] = {}
        for ev in self.measured():
            digest = ev.digests.get(int(alg))
            if digest is None:  # pragma: no cover - parse guarantees one digest per bank
                raise FormatError(_NAME, f"event[{ev.index}].digests", offset=ev.offset,
                                  got="missing", want=alg.name)
            if ev.pcr not in pcrs:
                start = bytes(size)
                if ev.pcr == 0:
                    start = bytes(size - 1) + bytes([self.pcr0_locality])
                pcrs[ev.pcr] = start
            pcrs[ev.pcr] = alg.digest(pcrs[ev.pcr] + digest)
        return pcrs

    def replay_all(self) -> dict[HashAlg, dict[int, bytes]]:
        """:meth:`replay` for every bank the log carries."""
        return {alg: self.replay(alg) for alg in self.banks}

    @classmethod
    def from_bytes(cls, data: bytes) -> EventLog:
        """Parse a legacy or crypto-agile log. The whole buffer must be events.

        Trailing zero bytes after the last event (firmware that reports the log area, not the
        log, length) are accepted and ignored; any other trailing bytes are an error.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise FormatError(_NAME, "<buffer>", got=type(data).__name__, want="bytes")
        buf = bytes(data)
        if len(buf) < _LEGACY_HEADER:
            raise FormatError(_NAME, "<length>", got=len(buf),
                              want=f">= {_LEGACY_HEADER} (one event)")
        first, pos = _read_legacy(buf, 0, 0)
        spec: SpecIdEvent | None = None
        events: list[Event] = []
        if (first.type == EventType.EV_NO_ACTION and first.pcr == 0
                and first.data[:16] == SPEC_ID_SIGNATURE):
            if any(first.digests[int(HashAlg.SHA1)]):
                raise FormatError(_NAME, "event[0].digest", offset=8,
                                  got=first.digests[int(HashAlg.SHA1)], want="all zero")
            spec = SpecIdEvent.from_bytes(first.data, base=_LEGACY_HEADER)
        else:
            events.append(first)
        # Where the zero padding after the last event starts, found once: testing the rest of
        # the buffer at every event (any(buf[pos:])) copied it per event, quadratic in size.
        end = len(buf.rstrip(b"\x00"))
        while pos < len(buf):
            if pos >= end:
                break  # zero padding after the last event
            if len(events) >= MAX_EVENTS:
                raise FormatError(_NAME, "events", offset=pos, got=f"> {MAX_EVENTS}",
                                  want=f"<= {MAX_EVENTS} events")
            n = len(events) + (1 if spec is not None else 0)
            if spec is None:
                ev, pos = _read_legacy(buf, pos, n)
            else:
                ev, pos = _read_agile(buf, pos, n, spec)
            events.append(ev)
        locality: int | None = None
        for ev in events:
            if (ev.type == EventType.EV_NO_ACTION
                    and ev.data[:16] == STARTUP_LOCALITY_SIGNATURE):
                if len(ev.data) != 17:
                    raise FormatError("TCG_EfiStartupLocalityEvent", "<length>",
                                      offset=ev.offset, got=len(ev.data), want=17)
                if locality is not None:
                    raise FormatError("TCG_EfiStartupLocalityEvent", "StartupLocality",
                                      offset=ev.offset, got="a second event", want="one")
                locality = ev.data[16]
                if locality not in _STARTUP_LOCALITIES:
                    raise FormatError("TCG_EfiStartupLocalityEvent", "StartupLocality",
                                      offset=ev.offset + 16, got=locality,
                                      want="0, 3 or 4 (H-CRTM) (PFP 10.4.5.3)")
        return cls(spec, tuple(events), locality, raw=buf)


def _check_pcr(pcr: int, n: int, offset: int, event_type: int) -> None:
    # EV_NO_ACTION events are never extended; Windows logs put some in PCR 0xFFFFFFFF.
    if pcr > MAX_PCR_INDEX and event_type != EventType.EV_NO_ACTION:
        raise FormatError(_NAME, f"event[{n}].pcrIndex", offset=offset, got=pcr,
                          want=f"<= {MAX_PCR_INDEX}")


def _event_type(value: int) -> EventType | int:
    try:
        return EventType(value)
    except ValueError:
        return value


def _read_data(buf: bytes, pos: int, n: int) -> tuple[bytes, int]:
    if pos + 4 > len(buf):
        raise FormatError(_NAME, f"event[{n}].eventDataSize", offset=pos,
                          got=f"{len(buf) - pos} bytes left", want="4 bytes")
    (size,) = struct.unpack_from("<I", buf, pos)
    if size > MAX_EVENT_DATA or pos + 4 + size > len(buf):
        raise FormatError(_NAME, f"event[{n}].eventDataSize", offset=pos, got=size,
                          want=f"<= {len(buf) - pos - 4} (bytes left)")
    return buf[pos + 4:pos + 4 + size], pos + 4 + size


def _read_legacy(buf: bytes, pos: int, n: int) -> tuple[Event, int]:
    """``TCG_PCClientPCREvent`` (PFP 10.2.1)."""
    if pos + _LEGACY_HEADER > len(buf):
        raise FormatError(_NAME, f"event[{n}]", offset=pos, got=f"{len(buf) - pos} bytes left",
                          want=f">= {_LEGACY_HEADER} (TCG_PCClientPCREvent header)")
    pcr, etype = struct.unpack_from("<II", buf, pos)
    _check_pcr(pcr, n, pos, etype)
    digest = buf[pos + 8:pos + 8 + _SHA1_SIZE]
    data, end = _read_data(buf, pos + 8 + _SHA1_SIZE, n)
    return Event(n, pcr, _event_type(etype), {int(HashAlg.SHA1): digest}, data, pos), end


def _read_agile(buf: bytes, pos: int, n: int, spec: SpecIdEvent) -> tuple[Event, int]:
    """``TCG_PCR_EVENT2`` (PFP 10.2.2) with ``TPML_DIGEST_VALUES`` (Part 2)."""
    start = pos
    if pos + 12 > len(buf):
        raise FormatError(_NAME, f"event[{n}]", offset=pos, got=f"{len(buf) - pos} bytes left",
                          want=">= 12 (TCG_PCR_EVENT2 header)")
    pcr, etype, count = struct.unpack_from("<III", buf, pos)
    _check_pcr(pcr, n, pos, etype)
    sizes = {a.algorithm_id: a.digest_size for a in spec.algorithms}
    if count != len(sizes):
        raise FormatError(_NAME, f"event[{n}].digests.count", offset=pos + 8, got=count,
                          want=f"{len(sizes)} (one per Spec ID algorithm)")
    pos += 12
    digests: dict[int, bytes] = {}
    for k in range(count):
        if pos + 2 > len(buf):
            raise FormatError(_NAME, f"event[{n}].digests[{k}].hashAlg", offset=pos,
                              got="end of log", want="2 bytes")
        (alg,) = struct.unpack_from("<H", buf, pos)
        if alg not in sizes or alg in digests:
            raise FormatError(_NAME, f"event[{n}].digests[{k}].hashAlg", offset=pos,
                              got=f"0x{alg:04x}",
                              want="each Spec ID algorithm once: "
                                   + ", ".join(f"0x{a:04x}" for a in sizes))
        size = sizes[alg]
        if pos + 2 + size > len(buf):
            raise FormatError(_NAME, f"event[{n}].digests[{k}].digest", offset=pos + 2,
                              got=f"{len(buf) - pos - 2} bytes left", want=f"{size} bytes")
        digests[alg] = buf[pos + 2:pos + 2 + size]
        pos += 2 + size
    data, end = _read_data(buf, pos, n)
    return Event(n, pcr, _event_type(etype), digests, data, start), end
