"""The one X.509 loader (veritee.crypto._x509): lazily parsed fields fail at the edge, typed."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from veritee.crypto._x509 import MAX_CHAIN, issued_by, load_certificate, load_certificate_chain
from veritee.errors import FormatError, VerificationError

T0 = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _cert(cn: str = "edge") -> tuple[bytes, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7).not_valid_before(T0)
            .not_valid_after(T0 + dt.timedelta(days=365)).sign(key, hashes.SHA256()))
    return cert.public_bytes(Encoding.DER), cert


def test_version_flipped_to_v4_is_a_format_error_not_invalid_version() -> None:
    der, _ = _cert()
    bad = bytearray(der)
    bad[der.find(b"\xa0\x03\x02\x01\x02") + 4] = 0x03
    with pytest.raises(x509.InvalidVersion):  # not a ValueError: `except ValueError` misses it
        x509.load_der_x509_certificate(bytes(bad))
    with pytest.raises(FormatError, match=r"PCK\.certificate"):
        load_certificate(bytes(bad), structure="PCK")


def test_unknown_key_algorithm_is_a_verification_error() -> None:
    der, _ = _cert()
    bad = bytearray(der)
    bad[der.find(bytes.fromhex("2a8648ce3d0201")) + 6] = 0x02
    with pytest.raises(VerificationError, match=r"x509\.unsupported_algorithm"):
        load_certificate(bytes(bad), structure="PCK")


def test_chain_longer_than_the_cap_is_refused_before_parsing() -> None:
    der, _ = _cert()
    with pytest.raises(FormatError, match=f"> {MAX_CHAIN} certificates"):
        load_certificate_chain(der * (MAX_CHAIN + 1), structure="chain")
    assert len(load_certificate_chain(der * 2 + b"\x00" * 5, structure="chain")) == 2


def test_pem_with_a_base64_error_names_the_certificate() -> None:
    _, cert = _cert()
    pem = cert.public_bytes(Encoding.PEM).replace(b"M", b"*", 1)
    with pytest.raises(FormatError, match=r"certificates\[0\]\.PEM"):
        load_certificate_chain(pem, structure="chain")


def test_issued_by_is_false_for_a_stranger_and_never_raises() -> None:
    _, a = _cert("a")
    _, b = _cert("b")
    assert issued_by(a, a)
    assert not issued_by(a, b)


@pytest.mark.parametrize("last", [0x00, 0x20, 0x0A, 0x09])
def test_der_whose_last_byte_is_nul_or_whitespace_is_not_truncated(last: int) -> None:
    # A DER certificate ends with its signature: about one in thirty ends in a byte that
    # trimming NULs/whitespace used to cut off ("length 594, 593 bytes left"), seen as a
    # flaky EK certificate from swtpm and a flaky test.
    from veritee.crypto._x509 import load_crl

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge")])
    for serial in range(1, 5000):
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(serial).not_valid_before(T0)
                .not_valid_after(T0 + dt.timedelta(days=365)).sign(key, hashes.SHA256()))
        der = cert.public_bytes(Encoding.DER)
        if der[-1] == last:
            break
    else:  # pragma: no cover - 5000 tries without the byte: astronomically unlikely
        pytest.fail("no certificate ending in the byte")
    assert load_certificate_chain(der, structure="T") == (cert,)
    assert load_certificate_chain(der + der, structure="T") == (cert, cert)
    assert load_certificate_chain(der + b"\0" * 16, structure="T") == (cert,)
    assert load_certificate_chain(b"\n" + der + b"\n", structure="T") == (cert,)
    for serial in range(1, 5000):
        crl = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(T0)
               .next_update(T0 + dt.timedelta(days=1)).add_revoked_certificate(
                   x509.RevokedCertificateBuilder().serial_number(serial)
                   .revocation_date(T0).build()).sign(key, hashes.SHA256()))
        crl_der = crl.public_bytes(Encoding.DER)
        if crl_der[-1] == last:
            break
    assert load_crl(crl_der, structure="T") == crl
    assert load_crl(crl_der + b"\n", structure="T") == crl


def test_bytes_after_der_padding_are_still_refused() -> None:
    der, _ = _cert()
    with pytest.raises(FormatError):
        load_certificate_chain(der + b"\0\0\x30\x01", structure="T")
