"""attest.verify, the one front door, on NVIDIA SPDM reports from a fake GPU (no ../shared), and a
composite SEV-SNP + GPU appraisal bound to one challenge."""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee import attest, schemes
from veritee.errors import (
    CollateralError,
    ConfigError,
    FormatError,
    PolicyRejected,
    VerificationError,
    VeriteeError,
)
from veritee.policy import Appraisal
from veritee.policy.nvidia import GpuPolicy
from veritee.policy.sevsnp import SevSnpPolicy, TcbFloor
from veritee.schemes.nvidia import split_nvat
from veritee.testing.amd import FakeAmd, FakeAmdKeys
from veritee.testing.nvidia import DEFAULT_NOW, FakeNvidia

from _scheme_support import bound, challenge, mutated

NOW = DEFAULT_NOW


@pytest.fixture(scope="module")
def gpu() -> FakeNvidia:
    return FakeNvidia()


def _verifier(gpu: FakeNvidia) -> attest.Verifier:
    return attest.Verifier(anchors=schemes.Anchors({"nvidia": gpu.anchors()}),
                           clock=lambda: gpu.now)


def _part(gpu: FakeNvidia, report: bytes) -> attest.EvidencePart:
    return attest.EvidencePart(report, attached=gpu.chain_pem())


def test_registry_recognises_binary_hex_and_nvat(gpu: FakeNvidia) -> None:
    report = gpu.report()
    for form in (report, report.hex().encode(), report.hex().upper().encode() + b"\n",
                 gpu.nvat([report])):
        assert schemes.recognise(form).name == "nvidia"


def test_bound_report_is_accepted(gpu: FakeNvidia) -> None:
    ch = challenge()
    report = gpu.report(nonce=bound(ch, 32))
    appraisal = _verifier(gpu).verify(_part(gpu, report), policy=GpuPolicy(),
                                      challenge=ch)
    assert isinstance(appraisal, Appraisal) and appraisal.accepted
    assert set(schemes.COMMON_CLAIMS) <= set(appraisal.claims)
    assert appraisal.claims["binding"] == bound(ch, 32).hex()
    assert appraisal.vector == {"hardware": 0, "executables": 0, "configuration": 0,
                                "instance-identity": 2}
    # hex text and a one-device nvat JSON go the same way
    assert _verifier(gpu).verify(_part(gpu, report.hex().encode()), policy=GpuPolicy(),
                                 challenge=ch).accepted
    assert _verifier(gpu).verify(gpu.nvat([report]), policy=GpuPolicy(),
                                 challenge=ch).accepted


def test_report_with_another_nonce_is_rejected(gpu: FakeNvidia) -> None:
    report = gpu.report(nonce=bound(challenge(), 32))
    with pytest.raises(PolicyRejected) as info:
        _verifier(gpu).verify(_part(gpu, report), policy=GpuPolicy(), challenge=challenge())
    assert info.value.appraisal.codes() == ["nvidia.binding.mismatch"]
    assert info.value.appraisal.vector is not None
    assert info.value.appraisal.vector["instance-identity"] == 99


def test_every_tampered_byte_of_the_transcript_is_refused(gpu: FakeNvidia) -> None:
    report = gpu.report()
    verifier = _verifier(gpu)
    for offset in range(0, len(report) - 96, 7):
        bad = bytearray(report)
        bad[offset] ^= 0x01
        with pytest.raises(VeriteeError):
            verifier.verify(_part(gpu, bytes(bad)), policy=GpuPolicy(require_all_blocks=False))


def test_a_changed_nonce_byte_breaks_the_signature(gpu: FakeNvidia) -> None:
    bad = bytearray(gpu.report())
    bad[10] ^= 0x01  # inside the request nonce (offset 4..35)
    with pytest.raises(VerificationError) as info:
        _verifier(gpu).verify(_part(gpu, bytes(bad)), policy=GpuPolicy())
    assert info.value.code == "nvidia.signature"


def test_report_signed_by_another_key_is_refused(gpu: FakeNvidia) -> None:
    report = gpu.report(key=ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(VerificationError) as info:
        _verifier(gpu).verify(_part(gpu, report), policy=GpuPolicy())
    assert info.value.code == "nvidia.signature"


def test_firmware_id_not_in_the_leaf_is_refused(gpu: FakeNvidia) -> None:
    report = gpu.report(fwid=b"\xee" * 48)
    with pytest.raises(VerificationError) as info:
        _verifier(gpu).verify(_part(gpu, report), policy=GpuPolicy())
    assert info.value.code == "nvidia.fwid.mismatch"


def test_genuine_nvidia_pin_refuses_a_fake_chain(gpu: FakeNvidia) -> None:
    with pytest.raises(VerificationError) as info:
        attest.verify(_part(gpu, gpu.report()), policy=GpuPolicy(), now=NOW)
    assert info.value.code == "nvidia.chain.root_untrusted"


def test_chain_of_another_device_does_not_verify_the_report(gpu: FakeNvidia) -> None:
    other = FakeNvidia()
    part = attest.EvidencePart(gpu.report(), attached=other.chain_pem())
    with pytest.raises(VerificationError) as info:
        attest.verify(part, policy=GpuPolicy(), now=NOW,
                      anchors=schemes.Anchors({"nvidia": other.anchors()}))
    assert info.value.code in {"nvidia.signature", "nvidia.fwid.mismatch"}


def test_expired_device_chain_is_refused() -> None:
    expired = FakeNvidia(validity=(NOW - timedelta(days=30), NOW - timedelta(days=1)))
    with pytest.raises(VerificationError) as info:
        _verifier(expired).verify(_part(expired, expired.report()), policy=GpuPolicy())
    assert info.value.code == "nvidia.chain.expired"


def test_report_without_a_chain_needs_collateral(gpu: FakeNvidia) -> None:
    report = gpu.report()
    with pytest.raises(CollateralError):
        _verifier(gpu).verify(report, policy=GpuPolicy())
    chain = schemes.Collateral({"nvidia": gpu.chain})
    assert _verifier(gpu).verify(report, policy=GpuPolicy(), collateral=chain).accepted


def test_nvat_nonce_must_match_the_report(gpu: FakeNvidia) -> None:
    nvat = gpu.nvat([gpu.report(nonce=b"\x01" * 32)], nonce=b"\x02" * 32)
    with pytest.raises(VerificationError) as info:
        _verifier(gpu).verify(nvat, policy=GpuPolicy())
    assert info.value.code == "nvidia.nonce.mismatch"


def test_nvat_with_a_bad_nonce_length_is_a_format_error(gpu: FakeNvidia) -> None:
    entries = json.loads(gpu.nvat([gpu.report()]))
    entries[0]["nonce"] = "00" * 48
    with pytest.raises(FormatError):
        _verifier(gpu).verify(json.dumps(entries).encode(), policy=GpuPolicy())


def test_several_devices_are_split_into_parts(gpu: FakeNvidia) -> None:
    ch = challenge()
    reports = [gpu.report(nonce=bound(ch, 32)) for _ in range(2)]
    nvat = gpu.nvat(reports)
    with pytest.raises(FormatError, match="split_nvat"):
        _verifier(gpu).verify(nvat, policy=GpuPolicy(), challenge=ch)
    parts = [attest.EvidencePart(data, "nvidia", attached) for data, attached in
             split_nvat(nvat)]
    assert [p.data for p in parts] == reports
    result = _verifier(gpu).verify(parts, policy={"nvidia": GpuPolicy()}, challenge=ch)
    assert isinstance(result, attest.CompositeAppraisal) and result.accepted


def test_reference_values_and_versions_feed_the_vector(gpu: FakeNvidia) -> None:
    report = gpu.report()
    good = GpuPolicy(measurements={1: {b"\x01" * 48}}, driver_versions={"550.90.07"},
                     vbios_versions={"96.00.9F.00.01"})
    ok = _verifier(gpu).appraise(_part(gpu, report), policy=good)
    assert isinstance(ok, Appraisal) and ok.accepted and ok.vector is not None
    assert (ok.vector["hardware"], ok.vector["executables"]) == (2, 3)
    bad = GpuPolicy(measurements={1: {b"\x02" * 48}}, driver_versions={"535.86.09"})
    no = _verifier(gpu).appraise(_part(gpu, report), policy=bad)
    assert isinstance(no, Appraisal) and no.vector is not None
    assert no.codes() == ["nvidia.driver_version.mismatch", "nvidia.measurement.mismatch"]
    assert (no.vector["hardware"], no.vector["executables"]) == (32, 33)
    partial = _verifier(gpu).appraise(_part(gpu, gpu.report(param2=1)), policy=GpuPolicy())
    assert isinstance(partial, Appraisal) and partial.vector is not None
    assert partial.codes() == ["nvidia.request.all_blocks"]
    assert partial.vector["configuration"] == 32


def test_wrong_policy_type_is_a_config_error(gpu: FakeNvidia) -> None:
    with pytest.raises(ConfigError, match="GpuPolicy"):
        _verifier(gpu).verify(_part(gpu, gpu.report()), policy=SevSnpPolicy())


def test_policy_mapping_round_trips_and_names_the_bad_key() -> None:
    scheme = schemes.get("nvidia")
    policy = GpuPolicy(nonce=b"\x05" * 32, measurements={2: {b"\x02" * 48}},
                       driver_versions={"550.90.07"})
    assert scheme.policy_from_mapping(scheme.policy_to_mapping(policy)) == policy
    with pytest.raises(ConfigError, match=r"measurements\.x"):
        scheme.policy_from_mapping({"measurements": {"x": ["00"]}})


# -- composite: an SEV-SNP CPU and its GPU, one challenge ------------------------------------

@pytest.fixture(scope="module")
def amd() -> FakeAmd:
    return FakeAmd(keys=FakeAmdKeys.generate(key_size=2048), now=NOW)


def _cpu_gpu_verifier(amd: FakeAmd, gpu: FakeNvidia) -> attest.Verifier:
    return attest.Verifier(
        anchors=schemes.Anchors({"amd": amd.anchors(), "nvidia": gpu.anchors()}),
        collateral=schemes.Collateral({"amd": amd.certificates(crl=amd.crl())}),
        clock=lambda: NOW)


_POLICIES = {"sevsnp": SevSnpPolicy(measurements=frozenset({bytes(range(48))}),
                                    min_tcb=TcbFloor(bootloader=1, tee=0, snp=1, microcode=1)),
             "nvidia": GpuPolicy()}


def test_composite_cpu_and_gpu_bound_to_one_challenge(amd: FakeAmd, gpu: FakeNvidia) -> None:
    ch = challenge()
    cpu = amd.make_report(report_data=bound(ch)).to_bytes()
    parts = [attest.EvidencePart(cpu), _part(gpu, gpu.report(nonce=bound(ch, 32)))]
    result = _cpu_gpu_verifier(amd, gpu).verify(parts, policy=_POLICIES, challenge=ch)
    assert isinstance(result, attest.CompositeAppraisal) and result.accepted
    assert [p.tee for p in result.parts] == ["sevsnp", "nvidia"]
    assert all(p.vector is not None and p.vector["instance-identity"] == 2
               for p in result.parts)


def test_composite_refused_when_the_gpu_answers_another_challenge(amd: FakeAmd,
                                                                  gpu: FakeNvidia) -> None:
    ch = challenge()
    cpu = amd.make_report(report_data=bound(ch)).to_bytes()
    replayed = gpu.report(nonce=bound(challenge(), 32))  # an older exchange's GPU report
    parts = [attest.EvidencePart(cpu), _part(gpu, replayed)]
    with pytest.raises(PolicyRejected) as info:
        _cpu_gpu_verifier(amd, gpu).verify(parts, policy=_POLICIES, challenge=ch)
    assert info.value.appraisal.tee == "nvidia"
    assert info.value.appraisal.codes() == ["nvidia.binding.mismatch"]
    composite = info.value.composite  # type: ignore[attr-defined]
    assert [p.accepted for p in composite.parts] == [True, False]


_GPU = FakeNvidia()
_REPORT = _GPU.report()
_SEEDS = (_REPORT, _REPORT.hex().encode(), _GPU.nvat([_REPORT]))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated(_SEEDS), attach=st.booleans())
def test_mutated_reports_only_raise_typed_errors(data: bytes, attach: bool) -> None:
    part = attest.EvidencePart(data, attached=_GPU.chain_pem() if attach else None)
    with contextlib.suppress(VeriteeError):  # FormatError, VerificationError ...
        _verifier(_GPU).appraise(part, policy=attest.UNSAFE_DEFAULT_POLICIES)


def test_required_revocation_refuses_what_only_ocsp_could_tell(gpu: FakeNvidia) -> None:
    strict = attest.Verifier(anchors=schemes.Anchors({"nvidia": gpu.anchors()}),
                             require_revocation=True, clock=lambda: NOW)
    with pytest.raises(VerificationError) as info:
        strict.verify(_part(gpu, gpu.report()), policy=GpuPolicy())
    assert info.value.code == "nvidia.chain.revocation"


def test_each_kind_of_evidence_is_claimed_by_exactly_one_scheme(amd: FakeAmd,
                                                                 gpu: FakeNvidia) -> None:
    from veritee.testing.arm import FakeCca, FakePsa
    from veritee.testing.nitro import FakeNitro

    report = gpu.report()
    cca = FakeCca()
    evidence = {
        "nitro": [FakeNitro().document(), FakeNitro().sign(FakeNitro().payload(), tagged=True)],
        "psa": [FakePsa().token(), FakePsa().token(nonce=b"\x01" * 64)],
        "cca": [cca.token(), cca.token(legacy=True)],
        "nvidia": [report, report.hex().encode(), gpu.nvat([report])],
        "sevsnp": [amd.make_report().to_bytes()],
    }
    for want, items in evidence.items():
        for data in items:
            claimed = [s.name for s in schemes.all_schemes() if s.recognise(data)]
            assert claimed == [want], (want, claimed)


def test_cli_hooks_read_roots_describe_and_say_ocsp_is_not_checked(
        gpu: FakeNvidia, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    scheme = schemes.get("nvidia")
    root = tmp_path / "root.der"
    root.write_bytes(gpu.root.public_bytes(Encoding.DER))
    anchors = getattr(scheme, "load_anchors")([root])  # noqa: B009
    part = _part(gpu, gpu.report(nonce=b"\x03" * 32))
    verifier = attest.Verifier(anchors=schemes.Anchors({"nvidia": anchors}), clock=lambda: NOW)
    assert verifier.verify(part, policy=GpuPolicy()).accepted
    parsed = scheme.parse(part.data, attached=part.attached)
    shown = getattr(scheme, "describe")(parsed)  # noqa: B009
    assert shown["evidence"]["request"]["nonce"] == (b"\x03" * 32).hex()
    assert shown["driver_version"] == "550.90.07" and len(shown["chain"]) == 5
    revocation = getattr(scheme, "revocation")(  # noqa: B009
        scheme.verify(parsed, verifier.context()))
    assert revocation["checked"] is False and "OCSP" in revocation["detail"]


def test_split_hook_gives_one_part_per_device(gpu: FakeNvidia) -> None:
    scheme = schemes.get("nvidia")
    reports = [gpu.report(nonce=bytes([i]) * 32) for i in range(3)]
    parts = getattr(scheme, "split")(gpu.nvat(reports))  # noqa: B009
    assert [data for data, _ in parts] == reports
    assert all(chain == gpu.chain_pem() for _, chain in parts)
    assert getattr(scheme, "split")(reports[0], gpu.chain_pem()) == [  # noqa: B009
        (reports[0], gpu.chain_pem())]
