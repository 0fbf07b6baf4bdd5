"""TdxPolicy / SgxPolicy: secure defaults, every finding listed, stable codes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from veritee.errors import ConfigError
from veritee.findings import Outcome
from veritee.formats.intel import SgxReportBody, TcbStatus, TdReportBody
from veritee.policy.intel import FINDING_CODES, SgxPolicy, TdxPolicy, appraise
from veritee.trust.intel import VerifiedQuote, verify_quote

from _evidence import manifest_samples
from _intel_support import INTEL_PREFIXES, load_sample, quote_file

SAMPLES = {s["dir"]: s for p in INTEL_PREFIXES for s in manifest_samples(p) if quote_file(s)}
_CACHE: dict[str, VerifiedQuote] = {}


def _verified(d: str) -> VerifiedQuote:
    if d not in SAMPLES:
        pytest.skip(f"{d} not present")
    if d not in _CACHE:
        s = load_sample(SAMPLES[d])
        _CACHE[d] = verify_quote(s.quote, s.collateral, now=s.now)
    return _CACHE[d]


def _outcomes(appraisal: Any) -> dict[str, Outcome]:
    return {f.code: f.outcome for f in appraisal.findings}


def test_finding_codes_are_pinned() -> None:
    assert frozenset({
        "tdx.tee.type", "tdx.debug", "tdx.tcb.status", "tdx.report_data.mismatch",
        "tdx.mrtd.mismatch", "tdx.rtmr0.mismatch", "tdx.rtmr1.mismatch", "tdx.rtmr2.mismatch",
        "tdx.rtmr3.mismatch", "tdx.mrseam.mismatch", "tdx.mrconfigid.mismatch",
        "tdx.mrowner.mismatch",
        "sgx.tee.type", "sgx.debug", "sgx.tcb.status", "sgx.report_data.mismatch",
        "sgx.mrenclave.mismatch", "sgx.mrsigner.mismatch", "sgx.isvprodid.mismatch",
        "sgx.isvsvn.below_minimum",
        "tdx.td_attributes.sept_ve_disable", "tdx.td_attributes.mismatch", "tdx.xfam.mismatch",
        *(f"{t}.{c}" for t in ("tdx", "sgx") for c in (
            "qe_identity.required", "qe_vendor_id", "revocation.unchecked",
            "tcb.advisory_denied")),
    }) == FINDING_CODES


def test_up_to_date_td_is_accepted_by_the_default_policy() -> None:
    a = appraise(_verified("tdx/v4-dcap-qvl-b0c06f-uptodate"), TdxPolicy())
    assert a.accepted, a.to_text()
    assert {f.code for f in a.findings} <= FINDING_CODES
    assert a.claims["tcb_status"] == "UpToDate" and a.claims["fmspc"] == "b0c06f000000"
    # 8 measurement allow-lists + report_data + the TD ATTRIBUTES/XFAM masks + advisories.
    assert len(a.skipped) == 12


def test_debug_td_is_rejected_by_the_default_policy() -> None:
    v = _verified("tdx/v4-dcap-qvl-b0c06f-uptodate")
    body = v.quote.body
    assert isinstance(body, TdReportBody)
    debug = dataclasses.replace(v, quote=dataclasses.replace(
        v.quote, body=dataclasses.replace(body, td_attributes=b"\x01" + body.td_attributes[1:])))
    a = appraise(debug, TdxPolicy())
    assert a.codes() == ["tdx.debug"]
    assert appraise(debug, TdxPolicy(allow_debug=True)).accepted


def test_debug_enclave_is_rejected_by_the_default_policy() -> None:
    v = _verified("sgx/v3-dcap-qvl-00a067")
    body = v.quote.body
    assert isinstance(body, SgxReportBody)
    debug = dataclasses.replace(v, quote=dataclasses.replace(
        v.quote, body=dataclasses.replace(body, attributes=bytes([body.attributes[0] | 2])
                                          + body.attributes[1:])))
    assert "sgx.debug" in appraise(debug, SgxPolicy()).codes()


# Defaults issue 18 added that refuse these samples besides the TCB status: neither ships
# Intel's CRLs (revocation unchecked), and the Azure TD, which runs under a paravisor, has
# SEPT_VE_DISABLE clear and comes with TCB Info but no QE Identity.
_OOD_EXTRA = {"tdx/v4-trustee-gnr-a06d08": ["tdx.revocation.unchecked"],
              "azure-tdx/v4-trustee": ["tdx.td_attributes.sept_ve_disable",
                                       "tdx.qe_identity.required", "tdx.revocation.unchecked"]}


@pytest.mark.parametrize("d", ["tdx/v4-trustee-gnr-a06d08", "azure-tdx/v4-trustee"])
def test_out_of_date_tcb_is_rejected_unless_opted_in(d: str) -> None:
    v = _verified(d)
    assert appraise(v, TdxPolicy()).codes() == ["tdx.tcb.status", *_OOD_EXTRA[d]]
    lax = {"allow_unchecked_revocation": True, "require_sept_ve_disable": False,
           "require_qe_identity": False}
    assert appraise(v, TdxPolicy(allowed_tcb_statuses={TcbStatus.UP_TO_DATE,
                                                       TcbStatus.OUT_OF_DATE}, **lax)).accepted


def test_no_matching_tcb_level_is_rejected_whatever_the_opt_in() -> None:
    v = _verified("tdx/v5-dcap-qvl-90c06f-outdated")
    a = appraise(v, TdxPolicy(allowed_tcb_statuses=set(TcbStatus)))
    assert a.codes() == ["tdx.tcb.status"]
    assert a.failures[0].got == "TcbNotSupported"


def test_sgx_configuration_needed_status_needs_an_opt_in() -> None:
    v = _verified("sgx/v3-dcap-qvl-00a067")
    assert appraise(v, SgxPolicy()).codes() == ["sgx.tcb.status"]
    ok = SgxPolicy(allowed_tcb_statuses={"UpToDate", "ConfigurationAndSWHardeningNeeded"})
    assert appraise(v, ok).accepted


def test_real_debug_enclave_is_rejected_by_the_default_policy() -> None:
    # The trustee Occlum sample is a real quote of a debug enclave (ATTRIBUTES.FLAGS = 0x07).
    v = _verified("sgx/v3-trustee-occlum-00606a")
    assert isinstance(v.quote.body, SgxReportBody) and v.quote.body.debug
    # No collateral ships with it: QE Identity and CRLs are missing too (issue 18 defaults).
    assert appraise(v, SgxPolicy()).codes() == ["sgx.debug", "sgx.tcb.status",
                                                "sgx.qe_identity.required",
                                                "sgx.revocation.unchecked"]


def test_missing_tcb_info_fails_the_tcb_check_unless_not_asked() -> None:
    v = _verified("sgx/v3-trustee-occlum-00606a")
    lax = {"require_qe_identity": False, "allow_unchecked_revocation": True}
    a = appraise(v, SgxPolicy(allow_debug=True, **lax))  # type: ignore[arg-type]
    assert a.codes() == ["sgx.tcb.status"] and a.failures[0].got == "unknown"
    a = appraise(v, SgxPolicy(allow_debug=True, allowed_tcb_statuses=None,
                              **lax))  # type: ignore[arg-type]
    assert a.accepted and _outcomes(a)["sgx.tcb.status"] is Outcome.SKIP


def test_tdx_measurement_allow_lists() -> None:
    v = _verified("tdx/v4-dcap-qvl-b0c06f-uptodate")
    body = v.quote.body
    assert isinstance(body, TdReportBody)
    good = TdxPolicy(mrtd={body.mr_td}, rtmr0={body.rtmrs[0]}, rtmr1={body.rtmrs[1]},
                     rtmr2={body.rtmrs[2]}, rtmr3={body.rtmrs[3]}, mrseam={body.mr_seam},
                     mrconfigid={body.mr_config_id}, mrowner={body.mr_owner},
                     report_data=body.report_data, denied_advisories={"INTEL-SA-00000"},
                     td_attributes_mask=(1 << 64) - 1,
                     td_attributes_value=int.from_bytes(body.td_attributes, "little"),
                     xfam_mask=(1 << 64) - 1, xfam_value=int.from_bytes(body.xfam, "little"))
    a = appraise(v, good)
    assert a.accepted and not a.skipped
    bad = TdxPolicy(mrtd={bytes(48)}, rtmr2={bytes(48), b"\x01" * 48}, report_data=bytes(64))
    assert appraise(v, bad).codes() == ["tdx.mrtd.mismatch", "tdx.rtmr2.mismatch",
                                        "tdx.report_data.mismatch"]


def test_sgx_identity_checks() -> None:
    v = _verified("sgx/v3-dcap-qvl-00a067")
    body = v.quote.body
    assert isinstance(body, SgxReportBody)
    base = {"allowed_tcb_statuses": None}
    good = SgxPolicy(mrenclave={body.mr_enclave}, mrsigner={body.mr_signer},
                     isv_prod_id=body.isv_prod_id, min_isv_svn=body.isv_svn,
                     report_data=body.report_data, **base)  # type: ignore[arg-type]
    assert appraise(v, good).accepted
    bad = SgxPolicy(mrenclave={bytes(32)}, mrsigner={bytes(32)}, isv_prod_id=body.isv_prod_id + 1,
                    min_isv_svn=body.isv_svn + 1, **base)  # type: ignore[arg-type]
    assert appraise(v, bad).codes() == ["sgx.mrenclave.mismatch", "sgx.mrsigner.mismatch",
                                        "sgx.isvprodid.mismatch", "sgx.isvsvn.below_minimum"]


def test_policy_of_the_other_tee_fails_the_type_check() -> None:
    assert appraise(_verified("sgx/v3-dcap-qvl-00a067"), TdxPolicy()).codes() == ["tdx.tee.type"]
    v = _verified("tdx/v4-dcap-qvl-b0c06f-uptodate")
    assert appraise(v, SgxPolicy()).codes() == ["sgx.tee.type"]


@pytest.mark.parametrize("kwargs", [
    {"mrtd": b"\x00" * 48}, {"mrtd": [b"\x00" * 47]}, {"mrtd": []},
    {"report_data": b"x"}, {"allowed_tcb_statuses": "UpToDate"},
    {"allowed_tcb_statuses": ["Great"]}, {"allow_debug": 1},
    {"required_claims": {"hardwear"}}, {"denied_advisories": "INTEL-SA-00001"},
    {"require_qe_identity": 0}, {"xfam_mask": -1}, {"require_sept_ve_disable": None},
])
def test_bad_tdx_policy_values_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        TdxPolicy(**kwargs)


@pytest.mark.parametrize("kwargs", [{"isv_prod_id": -1}, {"min_isv_svn": True},
                                    {"mrsigner": [bytes(31)]}])
def test_bad_sgx_policy_values_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SgxPolicy(**kwargs)


def test_appraisal_carries_the_verification_trace() -> None:
    v = _verified("tdx/v4-dcap-qvl-b0c06f-uptodate")
    a = appraise(v, TdxPolicy())
    assert a.verification == v.checks
    assert '"tdx.tcb.status"' in a.to_json()
