"""SEV-SNP report verification: VEK signature, AMD certificate chain, CRL, VEK/report binding.

CONTRACT (owned by the trust helper; the types below are shared with policy/attest/CLI and must
keep these fields; more fields may be added).

Sources: AMD SEV-SNP ABI 56860 (report layout, SIGNER_INFO, the ECDSA P-384 signature over bytes
0x000-0x29F) and AMD 57230 (VCEK/VLEK certificate profile, extension OIDs, KDS chains). The chain
is ARK (pinned, self-signed) -> ASK (VCEK chains) or ASVK (VLEK chains) -> VEK, every link
RSASSA-PSS SHA-384/MGF1-SHA-384/salt 48; the CRL (KDS ``/vcek/v1/<product>/crl``) is signed by
the ARK.

Every ``verify_*`` raises :class:`~veritee.errors.VerificationError` with a stable code on the
first failed step; missing collateral raises :class:`~veritee.errors.CollateralError`; bytes that
do not parse raise :class:`~veritee.errors.FormatError`. On success each step that ran is a
passed :class:`~veritee.findings.Finding` in ``VerifiedReport.checks``.

Deliberately not checked here (policy's job): guest policy, measurement, TCB minimums, VMPL,
report_data, and the launch/committed/current TCB relationships.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.crypto.amd_certs import (
    AMD_PSS,
    OID_AMD,
    OID_BASIC_CONSTRAINTS,
    OID_KEY_USAGE,
    AmdCertificate,
    PssParams,
    decode_hwid,
    decode_ia5string,
    decode_integer,
    signature_algorithm,
)
from veritee.errors import CollateralError, FormatError, VerificationError
from veritee.findings import Finding, skipped
from veritee.findings import passed as _ok
from veritee.formats.sevsnp import (
    SIGNATURE_ALGO_ECDSA_P384_SHA384,
    AttestationReport,
    Product,
    SigningKey,
    TcbVersion,
)
from veritee.trust._common import WindowCache, check_crl, check_validity, require_aware
from veritee.trust.roots import TrustAnchors

__all__ = [
    "AmdCertificates",
    "ChainCache",
    "VekInfo",
    "VerifiedReport",
    "parse_vek_extensions",
    "verify_chain",
    "verify_report",
]


@dataclass(frozen=True)
class VekInfo:
    """What AMD's extensions in a VCEK/VLEK certificate say (OIDs 1.3.6.1.4.1.3704.1.*)."""

    kind: SigningKey  # VCEK or VLEK
    product: Product
    product_name: str  # as in the certificate, e.g. "Milan-B0"
    struct_version: int | None
    tcb: TcbVersion  # bl/tee/snp/ucode (+fmc for Turin) SPLs, in the product's layout
    hwid: bytes | None  # 64 bytes (Milan/Genoa) or 8 bytes (Turin); VCEK only
    csp_id: str | None  # VLEK only


@dataclass(frozen=True)
class VerifiedReport:
    """A report whose signature, chain and revocation status were checked at ``checked_at``.

    ``chain`` holds :class:`~veritee.crypto.amd_certs.AmdCertificate` objects, which have the
    attribute names of ``cryptography.x509.Certificate`` (``subject``, ``serial_number``,
    ``not_valid_after_utc``, ``public_bytes``...) and ``to_x509()``; AMD's serial-0 VCEKs cannot
    be loaded by ``cryptography`` without its deprecated path.
    """

    report: AttestationReport
    product: Product
    vek: VekInfo
    chain: tuple[AmdCertificate, ...]  # (VEK, ASK or ASVK, ARK)
    ark_fingerprint: str  # SHA-256 hex of the ARK's DER
    checks: tuple[Finding, ...]  # every verification step that ran, all passed
    checked_at: datetime | None = None
    crl_checked: bool = False


@dataclass(frozen=True, init=False)
class AmdCertificates:
    """The collateral for one report: ARK, ASK (or ASVK for VLEK chains), VEK and CRL.

    Any may be ``None`` (not supplied yet); verification raises ``CollateralError`` naming the
    missing ones. Certificates may be given as ``cryptography`` objects; they are kept as
    :class:`AmdCertificate` (same DER). It lives in ``trust`` so that ``trust`` never imports
    ``collateral``.
    """

    ark: AmdCertificate | None
    ask: AmdCertificate | None
    vek: AmdCertificate | None
    crl: x509.CertificateRevocationList | None

    def __init__(self, ark: AmdCertificate | x509.Certificate | None = None,
                 ask: AmdCertificate | x509.Certificate | None = None,
                 vek: AmdCertificate | x509.Certificate | None = None,
                 crl: x509.CertificateRevocationList | None = None) -> None:
        object.__setattr__(self, "ark", _as_amd(ark))
        object.__setattr__(self, "ask", _as_amd(ask))
        object.__setattr__(self, "vek", _as_amd(vek))
        object.__setattr__(self, "crl", crl)

    def merged(self, other: AmdCertificates) -> AmdCertificates:
        """A copy whose missing pieces are taken from ``other`` (present ones are kept)."""
        return AmdCertificates(ark=self.ark or other.ark, ask=self.ask or other.ask,
                               vek=self.vek or other.vek,
                               crl=self.crl if self.crl is not None else other.crl)

    def missing(self) -> list[str]:
        """Names of the certificates (not the CRL) that are absent."""
        return [n for n in ("ark", "ask", "vek") if getattr(self, n) is None]


# -- helpers -------------------------------------------------------------------------------
def _as_amd(cert: AmdCertificate | x509.Certificate | None) -> AmdCertificate | None:
    if cert is None or isinstance(cert, AmdCertificate):
        return cert
    return AmdCertificate.from_der(cert.public_bytes(serialization.Encoding.DER))


def _fail(code: str, field: str, got: object, want: object) -> VerificationError:
    return VerificationError(code, f"{field}: got {_show(got)}, want {_show(want)}")


def _show(v: object) -> str:
    if isinstance(v, bytes):
        return v.hex() if len(v) <= 32 else v[:32].hex() + f"... ({len(v)} bytes)"
    return str(v)


def _cn(name: x509.Name) -> str | None:
    cns = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cns[0].value) if len(cns) == 1 else None


def _check_pss_params(params: PssParams | None, oid: str, field: str) -> None:
    # 57230: RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48 (trailer 1; AMD writes it out).
    if params is None or not params.is_amd:
        got = oid if params is None else (f"hash={params.hash_oid} mgf={params.mgf_oid}/"
                                          f"{params.mgf_hash_oid} salt={params.salt_length} "
                                          f"trailer={params.trailer_field}")
        raise _fail("sevsnp.chain.signature_algorithm", field, got,
                    "RSASSA-PSS SHA-384 MGF1-SHA-384 salt 48")


def _verify_pss(key: object, signature: bytes, data: bytes, code: str, field: str) -> None:
    if not isinstance(key, rsa.RSAPublicKey):
        raise _fail(code, field, type(key).__name__, "an RSA issuer key")
    try:
        key.verify(signature, data, AMD_PSS, hashes.SHA384())
    except InvalidSignature:
        raise _fail(code, field, "signature does not verify", "signed by the issuer") from None


def _vek_kind_from_cn(cert: AmdCertificate) -> SigningKey | None:
    return {"SEV-VCEK": SigningKey.VCEK, "SEV-VLEK": SigningKey.VLEK}.get(cert.common_name or "")


# -- VEK extensions ------------------------------------------------------------------------
def parse_vek_extensions(cert: AmdCertificate) -> VekInfo:
    """Read AMD's extensions (57230 "VCEK Certificate Extensions") from a VCEK or VLEK.

    SPLs are DER INTEGERs in 0..255, productName an IA5String ("Milan-B0", "Genoa", "Turin"),
    hwID 64 bytes (Milan/Genoa) or 8 bytes (Turin, which adds fmcSPL and structVersion 1),
    raw as KDS issues it or wrapped in an OCTET STRING. A VLEK carries cspID instead of hwID.
    Raises :class:`FormatError` when an extension is missing or malformed.
    """
    def value(oid: str, name: str, *, required: bool = True) -> bytes | None:
        ext = cert.extension(oid)
        if ext is None and required:
            raise FormatError("VEK", name, got="absent", want=f"extension {oid}")
        return None if ext is None else ext.value

    def spl(oid: str, name: str, *, required: bool = True) -> int | None:
        raw = value(oid, name, required=required)
        if raw is None:
            return None
        v = decode_integer(raw, name)
        if not 0 <= v <= 0xFF:
            raise FormatError("VEK", name, got=v, want="0..255")
        return v

    name_raw = value(OID_AMD.PRODUCT_NAME, "productName")
    assert name_raw is not None  # required=True
    product_name = decode_ia5string(name_raw, "productName")
    try:
        product = Product(product_name.split("-", 1)[0])
    except ValueError:
        raise FormatError("VEK", "productName", got=product_name,
                          want="Milan[-stepping], Genoa[-...] or Turin[-...]") from None
    sv_raw = value(OID_AMD.STRUCT_VERSION, "structVersion", required=False)
    struct_version = None if sv_raw is None else decode_integer(sv_raw, "structVersion")
    for oid, name in ((OID_AMD.SPL_4, "spl_4"), (OID_AMD.SPL_5, "spl_5"),
                      (OID_AMD.SPL_6, "spl_6"), (OID_AMD.SPL_7, "spl_7")):
        spl(oid, name, required=False)  # reserved SPLs: validated when present
    turin = product is Product.TURIN
    fmc = spl(OID_AMD.FMC_SPL, "fmcSPL", required=turin)
    if not turin and fmc is not None:
        raise FormatError("VEK", "fmcSPL", got=fmc, want=f"absent for {product.value}")
    tcb = TcbVersion(bootloader=spl(OID_AMD.BL_SPL, "blSPL") or 0,
                     tee=spl(OID_AMD.TEE_SPL, "teeSPL") or 0,
                     snp=spl(OID_AMD.SNP_SPL, "snpSPL") or 0,
                     microcode=spl(OID_AMD.UCODE_SPL, "ucodeSPL") or 0, fmc=fmc)
    hwid_raw = value(OID_AMD.HWID, "hwID", required=False)
    csp_raw = value(OID_AMD.CSP_ID, "cspID", required=False)
    if (hwid_raw is None) == (csp_raw is None):
        raise FormatError("VEK", "hwID/cspID", got="both" if hwid_raw else "neither",
                          want="hwID (VCEK) or cspID (VLEK)")
    if hwid_raw is not None:
        return VekInfo(SigningKey.VCEK, product, product_name, struct_version, tcb,
                       decode_hwid(hwid_raw, 8 if turin else 64), None)
    assert csp_raw is not None
    return VekInfo(SigningKey.VLEK, product, product_name, struct_version, tcb, None,
                   decode_ia5string(csp_raw, "cspID"))


# -- chain ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Chain:
    findings: tuple[Finding, ...]
    product: Product
    vek: VekInfo
    vek_key: ec.EllipticCurvePublicKey
    certs: tuple[AmdCertificate, AmdCertificate, AmdCertificate]
    ark_fingerprint: str
    not_before: datetime
    not_after: datetime
    crl_checked: bool


def _require(certs: AmdCertificates) -> tuple[AmdCertificate, AmdCertificate, AmdCertificate]:
    if certs.ark is None or certs.ask is None or certs.vek is None:
        raise CollateralError("SEV-SNP verification needs the ARK, ASK/ASVK and VEK; missing: "
                              + ", ".join(certs.missing()))
    return certs.ark, certs.ask, certs.vek


def _verify_chain(certs: AmdCertificates, anchors: TrustAnchors, now: datetime,
                  kind: SigningKey, crl: x509.CertificateRevocationList | None) -> _Chain:
    ark, ask, vek = _require(certs)
    out: list[Finding] = []
    inter = "ASVK" if kind is SigningKey.VLEK else "ASK"
    if kind not in (SigningKey.VCEK, SigningKey.VLEK):
        raise _fail("sevsnp.report.signing_key", "signing_key", kind.name, "VCEK or VLEK")

    # C1. The ARK is one of the pinned roots (DER SHA-256); everything else hangs off it.
    product = anchors.product_of(ark)
    if product is None:
        raise _fail("sevsnp.chain.ark_untrusted", "ARK sha256", ark.sha256,
                    f"one of the {anchors.name} trust anchors")
    out.append(_ok("sevsnp.chain.ark", "ARK sha256", ark.sha256, anchors.name))

    # C2. Every certificate declares RSASSA-PSS/SHA-384/MGF1-SHA-384/salt 48 (57230).
    for cert, role in ((ark, "ARK"), (ask, inter), (vek, "VEK")):
        _check_pss_params(cert.pss, cert.signature_algorithm_oid.dotted_string,
                          f"{role}.signatureAlgorithm")
    out.append(_ok("sevsnp.chain.signature_algorithm", "signatureAlgorithm",
                   "RSASSA-PSS SHA-384 salt 48"))

    # C3. The ARK is self-issued and self-signed.
    if ark.issuer != ark.subject:
        raise _fail("sevsnp.chain.issuer_mismatch", "ARK.issuer", ark.issuer.rfc4514_string(),
                    ark.subject.rfc4514_string())
    _verify_pss(ark.public_key(), ark.signature, ark.tbs_certificate_bytes,
                "sevsnp.chain.ark_signature", "ARK.signature")
    out.append(_ok("sevsnp.chain.ark_signature", "ARK.signature", "self-signed"))

    # C4. The ASK (VCEK chain) or ASVK (VLEK chain) is issued and signed by the ARK.
    if ask.issuer != ark.subject:
        raise _fail("sevsnp.chain.issuer_mismatch", f"{inter}.issuer",
                    ask.issuer.rfc4514_string(), ark.subject.rfc4514_string())
    _verify_pss(ark.public_key(), ask.signature, ask.tbs_certificate_bytes,
                "sevsnp.chain.ask_signature", f"{inter}.signature")
    out.append(_ok("sevsnp.chain.ask_signature", f"{inter}.signature", "signed by ARK"))

    # C5. The VEK is issued and signed by the ASK/ASVK.
    if vek.issuer != ask.subject:
        raise _fail("sevsnp.chain.issuer_mismatch", "VEK.issuer", vek.issuer.rfc4514_string(),
                    ask.subject.rfc4514_string())
    _verify_pss(ask.public_key(), vek.signature, vek.tbs_certificate_bytes,
                "sevsnp.chain.vek_signature", "VEK.signature")
    out.append(_ok("sevsnp.chain.vek_signature", "VEK.signature", f"signed by {inter}"))

    # C6. Names say one product and the right key kind: ARK-<P>, SEV-<P> / SEV-VLEK-<P>, and
    #     SEV-VCEK / SEV-VLEK (57230 certificate profiles); <P> is the pinned ARK's product.
    want_ark = f"ARK-{product.value}"
    want_ask = f"SEV-VLEK-{product.value}" if kind is SigningKey.VLEK else f"SEV-{product.value}"
    want_vek = "SEV-VLEK" if kind is SigningKey.VLEK else "SEV-VCEK"
    if ark.common_name != want_ark:
        raise _fail("sevsnp.chain.product_mismatch", "ARK.CN", ark.common_name, want_ark)
    if ask.common_name != want_ask:
        raise _fail("sevsnp.chain.product_mismatch", f"{inter}.CN", ask.common_name, want_ask)
    if vek.common_name != want_vek:
        raise _fail("sevsnp.vek.kind_mismatch", "VEK.CN", vek.common_name, want_vek)
    out.append(_ok("sevsnp.chain.product", "CN", product.value,
                   f"{want_ark} / {want_ask} / {want_vek}"))

    # C7. ARK and ASK/ASVK are CAs allowed to sign certificates; no unknown critical extension.
    for cert, role in ((ark, "ARK"), (ask, inter)):
        if not cert.basic_constraints_ca() or 5 not in cert.key_usage_bits():
            raise _fail("sevsnp.chain.ca_constraints", f"{role}.basicConstraints/keyUsage",
                        "not a certificate-signing CA", "cA TRUE and keyCertSign")
    for cert, role in ((ark, "ARK"), (ask, inter), (vek, "VEK")):
        unknown = [e.oid for e in cert.extensions if e.critical
                   and e.oid not in (OID_BASIC_CONSTRAINTS, OID_KEY_USAGE)]
        if unknown:
            raise _fail("sevsnp.chain.critical_extension", f"{role}.extensions", unknown,
                        "no unknown critical extension")
    out.append(_ok("sevsnp.chain.ca_constraints", "basicConstraints/keyUsage", "CA, keyCertSign"))

    # C8. The VEK's AMD extensions: kind and product agree with the chain; P-384 key.
    info = parse_vek_extensions(vek)
    if info.kind is not kind:
        raise _fail("sevsnp.vek.kind_mismatch", "VEK extensions", info.kind.name, kind.name)
    if info.product is not product:
        raise _fail("sevsnp.vek.product_mismatch", "VEK.productName", info.product_name,
                    f"{product.value}[-...]")
    out.append(_ok("sevsnp.vek.product", "VEK.productName", info.product_name,
                   product.value))
    vek_key = vek.public_key()
    if not (isinstance(vek_key, ec.EllipticCurvePublicKey)
            and isinstance(vek_key.curve, ec.SECP384R1)):
        raise _fail("sevsnp.vek.key", "VEK.subjectPublicKeyInfo", type(vek_key).__name__,
                    "ECDSA P-384")
    out.append(_ok("sevsnp.vek.key", "VEK.subjectPublicKeyInfo", "ECDSA P-384"))

    # C9. Every certificate is valid at `now`.
    for cert, role in ((ark, "ARK"), (ask, inter), (vek, "VEK")):
        check_validity(cert, now, code="sevsnp.chain", what=f"{role}.validity")
    not_before = max(c.not_valid_before_utc for c in (ark, ask, vek))
    not_after = min(c.not_valid_after_utc for c in (ark, ask, vek))
    out.append(_ok("sevsnp.chain.validity", "validity", now.isoformat(),
                   f"{not_before.isoformat()}..{not_after.isoformat()}"))

    # C10. Revocation: the CRL is the ARK's, signed by it, current, and lists neither the
    #      ASK/ASVK nor the VEK.
    if crl is not None:
        lo, hi = _check_crl(crl, ark, now, ((ask, inter), (vek, "VEK")))
        not_before, not_after = max(not_before, lo), min(not_after, hi)
        out.append(_ok("sevsnp.chain.revocation", "CRL", f"{len(crl)} revoked serial(s)",
                       f"{inter} and VEK not listed"))
    return _Chain(tuple(out), product, info, vek_key, (vek, ask, ark), ark.sha256, not_before,
                  not_after, crl is not None)


def _check_crl(crl: x509.CertificateRevocationList, ark: AmdCertificate, now: datetime,
               subjects: tuple[tuple[AmdCertificate, str], ...]) -> tuple[datetime, datetime]:
    def signed() -> bool:
        # AMD signs its CRL with RSASSA-PSS (57230); the generic CRL check cannot judge the
        # parameters, so they and the signature are checked here (raising with the reason).
        alg_oid, pss = signature_algorithm(crl.public_bytes(serialization.Encoding.DER))
        if 6 not in ark.key_usage_bits():
            raise _fail("sevsnp.crl.signature", "ARK.keyUsage", "no cRLSign", "cRLSign")
        try:
            _check_pss_params(pss, alg_oid, "CRL.signatureAlgorithm")
        except VerificationError as exc:
            raise VerificationError("sevsnp.crl.signature", str(exc)) from None
        _verify_pss(ark.public_key(), crl.signature, crl.tbs_certlist_bytes,
                    "sevsnp.crl.signature", "CRL.signature")
        return True

    return check_crl(crl, ark, now, scheme="sevsnp", what="ARK", subjects=subjects,
                     verify_signature=signed)


def verify_chain(certs: AmdCertificates, *, anchors: TrustAnchors, now: datetime,
                 kind: SigningKey,
                 crl: x509.CertificateRevocationList | None = None) -> tuple[Finding, ...]:
    """Verify ARK -> ASK/ASVK -> VEK for a ``kind`` (VCEK or VLEK) key at ``now``.

    ``crl`` (or ``certs.crl`` when ``crl`` is not given) is checked when present. Returns the
    passed checks; raises :class:`VerificationError` (or :class:`CollateralError` when a
    certificate is missing).
    """
    require_aware(now)
    return _verify_chain(certs, anchors, now, kind, crl if crl is not None else certs.crl).findings


# -- cache ---------------------------------------------------------------------------------
_Key = tuple[bytes, bytes, bytes, TrustAnchors, SigningKey, bytes | None]


class ChainCache(WindowCache[_Chain]):
    """Validated (ARK, ASK/ASVK, VEK[, CRL]) chains, reused only inside their validity window.

    The key is the DER of the three certificates, the trust anchors, the key kind and the CRL's
    DER, so a different CRL or anchor set is a different entry. An entry is used only while
    ``now`` lies within every certificate's validity and the CRL's thisUpdate..nextUpdate; the
    VEK public key is kept parsed, so a warm ``verify_report`` costs about one ECDSA verify.
    Thread-safe; least-recently-used entries beyond ``max_entries`` are dropped
    (:class:`veritee.trust._common.WindowCache`).
    """


# -- report --------------------------------------------------------------------------------
def verify_report(report: AttestationReport, certs: AmdCertificates, *,
                  anchors: TrustAnchors, now: datetime, require_crl: bool = False,
                  cache: ChainCache | None = None) -> VerifiedReport:
    """Verify an SEV-SNP report against its VEK chain at ``now``; see the module docstring.

    Raises :class:`VerificationError` with the failed step's code, :class:`CollateralError`
    when a certificate (or, with ``require_crl``, the CRL) is missing.
    """
    require_aware(now)
    checks: list[Finding] = []

    # 1. The only signature algorithm ABI 56860 defines: ECDSA P-384 with SHA-384.
    if report.signature_algo != SIGNATURE_ALGO_ECDSA_P384_SHA384:
        raise _fail("sevsnp.report.signature_algo", "SIGNATURE_ALGO", report.signature_algo, 1)
    checks.append(_ok("sevsnp.report.signature_algo", "SIGNATURE_ALGO", 1, 1))

    # 2. SIGNER_INFO.SIGNING_KEY names a VCEK or VLEK (7 = the report is unsigned).
    kind = report.signer_info.signing_key
    if kind not in (SigningKey.VCEK, SigningKey.VLEK):
        raise _fail("sevsnp.report.signing_key", "SIGNER_INFO.SIGNING_KEY", kind.name,
                    "VCEK or VLEK")

    # 3. Collateral is present.
    ark, ask, vek = _require(certs)
    if require_crl and certs.crl is None:
        raise CollateralError("SEV-SNP verification requires the ARK's CRL; missing: crl")

    # 4. The certificate is the kind of key the report says signed it.
    cert_kind = _vek_kind_from_cn(vek)
    if cert_kind is not kind:
        raise _fail("sevsnp.report.signing_key", "SIGNER_INFO.SIGNING_KEY", kind.name,
                    f"the certificate's kind ({vek.common_name})")
    checks.append(_ok("sevsnp.report.signing_key", "SIGNER_INFO.SIGNING_KEY", kind.name,
                      vek.common_name))

    # 5. The chain (C1-C10 above), from the cache when still valid at `now`.
    crl = certs.crl
    key: _Key = (ark.der, ask.der, vek.der, anchors, kind,
                 None if crl is None else crl.public_bytes(serialization.Encoding.DER))
    chain = cache.get(key, now) if cache is not None else None
    if chain is None:
        chain = _verify_chain(certs, anchors, now, kind, crl)
        if cache is not None:
            cache.put(key, chain)
        checks += chain.findings
    else:
        checks += chain.findings
        checks.append(_ok("sevsnp.chain.cached", "chain", "cached",
                          f"{chain.not_before.isoformat()}..{chain.not_after.isoformat()}"))
    info = chain.vek

    # 6. The report's CPUID (v3+) names the chain's product; v2 reports carry no CPUID.
    if report.cpuid is not None:
        if report.cpuid.product is not chain.product:
            got = report.cpuid.product.value if report.cpuid.product else (
                f"family 0x{report.cpuid.family:02x} model 0x{report.cpuid.model:02x}")
            raise _fail("sevsnp.vek.product_mismatch", "CPUID", got, chain.product.value)
        checks.append(_ok("sevsnp.vek.product", "CPUID", chain.product.value,
                          chain.product.value))
    else:
        checks.append(skipped("sevsnp.vek.product", "CPUID",
                              f"report v{report.version} has no CPUID"))

    # 7. The VEK was issued for the TCB the report claims (57230: SPL extensions = REPORTED_TCB).
    if info.tcb != report.reported_tcb:
        diff = {k: (v, info.tcb.components().get(k))
                for k, v in report.reported_tcb.components().items()
                if info.tcb.components().get(k) != v}
        raise _fail("sevsnp.vek.tcb_mismatch", "REPORTED_TCB vs VEK SPLs",
                    str(report.reported_tcb), f"{info.tcb} (differs: {diff})")
    checks.append(_ok("sevsnp.vek.tcb", "REPORTED_TCB", str(report.reported_tcb),
                      str(info.tcb)))

    # 8. A VCEK belongs to this chip: hwID = CHIP_ID (Turin: the 8-byte hwID = CHIP_ID[0:8], as
    #    AMD's KDS identifies Turin chips; the rest of CHIP_ID is covered by the signature, not
    #    by the VCEK). A guest launched with MASK_CHIP_ID gets an all-zero CHIP_ID, which then
    #    cannot be matched: recorded, as go-sev-guest keys this skip on a zero CHIP_ID (keying
    #    it on MASK_CHIP_KEY, which masks the signing key, wrongly rejected such hosts).
    if info.kind is SigningKey.VCEK and info.hwid is not None:
        if not any(report.chip_id):
            checks.append(skipped("sevsnp.vek.hwid", "CHIP_ID",
                                  "CHIP_ID is zero (MASK_CHIP_ID): hwID not matched"))
        else:
            n = len(info.hwid)
            if report.chip_id[:n] != info.hwid:
                raise _fail("sevsnp.vek.hwid_mismatch", "CHIP_ID", report.chip_id, info.hwid)
            checks.append(_ok("sevsnp.vek.hwid", "CHIP_ID", info.hwid, info.hwid))
    else:
        checks.append(skipped("sevsnp.vek.hwid", "CHIP_ID", "VLEK: bound to a CSP, not a chip",
                              got=info.csp_id))

    # 9. The report signature: ECDSA P-384/SHA-384 over bytes 0x000-0x29F (ABI 56860).
    sig = encode_dss_signature(report.signature.r, report.signature.s)
    try:
        chain.vek_key.verify(sig, report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise _fail("sevsnp.report.signature", "SIGNATURE", "does not verify",
                    f"signed by the {kind.name}") from None
    checks.append(_ok("sevsnp.report.signature", "SIGNATURE", "ECDSA P-384 SHA-384",
                      kind.name))

    return VerifiedReport(report=report, product=chain.product, vek=info, chain=chain.certs,
                          ark_fingerprint=chain.ark_fingerprint, checks=tuple(checks),
                          checked_at=now, crl_checked=chain.crl_checked)
