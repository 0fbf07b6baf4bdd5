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

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from veritee._decode import (
    LIMITS,
    decode_binary_text,
    decode_hex,
    load_json,
    read_bounded,
)
from veritee.crypto._x509 import load_crl as load_x509_crl
from veritee.errors import ConfigError, FormatError
from veritee.formats.intel import EnclaveIdentity, signed_json_member
from veritee.trust.intel import IntelCollateral, load_certificates

__all__ = [
    "MAX_DIRECTORY_FILES",
    "decode_quote",
    "load_collateral_json",
    "load_crl",
    "load_directory",
    "load_files",
    "load_paths",
    "read_quote",
]

PathLike = str | Path
_T = TypeVar("_T")

MAX_DIRECTORY_FILES = 256
"""Most files :func:`load_directory` looks at (a collateral directory holds about ten)."""


def _read(path: PathLike, what: str = "collateral") -> bytes:
    """A collateral file, size-checked before it is read (``LIMITS``, docs/limits.md)."""
    try:
        return read_bounded(path, limit=LIMITS["collateral" if what == "collateral"
                                              else "evidence"], what=what)
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None


def read_quote(path: PathLike) -> bytes:
    """The quote bytes of a file in any of the forms in the module docstring."""
    return decode_quote(_read(path, "evidence"), source=str(path))


def decode_quote(data: bytes, *, source: str = "quote") -> bytes:
    """A quote from binary, hex/base64 text (whitespace, ``0x``/``0X`` allowed) or JSON whose
    ``quote`` member (at any depth) holds hex or base64; bytes that are not text are returned
    as they are (a binary quote). Raises :class:`FormatError` naming ``source``."""
    text = data.strip()
    if text[:1] == b"{":
        try:
            obj = load_json(text, structure=source, max_size=LIMITS["evidence"])
            value = _find_quote(obj)
            if value is None:
                raise FormatError(source, "quote", got="no 'quote' member",
                                  want="a JSON object with a hex or base64 'quote' string")
            return decode_binary_text(value, structure=source, field="quote")
        except FormatError as exc:  # the JSON wrapper is a file the user wrote: ConfigError
            raise ConfigError(str(exc)) from None
    if text and _TEXT.issuperset(text):
        try:
            return decode_binary_text(text, structure=source, field="quote")
        except FormatError:
            return data
    return data


_TEXT = frozenset(b"0123456789abcdefABCDEFghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ+/-_=\r\n\t ")


def _find_quote(obj: Any) -> str | None:
    # Depth is bounded by load_json (MAX_JSON_DEPTH), so the recursion is too.
    if isinstance(obj, dict):
        if isinstance(obj.get("quote"), str):
            return str(obj["quote"])
        for v in obj.values():
            found = _find_quote(v)
            if found is not None:
                return found
    return None


def load_crl(data: bytes, *, source: str = "CRL") -> x509.CertificateRevocationList:
    """A CRL from DER, PEM or hex-of-DER text, every field parsed (``crypto._x509``)."""
    # Trimmed only to recognise hex text: DER may end in a whitespace byte (crypto._x509).
    raw = bytes(data)
    try:
        text = raw.strip()
        if text and not text.startswith(b"-----BEGIN") and _HEXDIGITS.issuperset(text):
            raw = decode_hex(text, structure=source, field="crl")
        return load_x509_crl(raw, structure=source)
    except FormatError as exc:
        raise ConfigError(f"not a CRL: {exc}") from None


_HEXDIGITS = frozenset(b"0123456789abcdefABCDEF\r\n\t ")


def _certs(paths: PathLike | Sequence[PathLike] | None) -> tuple[x509.Certificate, ...]:
    if paths is None:
        return ()
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    out: list[x509.Certificate] = []
    for p in items:
        try:
            out += load_certificates(_read(p), structure=str(p))
        except FormatError as exc:
            raise ConfigError(f"{p}: {exc}") from exc
    return tuple(out)


def load_collateral_json(data: bytes | str, *,
                         pck_chain: tuple[x509.Certificate, ...] = ()) -> IntelCollateral:
    """Parse dcap-qvl's ``QuoteCollateralV3`` JSON."""
    try:
        obj = load_json(data, structure="collateral JSON", max_size=LIMITS["collateral"])
    except FormatError as exc:
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
            return (decode_hex(value, structure="collateral JSON", field=key)
                    if value is not None else None)
        except FormatError as exc:
            raise ConfigError(f"collateral JSON: {key} is not hex") from exc

    def chain(key: str) -> tuple[x509.Certificate, ...]:
        value = text(key)
        try:
            return (load_certificates(_utf8(value, key) or b"",
                                      structure=f"collateral JSON {key}") if value else ())
        except FormatError as exc:
            raise ConfigError(f"collateral JSON: {exc}") from exc

    tcb, qe = text("tcb_info"), text("qe_identity")
    pck_crl, root_crl = text("pck_crl"), text("root_ca_crl")
    return IntelCollateral(
        tcb_info=_utf8(tcb, "tcb_info"),
        tcb_info_signature=sig("tcb_info_signature"),
        tcb_info_issuer_chain=chain("tcb_info_issuer_chain"),
        qe_identity=_utf8(qe, "qe_identity"),
        qe_identity_signature=sig("qe_identity_signature"),
        qe_identity_issuer_chain=chain("qe_identity_issuer_chain"),
        pck_crl=load_crl(_utf8(pck_crl, "pck_crl") or b"", source="pck_crl") if pck_crl else None,
        root_ca_crl=(load_crl(_utf8(root_crl, "root_ca_crl") or b"", source="root_ca_crl")
                     if root_crl else None),
        pck_chain=pck_chain)


def _utf8(value: str | None, key: str) -> bytes | None:
    if value is None:
        return None
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
        raise ConfigError(f"collateral JSON: {key} is not valid Unicode text") from None


def load_files(*, collateral_json: PathLike | None = None, tcb_info: PathLike | None = None,
               qe_identity: PathLike | None = None,
               tcb_info_issuer_chain: PathLike | Sequence[PathLike] | None = None,
               qe_identity_issuer_chain: PathLike | Sequence[PathLike] | None = None,
               pck_crl: PathLike | None = None, root_ca_crl: PathLike | None = None,
               pck_chain: PathLike | Sequence[PathLike] | None = None) -> IntelCollateral:
    """Build :class:`IntelCollateral` from explicit files.

    ``tcb_info`` / ``qe_identity`` are PCS response bodies; when ``qe_identity_issuer_chain``
    is not given the TCB Info issuer chain is used (Intel signs both with the TCB Signing key).
    Explicit files override members of ``collateral_json``. A file that cannot be read or
    parsed is a :class:`ConfigError` naming it.
    """
    base = (_named(collateral_json, load_collateral_json)
            if collateral_json is not None else IntelCollateral())
    tcb_raw, tcb_sig = base.tcb_info, base.tcb_info_signature
    qe_raw, qe_sig = base.qe_identity, base.qe_identity_signature
    if tcb_info is not None:
        tcb_raw, tcb_sig = _named(tcb_info, lambda d: signed_json_member(d, "tcbInfo"))
    if qe_identity is not None:
        qe_raw, qe_sig = _named(qe_identity, lambda d: signed_json_member(d, "enclaveIdentity"))
    tcb_chain = _certs(tcb_info_issuer_chain) or base.tcb_info_issuer_chain
    qe_chain = _certs(qe_identity_issuer_chain) or base.qe_identity_issuer_chain or tcb_chain
    return IntelCollateral(
        tcb_info=tcb_raw, tcb_info_signature=tcb_sig, tcb_info_issuer_chain=tcb_chain,
        qe_identity=qe_raw, qe_identity_signature=qe_sig, qe_identity_issuer_chain=qe_chain,
        pck_crl=_named(pck_crl, lambda d: load_crl(d, source=str(pck_crl))) if pck_crl
        else base.pck_crl,
        root_ca_crl=(_named(root_ca_crl, lambda d: load_crl(d, source=str(root_ca_crl)))
                     if root_ca_crl else base.root_ca_crl),
        pck_chain=_certs(pck_chain) or base.pck_chain)


def _named(path: PathLike, parse: Callable[[bytes], _T]) -> _T:
    """``parse`` the file at ``path``; any parse error becomes a ConfigError naming it."""
    return _parse_named(path, _read(path), parse)


def _parse_named(path: PathLike, data: bytes, parse: Callable[[bytes], _T]) -> _T:
    try:
        return parse(data)
    except (FormatError, ConfigError) as exc:
        raise ConfigError(f"collateral file {path}: {exc}") from None


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
    return load_paths(directory)


def _files_of(path: Path) -> list[Path]:
    if not path.is_dir():
        if not path.exists():
            raise ConfigError(f"collateral {path}: cannot read (no such file or directory)")
        return [path]
    try:
        entries = sorted(path.iterdir())
    except OSError as exc:
        raise ConfigError(f"collateral directory {path}: cannot read "
                          f"({exc.strerror or exc})") from None
    files = [p for p in entries if p.is_file()]
    if len(files) > MAX_DIRECTORY_FILES:
        raise ConfigError(f"collateral directory {path}: {len(files)} files, want <= "
                          f"{MAX_DIRECTORY_FILES}")
    return files


def load_paths(*paths: PathLike) -> IntelCollateral:
    """:func:`load_directory` over several files and directories (each directory's files
    sniffed as one); a dcap-qvl ``collateral.json`` may be named on its own. Two files of
    one kind among them raise :class:`ConfigError` naming the second."""
    found: dict[str, Any] = {}
    tcb_certs: list[x509.Certificate] = []
    pck_certs: list[x509.Certificate] = []

    def put(kind: str, value: Any, path: Path) -> None:
        if kind in found:
            raise ConfigError(f"{path}: a second {kind} file; use load_files")
        found[kind] = value

    files = [f for p in paths for f in _files_of(Path(p))]
    if len(files) > MAX_DIRECTORY_FILES:
        raise ConfigError(f"collateral: {len(files)} files, want <= {MAX_DIRECTORY_FILES}")
    signed: dict[str, tuple[bytes, bytes]] = {}
    for path in files:
        data = _read(path)
        head = data.lstrip()[:64]
        # A file that looks like collateral and does not parse is an error naming it, never
        # skipped: a skipped TCB Info would let the quote "verify" without its TCB status.
        if head.startswith(b"{"):
            name = str(path)
            obj: object = _parse_named(path, data, partial(
                load_json, structure=name, max_size=LIMITS["collateral"]))
            if not isinstance(obj, dict):
                continue
            if "tcb_info" in obj or "pck_crl" in obj:
                put("collateral_json", _parse_named(path, data, load_collateral_json), path)
            elif "tcbInfo" in obj:
                put("tcb_info", path, path)
                signed["tcb_info"] = _parse_named(path, data, lambda d: signed_json_member(
                    d, "tcbInfo"))
            elif "enclaveIdentity" in obj:
                raw, sig = _parse_named(path, data, lambda d: signed_json_member(
                    d, "enclaveIdentity"))
                ident = _parse_named(path, raw, EnclaveIdentity.from_json)
                if ident.id in ("QE", "TD_QE"):
                    put("qe_identity", path, path)
                    signed["qe_identity"] = (raw, sig)
            continue
        if b"BEGIN X509 CRL" in head:
            name = str(path)
            crl = _parse_named(path, data, partial(load_crl, source=name))
        elif b"BEGIN CERTIFICATE" in head or head.startswith(b"0\x82"):
            try:
                certs = load_certificates(data, structure=str(path))
            except FormatError as cert_error:
                try:  # a DER CRL starts like a DER certificate
                    crl = load_crl(data, source=str(path))
                except ConfigError:
                    raise ConfigError(f"collateral file {path}: {cert_error}") from None
            else:
                for c in certs:
                    (tcb_certs if "TCB Signing" in _cn(c.subject) else pck_certs).append(c)
                continue
        else:
            continue
        kind = "root_ca_crl" if _cn(crl.issuer) == "Intel SGX Root CA" else "pck_crl"
        put(kind, crl, path)
    base = found.get("collateral_json", IntelCollateral())
    tcb_raw, tcb_sig = base.tcb_info, base.tcb_info_signature
    qe_raw, qe_sig = base.qe_identity, base.qe_identity_signature
    if "tcb_info" in signed:
        tcb_raw, tcb_sig = signed["tcb_info"]
    if "qe_identity" in signed:
        qe_raw, qe_sig = signed["qe_identity"]
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
