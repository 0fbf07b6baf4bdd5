"""Trust anchors: genuine AMD pins by default, explicit roots only when passed."""

from __future__ import annotations

import pytest
from cryptography import x509

from veritee.formats.sevsnp import Product, SigningKey
from veritee.testing.amd import FakeAmd
from veritee.trust import sevsnp
from veritee.trust.roots import AMD_ARK_SHA256, TrustAnchors, fingerprint
from veritee.trust.sevsnp import AmdCertificates, ChainCache, verify_report


def test_amd_anchors_are_exactly_the_three_pins() -> None:
    anchors = TrustAnchors.amd()
    assert anchors.pins == {(fp, p) for p, fp in AMD_ARK_SHA256.items()}
    assert set(AMD_ARK_SHA256) == set(Product)


def test_from_certificates_infers_the_product_from_the_ark_cn(milan: FakeAmd) -> None:
    anchors = TrustAnchors.from_certificates(milan.ark)
    assert anchors.product_of(milan.ark) is Product.MILAN
    assert anchors.is_trusted(milan.ark.to_x509())  # a cryptography object works too
    with pytest.raises(ValueError, match="product"):
        TrustAnchors.from_certificates(milan.ask)
    with pytest.raises(ValueError):
        TrustAnchors.from_certificates()


def test_anchor_sets_combine(milan: FakeAmd) -> None:
    both = TrustAnchors.amd() | milan.anchors()
    assert both.is_trusted(milan.ark) and len(both.pins) == 4
    assert fingerprint(milan.ark) == fingerprint(milan.ark.der) == milan.ark.sha256


def test_collateral_given_as_cryptography_objects_is_normalised(milan: FakeAmd) -> None:
    certs = AmdCertificates(ark=milan.ark.to_x509(), ask=milan.ask.to_x509(), vek=milan.vek)
    assert certs.ark == milan.ark and isinstance(milan.ark.to_x509(), x509.Certificate)
    verify_report(milan.make_report(), certs, anchors=milan.anchors(), now=milan.now)


def test_warm_cache_does_no_rsa_work(milan: FakeAmd, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the chain cached, a verification is the ECDSA report check and field compares."""
    cache = ChainCache()
    report = milan.make_report()
    verify_report(report, milan.certificates(), anchors=milan.anchors(), now=milan.now,
                  cache=cache)

    def no_rsa(*_args: object) -> None:
        raise AssertionError("RSA chain verification ran with a warm cache")

    monkeypatch.setattr(sevsnp, "_verify_pss", no_rsa)
    monkeypatch.setattr(sevsnp, "parse_vek_extensions", no_rsa)
    v = verify_report(report, milan.certificates(), anchors=milan.anchors(), now=milan.now,
                      cache=cache)
    assert v.vek.kind is SigningKey.VCEK
