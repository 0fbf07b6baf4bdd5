"""Issue 18: defaults that refuse what a careful relying party refuses, and an honest AR4SI vector.

One test per finding of the review, built from the real sample the review used where one
exists (read in place from ../shared/evidence; those tests skip when it is absent). Each test
is named after what it stops, and each fails on the code before issue 18 (which accepted, or
affirmed, what the test now expects refused or not affirmed).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from veritee import schemes
from veritee.attest import verify_evidence, verify_intel_evidence
from veritee.crypto.amd_certs import load_certificates
from veritee.errors import ConfigError, PolicyRejected, VerificationError
from veritee.findings import Outcome
from veritee.formats.intel import TcbStatus, TdReportBody
from veritee.formats.sevsnp import AttestationReport, Product, SignerInfo, SigningKey
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import EmulatedAmdVendor, InsecureEmulatedSnpMachine
from veritee.policy import Appraisal
from veritee.policy.intel import SEPT_VE_DISABLE, TdxPolicy
from veritee.policy.intel import appraise as appraise_intel
from veritee.policy.sevsnp import DEFAULT_TCB_FLOOR, SevSnpPolicy, TcbFloor, appraise
from veritee.results import ear_claims, ear_status
from veritee.testing.amd import FakeAmd, FakeAmdKeys
from veritee.trust.intel import VerifiedQuote, evaluate_tcb, verify_quote
from veritee.trust.sevsnp import AmdCertificates, VekInfo, VerifiedReport, verify_report

from _evidence import EVIDENCE_DIR, evidence_available, manifest_samples
from _intel_support import INTEL_PREFIXES, IntelSample, load_sample, quote_file

evidence = pytest.mark.skipif(not evidence_available(), reason="shared evidence absent")

_INTEL = {s["dir"]: s for p in INTEL_PREFIXES for s in manifest_samples(p) if quote_file(s)}
_UPTODATE_TD = "tdx/v4-dcap-qvl-b0c06f-uptodate"  # UpToDate, QE Identity and both CRLs


def _intel(d: str) -> IntelSample:
    if d not in _INTEL:
        pytest.skip(f"{d} not present")
    return load_sample(_INTEL[d])


def _verified_intel(d: str) -> VerifiedQuote:
    s = _intel(d)
    return verify_quote(s.quote, s.collateral, now=s.now)


def _with_body(v: VerifiedQuote, **changes: Any) -> VerifiedQuote:
    body = v.quote.body
    assert isinstance(body, TdReportBody)
    return dataclasses.replace(v, quote=dataclasses.replace(
        v.quote, body=dataclasses.replace(body, **changes)))


def trust_vector(a: Appraisal) -> dict[str, int]:
    """The AR4SI mapping of the scheme ``a.tee`` names (``results.trust_vector`` maps only
    appraisals made through a scheme; these are made by the policy module directly)."""
    return dict(getattr(schemes.get(a.tee), "trust_vector")(a))  # noqa: B009


def _status(a: Appraisal) -> str:
    return ear_status(trust_vector(a), accepted=a.accepted, required=a.required_claims)


# -- High, Intel: the QE Identity is required -----------------------------------------------------


@evidence
def test_td_quote_without_qe_identity_and_crls_is_refused() -> None:
    """The review's demonstration: dcap-qvl's UpToDate TD with the QE Identity and both CRLs
    removed from the collateral was accepted UpToDate by the default policy."""
    s = _intel(_UPTODATE_TD)
    stripped = dataclasses.replace(s.collateral, qe_identity=None, qe_identity_signature=None,
                                   qe_identity_issuer_chain=(), pck_crl=None, root_ca_crl=None)
    with pytest.raises(PolicyRejected) as exc:
        verify_intel_evidence(s.quote, collateral=stripped, now=s.now)
    assert exc.value.appraisal.codes() == ["tdx.qe_identity.required", "tdx.revocation.unchecked"]
    # The complete collateral passes the same default policy.
    assert verify_intel_evidence(s.quote, collateral=s.collateral, now=s.now).accepted


@evidence
def test_qe_identity_waived_only_explicitly_and_then_no_hardware_claim() -> None:
    s = _intel(_UPTODATE_TD)
    no_qe = dataclasses.replace(s.collateral, qe_identity=None, qe_identity_signature=None,
                                qe_identity_issuer_chain=())
    v = verify_quote(s.quote, no_qe, now=s.now)
    a = appraise_intel(v, TdxPolicy(require_qe_identity=False))
    assert a.accepted
    # The TCB status did not converge with the QE's: the verifier cannot affirm the hardware.
    assert trust_vector(a)["hardware"] == 0


@evidence
def test_quote_from_a_non_intel_quoting_enclave_is_refused() -> None:
    v = _verified_intel(_UPTODATE_TD)
    other = dataclasses.replace(v, quote=dataclasses.replace(v.quote, header=dataclasses.replace(
        v.quote.header, qe_vendor_id=bytes(16))))
    assert appraise_intel(other, TdxPolicy()).codes() == ["tdx.qe_vendor_id"]


# -- Medium, Intel TD attributes --------------------------------------------------------------


@evidence
def test_td_with_sept_ve_disable_cleared_pks_perfmon_and_all_xfam_is_refused() -> None:
    """The review's body: SEPT_VE_DISABLE cleared, PKS (30) and PERFMON (63) set, XFAM all
    ones -- accepted before. SEPT_VE_DISABLE is now required by default; PKS/KL/PERFMON and
    XFAM can be constrained with masks."""
    v = _verified_intel(_UPTODATE_TD)
    body = v.quote.body
    assert isinstance(body, TdReportBody)
    attrs = int.from_bytes(body.td_attributes, "little")
    assert attrs & SEPT_VE_DISABLE
    bad_attrs = (attrs & ~SEPT_VE_DISABLE) | 1 << 30 | 1 << 63
    bad = _with_body(v, td_attributes=bad_attrs.to_bytes(8, "little"), xfam=b"\xff" * 8)
    assert appraise_intel(bad, TdxPolicy()).codes() == ["tdx.td_attributes.sept_ve_disable"]
    pks_kl_perfmon = 1 << 30 | 1 << 31 | 1 << 63
    strict = TdxPolicy(td_attributes_mask=pks_kl_perfmon, xfam_mask=(1 << 64) - 1,
                       xfam_value=int.from_bytes(body.xfam, "little"))
    assert appraise_intel(v, strict).accepted
    assert appraise_intel(bad, strict).codes() == [
        "tdx.td_attributes.sept_ve_disable", "tdx.td_attributes.mismatch", "tdx.xfam.mismatch"]


@evidence
def test_real_td_with_sept_ve_disable_clear_and_pks_set_is_refused() -> None:
    """go-tdx-guest's SPR sample: TD ATTRIBUTES 0x40000000 (PKS set, SEPT_VE_DISABLE clear)."""
    v = _verified_intel("tdx/v4-go-tdx-guest-spr-50806f")
    a = appraise_intel(v, TdxPolicy(allowed_tcb_statuses=None))
    assert a.codes() == ["tdx.td_attributes.sept_ve_disable"]


def test_td_attribute_value_outside_its_mask_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        TdxPolicy(td_attributes_mask=1 << 30, td_attributes_value=1 << 31)


# -- Medium, Intel advisories and the TDX module ----------------------------------------------


@evidence
def test_denied_advisory_is_refused() -> None:
    v = _verified_intel("tdx/v4-trustee-50806f")  # OutOfDate: INTEL-SA-00837, INTEL-SA-00960
    assert v.tcb is not None
    lax: dict[str, Any] = {"allowed_tcb_statuses": {"UpToDate", "OutOfDate"},
                           "require_qe_identity": False, "allow_unchecked_revocation": True,
                           "allow_debug": True}
    assert appraise_intel(v, TdxPolicy(**lax)).accepted
    a = appraise_intel(v, TdxPolicy(denied_advisories={"INTEL-SA-00960"}, **lax))
    assert a.codes() == ["tdx.tcb.advisory_denied"]
    assert a.failures[0].message.endswith("['INTEL-SA-00960']")


@evidence
def test_tcb_info_without_module_identities_fails_closed() -> None:
    """TEE_TCB_SVN[1] > 0 names module identity TDX_01; a TCB Info that lists no module
    identities used to make the module check pass silently (Intel QVL: mismatch)."""
    v = _verified_intel(_UPTODATE_TD)
    assert v.tcb_info is not None and isinstance(v.quote.body, TdReportBody)
    assert v.quote.body.tee_tcb_svn[1] > 0
    bare = dataclasses.replace(v.tcb_info, tdx_module_identities=())
    with pytest.raises(VerificationError) as exc:
        evaluate_tcb(v.quote, v.pck, bare, v.qe_identity)
    assert exc.value.code == "intel.tdx_module.mismatch"


@evidence
def test_nonzero_seam_attributes_is_a_module_mismatch() -> None:
    v = _verified_intel(_UPTODATE_TD)
    assert v.tcb_info is not None
    odd = _with_body(v, seam_attributes=b"\x01" + bytes(7))
    with pytest.raises(VerificationError, match="SEAMATTRIBUTES"):
        evaluate_tcb(odd.quote, v.pck, v.tcb_info, v.qe_identity)


# -- Medium, revocation ---------------------------------------------------------------------------


def _image(n: int) -> bytes:
    return bytes([n]) * 4096 * 4


@pytest.fixture(scope="module")
def machine() -> InsecureEmulatedSnpMachine:
    return InsecureEmulatedSnpMachine(EmulatedAmdVendor.generate(Product.MILAN, key_size=2048))


def test_snp_chain_not_checked_for_revocation_is_refused(
        machine: InsecureEmulatedSnpMachine) -> None:
    guest = machine.launch(simple_guest_image(_image(1)))
    report = guest.attestation_report(bytes(64))
    full = machine.certificates()
    no_crl = AmdCertificates(ark=full.ark, ask=full.ask, vek=full.vek)
    with pytest.raises(PolicyRejected) as exc:
        verify_evidence(report, collateral=no_crl, anchors=machine.anchors())
    assert exc.value.appraisal.codes() == ["sevsnp.revocation.unchecked"]
    assert "--crl" in exc.value.appraisal.failures[0].message  # says how to supply one
    # Checked against the emulated ARK's CRL: accepted; explicitly waived: accepted, skipped.
    assert verify_evidence(report, collateral=full, anchors=machine.anchors()).accepted
    waived = verify_evidence(report, collateral=no_crl, anchors=machine.anchors(),
                             policy=SevSnpPolicy(allow_unchecked_revocation=True))
    assert "sevsnp.revocation.unchecked" in {f.code for f in waived.skipped}
    # A CRL that lists the ASK is a verification error, as before.
    assert full.ask is not None
    revoked = dataclasses.replace(full, crl=machine.vendor.crl(machine.now(),
                                                              [full.ask.serial_number]))
    with pytest.raises(VerificationError, match="revoked"):
        verify_evidence(report, collateral=revoked, anchors=machine.anchors())


# -- Medium, SEV-SNP defaults -----------------------------------------------------------------


def _real_snp(rel: str, product: Product, *, crl_checked: bool = True) -> VerifiedReport:
    path = EVIDENCE_DIR / rel
    if not path.is_file():
        pytest.skip(f"{rel} not present")
    report = AttestationReport.from_bytes(path.read_bytes())
    vek = VekInfo(kind=SigningKey.VCEK, product=product, product_name=f"{product.value}-B0",
                  struct_version=1, tcb=report.reported_tcb, hwid=report.chip_id, csp_id=None)
    return VerifiedReport(report=report, product=product, vek=vek, chain=(),
                          ark_fingerprint="00" * 32, checks=(), crl_checked=crl_checked)


@evidence
def test_report_its_source_marks_out_of_date_is_refused() -> None:
    """dstack's fixture README marks this Milan TCB (SNP 23, ucode 0xd5) OutOfDate; the old
    all-zero floor accepted it and said hardware: 2. Verified end to end against the pinned
    Milan ARK (no CRL ships with it, so revocation is waived to isolate the TCB)."""
    d = EVIDENCE_DIR / "snp" / "milan-v3-dstack"
    if not d.is_dir():
        pytest.skip("dstack sample not present")
    vcek = load_certificates((d / "sev_snp_vcek.pem").read_bytes())[0]
    ask = load_certificates((d / "sev_snp_ask.pem").read_bytes())[0]
    ark = next(c for c in load_certificates(
        (EVIDENCE_DIR / "roots" / "amd_milan_cert_chain_vcek.pem").read_bytes())
        if (c.common_name or "").startswith("ARK-"))
    report = (d / "report.bin").read_bytes()
    at = datetime(2026, 7, 1, tzinfo=UTC)
    certs = AmdCertificates(ark=ark, ask=ask, vek=vcek)
    with pytest.raises(PolicyRejected) as exc:
        verify_evidence(report, collateral=certs, now=at,
                        policy=SevSnpPolicy(allow_unchecked_revocation=True))
    assert exc.value.appraisal.codes() == [
        "sevsnp.tcb.snp.below_minimum", "sevsnp.tcb.microcode.below_minimum",
        "sevsnp.committed_tcb.below_minimum", "sevsnp.launch_tcb.below_minimum"]
    # Under a zero floor (the old default) the TCB checks cannot fail: no hardware claim.
    zero = verify_evidence(report, collateral=certs, now=at, policy=SevSnpPolicy(
        allow_unchecked_revocation=True, min_tcb=TcbFloor()))
    assert trust_vector(zero)["hardware"] == 0
    assert _status(zero) != "affirming"


@evidence
def test_provisional_firmware_is_refused_by_default() -> None:
    """The 2023 trustee HCL report: COMMITTED_TCB microcode 0x73 below CURRENT 0xd2."""
    v = _real_snp("azure-snp/milan-v2-trustee-hcl/snp_report.bin", Product.MILAN)
    a = appraise(v, SevSnpPolicy(min_tcb=None))
    assert a.codes() == ["sevsnp.firmware.provisional"]
    assert appraise(v, SevSnpPolicy(min_tcb=None,
                                    require_committed_equals_current=False)).accepted


@evidence
def test_fleet_report_meets_the_shipped_milan_floor() -> None:
    v = _real_snp("snp/milan-v3-oak-milan-oc-release/report.bin", Product.MILAN)
    a = appraise(v, SevSnpPolicy())
    assert a.accepted, a.to_text()
    assert trust_vector(a)["hardware"] == 2


def test_turin_has_no_shipped_floor_and_fails_closed() -> None:
    assert Product.TURIN not in DEFAULT_TCB_FLOOR
    assert all(any(f.components().values()) for f in DEFAULT_TCB_FLOOR.values())


@pytest.mark.parametrize("field", [{"family_id": b"\x01" * 16}, {"image_id": b"\x02" * 16},
                                   {"min_guest_svn": 3}], ids=lambda f: next(iter(f)))
def test_id_block_fields_without_a_pinned_key_are_a_config_error(field: dict[str, Any]) -> None:
    """FAMILY_ID, IMAGE_ID and GUEST_SVN come from an ID block anyone launching the guest can
    sign: pinning them without the ID or author key proves nothing."""
    with pytest.raises(ConfigError, match="id_key_digests or author_key_digests"):
        SevSnpPolicy(**field)
    SevSnpPolicy(id_key_digests=frozenset({b"\x44" * 48}), **field)
    SevSnpPolicy(author_key_digests=frozenset({b"\x55" * 48}), **field)


# -- Low, SEV-SNP hwID on a zero CHIP_ID ------------------------------------------------------


@pytest.fixture(scope="module")
def fake_amd() -> FakeAmd:
    return FakeAmd(Product.MILAN, keys=FakeAmdKeys.generate(key_size=2048))


def test_mask_chip_id_host_is_not_falsely_rejected(fake_amd: FakeAmd) -> None:
    """MASK_CHIP_ID zeroes CHIP_ID but the report is still signed by the VCEK: the hwID check
    was keyed on MASK_CHIP_KEY and rejected such hosts."""
    report = fake_amd.make_report(chip_id=bytes(64), signer_info=SignerInfo())
    v = verify_report(report, fake_amd.certificates(), anchors=fake_amd.anchors(),
                      now=fake_amd.now)
    (hwid,) = [c for c in v.checks if c.code == "sevsnp.vek.hwid"]
    assert hwid.outcome is Outcome.SKIP
    # A non-zero CHIP_ID of another chip is still refused.
    other = fake_amd.make_report(chip_id=b"\x01" * 64)
    with pytest.raises(VerificationError, match="hwid"):
        verify_report(other, fake_amd.certificates(), anchors=fake_amd.anchors(),
                      now=fake_amd.now)


# -- Medium, the AR4SI vector from what was checked ----------------------------------------------


def test_unchecked_report_data_is_no_instance_claim_and_no_affirming_ear(
        machine: InsecureEmulatedSnpMachine) -> None:
    guest = machine.launch(simple_guest_image(_image(2)))
    nonce = b"\x5a" * 64
    report = guest.attestation_report(nonce)
    kw: dict[str, Any] = {"collateral": machine.certificates(), "anchors": machine.anchors()}
    unbound = verify_evidence(report, **kw)
    assert trust_vector(unbound)["instance-identity"] == 0
    assert _status(unbound) == "none"  # instance-identity is required by default
    bound = verify_evidence(report, policy=SevSnpPolicy(report_data=nonce), **kw)
    vector = trust_vector(bound)
    assert vector["instance-identity"] == 2 and vector["hardware"] == 2
    assert vector["executables"] == 0  # no reference measurement: not required by default
    assert _status(bound) == "affirming"
    claims = ear_claims(bound, issuer="i", now=1.0, ttl=60)
    assert claims["submods"]["sevsnp"]["ear.status"] == "affirming"
    # A policy that requires the executables claim gets "none" without a reference value ...
    need_exec = SevSnpPolicy(report_data=nonce, required_claims=frozenset(
        {"hardware", "instance-identity", "executables"}))
    assert _status(verify_evidence(report, policy=need_exec, **kw)) == "none"
    # ... and "affirming" with one.
    pinned = dataclasses.replace(need_exec, measurements=frozenset({guest.measurement}))
    assert _status(verify_evidence(report, policy=pinned, **kw)) == "affirming"


@evidence
def test_accepted_out_of_date_tcb_is_a_warning_not_affirming() -> None:
    """trustee's GNR TD is OutOfDate: a policy may accept it, but AR4SI puts a platform with
    known vulnerabilities at hardware 32 (warning); it used to say 2."""
    v = _verified_intel("tdx/v4-trustee-gnr-a06d08")
    a = appraise_intel(v, TdxPolicy(
        allowed_tcb_statuses={TcbStatus.UP_TO_DATE, TcbStatus.OUT_OF_DATE},
        allow_unchecked_revocation=True, report_data=v.quote.body.report_data))
    assert a.accepted
    assert trust_vector(a)["hardware"] == 32
    assert _status(a) == "warning"


@evidence
def test_up_to_date_td_with_everything_checked_affirms() -> None:
    v = _verified_intel(_UPTODATE_TD)
    a = appraise_intel(v, TdxPolicy(report_data=v.quote.body.report_data,
                                    mrtd={v.quote.body.mr_td}))  # type: ignore[union-attr]
    vector = trust_vector(a)
    assert vector == {"hardware": 2, "instance-identity": 2, "executables": 3,
                      "configuration": 2, "runtime-opaque": 2}
    assert _status(a) == "affirming"


def test_unrequired_none_does_not_lower_and_required_none_does() -> None:
    vector = {"hardware": 2, "instance-identity": 2, "executables": 0}
    assert ear_status(vector) == "affirming"
    assert ear_status(vector, required=["executables"]) == "none"
    assert ear_status(vector, required=["storage-opaque"]) == "none"  # absent = no claim
    assert ear_status({**vector, "configuration": 32}, required=["executables"]) == "warning"
    assert ear_status(vector, accepted=False) == "contraindicated"


def test_required_claims_must_be_ar4si_names() -> None:
    with pytest.raises(ConfigError):
        SevSnpPolicy(required_claims=frozenset({"hardwear"}))


def test_emulated_machine_meets_the_shipped_defaults(
        machine: InsecureEmulatedSnpMachine) -> None:
    """``veritee demo`` and the service run on it: the secure defaults must accept it."""
    guest = machine.launch(simple_guest_image(_image(3)))
    report = guest.attestation_report(bytes(64))
    a = verify_evidence(report, collateral=machine.certificates(), anchors=machine.anchors(),
                        now=machine.now() + timedelta(days=1))
    assert a.accepted


@evidence
def test_separate_launch_tcb_floor_applies_to_launch_tcb_only() -> None:
    """go-sev-guest has MinimumTCB and MinimumLaunchTCB; the launch floor was not separable."""
    v = _real_snp("snp/milan-v3-oak-milan-oc-release/report.bin", Product.MILAN)
    stricter = TcbFloor(bootloader=4, snp=25, microcode=219)
    a = appraise(v, SevSnpPolicy(min_launch_tcb=stricter))
    assert a.codes() == ["sevsnp.launch_tcb.below_minimum"]
    assert appraise(v, SevSnpPolicy(min_launch_tcb={Product.GENOA: stricter})).codes() == [
        "sevsnp.launch_tcb.below_minimum"]  # no launch floor for Milan: fail closed
