"""trust/_common: the one validity, CRL, raw-ECDSA and pin check, and the one naive-time error.

Every trust entry point that takes ``now`` refuses a naive datetime with the same typed error,
before it reads any other argument (today's inputs are deliberately junk: the time check must
come first).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from veritee.errors import ConfigError, VerificationError
from veritee.findings import Outcome, check, failed, passed, skipped
from veritee.trust import intel, nitro, nvidia, sevsnp, tpm, tpm_ek
from veritee.trust._common import (
    Pins,
    WindowCache,
    check_crl,
    check_validity,
    check_window,
    require_aware,
    verify_raw_ecdsa,
)
from veritee.trust.roots import fingerprint

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NAIVE = datetime(2026, 1, 1)

ENTRY_POINTS: dict[str, Callable[[datetime], object]] = {
    "intel.verify_quote": lambda now: intel.verify_quote(b"junk", now=now),
    "sevsnp.verify_report": lambda now: sevsnp.verify_report(
        None, None, anchors=None, now=now),  # type: ignore[arg-type]
    "sevsnp.verify_chain": lambda now: sevsnp.verify_chain(
        None, anchors=None, now=now, kind=None),  # type: ignore[arg-type]
    "nitro.verify_document": lambda now: nitro.verify_document(b"junk", now=now),
    "nvidia.verify_gpu_report": lambda now: nvidia.verify_gpu_report(b"junk", b"", now=now),
    "tpm_ek.verify_ek_chain": lambda now: tpm_ek.verify_ek_chain(b"junk", roots=[], now=now),
    "tpm_ek.verify_tpm_cert_chain": lambda now: tpm_ek.verify_tpm_cert_chain(
        b"junk", roots=[], now=now),
    "tpm.verify_ak_certificate": lambda now: tpm.verify_ak_certificate(
        None, b"junk", roots=[], now=now),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_naive_now_is_one_typed_error_at_every_entry_point(name: str) -> None:
    with pytest.raises(ConfigError, match=r"^now: naive datetime"):
        ENTRY_POINTS[name](NAIVE)


def test_require_aware_accepts_any_timezone_and_refuses_non_datetimes() -> None:
    other = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=5)))
    assert require_aware(other) is other
    with pytest.raises(ConfigError, match="want a timezone-aware datetime"):
        require_aware("2026-01-01")  # type: ignore[arg-type]


# -- validity ------------------------------------------------------------------------------
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(key: ec.EllipticCurvePrivateKey, name: str = "root", *,
          issuer: tuple[ec.EllipticCurvePrivateKey, str] | None = None,
          lo: datetime = NOW - timedelta(days=1), hi: datetime = NOW + timedelta(days=1),
          serial: int = 1) -> x509.Certificate:
    ikey, iname = issuer or (key, name)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, iname)]))
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(lo).not_valid_after(hi).sign(ikey, hashes.SHA256()))


def test_validity_codes_say_which_end_failed() -> None:
    cert = _cert(_key())
    check_validity(cert, NOW, code="x.chain", what="root")
    check_validity(cert, cert.not_valid_after_utc, code="x.chain", what="root")  # inclusive
    with pytest.raises(VerificationError) as exc:
        check_validity(cert, NOW + timedelta(days=2), code="x.chain", what="root")
    assert exc.value.code == "x.chain.expired"
    with pytest.raises(VerificationError) as exc:
        check_validity(cert, NOW - timedelta(days=2), code="x.chain", what="root")
    assert exc.value.code == "x.chain.not_yet_valid"
    with pytest.raises(VerificationError) as exc:
        check_window(NOW, NOW, NOW + timedelta(seconds=1), code="x.tcb_info", what="TCB Info")
    assert exc.value.code == "x.tcb_info.expired"


# -- CRL -----------------------------------------------------------------------------------
def _crl(key: ec.EllipticCurvePrivateKey, issuer: str = "root", *, revoked: tuple[int, ...] = (),
         lo: datetime = NOW - timedelta(hours=1), hi: datetime | None = NOW + timedelta(days=1)
         ) -> x509.CertificateRevocationList:
    b = (x509.CertificateRevocationListBuilder()
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
         .last_update(lo).next_update(hi or lo + timedelta(days=1)))
    for serial in revoked:
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                      .revocation_date(lo).build())
    return b.sign(key, hashes.SHA256())


def _crl_code(crl: x509.CertificateRevocationList, issuer: x509.Certificate,
              subjects: Any = (), now: datetime = NOW) -> str:
    with pytest.raises(VerificationError) as exc:
        check_crl(crl, issuer, now, scheme="x", what="root", subjects=subjects)
    return exc.value.code


def test_crl_signed_current_and_not_listing_passes_with_its_window() -> None:
    key = _key()
    root = _cert(key)
    leaf = _cert(_key(), "leaf", issuer=(key, "root"), serial=7)
    crl = _crl(key, revoked=(8,))
    assert check_crl(crl, root, NOW, scheme="x", what="root", subjects=[(leaf, "leaf")]) == (
        crl.last_update_utc, crl.next_update_utc)


def test_crl_attacks_are_refused() -> None:
    key = _key()
    root = _cert(key)
    leaf = _cert(_key(), "leaf", issuer=(key, "root"), serial=7)
    assert _crl_code(_crl(_key()), root) == "x.crl.signature"  # another key signed it
    assert _crl_code(_crl(key, "other"), root) == "x.crl.signature"  # another issuer's CRL
    assert _crl_code(_crl(key, hi=NOW - timedelta(minutes=1)), root) == "x.crl.stale"
    assert _crl_code(_crl(key, lo=NOW + timedelta(minutes=1)), root) == "x.crl.stale"
    assert _crl_code(_crl(key, revoked=(7,)), root, [(leaf, "leaf")]) == "x.chain.revoked"
    with pytest.raises(VerificationError) as exc:
        check_crl(_crl(key), root, NOW, scheme="x", what="root", verify_signature=lambda: False)
    assert exc.value.code == "x.crl.signature"


# -- raw r || s ECDSA ----------------------------------------------------------------------
@pytest.mark.parametrize(("curve", "hash_", "half"), [
    (ec.SECP256R1(), hashes.SHA256(), 32), (ec.SECP384R1(), hashes.SHA384(), 48)])
def test_raw_ecdsa(curve: ec.EllipticCurve, hash_: hashes.HashAlgorithm, half: int) -> None:
    key = ec.generate_private_key(curve)
    r, s = decode_dss_signature(key.sign(b"data", ec.ECDSA(hash_)))
    raw = r.to_bytes(half, "big") + s.to_bytes(half, "big")
    pub = key.public_key()
    assert verify_raw_ecdsa(pub, raw, b"data")
    assert not verify_raw_ecdsa(pub, raw, b"date")  # other data
    assert not verify_raw_ecdsa(pub, raw[:-1], b"data")  # short
    assert not verify_raw_ecdsa(pub, raw + b"\x00", b"data")  # long
    assert not verify_raw_ecdsa(ec.generate_private_key(curve).public_key(), raw, b"data")
    assert not verify_raw_ecdsa(ed25519.Ed25519PrivateKey.generate().public_key(), raw,
                                b"data")


def test_raw_ecdsa_refuses_other_curves() -> None:
    key = ec.generate_private_key(ec.SECP521R1())
    r, s = decode_dss_signature(key.sign(b"data", ec.ECDSA(hashes.SHA512())))
    assert not verify_raw_ecdsa(key.public_key(), r.to_bytes(66, "big") + s.to_bytes(66, "big"),
                                b"data")


# -- pins ----------------------------------------------------------------------------------
def test_pins_replace_the_default_and_match_certificates_or_hex() -> None:
    a, b = _cert(_key(), "a"), _cert(_key(), "b")
    default = Pins.of(None, fingerprint(a).upper())
    assert a in default and b not in default and fingerprint(a) in default
    given = Pins.of([b, fingerprint(a).upper()], "ff" * 32)
    assert a in given and b in given and given.certificates == (b,)
    assert "ff" * 32 not in given
    assert a not in Pins.of([], fingerprint(a))  # an empty list trusts nothing
    assert object() not in given


# -- window cache and finding helpers -----------------------------------------------------
class _Entry:
    def __init__(self, lo: datetime, hi: datetime) -> None:
        self.not_before, self.not_after = lo, hi


def test_window_cache_serves_only_inside_the_window_and_is_bounded() -> None:
    cache: WindowCache[_Entry] = WindowCache(max_entries=2)
    e = _Entry(NOW, NOW + timedelta(hours=1))
    cache.put("a", e)
    assert cache.get("a", NOW) is e and cache.get("a", NOW + timedelta(hours=1)) is e
    assert cache.get("a", NOW - timedelta(seconds=1)) is None
    assert cache.get("a", NOW + timedelta(hours=2)) is None
    assert cache.get("b", NOW) is None
    cache.put("b", e)
    cache.put("c", e)
    assert len(cache) == 2 and cache.get("a", NOW) is None  # least recently used dropped
    assert (cache.hits, cache.misses) == (2, 4)


def test_finding_helpers() -> None:
    assert passed("x.y", "f", 1).outcome is Outcome.PASS
    assert failed("x.y", "f", 1, 2, "why").outcome is Outcome.FAIL
    s = skipped("x.y", "f", "no value", got=3)
    assert s.outcome is Outcome.SKIP and s.message == "not checked: no value" and s.got == 3
    assert check("x.y", "f", 1, 2, False, "why").message == "why"
    assert check("x.y", "f", 1, 1, True, "why").message == ""
