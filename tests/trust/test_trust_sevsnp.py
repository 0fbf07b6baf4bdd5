"""SEV-SNP verification against a fake AMD that signs with real keys: one attack per test."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import hashes

from veritee.crypto.amd_certs import OID_AMD, RawExtension
from veritee.errors import CollateralError, FormatError, VerificationError
from veritee.formats.sevsnp import (
    SIGNED_SIZE,
    AttestationReport,
    Cpuid,
    Product,
    SignerInfo,
    SigningKey,
)
from veritee.policy import Outcome
from veritee.testing.amd import FakeAmd, FakeAmdKeys
from veritee.trust.roots import TrustAnchors
from veritee.trust.sevsnp import (
    AmdCertificates,
    ChainCache,
    VerifiedReport,
    parse_vek_extensions,
    verify_chain,
    verify_report,
)


def verify(amd: FakeAmd, report: AttestationReport | None = None, **kw: object) -> VerifiedReport:
    """Verify through the production path with the fake's own anchors unless told otherwise."""
    args: dict[str, object] = {"anchors": amd.anchors(), "now": amd.now}
    args.update(kw)
    certs = args.pop("certs", amd.certificates())
    return verify_report(report or amd.make_report(), certs, **args)  # type: ignore[arg-type]


def rejects(code: str, amd: FakeAmd, report: AttestationReport | None = None,
            **kw: object) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        verify(amd, report, **kw)
    assert info.value.code == code, str(info.value)
    return info.value


# -- the happy paths -------------------------------------------------------------------------
@pytest.mark.parametrize("product", list(Product))
@pytest.mark.parametrize("kind", [SigningKey.VCEK, SigningKey.VLEK])
def test_fake_chain_verifies_for_every_product_and_kind(amd_keys: FakeAmdKeys, product: Product,
                                                        kind: SigningKey) -> None:
    amd = FakeAmd(product, kind=kind, keys=amd_keys)
    report = AttestationReport.from_bytes(amd.make_report().to_bytes())
    v = verify(amd, report, certs=amd.certificates(crl=amd.crl()), require_crl=True)
    assert v.product is product and v.vek.kind is kind
    assert v.chain == (amd.vek, amd.ask, amd.ark)
    assert v.ark_fingerprint == amd.ark.sha256
    assert v.crl_checked and v.checked_at == amd.now
    assert all(c.outcome in (Outcome.PASS, Outcome.SKIP) for c in v.checks)
    codes = [c.code for c in v.checks if c.passed]
    assert codes[0] == "sevsnp.report.signature_algo"
    assert codes[-1] == "sevsnp.report.signature"
    assert {"sevsnp.chain.ark", "sevsnp.chain.ask_signature",
            "sevsnp.chain.vek_signature", "sevsnp.chain.validity", "sevsnp.chain.revocation",
            "sevsnp.vek.tcb", "sevsnp.vek.product", "sevsnp.chain.product"} <= set(codes)


_FAILURE_WORDS = ("mismatch", "expired", "revoked", "untrusted", "not_yet_valid", "stale")


@pytest.mark.parametrize("with_crl", [False, True])
def test_passed_checks_name_the_check_not_a_failure(milan: FakeAmd, with_crl: bool) -> None:
    """``[ok] sevsnp.chain.expired`` read as an alarm: a pass is recorded under the check."""
    certs = milan.certificates(crl=milan.crl()) if with_crl else milan.certificates()
    for cache in (None, ChainCache()):
        v = verify(milan, milan.make_report(), certs=certs, cache=cache)
        v = verify(milan, milan.make_report(), certs=certs, cache=cache)  # warm when cached
        named = [c.code for c in v.checks if c.code.endswith(_FAILURE_WORDS)]
        assert named == [], named


def test_verify_chain_returns_the_passed_steps(milan: FakeAmd) -> None:
    findings = verify_chain(milan.certificates(), anchors=milan.anchors(), now=milan.now,
                            kind=SigningKey.VCEK, crl=milan.crl())
    assert all(f.passed for f in findings)
    assert findings[0].code == "sevsnp.chain.ark"


def test_mask_chip_key_is_recorded_not_matched(milan: FakeAmd) -> None:
    report = milan.make_report(signer_info=SignerInfo(mask_chip_key=True), chip_id=bytes(64))
    v = verify(milan, report)
    skipped = [c for c in v.checks if c.code == "sevsnp.vek.hwid"]
    assert skipped[0].outcome is Outcome.SKIP and "MASK_CHIP_ID" in skipped[0].message


# -- the report itself -------------------------------------------------------------------------
def test_every_single_byte_flip_of_the_signed_region_is_rejected(milan: FakeAmd) -> None:
    raw = milan.make_report().to_bytes()
    cache = ChainCache()
    verify(milan, AttestationReport.from_bytes(raw), cache=cache)  # warm: one ECDSA per case
    accepted = []
    for offset in range(SIGNED_SIZE):
        for mask in (0x01, 0xFF):
            data = bytearray(raw)
            data[offset] ^= mask
            try:
                verify(milan, AttestationReport.from_bytes(bytes(data)), cache=cache)
            except (FormatError, VerificationError):
                continue
            accepted.append((hex(offset), mask))
    assert SIGNED_SIZE == 0x2A0 == 672
    assert accepted == []
    assert cache.hits >= SIGNED_SIZE


def test_report_signed_by_another_chips_vcek(milan: FakeAmd, other_keys: FakeAmdKeys) -> None:
    report = milan.sign_report(milan.make_report(sign=False), key=other_keys.vcek)
    rejects("sevsnp.report.signature", milan, report)


def test_unsigned_report_rejected(milan: FakeAmd) -> None:
    rejects("sevsnp.report.signature", milan, milan.make_report(sign=False))


def test_signing_key_none_rejected(milan: FakeAmd) -> None:
    report = milan.make_report(signer_info=SignerInfo(signing_key=SigningKey.NONE))
    rejects("sevsnp.report.signing_key", milan, report)


def test_signature_algorithm_other_than_ecdsa_p384_rejected(milan: FakeAmd) -> None:
    rejects("sevsnp.report.signature_algo", milan, milan.make_report(signature_algo=2))


def test_vlek_report_with_vcek_cert(milan: FakeAmd) -> None:
    report = milan.make_report(signer_info=SignerInfo(signing_key=SigningKey.VLEK))
    rejects("sevsnp.report.signing_key", milan, report)


def test_vcek_report_with_vlek_cert(milan_vlek: FakeAmd) -> None:
    report = milan_vlek.make_report(signer_info=SignerInfo(signing_key=SigningKey.VCEK))
    rejects("sevsnp.report.signing_key", milan_vlek, report)


def test_vlek_presented_with_the_ask_instead_of_the_asvk(milan: FakeAmd,
                                                         milan_vlek: FakeAmd) -> None:
    certs = dataclasses.replace(milan_vlek.certificates(), ask=milan.ask)
    rejects("sevsnp.chain.issuer_mismatch", milan_vlek, certs=certs)


# -- VEK binding -------------------------------------------------------------------------------
@pytest.mark.parametrize("component", ["bootloader", "tee", "snp", "microcode"])
def test_vcek_tcb_extension_disagrees_with_report(amd_keys: FakeAmdKeys, milan: FakeAmd,
                                                  component: str) -> None:
    bumped = dataclasses.replace(milan.tcb, **{component: getattr(milan.tcb, component) + 1})
    amd = FakeAmd(Product.MILAN, keys=amd_keys, tcb=bumped)
    err = rejects("sevsnp.vek.tcb_mismatch", amd, amd.make_report(reported_tcb=milan.tcb))
    assert component in str(err)


def test_turin_vcek_fmc_spl_disagrees_with_report(amd_keys: FakeAmdKeys, turin: FakeAmd) -> None:
    amd = FakeAmd(Product.TURIN, keys=amd_keys,
                  tcb=dataclasses.replace(turin.tcb, fmc=(turin.tcb.fmc or 0) + 1))
    rejects("sevsnp.vek.tcb_mismatch", amd, amd.make_report(reported_tcb=turin.tcb))


def test_vcek_hwid_disagrees_with_chip_id(milan: FakeAmd) -> None:
    rejects("sevsnp.vek.hwid_mismatch", milan, milan.make_report(chip_id=bytes(range(64))))


def test_turin_chip_id_tail_is_not_part_of_the_vcek_binding(turin: FakeAmd) -> None:
    """KDS identifies a Turin chip by CHIP_ID[0:8]; the rest is only covered by the signature."""
    v = verify(turin, turin.make_report(chip_id=turin.hwid + b"\x01" * 56))
    assert v.report.chip_id[8:] == b"\x01" * 56


def test_turin_chip_id_prefix_mismatch_rejected(turin: FakeAmd) -> None:
    rejects("sevsnp.vek.hwid_mismatch", turin,
            turin.make_report(chip_id=bytes(8) + turin.hwid + bytes(48)))


def test_turin_8_byte_hwid_matches_chip_id_prefix(turin: FakeAmd) -> None:
    v = verify(turin)
    assert v.vek.hwid == turin.hwid and len(turin.hwid) == 8 and v.vek.struct_version == 1


def test_report_cpuid_names_another_product(milan: FakeAmd) -> None:
    rejects("sevsnp.vek.product_mismatch", milan,
            milan.make_report(cpuid=Cpuid(0x19, 0x11, 0x01)))


def test_vek_product_name_of_another_product(amd_keys: FakeAmdKeys) -> None:
    amd = FakeAmd(Product.MILAN, keys=amd_keys, product_name="Genoa")
    rejects("sevsnp.vek.product_mismatch", amd)


# -- roots -------------------------------------------------------------------------------------
def test_report_signed_by_untrusted_ark(milan: FakeAmd) -> None:
    rejects("sevsnp.chain.ark_untrusted", milan, anchors=TrustAnchors.amd())


def test_self_made_ark_with_amd_names(milan: FakeAmd, other_keys: FakeAmdKeys) -> None:
    forged = FakeAmd(Product.MILAN, keys=other_keys)
    assert forged.ark.subject == milan.ark.subject  # same AMD names, different key
    rejects("sevsnp.chain.ark_untrusted", forged, anchors=milan.anchors())


def test_emulated_roots_are_not_in_the_amd_anchors(milan: FakeAmd) -> None:
    assert not TrustAnchors.amd().is_trusted(milan.ark)
    assert milan.anchors().is_trusted(milan.ark)


def test_ark_not_self_signed(amd_keys: FakeAmdKeys, other_keys: FakeAmdKeys) -> None:
    amd = FakeAmd(Product.MILAN, keys=amd_keys, ark_signer=other_keys.ark)
    rejects("sevsnp.chain.ark_signature", amd)


def test_ask_signed_by_other_ark(amd_keys: FakeAmdKeys, other_keys: FakeAmdKeys) -> None:
    amd = FakeAmd(Product.MILAN, keys=amd_keys, ask_signer=other_keys.ark)
    rejects("sevsnp.chain.ask_signature", amd)


def test_vcek_signed_by_other_ask(amd_keys: FakeAmdKeys, other_keys: FakeAmdKeys) -> None:
    amd = FakeAmd(Product.MILAN, keys=amd_keys, vek_signer=other_keys.ask)
    rejects("sevsnp.chain.vek_signature", amd)


def test_ask_from_another_product_chain(amd_keys: FakeAmdKeys) -> None:
    amd = FakeAmd(Product.MILAN, keys=amd_keys, ask_options={"common_name": "SEV-Genoa"})
    rejects("sevsnp.chain.product_mismatch", amd)


def test_ark_pinned_for_another_product(milan: FakeAmd) -> None:
    anchors = TrustAnchors.from_certificates(milan.ark, product=Product.GENOA)
    rejects("sevsnp.chain.product_mismatch", milan, anchors=anchors)


def test_vek_with_wrong_common_name(amd_keys: FakeAmdKeys) -> None:
    amd = FakeAmd(Product.MILAN, keys=amd_keys, vek_options={"common_name": "SEV-VLEK"})
    rejects("sevsnp.report.signing_key", amd)


@pytest.mark.parametrize("role", ["ark", "ask", "vek"])
def test_pss_salt_length_32_rejected(amd_keys: FakeAmdKeys, role: str) -> None:
    amd = FakeAmd(Product.MILAN, keys=amd_keys, **{f"{role}_options": {"salt_length": 32}})
    rejects("sevsnp.chain.signature_algorithm", amd)


def test_pss_with_sha256_rejected(amd_keys: FakeAmdKeys) -> None:
    amd = FakeAmd(Product.MILAN, keys=amd_keys, vek_options={"digest": hashes.SHA256()})
    rejects("sevsnp.chain.signature_algorithm", amd)


def test_unknown_critical_extension_rejected(amd_keys: FakeAmdKeys) -> None:
    extra = [RawExtension("1.3.6.1.4.1.99999.1", True, b"\x05\x00")]
    amd = FakeAmd(Product.MILAN, keys=amd_keys, vek_options={"extra": extra})
    rejects("sevsnp.chain.critical_extension", amd)


# -- time --------------------------------------------------------------------------------------
def test_expired_ask(amd_keys: FakeAmdKeys, milan: FakeAmd) -> None:
    now = milan.now
    amd = FakeAmd(Product.MILAN, keys=amd_keys,
                  ask_validity=(now - timedelta(days=900), now - timedelta(seconds=1)))
    err = rejects("sevsnp.chain.expired", amd)
    assert "ASK.validity" in str(err)


def test_expired_ark(amd_keys: FakeAmdKeys, milan: FakeAmd) -> None:
    now = milan.now
    amd = FakeAmd(Product.MILAN, keys=amd_keys,
                  ark_validity=(now - timedelta(days=900), now - timedelta(days=1)))
    rejects("sevsnp.chain.expired", amd)


def test_expired_vcek(milan: FakeAmd) -> None:
    rejects("sevsnp.chain.expired", milan, now=milan.vek.not_valid_after_utc + timedelta(seconds=1))


def test_not_yet_valid_vcek(milan: FakeAmd) -> None:
    rejects("sevsnp.chain.not_yet_valid", milan,
            now=milan.vek.not_valid_before_utc - timedelta(seconds=1))


def test_valid_at_the_exact_validity_bounds(milan: FakeAmd) -> None:
    verify(milan, now=milan.vek.not_valid_before_utc)
    verify(milan, now=milan.vek.not_valid_after_utc)


# -- revocation --------------------------------------------------------------------------------
def test_revoked_ask(milan: FakeAmd) -> None:
    certs = milan.certificates(crl=milan.crl(revoked=[milan.ask]))
    rejects("sevsnp.chain.revoked", milan, certs=certs)


def test_revoked_vcek(amd_keys: FakeAmdKeys) -> None:
    amd = FakeAmd(Product.MILAN, keys=amd_keys, vek_serial=77)
    rejects("sevsnp.chain.revoked", amd, certs=amd.certificates(crl=amd.crl(revoked=[77])))


def test_crl_signed_by_other_key(milan: FakeAmd, other_keys: FakeAmdKeys) -> None:
    certs = milan.certificates(crl=milan.crl(signer=other_keys.ark))
    rejects("sevsnp.crl.signature", milan, certs=certs)


def test_crl_with_wrong_pss_salt(milan: FakeAmd) -> None:
    rejects("sevsnp.crl.signature", milan, certs=milan.certificates(crl=milan.crl(salt_length=32)))


def test_stale_crl(milan: FakeAmd) -> None:
    crl = milan.crl(last_update=milan.now - timedelta(days=30),
                    next_update=milan.now - timedelta(days=1))
    rejects("sevsnp.crl.stale", milan, certs=milan.certificates(crl=crl))


def test_crl_from_the_future(milan: FakeAmd) -> None:
    crl = milan.crl(last_update=milan.now + timedelta(days=1),
                    next_update=milan.now + timedelta(days=8))
    rejects("sevsnp.crl.stale", milan, certs=milan.certificates(crl=crl))


def test_required_crl_missing_is_a_collateral_error(milan: FakeAmd) -> None:
    with pytest.raises(CollateralError, match="crl"):
        verify(milan, require_crl=True)


@pytest.mark.parametrize("missing", ["ark", "ask", "vek"])
def test_missing_certificate_is_a_collateral_error(milan: FakeAmd, missing: str) -> None:
    certs = dataclasses.replace(milan.certificates(), **{missing: None})
    with pytest.raises(CollateralError, match=missing):
        verify(milan, certs=certs)


# -- VEK extensions ----------------------------------------------------------------------------
def test_parse_vek_extensions_of_a_fake_vcek(milan: FakeAmd) -> None:
    info = parse_vek_extensions(milan.vek)
    assert (info.kind, info.product, info.product_name) == (SigningKey.VCEK, Product.MILAN,
                                                           "Milan-B0")
    assert info.tcb == milan.tcb and info.hwid == milan.hwid and info.csp_id is None


def test_parse_vek_extensions_of_a_fake_vlek(milan_vlek: FakeAmd) -> None:
    info = parse_vek_extensions(milan_vlek.vek)
    assert info.kind is SigningKey.VLEK and info.csp_id == "fake-csp" and info.hwid is None


def test_hwid_as_octet_string_parses_like_raw(amd_keys: FakeAmdKeys, milan: FakeAmd) -> None:
    amd = FakeAmd(Product.MILAN, keys=amd_keys, vek_options={"hwid_octet_string": True})
    assert amd.vek.extension(OID_AMD.HWID) != milan.vek.extension(OID_AMD.HWID)
    assert parse_vek_extensions(amd.vek).hwid == milan.hwid
    verify(amd)


def test_spl_out_of_range_is_a_format_error(amd_keys: FakeAmdKeys) -> None:
    amd = FakeAmd(Product.MILAN, keys=amd_keys, vek_options={
        "omit": [OID_AMD.BL_SPL],
        "extra": [RawExtension(OID_AMD.BL_SPL, False, b"\x02\x02\x01\x00")]})
    with pytest.raises(FormatError, match="blSPL"):
        parse_vek_extensions(amd.vek)


@pytest.mark.parametrize("oid", [OID_AMD.PRODUCT_NAME, OID_AMD.SNP_SPL, OID_AMD.HWID])
def test_missing_vek_extension_is_a_format_error(amd_keys: FakeAmdKeys, oid: str) -> None:
    amd = FakeAmd(Product.MILAN, keys=amd_keys, vek_options={"omit": [oid]})
    with pytest.raises(FormatError):
        parse_vek_extensions(amd.vek)


def test_wrong_hwid_length_is_a_format_error(amd_keys: FakeAmdKeys) -> None:
    amd = FakeAmd(Product.MILAN, keys=amd_keys, hwid=bytes(32))
    with pytest.raises(FormatError, match="hwID"):
        parse_vek_extensions(amd.vek)


def test_turin_vek_without_fmc_spl_is_a_format_error(amd_keys: FakeAmdKeys) -> None:
    amd = FakeAmd(Product.TURIN, keys=amd_keys, vek_options={"omit": [OID_AMD.FMC_SPL]})
    with pytest.raises(FormatError, match="fmcSPL"):
        parse_vek_extensions(amd.vek)


# -- cache -------------------------------------------------------------------------------------
def test_cache_hit_is_recorded_and_matches_a_full_verification(milan: FakeAmd) -> None:
    cache = ChainCache()
    first = verify(milan, cache=cache)
    second = verify(milan, cache=cache)
    assert (cache.misses, cache.hits) == (1, 1)
    assert "sevsnp.chain.cached" in [c.code for c in second.checks]
    assert second.vek == first.vek and second.chain == first.chain


def test_cached_chain_not_used_after_a_cert_expires(milan: FakeAmd) -> None:
    cache = ChainCache()
    verify(milan, cache=cache)
    rejects("sevsnp.chain.expired", milan, cache=cache,
            now=milan.vek.not_valid_after_utc + timedelta(seconds=1))


def test_cached_chain_not_used_after_the_crl_goes_stale(milan: FakeAmd) -> None:
    cache = ChainCache()
    crl = milan.crl()
    verify(milan, certs=milan.certificates(crl=crl), cache=cache)
    assert crl.next_update_utc is not None
    rejects("sevsnp.crl.stale", milan, certs=milan.certificates(crl=crl), cache=cache,
            now=crl.next_update_utc + timedelta(seconds=1))


def test_cached_chain_not_used_for_other_anchors(milan: FakeAmd) -> None:
    cache = ChainCache()
    verify(milan, cache=cache)
    rejects("sevsnp.chain.ark_untrusted", milan, cache=cache, anchors=TrustAnchors.amd())


def test_cached_chain_not_used_with_a_crl_that_revokes(milan: FakeAmd) -> None:
    cache = ChainCache()
    verify(milan, cache=cache)
    rejects("sevsnp.chain.revoked", milan, cache=cache,
            certs=milan.certificates(crl=milan.crl(revoked=[milan.ask])))


def test_cache_still_checks_the_report(milan: FakeAmd, other_keys: FakeAmdKeys) -> None:
    cache = ChainCache()
    verify(milan, cache=cache)
    forged = milan.sign_report(milan.make_report(sign=False), key=other_keys.vcek)
    rejects("sevsnp.report.signature", milan, forged, cache=cache)
    rejects("sevsnp.vek.tcb_mismatch", milan, cache=cache,
            report=milan.make_report(reported_tcb=dataclasses.replace(milan.tcb, snp=0)))


def test_cache_is_bounded(amd_keys: FakeAmdKeys, milan: FakeAmd) -> None:
    cache = ChainCache(max_entries=1)
    verify(milan, cache=cache)
    verify(milan, cache=cache, certs=milan.certificates(crl=milan.crl()))
    assert len(cache) == 1
    cache.clear()
    assert len(cache) == 0


def test_empty_collateral(milan: FakeAmd) -> None:
    with pytest.raises(CollateralError, match="ark, ask, vek"):
        verify(milan, certs=AmdCertificates())
