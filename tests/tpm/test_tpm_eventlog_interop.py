"""Event-log interop (issue 11): H-CRTM locality, an SM3_256 bank, firmware that omits the
ExitBootServices events, and replaying a log against PCR values a person has in hand.

Each log is built here (no such real log is in the shared corpus): the Hygon server's log the
issue describes has an H-CRTM (EV_EFI_HCRTM_EVENT, StartupLocality 4) and an SM3_256 bank
beside SHA-256; GCE's Debian 10 firmware omits ExitBootServices.
"""

from __future__ import annotations

import contextlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.errors import FormatError, VerificationError
from veritee.formats.eventlog import EventLog
from veritee.formats.tpm import HashAlg, parse_pcr_values_text, sm3_available
from veritee.trust.tpm import replay_event_log, verify_quote

from _tpm_support import (
    EV_EFI_ACTION,
    EV_EFI_HCRTM_EVENT,
    build_log,
    make_attest,
    replay_by_hand,
    sign,
)

SHA256 = HashAlg.SHA256


def _pcr0(locality: int) -> bytes:
    return bytes(31) + bytes([locality])


# -- H-CRTM: PCR 0 starts from the locality (PFP 10.4.5.3) --------------------------------
@pytest.mark.parametrize("locality", [3, 4])
def test_startup_locality_sets_pcr0_reset_value(locality: int) -> None:
    log = EventLog.from_bytes(build_log([(0, EV_EFI_HCRTM_EVENT, b"HCRTM"), (0, b"fw")],
                                        locality=locality))
    want = replay_by_hand(SHA256, [SHA256.digest(b"HCRTM"), SHA256.digest(b"fw")],
                          start=_pcr0(locality))
    assert log.pcr0_locality == locality
    assert log.replay(SHA256)[0] == want


def test_hcrtm_event_without_startup_locality_starts_pcr0_at_locality_4() -> None:
    """An H-CRTM is measured from locality 4 (_TPM_Hash_Start); a log that records the
    EV_EFI_HCRTM_EVENT but no StartupLocality event still replays PCR 0 from 0..04 (the old
    replay started it at zero and mismatched the quoted PCR 0)."""
    log = EventLog.from_bytes(build_log([(0, EV_EFI_HCRTM_EVENT, b"HCRTM"), (0, b"fw"),
                                         (7, b"sb")]))
    assert log.hcrtm and log.startup_locality is None
    want = replay_by_hand(SHA256, [SHA256.digest(b"HCRTM"), SHA256.digest(b"fw")],
                          start=_pcr0(4))
    assert log.replay(SHA256)[0] == want
    # PCR 7 is unaffected by the locality.
    assert log.replay(SHA256)[7] == replay_by_hand(SHA256, [SHA256.digest(b"sb")])


def test_startup_locality_outside_the_profile_is_a_format_error() -> None:
    with pytest.raises(FormatError) as info:
        EventLog.from_bytes(build_log([(0, b"fw")], locality=7))
    assert "StartupLocality" in str(info.value)


# -- SM3_256 banks are kept ------------------------------------------------------------------
BANKS_SM3 = (HashAlg.SHA256, HashAlg.SM3_256)


@pytest.mark.skipif(not sm3_available(), reason="this OpenSSL build has no SM3")
def test_sm3_bank_is_replayed_not_dropped() -> None:
    log = EventLog.from_bytes(build_log([(0, b"fw"), (4, b"boot")], banks=BANKS_SM3,
                                        locality=4))
    assert HashAlg.SM3_256 in log.banks
    assert log.unreplayable_banks == ()
    sm3 = HashAlg.SM3_256
    assert log.replay(sm3)[4] == replay_by_hand(sm3, [sm3.digest(b"boot")])
    assert log.replay(sm3)[0] == replay_by_hand(sm3, [sm3.digest(b"fw")], start=_pcr0(4))
    # SM3 known answer (GB/T 32905 example 1): SM3("abc").
    assert sm3.digest(b"abc").hex() == ("66c7f0f462eeedd9d1f2d46bdc10e4e2"
                                        "4167c4875cf2f7a2297da02b8f4ba8e0")
    # Against given values the SM3 bank is compared like any other.
    values = {sm3: dict(log.replay(sm3)), SHA256: dict(log.replay(SHA256))}
    assert replay_event_log(log, values).ok
    values[sm3][4] = bytes(32)
    assert not replay_event_log(log, values).ok


def test_sm3_bank_without_sm3_is_reported_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the OpenSSL build lacks SM3 the bank is named as not replayable (a policy can see
    it), the SHA-256 bank still replays, and values given only for SM3 are not 'ok'."""
    import veritee.formats.eventlog as eventlog_module

    monkeypatch.setattr(eventlog_module, "sm3_available", lambda: False)
    # Built by hand: the SM3 digests cannot be computed here either.
    sha = HashAlg.SHA256
    spec = eventlog_module.SpecIdEvent(0, 0, 2, 0, 2, (
        eventlog_module.AlgorithmSize(int(sha), 32, sha),
        eventlog_module.AlgorithmSize(0x12, 32, HashAlg.SM3_256)), b"")
    event = eventlog_module.Event(0, 0, 0x0D, {int(sha): sha.digest(b"fw"), 0x12: bytes(32)},
                                  b"fw")
    sm3_log = EventLog(spec, (event,), None)
    assert sm3_log.banks == (HashAlg.SHA256,)
    assert sm3_log.unreplayable_banks == ("SM3_256",)
    result = replay_event_log(sm3_log, {HashAlg.SM3_256: {0: bytes(32)}})
    assert not result.ok and result.unreplayable_banks == ("SM3_256",)


# -- ExitBootServices events omitted by the firmware -------------------------------------------
EBS_INVOCATION = b"Exit Boot Services Invocation"
EBS_SUCCESS = b"Exit Boot Services Returned with Success"


def _ebs_values(log: EventLog, *actions: bytes) -> dict[HashAlg, dict[int, bytes]]:
    out: dict[HashAlg, dict[int, bytes]] = {}
    for bank in log.banks:
        replay = log.replay(bank)
        values = {i: replay.get(i, bytes(bank.digest_size)) for i in range(8)}
        values[5] = replay_by_hand(bank, [bank.digest(a) for a in actions], start=replay[5])
        out[bank] = values
    return out


def _boot(with_ebs: bool = False) -> EventLog:
    events: list[tuple[int, bytes] | tuple[int, int, bytes]] = [
        (0, b"fw"), (4, b"app"), (5, EV_EFI_ACTION, b"gpt"), (7, b"sb")]
    if with_ebs:
        events += [(5, EV_EFI_ACTION, EBS_INVOCATION), (5, EV_EFI_ACTION, EBS_SUCCESS)]
    return EventLog.from_bytes(build_log(events))


def test_missing_exit_boot_services_matches_with_the_workaround() -> None:
    log = _boot()
    result = replay_event_log(log, _ebs_values(log, EBS_INVOCATION, EBS_SUCCESS))
    assert result.ok
    assert result.workaround == "EBS Invocation + Success"


def test_workaround_is_not_applied_to_a_log_that_has_the_events() -> None:
    """A log that already records ExitBootServices gets no second helping: PCR 5 extended
    twice more than logged is a mismatch."""
    log = _boot(with_ebs=True)
    result = replay_event_log(log, _ebs_values(log, EBS_INVOCATION, EBS_SUCCESS))
    assert not result.ok
    assert {i for _, i, _, _ in result.mismatched} == {5}


def test_workaround_does_not_explain_other_pcr5_values() -> None:
    log = _boot()
    result = replay_event_log(log, _ebs_values(log, EBS_INVOCATION, b"something else"))
    assert not result.ok and result.workaround is None


def test_quote_with_missing_exit_boot_services_records_the_workaround() -> None:
    """Through verify_quote the workaround is recorded for the policy's
    tpm.eventlog.exit_boot_services_missing (refused by default, see test_tpm_policy)."""
    log = _boot()
    values = _ebs_values(log, EBS_INVOCATION, EBS_SUCCESS)
    key = ec.generate_private_key(ec.SECP256R1())
    pcrs = {SHA256: values[SHA256]}
    attest = make_attest(pcrs, b"n", SHA256).to_bytes()
    from veritee.formats.tpm import SigAlg

    sig = sign(key, attest, SigAlg.ECDSA)
    v = verify_quote(attest, sig, key.public_key(), nonce=b"n", pcrs=pcrs, event_log=log)
    assert v.eventlog_workaround == "EBS Invocation + Success"
    wrong = {SHA256: {**values[SHA256], 5: bytes(32)}}
    attest = make_attest(wrong, b"n", SHA256).to_bytes()
    with pytest.raises(VerificationError) as info:
        verify_quote(attest, sign(key, attest, SigAlg.ECDSA), key.public_key(), nonce=b"n",
                     pcrs=wrong, event_log=log)
    assert info.value.code == "tpm.eventlog.replay_mismatch"


# -- PCR values in hand: tpm2_pcrread YAML or JSON -----------------------------------------------
def test_pcrread_yaml_and_json_parse_alike() -> None:
    a, b = "ab" * 20, "cd" * 32
    yaml = f"  sha1:\n    0 : 0x{a.upper()}\n  sha256:\n    0 : 0x{b}\n    10: 0x{b}\n"
    parsed = parse_pcr_values_text(yaml.encode())
    assert parsed == {HashAlg.SHA1: {0: bytes.fromhex(a)},
                      SHA256: {0: bytes.fromhex(b), 10: bytes.fromhex(b)}}
    as_json = f'{{"pcrs": {{"sha1": {{"0": "{a}"}}, "sha256": {{"0": "0x{b}", "10": "{b}"}}}}}}'
    assert parse_pcr_values_text(as_json.encode()) == parsed


@pytest.mark.parametrize("text", [
    b"sha256:\n  0 : 0x00\n",  # wrong size
    b"  0 : 0x" + b"00" * 32 + b"\n",  # no bank
    b"md5:\n  0 : 0x" + b"00" * 16 + b"\n",  # unknown bank
    b"sha256:\n  0 : 0x" + b"00" * 32 + b"\n  0 : 0x" + b"00" * 32 + b"\n",  # twice
    b"sha256:\n  40 : 0x" + b"00" * 32 + b"\n",  # no PCR 40
    b"{\"sha256\": {\"0\": 5}}",
    b"",
    b"\xff\xfe",
])
def test_bad_pcr_values_are_format_errors(text: bytes) -> None:
    with pytest.raises(FormatError):
        parse_pcr_values_text(text)


# -- parsers only ever raise FormatError ------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=300),
                 st.text(alphabet="sha0123456789abcdefx: \n{}\"pcrs,", max_size=200)
                 .map(str.encode)))
def test_pcr_values_parser_only_raises_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        parse_pcr_values_text(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_tpm_scheme_parse_only_raises_format_error(data: bytes) -> None:
    from veritee.schemes import get

    scheme = get("tpm")
    for candidate in (data, b'{"ak_public": "", "tpm_quote": {}}' + data,
                      b"\x0a\x10\x00\x23\x00\x0b" + data):
        if scheme.recognise(candidate):
            with contextlib.suppress(FormatError):
                scheme.parse(candidate)


def test_event_log_no_quote_backs_is_unused_and_a_policy_needing_it_refuses() -> None:
    """A fake TPM (real ECDSA key) quotes only PCR 16 but sends a firmware log: nothing of the
    log is backed by the quote, so it replays nothing; require_event_log refuses it."""
    from veritee import attest
    from veritee.formats.tpm import SigAlg, encode_tpm_evidence_json
    from veritee.policy.tpm import TpmPolicy, ak_pin
    from veritee.trust.tpm import ak_spki

    key = ec.generate_private_key(ec.SECP256R1())
    pcrs = {SHA256: {16: bytes(32)}}
    attest_bytes = make_attest(pcrs, b"n", SHA256).to_bytes()
    ev = encode_tpm_evidence_json(ak_spki_der=ak_spki(key.public_key()), attest=attest_bytes,
                                  signature=sign(key, attest_bytes, SigAlg.ECDSA), pcrs=pcrs,
                                  event_log=_boot().raw)
    pin = frozenset({ak_pin(key.public_key())})
    a = attest.verify(ev, policy=TpmPolicy(ak_pins=pin), expected_binding=b"n")
    assert a.claims["event_log_replayed"] == []  # type: ignore[union-attr]
    from veritee.errors import PolicyRejected

    with pytest.raises(PolicyRejected) as info:
        attest.verify(ev, policy=TpmPolicy(ak_pins=pin, require_event_log=True),
                      expected_binding=b"n")
    assert info.value.appraisal.codes() == ["tpm.eventlog.missing"]
