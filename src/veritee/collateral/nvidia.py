"""NVIDIA attestation evidence and device certificate chains from files (no network I/O).

Forms read (content sniffed, not the file name):

* :func:`load_report` - an SPDM GET_MEASUREMENTS transcript as hex text (nvtrust / attestation
  SDK ``*AttestationReport.txt``, trustee test data) or raw binary;
* :func:`load_cert_chain` - a PEM chain, leaf first (``*CertChain.txt``);
* :func:`load_nvat_evidence` - the nvat serialised evidence JSON (``[{"arch", "nonce",
  "evidence", "certificate"}]``);
* :func:`load_root` - a root certificate (PEM or DER), e.g. for ``trusted_roots``.

Parsing errors are :class:`~veritee.errors.FormatError`; unreadable files
:class:`~veritee.errors.ConfigError`.
"""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from veritee.errors import ConfigError, FormatError
from veritee.formats.nvidia import GpuReport, NvatEvidence, parse_nvat_evidence
from veritee.trust.nvidia import parse_cert_chain

__all__ = ["load_cert_chain", "load_nvat_evidence", "load_report", "load_root"]

_MAX_FILE = 4 * 1024 * 1024
_HEX = frozenset(b"0123456789abcdefABCDEFxX \t\r\n")


def _read(path: str | Path) -> bytes:
    p = Path(path)
    try:
        if p.stat().st_size > _MAX_FILE:
            raise ConfigError(f"{p}: larger than {_MAX_FILE} bytes")
        return p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc}") from exc


def load_report(path: str | Path) -> GpuReport:
    """Read a transcript as hex text or binary."""
    data = _read(path)
    if data and all(b in _HEX for b in data):
        return GpuReport.from_hex(data)
    return GpuReport.from_bytes(data)


def load_cert_chain(path: str | Path) -> tuple[x509.Certificate, ...]:
    """Read a PEM certificate chain (leaf first)."""
    return parse_cert_chain(_read(path))


def load_nvat_evidence(path: str | Path) -> tuple[NvatEvidence, ...]:
    """Read an nvat serialised evidence JSON file."""
    return parse_nvat_evidence(_read(path))


def load_root(path: str | Path) -> x509.Certificate:
    """Read one root certificate (PEM or DER)."""
    data = _read(path)
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise FormatError("NvidiaRoot", "<certificate>", got=str(exc)[:60],
                          want="a PEM or DER X.509 certificate") from exc
