"""Intel DCAP quote verification (SGX v3, TDX v4/v5): chain, QE, quote signature, TCB status.

Steps, in order (each is a passed :class:`~veritee.findings.Finding` in
``VerifiedQuote.checks``; the first failure raises :class:`~veritee.errors.VerificationError`
with the stable code shown):

1. ``intel.chain.*`` - PCK leaf -> PCK Platform/Processor CA -> Intel SGX Root CA, every link
   ECDSA P-256/SHA-256 (``verify_directly_issued_by``); the root must be self-signed and its
   DER SHA-256 pinned (:data:`INTEL_SGX_ROOT_CA_SHA256` unless ``trusted_roots`` says
   otherwise: ``root_untrusted``); every certificate valid at ``now`` (``expired``); with CRLs,
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

import hashlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.crypto._x509 import issued_by, load_certificate_chain
from veritee.errors import CollateralError, FormatError, VerificationError
from veritee.findings import Finding, Outcome
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

__all__ = [
    "INTEL_SGX_ROOT_CA_SHA256",
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


def _fp(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _pass(checks: list[Finding], code: str, fld: str, *, got: object = None,
          want: object = None, message: str = "") -> None:
    checks.append(Finding(code, Outcome.PASS, fld, got, want, message))


def _skip(checks: list[Finding], code: str, fld: str, why: str) -> None:
    checks.append(Finding(code, Outcome.SKIP, fld, message=f"not checked: {why}"))


def _p256_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)
    except ValueError as exc:
        raise VerificationError("intel.quote.attestation_key",
                                "attestation key is not a P-256 point") from exc


def _ecdsa_ok(key: object, raw_sig: bytes, data: bytes) -> bool:
    """Verify a raw ``r||s`` (32+32, big endian) ECDSA P-256/SHA-256 signature."""
    if not isinstance(key, ec.EllipticCurvePublicKey) or len(raw_sig) != 64:
        return False
    der = encode_dss_signature(int.from_bytes(raw_sig[:32], "big"),
                               int.from_bytes(raw_sig[32:], "big"))
    try:
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    return issued_by(child, parent)


def _order_chain(certs: Sequence[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """Order ``certs`` leaf first by subject/issuer names (type 5 data may be root first)."""
    if len(certs) < 2:
        raise VerificationError("intel.chain.incomplete",
                                f"PCK chain has {len(certs)} certificate(s), want >= 2")
    issuers = {c.issuer for c in certs if c.issuer != c.subject}
    leaves = [c for c in certs if c.subject not in issuers and c.issuer != c.subject]
    if len(leaves) != 1:
        raise VerificationError("intel.chain.incomplete",
                                f"cannot find the one PCK leaf among {len(certs)} certificates")
    chain = [leaves[0]]
    by_subject = {c.subject: c for c in certs}
    while chain[-1].issuer != chain[-1].subject:
        parent = by_subject.get(chain[-1].issuer)
        if parent is None or parent in chain or len(chain) > len(certs):
            raise VerificationError("intel.chain.incomplete",
                                    f"no issuer {chain[-1].issuer.rfc4514_string()} in chain")
        chain.append(parent)
    return tuple(chain)


def _check_validity(cert: x509.Certificate, now: datetime, code: str, what: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise VerificationError(code, f"{what} valid {cert.not_valid_before_utc.isoformat()}"
                                      f"..{cert.not_valid_after_utc.isoformat()}, "
                                      f"not at {now.isoformat()}")


def _check_crl(crl: x509.CertificateRevocationList, issuer: x509.Certificate,
               subject: x509.Certificate, now: datetime, what: str) -> None:
    try:
        signed = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (ValueError, TypeError, UnsupportedAlgorithm):  # key type a CRL cannot use
        signed = False
    if crl.issuer != issuer.subject or not signed:
        raise VerificationError("intel.crl.signature",
                                f"{what} CRL is not signed by {issuer.subject.rfc4514_string()}")
    nxt = crl.next_update_utc
    if not crl.last_update_utc <= now or nxt is None or now > nxt:
        raise VerificationError("intel.crl.stale", f"{what} CRL not current at {now.isoformat()}")
    if crl.get_revoked_certificate_by_serial_number(subject.serial_number) is not None:
        raise VerificationError("intel.chain.revoked",
                                f"{subject.subject.rfc4514_string()} is revoked by the {what} CRL")


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


def _verify_signed_json(kind: str, raw: bytes | None, sig: bytes | None, *,
                        chain: tuple[x509.Certificate, ...], root: x509.Certificate,
                        root_crl: x509.CertificateRevocationList | None, now: datetime,
                        checks: list[Finding]) -> bool:
    """Verify one signed collateral object (``tcb_info`` / ``qe_identity``)."""
    if raw is None:
        _skip(checks, f"intel.{kind}.signature", kind, "absent from the collateral")
        return False
    if sig is None or not chain:
        raise CollateralError(f"{kind} is present but its signature or issuer chain is not")
    signers = [c for c in chain if c.issuer != c.subject]
    if len(signers) != 1:
        raise VerificationError(f"intel.{kind}.chain",
                                f"{kind} issuer chain must hold one signing certificate")
    signer = signers[0]
    for c in chain:
        if c.issuer == c.subject and _fp(c) != _fp(root):
            raise VerificationError(f"intel.{kind}.chain",
                                    f"{kind} issuer chain ends in another root than the PCK's")
    if not _issued_by(signer, root):
        raise VerificationError(f"intel.{kind}.chain",
                                f"{kind} signing certificate is not signed by the root")
    _check_validity(signer, now, f"intel.{kind}.chain", f"{kind} signing certificate")
    if root_crl is not None and root_crl.get_revoked_certificate_by_serial_number(
            signer.serial_number) is not None:
        raise VerificationError("intel.chain.revoked", f"{kind} signing certificate revoked")
    if not _ecdsa_ok(signer.public_key(), sig, raw):
        raise VerificationError(f"intel.{kind}.signature",
                                f"{kind} signature does not verify over its JSON bytes")
    _pass(checks, f"intel.{kind}.signature", kind, got=signer.subject.rfc4514_string())
    return True


def _current(kind: str, issue: datetime, nxt: datetime, now: datetime,
             checks: list[Finding]) -> None:
    if not issue <= now <= nxt:
        raise VerificationError(f"intel.{kind}.expired",
                                f"{kind} valid {issue.isoformat()}..{nxt.isoformat()}, "
                                f"not at {now.isoformat()}")
    _pass(checks, f"intel.{kind}.current", "issueDate..nextUpdate", got=now.isoformat(),
          want=f"{issue.isoformat()}..{nxt.isoformat()}")


def verify_quote(quote: Quote | bytes, collateral: IntelCollateral | None = None, *,
                 now: datetime,
                 trusted_roots: Iterable[str | x509.Certificate] | None = None) -> VerifiedQuote:
    """Verify ``quote`` at ``now`` against the pinned Intel SGX Root CA and ``collateral``.

    ``trusted_roots`` replaces the production pin (SHA-256 hex strings or certificates):
    pass a non-production root explicitly to accept its chains. Raises
    :class:`~veritee.errors.VerificationError` (stable ``code``),
    :class:`~veritee.errors.FormatError` (bytes) or :class:`~veritee.errors.CollateralError`.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    q = quote if isinstance(quote, Quote) else Quote.from_bytes(quote)
    col = collateral or IntelCollateral()
    pins = ({INTEL_SGX_ROOT_CA_SHA256} if trusted_roots is None else
            {r.lower() if isinstance(r, str) else _fp(r) for r in trusted_roots})
    checks: list[Finding] = []
    sig = q.signature_data
    qe = sig.qe

    # 1. PCK chain.
    chain_bytes = qe.certification_data.pck_chain_bytes
    if chain_bytes is not None:
        certs = load_certificates(chain_bytes, structure="QuoteCertificationData.pck_chain")
    elif col.pck_chain:
        certs = col.pck_chain
    else:
        raise CollateralError(f"quote certification data type {qe.certification_data.cert_type}"
                              " carries no PCK chain; pass IntelCollateral(pck_chain=...)")
    chain = _order_chain(certs)
    pck, root = chain[0], chain[-1]
    if _fp(root) not in pins:
        raise VerificationError("intel.chain.root_untrusted",
                                f"root {_fp(root)} is not a trusted Intel SGX Root CA")
    if not _issued_by(root, root):
        raise VerificationError("intel.chain.signature", "root is not self-signed")
    for child, parent in itertools.pairwise(chain):
        if not _issued_by(child, parent):
            raise VerificationError("intel.chain.signature",
                                    f"{child.subject.rfc4514_string()} is not signed by "
                                    f"{parent.subject.rfc4514_string()}")
    _pass(checks, "intel.chain.signature", "PCK chain", got=len(chain),
          message=" <- ".join(c.subject.rfc4514_string() for c in chain))
    _pass(checks, "intel.chain.root", "root SHA-256", got=_fp(root))
    for c in chain:
        _check_validity(c, now, "intel.chain.expired", c.subject.rfc4514_string())
    _pass(checks, "intel.chain.validity", "notBefore..notAfter", got=now.isoformat())
    crl_checked = False
    if col.root_ca_crl is not None:
        for c in chain[1:-1]:
            _check_crl(col.root_ca_crl, root, c, now, "root CA")
        _pass(checks, "intel.crl.root", "root CA CRL", got="not revoked")
        crl_checked = True
    else:
        _skip(checks, "intel.crl.root", "root CA CRL", "absent from the collateral")
    if col.pck_crl is not None:
        _check_crl(col.pck_crl, chain[1], pck, now, "PCK")
        _pass(checks, "intel.crl.pck", "PCK CRL", got="not revoked")
        crl_checked = True
    else:
        _skip(checks, "intel.crl.pck", "PCK CRL", "absent from the collateral")

    # 2. QE report signed by the PCK key.
    if not _ecdsa_ok(pck.public_key(), qe.qe_report_signature, qe.qe_report_bytes):
        raise VerificationError("intel.qe_report.signature",
                                "QE report signature does not verify with the PCK key")
    _pass(checks, "intel.qe_report.signature", "QE report")

    # 3. QE report data binds the attestation key.
    want = hashlib.sha256(sig.attestation_key + qe.qe_auth_data).digest()
    got = qe.qe_report.report_data
    if got[:32] != want or any(got[32:]):
        raise VerificationError("intel.qe_report.binding",
                                f"QE REPORTDATA {got.hex()} != SHA-256(key||auth) {want.hex()}")
    _pass(checks, "intel.qe_report.binding", "QE REPORTDATA", got=got[:32])

    # 4. Quote signature by the attestation key.
    if not _ecdsa_ok(_p256_key(sig.attestation_key), sig.signature, q.signed_bytes):
        raise VerificationError("intel.quote.signature",
                                "quote signature does not verify with the attestation key")
    _pass(checks, "intel.quote.signature", "header||body")

    # 5. PCK extensions.
    ext = _pck_extensions(pck)
    _pass(checks, "intel.pck.extensions", "FMSPC", got=ext.fmspc)

    # 6. Collateral.
    tcb_info = qe_identity = None
    if _verify_signed_json("tcb_info", col.tcb_info, col.tcb_info_signature,
                           chain=col.tcb_info_issuer_chain, root=root,
                           root_crl=col.root_ca_crl, now=now, checks=checks):
        assert col.tcb_info is not None
        tcb_info = TcbInfo.from_json(col.tcb_info)
        _current("tcb_info", tcb_info.issue_date, tcb_info.next_update, now, checks)
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
        _pass(checks, "intel.tcb_info.match", "FMSPC/PCE-ID", got=ext.fmspc)
    if _verify_signed_json("qe_identity", col.qe_identity, col.qe_identity_signature,
                           chain=col.qe_identity_issuer_chain, root=root,
                           root_crl=col.root_ca_crl, now=now, checks=checks):
        assert col.qe_identity is not None
        qe_identity = EnclaveIdentity.from_json(col.qe_identity)
        _current("qe_identity", qe_identity.issue_date, qe_identity.next_update, now, checks)
        _check_qe_identity(qe.qe_report, qe_identity, q.is_tdx)
        _pass(checks, "intel.qe_identity.match", "QE MRSIGNER/ISVPRODID/attributes",
              got=qe.qe_report.mr_signer)
    tcb = evaluate_tcb(q, ext, tcb_info, qe_identity) if tcb_info is not None else None
    return VerifiedQuote(quote=q, pck_chain=chain, pck=ext, root_fingerprint=_fp(root),
                         checks=tuple(checks), checked_at=now, tcb=tcb, tcb_info=tcb_info,
                         qe_identity=qe_identity, crl_checked=crl_checked)


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
