"""Attacks on PSA/CCA tokens: each test changes one thing and expects one error or one finding.

Minted tokens (fresh keys, :mod:`_arm_support`) always run; the real-sample variants skip when
../shared/evidence is absent.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.collateral.arm import load_public_key
from veritee.errors import ConfigError, FormatError, VerificationError
from veritee.formats.cca import CcaToken
from veritee.formats.psa import PsaToken
from veritee.policy.arm import CcaPolicy, PsaPolicy, appraise
from veritee.trust.cca import verify_cca_token
from veritee.trust.psa import verify_psa_token

from _arm_support import MANIFEST, cca_token, psa_token, sample_path
from _evidence import manifest_samples


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


def _code(exc: pytest.ExceptionInfo[VerificationError]) -> str:
    return exc.value.code


# --- PSA ---------------------------------------------------------------------------------

def test_minted_psa_token_verifies_and_is_accepted() -> None:
    key = _p256()
    v = verify_psa_token(psa_token(key), iak_public_key=key.public_key())
    assert [c.code for c in v.checks] == ["psa.key", "psa.signature"]
    assert appraise(v, PsaPolicy(nonce=b"\x4e" * 32)).accepted


def test_psa_token_with_flipped_nonce_byte_is_rejected() -> None:
    key = _p256()
    token = psa_token(key)
    at = token.index(b"\x4e" * 32) + 5
    with pytest.raises(VerificationError) as exc:
        verify_psa_token(_flip(token, at), iak_public_key=key.public_key())
    assert _code(exc) == "psa.signature"


def test_psa_token_with_flipped_signature_byte_is_rejected() -> None:
    key = _p256()
    token = psa_token(key)
    with pytest.raises(VerificationError) as exc:
        verify_psa_token(_flip(token, len(token) - 1), iak_public_key=key.public_key())
    assert _code(exc) == "psa.signature"


def test_psa_token_signed_by_another_iak_is_rejected() -> None:
    with pytest.raises(VerificationError) as exc:
        verify_psa_token(psa_token(_p256()), iak_public_key=_p256().public_key())
    assert _code(exc) == "psa.signature"


def test_psa_key_of_the_wrong_curve_is_rejected() -> None:
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(VerificationError) as exc:
        verify_psa_token(psa_token(_p256()), iak_public_key=other)
    assert _code(exc) == "psa.key"


@pytest.mark.parametrize(("lifecycle", "state"), [
    (0x2000, "psa-rot-provisioning"), (0x4000, "non-psa-rot-debug"),
    (0x5001, "recoverable-psa-rot-debug"), (0x6000, "decommissioned"), (0x0000, "unknown")])
def test_non_secured_psa_lifecycle_fails_the_default_policy(lifecycle: int, state: str) -> None:
    key = _p256()
    v = verify_psa_token(psa_token(key, lifecycle=lifecycle), iak_public_key=key.public_key())
    a = appraise(v, PsaPolicy())
    assert a.codes() == ["psa.lifecycle.state"]
    assert state in str(a.failures[0].got)
    assert appraise(v, PsaPolicy(allowed_lifecycle_states={"secured", state})).accepted


def test_psa_wrong_nonce_is_a_finding() -> None:
    key = _p256()
    v = verify_psa_token(psa_token(key), iak_public_key=key.public_key())
    assert appraise(v, PsaPolicy(nonce=b"\x00" * 32)).codes() == ["psa.nonce.mismatch"]


def test_psa_unknown_sw_measurement_is_a_finding() -> None:
    key = _p256()
    v = verify_psa_token(psa_token(key), iak_public_key=key.public_key())
    assert appraise(v, PsaPolicy(sw_measurements={b"\x01" * 32})).codes() == [
        "psa.sw_components.mismatch"]
    assert appraise(v, PsaPolicy(sw_measurements={b"\x01" * 32, b"\x03" * 32})).accepted


def test_psa_unknown_implementation_id_is_a_finding() -> None:
    key = _p256()
    v = verify_psa_token(psa_token(key), iak_public_key=key.public_key())
    assert appraise(v, PsaPolicy(implementation_ids={b"\x00" * 32})).codes() == [
        "psa.implementation_id.mismatch"]


def test_psa_token_with_instance_id_of_the_wrong_type_is_malformed() -> None:
    with pytest.raises(FormatError):
        PsaToken.from_bytes(psa_token(_p256(), instance_id=b"\x02" + b"\xcc" * 32))


def test_psa_token_without_a_nonce_is_malformed() -> None:
    with pytest.raises(FormatError):
        PsaToken.from_bytes(psa_token(_p256(), nonce=None))


def test_psa_policy_rejects_bad_config() -> None:
    with pytest.raises(ConfigError):
        PsaPolicy(nonce=b"short")
    with pytest.raises(ConfigError):
        PsaPolicy(allowed_lifecycle_states="secured")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        PsaPolicy(allowed_lifecycle_states={"trusted"})


# --- CCA ---------------------------------------------------------------------------------

@pytest.mark.parametrize("legacy", [False, True])
def test_minted_cca_token_verifies_and_is_accepted(legacy: bool) -> None:
    parts = cca_token(legacy=legacy)
    v = verify_cca_token(parts.token, cpak_public_key=parts.cpak.public_key())
    assert [c.code for c in v.checks] == ["cca.realm.key", "cca.realm.signature",
                                          "cca.binding.rak_hash", "cca.platform.key",
                                          "cca.platform.signature"]
    assert appraise(v, CcaPolicy(challenge=b"\x41" * 64, rim={b"\x43" * 32})).accepted


def test_realm_token_whose_rak_hash_differs_from_the_platform_challenge_is_rejected() -> None:
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    parts = cca_token(bound_rak=other)
    with pytest.raises(VerificationError) as exc:
        verify_cca_token(parts.token, cpak_public_key=parts.cpak.public_key())
    assert _code(exc) == "cca.binding.rak_hash"


def test_cca_token_with_flipped_realm_signature_is_rejected() -> None:
    parts = cca_token()
    t = CcaToken.from_bytes(parts.token)
    at = parts.token.index(t.realm.signature) + 3
    with pytest.raises(VerificationError) as exc:
        verify_cca_token(_flip(parts.token, at), cpak_public_key=parts.cpak.public_key())
    assert _code(exc) == "cca.realm.signature"


def test_cca_token_with_flipped_platform_payload_byte_is_rejected() -> None:
    parts = cca_token()
    at = parts.token.index(b"\x01\x02\x03")  # the platform config claim
    with pytest.raises(VerificationError) as exc:
        verify_cca_token(_flip(parts.token, at), cpak_public_key=parts.cpak.public_key())
    assert _code(exc) == "cca.platform.signature"


def test_cca_token_signed_by_another_cpak_is_rejected() -> None:
    parts = cca_token()
    with pytest.raises(VerificationError) as exc:
        verify_cca_token(parts.token, cpak_public_key=_p256().public_key())
    assert _code(exc) == "cca.platform.signature"


def test_cca_non_secured_platform_lifecycle_fails_the_default_policy() -> None:
    parts = cca_token(lifecycle=0x4000)
    v = verify_cca_token(parts.token, cpak_public_key=parts.cpak.public_key())
    assert appraise(v, CcaPolicy()).codes() == ["cca.platform.lifecycle.state"]


def test_cca_wrong_realm_challenge_is_a_finding() -> None:
    parts = cca_token()
    v = verify_cca_token(parts.token, cpak_public_key=parts.cpak.public_key())
    assert appraise(v, CcaPolicy(challenge=b"\x00" * 64)).codes() == [
        "cca.realm.challenge.mismatch"]


def test_cca_unknown_rim_rem_and_personalization_are_findings() -> None:
    parts = cca_token()
    v = verify_cca_token(parts.token, cpak_public_key=parts.cpak.public_key())
    policy = CcaPolicy(rim={b"\x00" * 32}, rems=({b"\x50" * 32}, {b"\x00" * 32}, None, None),
                       personalization_value=b"\x00" * 64)
    assert appraise(v, policy).codes() == ["cca.realm.personalization.mismatch",
                                           "cca.realm.rim.mismatch", "cca.realm.rem1.mismatch"]


def test_policy_of_the_wrong_kind_is_a_config_error() -> None:
    parts = cca_token()
    v = verify_cca_token(parts.token, cpak_public_key=parts.cpak.public_key())
    with pytest.raises(ConfigError):
        appraise(v, PsaPolicy())


# --- real samples ------------------------------------------------------------------------

_RMM = [s for s in manifest_samples("cca/", MANIFEST) if s["id"] == "tf-rmm-cca-token-399"]


@pytest.mark.evidence
@pytest.mark.parametrize("sample", _RMM, ids=lambda s: s["id"])
class TestRealRmmToken:
    """One-byte changes to the real TF-RMM token."""

    def _load(self, sample: dict[str, object]) -> tuple[bytes, object]:
        return (sample_path(sample, "cca_token").read_bytes(),
                load_public_key(sample_path(sample, "cpak_public_key")))

    def test_flipped_platform_challenge_breaks_the_rak_binding(self, sample: dict[str, object]
                                                               ) -> None:
        token, cpak = self._load(sample)
        t = CcaToken.from_bytes(token)
        at = token.index(t.platform_claims.challenge)
        with pytest.raises(VerificationError) as exc:
            verify_cca_token(_flip(token, at), cpak_public_key=cpak)
        assert _code(exc) == "cca.binding.rak_hash"

    def test_flipped_realm_challenge_breaks_the_realm_signature(
            self, sample: dict[str, object]) -> None:
        token, cpak = self._load(sample)
        at = token.index(CcaToken.from_bytes(token).realm_claims.challenge)
        with pytest.raises(VerificationError) as exc:
            verify_cca_token(_flip(token, at), cpak_public_key=cpak)
        assert _code(exc) == "cca.realm.signature"

    def test_flipped_platform_signature_is_rejected(self, sample: dict[str, object]) -> None:
        token, cpak = self._load(sample)
        at = token.index(CcaToken.from_bytes(token).platform.signature) + 10
        with pytest.raises(VerificationError) as exc:
            verify_cca_token(_flip(token, at), cpak_public_key=cpak)
        assert _code(exc) == "cca.platform.signature"

    def test_wrong_challenge_under_policy(self, sample: dict[str, object]) -> None:
        token, cpak = self._load(sample)
        v = verify_cca_token(token, cpak_public_key=cpak)
        assert appraise(v, CcaPolicy(challenge=b"\x00" * 64)).codes() == [
            "cca.realm.challenge.mismatch"]
        assert appraise(v, CcaPolicy(challenge=b"\xab" * 64)).accepted


_TFM = [s for s in manifest_samples("psa/", MANIFEST) if s["id"] == "tfm-psa-2.0.0-sign1"]


@pytest.mark.evidence
@pytest.mark.parametrize("sample", _TFM, ids=lambda s: s["id"])
def test_real_tfm_token_with_flipped_boot_seed_is_rejected(sample: dict[str, object]) -> None:
    token = sample_path(sample, "token_sign1").read_bytes()
    key = load_public_key(sample_path(sample, "iak_public_key"))
    seed = PsaToken.from_bytes(token).claims.boot_seed
    assert seed is not None
    with pytest.raises(VerificationError) as exc:
        verify_psa_token(_flip(token, token.index(seed)), iak_public_key=key)
    assert _code(exc) == "psa.signature"
    with pytest.raises(VerificationError) as exc:
        verify_psa_token(_flip(token, len(token) - 1), iak_public_key=key)
    assert _code(exc) == "psa.signature"
