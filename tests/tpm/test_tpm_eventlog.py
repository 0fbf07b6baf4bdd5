"""TCG firmware event logs: every real sample parses and replays to the PCRs its source asserts;
hostile input only ever raises FormatError."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.errors import FormatError
from veritee.formats.eventlog import (
    SPEC_ID_SIGNATURE,
    EventLog,
    EventType,
    SpecIdEvent,
)
from veritee.formats.tpm import HashAlg

from _tpm_support import file_of, samples

LOG_SAMPLES = [s for s in samples("eventlog", "gcp-vtpm") if "event_log" in s["files"]]


def _log(sample: dict[str, Any]) -> EventLog:
    return EventLog.from_bytes(file_of(sample, "event_log").read_bytes())


def _fields(sample: dict[str, Any]) -> dict[str, Any]:
    kf: dict[str, Any] = sample.get("known_fields", {})
    return kf.get("event_log", kf)  # type: ignore[no-any-return]


@pytest.mark.evidence
@pytest.mark.parametrize("sample", LOG_SAMPLES, ids=lambda s: s["id"])
def test_real_log_parses_with_the_manifest_shape(sample: dict[str, Any]) -> None:
    log = _log(sample)
    kf = _fields(sample)
    header = kf.get("header", {})
    n_events = len(log.events) + (1 if log.crypto_agile else 0)
    if "n_events" in kf:
        assert n_events == kf["n_events"]
    if header.get("format") == "sha1-legacy":
        assert not log.crypto_agile and log.banks == (HashAlg.SHA1,)
    elif header.get("format") == "crypto-agile":
        assert log.crypto_agile
        assert [b.name.lower() for b in log.banks] == header["algorithms"]
    for name, count in kf.get("event_types", {}).items():
        # The Spec ID header event is counted by the manifest but is not in log.events.
        header_event = 1 if name == "EV_NO_ACTION" and log.crypto_agile else 0
        assert sum(1 for e in log.events if e.type_name == name) == count - header_event, name


@pytest.mark.evidence
@pytest.mark.parametrize("sample", [s for s in LOG_SAMPLES
                                    if _fields(s).get("source_asserted_pcrs")
                                    or _fields(s).get("replayed_pcrs")],
                         ids=lambda s: s["id"])
def test_real_log_replays_to_the_asserted_pcrs(sample: dict[str, Any]) -> None:
    kf = _fields(sample)
    want = kf.get("source_asserted_pcrs") or kf["replayed_pcrs"]
    log = _log(sample)
    for bank_name, values in want.items():
        bank = HashAlg.from_name(bank_name)
        replay = log.replay(bank)
        for index, value in values.items():
            got = replay.get(int(index), bytes(bank.digest_size))  # no events: reset value
            assert got.hex() == value, f"{bank_name}:{index}"


@pytest.mark.evidence
def test_startup_locality_is_honoured() -> None:
    s = next((s for s in LOG_SAMPLES if s["id"] == "glinux-laptop-no-secureboot"), None)
    if s is None:
        pytest.skip("no evidence")
    log = _log(s)
    assert log.startup_locality == 3
    replay = log.replay(HashAlg.SHA256)
    assert replay[0].hex() == _fields(s)["source_asserted_pcrs"]["sha256"]["0"]
    ignored = EventLog(log.spec_id, log.events, None).replay(HashAlg.SHA256)
    assert ignored[0] != replay[0]


@pytest.mark.evidence
def test_changed_event_changes_the_replay() -> None:
    s = next((s for s in LOG_SAMPLES if s["id"] == "gce-rhel8-secureboot"), None)
    if s is None:
        pytest.skip("no evidence")
    raw = bytearray(file_of(s, "event_log").read_bytes())
    log = EventLog.from_bytes(bytes(raw))
    ev = next(e for e in log.measured() if e.pcr == 7)
    # The first digest sits 12 bytes in (pcr, type, count) + 2 (alg id).
    raw[ev.offset + 14] ^= 1
    assert EventLog.from_bytes(bytes(raw)).replay(HashAlg.SHA1)[7] != log.replay(HashAlg.SHA1)[7]


@pytest.mark.evidence
def test_secure_boot_variable_decodes() -> None:
    s = next((s for s in LOG_SAMPLES if s["id"] == "gce-rhel8-secureboot"), None)
    if s is None:
        pytest.skip("no evidence")
    variables = [e.efi_variable() for e in _log(s).events
                 if e.type == EventType.EV_EFI_VARIABLE_DRIVER_CONFIG]
    secure_boot = next(v for v in variables if v.name == "SecureBoot")
    assert secure_boot.data == b"\x01"
    assert secure_boot.guid_str == "8be4df61-93ca-11d2-aa0d-00e098032b8c"


# -- synthetic logs and hostile input ------------------------------------------------------
def _spec_id(algs: list[tuple[int, int]]) -> bytes:
    body = SPEC_ID_SIGNATURE + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(algs))
    body += b"".join(struct.pack("<HH", a, s) for a, s in algs) + b"\x00"
    return struct.pack("<II", 0, EventType.EV_NO_ACTION) + bytes(20) + \
        struct.pack("<I", len(body)) + body


def _event2(pcr: int, etype: int, digests: list[tuple[int, bytes]], data: bytes) -> bytes:
    out = struct.pack("<III", pcr, etype, len(digests))
    out += b"".join(struct.pack("<H", a) + d for a, d in digests)
    return out + struct.pack("<I", len(data)) + data


def _tiny_log() -> bytes:
    d1 = HashAlg.SHA1.digest(b"x")
    d2 = HashAlg.SHA256.digest(b"x")
    return (_spec_id([(4, 20), (11, 32)])
            + _event2(0, EventType.EV_S_CRTM_VERSION, [(4, d1), (11, d2)], b"v")
            + _event2(7, EventType.EV_SEPARATOR, [(4, d1), (11, d2)], bytes(4)))


def test_synthetic_log_replays_by_hand() -> None:
    log = EventLog.from_bytes(_tiny_log())
    d2 = HashAlg.SHA256.digest(b"x")
    assert log.replay(HashAlg.SHA256) == {0: HashAlg.SHA256.digest(bytes(32) + d2),
                                          7: HashAlg.SHA256.digest(bytes(32) + d2)}
    with pytest.raises(FormatError):
        log.replay(HashAlg.SHA384)


@pytest.mark.parametrize("mutate", [
    lambda b: b[:-1],  # truncated data
    lambda b: b[:60],  # truncated header event
    lambda b: b[:len(_spec_id([(4, 20), (11, 32)])) + 5],  # truncated event2 header
    lambda b: b + b"\x01",  # trailing garbage
], ids=["truncated-data", "truncated-spec-id", "truncated-event", "trailing"])
def test_malformed_logs_raise_format_error(mutate: Any) -> None:
    with pytest.raises(FormatError):
        EventLog.from_bytes(mutate(_tiny_log()))


def test_digest_count_must_match_the_spec_id() -> None:
    bad = _spec_id([(4, 20), (11, 32)]) + _event2(0, 8, [(4, bytes(20))], b"")
    with pytest.raises(FormatError, match=r"digests\.count"):
        EventLog.from_bytes(bad)


def test_unlisted_algorithm_is_rejected() -> None:
    bad = _spec_id([(4, 20)]) + _event2(0, 8, [(11, bytes(20))], b"")
    with pytest.raises(FormatError, match="hashAlg"):
        EventLog.from_bytes(bad)


def test_huge_event_size_is_rejected_without_allocating() -> None:
    bad = _spec_id([(4, 20)]) + struct.pack("<III", 0, 8, 1) + b"\x04\x00" + bytes(20) + \
        struct.pack("<I", 0xFFFFFFF0)
    with pytest.raises(FormatError, match="eventDataSize"):
        EventLog.from_bytes(bad)


def test_spec_id_with_wrong_digest_size_is_rejected() -> None:
    with pytest.raises(FormatError, match="digestSize"):
        SpecIdEvent.from_bytes(_spec_id([(11, 20)])[32:])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_format_error(data: bytes) -> None:
    try:
        log = EventLog.from_bytes(data)
    except FormatError:
        return
    for bank in log.banks:
        log.replay(bank)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_log_only_raises_format_error(data: st.DataObject) -> None:
    raw = bytearray(_tiny_log())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    try:
        log = EventLog.from_bytes(bytes(raw[:cut]))
    except FormatError:
        return
    for ev in log.events:
        if ev.type in (EventType.EV_EFI_VARIABLE_BOOT, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG):
            with contextlib.suppress(FormatError):
                ev.efi_variable()
    for bank in log.banks:
        log.replay(bank)


@pytest.mark.evidence
@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_real_log_only_raises_format_error(data: st.DataObject) -> None:
    if not LOG_SAMPLES:
        pytest.skip("no evidence")
    s = data.draw(st.sampled_from(LOG_SAMPLES))
    raw = bytearray(file_of(s, "event_log").read_bytes()[:4096])
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] = data.draw(st.integers(0, 255))
    try:
        log = EventLog.from_bytes(bytes(raw))
    except FormatError:
        return
    for bank in log.banks:
        log.replay(bank)
