"""attest.verify, the one front door, on AWS Nitro documents from a fake NSM (no ../shared)."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings

from veritee import attest, schemes
from veritee.errors import ConfigError, PolicyRejected, VerificationError, VeriteeError
from veritee.policy import Appraisal
from veritee.policy.arm import PsaPolicy
from veritee.policy.nitro import NitroPolicy
from veritee.testing.nitro import FakeNitro

from _scheme_support import bound, challenge, mutated

IMAGE = b"\x10" * 48  # FakeNitro's default PCR0


@pytest.fixture(scope="module")
def nitro() -> FakeNitro:
    return FakeNitro()


def _verifier(nitro: FakeNitro) -> attest.Verifier:
    return attest.Verifier(anchors=schemes.Anchors({"aws": nitro.anchors()}),
                           clock=lambda: nitro.now)


def _policy(**kw: object) -> NitroPolicy:
    return NitroPolicy(pcr0={IMAGE}, **kw)  # type: ignore[arg-type]


def test_registry_recognises_a_document_as_nitro_not_psa(nitro: FakeNitro) -> None:
    assert schemes.recognise(nitro.document()).name == "nitro"
    assert schemes.recognise(nitro.sign(nitro.payload(), tagged=True)).name == "nitro"
    assert not schemes.get("psa").recognise(nitro.document())


def test_bound_document_is_accepted_with_an_affirming_vector(nitro: FakeNitro) -> None:
    ch = challenge()
    doc = nitro.document(nonce=bound(ch), user_data=b"app", public_key=b"pk")
    appraisal = _verifier(nitro).verify(doc, policy=_policy(), challenge=ch)
    assert isinstance(appraisal, Appraisal) and appraisal.accepted
    claims = appraisal.claims
    assert set(schemes.COMMON_CLAIMS) <= set(claims)
    assert claims["tee"] == "nitro" and claims["measurement"] == IMAGE.hex()
    assert claims["binding"] == bound(ch).hex() and claims["debug"] is False
    # public_key / user_data are claims a relying party may pin, not the binding.
    assert (claims["user_data"], claims["public_key"]) == (b"app".hex(), b"pk".hex())
    assert appraisal.vector == {"hardware": 2, "executables": 3, "configuration": 2,
                                "runtime-opaque": 2, "instance-identity": 2}


def test_document_bound_to_another_key_is_rejected(nitro: FakeNitro) -> None:
    doc = nitro.document(nonce=bound(challenge()))
    with pytest.raises(PolicyRejected) as info:
        _verifier(nitro).verify(doc, policy=_policy(), challenge=challenge())
    assert info.value.appraisal.codes() == ["nitro.binding.mismatch"]
    assert info.value.appraisal.vector is not None
    assert info.value.appraisal.vector["instance-identity"] == 99


def test_challenge_in_user_data_instead_of_nonce_is_not_a_binding(nitro: FakeNitro) -> None:
    ch = challenge()
    doc = nitro.document(user_data=bound(ch))
    with pytest.raises(PolicyRejected) as info:
        _verifier(nitro).verify(doc, policy=_policy(), challenge=ch)
    assert "nitro.binding.mismatch" in info.value.appraisal.codes()


def test_every_tampered_byte_of_the_payload_is_refused(nitro: FakeNitro) -> None:
    doc = nitro.document(nonce=b"\x01" * 64)
    verifier = _verifier(nitro)
    start = doc.index(b"module_id")
    for offset in range(start, len(doc) - 100, 97):
        bad = bytearray(doc)
        bad[offset] ^= 0x01
        with pytest.raises(VeriteeError):
            verifier.verify(bytes(bad), policy=_policy(allow_debug=True))


def test_a_changed_pcr_breaks_the_signature(nitro: FakeNitro) -> None:
    doc = nitro.document()
    bad = doc.replace(IMAGE, b"\x11" * 48, 1)
    with pytest.raises(VerificationError) as info:
        _verifier(nitro).verify(bad, policy=_policy())
    assert info.value.code == "nitro.signature"


def test_document_signed_by_another_key_is_refused(nitro: FakeNitro) -> None:
    doc = nitro.document(key=ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(VerificationError) as info:
        _verifier(nitro).verify(doc, policy=_policy())
    assert info.value.code == "nitro.signature"


def test_genuine_aws_pin_refuses_a_fake_chain(nitro: FakeNitro) -> None:
    with pytest.raises(VerificationError) as info:
        attest.verify(nitro.document(), policy=_policy(), now=nitro.now)
    assert info.value.code == "nitro.chain.root_untrusted"


def test_another_root_is_not_an_anchor(nitro: FakeNitro) -> None:
    other = FakeNitro()
    with pytest.raises(VerificationError) as info:
        attest.verify(nitro.document(), policy=_policy(), now=nitro.now,
                      anchors=schemes.Anchors({"aws": other.anchors()}))
    assert info.value.code == "nitro.chain.root_untrusted"


def test_expired_leaf_is_refused(nitro: FakeNitro) -> None:
    with pytest.raises(VerificationError) as info:
        _verifier(nitro).verify(nitro.document(), policy=_policy(),
                                now=nitro.now + timedelta(hours=4))
    assert info.value.code == "nitro.chain.expired"


def test_wrong_policy_type_is_a_config_error(nitro: FakeNitro) -> None:
    with pytest.raises(ConfigError, match="NitroPolicy"):
        _verifier(nitro).verify(nitro.document(), policy=PsaPolicy())


def test_debug_enclave_is_refused_and_contraindicated(nitro: FakeNitro) -> None:
    doc = nitro.document(debug=True)
    appraisal = _verifier(nitro).appraise(doc, policy=NitroPolicy(pcr0={bytes(48)}))
    assert isinstance(appraisal, Appraisal)
    assert appraisal.codes() == ["nitro.debug"]
    assert appraisal.claims["debug"] is True
    assert appraisal.vector is not None
    assert appraisal.vector["configuration"] == 96 and appraisal.vector["runtime-opaque"] == 96


def test_unknown_image_is_an_unrecognised_executable(nitro: FakeNitro) -> None:
    appraisal = _verifier(nitro).appraise(nitro.document(pcrs={0: b"\x77" * 48}),
                                          policy=_policy())
    assert isinstance(appraisal, Appraisal)
    assert appraisal.codes() == ["nitro.pcr0.mismatch"]
    assert appraisal.vector is not None and appraisal.vector["executables"] == 33


def test_policy_mapping_round_trips_and_names_the_bad_key() -> None:
    scheme = schemes.get("nitro")
    policy = NitroPolicy(pcr0={IMAGE}, user_data=b"x", max_age_seconds=60)
    assert scheme.policy_from_mapping(scheme.policy_to_mapping(policy)) == policy
    with pytest.raises(ConfigError, match="pcr0"):
        scheme.policy_from_mapping({"pcr0": ["00"]})
    with pytest.raises(ConfigError, match="pcr9"):
        scheme.policy_from_mapping({"pcr9": [IMAGE.hex()]})


_FAKE = FakeNitro()
_SEED = _FAKE.document(nonce=b"\x01" * 64, user_data=b"u")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated((_SEED,)))
def test_mutated_documents_only_raise_typed_errors(data: bytes) -> None:
    verifier = _verifier(_FAKE)
    with contextlib.suppress(VeriteeError):  # FormatError, VerificationError ...
        verifier.appraise(data, policy=attest.UNSAFE_DEFAULT_POLICIES)


def test_anchors_given_as_pins_or_pem(nitro: FakeNitro) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding

    pin = nitro.root.fingerprint(hashes.SHA256()).hex()
    pem = nitro.root.public_bytes(Encoding.PEM)
    for anchors in (pin, [pin], pem, [pem, FakeNitro().root]):
        verifier = attest.Verifier(anchors=schemes.Anchors({"aws": anchors}),
                                   clock=lambda: nitro.now)
        assert verifier.verify(nitro.document(), policy=_policy()).accepted
    with pytest.raises(ConfigError, match="anchors"):
        attest.Verifier(anchors=schemes.Anchors({"aws": [42]})).verify(
            nitro.document(), policy=_policy(), now=nitro.now)
    with pytest.raises(ConfigError, match="trusts nothing"):
        attest.Verifier(anchors=schemes.Anchors({"aws": []})).verify(
            nitro.document(), policy=_policy(), now=nitro.now)


def test_vector_of_an_appraisal_made_by_the_policy_module(nitro: FakeNitro) -> None:
    from veritee.policy.nitro import appraise
    from veritee.trust.nitro import verify_document

    verified = verify_document(nitro.document(nonce=b"\x05" * 64), now=nitro.now,
                               trusted_roots=nitro.anchors())
    scheme = schemes.get("nitro")
    ok = appraise(verified, _policy(nonce=b"\x05" * 64))
    assert getattr(scheme, "trust_vector")(ok)["instance-identity"] == 2  # noqa: B009
    stale = appraise(verified, _policy(nonce=b"\x06" * 64))
    assert getattr(scheme, "trust_vector")(stale)["instance-identity"] == 99  # noqa: B009


def test_cli_hooks_read_roots_describe_and_say_revocation_does_not_apply(
        nitro: FakeNitro, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    scheme = schemes.get("nitro")
    root = tmp_path / "root.pem"
    root.write_bytes(nitro.root.public_bytes(Encoding.PEM))
    anchors = getattr(scheme, "load_anchors")([root])  # noqa: B009
    verifier = attest.Verifier(anchors=schemes.Anchors({"aws": anchors}), clock=lambda: nitro.now)
    assert verifier.verify(nitro.document(), policy=_policy()).accepted
    with pytest.raises(ConfigError, match="cannot read"):
        getattr(scheme, "load_anchors")([root.with_name("absent.pem")])  # noqa: B009
    doc = nitro.document(nonce=b"\x01" * 64)
    shown = getattr(scheme, "describe")(scheme.parse(doc))  # noqa: B009
    assert shown["format"] == "aws-nitro-document"
    assert shown["evidence"]["payload"]["pcrs"]["0"] == IMAGE.hex()
    assert shown["evidence"]["payload"]["nonce"] == (b"\x01" * 64).hex()
    verified = scheme.verify(scheme.parse(doc), verifier.context())
    assert getattr(scheme, "revocation")(verified)["checked"] is False  # noqa: B009
