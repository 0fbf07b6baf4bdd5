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

import threading
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property, lru_cache

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
    CrlParts,
    PssParams,
    crl_parts,
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
_SHA384 = hashes.SHA384()
_ECDSA_SHA384 = ec.ECDSA(_SHA384)

# A passed finding is immutable and most repeat from report to report (same chain, product,
# kind), so the same object is handed out again instead of being rebuilt.
_passed = lru_cache(maxsize=1024)(_ok)


@lru_cache(maxsize=256)
def _tcb_passed(reported: TcbVersion, certified: TcbVersion) -> Finding:
    return _ok("sevsnp.vek.tcb", "REPORTED_TCB", str(reported), str(certified))


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


def _check_pss_params(cert: AmdCertificate, role: str) -> None:
    if cert.pss is None or not cert.pss.is_amd:
        _check_pss(cert.pss, cert.signature_algorithm_oid, f"{role}.signatureAlgorithm")


def _check_pss(params: PssParams | None, oid: x509.ObjectIdentifier | str, field: str) -> None:
    # 57230: RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48 (trailer 1; AMD writes it out).
    if params is None or not params.is_amd:
        got = (oid if isinstance(oid, str) else oid.dotted_string) if params is None else (
            f"hash={params.hash_oid} mgf={params.mgf_oid}/{params.mgf_hash_oid} "
            f"salt={params.salt_length} trailer={params.trailer_field}")
        raise _fail("sevsnp.chain.signature_algorithm", field, got,
                    "RSASSA-PSS SHA-384 MGF1-SHA-384 salt 48")


def _verify_pss(key: object, signature: bytes, data: bytes, code: str,
                field: str) -> rsa.RSAPublicKey:
    """Verify one AMD RSASSA-PSS signature; return the key, known now to be RSA."""
    if not isinstance(key, rsa.RSAPublicKey):
        raise _fail(code, field, type(key).__name__, "an RSA issuer key")
    try:
        key.verify(signature, data, AMD_PSS, _SHA384)
    except InvalidSignature:
        raise _fail(code, field, "signature does not verify", "signed by the issuer") from None
    return key


_VEK_KINDS = {"SEV-VCEK": SigningKey.VCEK, "SEV-VLEK": SigningKey.VLEK}


def _vek_kind_from_cn(cert: AmdCertificate) -> SigningKey | None:
    return _VEK_KINDS.get(cert.common_name or "")


# -- VEK extensions ------------------------------------------------------------------------
def parse_vek_extensions(cert: AmdCertificate) -> VekInfo:
    """Read AMD's extensions (57230 "VCEK Certificate Extensions") from a VCEK or VLEK.

    SPLs are DER INTEGERs in 0..255, productName an IA5String ("Milan-B0", "Genoa", "Turin"),
    hwID 64 bytes (Milan/Genoa) or 8 bytes (Turin, which adds fmcSPL and structVersion 1),
    raw as KDS issues it or wrapped in an OCTET STRING. A VLEK carries cspID instead of hwID.
    Raises :class:`FormatError` when an extension is missing or malformed.
    """
    get = cert.extension_values.get  # one dict lookup per extension (read on every report)
    product_name = decode_ia5string(_present(get(OID_AMD.PRODUCT_NAME), OID_AMD.PRODUCT_NAME,
                                             "productName"), "productName")
    try:
        product = Product(product_name.split("-", 1)[0])
    except ValueError:
        raise FormatError("VEK", "productName", got=product_name,
                          want="Milan[-stepping], Genoa[-...] or Turin[-...]") from None
    sv_raw = get(OID_AMD.STRUCT_VERSION)
    struct_version = None if sv_raw is None else decode_integer(sv_raw, "structVersion")
    for oid, name in _RESERVED_SPLS:
        _spl(get(oid), name)  # reserved SPLs: validated when present
    turin = product is Product.TURIN
    fmc_raw = get(OID_AMD.FMC_SPL)
    fmc = _spl(_present(fmc_raw, OID_AMD.FMC_SPL, "fmcSPL") if turin else fmc_raw, "fmcSPL")
    if not turin and fmc is not None:
        raise FormatError("VEK", "fmcSPL", got=fmc, want=f"absent for {product.value}")
    tcb = TcbVersion(
        bootloader=_spl(_present(get(OID_AMD.BL_SPL), OID_AMD.BL_SPL, "blSPL"), "blSPL") or 0,
        tee=_spl(_present(get(OID_AMD.TEE_SPL), OID_AMD.TEE_SPL, "teeSPL"), "teeSPL") or 0,
        snp=_spl(_present(get(OID_AMD.SNP_SPL), OID_AMD.SNP_SPL, "snpSPL"), "snpSPL") or 0,
        microcode=_spl(_present(get(OID_AMD.UCODE_SPL), OID_AMD.UCODE_SPL, "ucodeSPL"),
                       "ucodeSPL") or 0,
        fmc=fmc)
    hwid_raw = get(OID_AMD.HWID)
    csp_raw = get(OID_AMD.CSP_ID)
    if (hwid_raw is None) == (csp_raw is None):
        raise FormatError("VEK", "hwID/cspID", got="both" if hwid_raw else "neither",
                          want="hwID (VCEK) or cspID (VLEK)")
    if hwid_raw is not None:
        return VekInfo(SigningKey.VCEK, product, product_name, struct_version, tcb,
                       decode_hwid(hwid_raw, 8 if turin else 64), None)
    assert csp_raw is not None
    return VekInfo(SigningKey.VLEK, product, product_name, struct_version, tcb, None,
                   decode_ia5string(csp_raw, "cspID"))


_RESERVED_SPLS = ((OID_AMD.SPL_4, "spl_4"), (OID_AMD.SPL_5, "spl_5"),
                  (OID_AMD.SPL_6, "spl_6"), (OID_AMD.SPL_7, "spl_7"))


def _present(raw: bytes | None, oid: str, name: str) -> bytes:
    if raw is None:
        raise FormatError("VEK", name, got="absent", want=f"extension {oid}")
    return raw


def _spl(raw: bytes | None, name: str) -> int | None:
    """An SPL extension's value (a DER INTEGER in 0..255), or None when absent."""
    if raw is None:
        return None
    if len(raw) == 3 and raw[0] == 0x02 and raw[1] == 1 and raw[2] < 0x80:
        return raw[2]  # a one-octet INTEGER 0..127, as KDS writes SPLs
    v = decode_integer(raw, name)
    if not 0 <= v <= 0xFF:
        raise FormatError("VEK", name, got=v, want="0..255")
    return v


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

    @cached_property
    def reused(self) -> Finding:
        """The finding that records a cache hit on this chain (made once per entry)."""
        return _ok("sevsnp.chain.cached", "chain", "cached",
                   f"{self.not_before.isoformat()}..{self.not_after.isoformat()}")


@dataclass(frozen=True)
class _ProductChain:
    """ARK -> ASK/ASVK (and the ARK's CRL) as verified for one key kind: what every VEK this
    ASK/ASVK issues shares, so that a new chip costs its VEK link and report signature.

    ``not_before..not_after`` is the ARK's, the ASK's and the CRL's windows together;
    ``certs_before..certs_after`` the certificates' alone (the validity finding says that).
    """

    product: Product
    ask_key: rsa.RSAPublicKey
    ark_found: Finding
    inter: str
    certs_before: datetime
    certs_after: datetime
    not_before: datetime
    not_after: datetime

    @cached_property
    def reused(self) -> Finding:
        """The finding that records a cache hit on this product chain (made once per entry)."""
        return _ok("sevsnp.chain.cached", f"ARK/{self.inter}", "cached",
                   f"{self.not_before.isoformat()}..{self.not_after.isoformat()}")


def _require(certs: AmdCertificates) -> tuple[AmdCertificate, AmdCertificate, AmdCertificate]:
    if certs.ark is None or certs.ask is None or certs.vek is None:
        raise CollateralError("SEV-SNP verification needs the ARK, ASK/ASVK and VEK; missing: "
                              + ", ".join(certs.missing()))
    return certs.ark, certs.ask, certs.vek


_SIGNATURE_ALGORITHM = _ok("sevsnp.chain.signature_algorithm", "signatureAlgorithm",
                           "RSASSA-PSS SHA-384 salt 48")
_CA_CONSTRAINTS = _ok("sevsnp.chain.ca_constraints", "basicConstraints/keyUsage",
                      "CA, keyCertSign")
_ARK_SIGNATURE = _ok("sevsnp.chain.ark_signature", "ARK.signature", "self-signed")
_VEK_KEY = _ok("sevsnp.vek.key", "VEK.subjectPublicKeyInfo", "ECDSA P-384")
_KNOWN_CRITICAL = (OID_BASIC_CONSTRAINTS, OID_KEY_USAGE)


@dataclass(frozen=True)
class _Profile:
    """What 57230 names for one product and key kind, and the findings that say so."""

    inter: str  # "ASK" (VCEK chains) or "ASVK" (VLEK chains)
    want_ark: str
    want_ask: str
    want_vek: str
    ask_signature: Finding
    vek_signature: Finding
    names: Finding


@lru_cache(maxsize=16)
def _profile(product: Product, kind: SigningKey) -> _Profile:
    vlek = kind is SigningKey.VLEK
    inter = "ASVK" if vlek else "ASK"
    want_ark = f"ARK-{product.value}"
    want_ask = f"SEV-VLEK-{product.value}" if vlek else f"SEV-{product.value}"
    want_vek = "SEV-VLEK" if vlek else "SEV-VCEK"
    return _Profile(inter, want_ark, want_ask, want_vek,
                    _ok("sevsnp.chain.ask_signature", f"{inter}.signature", "signed by ARK"),
                    _ok("sevsnp.chain.vek_signature", "VEK.signature", f"signed by {inter}"),
                    _ok("sevsnp.chain.product", "CN", product.value,
                        f"{want_ark} / {want_ask} / {want_vek}"))


def _verify_chain(certs: AmdCertificates, anchors: TrustAnchors, now: datetime,
                  kind: SigningKey, crl: x509.CertificateRevocationList | None, *,
                  crl_der: bytes | None = None,
                  known: _ProductChain | None = None,
                  keep: bool = False) -> tuple[_Chain, _ProductChain | None]:
    """C1-C10 in order. ``known`` is this exact ARK/ASK(/CRL)'s verified product chain (from
    :class:`ChainCache`, inside its window): its steps are then taken from it and only the
    VEK's run; without it every step runs and every signature is verified once. ``keep``
    asks for the verified product chain (to cache it) when it was not ``known``."""
    ark, ask, vek = _require(certs)
    if kind not in (SigningKey.VCEK, SigningKey.VLEK):
        raise _fail("sevsnp.report.signing_key", "signing_key", kind.name, "VCEK or VLEK")
    inter = "ASVK" if kind is SigningKey.VLEK else "ASK"

    # C1. The ARK is one of the pinned roots (DER SHA-256); everything else hangs off it.
    if known is None:
        product = anchors.product_of(ark)
        if product is None:
            raise _fail("sevsnp.chain.ark_untrusted", "ARK sha256", ark.sha256,
                        f"one of the {anchors.name} trust anchors")
        ark_found = _passed("sevsnp.chain.ark", "ARK sha256", ark.sha256, anchors.name)
    else:
        product, ark_found = known.product, known.ark_found
    names = _profile(product, kind)

    # C2. Every certificate declares RSASSA-PSS/SHA-384/MGF1-SHA-384/salt 48 (57230).
    if known is None:
        _check_pss_params(ark, "ARK")
        _check_pss_params(ask, inter)
    _check_pss_params(vek, "VEK")

    if known is None:
        # C3. The ARK is self-issued and self-signed.
        if not _same_name(ark.issuer, ark.subject):
            raise _fail("sevsnp.chain.issuer_mismatch", "ARK.issuer",
                        ark.issuer.rfc4514_string(), ark.subject.rfc4514_string())
        ark_key = ark.public_key()
        _verify_pss(ark_key, ark.signature, ark.tbs_certificate_bytes,
                    "sevsnp.chain.ark_signature", "ARK.signature")

        # C4. The ASK (VCEK chain) or ASVK (VLEK chain) is issued and signed by the ARK.
        if not _same_name(ask.issuer, ark.subject):
            raise _fail("sevsnp.chain.issuer_mismatch", f"{inter}.issuer",
                        ask.issuer.rfc4514_string(), ark.subject.rfc4514_string())
        _verify_pss(ark_key, ask.signature, ask.tbs_certificate_bytes,
                    "sevsnp.chain.ask_signature", f"{inter}.signature")
        ask_key = ask.public_key()
    else:
        ask_key = known.ask_key

    # C5. The VEK is issued and signed by the ASK/ASVK.
    if not _same_name(vek.issuer, ask.subject):
        raise _fail("sevsnp.chain.issuer_mismatch", "VEK.issuer", vek.issuer.rfc4514_string(),
                    ask.subject.rfc4514_string())
    ask_rsa = _verify_pss(ask_key, vek.signature, vek.tbs_certificate_bytes,
                          "sevsnp.chain.vek_signature", "VEK.signature")

    # C6. Names say one product and the right key kind: ARK-<P>, SEV-<P> / SEV-VLEK-<P>, and
    #     SEV-VCEK / SEV-VLEK (57230 certificate profiles); <P> is the pinned ARK's product.
    if known is None:
        if ark.common_name != names.want_ark:
            raise _fail("sevsnp.chain.product_mismatch", "ARK.CN", ark.common_name,
                        names.want_ark)
        if ask.common_name != names.want_ask:
            raise _fail("sevsnp.chain.product_mismatch", f"{inter}.CN", ask.common_name,
                        names.want_ask)
    if vek.common_name != names.want_vek:
        raise _fail("sevsnp.vek.kind_mismatch", "VEK.CN", vek.common_name, names.want_vek)

    # C7. ARK and ASK/ASVK are CAs allowed to sign certificates; no unknown critical extension.
    if known is None:
        for cert, role in ((ark, "ARK"), (ask, inter)):
            if not cert.basic_constraints_ca() or 5 not in cert.key_usage_bits():
                raise _fail("sevsnp.chain.ca_constraints", f"{role}.basicConstraints/keyUsage",
                            "not a certificate-signing CA", "cA TRUE and keyCertSign")
        _check_critical(ark, "ARK")
        _check_critical(ask, inter)
    _check_critical(vek, "VEK")

    # C8. The VEK's AMD extensions: kind and product agree with the chain; P-384 key.
    info = parse_vek_extensions(vek)
    if info.kind is not kind:
        raise _fail("sevsnp.vek.kind_mismatch", "VEK extensions", info.kind.name, kind.name)
    if info.product is not product:
        raise _fail("sevsnp.vek.product_mismatch", "VEK.productName", info.product_name,
                    f"{product.value}[-...]")
    vek_product = _passed("sevsnp.vek.product", "VEK.productName", info.product_name,
                          product.value)
    vek_key = vek.public_key()
    if not (isinstance(vek_key, ec.EllipticCurvePublicKey)
            and isinstance(vek_key.curve, ec.SECP384R1)):
        raise _fail("sevsnp.vek.key", "VEK.subjectPublicKeyInfo", type(vek_key).__name__,
                    "ECDSA P-384")

    # C9. Every certificate is valid at `now`.
    if known is None:
        check_validity(ark, now, code="sevsnp.chain", what="ARK.validity")
        check_validity(ask, now, code="sevsnp.chain", what=f"{inter}.validity")
        certs_before = max(ark.not_valid_before_utc, ask.not_valid_before_utc)
        certs_after = min(ark.not_valid_after_utc, ask.not_valid_after_utc)
    else:
        certs_before, certs_after = known.certs_before, known.certs_after
    check_validity(vek, now, code="sevsnp.chain", what="VEK.validity")
    not_before = max(certs_before, vek.not_valid_before_utc)
    not_after = min(certs_after, vek.not_valid_after_utc)
    out = [ark_found, _SIGNATURE_ALGORITHM, _ARK_SIGNATURE, names.ask_signature,
           names.vek_signature, names.names, _CA_CONSTRAINTS, vek_product, _VEK_KEY,
           _ok("sevsnp.chain.validity", "validity", now.isoformat(),
               _window_text(not_before, not_after))]

    # C10. Revocation: the CRL is the ARK's, signed by it, current, and lists neither the
    #      ASK/ASVK nor the VEK (a known product chain checked all but the VEK's serial).
    crl_before, crl_after = certs_before, certs_after
    if crl is not None:
        if known is None:
            crl_before, crl_after = _check_crl(crl, crl_der, ark, now,
                                               ((ask, inter), (vek, "VEK")))
        else:
            crl_before, crl_after = check_crl(crl, ark, now, scheme="sevsnp", what="ARK",
                                              subjects=((vek, "VEK"),), issuer_checked=True)
        not_before, not_after = max(not_before, crl_before), min(not_after, crl_after)
        out.append(_passed("sevsnp.chain.revocation", "CRL", f"{len(crl)} revoked serial(s)",
                           f"{inter} and VEK not listed"))
    if known is not None:
        out.append(known.reused)
    elif keep:
        known = _ProductChain(product, ask_rsa, ark_found, inter, certs_before, certs_after,
                              max(certs_before, crl_before), min(certs_after, crl_after))
    chain = _Chain(tuple(out), product, info, vek_key, (vek, ask, ark), ark.sha256, not_before,
                   not_after, crl is not None)
    return chain, known


def _same_name(a: x509.Name, b: x509.Name) -> bool:
    # The reader hands out one Name object per distinct encoding, so equal names are
    # usually the same object; otherwise the full comparison decides.
    return a is b or a == b


@lru_cache(maxsize=256)
def _window_text(not_before: datetime, not_after: datetime) -> str:
    return f"{not_before.isoformat()}..{not_after.isoformat()}"


def _check_critical(cert: AmdCertificate, role: str) -> None:
    unknown = [oid for oid in cert.critical_extension_oids if oid not in _KNOWN_CRITICAL]
    if unknown:
        raise _fail("sevsnp.chain.critical_extension", f"{role}.extensions", unknown,
                    "no unknown critical extension")


_CRL_DER_MAX = 16
_crl_ders: dict[int, tuple[x509.CertificateRevocationList, bytes]] = {}
_crl_ders_lock = threading.Lock()


def _crl_der(crl: x509.CertificateRevocationList) -> bytes:
    """The CRL's DER, serialised once per CRL object (one CRL serves every report of a
    product). Keyed by identity; the entry holds the object, so its id is not reused."""
    hit = _crl_ders.get(id(crl))
    if hit is not None and hit[0] is crl:
        return hit[1]
    der = crl.public_bytes(serialization.Encoding.DER)
    with _crl_ders_lock:
        if len(_crl_ders) >= _CRL_DER_MAX:
            _crl_ders.clear()
        _crl_ders[id(crl)] = (crl, der)
    return der


def _check_crl(crl: x509.CertificateRevocationList, crl_der: bytes | None,
               ark: AmdCertificate, now: datetime,
               subjects: tuple[tuple[AmdCertificate, str], ...]) -> tuple[datetime, datetime]:
    der = _crl_der(crl) if crl_der is None else crl_der
    try:
        parts: CrlParts | None = crl_parts(der)
    except FormatError:  # not strict DER: the generic steps below judge it, as they always did
        parts = None

    def signed() -> bool:
        # AMD signs its CRL with RSASSA-PSS (57230); the generic CRL check cannot judge the
        # parameters, so they and the signature are checked here (raising with the reason).
        alg_oid, pss = (parts.alg_oid, parts.pss) if parts is not None else (
            signature_algorithm(der))
        if 6 not in ark.key_usage_bits():
            raise _fail("sevsnp.crl.signature", "ARK.keyUsage", "no cRLSign", "cRLSign")
        try:
            _check_pss(pss, alg_oid, "CRL.signatureAlgorithm")
        except VerificationError as exc:
            raise VerificationError("sevsnp.crl.signature", str(exc)) from None
        tbs, signature = ((parts.tbs, parts.signature) if parts is not None
                          else (crl.tbs_certlist_bytes, crl.signature))
        _verify_pss(ark.public_key(), signature, tbs, "sevsnp.crl.signature", "CRL.signature")
        return True

    # The issuer is named by the exact bytes of the ARK's subject (equal encodings are equal
    # names; building the CRL's Name to compare costs a third of an RSA verify). Any other
    # encoding goes through the generic name comparison.
    if parts is not None and ark.subject_der and parts.issuer_der == ark.subject_der:
        signed()
        return check_crl(crl, ark, now, scheme="sevsnp", what="ARK", subjects=subjects,
                         issuer_checked=True)
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
    chain, _ = _verify_chain(certs, anchors, now, kind, crl if crl is not None else certs.crl)
    return chain.findings


# -- cache ---------------------------------------------------------------------------------
_Key = tuple[bytes, bytes, bytes, TrustAnchors, SigningKey, bytes | None]
_ProductKey = tuple[bytes, bytes, TrustAnchors, SigningKey, bytes | None]


class ChainCache(WindowCache[_Chain]):
    """Validated (ARK, ASK/ASVK, VEK[, CRL]) chains, reused only inside their validity window.

    The key is the DER of the three certificates, the trust anchors, the key kind and the CRL's
    DER, so a different CRL or anchor set is a different entry. An entry is used only while
    ``now`` lies within every certificate's validity and the CRL's thisUpdate..nextUpdate; the
    VEK public key is kept parsed, so a warm ``verify_report`` costs about one ECDSA verify.

    ``products`` keeps the ARK -> ASK/ASVK part (and the CRL's issuer, signature and the
    ASK's absence from it) by the same DER, anchors, kind and CRL, inside the ARK's, ASK's and
    CRL's windows: the first report of a new chip then verifies its VEK's link and checks
    (and the VEK's serial against the CRL) and the report signature, not the ARK and ASK again.
    Thread-safe; least-recently-used entries beyond ``max_entries`` are dropped, in each
    (:class:`veritee.trust._common.WindowCache`).
    """

    def __init__(self, max_entries: int = 256) -> None:
        super().__init__(max_entries)
        self.products: WindowCache[_ProductChain] = WindowCache(max_entries)

    def clear(self) -> None:
        """Forget every chain and product chain."""
        super().clear()
        self.products.clear()


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
    checks.append(_passed("sevsnp.report.signature_algo", "SIGNATURE_ALGO", 1, 1))

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
    checks.append(_passed("sevsnp.report.signing_key", "SIGNER_INFO.SIGNING_KEY", kind.name,
                          vek.common_name))

    # 5. The chain (C1-C10 above), from the cache when still valid at `now`; on a miss, the
    #    ARK -> ASK/ASVK part from the cache's product chains when still valid at `now`.
    crl = certs.crl
    if cache is None:
        chain, _ = _verify_chain(certs, anchors, now, kind, crl)
        checks += chain.findings
    else:
        crl_der = None if crl is None else _crl_der(crl)
        key: _Key = (ark.der, ask.der, vek.der, anchors, kind, crl_der)
        cached = cache.get(key, now)
        if cached is None:
            product_key: _ProductKey = (ark.der, ask.der, anchors, kind, crl_der)
            known = cache.products.get(product_key, now)
            chain, product_chain = _verify_chain(certs, anchors, now, kind, crl,
                                                 crl_der=crl_der, known=known, keep=True)
            cache.put(key, chain)
            if known is None and product_chain is not None:
                cache.products.put(product_key, product_chain)
            checks += chain.findings
        else:
            chain = cached
            checks += chain.findings
            checks.append(chain.reused)
    info = chain.vek

    # 6. The report's CPUID (v3+) names the chain's product; v2 reports carry no CPUID.
    if report.cpuid is not None:
        if report.cpuid.product is not chain.product:
            got = report.cpuid.product.value if report.cpuid.product else (
                f"family 0x{report.cpuid.family:02x} model 0x{report.cpuid.model:02x}")
            raise _fail("sevsnp.vek.product_mismatch", "CPUID", got, chain.product.value)
        checks.append(_passed("sevsnp.vek.product", "CPUID", chain.product.value,
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
    checks.append(_tcb_passed(report.reported_tcb, info.tcb))

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
            checks.append(_passed("sevsnp.vek.hwid", "CHIP_ID", info.hwid, info.hwid))
    else:
        checks.append(skipped("sevsnp.vek.hwid", "CHIP_ID", "VLEK: bound to a CSP, not a chip",
                              got=info.csp_id))

    # 9. The report signature: ECDSA P-384/SHA-384 over bytes 0x000-0x29F (ABI 56860).
    sig = encode_dss_signature(report.signature.r, report.signature.s)
    try:
        chain.vek_key.verify(sig, report.signed_bytes, _ECDSA_SHA384)
    except InvalidSignature:
        raise _fail("sevsnp.report.signature", "SIGNATURE", "does not verify",
                    f"signed by the {kind.name}") from None
    checks.append(_passed("sevsnp.report.signature", "SIGNATURE", "ECDSA P-384 SHA-384",
                          kind.name))

    return VerifiedReport(report=report, product=chain.product, vek=info, chain=chain.certs,
                          ark_fingerprint=chain.ark_fingerprint, checks=tuple(checks),
                          checked_at=now, crl_checked=chain.crl_checked)
