"""The AMD certificate reader (veritee.crypto.amd_certs): strict DER; bad bytes -> FormatError."""

from __future__ import annotations

import ast
import contextlib
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.crypto.amd_certs import (
    AmdCertificate,
    decode_hwid,
    load_certificates,
    signature_algorithm,
)
from veritee.errors import FormatError
from veritee.testing.amd import FakeAmd

SRC = Path(__file__).resolve().parents[2] / "src" / "veritee"


def test_fake_vcek_has_amd_serial_zero_and_loads_without_warnings(milan: FakeAmd) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cert = AmdCertificate.from_der(milan.vek.der)
    assert cert.serial_number == 0 and cert == milan.vek and hash(cert) == hash(milan.vek)


def test_fields_agree_with_cryptography_for_a_positive_serial(milan: FakeAmd) -> None:
    ours = milan.ask
    theirs = x509.load_der_x509_certificate(ours.der)
    assert ours.serial_number == theirs.serial_number
    assert ours.subject == theirs.subject and ours.issuer == theirs.issuer
    assert ours.not_valid_before_utc == theirs.not_valid_before_utc.replace(microsecond=0)
    assert ours.not_valid_after_utc == theirs.not_valid_after_utc
    assert ours.tbs_certificate_bytes == theirs.tbs_certificate_bytes
    assert ours.signature == theirs.signature
    assert ours.signature_algorithm_oid == theirs.signature_algorithm_oid
    assert ours.public_key() == theirs.public_key()
    assert ours.to_x509() == theirs


def test_pem_round_trip(milan: FakeAmd) -> None:
    pem = milan.ask.public_bytes(serialization.Encoding.PEM) + milan.ark.public_bytes(
        serialization.Encoding.PEM)
    assert load_certificates(pem) == [milan.ask, milan.ark]
    assert load_certificates(milan.vek.public_bytes(serialization.Encoding.DER)) == [milan.vek]


def test_trailing_bytes_rejected(milan: FakeAmd) -> None:
    with pytest.raises(FormatError, match="trailing"):
        AmdCertificate.from_der(milan.vek.der + b"\0")


def test_truncation_rejected(milan: FakeAmd) -> None:
    for n in (0, 1, 4, 100, len(milan.vek.der) - 1):
        with pytest.raises(FormatError):
            AmdCertificate.from_der(milan.vek.der[:n])


def test_inner_and_outer_signature_algorithms_must_match(milan: FakeAmd) -> None:
    der = bytearray(milan.vek.der)
    # Change the salt length (0x30 = 48) inside the tbsCertificate's copy only.
    tbs_start = der.index(milan.vek.tbs_certificate_bytes)
    at = der.index(b"\xa2\x03\x02\x01\x30", tbs_start)
    assert at < tbs_start + len(milan.vek.tbs_certificate_bytes)
    der[at + 4] = 0x20
    with pytest.raises(FormatError, match="signature"):
        AmdCertificate.from_der(bytes(der))


def test_pem_without_certificates_rejected() -> None:
    with pytest.raises(FormatError, match="no CERTIFICATE"):
        load_certificates(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


def test_signature_algorithm_of_a_crl(milan: FakeAmd) -> None:
    oid, pss = signature_algorithm(milan.crl().public_bytes(serialization.Encoding.DER))
    assert oid == "1.2.840.113549.1.1.10" and pss is not None and pss.is_amd


def test_hwid_decoding_forms() -> None:
    raw = bytes(range(64))
    assert decode_hwid(raw, 64) == raw
    assert decode_hwid(b"\x04\x40" + raw, 64) == raw
    assert decode_hwid(b"\x04\x40" + raw[:62], 64) == b"\x04\x40" + raw[:62]  # raw wins at 64
    with pytest.raises(FormatError):
        decode_hwid(raw[:10], 64)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_certificates_only_raise_format_error(milan: FakeAmd, data: st.DataObject) -> None:
    der = bytearray(milan.vek.der)
    for _ in range(data.draw(st.integers(1, 4))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    try:
        cert = AmdCertificate.from_der(bytes(der))
        cert.public_key()
    except FormatError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_format_error(blob: bytes) -> None:
    with contextlib.suppress(FormatError):
        load_certificates(blob)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_dependency_edges() -> None:
    """trust never imports collateral; nothing outside testing/ imports testing/."""
    for path in SRC.rglob("*.py"):
        mods = _imports(path)
        rel = path.relative_to(SRC).as_posix()
        if not rel.startswith("testing/"):
            assert not any(m.startswith("veritee.testing") for m in mods), rel
        if rel.startswith(("trust/", "crypto/")):
            assert not any(m.startswith("veritee.collateral") for m in mods), rel
