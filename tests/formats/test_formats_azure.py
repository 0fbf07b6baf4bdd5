"""Azure HCL report (``veritee.formats.azure``).

Oracles: the real HCL reports under ``../shared/evidence/azure-snp``, ``azure-vtpm`` and
``azure-tdx`` (skipped when absent) with the values MANIFEST.json records (``hcl_decoded``), and
the layout of microsoft/openvmm ``openhcl_attestation_protocol`` (``igvm_attest/get.rs``) and
kinvolk/azure-cvm-tooling ``az-cvm-vtpm/src/hcl/mod.rs``. The binding check (REPORT_DATA =
hash(variable data) zero-padded) is the one the manifest's ``how_to_verify`` states.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.errors import FormatError
from veritee.formats.azure import (
    HCL_SIGNATURE,
    HW_REPORT_OFFSET,
    HW_REPORT_SIZE,
    REQUEST_DATA_OFFSET,
    TD_REPORT_SIZE,
    VARIABLE_DATA_OFFSET,
    HclHeader,
    HclReport,
    IgvmHashType,
    IgvmReportType,
    IgvmRequestType,
)
from veritee.formats.sevsnp import (
    AttestationReport,
    Cpuid,
    EcdsaP384Signature,
    FirmwareVersion,
    GuestPolicy,
    PlatformInfo,
    SignerInfo,
    TcbVersion,
)

from _evidence import EVIDENCE_DIR, evidence_available, manifest_samples

PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# Real evidence
# --------------------------------------------------------------------------------------------


def _hcl_files() -> list[Path]:
    if not evidence_available():
        return []
    found: set[Path] = set()
    for family in ("azure-snp", "azure-vtpm", "azure-tdx"):
        for pattern in ("hcl-report*.bin", "hcl_report*.bin"):
            found.update((EVIDENCE_DIR / family).glob(f"*/{pattern}"))
    return sorted(found)


HCL_FILES = _hcl_files()
AZURE_SNP = manifest_samples("azure-snp/")


def _ids(p: Path) -> str:
    return f"{p.parent.parent.name}/{p.parent.name}/{p.name}"


@pytest.mark.evidence
def test_corpus_has_hcl_reports() -> None:
    if not evidence_available():
        pytest.skip("shared evidence not present")
    kinds = [HclReport.from_bytes(p.read_bytes()).report_type for p in HCL_FILES]
    assert kinds.count(IgvmReportType.SNP) >= 5
    assert kinds.count(IgvmReportType.TDX) >= 2
    assert len(AZURE_SNP) == 5


@pytest.mark.evidence
@pytest.mark.parametrize("path", HCL_FILES, ids=_ids)
def test_real_hcl_report_parses_and_round_trips(path: Path) -> None:
    data = path.read_bytes()
    hcl = HclReport.from_bytes(data)
    assert hcl.to_bytes() == data
    assert HclReport.from_bytes(hcl.to_bytes()) == hcl
    assert hcl.total_size == len(data)
    # The blob is the whole NV index: zero padding follows the claims.
    assert hcl.report_size <= len(data)
    assert not any(data[hcl.report_size:])
    assert hcl.header.request_type is IgvmRequestType.AK_CERT
    assert hcl.header.status == 0
    assert hcl.request_version == 1
    assert hcl.report_data_hash_type is IgvmHashType.SHA256
    if hcl.report_type is IgvmReportType.SNP:
        assert hcl.snp_report is not None and hcl.tdx_report is None
        assert hcl.snp_report.to_bytes() == data[0x20:0x20 + 1184]
    else:
        assert hcl.report_type is IgvmReportType.TDX
        assert hcl.snp_report is None and hcl.tdx_report == data[0x20:0x20 + TD_REPORT_SIZE]
    # Binding of the runtime claims into the hardware report (SNP and TDX alike).
    assert hcl.hw_report_data == hcl.expected_report_data()
    assert hcl.expected_report_data() == (hashlib.sha256(hcl.variable_data).digest()
                                          + bytes(32))
    claims = hcl.runtime_claims()
    assert {"keys", "vm-configuration"} <= set(claims)
    ak = hcl.ak_public_jwk()
    assert ak["kid"] == "HCLAkPub" and ak["kty"] == "RSA" and ak["n"] and ak["e"]


@pytest.mark.evidence
@pytest.mark.parametrize("sample", AZURE_SNP, ids=lambda s: s["id"])
def test_manifest_azure_snp_binding(sample: dict[str, Any]) -> None:
    """Every azure-snp sample (including the kinvolk one: its VCEK is wrong, not its binding)."""
    path = EVIDENCE_DIR / sample["dir"] / sample["files"]["hcl_report"]
    data = path.read_bytes()
    hcl = HclReport.from_bytes(data)
    assert hcl.report_type is IgvmReportType.SNP
    assert hcl.snp_report is not None
    assert hcl.snp_report.report_data == hcl.expected_report_data()

    # The manifest's decoding of the same bytes.
    known = sample["known_fields"]
    dec = known["hcl_decoded"]
    hdr, req = dec["header"], dec["igvm_request"]
    assert data[:4].decode() == hdr["magic"]
    assert hcl.header.version == hdr["version"]
    assert hcl.report_size == hdr["report_size"]
    assert int(hcl.header.request_type) == hdr["request_type"]
    assert hcl.header.status == hdr["status"]
    assert hcl.data_size == req["data_size"]
    assert hcl.request_version == req["version"]
    assert int(hcl.report_type) == req["report_type"]
    assert int(hcl.report_data_hash_type) == req["hash_type"]
    assert hcl.variable_data_size == req["var_data_size"]
    assert hcl.snp_report.report_data.hex() == dec["report_data"]
    claims = hcl.runtime_claims()
    assert sorted(claims) == sorted(dec["var_data_keys"])
    assert [k["kid"] for k in claims["keys"]] == dec["var_data_kids"]
    assert claims["vm-configuration"] == dec["vm_configuration"]
    snp = known["decoded"]
    assert hcl.snp_report.version == snp["version"]
    assert hcl.snp_report.chip_id.hex() == snp["chip_id"]
    assert hcl.snp_report.measurement.hex() == snp["measurement"]

    # One changed byte of the variable data breaks the binding (and nothing else).
    for pos in (VARIABLE_DATA_OFFSET, VARIABLE_DATA_OFFSET + hcl.variable_data_size // 2,
                hcl.report_size - 1):
        tampered = bytearray(data)
        tampered[pos] ^= 0x01
        other = HclReport.from_bytes(bytes(tampered))
        assert other.snp_report == hcl.snp_report
        assert other.snp_report is not None
        assert other.snp_report.report_data != other.expected_report_data()


@pytest.mark.evidence
def test_bare_snp_report_matches_the_hcl_one(evidence_dir: Path) -> None:
    d = evidence_dir / "azure-snp" / "milan-v2-trustee-hcl"
    hcl = HclReport.from_bytes((d / "hcl-report.bin").read_bytes())
    assert hcl.snp_report is not None
    assert hcl.snp_report.to_bytes() == (d / "snp_report.bin").read_bytes()


@pytest.mark.evidence
def test_older_report_has_no_ek(evidence_dir: Path) -> None:
    path = evidence_dir / "azure-snp" / "milan-v2-kinvolk-vcek-mismatch" / "hcl-report-snp.bin"
    hcl = HclReport.from_bytes(path.read_bytes())
    assert hcl.total_size == 2048 and hcl.report_size == 1819
    hcl.ak_public_jwk()
    with pytest.raises(FormatError) as info:
        hcl.ek_public_jwk()
    assert info.value.field == "variable_data.keys"


@pytest.mark.evidence
def test_trailing_padding_must_be_zero(evidence_dir: Path) -> None:
    data = (evidence_dir / "azure-snp" / "genoa-v3-trustee" / "hcl_report.bin").read_bytes()
    hcl = HclReport.from_bytes(data)
    tampered = bytearray(data)
    tampered[-1] = 1
    with pytest.raises(FormatError) as info:
        HclReport.from_bytes(bytes(tampered))
    assert info.value.field == "padding" and info.value.offset == len(data) - 1
    # Shorter or longer NV reads are fine as long as the padding is zero.
    assert HclReport.from_bytes(data[:hcl.report_size]).total_size == hcl.report_size
    assert HclReport.from_bytes(data + bytes(100)).to_bytes() == data + bytes(100)


# --------------------------------------------------------------------------------------------
# Synthetic reports
# --------------------------------------------------------------------------------------------

TCB = TcbVersion(bootloader=4, tee=0, snp=24, microcode=219)
CLAIMS: dict[str, Any] = {
    "keys": [
        {"kid": "HCLAkPub", "key_ops": ["sign"], "kty": "RSA", "e": "AQAB", "n": "q83v"},
        {"kid": "HCLEkPub", "key_ops": ["encrypt"], "kty": "RSA", "e": "AQAB", "n": "3q2-"},
    ],
    "vm-configuration": {"console-enabled": True, "secure-boot": True, "tpm-enabled": True,
                         "vmUniqueId": "00000000-0000-0000-0000-000000000000"},
    "user-data": "00" * 64,
}
VAR_DATA = json.dumps(CLAIMS, separators=(",", ":")).encode()


def make_snp(report_data: bytes) -> AttestationReport:
    return AttestationReport(
        version=3, guest_svn=1, policy=GuestPolicy(abi_minor=0x1F, smt=True),
        family_id=bytes(16), image_id=bytes(16), vmpl=0, signature_algo=1, current_tcb=TCB,
        platform_info=PlatformInfo(smt_enabled=True), signer_info=SignerInfo(),
        report_data=report_data, measurement=b"\x5a" * 48, host_data=bytes(32),
        id_key_digest=b"\x94" * 48, author_key_digest=bytes(48), report_id=b"\x01" * 32,
        report_id_ma=b"\xff" * 32, reported_tcb=TCB, chip_id=b"\x2e" * 64, committed_tcb=TCB,
        current_version=FirmwareVersion(1, 55, 29), committed_version=FirmwareVersion(1, 55, 29),
        launch_tcb=TCB, signature=EcdsaP384Signature(r=12345, s=67890),
        cpuid=Cpuid(0x19, 0x01, 0x01),
    )


def make_hcl(hash_type: IgvmHashType = IgvmHashType.SHA256, var_data: bytes = VAR_DATA,
             total_size: int = 2600) -> HclReport:
    base = HclReport(header=HclHeader(version=2), report_type=IgvmReportType.SNP,
                     snp_report=None, tdx_report=None, request_version=1,
                     report_data_hash_type=hash_type, variable_data=var_data,
                     total_size=total_size)
    return dataclasses.replace(base, snp_report=make_snp(base.expected_report_data()))


def make_tdx_hcl() -> HclReport:
    td = bytearray(TD_REPORT_SIZE)
    td[0] = 0x81  # REPORTTYPE.TYPE = TDX
    td[128:160] = hashlib.sha256(VAR_DATA).digest()
    return HclReport(header=HclHeader(version=2), report_type=IgvmReportType.TDX,
                     snp_report=None, tdx_report=bytes(td), request_version=1,
                     report_data_hash_type=IgvmHashType.SHA256, variable_data=VAR_DATA,
                     total_size=2600)


def test_synthetic_layout() -> None:
    hcl = make_hcl()
    data = hcl.to_bytes()
    assert len(data) == 2600
    assert data[:4] == HCL_SIGNATURE == b"HCLA"
    assert struct.unpack_from("<IIIII", data, 4) == (2, hcl.report_size, 2, 0, 0)
    assert data[0x14:0x20] == bytes(12)
    assert HW_REPORT_OFFSET == 0x20 and HW_REPORT_SIZE == 0x4A0
    assert REQUEST_DATA_OFFSET == 0x4C0 and VARIABLE_DATA_OFFSET == 0x4D4
    assert data[0x20:0x4C0] == hcl.snp_report.to_bytes()  # type: ignore[union-attr]
    assert struct.unpack_from("<5I", data, 0x4C0) == (20 + len(VAR_DATA), 1, 2, 1,
                                                      len(VAR_DATA))
    assert data[0x4D4:0x4D4 + len(VAR_DATA)] == VAR_DATA
    assert hcl.report_size == 0x4D4 + len(VAR_DATA)
    assert not any(data[hcl.report_size:])
    assert HclReport.from_bytes(data) == hcl


@pytest.mark.parametrize(("hash_type", "hasher"), [
    (IgvmHashType.SHA256, hashlib.sha256), (IgvmHashType.SHA384, hashlib.sha384),
    (IgvmHashType.SHA512, hashlib.sha512)])
def test_expected_report_data_per_hash_type(hash_type: IgvmHashType, hasher: Any) -> None:
    hcl = make_hcl(hash_type)
    want = hasher(VAR_DATA).digest()
    assert hcl.expected_report_data() == want + bytes(64 - len(want))
    parsed = HclReport.from_bytes(hcl.to_bytes())
    assert parsed.report_data_hash_type is hash_type
    assert parsed.hw_report_data == parsed.expected_report_data()


def test_changed_variable_data_breaks_binding() -> None:
    data = make_hcl().to_bytes()
    for pos in range(VARIABLE_DATA_OFFSET, VARIABLE_DATA_OFFSET + len(VAR_DATA), 97):
        b = bytearray(data)
        b[pos] ^= 0x20
        hcl = HclReport.from_bytes(bytes(b))
        assert hcl.hw_report_data != hcl.expected_report_data()


def test_tdx_variant() -> None:
    hcl = make_tdx_hcl()
    data = hcl.to_bytes()
    assert struct.unpack_from("<I", data, 0x4C8)[0] == 4
    parsed = HclReport.from_bytes(data)
    assert parsed == hcl and parsed.snp_report is None
    assert parsed.hw_report_data == parsed.expected_report_data()
    # The 160 bytes after the TDREPORT in the hardware-report area are zero.
    b = bytearray(data)
    b[0x20 + TD_REPORT_SIZE + 5] = 1
    with pytest.raises(FormatError) as info:
        HclReport.from_bytes(bytes(b))
    assert info.value.field == "hw_report.padding"
    assert info.value.offset == 0x20 + TD_REPORT_SIZE + 5


def test_claims_and_keys() -> None:
    hcl = make_hcl()
    assert hcl.runtime_claims() == CLAIMS
    assert hcl.ak_public_jwk() == CLAIMS["keys"][0]
    assert hcl.ek_public_jwk() == CLAIMS["keys"][1]


@pytest.mark.parametrize("var_data", [
    b"", b"not json", b"[1, 2]", b'"string"', b"\xff\xfe\x00", b'{"a": 1, "a": 2}',
    b'{"a": NaN}', b"{" * 100_000, b'{"keys": 1}', '{"keys": []}'.encode("utf-16"),
    b'\xef\xbb\xbf{"keys": []}',
])
def test_bad_claims_raise_format_error(var_data: bytes) -> None:
    hcl = HclReport.from_bytes(make_hcl(var_data=var_data, total_size=0x4D4 + len(var_data))
                               .to_bytes())
    with pytest.raises(FormatError) as info:
        hcl.runtime_claims()
        hcl.ak_public_jwk()  # reached only for well-formed JSON objects
    assert info.value.structure == "HCL_REPORT"
    assert info.value.field.startswith("variable_data")
    assert info.value.offset == VARIABLE_DATA_OFFSET


def test_missing_ak() -> None:
    claims = {"keys": [{"kid": "other"}, "junk"], "vm-configuration": {}}
    hcl = make_hcl(var_data=json.dumps(claims).encode())
    with pytest.raises(FormatError) as info:
        hcl.ak_public_jwk()
    assert info.value.got == ["other"]


def _field(data: bytes, offset: int, value: int) -> bytes:
    b = bytearray(data)
    b[offset:offset + 4] = value.to_bytes(4, "little")
    return bytes(b)


def _hcl_raises(data: bytes, field: str, offset: int | None) -> FormatError:
    with pytest.raises(FormatError) as info:
        HclReport.from_bytes(data)
    err = info.value
    assert err.structure == "HCL_REPORT"
    assert err.field == field, err
    assert err.offset == offset, err
    return err


def test_header_errors() -> None:
    good = make_hcl().to_bytes()
    _hcl_raises(b"HCLB" + good[4:], "signature", 0x00)
    _hcl_raises(_field(good, 0x04, 3), "version", 0x04)
    _hcl_raises(_field(good, 0x04, 0), "version", 0x04)
    _hcl_raises(_field(good, 0x08, 9999), "report_size", 0x08)
    _hcl_raises(_field(good, 0x0C, 0), "request_type", 0x0C)
    _hcl_raises(_field(good, 0x0C, 7), "request_type", 0x0C)
    for off in (0x14, 0x1F):
        b = bytearray(good)
        b[off] = 1
        _hcl_raises(bytes(b), "reserved", off)


def test_request_data_errors() -> None:
    good = make_hcl().to_bytes()
    o = REQUEST_DATA_OFFSET
    _hcl_raises(_field(good, o, 21), "data_size", o)
    _hcl_raises(_field(good, o + 4, 2), "request_data.version", o + 4)
    for rtype in (0, 1, 3, 5, 6):
        _hcl_raises(_field(good, o + 8, rtype), "report_type", o + 8)
    for htype in (0, 4):
        _hcl_raises(_field(good, o + 12, htype), "report_data_hash_type", o + 12)
    # variable_data_size larger than the buffer (sizes kept consistent with each other)
    big = 5000
    b = _field(_field(_field(good, o + 16, big), o, 20 + big), 0x08, o + 20 + big)
    _hcl_raises(b, "variable_data_size", o + 16)


@pytest.mark.parametrize("length", [0, 3, 31, 0x4C0, 0x4D3])
def test_too_short(length: int) -> None:
    _hcl_raises(make_hcl().to_bytes()[:length], "<length>", None)


def test_truncated_variable_data() -> None:
    data = make_hcl().to_bytes()
    hcl = HclReport.from_bytes(data)
    with pytest.raises(FormatError):
        HclReport.from_bytes(data[:hcl.report_size - 1])


def test_nested_snp_errors_carry_hcl_offsets() -> None:
    good = make_hcl().to_bytes()
    b = bytearray(good)
    b[0x20 + 0x4C] = 1  # SNP reserved byte 0x04C
    err = _hcl_raises(bytes(b), "hw_report.reserved0", 0x20 + 0x4C)
    assert "ATTESTATION_REPORT" in str(err)
    _hcl_raises(_field(good, 0x20, 9), "hw_report.VERSION", 0x20)


def test_to_bytes_refuses_inconsistent_objects() -> None:
    hcl = make_hcl()
    with pytest.raises(FormatError):
        dataclasses.replace(hcl, total_size=100).to_bytes()
    with pytest.raises(FormatError):
        dataclasses.replace(hcl, snp_report=None).to_bytes()
    with pytest.raises(FormatError):
        dataclasses.replace(hcl, tdx_report=bytes(1024)).to_bytes()
    with pytest.raises(FormatError):
        dataclasses.replace(hcl, report_type=IgvmReportType.VBS).to_bytes()
    with pytest.raises(FormatError):
        dataclasses.replace(make_tdx_hcl(), tdx_report=bytes(10)).to_bytes()
    with pytest.raises(FormatError):
        dataclasses.replace(hcl, report_data_hash_type=IgvmHashType.INVALID
                            ).expected_report_data()


def test_non_bytes_input() -> None:
    with pytest.raises(FormatError):
        HclReport.from_bytes(None)  # type: ignore[arg-type]


# -- property tests ---------------------------------------------------------------------------

_SNP_BASE = make_hcl(total_size=0x4D4 + len(VAR_DATA) + 16).to_bytes()
_TDX_BASE = dataclasses.replace(make_tdx_hcl(), total_size=0x4D4 + len(VAR_DATA)).to_bytes()
_mutation = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                     min_size=1, max_size=4)


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for pos, value in edits:
        b[pos % len(b)] = value
    return bytes(b)


def _mutate_tail(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    """Mutations aimed at the header, request data and claims (outside the SNP report)."""
    b = bytearray(data)
    outside = [*range(0, 0x20), *range(REQUEST_DATA_OFFSET, len(b))]
    for pos, value in edits:
        b[outside[pos % len(outside)]] = value
    return bytes(b)


@given(st.one_of(
    st.binary(max_size=3000),
    st.binary(min_size=0x4D4, max_size=0x600).map(lambda d: HCL_SIGNATURE + d[4:]),
    st.tuples(st.sampled_from([_SNP_BASE, _TDX_BASE]), _mutation).map(
        lambda t: _mutate(t[0], t[1])),
    st.tuples(st.sampled_from([_SNP_BASE, _TDX_BASE]), _mutation).map(
        lambda t: _mutate_tail(t[0], t[1])),
    st.integers(0, len(_SNP_BASE)).map(lambda n: _SNP_BASE[:n]),
))
@PROPERTY
def test_hcl_report_property(data: bytes) -> None:
    """Arbitrary bytes and mutated valid reports only ever raise FormatError, and so do the
    claims accessors; what parses serialises back to exactly its input."""
    try:
        hcl = HclReport.from_bytes(data)
    except FormatError as err:
        assert err.structure == "HCL_REPORT"
        return
    assert hcl.to_bytes() == data
    assert HclReport.from_bytes(data) == hcl
    assert len(hcl.expected_report_data()) == 64
    assert len(hcl.hw_report_data) == 64
    try:
        hcl.runtime_claims()
        hcl.ak_public_jwk()
    except FormatError as err:
        assert err.structure == "HCL_REPORT"
