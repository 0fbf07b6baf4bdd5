"""Every real PSA/CCA sample in ../shared/evidence/MANIFEST-2.json gets the manifest's verdict.

Verdicts (from each entry's ``expected`` / ``how_to_verify``): signed tokens verify with the
key the sample ships; COSE_Mac0 variants cannot be verified (no symmetric key) and are
rejected by the COSE_Sign1 parser; the integ token fails under the other endorsement's key;
the tag-907 collection whose values are not ``[content-format, bstr]`` is malformed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from veritee.collateral.arm import load_public_key, public_key_from_jwk
from veritee.errors import FormatError, VerificationError
from veritee.formats.cca import CcaToken
from veritee.formats.psa import PsaToken
from veritee.policy.arm import CcaPolicy, PsaPolicy, appraise
from veritee.trust.cca import verify_cca_token
from veritee.trust.psa import verify_psa_token

from _arm_support import MANIFEST, SAMPLE_VERDICTS, sample_path
from _evidence import EVIDENCE_DIR, load_manifest, manifest_samples

pytestmark = pytest.mark.evidence

PSA = manifest_samples("psa/", MANIFEST)
CCA = manifest_samples("cca/", MANIFEST)

EXPECTED = SAMPLE_VERDICTS


def _one(samples: list[dict[str, Any]], sample_id: str) -> dict[str, Any]:
    """The sample with ``sample_id`` (skips the test when the corpus is absent)."""
    load_manifest(MANIFEST)
    (sample,) = [s for s in samples if s["id"] == sample_id]
    return sample


def _key(sample: dict[str, Any], role: str | None) -> Any:
    if role is None:  # ccatoken's testIAK, published as known_fields.test_iak_public
        return public_key_from_jwk(dict(sample["known_fields"]["test_iak_public"]))
    return load_public_key(sample_path(sample, role))


def _outcome(family: str, token: bytes, key: Any) -> str:
    try:
        if family == "psa":
            verify_psa_token(token, iak_public_key=key)
        else:
            verify_cca_token(token, cpak_public_key=key)
    except FormatError:
        return "format"
    except VerificationError as exc:
        return exc.code
    return "valid"


def test_every_arm_sample_has_an_expected_verdict() -> None:
    load_manifest(MANIFEST)
    assert {s["id"] for s in PSA + CCA} == set(EXPECTED)


@pytest.mark.parametrize("sample", PSA + CCA, ids=lambda s: s["id"])
def test_sample_gets_the_manifest_verdict(sample: dict[str, Any]) -> None:
    family = sample["family"]
    for token_role, key_role, want in EXPECTED[sample["id"]]:
        token = sample_path(sample, token_role).read_bytes()
        got = _outcome(family, token, _key(sample, key_role))
        assert got == want, (sample["id"], token_role)


@pytest.mark.parametrize("sample", PSA + CCA, ids=lambda s: s["id"])
def test_valid_sample_is_accepted_by_the_default_policy(sample: dict[str, Any]) -> None:
    for token_role, key_role, want in EXPECTED[sample["id"]]:
        if want != "valid":
            continue
        token = sample_path(sample, token_role).read_bytes()
        key = _key(sample, key_role)
        if sample["family"] == "psa":
            a = appraise(verify_psa_token(token, iak_public_key=key), PsaPolicy())
        else:
            a = appraise(verify_cca_token(token, cpak_public_key=key), CcaPolicy())
        assert a.accepted, a.to_text()


def test_integ_token_fails_under_the_other_endorsement_key() -> None:
    integ = _one(PSA, "veraison-psa-integ-token")
    iot = _one(PSA, "veraison-psa-iot-token")
    token = sample_path(integ, "token").read_bytes()
    other = load_public_key(sample_path(iot, "trust_anchor_endorsement"))
    with pytest.raises(VerificationError) as exc:
        verify_psa_token(token, iak_public_key=other)
    assert exc.value.code == "psa.signature"


def test_psa_iot_claims_match_veraison_extracted_claims() -> None:
    s = _one(PSA, "veraison-psa-iot-token")
    claims = PsaToken.from_bytes(sample_path(s, "token").read_bytes()).claims
    known = s["known_fields"]["claims"]
    assert claims.nonce.hex() == known["nonce"]
    assert claims.instance_id.hex() == known["instance_id"]
    assert claims.implementation_id.hex() == known["implementation_id"]
    assert claims.profile == "PSA_IOT_PROFILE_1" and claims.legacy_p1
    assert len(claims.sw_components) == len(known["sw_components"])
    extracted = json.loads(sample_path(s, "expected_extracted_claims").read_text())
    assert "evidence" in extracted


def test_tfm_p2_claims_match_the_manifest() -> None:
    s = _one(PSA, "tfm-psa-2.0.0-sign1")
    c = PsaToken.from_bytes(sample_path(s, "token_sign1").read_bytes()).claims
    k = s["known_fields"]["claims"]
    assert (c.client_id, c.security_lifecycle, c.certification_reference) == (
        k["client_id"], k["security_lifecycle"], k["certification_reference"])
    assert [x.measurement_value.hex() for x in c.sw_components] == [
        x["2"] for x in k["sw_components"]]
    assert c.lifecycle_state == "secured" and not c.legacy_p1


@pytest.mark.parametrize("sample", [s for s in CCA if "platform_claims" in s["known_fields"]],
                         ids=lambda s: s["id"])
def test_cca_sample_claims_match_the_manifest(sample: dict[str, Any]) -> None:
    kf = sample["known_fields"]
    (role, _, _), *_ = EXPECTED[sample["id"]]
    t = CcaToken.from_bytes(sample_path(sample, role).read_bytes())
    assert t.collection_tag == kf["collection_tag"]
    assert t.platform_claims.challenge.hex() == kf["platform_claims"]["challenge"]
    assert t.platform_claims.lifecycle == kf["platform_claims"]["lifecycle"]
    assert t.realm_claims.public_key.raw.hex() == kf["realm_claims"]["public_key"]
    assert [r.hex() for r in t.realm_claims.extensible_measurements] == (
        kf["realm_claims"]["extensible_measurements"])


def test_trustee_token_matches_its_trust_anchor_store() -> None:
    s = _one(CCA, "trustee-cca-example-token")
    (ta,) = json.loads(sample_path(s, "trust_anchors").read_text())
    token = sample_path(s, "cca_token").read_bytes()
    v = verify_cca_token(token, cpak_public_key=public_key_from_jwk(ta["pkey"]))
    policy = CcaPolicy(implementation_ids={bytes.fromhex(ta["implementation-id"])},
                       instance_ids={bytes.fromhex(ta["instance-id"])})
    assert appraise(v, policy).accepted


def test_parsec_key_attestation_is_bound_to_the_realm_token() -> None:
    s = _one(CCA, "veraison-parsec-cca")
    v = verify_cca_token(sample_path(s, "pat_extracted").read_bytes(),
                         cpak_public_key=load_public_key(sample_path(s, "iak_public_jwk")))
    rak = load_public_key(sample_path(s, "p384_public_jwk"))
    assert v.rak.public_numbers() == rak.public_numbers()
    kat = sample_path(s, "kat_extracted").read_bytes()
    policy = CcaPolicy(challenge=hashlib.sha512(kat).digest())
    assert appraise(v, policy).accepted
    assert (EVIDENCE_DIR / s["dir"] / "evidence.cbor").is_file()
