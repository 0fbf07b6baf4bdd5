"""Intel DCAP collateral and quotes from files (no network I/O here).

Forms read:

* dcap-qvl ``QuoteCollateralV3`` JSON: ``pck_crl_issuer_chain`` / ``tcb_info_issuer_chain`` /
  ``qe_identity_issuer_chain`` (PEM), ``pck_crl`` and ``root_ca_crl`` (hex of DER),
  ``tcb_info`` / ``qe_identity`` (the exact signed JSON text) and ``tcb_info_signature`` /
  ``qe_identity_signature`` (hex ``r||s``);
* Intel PCS response bodies ``{"tcbInfo": {...}, "signature": "..."}`` and
  ``{"enclaveIdentity": {...}, "signature": "..."}`` (the signed bytes are cut out exactly,
  see :func:`veritee.formats.intel.signed_json_member`), with their issuer chain given as
  PEM/DER certificate files (the ``TCB-Info-Issuer-Chain`` header, or just the TCB Signing
  certificate);
* CRLs as DER, PEM or hex-of-DER text; certificates as PEM or (concatenated) DER;
* quotes as binary, hex text (optional ``0x``), base64 text, or JSON carrying a base64
  ``quote`` (GCE ``{"tdx": {"quote": ...}}``).

:func:`load_directory` sniffs every file's content (names vary between projects);
:func:`load_files` takes explicit paths.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from veritee.errors import ConfigError, FormatError
from veritee.formats.intel import EnclaveIdentity, signed_json_member
from veritee.trust.intel import IntelCollateral, load_certificates

__all__ = [
    "load_collateral_json",
    "load_crl",
    "load_directory",
    "load_files",
    "read_quote",
]

_HEX = frozenset(b"0123456789abcdefABCDEF")
_B64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")

PathLike = str | Path


def read_quote(path: PathLike) -> bytes:
    """The quote bytes of a file in any of the forms in the module docstring."""
    data = Path(path).read_bytes()
    text = data.strip()
    if text[:1] == b"{":
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: not JSON: {exc}") from exc
        b64 = _find_quote(obj)
        if b64 is None:
            raise ConfigError(f"{path}: no base64 'quote' member")
        return base64.b64decode(b64, validate=True)
    if text[:2] in (b"0x", b"0X"):
        text = text[2:]
    if text and set(text) <= _HEX and len(text) % 2 == 0:
        return bytes.fromhex(text.decode())
    if text and set(text.replace(b"\n", b"")) <= _B64 and text[:1] in b"AB":
        try:
            return base64.b64decode(text.replace(b"\n", b""), validate=True)
        except binascii.Error:
            pass
    return data


def _find_quote(obj: Any) -> str | None:
    if isinstance(obj, dict):
        if isinstance(obj.get("quote"), str):
            return str(obj["quote"])
        for v in obj.values():
            found = _find_quote(v)
            if found is not None:
                return found
    return None


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL from DER, PEM or hex-of-DER text."""
    raw = bytes(data).strip()
    try:
        if raw.startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(raw)
        if raw and set(raw) <= _HEX:
            raw = bytes.fromhex(raw.decode())
        return x509.load_der_x509_crl(raw)
    except ValueError as exc:
        raise ConfigError(f"not a CRL: {exc}") from exc


def _certs(paths: PathLike | Sequence[PathLike] | None) -> tuple[x509.Certificate, ...]:
    if paths is None:
        return ()
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[x509.Certificate] = []
    for p in items:
        try:
            out += load_certificates(Path(p).read_bytes())
        except FormatError as exc:
            raise ConfigError(f"{p}: {exc}") from exc
    return tuple(out)


def load_collateral_json(data: bytes | str, *,
                         pck_chain: tuple[x509.Certificate, ...] = ()) -> IntelCollateral:
    """Parse dcap-qvl's ``QuoteCollateralV3`` JSON."""
    try:
        obj = json.loads(data)
    except ValueError as exc:
        raise ConfigError(f"collateral JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ConfigError("collateral JSON must be an object")

    def text(key: str) -> str | None:
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"collateral JSON: {key} must be a string")
        return value

    def sig(key: str) -> bytes | None:
        value = text(key)
        try:
            return bytes.fromhex(value) if value is not None else None
        except ValueError as exc:
            raise ConfigError(f"collateral JSON: {key} is not hex") from exc

    def chain(key: str) -> tuple[x509.Certificate, ...]:
        value = text(key)
        return load_certificates(value.encode()) if value else ()

    tcb, qe = text("tcb_info"), text("qe_identity")
    pck_crl, root_crl = text("pck_crl"), text("root_ca_crl")
    return IntelCollateral(
        tcb_info=tcb.encode() if tcb is not None else None,
        tcb_info_signature=sig("tcb_info_signature"),
        tcb_info_issuer_chain=chain("tcb_info_issuer_chain"),
        qe_identity=qe.encode() if qe is not None else None,
        qe_identity_signature=sig("qe_identity_signature"),
        qe_identity_issuer_chain=chain("qe_identity_issuer_chain"),
        pck_crl=load_crl(pck_crl.encode()) if pck_crl else None,
        root_ca_crl=load_crl(root_crl.encode()) if root_crl else None,
        pck_chain=pck_chain)


def load_files(*, collateral_json: PathLike | None = None, tcb_info: PathLike | None = None,
               qe_identity: PathLike | None = None,
               tcb_info_issuer_chain: PathLike | Sequence[PathLike] | None = None,
               qe_identity_issuer_chain: PathLike | Sequence[PathLike] | None = None,
               pck_crl: PathLike | None = None, root_ca_crl: PathLike | None = None,
               pck_chain: PathLike | Sequence[PathLike] | None = None) -> IntelCollateral:
    """Build :class:`IntelCollateral` from explicit files.

    ``tcb_info`` / ``qe_identity`` are PCS response bodies; when ``qe_identity_issuer_chain``
    is not given the TCB Info issuer chain is used (Intel signs both with the TCB Signing key).
    Explicit files override members of ``collateral_json``.
    """
    base = (load_collateral_json(Path(collateral_json).read_bytes())
            if collateral_json is not None else IntelCollateral())
    tcb_raw, tcb_sig = base.tcb_info, base.tcb_info_signature
    qe_raw, qe_sig = base.qe_identity, base.qe_identity_signature
    try:
        if tcb_info is not None:
            tcb_raw, tcb_sig = signed_json_member(Path(tcb_info).read_bytes(), "tcbInfo")
        if qe_identity is not None:
            qe_raw, qe_sig = signed_json_member(Path(qe_identity).read_bytes(),
                                                "enclaveIdentity")
    except FormatError as exc:
        raise ConfigError(str(exc)) from exc
    tcb_chain = _certs(tcb_info_issuer_chain) or base.tcb_info_issuer_chain
    qe_chain = _certs(qe_identity_issuer_chain) or base.qe_identity_issuer_chain or tcb_chain
    return IntelCollateral(
        tcb_info=tcb_raw, tcb_info_signature=tcb_sig, tcb_info_issuer_chain=tcb_chain,
        qe_identity=qe_raw, qe_identity_signature=qe_sig, qe_identity_issuer_chain=qe_chain,
        pck_crl=load_crl(Path(pck_crl).read_bytes()) if pck_crl else base.pck_crl,
        root_ca_crl=(load_crl(Path(root_ca_crl).read_bytes()) if root_ca_crl
                     else base.root_ca_crl),
        pck_chain=_certs(pck_chain) or base.pck_chain)


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def load_directory(directory: PathLike) -> IntelCollateral:
    """Sniff every file in ``directory`` and assemble the collateral.

    JSON: dcap-qvl collateral (has ``tcb_info``), PCS TCB Info (``tcbInfo``) or PCS QE
    identity (``enclaveIdentity`` with id ``QE``/``TD_QE``; QVE identities are ignored).
    Certificates: "Intel SGX TCB Signing" go to both issuer chains; when a "PCK Certificate"
    is among the others, all the others (deduplicated) form ``pck_chain``. CRLs: issued by
    the root -> root CA CRL, else the PCK CRL.
    Two files of one kind raise :class:`ConfigError` (pass them with :func:`load_files`).
    """
    found: dict[str, Any] = {}
    tcb_certs: list[x509.Certificate] = []
    pck_certs: list[x509.Certificate] = []

    def put(kind: str, value: Any, path: Path) -> None:
        if kind in found:
            raise ConfigError(f"{directory}: two {kind} files ({path.name}); use load_files")
        found[kind] = value

    for path in sorted(Path(directory).iterdir()):
        if not path.is_file():
            continue
        data = path.read_bytes()
        head = data.lstrip()[:64]
        if head.startswith(b"{"):
            try:
                obj = json.loads(data)
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            if "tcb_info" in obj or "pck_crl" in obj:
                put("collateral_json", data, path)
            elif "tcbInfo" in obj:
                put("tcb_info", path, path)
            elif "enclaveIdentity" in obj:
                try:
                    ident = EnclaveIdentity.from_json(signed_json_member(
                        data, "enclaveIdentity")[0])
                except FormatError:
                    continue
                if ident.id in ("QE", "TD_QE"):
                    put("qe_identity", path, path)
            continue
        if b"BEGIN X509 CRL" in head:
            crl = load_crl(data)
        elif b"BEGIN CERTIFICATE" in head or head.startswith(b"0\x82"):
            try:
                certs = load_certificates(data)
            except FormatError:
                try:
                    crl = load_crl(data)
                except ConfigError:
                    continue
            else:
                for c in certs:
                    (tcb_certs if "TCB Signing" in _cn(c.subject) else pck_certs).append(c)
                continue
        else:
            continue
        kind = "root_ca_crl" if _cn(crl.issuer) == "Intel SGX Root CA" else "pck_crl"
        put(kind, crl, path)
    base = (load_collateral_json(found["collateral_json"]) if "collateral_json" in found
            else IntelCollateral())
    tcb_raw, tcb_sig = base.tcb_info, base.tcb_info_signature
    qe_raw, qe_sig = base.qe_identity, base.qe_identity_signature
    try:
        if "tcb_info" in found:
            tcb_raw, tcb_sig = signed_json_member(found["tcb_info"].read_bytes(), "tcbInfo")
        if "qe_identity" in found:
            qe_raw, qe_sig = signed_json_member(found["qe_identity"].read_bytes(),
                                                "enclaveIdentity")
    except FormatError as exc:
        raise ConfigError(str(exc)) from exc
    unique_tcb = tuple({c.fingerprint(hashes.SHA256()): c for c in tcb_certs}.values())
    return IntelCollateral(
        tcb_info=tcb_raw, tcb_info_signature=tcb_sig,
        tcb_info_issuer_chain=unique_tcb or base.tcb_info_issuer_chain,
        qe_identity=qe_raw, qe_identity_signature=qe_sig,
        qe_identity_issuer_chain=unique_tcb or base.qe_identity_issuer_chain,
        pck_crl=found.get("pck_crl", base.pck_crl),
        root_ca_crl=found.get("root_ca_crl", base.root_ca_crl),
        pck_chain=_pck_chain(pck_certs) or base.pck_chain)


def _pck_chain(pool: list[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """The PCK chain from the certificates found (deduplicated), or ``()`` without a PCK leaf."""
    unique = {c.fingerprint(hashes.SHA256()): c for c in pool}
    if not any("PCK Certificate" in _cn(c.subject) for c in unique.values()):
        return ()
    return tuple(unique.values())
