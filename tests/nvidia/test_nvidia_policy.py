"""GpuPolicy: secure defaults, every finding listed, one change -> one finding."""

from __future__ import annotations

import dataclasses
import json

import pytest

from veritee.errors import ConfigError
from veritee.findings import Outcome
from veritee.policy.nvidia import FINDING_CODES, GpuPolicy, appraise, claims
from veritee.trust.nvidia import VerifiedGpuReport, verify_gpu_report

from _evidence import evidence_available
from _nvidia_support import GOOD, NOW, NVIDIA, REPORT_CASES, manifest_sample

pytestmark = pytest.mark.skipif(not evidence_available(), reason="shared evidence absent")


def _verified() -> VerifiedGpuReport:
    return verify_gpu_report(*GOOD.load(), now=NOW)


def _reference_blocks() -> dict[int, set[bytes]]:
    # trustee hopperAttestationReport-claims.txt: all 64 blocks (curator copy).
    data = json.loads((NVIDIA / GOOD.sample_id / "trustee-expected-claims.json").read_text())
    return {int(i): {bytes.fromhex(v)} for i, v in data["measurements"].items()}


def test_finding_codes_are_pinned() -> None:
    assert sorted(FINDING_CODES) == sorted([
        "nvidia.request.all_blocks", "nvidia.nonce.mismatch",
        "nvidia.driver_version.mismatch", "nvidia.vbios_version.mismatch",
        "nvidia.measurement.mismatch",
    ])


def test_default_policy_accepts_and_lists_what_it_skipped() -> None:
    a = appraise(_verified(), GpuPolicy())
    assert a.accepted
    assert {f.code for f in a.findings} == FINDING_CODES
    assert {f.code for f in a.skipped} == FINDING_CODES - {"nvidia.request.all_blocks"}
    # The verification trace is carried, with OCSP marked as not checked.
    assert any(f.code == "nvidia.chain.revocation" and f.outcome is Outcome.SKIP
               for f in a.verification)


def test_full_reference_policy_accepts_the_nvtrust_sample() -> None:
    kf = manifest_sample(GOOD.sample_id)["known_fields"]
    policy = GpuPolicy(nonce=GOOD.nonce(), driver_versions={"550.90.07"},
                       vbios_versions={"96.00.9F.00.01"}, measurements=_reference_blocks())
    a = appraise(_verified(), policy)
    assert a.accepted, a.to_text()
    assert not a.skipped
    assert a.claims["fwid"] == kf["opaque"]["FWID"]


def test_one_wrong_reference_value_is_one_finding() -> None:
    refs = _reference_blocks()
    refs[2] = {bytes(48)}
    a = appraise(_verified(), GpuPolicy(measurements=refs))
    assert [(f.code, f.field) for f in a.failures] == [
        ("nvidia.measurement.mismatch", "measurement[2]")]


def test_reference_for_a_block_the_report_lacks_fails() -> None:
    a = appraise(_verified(), GpuPolicy(measurements={200: {bytes(48)}}))
    assert [f.field for f in a.failures] == ["measurement[200]"]


@pytest.mark.parametrize(("kw", "code"), [
    ({"nonce": bytes(32)}, "nvidia.nonce.mismatch"),
    ({"driver_versions": {"535.86.09"}}, "nvidia.driver_version.mismatch"),
    ({"vbios_versions": {"96.00.5e.00.01"}}, "nvidia.vbios_version.mismatch"),
])
def test_wrong_expected_value_is_one_finding(kw: dict[str, object], code: str) -> None:
    a = appraise(_verified(), GpuPolicy(**kw))  # type: ignore[arg-type]
    assert [f.code for f in a.failures] == [code]


def test_request_for_fewer_blocks_is_rejected_by_default() -> None:
    v = _verified()
    req = dataclasses.replace(v.report.request, param2=1)
    partial = dataclasses.replace(v, report=dataclasses.replace(v.report, request=req))
    assert [f.code for f in appraise(partial, GpuPolicy()).failures] == [
        "nvidia.request.all_blocks"]
    assert appraise(partial, GpuPolicy(require_all_blocks=False)).accepted


def test_nvswitch_report_without_driver_version_fails_a_driver_allow_list() -> None:
    case = next(c for c in REPORT_CASES if c.report == "switchAttestationReport.txt")
    v = verify_gpu_report(*case.load(), now=NOW)
    a = appraise(v, GpuPolicy(driver_versions={"550.90.07"}, vbios_versions={"96.10.55.00.01"}))
    assert [(f.code, f.got) for f in a.failures] == [("nvidia.driver_version.mismatch", None)]


@pytest.mark.parametrize("kw", [
    {"nonce": b"short"}, {"driver_versions": "550.90.07"}, {"driver_versions": set()},
    {"vbios_versions": [""]}, {"measurements": {}}, {"measurements": {1: b"x" * 48}},
    {"measurements": {-1: {bytes(48)}}}, {"measurements": {1: {b""}}},
])
def test_bad_policy_values_are_config_errors(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        GpuPolicy(**kw)  # type: ignore[arg-type]


def test_claims_are_json_ready() -> None:
    text = json.dumps(claims(_verified()))
    assert "550.90.07" in text and "96.00.9f.00.01" in text
