"""Every Nitro document in MANIFEST-2.json verifies at the manifest's time; attacks are refused.

Each mutation changes one thing and expects one error code.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from veritee.errors import FormatError, VerificationError
from veritee.findings import Outcome
from veritee.formats.nitro import NitroDocument
from veritee.trust.nitro import AWS_NITRO_ROOT_G1_SHA256, verify_document

from _evidence import evidence_available, load_manifest, manifest_samples
from _nitro_support import (
    MANIFEST,
    NITRO_CASES,
    ROOT_PEM,
    NitroCase,
    case,
    forge,
    make_pki,
)

pytestmark = [pytest.mark.evidence,
              pytest.mark.skipif(not evidence_available(), reason="shared evidence absent")]

EXPECTED_CHECKS = ["nitro.cose.algorithm", "nitro.digest", "nitro.chain.root",
                   "nitro.chain.signature", "nitro.chain.constraints", "nitro.chain.validity",
                   "nitro.timestamp", "nitro.signature"]


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def _ga() -> tuple[bytes, NitroDocument, datetime]:
    return case("evervault-ga-doc-with-tls-cert", "attestation_doc.cbor").load()


def test_every_manifest_nitro_sample_has_cases() -> None:
    ids = {s["id"] for s in manifest_samples("nitro/", MANIFEST)}
    assert ids == {c.sample_id for c in NITRO_CASES}


def test_pinned_root_is_the_shared_aws_root_g1() -> None:
    root = x509.load_pem_x509_certificate(ROOT_PEM.read_bytes())
    assert root.fingerprint(hashes.SHA256()).hex() == AWS_NITRO_ROOT_G1_SHA256
    listed = {r["id"]: r["sha256_der"] for r in load_manifest(MANIFEST)["roots"]}
    assert listed["root-aws-nitro-enclaves-root-g1"] == AWS_NITRO_ROOT_G1_SHA256


@pytest.mark.parametrize("c", NITRO_CASES, ids=lambda c: c.id)
def test_manifest_document_verifies_at_its_time(c: NitroCase) -> None:
    raw, doc, now = c.load()
    verified = verify_document(raw, now=now)
    assert [f.code for f in verified.checks] == EXPECTED_CHECKS
    assert all(f.outcome is Outcome.PASS for f in verified.checks)
    assert verified.root_fingerprint == AWS_NITRO_ROOT_G1_SHA256
    assert verified.payload.debug_mode is c.debug
    assert len(verified.chain) == len(doc.payload.cabundle) + 1


@pytest.mark.parametrize("c", NITRO_CASES, ids=lambda c: c.id)
def test_manifest_document_fields_match_the_manifest(c: NitroCase) -> None:
    _, doc, _ = c.load()
    sample = next(s for s in manifest_samples("nitro/", MANIFEST) if s["id"] == c.sample_id)
    known = sample["known_fields"]
    if "module_id" not in known:  # several documents: pick the one with this module
        known = next(k for k in known.values()
                     if isinstance(k, dict) and k.get("timestamp_ms") == doc.payload.timestamp_ms)
    p = doc.payload
    assert p.module_id == known["module_id"]
    assert p.timestamp_ms == known["timestamp_ms"]
    assert p.digest == known["digest"] == "SHA384"
    assert len(p.pcrs) == known["n_pcrs"]
    assert len(p.cabundle) == known["cabundle_len"]
    assert p.debug_mode is known["debug_mode_all_pcr0_2_zero"]
    for index, value in known["pcrs_nonzero"].items():
        assert p.pcrs[int(index)].hex() == value
    for fld in ("user_data", "public_key"):
        want = known[fld]
        assert (getattr(p, fld).hex() if getattr(p, fld) is not None else None) == want
    assert (p.nonce or b"").hex().startswith((known["nonce"] or "").rstrip("."))


@pytest.mark.parametrize("c", NITRO_CASES, ids=lambda c: c.id)
def test_manifest_document_round_trips(c: NitroCase) -> None:
    raw, doc, _ = c.load()
    assert doc.to_bytes() == raw
    assert NitroDocument.from_bytes(doc.to_bytes()) == doc
    assert doc.payload.to_bytes() == doc.payload.raw


def test_tagged_document_verifies() -> None:
    raw, _, now = _ga()
    tagged = b"\xd2" + raw  # CBOR tag 18
    parsed = NitroDocument.from_bytes(tagged)
    assert parsed.tagged and parsed.to_bytes() == tagged
    verify_document(parsed, now=now)


def test_debug_beta_document_is_expired_at_a_current_time() -> None:
    # Manifest: "invalid at any current time, valid at doc timestamp".
    raw, _, _ = case("evervault-beta-docs-debug-and-prod",
                     "debug-mode-attestation-doc-bytes").load()
    with pytest.raises(VerificationError) as err:
        verify_document(raw, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert err.value.code == "nitro.chain.expired"


def test_chain_verified_after_the_leaf_expired() -> None:
    raw, doc, _ = _ga()
    leaf = x509.load_der_x509_certificate(doc.payload.certificate)
    with pytest.raises(VerificationError) as err:
        verify_document(raw, now=leaf.not_valid_after_utc + timedelta(seconds=1))
    assert err.value.code == "nitro.chain.expired"
    verify_document(raw, now=leaf.not_valid_after_utc)  # the boundary itself is still valid


def test_chain_verified_before_the_leaf_was_issued() -> None:
    raw, doc, _ = _ga()
    leaf = x509.load_der_x509_certificate(doc.payload.certificate)
    with pytest.raises(VerificationError) as err:
        verify_document(raw, now=leaf.not_valid_before_utc - timedelta(seconds=1))
    assert err.value.code == "nitro.chain.not_yet_valid"


def test_flipped_payload_byte_breaks_the_signature() -> None:
    raw, doc, now = _ga()
    nonce = doc.payload.nonce
    assert nonce is not None
    at = raw.index(nonce) + 7
    mutated = _flip(raw, at)
    assert NitroDocument.from_bytes(mutated).payload.nonce != nonce  # still parses
    with pytest.raises(VerificationError) as err:
        verify_document(mutated, now=now)
    assert err.value.code == "nitro.signature"


def test_flipped_pcr_byte_breaks_the_signature() -> None:
    raw, doc, now = _ga()
    at = raw.index(doc.payload.pcrs[4])
    with pytest.raises(VerificationError) as err:
        verify_document(_flip(raw, at), now=now)
    assert err.value.code == "nitro.signature"


@pytest.mark.parametrize("offset", [1, 48, 95])
def test_flipped_signature_byte_is_refused(offset: int) -> None:
    raw, _, now = _ga()
    with pytest.raises(VerificationError) as err:
        verify_document(_flip(raw, len(raw) - 96 + offset), now=now)
    assert err.value.code == "nitro.signature"


def test_document_signed_by_untrusted_root_with_the_aws_name() -> None:
    _, doc, _ = _ga()
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    pki = make_pki(now)  # a self-made root named CN=aws.nitro-enclaves,OU=AWS,O=Amazon,C=US
    assert pki.root.subject.rfc4514_string() == "CN=aws.nitro-enclaves,OU=AWS,O=Amazon,C=US"
    forged = forge(doc.payload, pki)
    with pytest.raises(VerificationError) as err:
        verify_document(forged, now=now)
    assert err.value.code == "nitro.chain.root_untrusted"
    # The same bytes verify when that root is trusted explicitly: only the pin differs.
    verified = verify_document(forged, now=now, trusted_roots=[pki.root])
    assert verified.leaf == pki.leaf


def test_real_chain_with_self_made_root_swapped_in_is_untrusted() -> None:
    _, doc, now = _ga()
    fake_root = make_pki(now, intermediates=0).root
    bundle = (fake_root.public_bytes(Encoding.DER), *doc.payload.cabundle[1:])
    mutated = dataclasses.replace(
        doc, payload=dataclasses.replace(doc.payload, cabundle=bundle, raw=b""))
    with pytest.raises(VerificationError) as err:
        verify_document(mutated, now=now)
    assert err.value.code == "nitro.chain.root_untrusted"


def test_removed_intermediate_breaks_the_chain() -> None:
    _, doc, _ = _ga()
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    pki = make_pki(now)
    bundle = pki.cabundle()
    forged = forge(doc.payload, pki, cabundle=(bundle[0], *bundle[2:]))
    with pytest.raises(VerificationError) as err:
        verify_document(forged, now=now, trusted_roots=[pki.root])
    assert err.value.code == "nitro.chain.signature"


def test_removed_intermediate_in_real_chain_is_refused() -> None:
    _, doc, now = _ga()
    bundle = doc.payload.cabundle
    mutated = dataclasses.replace(doc, payload=dataclasses.replace(
        doc.payload, cabundle=(bundle[0], *bundle[2:])))
    with pytest.raises(VerificationError) as err:
        verify_document(mutated, now=now)
    assert err.value.code == "nitro.chain.signature"


def test_root_not_first_in_cabundle_is_untrusted() -> None:
    _, doc, now = _ga()
    bundle = doc.payload.cabundle
    mutated = dataclasses.replace(doc, payload=dataclasses.replace(
        doc.payload, cabundle=(*bundle[1:], bundle[0])))
    with pytest.raises(VerificationError) as err:
        verify_document(mutated, now=now)
    assert err.value.code == "nitro.chain.root_untrusted"


def test_leaf_swapped_for_another_documents_leaf_is_refused() -> None:
    _, doc, now = _ga()
    _, other, _ = case("evervault-beta-doc-in-tls-cert-san", "extracted_doc_debug.cbor").load()
    mutated = dataclasses.replace(doc, payload=dataclasses.replace(
        doc.payload, certificate=other.payload.certificate))
    with pytest.raises(VerificationError) as err:
        verify_document(mutated, now=now)
    assert err.value.code == "nitro.chain.signature"


def test_non_sha384_digest_is_refused() -> None:
    _, doc, _ = _ga()
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    pki = make_pki(now)
    forged = forge(doc.payload, pki, digest="SHA256")
    with pytest.raises(VerificationError) as err:
        verify_document(forged, now=now, trusted_roots=[pki.root])
    assert err.value.code == "nitro.digest.unsupported"


def test_timestamp_outside_the_leaf_validity_is_refused() -> None:
    _, doc, _ = _ga()
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    pki = make_pki(now)
    late = int((pki.leaf.not_valid_after_utc + timedelta(hours=1)).timestamp() * 1000)
    forged = forge(doc.payload, pki, timestamp_ms=late)
    with pytest.raises(VerificationError) as err:
        verify_document(forged, now=now, trusted_roots=[pki.root])
    assert err.value.code == "nitro.timestamp.outside_leaf"


def test_signing_certificate_that_is_a_ca_is_refused() -> None:
    _, doc, _ = _ga()
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    pki = make_pki(now)
    # Sign with the last intermediate (a CA) as if it were the leaf.
    shorter = dataclasses.replace(pki, certs=pki.certs[:-1], keys=pki.keys[:-1])
    forged = forge(doc.payload, shorter,
                   timestamp_ms=int(now.timestamp() * 1000))
    with pytest.raises(VerificationError) as err:
        verify_document(forged, now=now, trusted_roots=[pki.root])
    assert err.value.code == "nitro.chain.constraints"


def test_naive_now_is_a_programming_error() -> None:
    raw, _, now = _ga()
    with pytest.raises(ValueError, match="timezone"):
        verify_document(raw, now=now.replace(tzinfo=None))


def test_garbage_is_a_format_error() -> None:
    with pytest.raises(FormatError):
        verify_document(b"\x84\x40\xa0\x40\x40", now=datetime.now(UTC))


def test_san_tls_certificates_carry_the_extracted_documents() -> None:
    """Evervault beta: the TLS cert's SAN holds hex(document); user_data is its SPKI."""
    directory = case("evervault-beta-doc-in-tls-cert-san", "extracted_doc_debug.cbor").path.parent
    pairs = {"debug-mode-cert-containing-attestation-doc-18-1-23.pem": "extracted_doc_debug.cbor",
             "non-debug-cert-containing-attestation-document-18-1-23.pem":
                 "extracted_doc_nondebug.cbor"}
    for pem, extracted in pairs.items():
        tls = x509.load_pem_x509_certificate((directory / pem).read_bytes())
        names = tls.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
        want = (directory / extracted).read_bytes()
        assert any(want.hex() in name.replace(".", "") for name in dns)
        doc = NitroDocument.from_bytes(want)
        spki = tls.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        assert doc.payload.user_data == spki
