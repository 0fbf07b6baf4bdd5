"""AMD collateral loaders: directories, PEM bundles, DER files, CRLs and certificate tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from veritee.collateral.amd import (
    classify,
    from_cert_table,
    load_crl,
    load_directory,
    load_files,
    load_paths,
)
from veritee.errors import CollateralError, ConfigError, FormatError
from veritee.formats.sevsnp import AttestationReport, CertTable, Product, SigningKey
from veritee.testing.amd import FakeAmd, FakeAmdKeys
from veritee.trust.roots import TrustAnchors
from veritee.trust.sevsnp import verify_report

from _evidence import manifest_samples, sample_time

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


@pytest.fixture(scope="module")
def keys() -> FakeAmdKeys:
    return FakeAmdKeys.generate(key_size=2048)


@pytest.fixture(scope="module")
def amd(keys: FakeAmdKeys) -> FakeAmd:
    return FakeAmd(Product.GENOA, keys=keys)


@pytest.fixture(scope="module")
def amd_vlek(keys: FakeAmdKeys) -> FakeAmd:
    return FakeAmd(Product.GENOA, kind=SigningKey.VLEK, keys=keys)


def test_directory_with_bundle_der_and_crl(tmp_path: Path, amd: FakeAmd) -> None:
    (tmp_path / "cert_chain.pem").write_bytes(amd.ask.public_bytes(PEM) + amd.ark.public_bytes(PEM))
    (tmp_path / "vcek.der").write_bytes(amd.vek.der)
    crl = amd.crl()
    (tmp_path / "Genoa.pem").write_bytes(crl.public_bytes(PEM))  # a CRL, known by content
    (tmp_path / "report.bin").write_bytes(b"ignored: not a certificate file name")
    certs = load_directory(tmp_path)
    assert (certs.ark, certs.ask, certs.vek) == (amd.ark, amd.ask, amd.vek)
    assert certs.crl == crl
    verify_report(amd.make_report(), certs, anchors=amd.anchors(), now=amd.now,
                  require_crl=True)


def test_der_crl_is_recognised_by_content(tmp_path: Path, amd: FakeAmd) -> None:
    path = tmp_path / "whatever.der"
    path.write_bytes(amd.crl().public_bytes(DER))
    assert load_files(path).crl is not None
    assert load_crl(path).issuer == amd.ark.subject


def test_bundle_with_ask_ark_asvk_picks_by_vek_kind(tmp_path: Path, amd_vlek: FakeAmd) -> None:
    # trustee ships milan_ask_ark_asvk.pem: ASK, ARK and ASVK in one bundle.
    bundle = tmp_path / "ask_ark_asvk.pem"
    bundle.write_bytes(amd_vlek.sev_ask.public_bytes(PEM) + amd_vlek.ark.public_bytes(PEM)
                       + amd_vlek.asvk.public_bytes(PEM))
    (tmp_path / "vlek.pem").write_bytes(amd_vlek.vlek.public_bytes(PEM))
    certs = load_directory(tmp_path)
    assert certs.ask == amd_vlek.asvk and certs.vek == amd_vlek.vlek
    verify_report(amd_vlek.make_report(), certs, anchors=amd_vlek.anchors(), now=amd_vlek.now)
    assert load_files(bundle).ask == amd_vlek.sev_ask  # no VEK: the ASK


def test_paths_decide_roles_together(tmp_path: Path, amd_vlek: FakeAmd) -> None:
    """A VLEK in one directory and AMD's bundle elsewhere still pair the VLEK with the ASVK."""
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "vlek.pem").write_bytes(amd_vlek.vlek.public_bytes(PEM))
    bundle = tmp_path / "ask_ark_asvk.pem"
    bundle.write_bytes(amd_vlek.sev_ask.public_bytes(PEM) + amd_vlek.ark.public_bytes(PEM)
                       + amd_vlek.asvk.public_bytes(PEM))
    certs = load_paths(tmp_path / "here", bundle)
    assert certs.ask == amd_vlek.asvk and certs.vek == amd_vlek.vlek
    verify_report(amd_vlek.make_report(), certs, anchors=amd_vlek.anchors(), now=amd_vlek.now)


def test_missing_pieces_stay_none_and_verification_names_them(tmp_path: Path,
                                                               amd: FakeAmd) -> None:
    (tmp_path / "vcek.pem").write_bytes(amd.vek.public_bytes(PEM))
    certs = load_directory(tmp_path)
    assert certs.missing() == ["ark", "ask"]
    with pytest.raises(CollateralError, match="ark, ask"):
        verify_report(amd.make_report(), certs, anchors=amd.anchors(), now=amd.now)


def test_unparsable_certificate_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "ark.der"
    bad.write_bytes(b"\x30\x03\x02\x01")
    with pytest.raises(FormatError, match=r"ark\.der"):
        load_directory(tmp_path)


def test_unparsable_crl_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "crl.der"
    bad.write_bytes(b"not a crl")
    with pytest.raises(FormatError, match=r"crl\.der"):
        load_crl(bad)


def test_two_different_vceks_are_a_config_error(tmp_path: Path, amd: FakeAmd,
                                                keys: FakeAmdKeys) -> None:
    other = FakeAmd(Product.GENOA, keys=keys, hwid=bytes(64))
    (tmp_path / "a.der").write_bytes(amd.vek.der)
    (tmp_path / "b.der").write_bytes(other.vek.der)
    with pytest.raises(ConfigError, match="VCEK"):
        load_directory(tmp_path)


def test_not_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_directory(tmp_path / "absent")


def test_classify_by_common_name(amd: FakeAmd) -> None:
    assert [classify(c) for c in (amd.ark, amd.ask, amd.vek, amd.asvk, amd.vlek)] == [
        "ark", "ask", "vcek", "asvk", "vlek"]


@pytest.mark.parametrize("encoding", [PEM, DER])
def test_cert_table_payloads(amd: FakeAmd, encoding: serialization.Encoding) -> None:
    table = CertTable.build({"ARK": amd.ark.public_bytes(encoding),
                             "ASK": amd.ask.public_bytes(encoding),
                             "VCEK": amd.vek.public_bytes(encoding),
                             "CRL": amd.crl().public_bytes(encoding)})
    certs = from_cert_table(CertTable.from_bytes(table.to_bytes()))
    assert (certs.ark, certs.ask, certs.vek) == (amd.ark, amd.ask, amd.vek)
    verify_report(amd.make_report(), certs, anchors=amd.anchors(), now=amd.now,
                  require_crl=True)


def test_cert_table_guid_must_match_the_certificate(amd: FakeAmd) -> None:
    table = CertTable.build({"ARK": amd.ask.der, "VCEK": amd.vek.der})
    with pytest.raises(ConfigError, match="does not match"):
        from_cert_table(table)


def test_real_go_sev_guest_directory_verifies() -> None:
    found = [s for s in manifest_samples("snp/") if s["id"] == "snp-milan-v2-go-sev-guest"]
    if not found:
        pytest.skip("shared evidence not present")
    sample = found[0]
    from _evidence import EVIDENCE_DIR

    base = EVIDENCE_DIR / sample["dir"]
    certs = load_directory(base)
    assert certs.missing() == []
    report = AttestationReport.from_bytes((base / sample["files"]["report"]).read_bytes())
    verify_report(report, certs, anchors=TrustAnchors.amd(), now=sample_time(sample))


def test_real_trustee_bundle_keeps_the_ask_for_a_vcek() -> None:
    found = [s for s in manifest_samples("snp/") if s["id"] == "snp-milan-v2-trustee-vcek"]
    if not found:
        pytest.skip("shared evidence not present")
    from _evidence import EVIDENCE_DIR

    certs = load_directory(EVIDENCE_DIR / found[0]["dir"])
    assert certs.ask is not None and certs.ask.common_name == "SEV-Milan"
