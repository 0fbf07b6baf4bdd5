"""NitroPolicy: secure defaults, every finding listed, stable codes; real documents appraised."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from veritee.errors import ConfigError
from veritee.findings import Outcome
from veritee.policy.nitro import FINDING_CODES, NitroPolicy, appraise, claims
from veritee.trust.nitro import VerifiedNitroDocument, verify_document

from _evidence import evidence_available
from _nitro_support import case

evidence = pytest.mark.skipif(not evidence_available(), reason="shared evidence absent")

# test-specs/beta/valid_attestation_doc_in_non_debug_mode_with_correct_pcrs_time_sensitive.json
SAN_PCRS = {
    0: "d265a83faa7b4fa0d73b82b6d06253e894445922937d0ee5"
       "a74fe4891da9817611a71e71b98e5329232902de3cf419af",
    1: "bcdf05fefccaa8e55bf2c8d6dee9e79bbff31e34bf28a99a"
       "a19e6b29c37ee80b214a414b7607236edf26fcb78654e63f",
    2: "e4f634d24ad83b7f6e49fe283bafdb220f6252fb4a278a85"
       "8e19d15b7cd0f263b9168ed0bacefb4444266df9f9a77f24",
    8: "97c5395a83c0d6a04d53ff962663c714c178c24500bf97f7"
       "8456ed3721d922cf3f940614da4bb90107c439bc4a1443ca",
}


def test_finding_codes_are_pinned() -> None:
    assert sorted(FINDING_CODES) == sorted([
        "nitro.debug", "nitro.image.unpinned", "nitro.pcr0.mismatch", "nitro.pcr1.mismatch",
        "nitro.pcr2.mismatch",
        "nitro.pcr3.mismatch", "nitro.pcr4.mismatch", "nitro.pcr8.mismatch",
        "nitro.nonce.mismatch", "nitro.user_data.mismatch", "nitro.public_key.mismatch",
        "nitro.timestamp.stale",
    ])


@pytest.mark.parametrize("kwargs", [
    {"pcr0": b"\x00" * 48},  # one value, not a collection
    {"pcr0": set()},
    {"pcr8": {b"\x00" * 32}},
    {"allow_debug": "yes"},
    {"nonce": "text"},
    {"user_data": b"u" * 1025},
    {"max_age_seconds": -1},
    {"max_age_seconds": True},
])
def test_bad_policy_values_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        NitroPolicy(**kwargs)  # type: ignore[arg-type]


def _verified(sample_id: str, file: str) -> VerifiedNitroDocument:
    raw, _, now = case(sample_id, file).load()
    return verify_document(raw, now=now)


def _lax(**kw: Any) -> NitroPolicy:
    """Debug allowed and no image pin: for tests of the other checks on debug documents."""
    return NitroPolicy(allow_debug=True, require_image_pin=False, **kw)


def _san_nondebug() -> VerifiedNitroDocument:
    return _verified("evervault-beta-doc-in-tls-cert-san", "extracted_doc_nondebug.cbor")


def _failed(appraisal_codes: list[str]) -> list[str]:
    return sorted(appraisal_codes)


@evidence
def test_default_policy_refuses_an_unpinned_production_enclave_and_lists_skips() -> None:
    # Issue 18: the default pinned nothing but "not debug"; now an image pin is required.
    appraisal = appraise(_san_nondebug(), NitroPolicy())
    assert appraisal.codes() == ["nitro.image.unpinned"]
    appraisal = appraise(_san_nondebug(), NitroPolicy(pcr0={bytes.fromhex(SAN_PCRS[0])}))
    assert appraisal.accepted, appraisal.to_text()
    assert {f.code for f in appraisal.findings} == FINDING_CODES
    assert {f.code for f in appraisal.skipped} == FINDING_CODES - {
        "nitro.debug", "nitro.image.unpinned", "nitro.pcr0.mismatch"}
    assert appraisal.tee == "nitro"
    assert len(appraisal.verification) == 8


@evidence
def test_evervault_expected_pcrs_accept() -> None:
    v = _san_nondebug()
    policy = NitroPolicy(**{f"pcr{i}": {bytes.fromhex(h)} for i, h in SAN_PCRS.items()})
    appraisal = appraise(v, policy)
    assert appraisal.accepted, appraisal.to_text()
    assert all(f.outcome is Outcome.PASS for f in appraisal.findings
               if f.code.startswith("nitro.pcr") and f.code != "nitro.pcr3.mismatch"
               and f.code != "nitro.pcr4.mismatch")


@evidence
def test_wrong_pcr0_is_one_finding() -> None:
    v = _san_nondebug()
    wrong = bytearray(bytes.fromhex(SAN_PCRS[0]))
    wrong[0] ^= 1
    appraisal = appraise(v, NitroPolicy(pcr0={bytes(wrong)}, pcr8={bytes.fromhex(SAN_PCRS[8])}))
    assert appraisal.codes() == ["nitro.pcr0.mismatch"]


@evidence
def test_evervault_incorrect_pcrs_spec_is_rejected() -> None:
    # test-specs/beta/valid_attestation_doc_in_cert_incorrect_pcrs: all-zero PCR0/PCR8 expected.
    appraisal = appraise(_san_nondebug(), NitroPolicy(pcr0={bytes(48)}, pcr8={bytes(48)}))
    assert appraisal.codes() == ["nitro.pcr0.mismatch", "nitro.pcr8.mismatch"]


@evidence
def test_pcr_allow_list_with_several_values() -> None:
    v = _san_nondebug()
    appraisal = appraise(v, NitroPolicy(pcr0={bytes(48), bytes.fromhex(SAN_PCRS[0])}))
    assert appraisal.accepted


@evidence
@pytest.mark.parametrize(("sample_id", "file"), [
    ("evervault-ga-doc-with-tls-cert", "attestation_doc.cbor"),
    ("evervault-beta-docs-debug-and-prod", "debug-mode-attestation-doc-bytes"),
    ("evervault-beta-doc-in-tls-cert-san", "extracted_doc_debug.cbor"),
    ("brave-nitro-utils-example-doc", "attestation_doc.cbor"),
])
def test_debug_mode_enclave_is_rejected_by_default(sample_id: str, file: str) -> None:
    v = _verified(sample_id, file)
    assert appraise(v, NitroPolicy(require_image_pin=False)).codes() == ["nitro.debug"]
    assert appraise(v, _lax()).accepted


@evidence
def test_nonce_matches_and_wrong_nonce_is_one_finding() -> None:
    v = _verified("brave-nitro-utils-example-doc", "attestation_doc.cbor")
    nonce = bytes.fromhex("831493346b44132e2ffb7988bce351f593eeb8dd")  # manifest known_fields
    assert appraise(v, _lax(nonce=nonce)).accepted
    wrong = appraise(v, _lax(nonce=nonce[:-1] + b"\x00"))
    assert wrong.codes() == ["nitro.nonce.mismatch"]


@evidence
def test_expected_nonce_when_the_document_has_none() -> None:
    v = _verified("evervault-beta-docs-debug-and-prod", "debug-mode-attestation-doc-bytes")
    appraisal = appraise(v, _lax(nonce=b"challenge"))
    assert appraisal.codes() == ["nitro.nonce.mismatch"]


@evidence
def test_user_data_binds_the_evervault_tls_certificate() -> None:
    c = case("evervault-ga-doc-with-tls-cert", "attestation_doc.cbor")
    tls = x509.load_der_x509_certificate((c.path.parent / "valid-certificate.der").read_bytes())
    spki = tls.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    v = _verified(c.sample_id, c.file)
    assert appraise(v, _lax(user_data=spki)).accepted
    other = appraise(v, _lax(user_data=spki[:-1]))
    assert other.codes() == ["nitro.user_data.mismatch"]


@evidence
def test_public_key_expected_value() -> None:
    v = _verified("evervault-beta-docs-debug-and-prod", "debug-mode-attestation-doc-bytes")
    assert appraise(v, _lax(public_key=b"my super secret key")).accepted
    assert appraise(v, _lax(public_key=b"other")).codes() == [
        "nitro.public_key.mismatch"]


@evidence
def test_max_age() -> None:
    raw, doc, _ = case("brave-nitro-utils-example-doc", "attestation_doc.cbor").load()
    fresh = verify_document(raw, now=doc.payload.timestamp + timedelta(seconds=30))
    stale = verify_document(raw, now=doc.payload.timestamp + timedelta(minutes=10))
    policy = _lax(max_age_seconds=60)
    assert appraise(fresh, policy).accepted
    assert appraise(stale, policy).codes() == ["nitro.timestamp.stale"]


@evidence
def test_several_failures_are_all_listed() -> None:
    v = _verified("brave-nitro-utils-example-doc", "attestation_doc.cbor")
    appraisal = appraise(v, NitroPolicy(pcr4={bytes(48)}, nonce=b"x", user_data=b"y"))
    assert appraisal.codes() == ["nitro.debug", "nitro.image.unpinned", "nitro.pcr4.mismatch",
                                 "nitro.nonce.mismatch", "nitro.user_data.mismatch"]
    assert "REJECTED (5 failed)" in appraisal.to_text()


@evidence
def test_claims_are_json_ready() -> None:
    v = _san_nondebug()
    out = claims(v)
    assert out["tee"] == "nitro" and out["debug_mode"] is False
    assert out["pcrs"]["0"] == SAN_PCRS[0]
    assert out["module_id"] == "i-0ec0e572c8263d8ff-enc0185c4fd382eeb25"
    appraise(v, NitroPolicy()).to_json()
