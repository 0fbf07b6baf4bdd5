"""attest.verify, the one front door, on SEV-SNP evidence from a fake AMD (no ../shared)."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import attest, schemes
from veritee.errors import ConfigError, FormatError, PolicyRejected
from veritee.policy import Appraisal
from veritee.policy.sevsnp import SevSnpPolicy, TcbFloor
from veritee.testing.amd import DEFAULT_NOW, FakeAmd, FakeAmdKeys


@pytest.fixture(scope="module")
def amd() -> FakeAmd:
    return FakeAmd(keys=FakeAmdKeys.generate(key_size=2048))


def _setup(amd: FakeAmd, report_data: bytes = bytes(64)
           ) -> tuple[bytes, schemes.Collateral, schemes.Anchors]:
    crl = amd.crl()
    report = amd.make_report(report_data=report_data)
    return (report.to_bytes(), schemes.Collateral({"amd": amd.certificates(crl=crl)}),
            schemes.Anchors({"amd": amd.anchors()}))


def _policy() -> SevSnpPolicy:
    return SevSnpPolicy(measurements=frozenset({bytes(range(48))}),
                        min_tcb=TcbFloor(bootloader=1, tee=0, snp=1, microcode=1))


def test_registry_recognises_an_snp_report(amd: FakeAmd) -> None:
    data, _, _ = _setup(amd)
    assert schemes.recognise(data).name == "sevsnp"
    assert "sevsnp" in schemes.names()


def test_unrecognised_bytes_are_a_format_error() -> None:
    with pytest.raises(FormatError):
        schemes.recognise(b"\x01\x02 nothing known")


def test_bound_evidence_is_accepted_with_an_affirming_identity(amd: FakeAmd) -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    challenge = attest.Challenge.for_key(b"n" * 32, key)
    bound = schemes.expected_binding(challenge.nonce, challenge.key_spki, 64)
    data, coll, anchors = _setup(amd, bound)
    appraisal = attest.verify(data, policy=_policy(), collateral=coll, anchors=anchors,
                              now=DEFAULT_NOW, challenge=challenge)
    assert isinstance(appraisal, Appraisal)
    assert appraisal.accepted
    assert appraisal.claims["tee"] == "sevsnp"
    assert appraisal.claims["binding"] == bound.hex()
    assert appraisal.vector is not None
    assert appraisal.vector["instance-identity"] == 2


def test_evidence_bound_to_another_key_is_rejected(amd: FakeAmd) -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    bound = schemes.expected_binding(b"n" * 32, attest.Challenge.for_key(b"", key).key_spki, 64)
    data, coll, anchors = _setup(amd, bound)
    with pytest.raises(PolicyRejected) as info:
        attest.verify(data, policy=_policy(), collateral=coll, anchors=anchors,
                      now=DEFAULT_NOW, challenge=attest.Challenge.for_key(b"n" * 32, other))
    assert "sevsnp.binding.mismatch" in info.value.appraisal.codes()
    assert info.value.appraisal.vector is not None
    assert info.value.appraisal.vector["instance-identity"] == 99


def test_without_a_challenge_freshness_is_reported_unchecked(amd: FakeAmd) -> None:
    data, coll, anchors = _setup(amd)
    appraisal = attest.verify(data, policy=_policy(), collateral=coll, anchors=anchors,
                              now=DEFAULT_NOW)
    assert not isinstance(appraisal, attest.CompositeAppraisal)
    skipped = {f.code for f in appraisal.skipped}
    assert "sevsnp.binding.mismatch" in skipped
    assert appraisal.vector is not None and appraisal.vector["instance-identity"] == 0


def test_policy_is_required_and_typed(amd: FakeAmd) -> None:
    data, coll, anchors = _setup(amd)
    with pytest.raises(TypeError):
        attest.verify(data, collateral=coll, anchors=anchors)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="SevSnpPolicy"):
        attest.verify(data, policy=object(), collateral=coll, anchors=anchors, now=DEFAULT_NOW)
    with pytest.raises(ConfigError, match="no policy for scheme 'sevsnp'"):
        attest.verify(data, policy={"tdx": object()}, collateral=coll, anchors=anchors,
                      now=DEFAULT_NOW)


def test_unsafe_defaults_have_a_name_that_says_so(amd: FakeAmd) -> None:
    data, coll, anchors = _setup(amd)
    appraisal = attest.Verifier(anchors=anchors, collateral=coll).appraise(
        data, policy=attest.UNSAFE_DEFAULT_POLICIES, now=DEFAULT_NOW)
    assert isinstance(appraisal, Appraisal)
    # The default policy pins no workload: any measurement passes (the TCB floors still apply).
    assert "sevsnp.measurement.mismatch" in {f.code for f in appraisal.skipped}


def test_naive_time_is_a_typed_error(amd: FakeAmd) -> None:
    data, coll, anchors = _setup(amd)
    with pytest.raises(ConfigError, match="naive datetime"):
        attest.verify(data, policy=_policy(), collateral=coll, anchors=anchors,
                      now=datetime(2025, 1, 1))


def test_genuine_anchors_refuse_an_emulated_chain(amd: FakeAmd) -> None:
    data, coll, _ = _setup(amd)
    from veritee.errors import VerificationError

    with pytest.raises(VerificationError):
        attest.verify(data, policy=_policy(), collateral=coll, now=DEFAULT_NOW)


def test_a_verifier_reuses_its_chain_cache(amd: FakeAmd) -> None:
    data, coll, anchors = _setup(amd)
    verifier = attest.Verifier(anchors=anchors, collateral=coll)
    for _ in range(3):
        verifier.verify(data, policy=_policy(), now=DEFAULT_NOW)
    assert verifier.caches["sevsnp"].hits >= 2


def test_every_tampered_byte_of_the_signed_part_is_refused(amd: FakeAmd) -> None:
    data, coll, anchors = _setup(amd)
    from veritee.errors import VeriteeError

    verifier = attest.Verifier(anchors=anchors, collateral=coll)
    for offset in range(0, 0x2A0, 37):
        bad = bytearray(data)
        bad[offset] ^= 0x01
        with pytest.raises(VeriteeError):
            verifier.verify(bytes(bad), policy=_policy(), now=DEFAULT_NOW)


def test_composite_is_accepted_only_when_every_part_is(amd: FakeAmd) -> None:
    data, coll, anchors = _setup(amd)
    debug = amd.make_report(policy=dataclasses.replace(
        amd.make_report().policy, debug=True)).to_bytes()
    verifier = attest.Verifier(anchors=anchors, collateral=coll)
    ok = verifier.appraise([attest.EvidencePart(data), attest.EvidencePart(data)],
                           policy={"sevsnp": _policy()}, now=DEFAULT_NOW)
    assert isinstance(ok, attest.CompositeAppraisal) and ok.accepted
    with pytest.raises(PolicyRejected) as info:
        verifier.verify([attest.EvidencePart(data), attest.EvidencePart(debug)],
                        policy={"sevsnp": _policy()}, now=DEFAULT_NOW)
    assert "sevsnp.policy.debug" in info.value.appraisal.codes()
