"""SPDM GET_MEASUREMENTS / MEASUREMENTS parsing: real samples, exact round trips, every
length checked, and a property test that the parsers only raise FormatError."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.errors import FormatError
from veritee.formats.nvidia import (
    DmtfMeasurement,
    GpuReport,
    MeasurementBlock,
    MeasurementsRequest,
    OpaqueData,
    OpaqueField,
    OpaqueType,
    parse_nvat_evidence,
)

from _evidence import evidence_available
from _nvidia_support import GOOD, NVIDIA, ReportCase, cases_if_available, manifest_sample

needs_evidence = pytest.mark.skipif(not evidence_available(), reason="shared evidence absent")


@pytest.mark.parametrize("case", cases_if_available(), ids=lambda c: c.id)
def test_samples_parse_to_the_manifest_fields_and_round_trip(case: ReportCase) -> None:
    report, _ = case.load()
    assert GpuReport.from_bytes(report.to_bytes()) == report
    sample = manifest_sample(case.sample_id)
    files = sample["files"]
    if case.report not in (files.get("attestation_report_hex"),
                           files.get("serialized_evidence_json")):
        return  # a secondary file (the NVSwitch negative): known_fields describe the main one
    kf = sample["known_fields"]
    rsp = kf["response"]
    assert report.request.nonce.hex() == kf["request"]["nonce"]
    assert report.request.param2 == int(kf["request"]["param2"], 16)
    assert len(report.response.blocks) == rsp["number_of_blocks"]
    assert report.response.nonce.hex() == rsp["responder_nonce"]
    assert len(report.response.opaque_raw) == rsp["opaque_length"]
    assert report.trailing.hex() == rsp["trailing_bytes_after_signature"]
    nonzero = {str(b.index): b.value.hex() for b in report.response.blocks if any(b.value)}
    assert nonzero == kf["measurement_blocks_nonzero"]
    op = kf["opaque"]
    if "DRIVER_VERSION" in op:
        assert report.opaque.driver_version == op["DRIVER_VERSION"]
    if "FWID" in op:
        assert report.opaque.fwid is not None and report.opaque.fwid.hex() == op["FWID"]
    if "MSRSCNT" in op:
        assert list(report.opaque.measurement_counts or ()) == op["MSRSCNT"]


@needs_evidence
def test_sdk_unit_report_matches_spdm_parsed_output_json() -> None:
    # attestation-sdk unit-tests spdm_resp_test.cpp asserts these fields.
    d = NVIDIA / "h100-sdk-unit-580.159.03"
    report = GpuReport.from_hex((d / "hopperAttestationReport.txt").read_text())
    want = json.loads((d / "spdm_parsed_output.json").read_text())
    rsp = report.response
    assert hex(rsp.version) == want["SPDMVersion"]
    assert int(want["NumberOfBlocks"]) == len(rsp.blocks)
    assert int(want["MeasurementRecordLength"]) == sum(len(b.to_bytes()) for b in rsp.blocks)
    assert want["Nonce"] == "0x" + rsp.nonce.hex()
    assert int(want["OpaqueLength"]) == len(rsp.opaque_raw)
    assert want["Signature"] == "0x" + rsp.signature.hex()
    for index, block in want["MeasurementRecord"]["MeasurementBlocks"].items():
        got = rsp.block(int(index))
        assert got is not None
        assert got.measurement.value_type == block["DMTFSpecMeasurementValueType"]
        assert "0x" + got.value.hex() == block["DMTFSpecMeasurementValue"]
    fields = want["OpaqueData"]["OpaqueDataField"]
    assert fields["OPAQUE_FIELD_ID_VBIOS_VERSION"] == "0x" + (
        report.opaque.get(OpaqueType.VBIOS_VERSION) or b"").hex()


@needs_evidence
def test_vbios_version_rendering_matches_nvidia() -> None:
    report, _ = GOOD.load()
    assert report.opaque.vbios_version == "96.00.9f.00.01"
    switch = GpuReport.from_hex(
        (NVIDIA / "nvswitch-ls10-sdk" / "switchAttestationReport.txt").read_text())
    assert switch.opaque.vbios_version == "96.10.55.00.01"  # ASCII on NVSwitch


@needs_evidence
def test_nvat_json_matches_the_curator_extracted_files() -> None:
    d = NVIDIA / "b200-veraison-evidence-json"
    (ev,) = parse_nvat_evidence((d / "blackwell-evidence.json").read_text())
    assert ev.arch == "BLACKWELL"
    assert ev.report.to_bytes() == (d / "evidence.bin").read_bytes()
    assert ev.certificate_pem == (d / "cert_chain.pem").read_bytes()
    assert ev.nonce == ev.report.nonce


@needs_evidence
def test_trailing_nonzero_or_long_padding_is_refused() -> None:
    raw = GOOD.load()[0].to_bytes()
    assert GpuReport.from_bytes(raw + bytes(16)).trailing == bytes(16)
    for tail in (b"\x01", bytes(17)):
        with pytest.raises(FormatError) as err:
            GpuReport.from_bytes(raw + tail)
        assert err.value.field == "trailing"


@needs_evidence
def test_truncated_report_is_refused_at_every_length() -> None:
    raw = GOOD.load()[0].to_bytes()
    for n in (0, 1, 36, 37, 40, 45, 100, len(raw) - 97, len(raw) - 1):
        with pytest.raises(FormatError):
            GpuReport.from_bytes(raw[:n])


@needs_evidence
def test_record_length_and_block_count_must_agree() -> None:
    raw = bytearray(GOOD.load()[0].to_bytes())
    bad_count = bytearray(raw)
    bad_count[37 + 4] -= 1  # NumberOfBlocks
    with pytest.raises(FormatError) as err:
        GpuReport.from_bytes(bytes(bad_count))
    assert err.value.field == "NumberOfBlocks"
    bad_spec = bytearray(raw)
    bad_spec[37 + 8 + 1] = 2  # MeasurementSpecification of block 1
    with pytest.raises(FormatError) as err:
        GpuReport.from_bytes(bytes(bad_spec))
    assert err.value.field == "MeasurementSpecification"


def _request(**kw: int) -> bytes:
    base = {"version": 0x11, "code": 0xE0, "param1": 1, "param2": 0xFF}
    base.update(kw)
    return bytes([base["version"], base["code"], base["param1"], base["param2"]]) + bytes(33)


@pytest.mark.parametrize(("kw", "fld"), [
    ({"version": 0x12}, "SPDMVersion"), ({"code": 0xE1}, "RequestResponseCode"),
    ({"param1": 0}, "Param1"),
])
def test_request_header_checks(kw: dict[str, int], fld: str) -> None:
    with pytest.raises(FormatError) as err:
        MeasurementsRequest.from_bytes(_request(**kw))
    assert err.value.field == fld


def test_request_round_trip_and_size() -> None:
    req = MeasurementsRequest.from_bytes(_request())
    assert req.signature_requested and req.to_bytes() == _request()
    with pytest.raises(FormatError):
        MeasurementsRequest.from_bytes(_request()[:-1])


def test_opaque_items_must_tile_and_not_repeat() -> None:
    good = OpaqueData((OpaqueField(3, b"550.90.07\0"), OpaqueField(99, b"x")))
    assert OpaqueData.from_bytes(good.to_bytes()) == good
    assert good.fields[1].name == "TYPE_99"
    with pytest.raises(FormatError):
        OpaqueData.from_bytes(good.to_bytes() + b"\x01")
    with pytest.raises(FormatError) as err:
        OpaqueData.from_bytes(good.to_bytes() + good.fields[0].kind.to_bytes(2, "little")
                              + b"\0\0")
    assert err.value.field == "type"


def test_measurement_block_serialisation() -> None:
    b = MeasurementBlock(7, DmtfMeasurement(0x01, bytes(range(48))))
    assert b.to_bytes()[:4] == bytes([7, 1, 51, 0]) and b.value == bytes(range(48))
    assert not b.measurement.raw_bitstream


def test_nvat_json_errors_are_format_errors() -> None:
    for text in ("", "{}", "[]", "[1]", '[{"arch": "HOPPER"}]',
                 json.dumps([{"arch": "H", "nonce": "zz", "evidence": "", "certificate": ""}]),
                 json.dumps([{"arch": "H", "nonce": "00", "evidence": "!!",
                              "certificate": ""}]),
                 json.dumps([{"arch": "H", "nonce": "00",
                              "evidence": base64.b64encode(b"\x11").decode(),
                              "certificate": ""}])):
        with pytest.raises(FormatError):
            parse_nvat_evidence(text)


def test_hex_form_errors_are_format_errors() -> None:
    for text in ("zz", "1", b"\xff\xfe", "0x"):
        with pytest.raises(FormatError):
            GpuReport.from_hex(text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_parsers_only_raise_format_error_on_random_bytes(data: bytes) -> None:
    for parse in (GpuReport.from_bytes, GpuReport.from_hex, OpaqueData.from_bytes,
                  MeasurementsRequest.from_bytes, parse_nvat_evidence):
        with contextlib.suppress(FormatError):
            parse(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_parsers_only_raise_format_error_on_mutated_reports(data: st.DataObject) -> None:
    if not evidence_available():
        return
    raw = bytearray(_good_raw())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    for blob in (bytes(raw), bytes(raw[:cut])):
        try:
            rep = GpuReport.from_bytes(blob)
        except FormatError:
            continue
        assert GpuReport.from_bytes(rep.to_bytes()) == rep


_RAW: list[bytes] = []


def _good_raw() -> bytes:
    if not _RAW:
        _RAW.append(GOOD.load()[0].to_bytes())
    return _RAW[0]
