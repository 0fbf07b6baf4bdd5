"""attestation-agent evidence shapes per TEE -> veritee evidence parts (formats.coco), and the
Attestation message of each protocol version, without a service.

Shapes are written from attestation-agent's attester types (``SnpEvidence``, ``TdxEvidence``,
``SgxEvidence``, ``CcaEvidence``, the Azure vTPM/TPM evidence documents Trustee's verifiers
read) and kbs-types (``Attestation``, ``CompositeEvidence``, ``RuntimeData``, ``InitData``);
the evidence bytes come from veritee's emulated SNP guest, TDX TD and SGX enclave. Every
malformed message raises FormatError naming the field, never anything else.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.client_coco import sgx_evidence, snp_evidence, tdx_evidence
from veritee.errors import FormatError
from veritee.formats.coco import (
    PROTOCOL_VERSIONS,
    TEE_SHAPES,
    additional_evidence,
    canonical_json,
    device_evidence,
    parse_attestation,
    primary_evidence,
    regularize,
    runtime_data,
    runtime_data_digest,
    tee_shape,
)
from veritee.formats.sevsnp import AttestationReport, CertTable
from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor

from _service_support import Guests

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EC_KEY = {"alg": "ECDH-ES+A256KW", "crv": "P-256", "kty": "EC", "x": "AAAA", "y": "BBBB"}
_RSA = rsa.generate_private_key(65537, 2048).public_key().public_numbers()


def _b64u(i: int, size: int) -> str:
    return base64.urlsafe_b64encode(i.to_bytes(size, "big")).rstrip(b"=").decode()


RSA_KEY = {"alg": "RSA1_5", "e": _b64u(_RSA.e, 3), "kty": "RSA", "n": _b64u(_RSA.n, 256)}


@pytest.fixture(scope="module")
def intel() -> EmulatedIntelCpu:
    return EmulatedIntelCpu(EmulatedIntelVendor.generate(now=NOW), now=NOW)


def _td_quote(cpu: EmulatedIntelCpu, report_data: bytes = bytes(64)) -> bytes:
    from veritee.platform.emulated.tdx import InsecureEmulatedTdxMachine

    td = InsecureEmulatedTdxMachine(cpu.vendor, cpu=cpu).launch(b"TDVF".ljust(4096, b"\0"))
    return td.quote(report_data)


def _sgx_quote(cpu: EmulatedIntelCpu) -> bytes:
    from veritee.platform.emulated.sgx import InsecureEmulatedSgxMachine

    enclave = InsecureEmulatedSgxMachine(cpu.vendor, cpu=cpu).load(
        b"\x90" * 64, rsa.generate_private_key(3, 3072))
    return enclave.quote(bytes(64))


# -- each TEE's shape -----------------------------------------------------------------------
def test_snp_shape_gives_the_report_and_its_certificate_table(guests: Guests) -> None:
    report, table = guests.a.extended_report(bytes(range(64)))
    part = primary_evidence("snp", snp_evidence(report, table))
    assert (part.tee, part.scheme, part.data) == ("snp", "sevsnp", report)
    assert part.attached is not None
    kinds = {e.kind for e in CertTable.from_bytes(part.attached).entries}
    assert {"VCEK", "ASK", "ARK"} <= kinds
    assert AttestationReport.from_bytes(part.data).report_data == bytes(range(64))
    # The evidence as a JSON string (how some attesters hand it over) is the same part.
    assert primary_evidence("snp", json.dumps(snp_evidence(report, table))) == part


def test_tdx_shape_gives_the_quote(intel: EmulatedIntelCpu) -> None:
    quote = _td_quote(intel)
    part = primary_evidence("tdx", {**tdx_evidence(quote), "cc_eventlog": "AAAA"})
    assert (part.scheme, part.data, part.attached) == ("tdx", quote, None)
    # Members a newer attester adds are ignored, as Trustee's serde types ignore them.
    assert primary_evidence("tdx", {**tdx_evidence(quote), "future": [1]}) == part


def test_sgx_shape_gives_the_quote(intel: EmulatedIntelCpu) -> None:
    quote = _sgx_quote(intel)
    part = primary_evidence("sgx", sgx_evidence(quote))
    assert (part.scheme, part.data) == ("sgx", quote)


def test_an_sgx_quote_is_not_tdx_evidence_and_back(intel: EmulatedIntelCpu) -> None:
    # The session's TEE decides what the evidence must be: no TEE confusion.
    with pytest.raises(FormatError, match="quote"):
        primary_evidence("tdx", tdx_evidence(_sgx_quote(intel)))
    with pytest.raises(FormatError, match="quote"):
        primary_evidence("sgx", sgx_evidence(_td_quote(intel)))


@pytest.mark.parametrize("tee,structure", [("az-snp-vtpm", "AzSnpVtpmEvidence"),
                                           ("azsnpvtpm", "AzSnpVtpmEvidence"),
                                           ("az-tdx-vtpm", "AzTdxVtpmEvidence"),
                                           ("aztdxvtpm", "AzTdxVtpmEvidence")])
@pytest.mark.parametrize("quote,report", [("quote", "report"),  # attestation-agent v0 layout
                                          ("tpm_quote", "hcl_report")])  # later layouts
def test_azure_vtpm_shapes_pass_the_document_to_the_scheme(tee: str, structure: str,
                                                           quote: str, report: str) -> None:
    doc = {quote: {"signature": [1, 2], "message": [3], "pcrs": [[0] * 32]},
           report: [5, 6], "vcek": "-----BEGIN CERTIFICATE-----", "td_quote": [7]}
    part = primary_evidence(tee, doc)
    assert part.scheme == tee_shape(tee).scheme  # type: ignore[union-attr]
    assert json.loads(part.data) == doc and part.data == canonical_json(doc)
    with pytest.raises(FormatError) as exc:
        primary_evidence(tee, {report: [5], "td_quote": [7]})
    assert exc.value.structure == structure and exc.value.field == "quote"
    with pytest.raises(FormatError) as exc:
        primary_evidence(tee, {quote: {}, "td_quote": [7]})
    assert exc.value.field == "report"
    if "tdx" in tee:
        with pytest.raises(FormatError) as exc:
            primary_evidence(tee, {quote: {}, report: [5]})
        assert exc.value.field == "td_quote"


def test_tpm_and_cca_shapes() -> None:
    doc = {"ak_public": "AAAA", "tpm_quote": {"message": "AA", "signature": "AA", "pcrs": []}}
    assert primary_evidence("tpm", doc).data == canonical_json(doc)
    with pytest.raises(FormatError) as exc:
        primary_evidence("tpm", {"ak_public": "AAAA"})
    assert exc.value.field == "tpm_quote"
    token = bytes([0xD9, 0x01, 0x8F, 0xA2]) + bytes(60)
    assert primary_evidence("cca", {"token": list(token)}).data == token
    assert primary_evidence("cca", {"token": base64.b64encode(token).decode()}).data == token
    with pytest.raises(FormatError) as exc:
        primary_evidence("cca", {"tokens": []})
    assert exc.value.field == "token"


_REPORT = base64.b64encode(bytes(1184)).decode()


@pytest.mark.parametrize("tee,bad,field", [
    ("snp", {"attestation_report": [0] * 10}, "attestation_report"),
    ("snp", {"attestation_report": _REPORT, "cert_chain": [{"cert_type": "XYZ"}]},
     "cert_chain[0].cert_type"),
    ("snp", {"attestation_report": _REPORT, "cert_chain": [{"cert_type": "VCEK",
                                                            "data": True}]},
     "cert_chain[0].data"),
    ("tdx", {"quote": "!!not base64"}, "quote"),
    ("tdx", {"quote": base64.b64encode(bytes(100)).decode()}, "quote"),
    ("sgx", {}, "quote"),
    ("cca", {"token": [256]}, "token"),
    ("cca", {"token": []}, "token"),
])
def test_malformed_shapes_name_the_field(tee: str, bad: dict[str, Any], field: str) -> None:
    with pytest.raises(FormatError) as exc:
        primary_evidence(tee, bad)
    assert field in exc.value.field, exc.value


def test_tdx_event_logs_must_be_strings(intel: EmulatedIntelCpu) -> None:
    with pytest.raises(FormatError) as exc:
        primary_evidence("tdx", {**tdx_evidence(_td_quote(intel)), "cc_eventlog": 5})
    assert exc.value.field == "cc_eventlog"


def test_device_shapes_are_only_additional_evidence() -> None:
    assert tee_shape("nvidia").device  # type: ignore[union-attr]
    with pytest.raises(FormatError):
        primary_evidence("nvidia", {"a": 1})
    one = {"evidence": base64.b64encode(b"\x11\xe0spdm").decode(),
           "certificate": base64.b64encode(b"-----BEGIN").decode(), "arch": "HOPPER"}
    part = device_evidence("nvidia", {"device_evidence_list": [one]})
    assert (part.scheme, part.data, part.attached) == ("nvidia", b"\x11\xe0spdm", b"-----BEGIN")
    # No device, two devices (one part each is what gets bound), or a missing member.
    for bad in ([], [one, one], [{"evidence": one["evidence"]}]):
        with pytest.raises(FormatError, match="nvidia"):
            device_evidence("nvidia", {"device_evidence_list": bad})
    with pytest.raises(FormatError):
        device_evidence("no-such-device", {})


def test_every_shape_names_a_scheme_and_its_binding_field() -> None:
    assert len({n for s in TEE_SHAPES for n in s.names}) == sum(len(s.names) for s in TEE_SHAPES)
    for shape in TEE_SHAPES:
        assert shape.scheme and shape.binding


# -- additional evidence ---------------------------------------------------------------------
def test_additional_evidence_map() -> None:
    assert additional_evidence("") == []
    assert additional_evidence('{"nvidia": {"x": 1}}') == [("nvidia", {"x": 1})]
    # kbs-types documents each value as (TEE class, TEE evidence).
    assert additional_evidence('{"nvidia": ["gpu", {"x": 1}]}') == [("nvidia", {"x": 1})]
    for bad in ("[]", "{}", "not json", '{"a": 1, "a": 2}',
                json.dumps({f"d{i}": {} for i in range(17)})):
        with pytest.raises(FormatError):
            additional_evidence(bad)


# -- the Attestation message of each version ---------------------------------------------------
def _message(version: str, evidence: object) -> dict[str, Any]:
    proto = PROTOCOL_VERSIONS[version]
    key = dict(EC_KEY if proto.key_algorithms[0] == "ECDH-ES+A256KW" else RSA_KEY)
    if proto.composite:
        evidence = {"primary_evidence": evidence, "additional_evidence": ""}
    elif proto.evidence_as_string:
        evidence = json.dumps(evidence)
    if proto.runtime_data_member:
        return {"runtime-data": {"nonce": "bm9uY2U=", "tee-pubkey": key},
                "tee-evidence": evidence, "init-data": None}
    return {"tee-pubkey": key, "tee-evidence": evidence}


@pytest.mark.parametrize("version", list(PROTOCOL_VERSIONS))
def test_attestation_of_each_version_parses(version: str) -> None:
    evidence = {"quote": "AAAA"}
    msg = parse_attestation(canonical_json(_message(version, evidence)), PROTOCOL_VERSIONS[version])
    assert msg.primary == evidence and msg.version.name == version
    assert msg.nonce == ("bm9uY2U=" if version == "0.4.0" else None)
    assert msg.additional == ("" if version in ("0.3.0", "0.4.0") else None)
    assert msg.pubkey["kty"] == ("RSA" if version.startswith("0.1.") else "EC")


@pytest.mark.parametrize("mutate,field", [
    (lambda m: m.pop("runtime-data"), "runtime-data"),
    (lambda m: m["runtime-data"].pop("nonce"), "runtime-data.nonce"),
    (lambda m: m["runtime-data"].update(extra=1), "runtime-data.extra"),
    (lambda m: m["runtime-data"]["tee-pubkey"].update(kty="OKP"), "runtime-data.tee-pubkey.kty"),
    (lambda m: m["tee-evidence"].pop("additional_evidence"),
     "tee-evidence.additional_evidence"),
    (lambda m: m["tee-evidence"].update(additional_evidence={}),
     "tee-evidence.additional_evidence"),
    (lambda m: m.update({"tee-pubkey": EC_KEY}), "tee-pubkey"),
    (lambda m: m.update({"init-data": "toml"}), "init-data"),
])
def test_malformed_0_4_0_messages_name_the_field(mutate: Any, field: str) -> None:
    message = _message("0.4.0", {"quote": "AAAA"})
    mutate(message)
    with pytest.raises(FormatError) as exc:
        parse_attestation(canonical_json(message), PROTOCOL_VERSIONS["0.4.0"])
    assert exc.value.field == field, exc.value


def test_duplicate_members_are_refused() -> None:
    raw = b'{"tee-pubkey": {}, "tee-pubkey": {}, "tee-evidence": {}}'
    with pytest.raises(FormatError):
        parse_attestation(raw, PROTOCOL_VERSIONS["0.2.0"])


@settings(max_examples=150, deadline=None)
@given(version=st.sampled_from(list(PROTOCOL_VERSIONS)),
       value=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=6),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                              st.sampled_from(["tee-pubkey", "tee-evidence", "runtime-data",
                                               "nonce", "kty", "alg", "primary_evidence",
                                               "additional_evidence", "init-data"]),
                              inner, max_size=4), max_leaves=10))
def test_attestation_parser_only_raises_format_error(version: str, value: Any) -> None:
    with contextlib.suppress(FormatError):
        parse_attestation(json.dumps(value).encode(), PROTOCOL_VERSIONS[version])


# -- the binding -------------------------------------------------------------------------------
def test_structured_runtime_data_hash_matches_the_coco_as_vector() -> None:
    # Trustee attestation-service parse_runtime_data test: {"b": 1, "a": "test", "c": {"d":
    # "e"}} hashes (SHA-384, canonical JSON) to this value.
    want = ("e71ce8e70d814ba6639c3612ebee0ff1f76f650f8dbb5e47157e0f3f525cd22c"
            "4597480a186427c813ca941da78870c3")
    assert hashlib.sha384(canonical_json({"b": 1, "a": "test", "c": {"d": "e"}})).hexdigest() \
        == want


def test_runtime_data_per_version() -> None:
    # 0.1.x/0.2.0 and devices: {nonce, tee-pubkey}; a 0.3.0+ primary adds the
    # additional-evidence string, so a device cannot be dropped in transit.
    assert runtime_data("n", RSA_KEY) == {"nonce": "n", "tee-pubkey": RSA_KEY}
    assert runtime_data("n", EC_KEY, "")["additional-evidence"] == ""
    text = canonical_json(runtime_data("n", RSA_KEY))
    assert text.startswith(b'{"nonce":"n","tee-pubkey":{"alg":"RSA1_5","e":')
    assert runtime_data_digest("n", RSA_KEY, None) == hashlib.sha384(text).digest() + bytes(16)
    assert runtime_data_digest("n", EC_KEY, "") != runtime_data_digest("n", EC_KEY, None)
    assert runtime_data_digest("n", EC_KEY, "") != runtime_data_digest("n", EC_KEY, "{}")


# -- messages as the protocol documents write them ------------------------------------------
# Literal JSON text in the shapes of Trustee's docs/kbs_attestation_protocol.md (Request,
# Challenge, Attestation) and kbs-types' own test messages at each version, with real-looking
# values in place of the documents' "$placeholders". Written here, not copied.
_N = _b64u(_RSA.n, 256)
RECORDED = {
    "0.1.0": '{"tee-pubkey": {"kty": "RSA", "alg": "RSA1_5", "n": "' + _N + '", "e": "AQAB"}, '
             '"tee-evidence": "{\\"quote\\": \\"AAAA\\"}"}',
    "0.1.1": '{"tee-pubkey": {"kty": "RSA", "alg": "RSA1_5", "n": "' + _N + '", "e": "AQAB"}, '
             '"tee-evidence": {"quote": "AAAA"}}',
    "0.2.0": '{"tee-pubkey": {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "AAAA",'
             ' "y": "BBBB"}, "tee-evidence": {"quote": "AAAA"}}',
    "0.3.0": '{"tee-pubkey": {"kty": "RSA", "alg": "RSA-OAEP-256", "n": "' + _N + '", "e": '
             '"AQAB"}, "tee-evidence": {"primary_evidence": {"quote": "AAAA"}, '
             '"additional_evidence": ""}}',
    "0.4.0": '{"init-data": {"format": "toml", "body": "algorithm = \\"sha384\\"\\nversion = '
             '\\"0.1.0\\"\\n"}, "runtime-data": {"nonce": "bm9uY2U=", "tee-pubkey": {"kty": "RSA",'
             ' "alg": "RSA-OAEP-256", "n": "' + _N + '", "e": "AQAB"}}, "tee-evidence": '
             '{"primary_evidence": {"quote": "AAAA"}, "additional_evidence": ""}}',
}


@pytest.mark.parametrize("version", list(RECORDED))
def test_recorded_attestation_of_each_version(version: str) -> None:
    msg = parse_attestation(RECORDED[version].encode(), PROTOCOL_VERSIONS[version])
    assert msg.primary == {"quote": "AAAA"}
    # Only the kbs-types members are kept, in the canonical order the binding hashes.
    assert set(msg.pubkey) in ({"alg", "crv", "kty", "x", "y"}, {"alg", "e", "kty", "n"})
    if version == "0.4.0":
        assert msg.init_data is not None and msg.nonce == "bm9uY2U="
    # A 0.4.0 message is no older version's and the reverse (no silent reinterpretation of
    # where the key and nonce are); an RSA-OAEP key is no 0.1.x message.
    for other, proto in PROTOCOL_VERSIONS.items():
        if proto.runtime_data_member != PROTOCOL_VERSIONS[version].runtime_data_member or (
                other.startswith("0.1.") and "RSA-OAEP" in RECORDED[version]):
            with pytest.raises(FormatError):
                parse_attestation(RECORDED[version].encode(), proto)


# -- Intel evidence in the KBS shapes, verified by the registered schemes ---------------------
@pytest.mark.parametrize("tee,policy", [("tdx", "TdxPolicy"), ("sgx", "SgxPolicy")])
def test_intel_evidence_in_the_kbs_shape_carries_the_runtime_data_digest(tee: str,
                                                                        policy: str) -> None:
    # What /kbs/v0 hands the broker: the scheme by the session's TEE name, the report data
    # H(runtime-data) regularized to REPORTDATA, compared raw.
    from veritee import attest, schemes
    from veritee.attest import EvidencePart
    from veritee.errors import PolicyRejected
    from veritee.policy import intel as intel_policy
    from veritee.testing.intel import FakeIntel

    fake = FakeIntel.generate()

    def binding(nonce: str) -> bytes:
        digest = hashlib.sha384(canonical_json(runtime_data(nonce, EC_KEY, ""))).digest()
        return regularize(digest, schemes.get(tee).binding_size)

    quote = (fake.td_quote if tee == "tdx" else fake.sgx_quote)(
        report_data=binding("bm9uY2Ux"))
    shape = tdx_evidence(quote) if tee == "tdx" else sgx_evidence(quote)
    part = primary_evidence(tee, json.loads(json.dumps(shape)))
    kwargs: dict[str, Any] = {
        "policy": getattr(intel_policy, policy)(),
        "collateral": schemes.Collateral({"intel": fake.collateral(tee.upper())}),
        "anchors": schemes.Anchors({"intel": fake.roots}), "now": fake.now}
    appraisal = attest.verify(EvidencePart(part.data, part.scheme), **kwargs,
                              expected_binding=binding("bm9uY2Ux"))
    assert appraisal.accepted
    with pytest.raises(PolicyRejected) as info:
        attest.verify(EvidencePart(part.data, part.scheme), **kwargs,
                      expected_binding=binding("bm9uY2Uy"))
    assert f"{tee}.binding.mismatch" in info.value.appraisal.codes()


def test_recorded_cca_token_in_the_kbs_shape() -> None:
    # Trustee's CCA example token, as attestation-agent's CcaEvidence {token} carries it
    # (serde bytes): the part is the token itself, and the cca scheme (when registered)
    # parses it as it parses the file.
    from veritee import schemes

    from _evidence import EVIDENCE_DIR, load_manifest

    try:
        sample = next(s for s in load_manifest("MANIFEST-2.json")["samples"]
                      if s["id"] == "trustee-cca-example-token")
    except (StopIteration, FileNotFoundError, KeyError, OSError):
        pytest.skip("sample trustee-cca-example-token not in the shared evidence")
    token = (EVIDENCE_DIR / sample["dir"] / sample["files"]["cca_token"]).read_bytes()
    part = primary_evidence("cca", {"token": list(token)})
    assert (part.scheme, part.data) == ("cca", token)
    if "cca" in schemes.names():
        scheme = schemes.get("cca")
        assert scheme.parse(part.data) == scheme.parse(token)
