"""Attestation-bound ("RA-TLS") certificates: a TEE key's certificate that carries its evidence.

Conventions followed, and where from:

* **Extension and OID** -- CCC Attestation SIG, *Interoperable RA-TLS X.509 Cert and Evidence
  Formats* (github.com/CCC-Attestation/interoperable-ra-tls,
  ``docs/Interoperable-RA-TLS-cert-edvidence-formats.md``): the certificate may be self-signed
  or CA-signed and MUST carry an evidence extension with OID **2.23.133.5.4.9** (named there
  ``tcg-dice-tagged-evidence``; TCG DICE Attestation Architecture v1.1 section 6.1.8 renamed it
  ``tcg-dice-conceptual-message-wrapper``), whose value is "a byte string of encoded ... CBOR
  data"; and MAY carry an endorsements extension, OID **2.23.133.5.4.2**
  (``tcg-dice-endorsement-manifest``). As in Gramine's implementation of that document
  (``ra_tls_attest.c``), the CBOR bytes are the extnValue contents directly, and the
  extensions are non-critical (CMW draft section "Transporting CMW in X.509 Messages": SHOULD
  NOT be critical).
* **Encoding of the value** -- a CBOR *CMW record* from the IETF RATS Conceptual Message
  Wrapper (draft-ietf-rats-msg-wrap, section "CMW Record"): a definite-length array
  ``[type, value]`` (optionally ``[type, value, ind]``) where ``type`` is a Content-Type text
  string and ``value`` a byte string. The record form is one of the two the DICE CMW admits
  (the draft's "Compatibility with DICE ConceptualMessageWrapper"); decoders tell it from the
  tag form by its first byte (0x82/0x83). No media type is registered for a bare SEV-SNP
  report, so this toolkit uses vendor-tree types (:data:`MEDIA_TYPE_SNP_REPORT` for the
  1184-byte ``ATTESTATION_REPORT``, :data:`MEDIA_TYPE_SNP_CERT_TABLE` for the GHCB
  certificate table with VCEK/ASK/ARK as endorsements).
* **Key binding** -- the Interoperable RA-TLS ``pubkey-hash`` is a hash of the DER
  ``SubjectPublicKeyInfo`` (algorithm + subjectPublicKey) with SHA-256, SHA-384 or SHA-512.
  Here **REPORT_DATA = SHA-512(DER SubjectPublicKeyInfo)**: exactly the 64 bytes of the
  report's REPORT_DATA, so there is no padding and no truncation (:func:`report_data_for`).

  Deliberate difference: the interoperable *SGX/TDX* format puts SHA-256 of a CBOR
  ``claims-buffer`` (``{"pubkey-hash": ..., "nonce": ...}``) in the report and carries
  ``[report, claims-buffer]``. It defines nothing for SEV-SNP, and binding the SPKI hash
  directly keeps the check a plain REPORT_DATA comparison that the existing SEV-SNP policy
  performs (``sevsnp.report_data.mismatch``). No nonce claim: such a certificate gives no
  pre-session freshness -- keep its validity short.

Verification (:func:`verify_attested_certificate`) runs the same ``attest.verify_evidence`` as
any other evidence, with the policy's ``report_data`` set to the hash of *this* certificate's
SPKI, so evidence lifted from another certificate (another key) is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import cbor2
from cryptography import x509

from veritee.attest import Evidence, parse_evidence, verify_evidence
from veritee.crypto.certs import (
    CertificateAuthority,
    PrivateKey,
    PublicKey,
    Usage,
    check_validity,
    issue_leaf,
    key_type_of,
    self_signed_leaf,
    spki_der,
    verify_leaf,
)
from veritee.errors import ConfigError, FormatError, PolicyRejected, VerificationError
from veritee.findings import Finding, Outcome
from veritee.policy import Appraisal
from veritee.policy.sevsnp import SevSnpPolicy
from veritee.trust.roots import TrustAnchors
from veritee.trust.sevsnp import AmdCertificates, ChainCache

__all__ = [
    "DEFAULT_MAX_AGE",
    "MEDIA_TYPE_SNP_CERT_TABLE",
    "MEDIA_TYPE_SNP_REPORT",
    "OID_TCG_DICE_CMW",
    "OID_TCG_DICE_ENDORSEMENT_MANIFEST",
    "CertificateEvidence",
    "CmwRecord",
    "SnpAttester",
    "extract_evidence",
    "issue_attested_certificate",
    "report_data_for",
    "verify_attested_certificate",
]

OID_TCG_DICE_CMW = x509.ObjectIdentifier("2.23.133.5.4.9")
"""tcg-dice-conceptual-message-wrapper (formerly tcg-dice-tagged-evidence): the evidence."""
OID_TCG_DICE_ENDORSEMENT_MANIFEST = x509.ObjectIdentifier("2.23.133.5.4.2")
"""tcg-dice-endorsement-manifest: endorsements for the evidence (optional)."""

MEDIA_TYPE_SNP_REPORT = "application/vnd.veritee.sevsnp-report"
"""CMW type of a 1184-byte SEV-SNP ATTESTATION_REPORT (ABI 56860), unregistered vendor tree."""
MEDIA_TYPE_SNP_CERT_TABLE = "application/vnd.veritee.sevsnp-cert-table"
"""CMW type of a GHCB certificate table (GHCB spec 56421, "SNP Extended Guest Request")."""

# CMW ``ind`` bits (draft-ietf-rats-msg-wrap, "CMW Indicators Registry"): bit 1 Endorsements,
# bit 2 Evidence. Only checked when present: our media types are unambiguous without them.
_IND_ENDORSEMENTS = 1 << 1
_IND_EVIDENCE = 1 << 2
_MAX_EXTENSION = 64 * 1024  # a report is 1184 bytes, a cert table a few KiB; refuse blobs

DEFAULT_VALIDITY = timedelta(days=1)
"""Attested certificates are short-lived: the evidence is a snapshot, with no nonce."""
DEFAULT_MAX_AGE = timedelta(days=1)
"""How old (``now - notBefore``) a verifier accepts an attested certificate by default:
the attester chooses the validity period, so the verifier bounds staleness itself."""


class SnpAttester(Protocol):
    """What an SEV-SNP guest offers: reports (``EmulatedSnpGuest`` and real guests alike)."""

    def attestation_report(self, report_data: bytes) -> bytes:
        """A signed ATTESTATION_REPORT with ``report_data`` (64 bytes)."""
        ...  # pragma: no cover - protocol

    def extended_report(self, report_data: bytes) -> tuple[bytes, bytes]:
        """The report and the host's certificate table (VCEK, ASK, ARK)."""
        ...  # pragma: no cover - protocol


@dataclass(frozen=True)
class CmwRecord:
    """A CBOR CMW record ``[type, value(, ind)]`` (draft-ietf-rats-msg-wrap "CMW Record")."""

    media_type: str
    value: bytes
    indicator: int | None = None

    def to_cbor(self) -> bytes:
        """Definite-length CBOR array."""
        items: list[object] = [self.media_type, self.value]
        if self.indicator is not None:
            items.append(self.indicator)
        return bytes(cbor2.dumps(items))

    @classmethod
    def from_cbor(cls, data: bytes, *, structure: str = "CMW record") -> CmwRecord:
        """Parse strictly: one definite-length array, canonical encoding, nothing after it."""
        if len(data) > _MAX_EXTENSION:
            raise FormatError(structure, "<length>", got=len(data), want=f"<= {_MAX_EXTENSION}")
        if not data or data[0] not in (0x82, 0x83):
            # CMW decapsulation demux: 0x82/0x83 is a record; tags and collections are not
            # produced here, so they are refused rather than half-understood.
            raise FormatError(structure, "<type>", offset=0, got=data[:1],
                              want="a CBOR array of 2 or 3 items (0x82/0x83)")
        try:
            items = cbor2.loads(data)
            again = bytes(cbor2.dumps(items))
        except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError) as exc:
            # Semantic tags (dates, decimals, ...) may decode into objects; any failure is bad
            # bytes, never another exception type.
            raise FormatError(structure, "<cbor>", got=str(exc), want="valid CBOR") from None
        if again != data:
            # One accepted encoding per record: no trailing bytes, no non-minimal lengths.
            raise FormatError(structure, "<cbor>", got="non-canonical or trailing bytes",
                              want="a canonical definite-length encoding")
        media_type, value = items[0], items[1]
        if not isinstance(media_type, str) or not media_type:
            raise FormatError(structure, "type", got=media_type, want="a media type string")
        if not isinstance(value, bytes):
            raise FormatError(structure, "value", got=type(value).__name__,
                              want="a byte string")
        ind = items[2] if len(items) == 3 else None
        if ind is not None and (isinstance(ind, bool) or not isinstance(ind, int)
                                or not 1 <= ind <= 15):
            raise FormatError(structure, "ind", got=ind, want="an integer 1..15")
        return cls(media_type=media_type, value=value, indicator=ind)


@dataclass(frozen=True)
class CertificateEvidence:
    """What an attested certificate carries: the report and, optionally, its endorsements."""

    report: bytes
    cert_table: bytes | None = None


def report_data_for(public_key: PublicKey | PrivateKey) -> bytes:
    """REPORT_DATA binding a key: SHA-512 of its DER SubjectPublicKeyInfo (64 bytes, no pad)."""
    return hashlib.sha512(spki_der(public_key)).digest()


def _extension(oid: x509.ObjectIdentifier, record: CmwRecord) -> x509.Extension[
        x509.ExtensionType]:
    return x509.Extension(oid, False, x509.UnrecognizedExtension(oid, record.to_cbor()))


def issue_attested_certificate(guest: SnpAttester, key: PrivateKey, *, now: datetime,
                               subject: str | x509.Name = "CN=veritee attested workload",
                               dns_names: Sequence[str] = (),
                               ip_addresses: Sequence[str] = (),
                               valid_for: timedelta = DEFAULT_VALIDITY,
                               ca: CertificateAuthority | None = None,
                               include_endorsements: bool = True,
                               usages: Sequence[Usage] = (Usage.SERVER, Usage.CLIENT)
                               ) -> x509.Certificate:
    """Inside the TEE: get a report bound to ``key`` and put it in ``key``'s certificate.

    The report's REPORT_DATA is :func:`report_data_for` the key. The certificate is
    self-signed by ``key`` unless ``ca`` signs it. With ``include_endorsements`` the host's
    certificate table (VCEK, ASK, ARK) goes into the endorsements extension so a verifier needs
    no collateral fetch; it is *not* trusted for that: the ARK must still match the anchors.
    """
    report_data = report_data_for(key)
    if include_endorsements:
        report, table = guest.extended_report(report_data)
    else:
        report, table = guest.attestation_report(report_data), b""
    extensions = [_extension(OID_TCG_DICE_CMW, CmwRecord(MEDIA_TYPE_SNP_REPORT, report))]
    if table:
        extensions.append(_extension(OID_TCG_DICE_ENDORSEMENT_MANIFEST,
                                     CmwRecord(MEDIA_TYPE_SNP_CERT_TABLE, table)))
    if ca is None:
        return self_signed_leaf(key, subject, now=now, dns_names=dns_names,
                                ip_addresses=ip_addresses, usages=usages,
                                valid_for=valid_for, extensions=extensions)
    return issue_leaf(ca, key.public_key(), now=now, subject=subject, dns_names=dns_names,
                      ip_addresses=ip_addresses, usages=usages, valid_for=valid_for,
                      extensions=extensions)


def _raw_extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    except x509.DuplicateExtension:
        raise FormatError("X.509 certificate", "extensions", got=f"{oid.dotted_string} twice",
                          want="at most one (RFC 5280 4.2)") from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - unknown OIDs
        raise FormatError("X.509 certificate", oid.dotted_string, got=type(value).__name__,
                          want="an opaque extension")
    return value.value


def extract_evidence(cert: x509.Certificate) -> CertificateEvidence:
    """The evidence (and endorsements) an attested certificate carries; raise if absent."""
    raw = _raw_extension(cert, OID_TCG_DICE_CMW)
    if raw is None:
        raise VerificationError("ratls.evidence.missing",
                                f"no evidence extension {OID_TCG_DICE_CMW.dotted_string}")
    record = CmwRecord.from_cbor(raw, structure="evidence CMW")
    if record.media_type != MEDIA_TYPE_SNP_REPORT:
        raise FormatError("evidence CMW", "type", got=record.media_type,
                          want=MEDIA_TYPE_SNP_REPORT)
    if record.indicator is not None and not record.indicator & _IND_EVIDENCE:
        raise FormatError("evidence CMW", "ind", got=record.indicator, want="the Evidence bit")
    table: bytes | None = None
    raw_table = _raw_extension(cert, OID_TCG_DICE_ENDORSEMENT_MANIFEST)
    if raw_table is not None:
        endorsement = CmwRecord.from_cbor(raw_table, structure="endorsement CMW")
        if endorsement.media_type != MEDIA_TYPE_SNP_CERT_TABLE:
            raise FormatError("endorsement CMW", "type", got=endorsement.media_type,
                              want=MEDIA_TYPE_SNP_CERT_TABLE)
        if endorsement.indicator is not None and not endorsement.indicator & _IND_ENDORSEMENTS:
            raise FormatError("endorsement CMW", "ind", got=endorsement.indicator,
                              want="the Endorsements bit")
        table = endorsement.value
    return CertificateEvidence(report=record.value, cert_table=table)


def _check_signature(cert: x509.Certificate, ca: x509.Certificate | None,
                     now: datetime) -> Finding:
    if ca is not None:
        verify_leaf(cert, ca, now=now, usage=None)
        return Finding("ratls.certificate.signature", Outcome.PASS, "signature",
                       message=f"issued by {ca.subject.rfc4514_string()}")
    if cert.issuer == cert.subject:
        try:
            cert.verify_directly_issued_by(cert)
        except Exception as exc:  # InvalidSignature, ValueError, TypeError: all "bad"
            raise VerificationError("certs.signature.invalid",
                                    f"the certificate's self-signature does not verify "
                                    f"({type(exc).__name__})") from None
        return Finding("ratls.certificate.signature", Outcome.PASS, "signature",
                       message="self-signed by the attested key")
    # Not fatal: trust comes from the evidence binding, not from the (unknown) issuer.
    return Finding("ratls.certificate.signature", Outcome.SKIP, "signature",
                   message="issued by a CA that was not given: issuer signature not checked")


def verify_attested_certificate(cert: x509.Certificate, *, policy: SevSnpPolicy | None = None,
                                collateral: AmdCertificates | None = None,
                                anchors: TrustAnchors | None = None,
                                now: datetime | None = None,
                                ca: x509.Certificate | None = None,
                                require_crl: bool = False,
                                cache: ChainCache | None = None,
                                max_age: timedelta = DEFAULT_MAX_AGE) -> Appraisal:
    """Verify an attested certificate and appraise its evidence; return the appraisal or raise.

    1. The certificate is valid at ``now`` (``certs.leaf.expired`` / ``.not_yet_valid``) and
       was issued at most ``max_age`` before ``now`` (``ratls.certificate.too_old``): the
       evidence carries no nonce, and its validity period is the attester's choice.
    2. Its signature verifies: against ``ca`` when given (full :func:`verify_leaf`), else its
       self-signature when self-issued; otherwise it is recorded as not checked.
    3. The evidence extension parses (:class:`FormatError` otherwise; missing:
       ``ratls.evidence.missing``).
    4. ``attest.verify_evidence`` runs with ``policy.report_data`` = SHA-512 of this
       certificate's SPKI: signature, chain to ``anchors`` (default: the genuine AMD roots;
       emulated roots only when passed), then the whole policy. A report bound to another key
       fails ``sevsnp.report_data.mismatch`` (:class:`PolicyRejected`).

    The certificate checks are added to the appraisal's verification trace (``ratls.*``).
    Leave ``policy.report_data`` unset: it is this function's to set (ConfigError otherwise).
    """
    now = now or datetime.now(UTC)
    policy = policy or SevSnpPolicy()
    check_validity(cert, now=now, what="leaf")
    age = now - cert.not_valid_before_utc
    if age > max_age:
        raise VerificationError("ratls.certificate.too_old",
                                f"certificate issued {age} ago (notBefore "
                                f"{cert.not_valid_before_utc.isoformat()}); the verifier "
                                f"accepts at most {max_age}")
    checks = [Finding("ratls.certificate.validity", Outcome.PASS, "validity",
                      got=f"{cert.not_valid_before_utc.isoformat()} .. "
                          f"{cert.not_valid_after_utc.isoformat()}",
                      message=f"valid at {now.isoformat()}")]
    checks.append(_check_signature(cert, ca, now))

    carried = extract_evidence(cert)
    expected = report_data_for(_public_key(cert))
    if policy.report_data is not None and policy.report_data != expected:
        raise ConfigError("policy.report_data: set by verify_attested_certificate to the "
                          "certificate's key hash; leave it unset")
    evidence: Evidence = parse_evidence(carried.report, cert_table=carried.cert_table)
    if evidence.format != "sevsnp":
        raise FormatError("evidence CMW", "value", got=evidence.format,
                          want="a bare SEV-SNP report")
    bound = dataclasses.replace(policy, report_data=expected)
    checks.append(Finding("ratls.key_binding", Outcome.PASS, "REPORT_DATA", got=expected,
                          message="REPORT_DATA must be SHA-512 of this certificate's "
                                  "SubjectPublicKeyInfo (checked by the policy)"))
    try:
        appraisal = verify_evidence(evidence, policy=bound, collateral=collateral,
                                    anchors=anchors, now=now, require_crl=require_crl,
                                    cache=cache)
    except PolicyRejected as rejected:
        raise PolicyRejected(_with_checks(rejected.appraisal, checks)) from None
    return _with_checks(appraisal, checks)


def _with_checks(appraisal: Appraisal, checks: Sequence[Finding]) -> Appraisal:
    return appraisal.with_verification((*appraisal.verification, *checks))


def _public_key(cert: x509.Certificate) -> PublicKey:
    key = cert.public_key()
    if key_type_of(key) is None or not isinstance(key, PublicKey):
        raise VerificationError("certs.key.unsupported",
                                f"certificate key {type(key).__name__} is not supported")
    return key
