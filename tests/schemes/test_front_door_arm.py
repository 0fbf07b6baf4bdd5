"""attest.verify, the one front door, on Arm PSA and CCA tokens from fake devices (no ../shared).

The trust anchor is the device key the verifier knows (IAK for PSA, CPAK for CCA), keyed by
the token's instance id.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings

from veritee import attest, schemes
from veritee.errors import ConfigError, PolicyRejected, VerificationError, VeriteeError
from veritee.policy import Appraisal
from veritee.policy.arm import CcaPolicy, PsaPolicy
from veritee.testing.arm import FakeCca, FakePsa
from veritee.testing.nitro import DEFAULT_NOW

from _scheme_support import bound, challenge, mutated

NOW = DEFAULT_NOW


@pytest.fixture(scope="module")
def psa() -> FakePsa:
    return FakePsa()


@pytest.fixture(scope="module")
def cca() -> FakeCca:
    return FakeCca()


def _verifier(anchors: object) -> attest.Verifier:
    return attest.Verifier(anchors=schemes.Anchors({"arm": anchors}), clock=lambda: NOW)


def _flip(data: bytes, offset: int) -> bytes:
    bad = bytearray(data)
    bad[offset] ^= 0x01
    return bytes(bad)


# -- PSA ----------------------------------------------------------------------------------------

def test_psa_token_bound_to_the_challenge_is_accepted(psa: FakePsa) -> None:
    ch = challenge()
    token = psa.token(nonce=bound(ch))
    assert schemes.recognise(token).name == "psa"
    appraisal = _verifier(psa.anchors()).verify(token, policy=PsaPolicy(), challenge=ch)
    assert isinstance(appraisal, Appraisal) and appraisal.accepted
    assert set(schemes.COMMON_CLAIMS) <= set(appraisal.claims)
    assert appraisal.claims["debug"] is False and appraisal.claims["measurement"] is None
    assert appraisal.verification[0].code == "psa.anchor"
    assert appraisal.vector == {"hardware": 2, "executables": 0, "configuration": 2,
                                "instance-identity": 2}


def test_psa_token_for_another_challenge_is_rejected(psa: FakePsa) -> None:
    token = psa.token(nonce=bound(challenge()))
    with pytest.raises(PolicyRejected) as info:
        _verifier(psa.anchors()).verify(token, policy=PsaPolicy(), challenge=challenge())
    assert info.value.appraisal.codes() == ["psa.binding.mismatch"]


def test_short_psa_nonce_is_checked_with_a_raw_expected_binding(psa: FakePsa) -> None:
    ch = challenge()
    raw = schemes.expected_binding(ch.nonce, ch.key_spki, 32)
    token = psa.token(nonce=raw)
    verifier = _verifier(psa.anchors())
    # A challenge derives 64 bytes: a 32-byte nonce cannot carry it ...
    with pytest.raises(PolicyRejected):
        verifier.verify(token, policy=PsaPolicy(), challenge=ch)
    # ... so the relying party passes the 32 bytes it expects.
    assert verifier.verify(token, policy=PsaPolicy(), expected_binding=raw).accepted
    with pytest.raises(PolicyRejected):
        verifier.verify(token, policy=PsaPolicy(), expected_binding=bytes(32))


def test_every_tampered_byte_of_a_psa_token_is_refused(psa: FakePsa) -> None:
    token = psa.token()
    verifier = _verifier(psa.anchors())
    for offset in range(8, len(token), 23):
        with pytest.raises(VeriteeError):
            verifier.verify(_flip(token, offset), policy=PsaPolicy())


def test_psa_token_signed_by_another_key_is_refused(psa: FakePsa) -> None:
    token = psa.token(key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(VerificationError) as info:
        _verifier(psa.anchors()).verify(token, policy=PsaPolicy())
    assert info.value.code == "psa.signature"


def test_psa_key_listed_for_another_instance_is_not_used(psa: FakePsa) -> None:
    other = FakePsa()
    with pytest.raises(VerificationError) as info:
        _verifier(other.anchors()).verify(psa.token(), policy=PsaPolicy())
    assert info.value.code == "psa.anchor.unknown"
    # The right instance id with the wrong key: the signature check refuses it.
    wrong = {psa.instance_id.hex(): other.iak.public_key()}
    with pytest.raises(VerificationError) as info:
        _verifier(wrong).verify(psa.token(), policy=PsaPolicy())
    assert info.value.code == "psa.signature"


def test_without_arm_anchors_every_token_is_refused(psa: FakePsa) -> None:
    # No device key at all is the verifier's configuration (the CLI's missing --key).
    with pytest.raises(ConfigError, match="--key"):
        attest.verify(psa.token(), policy=PsaPolicy(), now=NOW)


def test_a_list_of_keys_is_tried_in_turn(psa: FakePsa) -> None:
    keys = [FakePsa().iak.public_key(), psa.iak.public_key()]
    assert _verifier(keys).verify(psa.token(), policy=PsaPolicy()).accepted


def _device_cert(key: ec.EllipticCurvePrivateKey, days: int) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake IAK")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(NOW - timedelta(days=days + 1))
            .not_valid_after(NOW - timedelta(days=1) + timedelta(days=2 * days))
            .sign(key, hashes.SHA256()))


def test_expired_device_certificate_is_not_an_anchor(psa: FakePsa) -> None:
    valid = {psa.instance_id: _device_cert(psa.iak, 30)}
    assert _verifier(valid).verify(psa.token(), policy=PsaPolicy()).accepted
    expired = {psa.instance_id: _device_cert(psa.iak, 0)}
    with pytest.raises(VerificationError) as info:
        _verifier(expired).verify(psa.token(), policy=PsaPolicy())
    assert info.value.code == "psa.anchor.expired"
    with pytest.raises(VerificationError) as info:
        attest.Verifier(anchors=schemes.Anchors({"arm": valid})).verify(
            psa.token(), policy=PsaPolicy(), now=NOW - timedelta(days=40))
    assert info.value.code == "psa.anchor.not_yet_valid"


def test_psa_debug_lifecycle_is_refused_and_contraindicated(psa: FakePsa) -> None:
    appraisal = _verifier(psa.anchors()).appraise(psa.token(lifecycle=0x5000),
                                                  policy=PsaPolicy())
    assert isinstance(appraisal, Appraisal)
    assert appraisal.codes() == ["psa.lifecycle.state"]
    assert appraisal.claims["debug"] is True
    assert appraisal.vector is not None and appraisal.vector["configuration"] == 96


def test_psa_reference_measurements_make_approved_executables(psa: FakePsa) -> None:
    policy = PsaPolicy(sw_measurements=set(psa.sw_measurements))
    ok = _verifier(psa.anchors()).appraise(psa.token(), policy=policy)
    assert isinstance(ok, Appraisal) and ok.vector is not None
    assert ok.vector["executables"] == 3
    bad = _verifier(psa.anchors()).appraise(psa.token(sw_measurements=[b"\x09" * 32]),
                                            policy=policy)
    assert isinstance(bad, Appraisal) and bad.vector is not None
    assert bad.codes() == ["psa.sw_components.mismatch"] and bad.vector["executables"] == 33


def test_psa_wrong_policy_type_is_a_config_error(psa: FakePsa) -> None:
    with pytest.raises(ConfigError, match="PsaPolicy"):
        _verifier(psa.anchors()).verify(psa.token(), policy=CcaPolicy())


# -- CCA ----------------------------------------------------------------------------------------

def test_cca_token_bound_to_the_challenge_is_accepted(cca: FakeCca) -> None:
    ch = challenge()
    token = cca.token(challenge=bound(ch))
    assert schemes.recognise(token).name == "cca"
    appraisal = _verifier(cca.anchors()).verify(token, policy=CcaPolicy(rim={cca.rim}),
                                                challenge=ch)
    assert isinstance(appraisal, Appraisal) and appraisal.accepted
    assert appraisal.claims["measurement"] == cca.rim.hex()
    assert appraisal.claims["binding"] == bound(ch).hex()
    assert appraisal.vector == {"hardware": 2, "executables": 3, "configuration": 2,
                                "runtime-opaque": 2, "instance-identity": 2}


def test_legacy_cca_token_is_accepted(cca: FakeCca) -> None:
    ch = challenge()
    token = cca.token(challenge=bound(ch), legacy=True)
    assert _verifier(cca.anchors()).verify(token, policy=CcaPolicy(),
                                           challenge=ch).accepted


def test_cca_token_for_another_challenge_is_rejected(cca: FakeCca) -> None:
    token = cca.token(challenge=bound(challenge()))
    with pytest.raises(PolicyRejected) as info:
        _verifier(cca.anchors()).verify(token, policy=CcaPolicy(), challenge=challenge())
    assert info.value.appraisal.codes() == ["cca.binding.mismatch"]
    assert info.value.appraisal.vector is not None
    assert info.value.appraisal.vector["instance-identity"] == 99


def test_every_tampered_byte_of_a_cca_token_is_refused(cca: FakeCca) -> None:
    token = cca.token()
    verifier = _verifier(cca.anchors())
    for offset in range(12, len(token), 29):
        with pytest.raises(VeriteeError):
            verifier.verify(_flip(token, offset), policy=CcaPolicy())


def test_realm_not_bound_to_the_platform_is_refused(cca: FakeCca) -> None:
    token = cca.token(bound_rak=ec.generate_private_key(ec.SECP384R1()).public_key())
    with pytest.raises(VerificationError) as info:
        _verifier(cca.anchors()).verify(token, policy=CcaPolicy())
    assert info.value.code == "cca.binding.rak_hash"


def test_platform_signed_by_another_cpak_is_refused(cca: FakeCca) -> None:
    token = cca.token(cpak=ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(VerificationError) as info:
        _verifier(cca.anchors()).verify(token, policy=CcaPolicy())
    assert info.value.code == "cca.platform.signature"
    with pytest.raises(VerificationError) as info:
        _verifier(FakeCca().anchors()).verify(cca.token(), policy=CcaPolicy())
    assert info.value.code == "cca.anchor.unknown"


def test_cca_debug_platform_is_refused_and_not_opaque(cca: FakeCca) -> None:
    appraisal = _verifier(cca.anchors()).appraise(cca.token(lifecycle=0x4001),
                                                  policy=CcaPolicy())
    assert isinstance(appraisal, Appraisal) and appraisal.vector is not None
    assert appraisal.codes() == ["cca.platform.lifecycle.state"]
    assert appraisal.vector["configuration"] == 96
    assert appraisal.vector["runtime-opaque"] == 96


def test_cca_unknown_realm_image_is_an_unrecognised_executable(cca: FakeCca) -> None:
    appraisal = _verifier(cca.anchors()).appraise(cca.token(rim=b"\x99" * 48),
                                                  policy=CcaPolicy(rim={cca.rim}))
    assert isinstance(appraisal, Appraisal) and appraisal.vector is not None
    assert appraisal.codes() == ["cca.realm.rim.mismatch"]
    assert appraisal.vector["executables"] == 33


def test_arm_policy_mappings_round_trip_and_name_the_bad_key(cca: FakeCca) -> None:
    psa_scheme, cca_scheme = schemes.get("psa"), schemes.get("cca")
    p = PsaPolicy(nonce=b"\x01" * 48, profiles={"http://arm.com/psa/2.0.0"})
    assert psa_scheme.policy_from_mapping(psa_scheme.policy_to_mapping(p)) == p
    c = CcaPolicy(rim={cca.rim}, rems=[None, {b"\x51" * 48}, None, None],
                  allowed_lifecycle_states={"secured", "non-psa-rot-debug"})
    assert cca_scheme.policy_from_mapping(cca_scheme.policy_to_mapping(c)) == c
    with pytest.raises(ConfigError, match="rems"):
        cca_scheme.policy_from_mapping({"rems": [None]})
    with pytest.raises(ConfigError, match="nonce"):
        psa_scheme.policy_from_mapping({"nonce": "00" * 20})


_PSA, _CCA = FakePsa(), FakeCca()
_SEEDS = (_PSA.token(), _CCA.token(), _CCA.token(legacy=True))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated(_SEEDS))
def test_mutated_tokens_only_raise_typed_errors(data: bytes) -> None:
    verifier = _verifier({**_PSA.anchors(), **_CCA.anchors()})
    with contextlib.suppress(VeriteeError):  # FormatError, VerificationError ...
        verifier.appraise(data, policy=attest.UNSAFE_DEFAULT_POLICIES)


def test_device_keys_as_pem_der_or_certificate_bytes(psa: FakePsa) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pub = psa.iak.public_key()
    forms = (pub.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
             pub.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
             _device_cert(psa.iak, 30).public_bytes(Encoding.PEM),
             _device_cert(psa.iak, 30).public_bytes(Encoding.DER))
    for form in forms:
        assert _verifier({psa.instance_id: form}).verify(psa.token(), policy=PsaPolicy()).accepted
    with pytest.raises(ConfigError):
        _verifier({psa.instance_id: b"not a key"}).verify(psa.token(), policy=PsaPolicy())


def test_vector_of_an_appraisal_made_by_the_policy_module(cca: FakeCca) -> None:
    from veritee.policy.arm import appraise
    from veritee.trust.cca import verify_cca_token

    verified = verify_cca_token(cca.token(challenge=b"\x07" * 64),
                                cpak_public_key=cca.cpak.public_key())
    vector = getattr(schemes.get("cca"), "trust_vector")  # noqa: B009
    assert vector(appraise(verified, CcaPolicy(challenge=b"\x07" * 64)))["instance-identity"] == 2
    assert vector(appraise(verified, CcaPolicy(challenge=b"\x08" * 64)))["instance-identity"] == 99
    assert vector(appraise(verified, CcaPolicy()))["runtime-opaque"] == 2


def test_cli_hooks_read_keys_and_describe_tokens(psa: FakePsa, cca: FakeCca,
                                                 tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = tmp_path / "iak.pem"
    key.write_bytes(psa.iak.public_key().public_bytes(Encoding.PEM,
                                                      PublicFormat.SubjectPublicKeyInfo))
    scheme = schemes.get("psa")
    anchors = getattr(scheme, "load_anchors")([key])  # noqa: B009
    assert _verifier(anchors).verify(psa.token(), policy=PsaPolicy()).accepted
    shown = getattr(scheme, "describe")(scheme.parse(psa.token()))  # noqa: B009
    assert shown["format"] == "arm-psa-token" and shown["lifecycle_state"] == "secured"
    assert shown["evidence"]["message"]["alg"] == "ES256"
    assert shown["evidence"]["claims"]["instance_id"] == psa.instance_id.hex()
    shown = getattr(schemes.get("cca"), "describe")(  # noqa: B009
        schemes.get("cca").parse(cca.token()))
    assert shown["format"] == "arm-cca-token"
    assert shown["evidence"]["realm_claims"]["initial_measurement"] == cca.rim.hex()
