"""Intel quote / collateral parsers: round trips on every real sample, exact errors, fuzzing."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Any

import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.errors import FormatError
from veritee.formats.intel import (
    SGX_EXTENSIONS_OID,
    BodyType,
    CertificationDataType,
    EnclaveIdentity,
    PckExtensions,
    Quote,
    QuoteHeader,
    SgxReportBody,
    TcbInfo,
    TdReportBody,
    signed_json_member,
    split_der,
)
from veritee.trust.intel import load_certificates

from _evidence import manifest_samples
from _intel_support import INTEL_PREFIXES, load_sample, quote_file

SAMPLES = [s for p in INTEL_PREFIXES for s in manifest_samples(p) if quote_file(s)]
_QUOTES: dict[str, bytes] = {}


def _quote_bytes(d: str) -> bytes:
    if d not in _QUOTES:
        sample = next((s for s in SAMPLES if s["dir"] == d), None)
        if sample is None:
            pytest.skip(f"{d} not present")
        _QUOTES[d] = load_sample(sample).quote_bytes
    return _QUOTES[d]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s["dir"])
def test_every_sample_parses_and_round_trips(sample: dict[str, Any]) -> None:
    s = load_sample(sample)
    q = s.quote
    assert q.to_bytes() == s.quote_bytes
    assert Quote.from_bytes(q.to_bytes(), allow_nonzero_trailer=True) == q
    assert q.signed_bytes == s.quote_bytes[:len(q.signed_bytes)]
    assert q.is_tdx == (not sample["dir"].startswith("sgx/"))
    decoded = sample.get("known_fields", {}).get("decoded", {})
    if "quote_len" in decoded:
        assert len(s.quote_bytes) == decoded["quote_len"]
    if "trailing_bytes_after_signature_data" in decoded:
        assert q.padding == decoded["trailing_bytes_after_signature_data"]
    if "mr_td" in decoded:
        assert isinstance(q.body, TdReportBody)
        assert q.body.mr_td.hex() == decoded["mr_td"]
        assert q.body.tee_tcb_svn.hex() == decoded["tee_tcb_svn"]
    if "mr_enclave" in decoded:
        assert isinstance(q.body, SgxReportBody)
        assert q.body.mr_enclave.hex() == decoded["mr_enclave"]
        assert q.body.isv_prod_id == decoded["isv_prod_id"]
    header = decoded.get("header", {})
    if header:
        assert q.header.version == header["version"]
        assert q.header.qe_vendor_id.hex() == header["qe_vendor_id"]


def test_v5_td15_body_is_recognised() -> None:
    q = Quote.from_bytes(_quote_bytes("tdx/v5-dcap-qvl-90c06f-outdated"))
    assert q.header.version == 5 and q.body_type is BodyType.TD15
    assert isinstance(q.body, TdReportBody) and q.body.is_td15
    assert q.body.mr_servicetd is not None and len(q.body.mr_servicetd) == 48
    # v5 signs header || u16 type || u32 size || body.
    assert q.signed_bytes[48:54] == bytes.fromhex("0300") + (648).to_bytes(4, "little")


def test_v4_certification_data_nests_qe_report_and_pem_chain() -> None:
    q = Quote.from_bytes(_quote_bytes("tdx/v4-dcap-qvl-b0c06f-uptodate"))
    cd = q.signature_data.qe.certification_data
    assert cd.cert_type == CertificationDataType.PCK_CHAIN
    assert cd.pck_chain_bytes is not None and cd.pck_chain_bytes.startswith(b"-----BEGIN")
    assert len(load_certificates(cd.pck_chain_bytes)) == 3


def test_der_chain_certification_data_is_split() -> None:
    q = Quote.from_bytes(_quote_bytes("tdx/v4-intel-qvl-sample-nonprod-root"))
    data = q.signature_data.qe.certification_data.data
    assert len(split_der(data.rstrip(b"\x00"))) == 3


def test_ppid_certification_data_is_kept_raw() -> None:
    q = Quote.from_bytes(_quote_bytes("sgx/v3-intel-qvl-sample-nonprod-root"))
    cd = q.signature_data.qe.certification_data
    assert cd.cert_type == CertificationDataType.PPID_CLEARTEXT
    assert cd.pck_chain_bytes is None and cd.qe_report_data is None


def test_zero_padding_is_accepted_and_counted() -> None:
    raw = _quote_bytes("tdx/v4-dcap-qvl-b0c06f-uptodate")
    q = Quote.from_bytes(raw + bytes(100))
    assert q.padding == 170 and q.to_bytes() == raw + bytes(100)


def test_nonzero_trailer_is_refused_with_its_offset() -> None:
    raw = _quote_bytes("tdx/v4-dcap-qvl-b0c06f-uptodate")
    with pytest.raises(FormatError) as exc:
        Quote.from_bytes(raw + b"\x01")
    assert exc.value.field == "trailer" and exc.value.offset == len(raw)


def test_truncated_quote_names_the_field() -> None:
    raw = _quote_bytes("sgx/v3-dcap-qvl-00a067")
    with pytest.raises(FormatError) as exc:
        Quote.from_bytes(raw[:1000])
    assert exc.value.structure in {"Quote", "QuoteSignatureData"}


def test_wrong_version_and_key_type_are_refused() -> None:
    raw = bytearray(_quote_bytes("sgx/v3-dcap-qvl-00a067"))
    raw[0] = 2
    with pytest.raises(FormatError) as exc:
        Quote.from_bytes(bytes(raw))
    assert exc.value.field == "version"
    raw[0], raw[2] = 3, 3  # ECDSA-384 is not supported
    with pytest.raises(FormatError) as exc:
        Quote.from_bytes(bytes(raw))
    assert exc.value.field == "att_key_type"


def test_v3_quote_with_tdx_tee_type_is_refused() -> None:
    raw = bytearray(_quote_bytes("sgx/v3-dcap-qvl-00a067"))
    raw[4] = 0x81
    with pytest.raises(FormatError) as exc:
        Quote.from_bytes(bytes(raw))
    assert exc.value.field == "tee_type"


def test_v5_body_size_must_match_body_type() -> None:
    raw = bytearray(_quote_bytes("tdx/v5-dcap-qvl-90c06f-outdated"))
    raw[48] = 2  # claims TD 1.0 but says 648 bytes
    with pytest.raises(FormatError) as exc:
        Quote.from_bytes(bytes(raw))
    assert exc.value.field == "body_size"


@pytest.mark.parametrize(("offset", "field"), [(20, "reserved1"), (100, "reserved2"),
                                               (170, "reserved3"), (270, "reserved4")])
def test_reserved_ranges_of_the_sgx_report_must_be_zero(offset: int, field: str) -> None:
    raw = bytearray(_quote_bytes("sgx/v3-dcap-qvl-00a067"))
    raw[48 + offset] = 1
    with pytest.raises(FormatError) as exc:
        Quote.from_bytes(bytes(raw))
    assert exc.value.field == field and exc.value.offset == offset


def test_reserved_range_of_the_qe_report_must_be_zero() -> None:
    raw = _quote_bytes("tdx/v4-dcap-qvl-b0c06f-uptodate")
    q = Quote.from_bytes(raw)
    at = raw.find(q.signature_data.qe.qe_report_bytes)
    bad = bytearray(raw)
    bad[at + 100] = 1
    with pytest.raises(FormatError) as exc:
        Quote.from_bytes(bytes(bad))
    assert exc.value.structure == "QeReport" and exc.value.field == "reserved2"


def test_signature_data_length_must_be_met_exactly() -> None:
    raw = bytearray(_quote_bytes("sgx/v3-dcap-qvl-00a067"))
    q = Quote.from_bytes(bytes(raw))
    at = len(q.signed_bytes)
    size = int.from_bytes(raw[at:at + 4], "little")
    raw[at:at + 4] = (size - 1).to_bytes(4, "little")
    with pytest.raises(FormatError):
        Quote.from_bytes(bytes(raw))


def test_structures_round_trip_on_their_own() -> None:
    q = Quote.from_bytes(_quote_bytes("tdx/v4-dcap-qvl-b0c06f-uptodate"))
    assert QuoteHeader.from_bytes(q.header.to_bytes()) == q.header
    assert isinstance(q.body, TdReportBody)
    assert TdReportBody.from_bytes(q.body.to_bytes()) == q.body
    qe = q.signature_data.qe.qe_report
    assert SgxReportBody.from_bytes(qe.to_bytes()) == qe
    changed = dataclasses.replace(q, body=dataclasses.replace(q.body, mr_td=bytes(48)))
    assert Quote.from_bytes(changed.to_bytes()).body.mr_td == bytes(48)  # type: ignore[union-attr]


def test_debug_bits() -> None:
    q = Quote.from_bytes(_quote_bytes("tdx/v4-dcap-qvl-b0c06f-uptodate"))
    assert isinstance(q.body, TdReportBody) and not q.body.debug
    debug = dataclasses.replace(q.body, td_attributes=b"\x01" + q.body.td_attributes[1:])
    assert debug.debug
    s = Quote.from_bytes(_quote_bytes("sgx/v3-dcap-qvl-00a067"))
    assert isinstance(s.body, SgxReportBody) and not s.body.debug
    assert dataclasses.replace(s.body, attributes=b"\x02" + bytes(15)).debug


def test_pck_extensions_of_a_real_pck() -> None:
    q = Quote.from_bytes(_quote_bytes("tdx/v4-dcap-qvl-b0c06f-uptodate"))
    data = q.signature_data.qe.certification_data.pck_chain_bytes
    assert data is not None
    pck = load_certificates(data)[0]
    ext = pck.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSIONS_OID))
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    parsed = PckExtensions.from_der(ext.value.value)
    assert parsed.fmspc.hex() == "b0c06f000000"
    assert parsed.pce_id == b"\x00\x00"
    assert len(parsed.tcb_components) == 16 and len(parsed.cpusvn) == 16
    with pytest.raises(FormatError):
        PckExtensions.from_der(ext.value.value[:-3])


def _collateral(d: str, name: str) -> bytes:
    sample = next((s for s in SAMPLES if s["dir"] == d), None)
    if sample is None:
        pytest.skip(f"{d} not present")
    return (load_sample(sample).dir / name).read_bytes()


def test_signed_json_member_cuts_the_exact_bytes() -> None:
    body = _collateral("tdx/v4-go-tdx-guest-spr-50806f", "sample_tcbInfo_response")
    raw, sig = signed_json_member(body, "tcbInfo")
    assert len(sig) == 64 and raw.startswith(b'{"id":"TDX"') and raw in body
    info = TcbInfo.from_json(raw)
    assert info.id == "TDX" and info.version == 3 and info.fmspc.hex() == "50806f000000"
    spaced = b'{ "signature" : "' + sig.hex().encode() + b'" ,\n "tcbInfo" :\t' + raw + b" }"
    assert signed_json_member(spaced, "tcbInfo") == (raw, sig)


@pytest.mark.parametrize("body", [b"", b"[]", b'{"tcbInfo":{}}', b'{"tcbInfo":{},"signature":"zz"}',
                                  b'{"tcbInfo":{},"signature":"00"} x', b"\xff"])
def test_signed_json_member_refuses_bad_bodies(body: bytes) -> None:
    with pytest.raises(FormatError):
        signed_json_member(body, "tcbInfo")


def test_tcb_info_v2_and_qe_identity_parse() -> None:
    raw, _ = signed_json_member(_collateral("sgx/v3-intel-qvl-sample-nonprod-root",
                                            "tcbInfo.json"), "tcbInfo")
    info = TcbInfo.from_json(raw)
    assert info.version == 2 and info.id == "SGX" and len(info.tcb_levels[0].sgx_components) == 16
    raw, _ = signed_json_member(_collateral("sgx/v3-intel-qvl-sample-nonprod-root",
                                            "qeIdentity.json"), "enclaveIdentity")
    ident = EnclaveIdentity.from_json(raw)
    assert ident.id == "QE" and ident.miscselect_mask == 0xFFFFFFFF


@pytest.mark.parametrize("mutation", [
    {"version": 9}, {"id": "XYZ"}, {"fmspc": "00"}, {"tcbLevels": [{"tcb": {}}]},
    {"tcbLevels": [1]}, {"issueDate": "yesterday"}, {"pceId": 5},
])
def test_tcb_info_refuses_bad_fields(mutation: dict[str, Any]) -> None:
    raw, _ = signed_json_member(_collateral("tdx/v4-go-tdx-guest-spr-50806f",
                                            "sample_tcbInfo_response"), "tcbInfo")
    obj = json.loads(raw)
    obj.update(mutation)
    with pytest.raises(FormatError):
        TcbInfo.from_json(json.dumps(obj).encode())


# -- property tests: the parsers only ever raise FormatError -----------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=6000))
def test_arbitrary_bytes_only_raise_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        Quote.from_bytes(data)


_MUTABLE = ["tdx/v4-dcap-qvl-b0c06f-uptodate", "tdx/v5-dcap-qvl-90c06f-outdated",
            "sgx/v3-dcap-qvl-00a067", "sgx/v3-intel-qvl-sample-nonprod-root",
            "tdx/v4-intel-qvl-sample-nonprod-root"]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(_MUTABLE), edits=st.lists(
    st.tuples(st.integers(0, 5100), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 5100)))
def test_mutated_real_quotes_only_raise_format_error(which: str, edits: list[tuple[int, int]],
                                                     cut: int | None) -> None:
    raw = bytearray(_quote_bytes(which))
    for offset, value in edits:
        if offset < len(raw):
            raw[offset] = value
    data = bytes(raw[:cut] if cut is not None else raw)
    try:
        q = Quote.from_bytes(data)
    except FormatError:
        return
    assert q.to_bytes() == data


@settings(max_examples=300)
@given(st.binary(max_size=400))
def test_der_helpers_only_raise_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        PckExtensions.from_der(data)
    with contextlib.suppress(FormatError):
        split_der(data)


@settings(max_examples=200)
@given(st.text(max_size=200))
def test_json_parsers_only_raise_format_error(text: str) -> None:
    with contextlib.suppress(FormatError):
        TcbInfo.from_json(text.encode())
    with contextlib.suppress(FormatError):
        EnclaveIdentity.from_json(text.encode())
    with contextlib.suppress(FormatError):
        signed_json_member(text.encode(), "tcbInfo")


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=3)
                     | st.dictionaries(st.text(max_size=6), kids, max_size=3), max_leaves=12)


@settings(max_examples=200)
@given(key=st.sampled_from(["tcbLevels", "tdxModule", "tdxModuleIdentities", "version", "id",
                            "fmspc", "issueDate", "tcbType"]), value=_JSON)
def test_tcb_info_with_any_member_value_only_raises_format_error(key: str, value: Any) -> None:
    raw, _ = signed_json_member(_collateral("tdx/v4-go-tdx-guest-spr-50806f",
                                            "sample_tcbInfo_response"), "tcbInfo")
    obj = json.loads(raw)
    obj[key] = value
    with contextlib.suppress(FormatError):
        TcbInfo.from_json(json.dumps(obj).encode())
