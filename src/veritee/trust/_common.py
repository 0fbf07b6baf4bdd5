"""The X.509, time, CRL, signature and pin steps every trust module shares.

One implementation of each, so the TEE modules cannot drift apart (as sigstore shares its
signing-certificate steps between verifiers):

* :func:`require_aware` - a naive ``now`` is a :class:`~veritee.errors.ConfigError`
  ("now: naive datetime") at every trust entry point, never a ``TypeError`` from comparing it
  with a certificate's UTC validity.
* :func:`check_validity` / :func:`check_window` - RFC 5280 4.1.2.5: valid when
  notBefore <= now <= notAfter; ``<code>.not_yet_valid`` before, ``<code>.expired`` after.
* :func:`check_crl` - RFC 5280 5 / 6.3: the CRL names and is signed by its issuer, is current
  (thisUpdate <= now <= nextUpdate; a CRL without nextUpdate is never current), and does not
  list any of the given certificates' serial numbers.
* :func:`verify_raw_ecdsa` - the raw ``r || s`` ECDSA signatures of Intel DCAP (P-256) and
  COSE / SPDM (P-384), fixed-width big-endian halves (RFC 9053 2.1), converted to DER for
  ``cryptography``.
* :class:`Pins` - trusted roots given as SHA-256 pins or certificates, as one matcher.
* :func:`issued_by` and :func:`fingerprint` - the single signature-link check
  (:mod:`veritee.crypto._x509`) and DER SHA-256 (:mod:`veritee.trust.roots`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.crypto._x509 import issued_by
from veritee.errors import ConfigError, VerificationError
from veritee.trust.roots import fingerprint

__all__ = [
    "Pins",
    "WindowCache",
    "check_crl",
    "check_validity",
    "check_window",
    "crl_signed",
    "extension",
    "fingerprint",
    "issued_by",
    "require_aware",
    "verify_raw_ecdsa",
]

# Curve -> (bytes per half of r || s, the hash its TEEs sign with).
_RAW_ECDSA: dict[type[ec.EllipticCurve], tuple[int, type[hashes.HashAlgorithm]]] = {
    ec.SECP256R1: (32, hashes.SHA256),
    ec.SECP384R1: (48, hashes.SHA384),
}


_X = TypeVar("_X", bound=x509.ExtensionType)


def extension(cert: x509.Certificate, kind: type[_X], *, code: str) -> x509.Extension[_X] | None:
    """``cert``'s extension of ``kind``, or None when absent; a duplicate or malformed
    extension list is ``code`` (certificates loaded through :mod:`veritee.crypto._x509` have
    had theirs parsed already, so this is a second line of defence)."""
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:  # duplicate or malformed extensions
        raise VerificationError(code, f"bad extensions: {exc}") from exc


def require_aware(now: datetime, fld: str = "now") -> datetime:
    """``now`` unchanged when it carries a timezone; a naive one is a :class:`ConfigError`."""
    if not isinstance(now, datetime):
        raise ConfigError(f"{fld}: got {type(now).__name__}, want a timezone-aware datetime")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ConfigError(f"{fld}: naive datetime (want a timezone-aware time, e.g. UTC)")
    return now


def check_window(lo: datetime, hi: datetime, now: datetime, *, code: str, what: str) -> None:
    """Raise ``<code>.not_yet_valid`` when ``now < lo`` and ``<code>.expired`` when
    ``now > hi`` (both ends inclusive, RFC 5280 4.1.2.5)."""
    if now < lo:
        raise VerificationError(f"{code}.not_yet_valid", f"{what}: valid {lo.isoformat()}.."
                                f"{hi.isoformat()}, not yet at {now.isoformat()}")
    if now > hi:
        raise VerificationError(f"{code}.expired", f"{what}: valid {lo.isoformat()}.."
                                f"{hi.isoformat()}, expired at {now.isoformat()}")


class _Validity(Protocol):  # what x509.Certificate and AmdCertificate both have
    @property
    def not_valid_before_utc(self) -> datetime: ...
    @property
    def not_valid_after_utc(self) -> datetime: ...


class _Issuer(Protocol):
    @property
    def subject(self) -> x509.Name: ...


class _Serial(Protocol):
    @property
    def serial_number(self) -> int: ...


def check_validity(cert: _Validity, now: datetime, *, code: str,
                   what: str) -> None:
    """:func:`check_window` over a certificate's notBefore..notAfter."""
    check_window(cert.not_valid_before_utc, cert.not_valid_after_utc, now, code=code, what=what)


def crl_signed(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key verifies ``crl``'s signature (any failure is False)."""
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (ValueError, TypeError, UnsupportedAlgorithm):  # a key type a CRL cannot use
        return False


def check_crl(crl: x509.CertificateRevocationList, issuer: _Issuer, now: datetime, *,
              scheme: str, what: str, subjects: Sequence[tuple[_Serial, str]] = (),
              verify_signature: Callable[[], bool] | None = None,
              issuer_checked: bool = False) -> tuple[datetime, datetime]:
    """Check ``crl`` (issued by ``issuer``) at ``now`` and that no ``subjects`` is listed.

    Codes: ``<scheme>.crl.signature`` (issuer name or signature), ``<scheme>.crl.stale``
    (not current), ``<scheme>.chain.revoked`` (a subject's serial is listed). A signature the
    generic check cannot judge (AMD's RSASSA-PSS parameters) is checked by
    ``verify_signature``, which raises or returns False. Returns thisUpdate..nextUpdate, the
    window in which the result holds. ``issuer_checked`` says the caller knows this exact
    CRL to be named and signed by this exact issuer (a cache of verified pairs): only its
    currency and the serials are checked then.
    """
    if not issuer_checked:
        issuer_name = issuer.subject
        if crl.issuer != issuer_name:
            raise VerificationError(f"{scheme}.crl.signature",
                                    f"{what} CRL issuer: got {crl.issuer.rfc4514_string()}, "
                                    f"want {issuer_name.rfc4514_string()}")
        signed = (verify_signature() if verify_signature is not None
                  else isinstance(issuer, x509.Certificate) and crl_signed(crl, issuer))
        if not signed:
            raise VerificationError(f"{scheme}.crl.signature", f"{what} CRL is not signed by "
                                    f"{issuer_name.rfc4514_string()}")
    last, nxt = crl.last_update_utc, crl.next_update_utc
    if nxt is None or not last <= now <= nxt:
        raise VerificationError(f"{scheme}.crl.stale",
                                f"{what} CRL thisUpdate..nextUpdate: got {last.isoformat()}.."
                                f"{nxt.isoformat() if nxt else 'None'}, not current at "
                                f"{now.isoformat()}")
    for cert, role in subjects:
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise VerificationError(f"{scheme}.chain.revoked",
                                    f"{role} (serial {cert.serial_number:#x}) is revoked by the "
                                    f"{what} CRL")
    return last, nxt


def verify_raw_ecdsa(key: object, raw_sig: bytes, data: bytes) -> bool:
    """True when ``raw_sig`` (``r || s``, each half as wide as the curve, big endian) is
    ``key``'s ECDSA signature over ``data``: P-256 with SHA-256, P-384 with SHA-384. Any
    other key, curve or length is False."""
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    shape = _RAW_ECDSA.get(type(key.curve))
    if shape is None or len(raw_sig) != 2 * shape[0]:
        return False
    half, hash_type = shape
    der = encode_dss_signature(int.from_bytes(raw_sig[:half], "big"),
                               int.from_bytes(raw_sig[half:], "big"))
    try:
        key.verify(der, data, ec.ECDSA(hash_type()))
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class Pins:
    """Trusted roots: SHA-256 (hex, of the DER) pins, plus the certificates given as such.

    ``Pins.of(trusted_roots, default)`` reads a module's ``trusted_roots`` argument: ``None``
    means the production ``default`` pin; otherwise the given pins and certificates replace
    it (never add to it).
    """

    sha256: frozenset[str]
    certificates: tuple[x509.Certificate, ...] = ()

    @classmethod
    def of(cls, roots: Iterable[str | x509.Certificate] | None, default: str) -> Pins:
        """The pins of ``roots`` (hex strings or certificates), or ``default`` when None."""
        if roots is None:
            return cls(frozenset({default.lower()}))
        given = list(roots)
        certs = tuple(r for r in given if isinstance(r, x509.Certificate))
        return cls(frozenset(r.lower() if isinstance(r, str) else fingerprint(r)
                             for r in given), certs)

    def __contains__(self, cert: object) -> bool:
        if isinstance(cert, str):
            return cert.lower() in self.sha256
        if isinstance(cert, x509.Certificate | bytes):
            return fingerprint(cert) in self.sha256
        return False


class _Windowed(Protocol):
    @property
    def not_before(self) -> datetime: ...
    @property
    def not_after(self) -> datetime: ...


_E = TypeVar("_E", bound=_Windowed)


class WindowCache(Generic[_E]):
    """Verified results keyed by the exact inputs, each used only inside its validity window.

    The key must hold every input the result depends on (bytes, anchors, options), so an
    entry is never served for inputs that differ; the entry's ``not_before..not_after`` is
    the intersection of every validity window it was checked against, so a hit at a ``now``
    inside it gives the result a fresh check would. Thread-safe; the least recently used
    entries beyond ``max_entries`` are dropped.
    """

    def __init__(self, max_entries: int = 256) -> None:
        if max_entries < 1:
            raise ConfigError(f"max_entries: got {max_entries}, want >= 1")
        self._entries: OrderedDict[Hashable, _E] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, now: datetime) -> _E | None:
        """The entry for ``key`` when ``now`` lies in its window, else None (a miss)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not entry.not_before <= now <= entry.not_after:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: Hashable, entry: _E) -> None:
        """Keep ``entry`` for ``key``, dropping the least recently used beyond the bound."""
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
