"""TPM 2.0 quote verification: AK signature, TPM_GENERATED, nonce, PCR digest, event-log replay.

Steps, in the order :func:`verify_quote` runs them (each a stable code; the first failure raises
:class:`~veritee.errors.VerificationError` with it, each success is a passed
:class:`~veritee.findings.Finding` in :attr:`VerifiedTpmQuote.checks`):

1. ``tpm.quote.signature``   the TPMT_SIGNATURE verifies under the AK over the exact
                             TPMS_ATTEST bytes, with the scheme's hash (Part 2, 11.3.4;
                             Part 3, TPM2_Quote: "the digest of quoted is signed").
2. ``tpm.ak.scheme``         when the AK is given as a TPMT_PUBLIC with a fixed scheme, the
                             signature uses that scheme and hash.
3. ``tpm.ak.attributes``     when the AK is a TPMT_PUBLIC: restricted signing key (TPMA_OBJECT
                             restricted|sign), the property that makes step 4 meaningful - a
                             restricted key refuses to sign data beginning with TPM_GENERATED
                             unless the TPM produced it (Part 1, "Restricted signing keys").
4. ``tpm.quote.magic``       TPMS_ATTEST.magic == TPM_GENERATED_VALUE (0xff544347).
5. ``tpm.quote.type``        TPMS_ATTEST.type == TPM_ST_ATTEST_QUOTE.
6. ``tpm.quote.nonce``       extraData == the caller's nonce (constant-time compare); skipped
                             when the caller passes ``nonce=None`` because it compares
                             extraData itself (the front door's ``tpm.binding.mismatch``).
7. ``tpm.quote.pcr_digest``  pcrDigest == H_sig(concatenation of the selected PCR values in
                             selection order) (Part 2, 10.12.4 TPMS_QUOTE_INFO; the digest uses
                             the signing scheme's hash, Part 3 TPM2_Quote).
8. ``tpm.eventlog.replay``  (fails as ``.replay_mismatch``) with an event log: every quoted
                             PCR that the log extends
                             replays to the quoted value, in every bank both carry; quoted
                             PCRs 0-7 without events must hold their reset value (zero), so
                             removing all of a firmware PCR's events is caught too. PCRs >= 8
                             the log does not touch (IMA's 10, DRTM's 17-22) are not compared.
                             PCR 0 starts from its locality (StartupLocality, H-CRTM: see
                             ``veritee.formats.eventlog``). When PCR 5 does not replay and the
                             log has no ExitBootServices EV_EFI_ACTION events, go-attestation's
                             workaround is applied (the events appended, each documented
                             sequence in turn); a match is recorded in
                             :attr:`VerifiedTpmQuote.eventlog_workaround` for the policy's
                             ``tpm.eventlog.exit_boot_services_missing``. Banks the log carries
                             but this verifier cannot hash (SM3 without an SM3-capable OpenSSL)
                             are named in :attr:`VerifiedTpmQuote.unreplayable_banks`.

:func:`verify_azure_vtpm_quote` runs two binding steps first: ``tpm.azure.report_data`` (the HCL
report's hardware REPORT_DATA is the hash of its runtime claims) and ``tpm.azure.hw_report``
(a verified SEV-SNP report, when given, is the one inside the HCL report), then verifies the
quote with the claims' ``HCLAkPub`` key.

:func:`verify_ak_certificate` then binds the AK to a certificate chain (``tpm.ak.certificate``),
when the caller has one.

:func:`bind_ak` records how the AK is tied to a genuine TPM (``tpm.ak.binding``): an AK
certificate chaining to :class:`TpmAnchors` roots, or an AK enrolled by credential activation
(``veritee.platform.tpm.register_ak``: the EK certificate chained to a root and the TPM
answered TPM2_ActivateCredential for the AK's Name); the Azure path records the HCL report.
Whether an unbound AK is acceptable (a pin) is ``veritee.policy.tpm``'s decision.

Deliberately not checked here: clock/resetCount freshness (the nonce covers freshness), and
whether the PCR values are acceptable (``veritee.policy.tpm``).
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.errors import FormatError, VerificationError
from veritee.findings import Finding, skipped
from veritee.findings import passed as _ok
from veritee.formats.azure import HclReport
from veritee.formats.eventlog import EXIT_BOOT_SERVICES_WORKAROUNDS, EventLog
from veritee.formats.tpm import (
    TPM_GENERATED_VALUE,
    EccCurve,
    HashAlg,
    ObjectAttr,
    ObjectType,
    PcrValues,
    SigAlg,
    StructureTag,
    TpmsAttest,
    TpmsCertifyInfo,
    TpmsQuoteInfo,
    TpmtPublic,
    TpmtSignature,
)
from veritee.trust._common import require_aware
from veritee.trust.sevsnp import VerifiedReport

__all__ = [
    "AkPublic",
    "EventLogReplay",
    "PublicKey",
    "TpmAnchors",
    "VerifiedTpmCertify",
    "VerifiedTpmQuote",
    "ak_spki",
    "bind_ak",
    "jwk_public_key",
    "public_key",
    "replay_event_log",
    "verify_ak_certificate",
    "verify_azure_vtpm_quote",
    "verify_certify",
    "verify_quote",
    "verify_signature",
]

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
AkPublic = PublicKey | TpmtPublic

_HASHES: dict[HashAlg, type[hashes.HashAlgorithm]] = {
    HashAlg.SHA1: hashes.SHA1,
    HashAlg.SHA256: hashes.SHA256,
    HashAlg.SHA384: hashes.SHA384,
    HashAlg.SHA512: hashes.SHA512,
    HashAlg.SM3_256: hashes.SM3,
}
_CURVES: dict[EccCurve, type[ec.EllipticCurve]] = {
    EccCurve.NIST_P256: ec.SECP256R1,
    EccCurve.NIST_P384: ec.SECP384R1,
    EccCurve.NIST_P521: ec.SECP521R1,
}
_RESTRICTED_SIGN = ObjectAttr.RESTRICTED | ObjectAttr.SIGN_ENCRYPT
_LAST_FIRMWARE_PCR = 7


@dataclass(frozen=True)
class VerifiedTpmQuote:
    """A quote whose signature, TPM_GENERATED magic, nonce and PCR digest were checked.

    ``pcrs`` holds the values of exactly the quoted PCRs (empty when the caller gave none and
    the digest was only carried). ``replayed`` lists the (bank, PCR) pairs an event log was
    replayed and matched for; ``unquoted_log_pcrs`` the PCRs the log extends but the quote
    does not cover (their events are not backed by the TPM). ``checks`` is every step that ran.
    """

    attest: TpmsAttest
    signature: TpmtSignature
    ak_public: PublicKey
    ak_name: bytes | None
    pcrs: dict[HashAlg, dict[int, bytes]]
    checks: tuple[Finding, ...]
    event_log: EventLog | None = None
    replayed: tuple[tuple[HashAlg, int], ...] = ()
    unquoted_log_pcrs: frozenset[int] = frozenset()
    hcl_report: HclReport | None = field(default=None, repr=False)
    ak_attributes: int | None = None  # TPMA_OBJECT when the AK was given as a TPMT_PUBLIC
    ak_certificate_path: tuple[Any, ...] = field(default=(), repr=False)  # leaf..root, verified
    ak_binding: str | None = None
    """How the AK is tied to a genuine TPM: ``certificate`` (an AK certificate chained to a
    trusted root), ``credential-activation`` (an enrolled AK, :func:`bind_ak`), ``azure-hcl``
    (the AK is in a verified hardware report's runtime claims), or ``None``: unbound."""
    eventlog_workaround: str | None = None
    """The go-attestation workaround the replay needed (missing ExitBootServices events)."""
    unreplayable_banks: tuple[str, ...] = ()
    """Banks the event log carries that this verifier cannot hash (by name)."""
    extra_quotes: tuple[VerifiedTpmQuote, ...] = field(default=(), repr=False)
    """Further verified quotes of the same evidence (go-tpm-tools: one quote per bank), by
    the same AK over the same extraData; their PCRs are merged into :attr:`pcrs`."""

    @property
    def quote(self) -> TpmsQuoteInfo:
        """The TPMS_QUOTE_INFO arm."""
        return self.attest.quote

    @property
    def nonce(self) -> bytes:
        """TPMS_ATTEST.extraData, checked equal to the caller's nonce."""
        return self.attest.extra_data


# -- keys ----------------------------------------------------------------------------------
def public_key(pub: TpmtPublic) -> PublicKey:
    """The ``cryptography`` key of an RSA or ECC TPMT_PUBLIC (exponent 0 means 65537)."""
    try:
        if pub.type is ObjectType.RSA:
            e = pub.exponent or 65537
            return rsa.RSAPublicNumbers(e, int.from_bytes(pub.modulus, "big")).public_key()
        assert pub.curve is not None
        curve = _CURVES[pub.curve]()
        return ec.EllipticCurvePublicNumbers(int.from_bytes(pub.x, "big"),
                                             int.from_bytes(pub.y, "big"), curve).public_key()
    except ValueError as exc:  # point not on curve, bad exponent
        raise FormatError("TPMT_PUBLIC", "unique", got=str(exc), want="a valid public key"
                          ) from None


def _b64url_int(jwk: Mapping[str, Any], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise FormatError("JWK", name, got=type(value).__name__, want="base64url string")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        raise FormatError("JWK", name, got=value[:20], want="base64url") from None
    return int.from_bytes(raw, "big")


def jwk_public_key(jwk: Mapping[str, Any]) -> rsa.RSAPublicKey:
    """An RSA public key from a JWK (RFC 7518 6.3.1: ``kty`` RSA, ``n``, ``e``)."""
    if jwk.get("kty") != "RSA":
        raise FormatError("JWK", "kty", got=jwk.get("kty"), want="RSA")
    try:
        return rsa.RSAPublicNumbers(_b64url_int(jwk, "e"), _b64url_int(jwk, "n")).public_key()
    except ValueError as exc:
        raise FormatError("JWK", "n", got=str(exc), want="a valid RSA public key") from None


# -- helpers -------------------------------------------------------------------------------
def _show(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex() or "<empty>"
    return str(value)


def _fail(code: str, fld: str, got: object, want: object) -> VerificationError:
    return VerificationError(code, f"{fld}: got {_show(got)}, want {_show(want)}")


def verify_signature(data: bytes, signature: TpmtSignature, key: PublicKey, *,
                     code: str = "tpm.quote.signature") -> Finding:
    """Verify a TPMT_SIGNATURE over ``data``; raise ``code`` on failure."""
    fld = "TPMT_SIGNATURE"
    try:
        return _verify_signature(data, signature, key, code, fld)
    except UnsupportedAlgorithm:
        raise _fail(code, fld, f"{signature.sig_alg.name}/{signature.hash_alg.name}",
                    "a signature scheme this OpenSSL build supports") from None


def _verify_signature(data: bytes, signature: TpmtSignature, key: PublicKey, code: str,
                      fld: str) -> Finding:
    algo = _HASHES[signature.hash_alg]()
    desc = f"{signature.sig_alg.name}/{signature.hash_alg.name}"
    try:
        if signature.sig_alg is SigAlg.ECDSA:
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise _fail(code, fld, "ECDSA signature", "an ECC AK")
            der = encode_dss_signature(int.from_bytes(signature.r, "big"),
                                       int.from_bytes(signature.s, "big"))
            key.verify(der, data, ec.ECDSA(algo))
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                raise _fail(code, fld, f"{signature.sig_alg.name} signature", "an RSA AK")
            pad: padding.AsymmetricPadding
            if signature.sig_alg is SigAlg.RSAPSS:
                pad = padding.PSS(mgf=padding.MGF1(algo), salt_length=padding.PSS.AUTO)
            else:
                pad = padding.PKCS1v15()
            key.verify(signature.signature, data, pad, algo)
    except InvalidSignature:
        raise _fail(code, fld, "invalid signature", f"a valid {desc} signature by the AK"
                    ) from None
    return _ok(code, fld, desc, message="signed by the AK over the TPMS_ATTEST bytes")


def _pcr_digest(quote: TpmsQuoteInfo, pcrs: PcrValues, hash_alg: HashAlg
                ) -> tuple[bytes, dict[HashAlg, dict[int, bytes]]]:
    """H(selected PCR values in selection order) and the selected values."""
    selected: dict[HashAlg, dict[int, bytes]] = {}
    parts: list[bytes] = []
    for bank, index in quote.selected():
        value = pcrs.get(bank, {}).get(index)
        if value is None:
            raise _fail("tpm.quote.pcr_values", f"PCR {bank.name}:{index}", "missing",
                        "a value for every quoted PCR")
        if len(value) != bank.digest_size:
            raise _fail("tpm.quote.pcr_values", f"PCR {bank.name}:{index}",
                        f"{len(value)} bytes", f"{bank.digest_size} bytes")
        selected.setdefault(bank, {})[index] = bytes(value)
        parts.append(bytes(value))
    return hash_alg.digest(b"".join(parts)), selected


# -- common steps 1-6 ----------------------------------------------------------------------
def _verify_signed(prefix: str, attest_bytes: bytes, signature: TpmtSignature,
                   ak_public: AkPublic, *, nonce: bytes | None, want_type: StructureTag,
                   checks: list[Finding]) -> tuple[TpmsAttest, PublicKey, bytes | None]:
    """Steps 1-6 (signature, AK scheme/attributes, magic, type, nonce) with ``prefix`` codes."""
    key = public_key(ak_public) if isinstance(ak_public, TpmtPublic) else ak_public
    # 1. Signature first: nothing unauthenticated is interpreted before it verifies.
    checks.append(verify_signature(attest_bytes, signature, key,
                                   code=f"{prefix}.signature"))
    ak_name: bytes | None = None
    if isinstance(ak_public, TpmtPublic):
        ak_name = ak_public.name()
        # 2. The AK's fixed scheme, if any (Part 2, TPMT_RSA_SCHEME / TPMT_ECC_SCHEME).
        if ak_public.scheme != SigAlg.NULL:
            got = (signature.sig_alg.value, signature.hash_alg.value)
            want = (ak_public.scheme, ak_public.scheme_hash)
            if got != want:
                raise _fail("tpm.ak.scheme", "TPMT_SIGNATURE.sigAlg/hash", got, want)
            checks.append(_ok("tpm.ak.scheme", "TPMT_SIGNATURE.sigAlg/hash",
                              f"{signature.sig_alg.name}/{signature.hash_alg.name}"))
        else:
            checks.append(skipped("tpm.ak.scheme", "TPMT_SIGNATURE.sigAlg/hash",
                                  "the AK has no fixed scheme"))
        # 3. Restricted signing key.
        attrs = ak_public.attributes
        if (attrs & _RESTRICTED_SIGN) != _RESTRICTED_SIGN:
            raise _fail("tpm.ak.attributes", "TPMT_PUBLIC.objectAttributes",
                        f"0x{ak_public.object_attributes:x}", "restricted | sign")
        checks.append(_ok("tpm.ak.attributes", "TPMT_PUBLIC.objectAttributes",
                          f"0x{ak_public.object_attributes:x}", "restricted | sign"))
    else:
        for code in ("tpm.ak.scheme", "tpm.ak.attributes"):
            checks.append(skipped(code, "TPMT_PUBLIC", "AK given as a bare public key"))
    attest = TpmsAttest.from_bytes(attest_bytes)
    # 4./5. TPM_GENERATED and the structure tag (Part 2, 10.12.12).
    if attest.magic != TPM_GENERATED_VALUE:
        raise _fail(f"{prefix}.magic", "TPMS_ATTEST.magic", f"0x{attest.magic:08x}",
                    f"0x{TPM_GENERATED_VALUE:08x} (TPM_GENERATED_VALUE)")
    checks.append(_ok(f"{prefix}.magic", "TPMS_ATTEST.magic", f"0x{attest.magic:08x}"))
    if attest.type is not want_type:
        raise _fail(f"{prefix}.type", "TPMS_ATTEST.type", attest.type.name, want_type.name)
    checks.append(_ok(f"{prefix}.type", "TPMS_ATTEST.type", attest.type.name))
    # 6. Nonce (or, with nonce=None, the caller compares extraData: the front door does).
    if nonce is None:
        checks.append(skipped(f"{prefix}.nonce", "TPMS_ATTEST.extraData",
                              "compared by the caller", got=attest.extra_data))
        return attest, key, ak_name
    if not hmac.compare_digest(attest.extra_data, bytes(nonce)):
        raise _fail(f"{prefix}.nonce", "TPMS_ATTEST.extraData", attest.extra_data, nonce)
    checks.append(_ok(f"{prefix}.nonce", "TPMS_ATTEST.extraData", attest.extra_data))
    return attest, key, ak_name


# -- the AK certificate ------------------------------------------------------------------------
def verify_ak_certificate(verified: VerifiedTpmQuote, ak_certificate: object,
                          intermediates: Sequence[object] = (), *, roots: Sequence[object],
                          now: datetime, allow_sha1: bool = False) -> VerifiedTpmQuote:
    """Bind the quote's AK to a certificate chain ending at one of ``roots``.

    The AK certificate (e.g. the one GCE's vTPM carries, issued by the CA that issues the EK
    certificates) must chain to a given root -- path, signatures and validity as
    :func:`veritee.trust.tpm_ek.verify_tpm_cert_chain` checks them -- and certify exactly the
    key that signed the quote (``tpm.ak.certificate``). Returns ``verified`` with the path in
    ``ak_certificate_path`` and the checks appended; raises :class:`VerificationError`.
    This is the AK-to-EK binding by certificate; TPM2_ActivateCredential is not done here.
    """
    from cryptography.hazmat.primitives import serialization

    from veritee.trust.tpm_ek import verify_tpm_cert_chain

    require_aware(now)
    chain = verify_tpm_cert_chain(ak_certificate, intermediates,  # type: ignore[arg-type]
                                  roots=roots, now=now,  # type: ignore[arg-type]
                                  allow_sha1=allow_sha1)

    def spki(key: object) -> bytes:
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise _fail("tpm.ak.certificate", "AK certificate key", type(key).__name__,
                        "an RSA or EC key")
        return key.public_bytes(serialization.Encoding.DER,
                                serialization.PublicFormat.SubjectPublicKeyInfo)

    if not hmac.compare_digest(spki(chain.certificate.public_key()), spki(verified.ak_public)):
        raise _fail("tpm.ak.certificate", "AK certificate key", "another key",
                    "the AK that signed the quote")
    done = _ok("tpm.ak.certificate", "AK certificate", chain.root.subject.rfc4514_string(),
               message="the AK is certified by a chain to a trusted root")
    return replace(verified, checks=(*verified.checks, *chain.checks, done),
                   ak_certificate_path=chain.path)


# -- binding the AK to a genuine TPM ------------------------------------------------------------
def ak_spki(key: AkPublic) -> bytes:
    """The AK's SubjectPublicKeyInfo (DER); its SHA-256 is what a policy pins."""
    pub = public_key(key) if isinstance(key, TpmtPublic) else key
    return pub.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class TpmAnchors:
    """What a relying party trusts TPM AKs through (the ``tpm`` entry of the front door's
    :class:`~veritee.schemes.Anchors`).

    ``roots``: EK/AK CA roots (a TPM vendor's, GCE's EK/AK CA, an swtpm's local CA) an AK
    certificate must chain to; ``intermediates``: CA certificates offered for path building
    (never trusted by themselves); ``registered_aks``: AKs enrolled by credential activation
    (the ``ak_public`` of :func:`veritee.platform.tpm.register_ak`'s ``RegisteredAk``, whose
    EK certificate chained to a root and whose TPM answered TPM2_ActivateCredential).
    """

    roots: tuple[x509.Certificate, ...] = ()
    intermediates: tuple[x509.Certificate, ...] = ()
    registered_aks: tuple[TpmtPublic, ...] = ()

    def __post_init__(self) -> None:
        for name in ("roots", "intermediates"):
            certs = tuple(getattr(self, name))
            if not all(isinstance(c, x509.Certificate) for c in certs):
                raise FormatError("TpmAnchors", name, got="a non-certificate",
                                  want="x509.Certificate items")
            object.__setattr__(self, name, certs)
        enrolled = tuple(getattr(a, "ak_public", a) for a in self.registered_aks)
        if not all(isinstance(a, TpmtPublic) for a in enrolled):
            raise FormatError("TpmAnchors", "registered_aks", got="a non-TPMT_PUBLIC",
                              want="TpmtPublic (or RegisteredAk) items")
        object.__setattr__(self, "registered_aks", enrolled)


def bind_ak(verified: VerifiedTpmQuote, anchors: TpmAnchors | None, *, now: datetime,
            ak_certificate: object | None = None,
            intermediates: Sequence[object] = ()) -> VerifiedTpmQuote:
    """Record how the quote's AK is tied to a genuine TPM (``tpm.ak.binding``).

    1. An AK certificate the evidence carries, when ``anchors`` has roots, must chain to one
       (:func:`verify_ak_certificate`: path, signatures, validity at ``now``, same key); a
       certificate that does not is a :class:`VerificationError`, not an unbound AK.
    2. Else an AK in ``anchors.registered_aks`` (same key and, when the evidence carries the
       TPMT_PUBLIC, the same Name): enrolled by credential activation; its attributes are the
       enrolled TPMT_PUBLIC's when the evidence carried a bare key.
    3. Else unbound (skipped here; the policy refuses it unless it pins the AK).
    """
    code, fld = "tpm.ak.binding", "AK"
    if anchors is not None and anchors.roots and ak_certificate is not None:
        bound = verify_ak_certificate(verified, ak_certificate,
                                      (*intermediates, *anchors.intermediates),
                                      roots=anchors.roots, now=now)
        done = _ok(code, fld, "certificate", message="AK certificate chained to a tpm root")
        return replace(bound, ak_binding="certificate", checks=(*bound.checks, done))
    spki = ak_spki(verified.ak_public)
    for enrolled in anchors.registered_aks if anchors is not None else ():
        if not hmac.compare_digest(ak_spki(enrolled), spki):
            continue
        if verified.ak_name is not None and not hmac.compare_digest(enrolled.name(),
                                                                     verified.ak_name):
            continue  # same key, other attributes: not the enrolled object
        done = _ok(code, fld, "credential-activation", message="an AK enrolled by "
                   "TPM2_ActivateCredential against a verified EK certificate")
        return replace(verified, ak_binding="credential-activation",
                       ak_name=verified.ak_name or enrolled.name(),
                       ak_attributes=(verified.ak_attributes if verified.ak_attributes
                                      is not None else enrolled.object_attributes),
                       checks=(*verified.checks, done))
    why = ("the evidence carries an AK certificate but no tpm roots were given"
           if ak_certificate is not None else
           "no AK certificate and the AK is not an enrolled (credential-activated) one")
    return replace(verified, checks=(*verified.checks,
                                     skipped(code, fld, why)))


# -- the quote -----------------------------------------------------------------------------
def verify_quote(attest_bytes: bytes, signature: TpmtSignature, ak_public: AkPublic, *,
                 nonce: bytes | None, pcrs: PcrValues | None,
                 event_log: EventLog | None = None) -> VerifiedTpmQuote:
    """Verify a TPM2_Quote; see the module docstring for the steps and their codes.

    ``nonce`` is the expected extraData (``b""`` when the quote was requested without one;
    ``None`` when the caller compares extraData itself, as :mod:`veritee.attest` does).
    ``pcrs`` gives the PCR values reported with the quote; ``None`` only when the caller has
    no values (the digest check is then recorded as skipped and ``pcrs`` is empty).
    Raises :class:`FormatError` for unparseable bytes and :class:`VerificationError` for a
    failed check.
    """
    checks: list[Finding] = []
    attest, key, ak_name = _verify_signed("tpm.quote", bytes(attest_bytes), signature,
                                          ak_public, nonce=nonce,
                                          want_type=StructureTag.ATTEST_QUOTE, checks=checks)
    # 7. PCR digest over the reported values, with the signing hash.
    quote = attest.quote
    selected: dict[HashAlg, dict[int, bytes]] = {}
    if pcrs is None:
        checks.append(skipped("tpm.quote.pcr_digest", "pcrDigest", "no PCR values supplied",
                              got=quote.pcr_digest))
    else:
        digest, selected = _pcr_digest(quote, pcrs, signature.hash_alg)
        if not hmac.compare_digest(digest, quote.pcr_digest):
            raise _fail("tpm.quote.pcr_digest", "TPMS_QUOTE_INFO.pcrDigest", digest,
                        quote.pcr_digest)
        checks.append(_ok("tpm.quote.pcr_digest", "TPMS_QUOTE_INFO.pcrDigest", digest,
                          message=f"{len(quote.selected())} PCRs"))
    # 8. Event log.
    replayed: list[tuple[HashAlg, int]] = []
    unquoted: frozenset[int] = frozenset()
    workaround: str | None = None
    unreplayable: tuple[str, ...] = ()
    if event_log is not None:
        if pcrs is None:
            raise _fail("tpm.eventlog.replay_mismatch", "pcrs", None,
                        "PCR values to replay the event log against")
        result = _replay(event_log, selected)
        replayed, unquoted = list(result.matched), result.unquoted
        workaround, unreplayable = result.workaround, result.unreplayable_banks
        checks.append(_ok("tpm.eventlog.replay", "event log",
                          f"{len(replayed)} PCR values replayed",
                          message="every quoted PCR the log extends replays to its value"
                          + (f" (with the workaround {workaround!r})" if workaround else "")))
    else:
        checks.append(skipped("tpm.eventlog.replay", "event log", "no event log supplied"))
    return VerifiedTpmQuote(attest=attest, signature=signature, ak_public=key, ak_name=ak_name,
                            pcrs=selected, checks=tuple(checks), event_log=event_log,
                            replayed=tuple(replayed), unquoted_log_pcrs=unquoted,
                            ak_attributes=(ak_public.object_attributes
                                           if isinstance(ak_public, TpmtPublic) else None),
                            eventlog_workaround=workaround, unreplayable_banks=unreplayable)


@dataclass(frozen=True)
class EventLogReplay:
    """An event log replayed against PCR values (a quote's, or values a person has).

    ``matched`` are the (bank, PCR) pairs compared and equal; ``mismatched`` those compared
    and different, each with (bank, index, replayed value, given value); ``banks`` the banks
    compared; ``unquoted`` the PCRs the log extends that no given value covers; ``workaround``
    the ExitBootServices workaround that made PCR 5 match, if one was needed;
    ``unreplayable_banks`` the banks given or logged that cannot be hashed here.
    """

    matched: tuple[tuple[HashAlg, int], ...]
    mismatched: tuple[tuple[HashAlg, int, bytes, bytes], ...]
    banks: tuple[HashAlg, ...]
    unquoted: frozenset[int]
    workaround: str | None
    unreplayable_banks: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when at least one bank was compared and nothing differed."""
        return bool(self.banks) and not self.mismatched


_EBS_PCR = 5
_WORKAROUND_NAMES = ("EBS Invocation + Success", "EBS Invocation + Failure",
                     "EBS Invocation + Failure + Success")


def _ebs_workaround(log: EventLog, bank: HashAlg, replayed: bytes, value: bytes
                    ) -> str | None:
    """The go-attestation workaround (``attest/eventlog_workarounds.go``) whose events,
    appended to PCR 5, make it ``value``; only for a log with no ExitBootServices events."""
    if log.has_exit_boot_services():
        return None
    for name, actions in zip(_WORKAROUND_NAMES, EXIT_BOOT_SERVICES_WORKAROUNDS, strict=True):
        pcr = replayed
        for action in actions:
            pcr = bank.digest(pcr + bank.digest(action))
        if hmac.compare_digest(pcr, value):
            return name
    return None


def replay_event_log(log: EventLog, values: PcrValues) -> EventLogReplay:
    """Replay ``log`` in every bank both it and ``values`` have and compare; never raises
    for a mismatch (see :class:`EventLogReplay`).

    Compared: every given PCR the log extends, and PCRs 0-7 without events at their reset
    value (the firmware's PCRs, PFP 2.3.4: removing all of a PCR's events cannot hide it).
    PCRs >= 8 the log does not touch are not compared. PCR 5 may match only with the
    ExitBootServices workaround (:func:`_ebs_workaround`); the same workaround must then hold
    in every bank.
    """
    replayable = set(log.banks)
    unreplayable = set(log.unreplayable_banks)
    unreplayable |= {b.name for b in values if b not in replayable and b.name in {
        a.hash_alg.name for a in (log.spec_id.algorithms if log.spec_id else ())
        if a.hash_alg is not None}}
    banks = tuple(b for b in log.banks if b in values)
    extended = log.pcrs_extended()
    covered: set[int] = set()
    matched: list[tuple[HashAlg, int]] = []
    mismatched: list[tuple[HashAlg, int, bytes, bytes]] = []
    workarounds: set[str] = set()
    for bank in banks:
        replay = log.replay(bank)
        for index, value in sorted(values[bank].items()):
            if index in replay:
                want = replay[index]
            elif index <= _LAST_FIRMWARE_PCR:
                want = bank.digest_size * b"\0" if index else (
                    bytes(bank.digest_size - 1) + bytes([log.pcr0_locality]))
            else:
                continue
            covered.add(index)
            if hmac.compare_digest(want, bytes(value)):
                matched.append((bank, index))
                continue
            fix = _ebs_workaround(log, bank, want, bytes(value)) if index == _EBS_PCR else None
            if fix is not None:
                workarounds.add(fix)
                matched.append((bank, index))
            else:
                mismatched.append((bank, index, want, bytes(value)))
    if len(workarounds) > 1:  # one firmware, one behaviour: banks must agree
        pcr5 = [m for m in matched if m[1] == _EBS_PCR]
        matched = [m for m in matched if m[1] != _EBS_PCR]
        mismatched += [(b, i, b"", values[b][i]) for b, i in pcr5]
        workarounds = set()
    return EventLogReplay(tuple(matched), tuple(mismatched), banks,
                          frozenset(extended - covered), next(iter(workarounds), None),
                          tuple(sorted(unreplayable)))


def _replay(log: EventLog, quoted: Mapping[HashAlg, Mapping[int, bytes]]) -> EventLogReplay:
    code = "tpm.eventlog.replay_mismatch"
    result = replay_event_log(log, quoted)
    if not result.banks:
        raise _fail(code, "banks", [b.name for b in log.banks] or list(log.unreplayable_banks),
                    f"a bank the quote covers: {[b.name for b in quoted]}")
    if result.mismatched:
        bank, index, want, value = result.mismatched[0]
        raise _fail(code, f"PCR {bank.name}:{index}", want, value)
    return result


# -- Azure vTPM: the AK comes from the HCL report ------------------------------------------
def verify_azure_vtpm_quote(attest_bytes: bytes, signature: TpmtSignature, hcl: HclReport, *,
                            nonce: bytes | None, pcrs: PcrValues | None,
                            event_log: EventLog | None = None,
                            snp: VerifiedReport | None = None,
                            tdx_report_data: bytes | None = None) -> VerifiedTpmQuote:
    """Verify an Azure CVM vTPM quote whose AK is bound by the HCL report.

    Steps before :func:`verify_quote`: ``tpm.azure.report_data`` - the hardware report's
    REPORT_DATA equals the hash of the HCL runtime claims (the claims carry ``HCLAkPub``);
    ``tpm.azure.hw_report`` - when ``snp`` (a report verified by
    :func:`veritee.trust.sevsnp.verify_report`) is given, it is the report inside ``hcl``;
    for a TDX HCL report, ``tdx_report_data`` is the REPORTDATA of a TD quote the caller
    verified (:func:`veritee.trust.intel.verify_quote`), and must equal the TDREPORT's.
    Otherwise recorded as skipped: the caller must verify the hardware report itself, or the
    binding proves nothing (and the AK stays unbound). ``tpm.azure.ak`` records that the AK
    came from the claims; with a verified hardware report ``ak_binding`` is ``azure-hcl``.
    """
    checks: list[Finding] = []
    want = hcl.expected_report_data()
    got = hcl.hw_report_data
    if not hmac.compare_digest(got, want):
        raise _fail("tpm.azure.report_data", "hw_report.REPORT_DATA", got, want)
    checks.append(_ok("tpm.azure.report_data", "hw_report.REPORT_DATA", got[:32],
                      message="hash of the HCL runtime claims"))
    if snp is not None:
        if hcl.snp_report is None or snp.report.to_bytes() != hcl.snp_report.to_bytes():
            raise _fail("tpm.azure.hw_report", "hw_report", "a different report",
                        "the verified SEV-SNP report")
        checks.append(_ok("tpm.azure.hw_report", "hw_report", "verified SEV-SNP report"))
    elif tdx_report_data is not None:
        if not hmac.compare_digest(bytes(tdx_report_data), hcl.hw_report_data):
            raise _fail("tpm.azure.hw_report", "TD quote REPORTDATA", tdx_report_data,
                        hcl.hw_report_data)
        checks.append(_ok("tpm.azure.hw_report", "hw_report",
                          "TDREPORT REPORTDATA == verified TD quote REPORTDATA"))
    else:
        checks.append(skipped("tpm.azure.hw_report", "hw_report",
                              "hardware report signature not verified here"))
    ak = jwk_public_key(hcl.ak_public_jwk())
    checks.append(_ok("tpm.azure.ak", "runtime_claims.keys[HCLAkPub]",
                      f"RSA-{ak.key_size}"))
    verified = verify_quote(attest_bytes, signature, ak, nonce=nonce, pcrs=pcrs,
                            event_log=event_log)
    bound = snp is not None or tdx_report_data is not None
    return VerifiedTpmQuote(attest=verified.attest, signature=verified.signature,
                            ak_public=verified.ak_public, ak_name=None, pcrs=verified.pcrs,
                            checks=(*checks, *verified.checks), event_log=event_log,
                            replayed=verified.replayed,
                            unquoted_log_pcrs=verified.unquoted_log_pcrs, hcl_report=hcl,
                            ak_binding="azure-hcl" if bound else None,
                            eventlog_workaround=verified.eventlog_workaround,
                            unreplayable_banks=verified.unreplayable_banks)


# -- TPM2_Certify ----------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifiedTpmCertify:
    """A TPM2_Certify whose AK signature, magic, nonce and certified Name were checked."""

    attest: TpmsAttest
    certified: TpmtPublic
    ak_public: PublicKey
    checks: tuple[Finding, ...]


def verify_certify(attest_bytes: bytes, signature: TpmtSignature, ak_public: AkPublic, *,
                   nonce: bytes, certified: TpmtPublic) -> VerifiedTpmCertify:
    """Verify a TPM2_Certify (TPM_ST_ATTEST_CERTIFY) of ``certified`` by the AK.

    Steps 1-6 as for a quote with ``tpm.certify.*`` codes, then ``tpm.certify.name``:
    TPMS_CERTIFY_INFO.name equals the Name of ``certified`` (Part 1, 16), which proves the
    TPM holds that key.
    """
    checks: list[Finding] = []
    attest, key, _ = _verify_signed("tpm.certify", bytes(attest_bytes), signature, ak_public,
                                    nonce=nonce, want_type=StructureTag.ATTEST_CERTIFY,
                                    checks=checks)
    info = attest.attested
    assert isinstance(info, TpmsCertifyInfo)
    name = certified.name()
    if not hmac.compare_digest(info.name, name):
        raise _fail("tpm.certify.name", "TPMS_CERTIFY_INFO.name", info.name, name)
    checks.append(_ok("tpm.certify.name", "TPMS_CERTIFY_INFO.name", name))
    return VerifiedTpmCertify(attest, certified, key, tuple(checks))
