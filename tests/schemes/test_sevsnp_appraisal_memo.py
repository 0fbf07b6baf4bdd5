"""The SEV-SNP appraisal and parse kept per guest (schemes.sevsnp): a report that differs
from an appraised one only in REPORT_DATA reuses that appraisal, with its own REPORT_DATA
claims and trace; anything else the appraisal reads gives a fresh one. Each result is
compared with the appraisal made with the memo empty; the parse likewise."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from veritee import attest, schemes
from veritee.errors import FormatError
from veritee.formats.sevsnp import AttestationReport, CertTable, CertTableEntry, GuestPolicy
from veritee.policy import Appraisal
from veritee.policy.sevsnp import SevSnpPolicy, TcbFloor
from veritee.schemes import sevsnp as scheme_module
from veritee.testing.amd import DEFAULT_NOW, FakeAmd, FakeAmdKeys


@pytest.fixture(scope="module")
def amd() -> FakeAmd:
    return FakeAmd(keys=FakeAmdKeys.generate(key_size=2048))


@pytest.fixture(autouse=True)
def _empty_memo() -> Iterator[None]:
    scheme_module._APPRAISALS.clear()
    yield
    scheme_module._APPRAISALS.clear()


POLICY = SevSnpPolicy(measurements=frozenset({bytes(range(48))}),
                      min_tcb=TcbFloor(bootloader=1, tee=0, snp=1, microcode=1))


def _appraise(amd: FakeAmd, rules: SevSnpPolicy = POLICY, **fields: Any) -> Appraisal:
    report = amd.make_report(**fields)
    result = attest.Verifier(
        anchors=schemes.Anchors({"amd": amd.anchors()}),
        collateral=schemes.Collateral({"amd": amd.certificates(crl=amd.crl())}),
    ).appraise(report.to_bytes(), policy=rules, now=DEFAULT_NOW)
    assert isinstance(result, Appraisal)
    return result


def _fresh(amd: FakeAmd, rules: SevSnpPolicy = POLICY, **fields: Any) -> Appraisal:
    """The appraisal with nothing kept (the reference), leaving the memo as it was."""
    kept = dict(scheme_module._APPRAISALS)
    scheme_module._APPRAISALS.clear()
    try:
        return _appraise(amd, rules, **fields)
    finally:
        scheme_module._APPRAISALS.clear()
        scheme_module._APPRAISALS.update(kept)


def _same(a: Appraisal, b: Appraisal) -> None:
    assert a.to_dict() == b.to_dict()
    assert a.vector == b.vector
    assert a.required_claims == b.required_claims


def test_a_new_report_data_reuses_the_appraisal_with_its_own_report_data(
        amd: FakeAmd) -> None:
    first = _appraise(amd, report_data=b"\x01" * 64)
    assert len(scheme_module._APPRAISALS) == 1
    second = _appraise(amd, report_data=b"\x02" * 64)
    assert len(scheme_module._APPRAISALS) == 1  # reused, not added
    assert second.claims["report_data"] == second.claims["binding"] == "02" * 64
    assert first.claims["report_data"] == "01" * 64
    _same(second, _fresh(amd, report_data=b"\x02" * 64))


@pytest.mark.parametrize("fields", [
    {"measurement": bytes(48)},  # measurement pin fails
    {"vmpl": 2},
    {"guest_svn": 7},
    {"policy": GuestPolicy(smt=True, debug=True)},
    {"host_data": b"\x05" * 32},
    {"report_id": b"\x09" * 32},
    {"family_id": b"\x03" * 16},
], ids=lambda f: next(iter(f)))
def test_any_other_field_gives_a_fresh_appraisal(amd: FakeAmd, fields: dict[str, Any]
                                                  ) -> None:
    _appraise(amd, report_data=b"\x01" * 64)
    changed = _appraise(amd, report_data=b"\x01" * 64, **fields)
    assert len(scheme_module._APPRAISALS) == 2
    _same(changed, _fresh(amd, report_data=b"\x01" * 64, **fields))


def test_a_rejected_guest_stays_rejected_when_reused(amd: FakeAmd) -> None:
    bad = {"measurement": bytes(48)}
    first = _appraise(amd, report_data=b"\x01" * 64, **bad)
    again = _appraise(amd, report_data=b"\x02" * 64, **bad)
    assert not first.accepted and not again.accepted
    assert again.codes() == first.codes() == ["sevsnp.measurement.mismatch"]


def test_another_policy_object_is_appraised_afresh(amd: FakeAmd) -> None:
    _appraise(amd)
    stricter = dataclasses.replace(POLICY, measurements=frozenset({b"\x07" * 48}))
    result = _appraise(amd, stricter)
    assert not result.accepted
    assert "sevsnp.measurement.mismatch" in result.codes()
    # An equal but distinct policy object is not served the kept entry either.
    equal = dataclasses.replace(POLICY)
    _same(_appraise(amd, equal), _fresh(amd, equal))


def test_a_policy_that_pins_report_data_is_never_reused(amd: FakeAmd) -> None:
    pinned = dataclasses.replace(POLICY, report_data=b"\x01" * 64)
    assert _appraise(amd, pinned, report_data=b"\x01" * 64).accepted
    other = _appraise(amd, pinned, report_data=b"\x02" * 64)
    assert not other.accepted
    assert other.codes() == ["sevsnp.report_data.mismatch"]
    assert len(scheme_module._APPRAISALS) == 0


def test_editing_a_returned_appraisal_does_not_reach_the_kept_one(amd: FakeAmd) -> None:
    first = _appraise(amd, report_data=b"\x01" * 64)
    first.claims["guest_policy"]["debug"] = True
    first.claims["advisory_ids"].append("AMD-SB-0000")
    second = _appraise(amd, report_data=b"\x02" * 64)
    second.claims["reported_tcb"]["snp"] = 0
    third = _appraise(amd, report_data=b"\x03" * 64)
    _same(third, _fresh(amd, report_data=b"\x03" * 64))
    assert third.claims["guest_policy"]["debug"] is False
    assert third.claims["advisory_ids"] == []


def test_the_verification_trace_is_the_reports_own(amd: FakeAmd) -> None:
    verifier = attest.Verifier(
        anchors=schemes.Anchors({"amd": amd.anchors()}),
        collateral=schemes.Collateral({"amd": amd.certificates(crl=amd.crl())}))
    traces = []
    for data in (b"\x01", b"\x02"):
        result = verifier.appraise(amd.make_report(report_data=data * 64).to_bytes(),
                                   policy=POLICY, now=DEFAULT_NOW)
        assert isinstance(result, Appraisal)
        traces.append([f.code for f in result.verification])
    # The second report's chain came from the verifier's cache (a trace entry says so):
    # the kept appraisal's own trace is not served in its place.
    assert traces[0] != traces[1]
    assert set(traces[0]) < set(traces[1])


def test_the_table_is_bounded(amd: FakeAmd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheme_module, "_MEMO_MAX", 3)
    for svn in range(7):
        _appraise(amd, guest_svn=svn)
        assert len(scheme_module._APPRAISALS) <= 3


# -- the parse ----------------------------------------------------------------------------
def _clear_parses() -> None:
    scheme_module._REPORTS.clear()
    scheme_module._TABLES.clear()


def test_a_reports_parse_is_reused_with_its_own_report_data_and_signature(amd: FakeAmd
                                                                          ) -> None:
    _clear_parses()
    first = amd.make_report(report_data=b"\x01" * 64).to_bytes()
    second = amd.make_report(report_data=b"\x02" * 64).to_bytes()
    assert scheme_module._parse_report(first) == AttestationReport.from_bytes(first)
    reused = scheme_module._parse_report(second)
    assert len(scheme_module._REPORTS) == 1
    assert reused == AttestationReport.from_bytes(second)
    assert reused.raw == second and reused.signed_bytes == second[:0x2A0]
    assert reused.report_data == b"\x02" * 64


@pytest.mark.parametrize(("offset", "what"), [
    (0x2A0 + 48, "R.padding"), (0x2A0 + 72 + 48, "S.padding"), (0x2A0 + 200, "reserved")])
def test_a_bad_signature_field_is_refused_when_the_rest_was_parsed_before(
        amd: FakeAmd, offset: int, what: str) -> None:
    _clear_parses()
    good = amd.make_report().to_bytes()
    scheme_module._parse_report(good)
    bad = bytearray(good)
    bad[offset] = 1
    with pytest.raises(FormatError) as info:
        scheme_module._parse_report(bytes(bad))
    assert what in str(info.value)


def test_a_changed_byte_outside_report_data_is_parsed_afresh(amd: FakeAmd) -> None:
    _clear_parses()
    good = amd.make_report().to_bytes()
    scheme_module._parse_report(good)
    bad = bytearray(good)
    bad[0x04C] = 1  # reserved0, must be zero
    with pytest.raises(FormatError):
        scheme_module._parse_report(bytes(bad))
    other = amd.make_report(vmpl=1).to_bytes()
    assert scheme_module._parse_report(other).vmpl == 1
    assert len(scheme_module._REPORTS) == 2


def test_a_certificate_table_is_parsed_once(amd: FakeAmd) -> None:
    _clear_parses()
    table = CertTable(tuple(CertTableEntry(uuid.UUID(int=i + 1), bytes([i]) * 10)
                            for i in range(3))).to_bytes()
    first = scheme_module._parse_table(table)
    assert scheme_module._parse_table(bytes(table)) is first
    assert first == CertTable.from_bytes(table)
    with pytest.raises(FormatError):
        scheme_module._parse_table(table[:30])
    assert len(scheme_module._TABLES) == 1
