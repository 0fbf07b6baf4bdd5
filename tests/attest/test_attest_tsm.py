"""configfs-tsm containers (veraison's JSON and CBOR forms) through the front door."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.attest import parse_evidence, verify_only
from veritee.errors import FormatError
from veritee.formats.tsm import TsmReport

from _evidence import EVIDENCE_DIR, evidence_available

SAMPLE = EVIDENCE_DIR / "snp" / "genoa-v3-veraison-tsm"
AT = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
needs_evidence = pytest.mark.skipif(not evidence_available(), reason="no shared evidence")


@needs_evidence
@pytest.mark.parametrize("name", ["sevsnp-tsm-report.json", "sevsnp-tsm-report.cbor"])
def test_real_tsm_report_verifies_with_its_own_certificate_table(name: str) -> None:
    data = (SAMPLE / name).read_bytes()
    ev = parse_evidence(data)
    assert ev.format == "configfs-tsm+sevsnp"
    assert ev.report.raw == (SAMPLE / "report.bin").read_bytes()
    verified = verify_only(data, now=AT)  # collateral from the auxblob, genuine AMD roots
    assert verified.report.report_data == ev.report.report_data


@needs_evidence
def test_json_and_cbor_forms_round_trip() -> None:
    tsm = TsmReport.from_bytes((SAMPLE / "sevsnp-tsm-report.json").read_bytes())
    assert TsmReport.from_bytes(tsm.to_cbor()) == tsm
    assert TsmReport.from_bytes(tsm.to_json()) == tsm
    assert TsmReport.from_bytes((SAMPLE / "sevsnp-tsm-report.cbor").read_bytes()) == tsm


@pytest.mark.parametrize(("data", "field"), [
    (b'{"outblob": "AA", "provider": "sev_guest", "extra": 1}', "<keys>"),
    (b'{"outblob": "!!", "provider": "sev_guest"}', "outblob"),
    (b'{"provider": "sev_guest"}', "outblob"),
    (b'{"outblob": "AA"}', "provider"),
    (b'[1, 2]', "<json>"),
    (b'{"outblob": ', "<json>"),
])
def test_malformed_tsm_reports(data: bytes, field: str) -> None:
    with pytest.raises(FormatError) as exc:
        TsmReport.from_bytes(data)
    assert exc.value.field == field or field == "<json>"


def test_other_provider_is_refused() -> None:
    data = TsmReport(provider="tdx_guest", outblob=b"\0" * 100).to_json()
    with pytest.raises(FormatError, match="provider"):
        parse_evidence(data)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_format_error(data: bytes) -> None:
    try:
        TsmReport.from_bytes(b"{" + data)
        TsmReport.from_bytes(b"\xa1" + data)
    except FormatError:
        pass
