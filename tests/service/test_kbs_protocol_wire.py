"""KBS protocol wire pieces without a service: the JWE, the SEV-SNP evidence object, init-data,
and Intel TDX evidence in attestation-agent's shape through /kbs/v0 (real sample quote)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.crypto.kbs_jwe import decrypt_response, encrypt_response, protected_header_json
from veritee.errors import FormatError, VerificationError
from veritee.formats.coco import (
    PROTOCOL_VERSIONS,
    canonical_json,
    init_data_digest,
    regularize,
    snp_report_from_object,
    snp_report_to_object,
    tee_pubkey,
)
from veritee.formats.sevsnp import AttestationReport

from _evidence import EVIDENCE_DIR, manifest_samples, sample_time
from _intel_support import quote_file
from _service_support import Clock, Guests, Service

ERR = "https://github.com/confidential-containers/kbs/errors/"


def _jwk(key: ec.EllipticCurvePrivateKey, crv: str, size: int) -> dict[str, str]:
    n = key.public_key().public_numbers()
    enc = lambda v: base64.urlsafe_b64encode(v.to_bytes(size, "big")).rstrip(b"=").decode()  # noqa: E731
    return {"alg": "ECDH-ES+A256KW", "crv": crv, "kty": "EC", "x": enc(n.x), "y": enc(n.y)}


@pytest.mark.parametrize("curve,crv,size", [(ec.SECP256R1(), "P-256", 32),
                                             (ec.SECP521R1(), "P-521", 66)])
def test_jwe_round_trip_on_the_curves_attestation_agent_uses(curve: ec.EllipticCurve, crv: str,
                                                             size: int) -> None:
    key = ec.generate_private_key(curve)
    response = encrypt_response(b"secret", _jwk(key, crv, size), {"veritee.version": 3})
    plain, header = decrypt_response(response, key)
    assert plain == b"secret" and header["veritee.version"] == 3


def test_protected_header_is_written_as_kbs_types_reserialises_it() -> None:
    header = {"epk": {"y": "2", "kty": "EC", "x": "1", "crv": "P-256"}, "enc": "A256GCM",
              "alg": "ECDH-ES+A256KW", "b": 1}
    assert protected_header_json(header) == (
        b'{"alg":"ECDH-ES+A256KW","enc":"A256GCM","b":1,'
        b'"epk":{"crv":"P-256","kty":"EC","x":"1","y":"2"}}')


@pytest.mark.parametrize("field", ["iv", "ciphertext", "tag", "encrypted_key"])
def test_jwe_with_any_part_changed_does_not_decrypt(field: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    response = encrypt_response(b"secret", _jwk(key, "P-256", 32))
    raw = bytearray(base64.urlsafe_b64decode(response[field] + "=="))
    raw[0] ^= 1
    response[field] = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises((VerificationError, FormatError)):
        decrypt_response(response, key)


def test_snp_report_object_round_trips_to_the_signed_bytes(guests: Guests) -> None:
    report, _ = guests.a.extended_report(bytes(range(64)))
    obj = snp_report_to_object(report)
    assert snp_report_from_object(obj) == report
    assert snp_report_from_object(list(report)) == report
    assert snp_report_from_object(base64.b64encode(report).decode()) == report
    parsed = AttestationReport.from_bytes(snp_report_from_object(obj))
    assert parsed.measurement == bytes(obj["measurement"]) == guests.a.measurement
    assert obj["current_tcb"]["snp"] == parsed.current_tcb.snp
    # Reserved members may be left out (zero); v3's CPUID bytes travel as cpuid_*.
    trimmed = {k: v for k, v in obj.items() if not k.startswith("_")}
    assert snp_report_from_object(trimmed) == report


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(["version", "measurement",
                                                       "signature", "r", "snp"]),
                                      inner, max_size=4), max_leaves=12))
def test_snp_report_parser_only_raises_format_error(value: Any) -> None:
    with contextlib.suppress(FormatError):
        snp_report_from_object(value)


def test_tee_pubkey_keeps_only_the_kbs_types_members_per_version() -> None:
    key = _jwk(ec.generate_private_key(ec.SECP256R1()), "P-256", 32)
    assert tee_pubkey({**key, "kid": "x", "use": "enc"}) == key
    rsa_key = {"kty": "RSA", "alg": "RSA-OAEP-256", "n": "AQAB", "e": "AQAB"}
    assert tee_pubkey({**rsa_key, "kid": "x"}) == rsa_key  # kbs-types RSA {alg, n, e}
    v010, v040 = PROTOCOL_VERSIONS["0.1.0"], PROTOCOL_VERSIONS["0.4.0"]
    assert tee_pubkey({**rsa_key, "alg": "RSA1_5"}, v010)["alg"] == "RSA1_5"
    for bad, version in (({**key, "alg": "ECDH-ES"}, v040),  # not the KBS algorithm
                         ({**rsa_key, "alg": "ECDH-ES+A256KW"}, v040),  # EC alg on RSA
                         (key, v010),  # 0.1.x guests had RSA keys only
                         ({**rsa_key, "alg": "RSA-OAEP-256"}, v010),
                         ({"kty": "oct", "k": "AAAA"}, v040),
                         ({**key, "x": ""}, v040)):
        with pytest.raises(FormatError):
            tee_pubkey(bad, version)


def test_init_data_digest_uses_the_algorithm_the_document_names() -> None:
    body = 'version = "0.1.0"\nalgorithm = "sha384"\n[data]\n'
    assert init_data_digest({"format": "toml", "body": body}) == hashlib.sha384(
        body.encode()).digest()
    assert regularize(hashlib.sha384(b"x").digest(), 32) == hashlib.sha384(b"x").digest()[:32]
    for bad in ({"format": "json", "body": body}, {"format": "toml", "body": "a = ["},
                {"format": "toml", "body": 'algorithm = "md5"'}, "toml"):
        with pytest.raises(FormatError):
            init_data_digest(bad)


def test_canonical_json_is_serde_json_value_form() -> None:
    assert canonical_json({"b": 1, "a": {"d": "é", "c": [1, 2]}}) == \
        '{"a":{"c":[1,2],"d":"é"},"b":1}'.encode()


# -- Intel TDX in attestation-agent's TdxEvidence shape (real sample; skips without it) -----
SAMPLE_DIR = "tdx/v4-dcap-qvl-b0c06f-uptodate"


def _tdx_sample() -> tuple[Path, bytes, float]:
    from veritee.collateral.intel import read_quote

    for s in manifest_samples("tdx/"):
        if s["dir"] == SAMPLE_DIR:
            d = EVIDENCE_DIR / s["dir"]
            return d, read_quote(d / str(quote_file(s))), sample_time(s).timestamp()
    pytest.skip(f"sample {SAMPLE_DIR} not in the shared evidence")


@pytest.mark.parametrize("with_init_data", [False, True])
def test_tdx_evidence_through_kbs_v0_is_verified_then_refused_on_the_binding(
        service_factory: Callable[..., Service], tmp_path: Path, with_init_data: bool) -> None:
    d, quote, at = _tdx_sample()
    clock = Clock()
    clock.offset = at - time.time()
    svc = service_factory(f"sqlite:///{tmp_path}/tdx.db", clock=clock,
                          intel_collateral_dir=str(d))
    with httpx.Client(timeout=10) as http:
        challenge = http.post(f"{svc.url}/kbs/v0/auth", json={
            "version": "0.4.0", "tee": "tdx", "extra-params": {}}).json()
        message: dict[str, Any] = {
            "runtime-data": {"nonce": challenge["nonce"],
                             "tee-pubkey": _jwk(ec.generate_private_key(ec.SECP256R1()),
                                                "P-256", 32)},
            "tee-evidence": {"primary_evidence": {
                "cc_eventlog": None, "quote": base64.b64encode(quote).decode(),
                "aa_eventlog": None}, "additional_evidence": ""}}
        if with_init_data:
            message["init-data"] = {"format": "toml", "body": 'algorithm = "sha384"\n'}
        r = http.post(f"{svc.url}/kbs/v0/attest", content=canonical_json(message))
    assert r.status_code == 401 and r.json()["type"] == ERR + "AttestationError", r.text
    assert "failures" in r.json(), r.text
    codes = [f["code"] for f in r.json()["failures"]]
    # Chain, QE, quote signature and TCB status verified (same path as /v1); the sample's
    # REPORTDATA cannot hold this session's runtime-data hash, nor its MRCONFIGID our digest.
    assert "tdx.binding.mismatch" in codes
    assert any("mrconfigid" in c for c in codes) == with_init_data
    assert svc.refusals()[-1].detail["tee"] == "tdx"


# -- attestation-agent's SnpEvidence as recorded by Trustee (real Genoa report; skips without) --
def test_recorded_snp_evidence_json_is_the_signed_report() -> None:
    # Trustee's attestation-service e2e evidence.json: the sev crate's serde form (key_info,
    # current/committed objects, TCB objects with fmc) and the VCEK in cert_chain. The shape
    # conversion must give back exactly the signed 1184 bytes (verified here to the AMD root).
    from veritee.attest import verify_only
    from veritee.crypto.amd_certs import load_certificates
    from veritee.formats.coco import primary_evidence
    from veritee.formats.sevsnp import CertTable
    from veritee.trust.sevsnp import AmdCertificates

    found = [s for s in manifest_samples("snp/") if s["dir"] == "snp/genoa-v3-trustee-e2e-json"]
    if not found:
        pytest.skip("sample snp/genoa-v3-trustee-e2e-json not in the shared evidence")
    d = EVIDENCE_DIR / found[0]["dir"]
    import json

    evidence = json.loads((d / "evidence.json").read_bytes())
    part = primary_evidence("snp", evidence)
    assert part.data == (d / "report.bin").read_bytes()
    assert part.attached is not None
    vcek = next(e.data for e in CertTable.from_bytes(part.attached).entries if e.kind == "VCEK")
    assert vcek == (d / "vcek.der").read_bytes()
    chain = EVIDENCE_DIR / "roots" / "amd_genoa_cert_chain_vcek.pem"
    ask, ark = load_certificates(chain.read_bytes(), source=str(chain))
    verified = verify_only(part.data, cert_table=part.attached,
                           collateral=AmdCertificates(ark=ark, ask=ask, vek=None, crl=None),
                           now=sample_time(found[0]))
    assert verified.report.report_data == bytes(evidence["attestation_report"]["report_data"])
    # ... and the client writes the same form back (what attestation-agent sends).
    assert snp_report_to_object(part.data) == evidence["attestation_report"]
