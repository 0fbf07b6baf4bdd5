"""Appraisal of verified SEV-SNP reports: every check, one mutation -> one finding.

Reports are built with AttestationReport + dataclasses.replace and re-parsed from bytes, so each
object is exactly what a real parse yields. No signatures are needed at this layer: the
VerifiedReport is constructed directly, as the trust layer would after verification.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import veritee.policy.sevsnp as policy_module
from veritee.errors import PolicyRejected
from veritee.formats.sevsnp import (
    AttestationReport,
    Cpuid,
    EcdsaP384Signature,
    FirmwareVersion,
    GuestPolicy,
    PlatformInfo,
    Product,
    SignerInfo,
    SigningKey,
    TcbVersion,
)
from veritee.policy import Finding, Outcome
from veritee.policy.sevsnp import (
    FINDING_CODES,
    TCB_COMPONENTS,
    SevSnpPolicy,
    TcbFloor,
    appraise,
)
from veritee.trust.sevsnp import VekInfo, VerifiedReport

# -- building verified reports -------------------------------------------------------------------

MILAN_TCB = TcbVersion(bootloader=4, tee=1, snp=24, microcode=219)
TURIN_TCB = TcbVersion(bootloader=3, tee=2, snp=5, microcode=70, fmc=2)
NONCE = bytes(range(64))


def _reparse(report: AttestationReport) -> AttestationReport:
    # Serialise and parse: the report is then exactly what from_bytes would give the verifier.
    return AttestationReport.from_bytes(report.to_bytes())


def make_report(product: Product = Product.MILAN, **changes: Any) -> AttestationReport:
    """A clean, non-debug VMPL0 report with distinctive values in every pinned field."""
    tcb = TURIN_TCB if product is Product.TURIN else MILAN_TCB
    cpuid = {Product.MILAN: Cpuid(0x19, 0x01, 0x01), Product.GENOA: Cpuid(0x19, 0x11, 0x01),
             Product.TURIN: Cpuid(0x1A, 0x02, 0x00)}[product]
    base = AttestationReport(
        version=3,
        guest_svn=7,
        policy=GuestPolicy(abi_major=1, abi_minor=55, smt=False, single_socket=True,
                           mem_aes_256_xts=True, rapl_dis=True, ciphertext_hiding=True,
                           page_swap_disable=True),
        family_id=b"\x11" * 16,
        image_id=b"\x22" * 16,
        vmpl=0,
        signature_algo=1,
        current_tcb=tcb,
        platform_info=PlatformInfo(smt_enabled=False, tsme_enabled=True, ecc_enabled=True,
                                   rapl_disabled=True, ciphertext_hiding_enabled=True,
                                   alias_check_complete=True),
        signer_info=SignerInfo(author_key_en=True, signing_key=SigningKey.VCEK),
        report_data=NONCE,
        measurement=bytes.fromhex("a5" * 48),
        host_data=b"\x33" * 32,
        id_key_digest=b"\x44" * 48,
        author_key_digest=b"\x55" * 48,
        report_id=b"\x66" * 32,
        report_id_ma=b"\xff" * 32,
        reported_tcb=tcb,
        chip_id=b"\x77" * 64,
        committed_tcb=tcb,
        current_version=FirmwareVersion(1, 55, 29),
        committed_version=FirmwareVersion(1, 55, 29),
        launch_tcb=tcb,
        signature=EcdsaP384Signature(r=1, s=2),
        cpuid=cpuid,
    )
    return _reparse(replace(base, **changes))


def make_verified(product: Product = Product.MILAN, **changes: Any) -> VerifiedReport:
    """A VerifiedReport as the trust layer would return it (checks=(), no chain)."""
    report = make_report(product, **changes)
    turin = product is Product.TURIN
    vek = VekInfo(kind=SigningKey.VCEK, product=product,
                  product_name=f"{product.value}-B0", struct_version=1,
                  tcb=report.reported_tcb, hwid=report.chip_id[:8] if turin else report.chip_id,
                  csp_id=None)
    return VerifiedReport(report=report, product=product, vek=vek, chain=(),
                          ark_fingerprint="ab" * 32, checks=(), crl_checked=True)


def strict_policy(verified: VerifiedReport) -> SevSnpPolicy:
    """A policy that pins every checkable value to the clean report: every check runs."""
    r = verified.report
    return SevSnpPolicy(
        policy_id="strict",
        measurements=frozenset({r.measurement}),
        report_data=r.report_data,
        host_data=r.host_data,
        id_key_digests=frozenset({r.id_key_digest}),
        author_key_digests=frozenset({r.author_key_digest}),
        family_id=r.family_id,
        image_id=r.image_id,
        min_guest_svn=r.guest_svn,
        chip_ids=frozenset({r.chip_id}),
        allowed_products=frozenset({verified.product}),
        allowed_signing_keys=frozenset({SigningKey.VCEK}),
        min_report_version=r.version,
        allowed_vmpls=frozenset({0}),
        allow_debug=False,
        allow_migration_agent=False,
        allow_smt=False,
        require_single_socket=True,
        min_abi=(r.policy.abi_major, r.policy.abi_minor),
        min_tcb=TcbFloor(**r.reported_tcb.components()),
        min_firmware=r.current_version.as_tuple(),
        require_committed_equals_current=True,
        require_smt_disabled=True,
        require_tsme=True,
        require_ecc=True,
        require_rapl_disabled=True,
        require_platform_ciphertext_hiding=True,
        require_alias_check_complete=True,
        allow_cxl=False,
        require_mem_aes_256_xts=True,
        require_rapl_dis=True,
        require_ciphertext_hiding=True,
        require_page_swap_disable=True,
    )


def failed(appraisal: Any) -> list[str]:
    return [f.code for f in appraisal.findings if f.outcome is Outcome.FAIL]


def lower(tcb: TcbVersion, component: str) -> TcbVersion:
    """``tcb`` with one component one SPL lower."""
    return replace(tcb, **{component: getattr(tcb, component) - 1})


def flip(data: bytes) -> bytes:
    """``data`` with its last byte changed."""
    return data[:-1] + bytes([data[-1] ^ 0x01])


# -- the mutation table: one change, one finding ---------------------------------------------------

Mutate = Callable[[VerifiedReport], VerifiedReport]


def rep(**changes: Any) -> Mutate:
    """Mutate report fields (and re-parse, so the result is a well-formed report)."""
    def mutate(v: VerifiedReport) -> VerifiedReport:
        return replace(v, report=_reparse(replace(v.report, **changes)))
    return mutate


def rep_with(build: Callable[[AttestationReport], dict[str, Any]]) -> Mutate:
    """Mutate report fields computed from the clean report."""
    def mutate(v: VerifiedReport) -> VerifiedReport:
        return rep(**build(v.report))(v)
    return mutate


def as_product(product: Product) -> Mutate:
    def mutate(v: VerifiedReport) -> VerifiedReport:
        return replace(v, product=product, vek=replace(v.vek, product=product,
                                                       product_name=f"{product.value}-B1"))
    return mutate


def signed_by_vlek(v: VerifiedReport) -> VerifiedReport:
    report = _reparse(replace(v.report, signer_info=replace(v.report.signer_info,
                                                            signing_key=SigningKey.VLEK)))
    vek = replace(v.vek, kind=SigningKey.VLEK, hwid=None, csp_id="example-cloud")
    return replace(v, report=report, vek=vek)


@dataclasses.dataclass(frozen=True)
class Case:
    """One attack or misconfiguration: a single change and the one finding it must cause."""

    name: str
    code: str
    mutate: Mutate
    policy_changes: dict[str, Any] = dataclasses.field(default_factory=dict)
    product: Product = Product.MILAN


def _tcb_case(component: str) -> Case:
    product = Product.TURIN if component == "fmc" else Product.MILAN
    return Case(f"reported_tcb_{component}_rolled_back", f"sevsnp.tcb.{component}.below_minimum",
                rep_with(lambda r: {"reported_tcb": lower(r.reported_tcb, component)}),
                product=product)


CASES: list[Case] = [
    Case("old_report_version", "sevsnp.report_version.below_minimum",
         rep(version=2, cpuid=None)),
    Case("unlisted_product", "sevsnp.product.not_allowed", as_product(Product.GENOA)),
    Case("vlek_signed_when_vcek_required", "sevsnp.signing_key.not_allowed", signed_by_vlek),
    Case("other_chip", "sevsnp.chip_id.mismatch",
         rep_with(lambda r: {"chip_id": flip(r.chip_id)})),
    Case("unknown_launch_digest", "sevsnp.measurement.mismatch",
         rep_with(lambda r: {"measurement": flip(r.measurement)})),
    Case("other_host_data", "sevsnp.host_data.mismatch",
         rep_with(lambda r: {"host_data": flip(r.host_data)})),
    Case("unknown_id_key", "sevsnp.id_key.mismatch",
         rep_with(lambda r: {"id_key_digest": flip(r.id_key_digest)})),
    Case("unknown_author_key", "sevsnp.author_key.mismatch",
         rep_with(lambda r: {"author_key_digest": flip(r.author_key_digest)})),
    Case("id_key_not_signed_by_author_key", "sevsnp.author_key.mismatch",
         rep(signer_info=SignerInfo(author_key_en=False), author_key_digest=bytes(48))),
    Case("other_family_id", "sevsnp.family_id.mismatch",
         rep_with(lambda r: {"family_id": flip(r.family_id)})),
    Case("other_image_id", "sevsnp.image_id.mismatch",
         rep_with(lambda r: {"image_id": flip(r.image_id)})),
    Case("old_guest_svn", "sevsnp.guest_svn.below_minimum",
         rep_with(lambda r: {"guest_svn": r.guest_svn - 1})),
    Case("replayed_nonce", "sevsnp.report_data.mismatch",
         rep_with(lambda r: {"report_data": flip(r.report_data)})),
    Case("report_from_vmpl1", "sevsnp.vmpl.not_allowed", rep(vmpl=1)),
    Case("debug_guest", "sevsnp.policy.debug",
         rep_with(lambda r: {"policy": replace(r.policy, debug=True)})),
    Case("migration_agent_allowed", "sevsnp.policy.migrate_ma",
         rep_with(lambda r: {"policy": replace(r.policy, migrate_ma=True)})),
    Case("guest_allows_smt", "sevsnp.policy.smt",
         rep_with(lambda r: {"policy": replace(r.policy, smt=True)})),
    Case("guest_not_single_socket", "sevsnp.policy.single_socket",
         rep_with(lambda r: {"policy": replace(r.policy, single_socket=False)})),
    Case("guest_accepts_old_abi", "sevsnp.policy.abi.below_minimum",
         rep_with(lambda r: {"policy": replace(r.policy, abi_minor=r.policy.abi_minor - 1)})),
    Case("product_without_floor", "sevsnp.tcb.no_floor", as_product(Product.GENOA),
         {"allowed_products": None,
          "min_tcb": {Product.MILAN: TcbFloor(**MILAN_TCB.components())}}),
    *(_tcb_case(c) for c in TCB_COMPONENTS),
    # Committed TCB below current is also provisional firmware: that check is off here so the
    # case isolates the floor.
    Case("committed_tcb_allows_rollback", "sevsnp.committed_tcb.below_minimum",
         rep_with(lambda r: {"committed_tcb": lower(r.committed_tcb, "snp")}),
         {"require_committed_equals_current": False}),
    Case("launched_on_vulnerable_tcb", "sevsnp.launch_tcb.below_minimum",
         rep_with(lambda r: {"launch_tcb": lower(r.launch_tcb, "microcode")})),
    Case("old_firmware", "sevsnp.firmware.below_minimum",
         rep(current_version=FirmwareVersion(1, 55, 28)),
         {"require_committed_equals_current": False}),
    Case("provisional_firmware", "sevsnp.firmware.provisional",
         rep(committed_version=FirmwareVersion(1, 55, 21))),
    Case("host_smt_enabled", "sevsnp.platform.smt",
         rep_with(lambda r: {"platform_info": replace(r.platform_info, smt_enabled=True)})),
    Case("host_without_tsme", "sevsnp.platform.tsme",
         rep_with(lambda r: {"platform_info": replace(r.platform_info, tsme_enabled=False)})),
    Case("host_reports_tcb_above_what_it_runs", "sevsnp.reported_tcb.above_current",
         rep_with(lambda r: {"current_tcb": lower(r.current_tcb, "snp"),
                             "committed_tcb": lower(r.current_tcb, "snp")}),
         {"require_committed_equals_current": False,
          "min_tcb": TcbFloor(**lower(MILAN_TCB, "snp").components())}),
    *(Case(f"guest_policy_{bit}_{'set' if not want else 'clear'}", f"sevsnp.policy.{bit}",
           rep_with(lambda r, bit=bit, want=want: {"policy": replace(r.policy,
                                                                     **{bit: not want})}))
      for bit, want in (("cxl_allow", False), ("mem_aes_256_xts", True), ("rapl_dis", True),
                        ("ciphertext_hiding", True), ("page_swap_disable", True))),
    *(Case(f"host_{code}_missing", f"sevsnp.platform.{code}",
           rep_with(lambda r, bit=bit: {"platform_info": replace(r.platform_info,
                                                                 **{bit: False})}))
      for code, bit in (("ecc", "ecc_enabled"), ("rapl_disabled", "rapl_disabled"),
                        ("ciphertext_hiding", "ciphertext_hiding_enabled"),
                        ("alias_check_complete", "alias_check_complete"))),
    Case("chain_not_checked_for_revocation", "sevsnp.revocation.unchecked",
         lambda v: replace(v, crl_checked=False)),
]


def test_clean_report_accepted_by_default_policy() -> None:
    appraisal = appraise(make_verified(), SevSnpPolicy())
    assert appraisal.accepted, appraisal.to_text()
    assert appraisal.tee == "sevsnp"
    assert appraisal.policy_id == "default"


@pytest.mark.parametrize("product", list(Product))
def test_clean_report_accepted_by_strict_policy(product: Product) -> None:
    verified = make_verified(product)
    appraisal = appraise(verified, strict_policy(verified))
    assert appraisal.accepted, appraisal.to_text()
    skipped = {f.code for f in appraisal.skipped}
    # Only the "single floor" note and, off Turin, the FMC component are not checked.
    expected = {"sevsnp.tcb.no_floor"} | (
        set() if product is Product.TURIN else {"sevsnp.tcb.fmc.below_minimum"})
    assert skipped == expected


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_one_mutation_one_finding(case: Case) -> None:
    clean = make_verified(case.product)
    policy = replace(strict_policy(clean), **case.policy_changes)
    assert appraise(clean, policy).accepted, "the clean report must pass this case's policy"
    appraisal = appraise(case.mutate(clean), policy)
    assert failed(appraisal) == [case.code], appraisal.to_text()
    assert not appraisal.accepted
    (finding,) = appraisal.failures
    assert finding.field and finding.message


def test_mutation_table_covers_every_finding_code() -> None:
    assert {c.code for c in CASES} == FINDING_CODES


def test_several_mutations_yield_every_finding_in_order() -> None:
    clean = make_verified()
    r = clean.report
    mutated = rep(measurement=flip(r.measurement), report_data=flip(r.report_data), vmpl=2,
                  policy=replace(r.policy, debug=True),
                  reported_tcb=lower(r.reported_tcb, "microcode"))(clean)
    appraisal = appraise(mutated, strict_policy(clean))
    assert failed(appraisal) == [
        "sevsnp.measurement.mismatch",
        "sevsnp.report_data.mismatch",
        "sevsnp.vmpl.not_allowed",
        "sevsnp.policy.debug",
        "sevsnp.tcb.microcode.below_minimum",
    ]
    assert appraisal.codes() == failed(appraisal)


def test_debug_guest_rejected_by_default_policy() -> None:
    verified = make_verified(policy=GuestPolicy(abi_major=1, abi_minor=55, debug=True))
    appraisal = appraise(verified, SevSnpPolicy())
    assert appraisal.codes() == ["sevsnp.policy.debug"]
    finding = appraisal.failures[0]
    assert (finding.field, finding.got, finding.want) == ("policy.debug", True, False)


def test_debug_guest_accepted_only_when_policy_says_so() -> None:
    verified = make_verified(policy=GuestPolicy(debug=True))
    appraisal = appraise(verified, SevSnpPolicy(allow_debug=True))
    assert appraisal.accepted
    assert "sevsnp.policy.debug" in {f.code for f in appraisal.skipped}


def test_report_from_vmpl3_rejected_by_default_policy() -> None:
    appraisal = appraise(make_verified(vmpl=3), SevSnpPolicy())
    assert appraisal.codes() == ["sevsnp.vmpl.not_allowed"]


def test_replayed_nonce_rejected() -> None:
    # The verifier pins a fresh nonce per request; a report carrying an old one must fail.
    old_nonce, fresh_nonce = b"\x01" * 64, b"\x02" * 64
    verified = make_verified(report_data=old_nonce)
    policy = replace(SevSnpPolicy(), report_data=fresh_nonce)
    appraisal = appraise(verified, policy)
    assert appraisal.codes() == ["sevsnp.report_data.mismatch"]
    finding = appraisal.failures[0]
    assert (finding.got, finding.want) == (old_nonce, fresh_nonce)
    assert appraise(verified, replace(policy, report_data=old_nonce)).accepted


def test_measurement_in_allow_list_of_several_accepted() -> None:
    verified = make_verified()
    others = {bytes([i]) * 48 for i in range(5)}
    policy = SevSnpPolicy(measurements=frozenset({*others, verified.report.measurement}))
    assert appraise(verified, policy).accepted
    assert not appraise(verified, SevSnpPolicy(measurements=frozenset(others))).accepted


def test_unchecked_fields_are_listed_as_skipped() -> None:
    appraisal = appraise(make_verified(), SevSnpPolicy())
    skipped = {f.code for f in appraisal.skipped}
    assert skipped == {
        "sevsnp.product.not_allowed", "sevsnp.chip_id.mismatch", "sevsnp.measurement.mismatch",
        "sevsnp.host_data.mismatch", "sevsnp.id_key.mismatch", "sevsnp.author_key.mismatch",
        "sevsnp.family_id.mismatch", "sevsnp.image_id.mismatch", "sevsnp.report_data.mismatch",
        "sevsnp.policy.smt", "sevsnp.policy.single_socket", "sevsnp.policy.abi.below_minimum",
        "sevsnp.tcb.fmc.below_minimum", "sevsnp.firmware.below_minimum",
        "sevsnp.platform.smt", "sevsnp.platform.tsme", "sevsnp.policy.cxl_allow",
        "sevsnp.policy.mem_aes_256_xts", "sevsnp.policy.rapl_dis",
        "sevsnp.policy.ciphertext_hiding", "sevsnp.policy.page_swap_disable",
        "sevsnp.platform.ecc", "sevsnp.platform.rapl_disabled",
        "sevsnp.platform.ciphertext_hiding", "sevsnp.platform.alias_check_complete",
    }
    assert all(f.message.startswith("not checked") for f in appraisal.skipped)
    # The secure defaults run: version, signing key, svn, VMPL, debug, migration agent, TCB.
    ran = {f.code for f in appraisal.findings if f.outcome is Outcome.PASS}
    assert {"sevsnp.policy.debug", "sevsnp.policy.migrate_ma", "sevsnp.vmpl.not_allowed",
            "sevsnp.tcb.no_floor", "sevsnp.tcb.bootloader.below_minimum",
            "sevsnp.committed_tcb.below_minimum", "sevsnp.launch_tcb.below_minimum",
            "sevsnp.firmware.provisional", "sevsnp.reported_tcb.above_current",
            "sevsnp.revocation.unchecked"} <= ran


def test_no_tcb_floor_skips_every_tcb_check() -> None:
    appraisal = appraise(make_verified(), SevSnpPolicy(min_tcb=None))
    tcb_codes = {c for c in FINDING_CODES if "tcb" in c and "above_current" not in c}
    assert tcb_codes <= {f.code for f in appraisal.skipped}


def test_per_product_floor_uses_the_reports_product() -> None:
    verified = make_verified(Product.GENOA)
    high = TcbFloor(bootloader=255)
    policy = SevSnpPolicy(min_tcb={Product.MILAN: high, Product.GENOA: TcbFloor(snp=24)})
    assert appraise(verified, policy).accepted
    policy = SevSnpPolicy(min_tcb={Product.MILAN: TcbFloor(), Product.GENOA: high})
    # An unpatched platform is below the floor in all three TCBs the floor applies to.
    assert appraise(verified, policy).codes() == ["sevsnp.tcb.bootloader.below_minimum",
                                                  "sevsnp.committed_tcb.below_minimum",
                                                  "sevsnp.launch_tcb.below_minimum"]


def test_fmc_floor_skipped_for_milan_layout() -> None:
    appraisal = appraise(make_verified(), SevSnpPolicy(min_tcb=TcbFloor(fmc=200)))
    assert appraisal.accepted
    (fmc,) = [f for f in appraisal.findings if f.code == "sevsnp.tcb.fmc.below_minimum"]
    assert fmc.outcome is Outcome.SKIP and "milan-genoa" in fmc.message


def test_findings_follow_the_documented_order_for_every_policy() -> None:
    # Every check yields exactly one finding, always in the same order, whatever the policy.
    orders = []
    for product in Product:
        verified = make_verified(product)
        for policy in (SevSnpPolicy(), strict_policy(verified), SevSnpPolicy(min_tcb=None),
                       SevSnpPolicy(min_tcb={Product.TURIN: TcbFloor()})):
            orders.append([f.code for f in appraise(verified, policy).findings])
    assert all(order == orders[0] for order in orders)
    assert len(orders[0]) == len(FINDING_CODES)
    assert set(orders[0]) == FINDING_CODES


def test_finding_codes_are_pinned() -> None:
    # Changing this set is an API change for every relying party: update it deliberately.
    pinned = frozenset({
        "sevsnp.report_version.below_minimum",
        "sevsnp.product.not_allowed",
        "sevsnp.signing_key.not_allowed",
        "sevsnp.chip_id.mismatch",
        "sevsnp.measurement.mismatch",
        "sevsnp.host_data.mismatch",
        "sevsnp.id_key.mismatch",
        "sevsnp.author_key.mismatch",
        "sevsnp.family_id.mismatch",
        "sevsnp.image_id.mismatch",
        "sevsnp.guest_svn.below_minimum",
        "sevsnp.report_data.mismatch",
        "sevsnp.vmpl.not_allowed",
        "sevsnp.policy.debug",
        "sevsnp.policy.migrate_ma",
        "sevsnp.policy.smt",
        "sevsnp.policy.single_socket",
        "sevsnp.policy.abi.below_minimum",
        "sevsnp.tcb.no_floor",
        "sevsnp.tcb.bootloader.below_minimum",
        "sevsnp.tcb.tee.below_minimum",
        "sevsnp.tcb.snp.below_minimum",
        "sevsnp.tcb.microcode.below_minimum",
        "sevsnp.tcb.fmc.below_minimum",
        "sevsnp.committed_tcb.below_minimum",
        "sevsnp.launch_tcb.below_minimum",
        "sevsnp.firmware.below_minimum",
        "sevsnp.firmware.provisional",
        "sevsnp.platform.smt",
        "sevsnp.platform.tsme",
        "sevsnp.reported_tcb.above_current",
        "sevsnp.policy.cxl_allow",
        "sevsnp.policy.mem_aes_256_xts",
        "sevsnp.policy.rapl_dis",
        "sevsnp.policy.ciphertext_hiding",
        "sevsnp.policy.page_swap_disable",
        "sevsnp.platform.ecc",
        "sevsnp.platform.rapl_disabled",
        "sevsnp.platform.ciphertext_hiding",
        "sevsnp.platform.alias_check_complete",
        "sevsnp.revocation.unchecked",
    })
    assert pinned == FINDING_CODES


def test_text_and_json_contain_every_finding() -> None:
    clean = make_verified()
    r = clean.report
    bad_measurement = flip(r.measurement)
    mutated = rep(measurement=bad_measurement, vmpl=1,
                  policy=replace(r.policy, debug=True))(clean)
    appraisal = appraise(mutated, strict_policy(clean))
    text, doc = appraisal.to_text(), json.loads(appraisal.to_json())
    for finding in appraisal.findings:
        assert finding.code in text
    assert [f["code"] for f in doc["findings"]] == [f.code for f in appraisal.findings]
    assert doc["accepted"] is False
    assert "REJECTED (3 failed)" in text
    # Bytes are kept as bytes in the finding and rendered as hex.
    (measurement,) = [f for f in doc["findings"] if f["code"] == "sevsnp.measurement.mismatch"]
    assert measurement["got"] == bad_measurement.hex()
    assert measurement["want"] == [r.measurement.hex()]
    assert bad_measurement.hex()[:40] in text


def test_claims_carry_the_verified_values() -> None:
    verified = make_verified()
    r = verified.report
    claims = appraise(verified, SevSnpPolicy()).claims
    assert claims["measurement"] == r.measurement.hex()
    assert claims["report_data"] == r.report_data.hex()
    assert claims["host_data"] == r.host_data.hex()
    assert claims["chip_id"] == r.chip_id.hex()
    assert claims["product"] == "Milan"
    assert claims["signing_key"] == "VCEK"
    assert claims["reported_tcb"] == MILAN_TCB.components()
    assert claims["guest_svn"] == 7 and claims["vmpl"] == 0
    assert claims["guest_policy"]["debug"] is False
    assert claims["guest_policy"]["abi_major"] == 1
    assert claims["platform_info"]["tsme_enabled"] is True
    assert claims["current_firmware"] == "1.55.29"
    json.dumps(claims)  # JSON-ready as is


def test_author_key_digest_claim_absent_without_author_key() -> None:
    verified = make_verified(signer_info=SignerInfo(author_key_en=False),
                             author_key_digest=bytes(48))
    assert appraise(verified, SevSnpPolicy()).claims["author_key_digest"] is None


def test_verification_trace_is_carried_and_can_reject() -> None:
    verified = make_verified()
    step = Finding("sevsnp.report.signature", Outcome.PASS, "signature")
    appraisal = appraise(replace(verified, checks=(step,)), SevSnpPolicy())
    assert appraisal.verification == (step,)
    assert appraisal.accepted


def test_policy_rejected_carries_whole_appraisal() -> None:
    clean = make_verified()
    mutated = rep(vmpl=1, policy=GuestPolicy(debug=True))(clean)
    appraisal = appraise(mutated, SevSnpPolicy())
    err = PolicyRejected(appraisal)
    assert err.appraisal.codes() == ["sevsnp.vmpl.not_allowed", "sevsnp.policy.debug"]


# -- real evidence: the default policy on reports from real machines ----------------------------

_BELOW_MILAN_FLOOR = ["sevsnp.tcb.snp.below_minimum", "sevsnp.tcb.microcode.below_minimum",
                      "sevsnp.committed_tcb.below_minimum", "sevsnp.launch_tcb.below_minimum"]
_REAL = [
    # A 2022 debug guest on 1.49 firmware (SNP SPL 5, ucode 68): debug, and below every
    # component of the shipped Milan floor (issue 18: a default floor that can fail).
    ("snp/milan-v2-go-sev-guest/attestation.bin", Product.MILAN,
     ["sevsnp.policy.debug", "sevsnp.tcb.bootloader.below_minimum", *_BELOW_MILAN_FLOOR]),
    # Its source's README marks this TCB OutOfDate (SNP 23, ucode 0xd5); the old zero floor
    # accepted it. The host also reports a TCB below the one it runs (SNP 23 < 24): allowed.
    ("snp/milan-v3-dstack/report.bin", Product.MILAN, _BELOW_MILAN_FLOOR),
    ("snp/genoa-v5-oak-genoa-oc/report.bin", Product.GENOA, []),
    # 1.52 firmware (SNP 8, ucode 115), committed below current (0xd2 > 0x73 ucode): the
    # shipped Milan floor refuses it.
    ("azure-snp/milan-v2-trustee-hcl/snp_report.bin", Product.MILAN,
     ["sevsnp.tcb.bootloader.below_minimum", *_BELOW_MILAN_FLOOR,
      "sevsnp.firmware.provisional"]),
]


@pytest.mark.evidence
@pytest.mark.parametrize(("rel", "product", "codes"), _REAL, ids=[r[0] for r in _REAL])
def test_default_policy_on_real_reports(evidence_dir: Path, rel: str, product: Product,
                                        codes: list[str]) -> None:
    # Appraisal only (signatures are the trust layer's tests, so revocation counts as
    # checked here): what the shipped defaults refuse on each real report, and why.
    report = AttestationReport.from_bytes((evidence_dir / rel).read_bytes())
    vek = VekInfo(kind=SigningKey.VCEK, product=product, product_name=f"{product.value}-B0",
                  struct_version=1, tcb=report.reported_tcb, hwid=report.chip_id, csp_id=None)
    verified = VerifiedReport(report=report, product=product, vek=vek, chain=(),
                              ark_fingerprint="00" * 32, checks=(), crl_checked=True)
    assert appraise(verified, SevSnpPolicy()).codes() == codes


def test_docstring_table_matches_the_emitted_order() -> None:
    # The module docstring is the documented order; keep it and the code in step.
    documented = re.findall(r"^\s*\d+\s+(sevsnp\.\S+)", policy_module.__doc__ or "",
                            flags=re.MULTILINE)
    emitted = [f.code for f in appraise(make_verified(), SevSnpPolicy()).findings]
    assert documented == emitted
