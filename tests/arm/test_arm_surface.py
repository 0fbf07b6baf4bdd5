"""Pinned public surface of the Arm modules: finding codes, verification codes, __all__."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from veritee.collateral import arm as collateral_arm
from veritee.formats import cca as formats_cca
from veritee.formats import cose as formats_cose
from veritee.formats import psa as formats_psa
from veritee.policy import arm as policy_arm
from veritee.policy.arm import FINDING_CODES, CcaPolicy, PsaPolicy, appraise
from veritee.trust import cca as trust_cca
from veritee.trust import psa as trust_psa
from veritee.trust.cca import verify_cca_token
from veritee.trust.psa import verify_psa_token

from _arm_support import cca_token, psa_token


def test_finding_codes_are_pinned() -> None:
    assert sorted(FINDING_CODES) == sorted([
        "psa.lifecycle.state", "psa.nonce.mismatch", "psa.profile.mismatch",
        "psa.implementation_id.mismatch", "psa.instance_id.mismatch",
        "psa.sw_components.mismatch", "cca.platform.lifecycle.state",
        "cca.platform.profile.mismatch", "cca.platform.implementation_id.mismatch",
        "cca.platform.instance_id.mismatch", "cca.platform.sw_components.mismatch",
        "cca.realm.challenge.mismatch", "cca.realm.personalization.mismatch",
        "cca.realm.rim.mismatch", "cca.realm.rem0.mismatch", "cca.realm.rem1.mismatch",
        "cca.realm.rem2.mismatch", "cca.realm.rem3.mismatch"])


def test_every_emitted_code_is_pinned_and_defaults_skip_all_but_lifecycle() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    psa = appraise(verify_psa_token(psa_token(key), iak_public_key=key.public_key()),
                   PsaPolicy())
    parts = cca_token()
    cca = appraise(verify_cca_token(parts.token, cpak_public_key=parts.cpak.public_key()),
                   CcaPolicy())
    for a in (psa, cca):
        assert {f.code for f in a.findings} <= FINDING_CODES
        assert [f.code for f in a.findings if not f.passed and f not in a.skipped] == []
        ran = [f.code for f in a.findings if f.passed]
        assert len(ran) == 1 and ran[0].endswith("lifecycle.state")
    assert {f.code for f in psa.findings} | {f.code for f in cca.findings} == FINDING_CODES
    assert psa.to_json() and "verdict: ACCEPTED" in cca.to_text()


def test_public_surface_is_pinned() -> None:
    assert set(formats_cose.__all__) == {"COSE_SIGN1_TAG", "MAX_DEPTH", "MAX_TOKEN_SIZE",
                                            "CoseAlg", "CoseSign1", "Tag", "decode_cbor",
                                            "encode_cbor"}
    assert set(formats_psa.__all__) == {"LIFECYCLE_STATES", "PsaClaims", "PsaToken",
                                           "SwComponent", "lifecycle_state",
                                           "parse_sw_components"}
    assert set(formats_cca.__all__) == {"CCA_LEGACY_TAG", "CCA_TOKEN_TAG",
                                           "CcaPlatformClaims", "CcaRealmClaims", "CcaToken",
                                           "RealmPublicKey"}
    assert set(trust_psa.__all__) == {"VerifiedPsaToken", "check_key_for_alg",
                                         "verify_psa_token", "verify_sign1"}
    assert set(trust_cca.__all__) == {"RAK_HASH_ALGORITHMS", "VerifiedCcaToken",
                                         "realm_public_key", "verify_cca_token"}
    assert set(policy_arm.__all__) == {"FINDING_CODES", "CcaPolicy", "PsaPolicy",
                                          "appraise", "cca_policy_from_mapping", "claims",
                                          "policy_to_mapping", "psa_policy_from_mapping"}
    assert set(collateral_arm.__all__) == {"load_public_key", "parse_public_key",
                                              "public_key_from_jwk", "read_token"}
