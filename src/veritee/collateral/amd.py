"""AMD collateral from files and certificate tables: ARK, ASK/ASVK, VCEK/VLEK and the CRL.

Certificates are recognised by their subject CN as AMD names them (57230): ``ARK-<product>``,
``SEV-<product>`` (ASK), ``SEV-VLEK-<product>`` (ASVK), ``SEV-VCEK`` and ``SEV-VLEK``. Files may be
PEM (one or several certificates, e.g. KDS's ``cert_chain`` or go-sev-guest's
``ask_ark_milan.pem``) or DER; a CRL is recognised by its content. No network I/O happens here;
a KDS fetcher plugs in through :class:`Fetcher`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from cryptography import x509

from veritee._decode import LIMITS, read_bounded
from veritee.crypto._x509 import load_crl as load_x509_crl
from veritee.crypto.amd_certs import AmdCertificate, load_certificates
from veritee.errors import ConfigError, FormatError
from veritee.formats.sevsnp import CertTable
from veritee.trust.sevsnp import AmdCertificates

__all__ = [
    "CERT_SUFFIXES",
    "Fetcher",
    "classify",
    "from_cert_table",
    "from_certificates",
    "load_crl",
    "load_directory",
    "load_files",
    "load_paths",
]

CERT_SUFFIXES = frozenset({".pem", ".der", ".crt", ".cer", ".crl"})
"""File name endings ``load_directory`` reads; other files (reports, JSON, ...) are ignored."""


class Fetcher(Protocol):
    """Fetches a URL's body (a KDS client; the only network I/O, kept out of verification)."""

    def get(self, url: str) -> bytes:
        """Return the body of ``url`` or raise ``CollateralError``."""
        ...


def classify(cert: AmdCertificate) -> str | None:
    """"ark", "ask", "asvk", "vcek" or "vlek" from the subject CN, or ``None`` if not AMD's."""
    cn = cert.common_name or ""
    if cn == "SEV-VCEK":
        return "vcek"
    if cn == "SEV-VLEK":
        return "vlek"
    if cn.startswith("ARK-"):
        return "ark"
    if cn.startswith("SEV-VLEK-"):
        return "asvk"
    if cn.startswith("SEV-"):
        return "ask"
    return None


def from_certificates(certs: Iterable[AmdCertificate],
                      crl: x509.CertificateRevocationList | None = None, *,
                      source: str = "certificates") -> AmdCertificates:
    """Sort certificates into an :class:`AmdCertificates` by CN.

    When both an ASK and an ASVK are present (trustee's ``milan_ask_ark_asvk.pem``), the one that
    matches the VEK's kind is kept (the ASK when there is no VEK). Two different certificates in
    one role raise :class:`ConfigError` naming ``source``.
    """
    roles: dict[str, AmdCertificate] = {}
    for cert in certs:
        role = classify(cert)
        if role is None:
            raise ConfigError(f"{source}: not an AMD SEV certificate: "
                              f"{cert.subject.rfc4514_string()}")
        if role in roles and roles[role] != cert:
            raise ConfigError(f"{source}: two different {role.upper()} certificates")
        roles[role] = cert
    if "vcek" in roles and "vlek" in roles:
        raise ConfigError(f"{source}: both a VCEK and a VLEK; pass one")
    vek = roles.get("vcek") or roles.get("vlek")
    intermediate = roles.get("asvk") if "vlek" in roles else roles.get("ask", roles.get("asvk"))
    return AmdCertificates(ark=roles.get("ark"), ask=intermediate, vek=vek, crl=crl)


def _parse_file(path: Path) -> tuple[list[AmdCertificate], x509.CertificateRevocationList | None]:
    data = _read(path)
    crl = _try_crl(data, str(path))
    if crl is not None:
        return [], crl
    return load_certificates(data, source=str(path)), None


def _read(path: Path) -> bytes:
    """A collateral file, size-checked before it is read (docs/limits.md)."""
    try:
        return read_bounded(path, limit=LIMITS["collateral"], what="collateral")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _try_crl(data: bytes, source: str = "CRL") -> x509.CertificateRevocationList | None:
    """A CRL if ``data`` is one (PEM ``X509 CRL`` or DER that parses as a CertificateList).

    Once the outer structure parses as a CRL, every field is parsed too (``crypto._x509``):
    a CRL with a malformed field is a FormatError naming ``source``, not "not a CRL"."""
    try:
        if b"-----BEGIN X509 CRL-----" in data:
            x509.load_pem_x509_crl(data)
        elif b"-----BEGIN" not in data:
            x509.load_der_x509_crl(data)
        else:
            return None
    except ValueError:
        return None
    return load_x509_crl(data, structure=source)


def load_files(*paths: str | Path) -> AmdCertificates:
    """Load certificates (PEM/DER) and at most one CRL from ``paths``."""
    certs: list[AmdCertificate] = []
    crl: x509.CertificateRevocationList | None = None
    for p in map(Path, paths):
        found, file_crl = _parse_file(p)
        certs += found
        if file_crl is not None:
            if crl is not None:
                raise ConfigError(f"{p}: a second CRL")
            crl = file_crl
    return from_certificates(certs, crl, source=", ".join(str(p) for p in paths))


def _files_in(root: Path) -> list[Path]:
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory")
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in CERT_SUFFIXES)


def load_directory(path: str | Path) -> AmdCertificates:
    """Load every ``*.pem/.der/.crt/.cer/.crl`` file in ``path`` (not recursive).

    Missing pieces stay ``None`` (verification raises ``CollateralError`` naming them); a file
    that does not parse raises :class:`FormatError` naming it.
    """
    files = _files_in(Path(path))
    return load_files(*files) if files else AmdCertificates()


def load_paths(*paths: str | Path) -> AmdCertificates:
    """Load directories (as :func:`load_directory`) and files together, so that roles are
    decided over all of them at once (an ASVK in one place and a VLEK in another pair up)."""
    files: list[Path] = []
    for p in map(Path, paths):
        files += _files_in(p) if p.is_dir() else [p]
    return load_files(*files) if files else AmdCertificates()


def load_crl(path: str | Path) -> x509.CertificateRevocationList:
    """Load a CRL (PEM or DER) from ``path``; raise :class:`FormatError` naming the file."""
    p = Path(path)
    data = _read(p)
    crl = _try_crl(data, str(p))
    if crl is None:
        raise FormatError(str(p), "CRL", got="unparsable", want="an X.509 CRL (PEM or DER)")
    return crl


def from_cert_table(table: CertTable) -> AmdCertificates:
    """Collateral from an extended report's certificate table (GHCB 56421; PEM or DER payloads).

    Entries are taken by GUID (ARK, ASK, VCEK, VLEK, CRL) and each certificate's CN must agree
    with its GUID; unknown GUIDs are ignored.
    """
    certs: list[AmdCertificate] = []
    for entry in table.entries:
        kind = entry.kind
        if kind is None or kind == "CRL":
            continue
        found = load_certificates(entry.data, source=f"CERT_TABLE[{kind}]")
        for cert in found:
            role = classify(cert)
            if role is None or (role.upper() != kind and not (kind == "ASK" and role == "asvk")):
                raise ConfigError(f"CERT_TABLE[{kind}]: certificate CN {cert.common_name!r} "
                                  f"does not match its GUID")
        certs += found
    crl_data = table.get("CRL")
    crl = None
    if crl_data is not None:
        crl = _try_crl(crl_data)
        if crl is None:
            raise FormatError("CERT_TABLE[CRL]", "CRL", got="unparsable", want="an X.509 CRL")
    return from_certificates(certs, crl, source="CERT_TABLE")
