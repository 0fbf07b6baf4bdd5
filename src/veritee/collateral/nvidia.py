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

from veritee._decode import read_bounded
from veritee.crypto._x509 import load_certificate_chain
from veritee.errors import ConfigError
from veritee.formats.nvidia import GpuReport, NvatEvidence, parse_nvat_evidence
from veritee.trust.nvidia import parse_cert_chain

__all__ = ["load_cert_chain", "load_nvat_evidence", "load_report", "load_root"]

_MAX_FILE = 4 * 1024 * 1024
_HEX = frozenset(b"0123456789abcdefABCDEFxX \t\r\n")


def _read(path: str | Path) -> bytes:
    # Stat'ed and bounded before reading (veritee._decode.read_bounded).
    try:
        return read_bounded(path, limit=_MAX_FILE, what="NVIDIA evidence")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


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
    return load_certificate_chain(data, structure="NvidiaRoot", field="<certificate>",
                                  max_certs=1)[0]
