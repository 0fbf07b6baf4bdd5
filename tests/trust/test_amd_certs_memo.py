"""The AMD reader's one-walk CRL split and its memos by exact bytes: same answers as
``cryptography``, bad bytes still refused, and the tables bounded."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from veritee.crypto import amd_certs
from veritee.crypto.amd_certs import AmdCertificate, crl_parts, signature_algorithm
from veritee.errors import FormatError
from veritee.testing.amd import FakeAmd


def test_crl_parts_agree_with_cryptography(milan: FakeAmd) -> None:
    crl = milan.crl(revoked=[5, 7])
    der = crl.public_bytes(serialization.Encoding.DER)
    parts = crl_parts(der)
    assert parts.tbs == crl.tbs_certlist_bytes and parts.signature == crl.signature
    assert parts.issuer_der == crl.issuer.public_bytes() == milan.ark.subject_der
    assert (parts.alg_oid, parts.pss) == signature_algorithm(der)
    assert crl_parts(der) is parts  # the same bytes are split once


def test_crl_parts_refuse_what_is_not_a_crl(milan: FakeAmd) -> None:
    der = milan.crl().public_bytes(serialization.Encoding.DER)
    for bad in (der[:-1], der + b"\x00", b"\x30\x03\x02\x01\x01"):
        with pytest.raises(FormatError):
            crl_parts(bad)


def test_certificate_names_keep_their_encoding(milan: FakeAmd) -> None:
    for cert in (milan.ark, milan.ask, milan.vek):
        theirs = cert.to_x509() if cert.serial_number else None
        assert cert.issuer_der == cert.issuer.public_bytes()
        assert cert.subject_der == cert.subject.public_bytes()
        if theirs is not None:
            assert cert.subject_der == theirs.subject.public_bytes()
    assert milan.vek.issuer_der == milan.ask.subject_der


def test_equal_name_bytes_decode_to_one_name_and_bad_bytes_still_fail(milan: FakeAmd) -> None:
    again = AmdCertificate.from_der(milan.vek.der)
    assert again.issuer is AmdCertificate.from_der(milan.ask.der).subject
    broken = bytearray(milan.vek.der)
    at = milan.vek.der.index(b"SEV-VCEK")
    broken[at - 1] = 0x7F  # the CN's length byte: the name no longer parses
    for _ in range(2):  # a failure is not remembered as a success
        with pytest.raises(FormatError):
            AmdCertificate.from_der(bytes(broken))


def test_memo_tables_are_bounded() -> None:
    for i in range(amd_certs._MEMO_MAX + 10):
        oid = f"1.3.6.1.4.1.99999.{i}"
        raw = x509.ObjectIdentifier(oid)
        content = _oid_content(raw.dotted_string)
        assert amd_certs._decode_oid(content, "test") == oid
    assert len(amd_certs._OIDS) <= amd_certs._MEMO_MAX


def test_extension_values_are_read_only(milan: FakeAmd) -> None:
    values = milan.vek.extension_values
    assert values[amd_certs.OID_AMD.PRODUCT_NAME] == milan.vek.extension(
        amd_certs.OID_AMD.PRODUCT_NAME).value  # type: ignore[union-attr]
    with pytest.raises(TypeError):
        values["1.2.3"] = b""  # type: ignore[index]


def _oid_content(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)
