"""TPM 2.0 structures: round trips on real bytes, named errors, and hostile-input properties."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.errors import FormatError
from veritee.formats.tpm import (
    TPM_GENERATED_VALUE,
    EccCurve,
    HashAlg,
    ObjectType,
    SigAlg,
    StructureTag,
    TpmsAttest,
    TpmtPublic,
    TpmtSignature,
    parse_tpm2b_public,
    parse_tpm2tools_pcrs,
)
from veritee.trust.tpm import public_key

from _tpm_support import file_of, make_attest, pcr_values, samples

TPM_SAMPLES = {s["id"]: s for s in samples("tpm", "gcp-vtpm")}


def _sample(sid: str) -> dict[str, Any]:
    if sid not in TPM_SAMPLES:
        pytest.skip("shared evidence not present")
    return TPM_SAMPLES[sid]


@pytest.mark.evidence
def test_keylime_quote_fields_match_the_manifest() -> None:
    s = _sample("keylime-checkquote-rsa2048-sha256")
    raw = file_of(s, "quote_tpms_attest").read_bytes()
    a = TpmsAttest.from_bytes(raw)
    kf = s["known_fields"]
    assert a.magic == TPM_GENERATED_VALUE and a.type is StructureTag.ATTEST_QUOTE
    assert a.extra_data == kf["extraData(nonce)"].encode()
    assert a.clock_info.clock == kf["clock"] and a.clock_info.reset_count == kf["resetCount"]
    assert f"0x{a.firmware_version:016x}" == kf["firmwareVersion"]
    assert a.qualified_signer.hex() == kf["qualifiedSigner"]
    assert a.quote.selected() == [(HashAlg.SHA256, 16)]
    assert a.quote.pcr_digest.hex() == kf["pcrDigest"]
    assert a.to_bytes() == raw and TpmsAttest.from_bytes(a.to_bytes()) == a
    sig_raw = file_of(s, "signature_tpmt_signature").read_bytes()
    sig = TpmtSignature.from_bytes(sig_raw)
    assert (sig.sig_alg, sig.hash_alg) == (SigAlg.RSASSA, HashAlg.SHA256)
    assert sig.to_bytes() == sig_raw
    pcrs = parse_tpm2tools_pcrs(file_of(s, "pcr_values").read_bytes())
    assert pcrs[HashAlg.SHA256][16].hex() == kf["pcr_values"]["sha256"]["16"]


@pytest.mark.evidence
@pytest.mark.parametrize(("sid", "role"), [
    ("keylime-tpm2tools-quote-files", "ak_tpm2b_public"),
    ("keylime-tpm2tools-quote-files", "ek_tpm2b_public"),
    ("infineon-slb9670-ek-rsa", "ek_public_tpm2b"),
    ("infineon-slb9670-ek-ecc", "ek_public_tpm2b"),
])
def test_tpm2b_public_round_trips_and_names(sid: str, role: str) -> None:
    s = _sample(sid)
    raw = file_of(s, role).read_bytes()
    pub = parse_tpm2b_public(raw)
    assert struct.pack(">H", len(pub.to_bytes())) + pub.to_bytes() == raw
    kf = s["known_fields"]
    if role == "ak_tpm2b_public":
        assert pub.name() == file_of(s, "ak_name").read_bytes()
        assert f"0x{pub.object_attributes:x}" == kf["ak_objectAttributes"]
    elif "tpm2b_public_name" in kf:
        assert pub.name().hex() == kf["tpm2b_public_name"]
        assert pub.auth_policy.hex() == kf["authPolicy"]


@pytest.mark.evidence
@pytest.mark.parametrize("sid", ["infineon-slb9670-ek-rsa", "infineon-slb9670-ek-ecc"])
def test_ek_public_matches_its_certificate(sid: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    s = _sample(sid)
    pub = parse_tpm2b_public(file_of(s, "ek_public_tpm2b").read_bytes())
    cert = x509.load_der_x509_certificate(file_of(s, "ek_certificate").read_bytes())
    spki = PublicFormat.SubjectPublicKeyInfo
    assert public_key(pub).public_bytes(Encoding.DER, spki) == \
        cert.public_key().public_bytes(Encoding.DER, spki)
    assert pub.type is (ObjectType.ECC if sid.endswith("ecc") else ObjectType.RSA)
    if pub.type is ObjectType.ECC:
        assert pub.curve is EccCurve.NIST_P256


@pytest.mark.evidence
def test_gce_ak_name_matches_the_manifest() -> None:
    s = _sample("gce-cos-85-no-nonce")
    pub = TpmtPublic.from_bytes(file_of(s, "ak_public_tpmt").read_bytes())
    assert pub.name().hex() == s["known_fields"]["ak_name"]


def test_synthetic_attest_round_trips() -> None:
    a = make_attest({HashAlg.SHA256: pcr_values(HashAlg.SHA256, [0, 7, 23])}, b"n",
                    HashAlg.SHA256)
    assert TpmsAttest.from_bytes(a.to_bytes()) == a
    assert a.quote.selected() == [(HashAlg.SHA256, 0), (HashAlg.SHA256, 7),
                                  (HashAlg.SHA256, 23)]


@pytest.mark.parametrize(("offset", "value", "field"), [
    (4, b"\x80\x99", "type"),  # unknown TPM_ST
    (6, b"\xff\xff", "qualifiedSigner.size"),  # TPM2B larger than the bound
])
def test_bad_attest_names_the_field(offset: int, value: bytes, field: str) -> None:
    raw = bytearray(make_attest({HashAlg.SHA1: pcr_values(HashAlg.SHA1, [0])}, b"",
                                HashAlg.SHA256).to_bytes())
    raw[offset:offset + len(value)] = value
    with pytest.raises(FormatError) as info:
        TpmsAttest.from_bytes(bytes(raw))
    assert info.value.field == field


def test_trailing_bytes_after_attest_are_rejected() -> None:
    raw = make_attest({HashAlg.SHA1: pcr_values(HashAlg.SHA1, [0])}, b"",
                      HashAlg.SHA256).to_bytes()
    with pytest.raises(FormatError, match="trailing"):
        TpmsAttest.from_bytes(raw + b"\0")


def test_null_signature_is_rejected() -> None:
    with pytest.raises(FormatError, match="sigAlg"):
        TpmtSignature.from_bytes(b"\x00\x10\x00\x0b\x00\x00")


# -- properties: parsers only raise FormatError, never hang --------------------------------
SEED = make_attest({HashAlg.SHA256: pcr_values(HashAlg.SHA256, [0, 1, 2]),
                    HashAlg.SHA1: pcr_values(HashAlg.SHA1, [7])}, b"nonce",
                   HashAlg.SHA256).to_bytes()


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_attest_parser_random_bytes(data: bytes) -> None:
    for parse in (TpmsAttest.from_bytes, TpmtSignature.from_bytes, TpmtPublic.from_bytes,
                  parse_tpm2b_public, parse_tpm2tools_pcrs):
        with contextlib.suppress(FormatError):
            parse(data)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_attest_parser_mutated_bytes(data: st.DataObject) -> None:
    raw = bytearray(SEED)
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    raw = raw[:data.draw(st.integers(0, len(raw)))]
    try:
        a = TpmsAttest.from_bytes(bytes(raw))
    except FormatError:
        return
    assert a.to_bytes() == bytes(raw)


@pytest.mark.evidence
@settings(max_examples=200, deadline=None)
@given(st.data())
def test_public_parser_mutated_real_bytes(data: st.DataObject) -> None:
    if not TPM_SAMPLES:
        pytest.skip("no evidence")
    s = TPM_SAMPLES.get("keylime-tpm2tools-quote-files")
    if s is None:
        pytest.skip("no evidence")
    raw = bytearray(file_of(s, data.draw(st.sampled_from(["ak_tpm2b_public",
                                                           "ek_tpm2b_public"]))).read_bytes())
    raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        pub = parse_tpm2b_public(bytes(raw))
    except FormatError:
        return
    with contextlib.suppress(FormatError):
        public_key(pub)
