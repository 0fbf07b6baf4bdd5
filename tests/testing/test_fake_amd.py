"""FakeAmd mints chains with AMD's profile and signs reports the production verifier accepts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from veritee.crypto.amd_certs import OID_AMD, load_certificates
from veritee.formats.sevsnp import AttestationReport, Product, SigningKey
from veritee.testing.amd import FakeAmd, FakeAmdKeys
from veritee.trust.roots import TrustAnchors
from veritee.trust.sevsnp import verify_report

from _evidence import EVIDENCE_DIR, evidence_available


@pytest.fixture(scope="module")
def keys() -> FakeAmdKeys:
    return FakeAmdKeys.generate(key_size=2048)


@pytest.mark.parametrize("product", list(Product))
def test_chain_has_amds_names_serials_and_pss(keys: FakeAmdKeys, product: Product) -> None:
    amd = FakeAmd(product, keys=keys)
    p = product.value
    assert [c.common_name for c in (amd.ark, amd.sev_ask, amd.asvk, amd.vcek, amd.vlek)] == [
        f"ARK-{p}", f"SEV-{p}", f"SEV-VLEK-{p}", "SEV-VCEK", "SEV-VLEK"]
    assert amd.ark.subject.rfc4514_string() == (
        f"CN=ARK-{p},O=Advanced Micro Devices,ST=CA,L=Santa Clara,C=US,OU=Engineering")
    assert amd.vcek.serial_number == amd.vlek.serial_number == 0
    assert amd.ark.serial_number == {"Milan": 0x10000, "Genoa": 0x20000, "Turin": 0x30000}[p]
    for cert in (amd.ark, amd.sev_ask, amd.asvk, amd.vcek, amd.vlek):
        assert cert.pss is not None and cert.pss.is_amd
    assert amd.sev_ask.issuer == amd.asvk.issuer == amd.ark.subject


def test_vcek_extension_layout_matches_a_real_kds_vcek(keys: FakeAmdKeys) -> None:
    """Same OIDs, order and encodings as go-sev-guest's real Milan VCEK (hwID raw)."""
    path = EVIDENCE_DIR / "snp" / "milan-v2-go-sev-guest" / "vcek.der"
    if not evidence_available() or not path.is_file():
        pytest.skip("shared evidence not present")
    (real,) = load_certificates(path.read_bytes())
    amd = FakeAmd(Product.MILAN, keys=keys)
    # KDS order: structVersion, productName, bl, tee, spl_4..7, snp, ucode, hwID.
    assert [e.oid for e in amd.vcek.extensions] == [e.oid for e in real.extensions]
    for ours, theirs in zip(amd.vcek.extensions, real.extensions, strict=True):
        assert ours.critical == theirs.critical
        if ours.oid == OID_AMD.HWID:
            assert len(ours.value) == len(theirs.value) == 64  # raw bytes, no DER header
        else:
            assert ours.value[:1] == theirs.value[:1]  # same DER type (INTEGER / IA5String)


def test_turin_vcek_layout(keys: FakeAmdKeys) -> None:
    amd = FakeAmd(Product.TURIN, keys=keys)
    oids = [e.oid for e in amd.vcek.extensions]
    assert OID_AMD.FMC_SPL in oids and OID_AMD.SPL_4 not in oids
    assert len(amd.vcek.extension(OID_AMD.HWID).value) == 8  # type: ignore[union-attr]
    assert amd.chip_id == amd.hwid + bytes(56)


@pytest.mark.parametrize("kind", [SigningKey.VCEK, SigningKey.VLEK])
def test_make_report_round_trips_and_verifies(keys: FakeAmdKeys, kind: SigningKey) -> None:
    amd = FakeAmd(Product.GENOA, kind=kind, keys=keys)
    report = amd.make_report(report_data=b"\x11" * 64)
    parsed = AttestationReport.from_bytes(report.to_bytes())
    assert parsed == report and parsed.version == 3 and parsed.signer_info.signing_key is kind
    v = verify_report(parsed, amd.certificates(), anchors=amd.anchors(), now=amd.now)
    assert v.report.report_data == b"\x11" * 64


def test_certificates_of_the_other_kind_share_the_ark(keys: FakeAmdKeys) -> None:
    amd = FakeAmd(Product.MILAN, keys=keys)
    vlek = amd.certificates(kind=SigningKey.VLEK)
    assert vlek.ark == amd.ark and vlek.ask == amd.asvk and vlek.vek == amd.vlek


def test_sign_report_returns_a_new_signed_report(keys: FakeAmdKeys) -> None:
    amd = FakeAmd(Product.MILAN, keys=keys)
    unsigned = amd.make_report(sign=False)
    signed = amd.sign_report(unsigned)
    assert unsigned.signature.r == 0 and signed.signature.r != 0
    assert dataclasses.replace(signed, signature=unsigned.signature) == unsigned


def test_fake_roots_are_never_amd_roots(keys: FakeAmdKeys) -> None:
    amd = FakeAmd(Product.MILAN, keys=keys)
    assert not TrustAnchors.amd().is_trusted(amd.ark)


def test_overrides_change_one_thing(keys: FakeAmdKeys, tmp_path: Path) -> None:
    amd = FakeAmd(Product.MILAN, keys=keys, vek_serial=5, product_name="Milan-B1",
                  hwid=bytes(range(64)))
    assert amd.vcek.serial_number == 5
    assert amd.vcek.extension(OID_AMD.PRODUCT_NAME).value == b"\x16\x08Milan-B1"  # type: ignore[union-attr]
    assert amd.chip_id == bytes(range(64))
    crl = amd.crl(revoked=[amd.sev_ask, 9])
    assert {r.serial_number for r in crl} == {amd.sev_ask.serial_number, 9}
