"""Intel DCAP quote verification (SGX v3, TDX v4/v5): chain, QE, quote signature, TCB status.

Steps, in order (each is a passed :class:`~veritee.findings.Finding` in
``VerifiedQuote.checks``; the first failure raises :class:`~veritee.errors.VerificationError`
with the stable code shown):

1. ``intel.chain.*`` - PCK leaf -> PCK Platform/Processor CA -> Intel SGX Root CA, every link
   ECDSA P-256/SHA-256 (``verify_directly_issued_by``); the root must be self-signed and its
   DER SHA-256 pinned (:data:`INTEL_SGX_ROOT_CA_SHA256` unless ``trusted_roots`` says
   otherwise: ``root_untrusted``); every certificate valid at ``now`` (``expired`` /
   ``not_yet_valid``); with CRLs,
   the root CA CRL (signed by the root) must not list the intermediate and the PCK CRL (signed
   by the intermediate) must not list the PCK leaf (``revoked``), both current at ``now``
   (``intel.crl.*``).
2. ``intel.qe_report.signature`` - the PCK key signs the 384-byte QE report (ECDSA P-256,
   raw ``r||s``).
3. ``intel.qe_report.binding`` - QE REPORTDATA[0:32] == SHA-256(attestation key || QE auth
   data) and REPORTDATA[32:64] is zero (SGX QL API, "QE Report" notes).
4. ``intel.quote.signature`` - the attestation key signs header || body (v5: with the body
   descriptor).
5. ``intel.pck.extensions`` - FMSPC, PCE-ID, SGX TCB components, PCESVN from the PCK
   certificate's SGX extensions.
6. With collateral: ``intel.tcb_info.*`` / ``intel.qe_identity.*`` - the TCB Signing
   certificate chains to the same pinned root, signs the exact ``tcbInfo`` /
   ``enclaveIdentity`` JSON bytes, the object is current at ``now`` (issueDate..nextUpdate),
   FMSPC / PCE-ID / id (SGX vs TDX) match; the QE report matches the QE identity
   (MRSIGNER, ISVPRODID, masked MISCSELECT and ATTRIBUTES). Then the TCB level is matched
   per Intel QVL ``TcbLevelCheck.cpp`` / ``TdxModuleCheck.cpp`` (see :func:`evaluate_tcb`).

A quote whose TCB matches no level is *not* a verification error: ``VerifiedQuote.tcb`` then
has ``status=None`` (Intel QVL: ``STATUS_TCB_NOT_SUPPORTED``) and the policy rejects it.

Deliberately not done here: the QVE identity and the QvE report (we are the verifier);
TD 1.5 TEE_TCB_SVN2 (matching uses TEE_TCB_SVN, like go-tdx-guest); PCK certificate
``Configuration`` (platform) extensions; fetching anything (see ``veritee.collateral.intel``).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.crypto._x509 import _PEM_RE, load_certificate_chain
from veritee.crypto._x509 import MAX_CHAIN as _MAX_CHAIN
from veritee.errors import CollateralError, FormatError, VerificationError
from veritee.findings import Finding, passed, skipped
from veritee.formats.intel import (
    HEADER_SIZE as _HEADER_SIZE,
)
from veritee.formats.intel import (
    SGX_EXTENSIONS_OID,
    EnclaveIdentity,
    PckExtensions,
    Quote,
    SgxReportBody,
    TcbInfo,
    TcbLevel,
    TcbStatus,
    TdReportBody,
)
from veritee.formats.intel import (
    SGX_REPORT_SIZE as _SGX_SIZE,
)
from veritee.formats.intel import (
    TD10_REPORT_SIZE as _TD10_SIZE,
)
from veritee.formats.intel import (
    TD15_REPORT_SIZE as _TD15_SIZE,
)
from veritee.formats.intel import (
    BodyType as _BodyType,
)
from veritee.trust._common import (
    Pins,
    WindowCache,
    check_crl,
    check_validity,
    check_window,
    fingerprint,
    issued_by,
    require_aware,
    verify_raw_ecdsa,
)

__all__ = [
    "INTEL_SGX_ROOT_CA_SHA256",
    "IntelCache",
    "IntelCollateral",
    "TcbEvaluation",
    "VerifiedQuote",
    "evaluate_tcb",
    "load_certificates",
    "verify_quote",
]

INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
"""SHA-256 of the DER of the production "Intel SGX Root CA" (2018-05-21 .. 2049-12-31), as
served at https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.cer
and embedded in every production PCK chain."""


def load_certificates(data: bytes, *, structure: str = "CertificateChain"
                      ) -> tuple[x509.Certificate, ...]:
    """Certificates from PEM text or concatenated DER (trailing NULs ignored), every field
    parsed at this edge (:mod:`veritee.crypto._x509`); malformed input is a
    :class:`~veritee.errors.FormatError` naming ``structure``, the certificate and the field."""
    return load_certificate_chain(data, structure=structure)


@dataclass(frozen=True)
class IntelCollateral:
    """Verification collateral for one quote; every member optional (``None``/empty: absent).

    ``tcb_info`` / ``qe_identity`` are the exact signed JSON bytes of the ``tcbInfo`` /
    ``enclaveIdentity`` objects, with raw ``r||s`` signatures and their issuer chains (TCB
    Signing certificate, optionally the root). ``pck_chain`` supplies the PCK chain when the
    quote's certification data does not carry it (types 1-4). It lives in ``trust`` so that
    ``trust`` never imports ``collateral``; ``veritee.collateral.intel`` builds it from files.
    """

    tcb_info: bytes | None = None
    tcb_info_signature: bytes | None = None
    tcb_info_issuer_chain: tuple[x509.Certificate, ...] = ()
    qe_identity: bytes | None = None
    qe_identity_signature: bytes | None = None
    qe_identity_issuer_chain: tuple[x509.Certificate, ...] = ()
    pck_crl: x509.CertificateRevocationList | None = None
    root_ca_crl: x509.CertificateRevocationList | None = None
    pck_chain: tuple[x509.Certificate, ...] = ()

    @functools.cached_property
    def _der(self) -> _CollateralDer:
        # The exact DER of every parsed member, for IntelCache keys; computed once per
        # (immutable) object rather than once per quote.
        return _CollateralDer(
            tcb_info_chain=tuple(_der(c) for c in self.tcb_info_issuer_chain),
            qe_identity_chain=tuple(_der(c) for c in self.qe_identity_issuer_chain),
            pck_crl=_der(self.pck_crl), root_ca_crl=_der(self.root_ca_crl),
            pck_chain=tuple(_der(c) for c in self.pck_chain))


@dataclass(frozen=True)
class _CollateralDer:
    tcb_info_chain: tuple[bytes | None, ...]
    qe_identity_chain: tuple[bytes | None, ...]
    pck_crl: bytes | None
    root_ca_crl: bytes | None
    pck_chain: tuple[bytes | None, ...]


@dataclass(frozen=True)
class TcbEvaluation:
    """The TCB status of the platform per Intel's rules.

    ``status`` is the converged status (platform level, TDX module, QE identity), or ``None``
    when no TCB level matches ("TCB not supported"). The parts are kept for the trace.
    """

    status: TcbStatus | None
    platform_status: TcbStatus | None
    tdx_module_status: TcbStatus | None
    qe_status: TcbStatus | None
    advisory_ids: tuple[str, ...]
    tcb_date: datetime | None
    tcb_level: TcbLevel | None
    tdx_module_id: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class VerifiedQuote:
    """A quote whose signatures and chain were checked at ``checked_at``."""

    quote: Quote
    pck_chain: tuple[x509.Certificate, ...]  # (PCK, Platform/Processor CA, root)
    pck: PckExtensions
    root_fingerprint: str
    checks: tuple[Finding, ...]
    checked_at: datetime
    tcb: TcbEvaluation | None = None  # None: no TCB Info in the collateral
    tcb_info: TcbInfo | None = None
    qe_identity: EnclaveIdentity | None = None
    crl_checked: bool = False

    @property
    def tee(self) -> str:
        """``tdx`` or ``sgx``."""
        return "tdx" if self.quote.is_tdx else "sgx"


def _p256_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)
    except ValueError as exc:
        raise VerificationError("intel.quote.attestation_key",
                                "attestation key is not a P-256 point") from exc


def _order_chain(certs: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """Order ``certs`` leaf first by subject/issuer names (type 5 data may be root first)."""
    if len(certs) < 2:
        raise VerificationError("intel.chain.incomplete",
                                f"PCK chain has {len(certs)} certificate(s), want >= 2")
    names = [(c.subject, c.issuer) for c in certs]  # each Name built once
    issuers = {i for s, i in names if i != s}
    leaves = [k for k, (s, i) in enumerate(names) if s not in issuers and i != s]
    if len(leaves) != 1:
        raise VerificationError("intel.chain.incomplete",
                                f"cannot find the one PCK leaf among {len(certs)} certificates")
    by_subject = {s: k for k, (s, _) in enumerate(names)}
    order = [leaves[0]]
    while names[order[-1]][1] != names[order[-1]][0]:
        parent = by_subject.get(names[order[-1]][1])
        if parent is None or parent in order or len(order) > len(certs):
            raise VerificationError("intel.chain.incomplete",
                                    f"no issuer {names[order[-1]][1].rfc4514_string()} in "
                                    "chain")
        order.append(parent)
    return tuple(certs[k] for k in order)


def _pck_extensions(pck: x509.Certificate) -> PckExtensions:
    try:
        ext = pck.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSIONS_OID))
    except x509.ExtensionNotFound as exc:
        raise VerificationError("intel.pck.extensions",
                                "PCK certificate has no SGX extensions") from exc
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise VerificationError("intel.pck.extensions", "unexpected SGX extension type")
    try:
        return PckExtensions.from_der(value.value)
    except FormatError as exc:
        raise VerificationError("intel.pck.extensions", str(exc)) from exc


def _der(item: x509.Certificate | x509.CertificateRevocationList | None) -> bytes | None:
    return None if item is None else item.public_bytes(serialization.Encoding.DER)


# -- what a cache keeps --------------------------------------------------------------------
@dataclass(frozen=True)
class _Platform:
    """Steps 1-3 and 5 for one PCK chain and QE: every input is in the cache key."""

    chain: tuple[x509.Certificate, ...]
    root_fingerprint: str
    root_der: bytes
    pck: PckExtensions
    attestation_key: ec.EllipticCurvePublicKey
    before_quote: tuple[Finding, ...]  # chain, CRLs, QE report signature and binding
    after_quote: tuple[Finding, ...]  # PCK extensions
    crl_checked: bool
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class _SignedJson:
    """Step 6 for one TCB Info or QE identity: signature, issuer chain, issueDate..nextUpdate."""

    raw: bytes | None  # None: absent from the collateral
    parsed: TcbInfo | EnclaveIdentity | None
    checks: tuple[Finding, ...]
    not_before: datetime
    not_after: datetime


class IntelCache:
    """Verified DCAP collateral, reused only while it is what was verified and still valid.

    Like the SEV-SNP :class:`~veritee.trust.sevsnp.ChainCache`: what does not change from
    one quote to the next is verified once and kept in its verified form --

    * per platform: the ordered PCK chain (links, pinned root, validity), the root CA and PCK
      CRLs, the QE report's signature by the PCK key and its binding of the attestation key,
      and the PCK certificate's SGX extensions; keyed by the exact certification-data bytes
      (PCK chain, QE report, its signature, QE auth data, attestation key), the CRLs' DER and
      the trusted-root pins;
    * per collateral object: the TCB Info and QE identity signatures, their issuer chains, the
      parsed JSON; keyed by the exact signed JSON bytes, signatures, issuer-chain DER, root
      and root CRL DER.

    Each entry is used only while ``now`` lies inside every validity window it was checked
    against (certificates, CRL thisUpdate..nextUpdate, issueDate..nextUpdate), so a changed
    byte, a newer CRL or an expired object is verified afresh, never served. The quote's own
    signature and the FMSPC / PCE-ID / TEE-type matches are checked for every quote; the QE
    identity match and the TCB level are reused only for identical inputs (TCB Info and QE
    identity bytes, PCK extensions, QE report, the TD's TEE_TCB_SVN and SEAM fields), and
    what every platform shares (parsed CA certificates, CA links, CRL signatures) is kept by
    exact DER. Thread-safe; bounded LRU (``max_entries`` per kind).
    """

    def __init__(self, max_entries: int = 256) -> None:
        self._platforms: WindowCache[_Platform] = WindowCache(max_entries)
        self._objects: WindowCache[_SignedJson] = WindowCache(max_entries)
        # Facts about exact bytes that hold at any time: a parsed PEM certificate, a verified
        # certificate link (child DER, parent DER), a verified CRL signature (CRL DER, issuer
        # DER). They make the first quote of a new platform cheap: its CA chain and CRLs
        # are the same as every other platform's. Validity is still checked per platform.
        self._facts: WindowCache[_Fact] = WindowCache(4 * max_entries)

    @property
    def hits(self) -> int:
        """Lookups served from the cache."""
        return self._platforms.hits + self._objects.hits

    @property
    def misses(self) -> int:
        """Lookups verified afresh."""
        return self._platforms.misses + self._objects.misses

    def clear(self) -> None:
        """Forget every entry."""
        self._platforms.clear()
        self._objects.clear()
        self._facts.clear()

    def clear_platforms(self) -> None:
        """Forget the per-platform entries only, as if every platform were new (the first
        quote of a machine: its PCK leaf, QE report and quote are verified, the CA chain,
        CRLs and collateral come from the cache). For benchmarks and tests."""
        self._platforms.clear()

    def __len__(self) -> int:
        return len(self._platforms) + len(self._objects) + len(self._facts)

    def _fact(self, key: tuple[object, ...]) -> object | None:
        entry = self._facts.get(key, _ALWAYS[0])
        return None if entry is None else entry.value

    def _remember(self, key: tuple[object, ...], value: object) -> None:
        self._facts.put(key, _Fact(value, *_ALWAYS))


_ALWAYS = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


@dataclass(frozen=True)
class _Fact:
    """A result that depends only on exact bytes, never on the time."""

    value: object
    not_before: datetime
    not_after: datetime


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


class _Ders:
    """The DER of the certificates of one verification, each encoded at most once (those
    from the cache come with theirs). Keyed by object identity, which is sound because the
    certificates stay referenced for the whole call."""

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[x509.Certificate, bytes]] = {}

    def add(self, cert: x509.Certificate, der: bytes) -> None:
        self._by_id[id(cert)] = (cert, der)

    def __call__(self, cert: x509.Certificate) -> bytes:
        found = self._by_id.get(id(cert))
        if found is not None and found[0] is cert:
            return found[1]
        der = cert.public_bytes(serialization.Encoding.DER)
        self._by_id[id(cert)] = (cert, der)
        return der


@dataclass(frozen=True)
class _TcbResult:
    status: TcbEvaluation | None


def _linked(child: x509.Certificate, parent: x509.Certificate, cache: IntelCache | None,
            ders: _Ders | None = None) -> bool:
    """:func:`issued_by`, remembered for the exact (child, parent) DER pair."""
    if cache is None or not _is_ca(child):  # a leaf is one platform's: nothing to share
        return issued_by(child, parent)
    der = ders or _Ders()
    key = ("link", der(child), der(parent))
    if cache._fact(key) is True:
        return True
    ok = issued_by(child, parent)
    if ok:
        cache._remember(key, True)
    return ok


def _crl(crl: x509.CertificateRevocationList, crl_der: bytes | None,
         issuer: x509.Certificate, now: datetime, cache: IntelCache | None, *, what: str,
         subjects: Sequence[tuple[x509.Certificate, str]], ders: _Ders
         ) -> tuple[datetime, datetime]:
    """:func:`check_crl`; with a cache, the issuer name and signature of an exact (CRL DER,
    issuer DER) pair verified before are not checked again (currency and serials are)."""
    if cache is None:
        return check_crl(crl, issuer, now, scheme="intel", what=what, subjects=subjects)
    key = ("crl", crl_der, ders(issuer))
    done = cache._fact(key) is True
    window = check_crl(crl, issuer, now, scheme="intel", what=what, subjects=subjects,
                       issuer_checked=done)
    if not done:
        cache._remember(key, True)
    return window


_BEGIN, _END = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"


def _pem_blocks(text: bytes) -> list[bytes]:
    """The CERTIFICATE blocks load_certificate_chain's expression finds in ``text``. When the
    text holds only CERTIFICATE markers, each BEGIN closed by the next END, the blocks are
    cut by plain splitting (a tenth of the time); anything else goes through the expression."""
    parts = text.split(_END)
    if text.count(b"-----") == 4 * (len(parts) - 1) and all(
            p.count(_BEGIN) == 1 for p in parts[:-1]) and _BEGIN not in parts[-1]:
        return [p[p.index(_BEGIN):] + _END for p in parts[:-1]]
    return [m.group(0) for m in _PEM_RE.finditer(text) if m.group(1) == b"CERTIFICATE"]


def _load_chain(data: bytes, cache: IntelCache | None, ders: _Ders | None = None
                ) -> tuple[x509.Certificate, ...]:
    """The PCK chain's certificates; with a cache each PEM block is parsed once (the CA and
    root blocks are the same for every platform). Anything the per-block path cannot take,
    or refuses, goes through :func:`load_certificates`, which gives the canonical error."""
    structure = "QuoteCertificationData.pck_chain"
    ders = ders or _Ders()
    raw = data.lstrip()
    if cache is None or raw[:1] == b"\x30":  # DER: one pass, as load_certificates does
        return load_certificates(data, structure=structure)
    blocks = _pem_blocks(raw.rstrip(b"\x00").strip())
    if not blocks or len(blocks) > _MAX_CHAIN:
        return load_certificates(data, structure=structure)
    out: list[x509.Certificate] = []
    for block in blocks:
        known = cache._fact(("pem", block))
        if isinstance(known, tuple):
            cert, der = known
            ders.add(cert, der)
        else:
            try:
                (cert,) = load_certificates(block, structure=structure)
            except (FormatError, VerificationError, ValueError):
                return load_certificates(data, structure=structure)
            if _is_ca(cert):  # the CA and root blocks are every platform's; a leaf is not
                cache._remember(("pem", block), (cert, ders(cert)))
        out.append(cert)
    return tuple(out)


# -- steps ---------------------------------------------------------------------------------
def _verify_platform(q: Quote, col: IntelCollateral, pins: Pins, now: datetime,
                     certs: Sequence[x509.Certificate], *,
                     cache: IntelCache | None, ders: _Ders | None = None) -> _Platform:
    """Steps 1-3 and 5 (see the module docstring)."""
    checks: list[Finding] = []
    sig = q.signature_data
    qe = sig.qe
    der = ders or _Ders()

    # 1. PCK chain: links, pinned self-signed root, validity, CRLs.
    chain = _order_chain(certs)
    pck, root = chain[0], chain[-1]
    root_der = der(root)
    root_fp = hashlib.sha256(root_der).hexdigest()  # trust.roots.fingerprint, DER at hand
    if root_fp not in pins:
        raise VerificationError("intel.chain.root_untrusted",
                                f"root {root_fp} is not a trusted Intel SGX Root CA")
    if not _linked(root, root, cache, der):
        raise VerificationError("intel.chain.signature", "root is not self-signed")
    for child, parent in itertools.pairwise(chain):
        if not _linked(child, parent, cache, der):
            raise VerificationError("intel.chain.signature",
                                    f"{child.subject.rfc4514_string()} is not signed by "
                                    f"{parent.subject.rfc4514_string()}")
    checks.append(passed("intel.chain.signature", "PCK chain", got=len(chain),
                         message="PCK certificate <- PCK CA <- pinned root"))
    checks.append(passed("intel.chain.root", "root SHA-256", got=root_fp))
    for c in chain:
        if not c.not_valid_before_utc <= now <= c.not_valid_after_utc:  # name it only then
            check_validity(c, now, code="intel.chain", what=c.subject.rfc4514_string())
    lo = max(c.not_valid_before_utc for c in chain)
    hi = min(c.not_valid_after_utc for c in chain)
    checks.append(passed("intel.chain.validity", "notBefore..notAfter", got=now.isoformat(),
                         want=f"{lo.isoformat()}..{hi.isoformat()}"))
    crl_checked = False
    if col.root_ca_crl is not None:
        c_lo, c_hi = _crl(col.root_ca_crl, col._der.root_ca_crl, root, now, cache,
                          what="root CA", subjects=[(c, "the PCK CA") for c in chain[1:-1]],
                          ders=der)
        lo, hi = max(lo, c_lo), min(hi, c_hi)
        checks.append(passed("intel.crl.root", "root CA CRL", got="not revoked"))
        crl_checked = True
    else:
        checks.append(skipped("intel.crl.root", "root CA CRL", "absent from the collateral"))
    if col.pck_crl is not None:
        c_lo, c_hi = _crl(col.pck_crl, col._der.pck_crl, chain[1], now, cache, what="PCK",
                          subjects=[(pck, "the PCK certificate")], ders=der)
        lo, hi = max(lo, c_lo), min(hi, c_hi)
        checks.append(passed("intel.crl.pck", "PCK CRL", got="not revoked"))
        crl_checked = True
    else:
        checks.append(skipped("intel.crl.pck", "PCK CRL", "absent from the collateral"))

    # 2. QE report signed by the PCK key (raw r||s, P-256).
    if not verify_raw_ecdsa(pck.public_key(), qe.qe_report_signature, qe.qe_report_bytes):
        raise VerificationError("intel.qe_report.signature",
                                "QE report signature does not verify with the PCK key")
    checks.append(passed("intel.qe_report.signature", "QE report"))

    # 3. QE report data binds the attestation key (SGX QL API, "QE Report").
    want = hashlib.sha256(sig.attestation_key + qe.qe_auth_data).digest()
    got = qe.qe_report.report_data
    if got[:32] != want or any(got[32:]):
        raise VerificationError("intel.qe_report.binding",
                                f"QE REPORTDATA {got.hex()} != SHA-256(key||auth) {want.hex()}")
    checks.append(passed("intel.qe_report.binding", "QE REPORTDATA", got=got[:32]))
    key = _p256_key(sig.attestation_key)

    # 5. PCK extensions (checked after the quote signature, step 4, by the caller).
    ext = _pck_extensions(pck)
    return _Platform(chain, root_fp, root_der, ext, key,
                     tuple(checks),
                     (passed("intel.pck.extensions", "FMSPC", got=ext.fmspc),),
                     crl_checked, lo, hi)


def _verify_signed_json(kind: str, raw: bytes | None, sig: bytes | None, *,
                        chain: tuple[x509.Certificate, ...], root: x509.Certificate,
                        root_crl: x509.CertificateRevocationList | None,
                        now: datetime) -> _SignedJson:
    """Verify one signed collateral object (``tcb_info`` / ``qe_identity``) and parse it."""
    if raw is None:
        return _SignedJson(None, None, (skipped(f"intel.{kind}.signature", kind,
                                                "absent from the collateral"),),
                           datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
    if sig is None or not chain:
        raise CollateralError(f"{kind} is present but its signature or issuer chain is not")
    signers = [c for c in chain if c.issuer != c.subject]
    if len(signers) != 1:
        raise VerificationError(f"intel.{kind}.chain",
                                f"{kind} issuer chain must hold one signing certificate")
    signer = signers[0]
    root_fp = fingerprint(root)
    for c in chain:
        if c.issuer == c.subject and fingerprint(c) != root_fp:
            raise VerificationError(f"intel.{kind}.chain",
                                    f"{kind} issuer chain ends in another root than the PCK's")
    if not issued_by(signer, root):
        raise VerificationError(f"intel.{kind}.chain",
                                f"{kind} signing certificate is not signed by the root")
    check_validity(signer, now, code=f"intel.{kind}.chain", what=f"{kind} signing certificate")
    lo, hi = signer.not_valid_before_utc, signer.not_valid_after_utc
    if root_crl is not None:
        if root_crl.get_revoked_certificate_by_serial_number(signer.serial_number) is not None:
            raise VerificationError("intel.chain.revoked", f"{kind} signing certificate revoked")
        nxt = root_crl.next_update_utc
        lo, hi = max(lo, root_crl.last_update_utc), min(hi, nxt if nxt is not None else lo)
    if not verify_raw_ecdsa(signer.public_key(), sig, raw):
        raise VerificationError(f"intel.{kind}.signature",
                                f"{kind} signature does not verify over its JSON bytes")
    found = passed(f"intel.{kind}.signature", kind, got=signer.subject.rfc4514_string())
    parsed = TcbInfo.from_json(raw) if kind == "tcb_info" else EnclaveIdentity.from_json(raw)
    # issueDate..nextUpdate: the object is current at now.
    issue, nxt_update = parsed.issue_date, parsed.next_update
    check_window(issue, nxt_update, now, code=f"intel.{kind}", what=f"{kind} issueDate..nextUpdate")
    current = passed(f"intel.{kind}.current", "issueDate..nextUpdate", got=now.isoformat(),
                     want=f"{issue.isoformat()}..{nxt_update.isoformat()}")
    return _SignedJson(raw, parsed, (found, current), max(lo, issue), min(hi, nxt_update))


def _signed_json(kind: str, col: IntelCollateral, root: x509.Certificate, root_der: bytes, *,
                 now: datetime, cache: IntelCache | None) -> _SignedJson:
    if kind == "tcb_info":
        raw, sig, chain = col.tcb_info, col.tcb_info_signature, col.tcb_info_issuer_chain
    else:
        raw, sig, chain = col.qe_identity, col.qe_identity_signature, col.qe_identity_issuer_chain
    root_crl = col.root_ca_crl
    if cache is None or raw is None:
        return _verify_signed_json(kind, raw, sig, chain=chain, root=root, root_crl=root_crl,
                                   now=now)
    der = col._der
    key = ("signed_json", kind, raw, sig,
           der.tcb_info_chain if kind == "tcb_info" else der.qe_identity_chain,
           root_der, der.root_ca_crl)
    entry = cache._objects.get(key, now)
    if entry is None:
        entry = _verify_signed_json(kind, raw, sig, chain=chain, root=root, root_crl=root_crl,
                                    now=now)
        cache._objects.put(key, entry)
    return entry


_BODY_SIZE = {_BodyType.SGX: _SGX_SIZE, _BodyType.TD10: _TD10_SIZE, _BodyType.TD15: _TD15_SIZE}


def _cut(q: Quote) -> tuple[bytes, bytes]:
    """(signed region, signature data after the quote signature) cut from the bytes ``q`` was
    parsed from: header || [v5 body descriptor, 6 bytes] || body, then the u32 signature data
    size and the ECDSA-256 signature data, whose first 64 bytes are the quote signature and
    the rest the attestation key and QE certification data (SGX QL API, "Quote Format";
    TDX QL API, "Quote Format v5"). Only for a quote this module parsed itself."""
    n = _HEADER_SIZE + (6 if q.header.version == 5 else 0) + _BODY_SIZE[q.body_type]
    size = int.from_bytes(q.raw[n:n + 4], "little")
    return q.raw[:n], q.raw[n + 4 + 64:n + 4 + size]


def _platform(q: Quote, certification: bytes | None, col: IntelCollateral, pins: Pins, *,
              now: datetime, cache: IntelCache | None) -> _Platform:
    qe = q.signature_data.qe
    chain_bytes = qe.certification_data.pck_chain_bytes
    if chain_bytes is None and not col.pck_chain:
        raise CollateralError(f"quote certification data type {qe.certification_data.cert_type}"
                              " carries no PCK chain; pass IntelCollateral(pck_chain=...)")
    key = None
    if cache is not None:
        # Every input of steps 1-3 and 5, as the exact bytes that are verified: the
        # attestation key and QE certification data (QE report, its signature, auth data and,
        # type 5, the PCK chain), or the PCK chain from the collateral; the CRLs; the pins.
        der = col._der
        quoted = certification if certification is not None else (
            q.signature_data.attestation_key, qe.qe_report_bytes, qe.qe_report_signature,
            qe.qe_auth_data, chain_bytes)
        key = ("platform", quoted, der.pck_chain if chain_bytes is None else (), pins.sha256,
               der.root_ca_crl, der.pck_crl)
        entry = cache._platforms.get(key, now)
        if entry is not None:
            return entry
    ders = _Ders()
    certs = (_load_chain(chain_bytes, cache, ders) if chain_bytes is not None
             else col.pck_chain)
    entry = _verify_platform(q, col, pins, now, certs, cache=cache, ders=ders)
    if cache is not None:
        cache._platforms.put(key, entry)
    return entry


def verify_quote(quote: Quote | bytes, collateral: IntelCollateral | None = None, *,
                 now: datetime,
                 trusted_roots: Iterable[str | x509.Certificate] | None = None,
                 cache: IntelCache | None = None) -> VerifiedQuote:
    """Verify ``quote`` at ``now`` against the pinned Intel SGX Root CA and ``collateral``.

    ``trusted_roots`` replaces the production pin (SHA-256 hex strings or certificates):
    pass a non-production root explicitly to accept its chains. ``cache`` (an
    :class:`IntelCache`) keeps verified collateral and PCK chains between calls; a hit gives
    the same result and the same checks as a fresh verification. Raises
    :class:`~veritee.errors.VerificationError` (stable ``code``),
    :class:`~veritee.errors.FormatError` (bytes), :class:`~veritee.errors.CollateralError`
    or :class:`~veritee.errors.ConfigError` (a naive ``now``).
    """
    require_aware(now)
    if isinstance(quote, Quote):
        q, signed, certification = quote, quote.signed_bytes, None
    else:  # parsed here, so its raw bytes are the ones its fields came from
        q = Quote.from_bytes(quote)
        signed, certification = _cut(q)
    col = collateral or IntelCollateral()
    pins = Pins.of(trusted_roots, INTEL_SGX_ROOT_CA_SHA256)

    # 1-3. PCK chain, CRLs, QE report (from the cache when these exact bytes verified).
    plat = _platform(q, certification, col, pins, now=now, cache=cache)
    checks = list(plat.before_quote)

    # 4. Quote signature by the attestation key.
    if not verify_raw_ecdsa(plat.attestation_key, q.signature_data.signature, signed):
        raise VerificationError("intel.quote.signature",
                                "quote signature does not verify with the attestation key")
    checks.append(passed("intel.quote.signature", "header||body"))

    # 5. PCK extensions.
    checks += plat.after_quote
    ext = plat.pck
    root = plat.chain[-1]

    # 6. Collateral.
    tcb = _signed_json("tcb_info", col, root, plat.root_der, now=now, cache=cache)
    checks += tcb.checks
    tcb_info = tcb.parsed if isinstance(tcb.parsed, TcbInfo) else None
    if tcb_info is not None:
        want_id = "TDX" if q.is_tdx else "SGX"
        if tcb_info.id != want_id:
            raise VerificationError("intel.tcb_info.type",
                                    f"TCB Info is for {tcb_info.id}, quote is {want_id}")
        if tcb_info.fmspc != ext.fmspc:
            raise VerificationError("intel.tcb_info.fmspc",
                                    f"TCB Info FMSPC {tcb_info.fmspc.hex()} != PCK "
                                    f"{ext.fmspc.hex()}")
        if tcb_info.pce_id != ext.pce_id:
            raise VerificationError("intel.tcb_info.pce_id",
                                    f"TCB Info PCE-ID {tcb_info.pce_id.hex()} != PCK "
                                    f"{ext.pce_id.hex()}")
        checks.append(passed("intel.tcb_info.match", "FMSPC/PCE-ID", got=ext.fmspc))
    qei = _signed_json("qe_identity", col, root, plat.root_der, now=now, cache=cache)
    checks += qei.checks
    qe_identity = qei.parsed if isinstance(qei.parsed, EnclaveIdentity) else None
    report = q.signature_data.qe.qe_report
    body = q.body
    # The QE identity match and the TCB level depend only on these exact inputs (never on
    # the time): with a cache, a result found once is reused for the next quote.
    memo = None if cache is None else (
        "tcb", tcb.raw, qei.raw, q.is_tdx, ext, report,
        (body.tee_tcb_svn, body.seam_attributes, body.mr_signer_seam)
        if isinstance(body, TdReportBody) else None)
    found = None if memo is None or cache is None else cache._fact(memo)
    if isinstance(found, _TcbResult):
        status = found.status
    else:
        if qe_identity is not None:
            _check_qe_identity(report, qe_identity, q.is_tdx)
        status = evaluate_tcb(q, ext, tcb_info, qe_identity) if tcb_info is not None else None
        if memo is not None and cache is not None:
            cache._remember(memo, _TcbResult(status))
    if qe_identity is not None:
        checks.append(passed("intel.qe_identity.match", "QE MRSIGNER/ISVPRODID/attributes",
                             got=report.mr_signer))
    return VerifiedQuote(quote=q, pck_chain=plat.chain, pck=ext,
                         root_fingerprint=plat.root_fingerprint, checks=tuple(checks),
                         checked_at=now, tcb=status, tcb_info=tcb_info,
                         qe_identity=qe_identity, crl_checked=plat.crl_checked)


def _check_qe_identity(report: SgxReportBody, ident: EnclaveIdentity, tdx: bool) -> None:
    """Intel QVL ``EnclaveIdentityV2`` checks: MRSIGNER, ISVPRODID, masked MISCSELECT/ATTRIBUTES."""
    want_id = ("TD_QE",) if tdx else ("QE",)
    if ident.id not in want_id:
        raise VerificationError("intel.qe_identity.mismatch",
                                f"QE identity id {ident.id}, want {want_id[0]}")
    problems = []
    if report.mr_signer != ident.mrsigner:
        problems.append("MRSIGNER")
    if report.isv_prod_id != ident.isvprodid:
        problems.append("ISVPRODID")
    if report.misc_select & ident.miscselect_mask != ident.miscselect & ident.miscselect_mask:
        problems.append("MISCSELECT")
    masked = bytes(a & m for a, m in zip(report.attributes, ident.attributes_mask, strict=True))
    if masked != bytes(a & m for a, m in zip(ident.attributes, ident.attributes_mask,
                                             strict=True)):
        problems.append("ATTRIBUTES")
    if problems:
        raise VerificationError("intel.qe_identity.mismatch",
                                f"QE report does not match the QE identity: {problems}")


def _converge(platform: TcbStatus, other: TcbStatus | None) -> TcbStatus:
    """Intel QVL status convergence with a TDX module or QE status (``TcbLevelCheck.cpp``):
    an OutOfDate component makes UpToDate/SWHardeningNeeded OutOfDate and the Configuration*
    statuses OutOfDateConfigurationNeeded; a Revoked component makes the result Revoked."""
    if other is TcbStatus.REVOKED:
        return TcbStatus.REVOKED
    if other is TcbStatus.OUT_OF_DATE:
        if platform in (TcbStatus.UP_TO_DATE, TcbStatus.SW_HARDENING_NEEDED):
            return TcbStatus.OUT_OF_DATE
        if platform in (TcbStatus.CONFIGURATION_NEEDED,
                        TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED):
            return TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED
    return platform


def _union(*groups: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for g in groups:
        out += [a for a in g if a not in out]
    return tuple(out)


def evaluate_tcb(quote: Quote, pck: PckExtensions, tcb_info: TcbInfo,
                 qe_identity: EnclaveIdentity | None = None) -> TcbEvaluation:
    """Match the platform TCB against ``tcb_info`` per Intel's rules.

    SGX and TDX (Intel QVL ``TcbLevelCheck.cpp``): the first level (in TCB Info order) whose
    16 SGX component SVNs and PCESVN are all <= the PCK certificate's. TDX additionally needs
    TEE_TCB_SVN[i] >= tdxtcbcomponents[i] for i in 0..15, except that bytes 0-1 are skipped
    when TEE_TCB_SVN[1] > 0 (the TDX module identity ``TDX_<TEE_TCB_SVN[1]>`` then covers them
    with ISVSVN = TEE_TCB_SVN[0]: ``TdxModuleCheck.cpp``). The platform status converges with
    the module status and the QE identity status (see :func:`_converge`).
    """
    body = quote.body
    tdx_svn = body.tee_tcb_svn if isinstance(body, TdReportBody) else None
    module_id = None
    start = 0
    if tdx_svn is not None and tdx_svn[1] > 0:
        start = 2
        module_id = f"TDX_{tdx_svn[1]:02X}"
    level = None
    for cand in tcb_info.tcb_levels:
        if any(p < c for p, c in zip(pck.tcb_components, cand.sgx_components, strict=True)):
            continue
        if pck.pcesvn < cand.pcesvn:
            continue
        if tdx_svn is not None:
            comps = cand.tdx_components or (0,) * 16
            if any(tdx_svn[i] < comps[i] for i in range(start, 16)):
                continue
        level = cand
        break

    module_status = None
    module_adv: tuple[str, ...] = ()
    if isinstance(body, TdReportBody):
        module_status, module_adv = _tdx_module(body, tcb_info, module_id)
    qe_status = None
    qe_adv: tuple[str, ...] = ()
    if qe_identity is not None:
        qe_level = next((lv for lv in qe_identity.tcb_levels
                         if lv.isvsvn <= quote.signature_data.qe.qe_report.isv_svn), None)
        # No QE level: the QE is older than every level Intel lists (QVL reports it OutOfDate).
        qe_status = qe_level.status if qe_level else TcbStatus.OUT_OF_DATE
        qe_adv = qe_level.advisory_ids if qe_level else ()
    if level is None:
        return TcbEvaluation(None, None, module_status, qe_status, (), None, None, module_id,
                             reason="no matching TCB level (TCB not supported)")
    status = _converge(_converge(level.status, module_status), qe_status)
    return TcbEvaluation(status=status, platform_status=level.status,
                         tdx_module_status=module_status, qe_status=qe_status,
                         advisory_ids=_union(level.advisory_ids, module_adv, qe_adv),
                         tcb_date=level.tcb_date, tcb_level=level, tdx_module_id=module_id)


def _tdx_module(body: TdReportBody, tcb_info: TcbInfo,
                module_id: str | None) -> tuple[TcbStatus | None, tuple[str, ...]]:
    """TDX module identity (Intel QVL ``TdxModuleCheck.cpp``).

    SEAMATTRIBUTES must be all zero (QVL rejects any other value outright; no mask applies),
    and a module identity ``TDX_<TEE_TCB_SVN[1]>`` the TCB Info does not list -- including a
    TCB Info with no ``tdxModuleIdentities`` at all -- is a mismatch, not a pass.
    """
    def attrs_match(want: bytes, mask: bytes) -> bool:
        return all((a & m) == (w & m) for a, w, m in zip(body.seam_attributes, want, mask,
                                                         strict=True))
    if any(body.seam_attributes):
        raise VerificationError("intel.tdx_module.mismatch",
                                f"SEAMATTRIBUTES {body.seam_attributes.hex()} are not zero")
    if module_id is None:
        mod = tcb_info.tdx_module
        if mod is not None and (body.mr_signer_seam != mod.mrsigner
                                or not attrs_match(mod.attributes, mod.attributes_mask)):
            raise VerificationError("intel.tdx_module.mismatch",
                                    "MRSIGNERSEAM/SEAMATTRIBUTES do not match tdxModule")
        return None, ()
    ident = next((i for i in tcb_info.tdx_module_identities if i.id == module_id), None)
    if ident is None:
        # Fail closed (QVL: TDX module mismatch): a TCB Info without module identities cannot
        # vouch for a module whose SVN is carried only by its identity.
        raise VerificationError("intel.tdx_module.mismatch",
                                f"TCB Info has no TDX module identity {module_id}")
    if body.mr_signer_seam != ident.module.mrsigner or not attrs_match(
            ident.module.attributes, ident.module.attributes_mask):
        raise VerificationError("intel.tdx_module.mismatch",
                                f"MRSIGNERSEAM/SEAMATTRIBUTES do not match {module_id}")
    lv = next((x for x in ident.levels if x.isvsvn <= body.tee_tcb_svn[0]), None)
    if lv is None:
        return TcbStatus.OUT_OF_DATE, ()
    return lv.status, lv.advisory_ids
