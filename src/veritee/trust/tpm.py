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
6. ``tpm.quote.nonce``       extraData == the caller's nonce (constant-time compare).
7. ``tpm.quote.pcr_digest``  pcrDigest == H_sig(concatenation of the selected PCR values in
                             selection order) (Part 2, 10.12.4 TPMS_QUOTE_INFO; the digest uses
                             the signing scheme's hash, Part 3 TPM2_Quote).
8. ``tpm.eventlog.replay``  (fails as ``.replay_mismatch``) with an event log: every quoted
                             PCR that the log extends
                             replays to the quoted value, in every bank both carry; quoted
                             PCRs 0-7 without events must hold their reset value (zero), so
                             removing all of a firmware PCR's events is caught too. PCRs >= 8
                             the log does not touch (IMA's 10, DRTM's 17-22) are not compared.

:func:`verify_azure_vtpm_quote` runs two binding steps first: ``tpm.azure.report_data`` (the HCL
report's hardware REPORT_DATA is the hash of its runtime claims) and ``tpm.azure.hw_report``
(a verified SEV-SNP report, when given, is the one inside the HCL report), then verifies the
quote with the claims' ``HCLAkPub`` key.

:func:`verify_ak_certificate` then binds the AK to a certificate chain (``tpm.ak.certificate``),
when the caller has one.

Deliberately not checked here: whether the AK belongs to a genuine TPM without such a
certificate (credential activation or a registration database: the caller supplies a trusted
AK), clock/resetCount freshness (the nonce covers freshness), and whether the PCR values are
acceptable (``veritee.policy.tpm``).
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.errors import FormatError, VerificationError
from veritee.findings import Finding, skipped
from veritee.findings import passed as _ok
from veritee.formats.azure import HclReport
from veritee.formats.eventlog import EventLog
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
    "PublicKey",
    "VerifiedTpmCertify",
    "VerifiedTpmQuote",
    "jwk_public_key",
    "public_key",
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
                   ak_public: AkPublic, *, nonce: bytes, want_type: StructureTag,
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
    # 6. Nonce.
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


# -- the quote -----------------------------------------------------------------------------
def verify_quote(attest_bytes: bytes, signature: TpmtSignature, ak_public: AkPublic, *,
                 nonce: bytes, pcrs: PcrValues | None,
                 event_log: EventLog | None = None) -> VerifiedTpmQuote:
    """Verify a TPM2_Quote; see the module docstring for the steps and their codes.

    ``nonce`` is the expected extraData (``b""`` when the quote was requested without one).
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
    if event_log is not None:
        if pcrs is None:
            raise _fail("tpm.eventlog.replay_mismatch", "pcrs", None,
                        "PCR values to replay the event log against")
        replayed, unquoted = _replay(event_log, selected)
        checks.append(_ok("tpm.eventlog.replay", "event log",
                          f"{len(replayed)} PCR values replayed",
                          message="every quoted PCR the log extends replays to its value"))
    else:
        checks.append(skipped("tpm.eventlog.replay", "event log", "no event log supplied"))
    return VerifiedTpmQuote(attest=attest, signature=signature, ak_public=key, ak_name=ak_name,
                            pcrs=selected, checks=tuple(checks), event_log=event_log,
                            replayed=tuple(replayed), unquoted_log_pcrs=unquoted,
                            ak_attributes=(ak_public.object_attributes
                                           if isinstance(ak_public, TpmtPublic) else None))


def _replay(log: EventLog, quoted: Mapping[HashAlg, Mapping[int, bytes]]
            ) -> tuple[list[tuple[HashAlg, int]], frozenset[int]]:
    code = "tpm.eventlog.replay_mismatch"
    banks = [b for b in log.banks if b in quoted]
    if not banks:
        raise _fail(code, "banks", [b.name for b in log.banks],
                    f"a bank the quote covers: {[b.name for b in quoted]}")
    extended = log.pcrs_extended()
    covered: set[int] = set()
    done: list[tuple[HashAlg, int]] = []
    for bank in banks:
        replay = log.replay(bank)
        for index, value in sorted(quoted[bank].items()):
            if index in replay:
                want = replay[index]
            elif index <= _LAST_FIRMWARE_PCR:
                # PCRs 0-7 are the firmware's (PFP 2.3.4): the log must account for them, so
                # no events means the reset value; dropping a PCR's events cannot hide it.
                want = bytes(bank.digest_size)
            else:
                continue
            covered.add(index)
            if not hmac.compare_digest(want, value):
                raise _fail(code, f"PCR {bank.name}:{index}", want, value)
            done.append((bank, index))
    return done, frozenset(extended - covered)


# -- Azure vTPM: the AK comes from the HCL report ------------------------------------------
def verify_azure_vtpm_quote(attest_bytes: bytes, signature: TpmtSignature, hcl: HclReport, *,
                            nonce: bytes, pcrs: PcrValues | None,
                            event_log: EventLog | None = None,
                            snp: VerifiedReport | None = None) -> VerifiedTpmQuote:
    """Verify an Azure CVM vTPM quote whose AK is bound by the HCL report.

    Steps before :func:`verify_quote`: ``tpm.azure.report_data`` - the hardware report's
    REPORT_DATA equals the hash of the HCL runtime claims (the claims carry ``HCLAkPub``);
    ``tpm.azure.hw_report`` - when ``snp`` (a report verified by
    :func:`veritee.trust.sevsnp.verify_report`) is given, it is the report inside ``hcl``;
    otherwise recorded as skipped: the caller must verify the hardware report itself, or the
    binding proves nothing. ``tpm.azure.ak`` records that the AK came from the claims.
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
    else:
        checks.append(skipped("tpm.azure.hw_report", "hw_report",
                              "hardware report signature not verified here"))
    ak = jwk_public_key(hcl.ak_public_jwk())
    checks.append(_ok("tpm.azure.ak", "runtime_claims.keys[HCLAkPub]",
                      f"RSA-{ak.key_size}"))
    verified = verify_quote(attest_bytes, signature, ak, nonce=nonce, pcrs=pcrs,
                            event_log=event_log)
    return VerifiedTpmQuote(attest=verified.attest, signature=verified.signature,
                            ak_public=verified.ak_public, ak_name=None, pcrs=verified.pcrs,
                            checks=(*checks, *verified.checks), event_log=event_log,
                            replayed=verified.replayed,
                            unquoted_log_pcrs=verified.unquoted_log_pcrs, hcl_report=hcl)


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
