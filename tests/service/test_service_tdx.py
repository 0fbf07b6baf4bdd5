"""Intel TDX quotes as evidence in POST /v1/attest, and resource policies pinning TDs.

A real quote cannot be re-bound to a fresh nonce, so the service runs on a clock fixed at the
sample's evaluation time: chain, QE, quote signature and TCB status verify, and the binding
check then refuses the quote with ``tdx.report_data.mismatch`` (its REPORTDATA is not
SHA-512(nonce || SPKI(key)) for any key we hold). Acceptance of a matching REPORTDATA is
checked one level down, through the broker's TDX appraisal.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from veritee.attest import EvidencePart, bind_report_data
from veritee.collateral.intel import read_quote
from veritee.errors import ConfigError
from veritee.findings import Outcome
from veritee.formats.intel import Quote, TdReportBody
from veritee.results import TIERS, EarResult, verify_ear
from veritee.service.core import Broker
from veritee.service.resource_policy import ResourcePolicy
from veritee.service.settings import settings_from_mapping

from _evidence import EVIDENCE_DIR, manifest_samples, sample_time
from _intel_support import quote_file
from _service_support import Clock, Service

SAMPLE_DIR = "tdx/v4-dcap-qvl-b0c06f-uptodate"  # UpToDate TCB, collateral with CRLs


def _sample() -> dict[str, Any]:
    for s in manifest_samples("tdx/"):
        if s["dir"] == SAMPLE_DIR:
            return s
    pytest.skip(f"sample {SAMPLE_DIR} not in the shared evidence")


@pytest.fixture
def tdx() -> tuple[Path, bytes, float]:
    """The sample's directory (its collateral), the quote bytes and its evaluation time."""
    s = _sample()
    d = EVIDENCE_DIR / s["dir"]
    return d, read_quote(d / str(quote_file(s))), sample_time(s).timestamp()


def _fixed_clock(at: float) -> Clock:
    clock = Clock()
    clock.offset = at - time.time()
    return clock


def _start(factory: Callable[..., Service], tmp_path: Path, at: float | None,
           **overrides: Any) -> Service:
    clock = _fixed_clock(at) if at is not None else Clock()
    return factory(f"sqlite:///{tmp_path}/veritee.db", clock=clock, **overrides)


def _attest(svc: Service, quote: bytes, key: ec.EllipticCurvePrivateKey | None = None,
            **extra: Any) -> Any:
    r = svc.http.post(f"{svc.url}/v1/challenge")
    assert r.status_code == 200
    key = key or ec.generate_private_key(ec.SECP384R1())
    body = {"evidence": base64.b64encode(quote).decode(),
            "runtime_data": {"nonce": r.json()["nonce"],
                             "key": ECKey.import_key(key.public_key()).as_dict()}, **extra}
    return svc.http.post(f"{svc.url}/v1/attest", json=body)


def test_real_tdx_quote_verifies_and_is_refused_for_not_binding_the_nonce(
        service_factory: Callable[..., Service], tmp_path: Path,
        tdx: tuple[Path, bytes, float]) -> None:
    d, quote, at = tdx
    svc = _start(service_factory, tmp_path, at, intel_collateral_dir=str(d))
    r = _attest(svc, quote)
    assert r.status_code == 403, r.text
    problem = r.json()
    assert problem["code"] == "attestation.rejected"
    assert [f["code"] for f in problem["failures"]] == ["tdx.binding.mismatch"]
    # The contraindicated EAR for the record: a tdx submodule with the verified TD claims.
    ear = verify_ear(problem["ear"], svc.http.get(f"{svc.url}/v1/jwks").json(), now=at,
                     accept=TIERS)
    assert ear.tee == "tdx" and ear.status == "contraindicated"
    sub = ear.submod
    assert sub["ear.appraisal-policy-id"] == "tdx-default"
    trace = sub["veritee.trace"]
    for code in ("intel.chain.signature", "intel.qe_report.signature", "intel.quote.signature",
                 "intel.tcb_info.signature", "tdx.tcb.status", "tdx.debug"):
        assert trace[code] == "pass", code
    assert trace["tdx.binding.mismatch"] == "fail"
    body = Quote.from_bytes(quote).body
    assert isinstance(body, TdReportBody)
    claims = ear.verified_claims
    assert claims["mrtd"] == body.mr_td.hex() and claims["tcb_status"] == "UpToDate"
    assert sub["ear.trustworthiness-vector"] == {
        "hardware": 2, "instance-identity": 99, "executables": 0, "configuration": 2,
        "runtime-opaque": 2}
    refusal = svc.refusals()[-1]
    assert refusal.detail["code"] == "attestation.rejected"
    assert refusal.detail["tee"] == "tdx" and refusal.detail["measurement"] == body.mr_td.hex()
    assert refusal.detail["failures"] == ["tdx.binding.mismatch"]


def test_tdx_binding_is_checked_against_bind_report_data(
        service_factory: Callable[..., Service], tmp_path: Path,
        tdx: tuple[Path, bytes, float]) -> None:
    """The broker's TDX path accepts exactly REPORTDATA == bind_report_data(nonce, key)."""
    d, quote, at = tdx
    svc = _start(service_factory, tmp_path, at, intel_collateral_dir=str(d))
    broker: Broker = svc.app.state.broker
    body = Quote.from_bytes(quote).body
    assert isinstance(body, TdReportBody)
    when = datetime.fromtimestamp(at, UTC)

    def appraised(binding: bytes) -> list[Any]:
        verified = broker.verify_parts([EvidencePart(quote)], expected_binding=binding,
                                       now=when)
        with svc.store.transaction(write=False) as tx:
            return broker.appraise_verified(tx, verified, {})

    [matching] = appraised(body.report_data)
    assert matching.accepted and matching.tee == "tdx"
    key = ec.generate_private_key(ec.SECP384R1())
    [wrong] = appraised(bind_report_data(b"\x01" * 32, key.public_key()))
    assert wrong.codes() == ["tdx.binding.mismatch"]


def test_tdx_quote_without_collateral_is_refused_clearly(
        service_factory: Callable[..., Service], tmp_path: Path,
        tdx: tuple[Path, bytes, float]) -> None:
    _, quote, at = tdx
    svc = _start(service_factory, tmp_path, at)
    r = _attest(svc, quote)
    # Either the scheme refuses to verify without collateral (422) or the appraisal refuses
    # an unknown TCB status (403): both say which setting is missing.
    if r.status_code == 422:
        assert r.json()["code"] == "evidence.collateral"
    else:
        assert r.status_code == 403
        assert "tdx.tcb.status" in [f["code"] for f in r.json()["failures"]]
    assert "intel_collateral_dir" in r.json()["detail"]
    assert svc.refusals()[-1].detail["code"] == r.json()["code"]


def test_tdx_quote_is_verified_at_the_service_clock(
        service_factory: Callable[..., Service], tmp_path: Path,
        tdx: tuple[Path, bytes, float]) -> None:
    """Years after the sample, its collateral is stale: refused before any appraisal."""
    d, quote, _ = tdx
    svc = _start(service_factory, tmp_path, time.time() + 20 * 365 * 86400,
                 intel_collateral_dir=str(d))
    r = _attest(svc, quote)
    assert r.status_code == 403
    assert r.json()["code"].startswith("intel."), r.json()
    assert "failures" not in r.json()


def test_cert_table_is_refused_with_an_intel_quote(
        service_factory: Callable[..., Service], tmp_path: Path,
        tdx: tuple[Path, bytes, float]) -> None:
    d, quote, at = tdx
    svc = _start(service_factory, tmp_path, at, intel_collateral_dir=str(d))
    r = _attest(svc, quote, cert_table=base64.b64encode(b"\0" * 24).decode())
    # The quote carries its PCK chain: the scheme refuses what is attached (400) or ignores
    # it, and then the sample is refused as without it (its REPORTDATA binds no nonce).
    assert r.status_code in (400, 403), r.text
    assert r.json()["code"] in ("evidence.malformed", "attestation.rejected")
    assert svc.refusals()[-1].detail["code"] == r.json()["code"]


def test_tdx_settings_are_validated(tmp_path: Path) -> None:
    base = {"dev_mode": True, "emulated_machine_dir": str(tmp_path)}
    s = settings_from_mapping({**base, "intel_collateral_dir": str(tmp_path),
                               "tdx_allowed_tcb_statuses": ["UpToDate", "SWHardeningNeeded"]})
    assert s.tdx_allowed_tcb_statuses == ("UpToDate", "SWHardeningNeeded")
    assert settings_from_mapping(base).tdx_allowed_tcb_statuses == ("UpToDate",)
    for bad in (["Revoked"], ["uptodate"], []):
        with pytest.raises(ConfigError, match="tdx_allowed_tcb_statuses"):
            settings_from_mapping({**base, "tdx_allowed_tcb_statuses": bad})


# -- resource policies over TDX and SEV-SNP tokens ------------------------------------------
MRTD = "ab" * 48
OTHER = "cd" * 48


def _token(tee: str, **claims: Any) -> EarResult:
    sub = {"ear.status": "affirming", "ear.appraisal-policy-id": f"{tee}-default",
           "veritee.verified-claims": claims}
    return EarResult(header={}, claims={"submods": {tee: sub}})


def _td(debug: bool = False) -> EarResult:
    return _token("tdx", mrtd=MRTD, td_attributes=("01" if debug else "00") + "00" * 7)


def _snp() -> EarResult:
    return _token("sevsnp", measurement=MRTD, guest_svn=1, guest_policy={"debug": False},
                  host_data="11" * 32, chip_id="22" * 64)


def _failed(policy: dict[str, Any], token: EarResult) -> list[str]:
    findings = ResourcePolicy.from_mapping(policy).evaluate(token)
    return [f.code for f in findings if f.outcome is Outcome.FAIL]


def test_resource_policy_pins_tdx_workloads_by_mrtd() -> None:
    assert _failed({"mrtd": [MRTD]}, _td()) == []
    assert _failed({"mrtd": ["0x" + MRTD.upper()]}, _td()) == []
    assert _failed({"mrtd": [OTHER]}, _td()) == ["resource.mrtd.mismatch"]
    assert _failed({"mrtd": [MRTD]}, _td(debug=True)) == ["resource.debug"]
    assert _failed({"mrtd": [MRTD], "allow_debug": True}, _td(debug=True)) == []
    assert _failed({"allow_any_workload": True}, _td()) == []
    assert _failed({"mrtd": [MRTD], "appraisal_policy_ids": ["default"]}, _td()) == [
        "resource.appraisal_policy.not_allowed"]
    policy = ResourcePolicy.from_mapping({"mrtd": [MRTD]})
    assert policy.to_mapping()["mrtd"] == [MRTD]
    assert ResourcePolicy.from_mapping(policy.to_mapping()) == policy
    with pytest.raises(ConfigError, match=r"policy\.mrtd"):
        ResourcePolicy.from_mapping({"mrtd": ["ab" * 32]})
    with pytest.raises(ConfigError, match="allow_any_workload"):
        ResourcePolicy.from_mapping({})


@pytest.mark.parametrize(("policy", "code"), [
    ({"measurements": [MRTD]}, "resource.measurement.mismatch"),
    ({"mrtd": [MRTD], "host_data": "11" * 32}, "resource.host_data.mismatch"),
    ({"mrtd": [MRTD], "chip_ids": ["22" * 64]}, "resource.chip_id.mismatch"),
    ({"mrtd": [MRTD], "min_guest_svn": 1}, "resource.guest_svn.below_minimum"),
])
def test_sevsnp_only_fields_fail_closed_for_a_tdx_token(policy: dict[str, Any],
                                                        code: str) -> None:
    assert code in _failed(policy, _td())
    # With allow_any_workload too: the SEV-SNP pin still cannot be satisfied by a TD.
    assert code in _failed({**policy, "allow_any_workload": True}, _td())


def test_mrtd_fails_closed_for_an_sevsnp_token() -> None:
    assert _failed({"measurements": [MRTD], "min_guest_svn": 1, "host_data": "11" * 32,
                    "chip_ids": ["22" * 64]}, _snp()) == []
    assert "resource.mrtd.mismatch" in _failed({"mrtd": [MRTD]}, _snp())
    assert "resource.mrtd.mismatch" in _failed({"measurements": [MRTD], "mrtd": [MRTD]},
                                               _snp())
    assert "resource.mrtd.mismatch" in _failed({"mrtd": [MRTD], "allow_any_workload": True},
                                               _snp())


def test_unknown_tee_token_fails_closed() -> None:
    assert "resource.tee.unsupported" in _failed({"allow_any_workload": True},
                                                 _token("sgx", mrenclave="00" * 32))

