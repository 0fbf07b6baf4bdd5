"""The product-chain cache (ARK -> ASK/ASVK and CRL verified once, reused for new chips) and
the cold path: every attack is refused with no cache, with a fresh cache and with a cache that
has already verified another chip's chain under the same ARK, ASK and CRL."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.crypto.amd_certs import AmdCertificate, make_crl, make_vek
from veritee.errors import VerificationError
from veritee.formats.sevsnp import AttestationReport, Product, SignerInfo, SigningKey
from veritee.testing.amd import DEFAULT_NOW, FakeAmd, FakeAmdKeys
from veritee.trust.roots import TrustAnchors
from veritee.trust.sevsnp import AmdCertificates, ChainCache, VerifiedReport, verify_report

MODES = ["no cache", "fresh cache", "warm cache"]


@dataclasses.dataclass(frozen=True)
class Chip:
    """Another chip of the fake AMD's product: its own VCEK, issued by the same ASK."""

    report: AttestationReport
    vek: AmdCertificate


def second_chip(amd: FakeAmd, *, serial: int = 0,
                validity: tuple[datetime, datetime] | None = None,
                signer: FakeAmdKeys | None = None) -> Chip:
    """A VCEK for a new chip (hwID 0x11...) from ``amd``'s ASK (or ``signer``'s ASK key)."""
    key = ec.generate_private_key(ec.SECP384R1())
    hwid = bytes([0x11]) * 64
    nb, na = validity or (amd.now - timedelta(days=1), amd.now + timedelta(days=365))
    vek = make_vek((signer or amd.keys).ask, amd.ask, key.public_key(), amd.product, amd.tcb,
                   hwid=hwid, not_before=nb, not_after=na, serial=serial)
    report = amd.sign_report(amd.make_report(chip_id=hwid, sign=False), key=key)
    return Chip(report, vek)


def cache_for(mode: str, amd: FakeAmd,
              crl: x509.CertificateRevocationList | None = None) -> ChainCache | None:
    """No cache, an empty one, or one that verified ``amd``'s own chip (same ARK, ASK, CRL)."""
    if mode == "no cache":
        return None
    cache = ChainCache()
    if mode == "warm cache":
        verify_report(amd.make_report(), amd.certificates(crl=crl), anchors=amd.anchors(),
                      now=amd.now, cache=cache)
        assert len(cache.products) == 1
    return cache


def check(amd: FakeAmd, chip: Chip, cache: ChainCache | None, *,
          crl: x509.CertificateRevocationList | None = None, ark: AmdCertificate | None = None,
          ask: AmdCertificate | None = None, anchors: TrustAnchors | None = None,
          now: datetime | None = None) -> VerifiedReport:
    certs = AmdCertificates(ark=ark or amd.ark, ask=ask or amd.ask, vek=chip.vek, crl=crl)
    return verify_report(chip.report, certs, anchors=anchors or amd.anchors(),
                         now=now or amd.now, cache=cache)


def refused(code: str, *args: object, **kw: object) -> None:
    with pytest.raises(VerificationError) as info:
        check(*args, **kw)  # type: ignore[arg-type]
    assert info.value.code == code, str(info.value)


def flip(cert: AmdCertificate, offset: int) -> AmdCertificate:
    """``cert`` with one byte changed at ``offset`` (negative: from the end)."""
    der = bytearray(cert.der)
    der[offset] ^= 0x01
    return AmdCertificate.from_der(bytes(der))


def in_tbs(cert: AmdCertificate, part: bytes) -> int:
    """The offset of the middle of ``part`` inside ``cert``'s DER (a byte signed by the issuer)."""
    return cert.der.index(part) + len(part) // 2


# -- the new chip is accepted, and the cache says what it reused --------------------------------
@pytest.mark.parametrize("with_crl", [False, True])
def test_new_chip_reuses_the_product_chain_and_matches_a_cold_verification(
        milan: FakeAmd, with_crl: bool) -> None:
    crl = milan.crl() if with_crl else None
    chip = second_chip(milan)
    cache = cache_for("warm cache", milan, crl)
    assert cache is not None
    warm = check(milan, chip, cache, crl=crl)
    cold = check(milan, chip, None, crl=crl)
    assert (cache.products.hits, len(cache)) == (1, 2)
    reused = [c for c in warm.checks if c.code == "sevsnp.chain.cached"]
    assert [c.field for c in reused] == ["ARK/ASK"]
    assert [c.code for c in warm.checks if c not in reused] == [c.code for c in cold.checks]
    assert all(c.passed for c in warm.checks)
    assert (warm.vek, warm.chain, warm.crl_checked) == (cold.vek, cold.chain, with_crl)
    # The chip's own chain is cached now; the product chain was not verified again.
    check(milan, chip, cache, crl=crl)
    assert (cache.hits, cache.products.hits, cache.products.misses) == (1, 1, 1)


def test_product_chain_is_per_kind_and_cleared_with_the_cache(milan: FakeAmd) -> None:
    cache = ChainCache()
    verify_report(milan.make_report(), milan.certificates(), anchors=milan.anchors(),
                  now=milan.now, cache=cache)
    vlek_report = milan.sign_report(milan.make_report(
        signer_info=SignerInfo(signing_key=SigningKey.VLEK), sign=False), key=milan.keys.vlek)
    v = verify_report(vlek_report, milan.certificates(kind=SigningKey.VLEK),
                      anchors=milan.anchors(), now=milan.now, cache=cache)
    assert v.vek.kind is SigningKey.VLEK
    assert (len(cache.products), cache.products.hits) == (2, 0)
    cache.clear()
    assert (len(cache), len(cache.products)) == (0, 0)


# -- tampering: one byte of any certificate ----------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_tampered_vek_is_refused(milan: FakeAmd, mode: str) -> None:
    chip = second_chip(milan)
    for offset in (-1, in_tbs(chip.vek, bytes([0x11]) * 64)):  # signature, hwID
        bad = dataclasses.replace(chip, vek=flip(chip.vek, offset))
        refused("sevsnp.chain.vek_signature", milan, bad, cache_for(mode, milan))


@pytest.mark.parametrize("mode", MODES)
def test_tampered_ask_is_refused(milan: FakeAmd, mode: str) -> None:
    chip = second_chip(milan)
    middle = milan.ask.public_key_der[len(milan.ask.public_key_der) // 2:][:16]
    for offset in (-1, in_tbs(milan.ask, middle)):  # signature, public key
        with pytest.raises(VerificationError) as info:
            check(milan, chip, cache_for(mode, milan), ask=flip(milan.ask, offset))
        # A changed ASK key no longer verifies the VEK either; the ASK's own link fails first.
        assert info.value.code == "sevsnp.chain.ask_signature", str(info.value)


@pytest.mark.parametrize("mode", MODES)
def test_tampered_ark_is_refused(milan: FakeAmd, mode: str) -> None:
    chip = second_chip(milan)
    refused("sevsnp.chain.ark_untrusted", milan, chip, cache_for(mode, milan),
            ark=flip(milan.ark, -1))
    # ...even when the tampered ARK is the one the anchors pin: its self-signature fails.
    bad = flip(milan.ark, -1)
    refused("sevsnp.chain.ark_signature", milan, chip, cache_for(mode, milan), ark=bad,
            anchors=TrustAnchors.from_certificates(bad, product=Product.MILAN))


@pytest.mark.parametrize("mode", MODES)
def test_tampered_report_is_refused(milan: FakeAmd, mode: str) -> None:
    chip = second_chip(milan)
    forged = dataclasses.replace(chip, report=dataclasses.replace(chip.report, guest_svn=1))
    refused("sevsnp.report.signature", milan, forged, cache_for(mode, milan))


# -- a VEK not issued by this ASK, another ARK ---------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_vek_signed_by_another_ask_key_is_refused(milan: FakeAmd, other_keys: FakeAmdKeys,
                                                  mode: str) -> None:
    chip = second_chip(milan, signer=other_keys)  # names milan's ASK as issuer, but is not
    refused("sevsnp.chain.vek_signature", milan, chip, cache_for(mode, milan))


@pytest.mark.parametrize("mode", MODES)
def test_wrong_ark_is_refused(milan: FakeAmd, other_keys: FakeAmdKeys, mode: str) -> None:
    other = FakeAmd(Product.MILAN, keys=other_keys)  # another AMD's Milan ARK
    chip = second_chip(milan)
    cache = cache_for(mode, milan)
    refused("sevsnp.chain.ark_untrusted", milan, chip, cache, ark=other.ark)
    refused("sevsnp.chain.ark_untrusted", milan, chip, cache, anchors=TrustAnchors.amd())
    # Trusting the other ARK does not make milan's ASK its child.
    refused("sevsnp.chain.ask_signature", milan, chip, cache, ark=other.ark,
            anchors=other.anchors())


# -- expiry -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_expired_vek_is_refused(milan: FakeAmd, mode: str) -> None:
    chip = second_chip(milan, validity=(milan.now - timedelta(days=10),
                                        milan.now + timedelta(days=1)))
    cache = cache_for(mode, milan)
    check(milan, chip, cache)
    refused("sevsnp.chain.expired", milan, chip, cache, now=milan.now + timedelta(days=2))


@pytest.mark.parametrize("mode", MODES)
def test_expired_ask_is_refused(amd_keys: FakeAmdKeys, mode: str) -> None:
    amd = FakeAmd(Product.MILAN, keys=amd_keys, ask_validity=(
        DEFAULT_NOW - timedelta(days=10), DEFAULT_NOW + timedelta(days=1)))
    chip = second_chip(amd)
    cache = cache_for(mode, amd)
    check(amd, chip, cache)
    later = amd.now + timedelta(days=2)
    refused("sevsnp.chain.expired", amd, chip, cache, now=later)
    if cache is not None:
        assert cache.products.get((amd.ark.der, amd.ask.der, amd.anchors(), amd.kind, None),
                                  later) is None


# -- revocation -------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_revoked_vek_is_refused(milan: FakeAmd, mode: str) -> None:
    crl = milan.crl(revoked=[5])  # lists the new chip's VCEK, not milan's own (serial 0)
    chip = second_chip(milan, serial=5)
    refused("sevsnp.chain.revoked", milan, chip, cache_for(mode, milan, crl), crl=crl)


@pytest.mark.parametrize("mode", MODES)
def test_revoked_ask_is_refused_for_a_new_chip(milan: FakeAmd, mode: str) -> None:
    chip = second_chip(milan)
    cache = cache_for(mode, milan, milan.crl())  # warm under a CRL that does not list it
    refused("sevsnp.chain.revoked", milan, chip, cache, crl=milan.crl(revoked=[milan.ask]))


@pytest.mark.parametrize("mode", MODES)
def test_crl_of_another_issuer_or_key_is_refused(milan: FakeAmd, other_keys: FakeAmdKeys,
                                                 amd_keys: FakeAmdKeys, mode: str) -> None:
    chip = second_chip(milan)
    cache = cache_for(mode, milan, milan.crl())
    refused("sevsnp.crl.signature", milan, chip, cache, crl=milan.crl(signer=other_keys.ark))
    genoa = FakeAmd(Product.GENOA, keys=amd_keys)  # the ARK's key, another issuer name
    named = make_crl(amd_keys.ark, genoa.ark, [], milan.now - timedelta(days=1),
                     milan.now + timedelta(days=7))
    refused("sevsnp.crl.signature", milan, chip, cache, crl=named)


@pytest.mark.parametrize("mode", MODES)
def test_stale_crl_is_refused_for_a_new_chip(milan: FakeAmd, mode: str) -> None:
    crl = milan.crl()
    chip = second_chip(milan)
    cache = cache_for(mode, milan, crl)
    assert crl.next_update_utc is not None
    refused("sevsnp.crl.stale", milan, chip, cache, crl=crl,
            now=crl.next_update_utc + timedelta(seconds=1))
