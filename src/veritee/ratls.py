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
  Here the evidence carries the scheme's binding of the key with an empty nonce,
  :func:`veritee.schemes.expected_binding` ``(b"", SPKI, scheme.binding_size)``: for the
  64 bytes of SEV-SNP / TDX / SGX REPORT_DATA that is **SHA-512(DER SubjectPublicKeyInfo)**,
  so there is no padding and no truncation (:func:`report_data_for`).

  Deliberate difference: the interoperable *SGX/TDX* format puts SHA-256 of a CBOR
  ``claims-buffer`` (``{"pubkey-hash": ..., "nonce": ...}``) in the report and carries
  ``[report, claims-buffer]``. It defines nothing for SEV-SNP, and binding the SPKI hash
  directly keeps the check the front door's generic binding comparison
  (``<scheme>.binding.mismatch``), the same for every TEE. No nonce claim: such a certificate
  gives no pre-session freshness -- keep its validity short.

Verification (:func:`verify_attested_certificate`) finds the scheme from the CMW media type
(and checks the scheme recognises the bytes), then runs :class:`veritee.attest.Verifier` as
for any other evidence, with the expected binding computed from *this* certificate's SPKI,
so evidence lifted from another certificate (another key) is refused. Nothing here names a
TEE: a platform whose scheme is registered can issue and verify attested certificates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import cbor2
from cryptography import x509

from veritee import schemes
from veritee.attest import EvidencePart, Verifier
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
from veritee.schemes import Anchors, Collateral

__all__ = [
    "DEFAULT_MAX_AGE",
    "MEDIA_TYPE_SGX_QUOTE",
    "MEDIA_TYPE_SNP_CERT_TABLE",
    "MEDIA_TYPE_SNP_REPORT",
    "MEDIA_TYPE_TDX_QUOTE",
    "OID_TCG_DICE_CMW",
    "OID_TCG_DICE_ENDORSEMENT_MANIFEST",
    "Attester",
    "CertificateEvidence",
    "CmwRecord",
    "SnpAttester",
    "endorsements_media_type_for",
    "extract_evidence",
    "issue_attested_certificate",
    "media_type_for",
    "report_data_for",
    "scheme_for_media_type",
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
MEDIA_TYPE_TDX_QUOTE = "application/vnd.veritee.tdx-quote"
"""CMW type of an Intel TDX DCAP quote (v4/v5, certification data type 5: its PCK chain)."""
MEDIA_TYPE_SGX_QUOTE = "application/vnd.veritee.sgx-quote"
"""CMW type of an Intel SGX DCAP quote (v3, certification data type 5)."""

_EVIDENCE_TYPES = {"sevsnp": MEDIA_TYPE_SNP_REPORT, "tdx": MEDIA_TYPE_TDX_QUOTE,
                   "sgx": MEDIA_TYPE_SGX_QUOTE}
_ENDORSEMENT_TYPES = {"sevsnp": MEDIA_TYPE_SNP_CERT_TABLE}
_VENDOR_TREE = "application/vnd.veritee."


def media_type_for(scheme: str) -> str:
    """The CMW media type of ``scheme``'s evidence (``application/vnd.veritee.<scheme>-
    evidence`` for a scheme without a named one)."""
    return _EVIDENCE_TYPES.get(scheme, f"{_VENDOR_TREE}{scheme}-evidence")


def endorsements_media_type_for(scheme: str) -> str:
    """The CMW media type of what ``scheme``'s attester attaches to its evidence."""
    return _ENDORSEMENT_TYPES.get(scheme, f"{_VENDOR_TREE}{scheme}-endorsements")


def _scheme_of(media_type: str, table: dict[str, str], suffix: str) -> str | None:
    for name, known in table.items():
        if known == media_type:
            return name
    if media_type.startswith(_VENDOR_TREE) and media_type.endswith(suffix):
        name = media_type[len(_VENDOR_TREE):-len(suffix)]
        if name and name not in table:
            return name
    return None


def scheme_for_media_type(media_type: str) -> str | None:
    """The scheme name an evidence media type names (``None`` when it names none)."""
    return _scheme_of(media_type, _EVIDENCE_TYPES, "-evidence")

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


class _PlatformEvidence(Protocol):
    tee: str
    data: bytes
    endorsements: bytes


class Attester(Protocol):
    """A :class:`veritee.platform.base.Platform` as far as certificates need it: its scheme
    ``name`` and evidence bound to report data of the scheme's binding size."""

    name: str

    def evidence(self, report_data: bytes) -> _PlatformEvidence:
        """Evidence (``tee``, ``data``, ``endorsements``) carrying ``report_data``."""
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
    """What an attested certificate carries: the evidence (``report``: an SEV-SNP report, a
    DCAP quote, ...) of ``scheme`` and, optionally, what its attester attached
    (``cert_table``: an SEV-SNP certificate table, ...)."""

    report: bytes
    cert_table: bytes | None = None
    scheme: str = "sevsnp"


def report_data_for(public_key: PublicKey | PrivateKey, size: int = 64) -> bytes:
    """The binding of a key in an attested certificate: the scheme's
    :func:`~veritee.schemes.expected_binding` with an empty nonce; for 64 bytes of report
    data SHA-512 of the DER SubjectPublicKeyInfo (no pad)."""
    if size == 64:
        return hashlib.sha512(spki_der(public_key)).digest()
    return schemes.expected_binding(b"", spki_der(public_key), size)


def _extension(oid: x509.ObjectIdentifier, record: CmwRecord) -> x509.Extension[
        x509.ExtensionType]:
    return x509.Extension(oid, False, x509.UnrecognizedExtension(oid, record.to_cbor()))


def _evidence(attester: Attester | SnpAttester, key: PrivateKey, include_endorsements: bool
              ) -> tuple[str, bytes, bytes]:
    """(scheme, evidence, attached) bound to ``key`` from a platform or an SEV-SNP guest."""
    if hasattr(attester, "evidence") and hasattr(attester, "name"):
        scheme = schemes.get(attester.name)
        # The scheme's binding size: 64 bytes of REPORT_DATA (SEV-SNP, TDX, SGX), 32 bytes of
        # TPM qualifying data (the platform takes what its evidence field holds).
        ev = attester.evidence(report_data_for(key, scheme.binding_size))
        if ev.tee != scheme.name:
            raise ConfigError(f"the platform {attester.name!r} gave {ev.tee!r} evidence")
        return scheme.name, ev.data, ev.endorsements if include_endorsements else b""
    if not hasattr(attester, "attestation_report"):
        raise ConfigError(f"{type(attester).__name__}: want a platform.base.Platform (see "
                          "veritee.platform.adapters) or an SEV-SNP guest")
    guest: SnpAttester = attester
    report_data = report_data_for(key)
    if include_endorsements:
        report, table = guest.extended_report(report_data)
    else:
        report, table = guest.attestation_report(report_data), b""
    return "sevsnp", report, table


def issue_attested_certificate(attester: Attester | SnpAttester, key: PrivateKey, *,
                               now: datetime,
                               subject: str | x509.Name = "CN=veritee attested workload",
                               dns_names: Sequence[str] = (),
                               ip_addresses: Sequence[str] = (),
                               valid_for: timedelta = DEFAULT_VALIDITY,
                               ca: CertificateAuthority | None = None,
                               include_endorsements: bool = True,
                               usages: Sequence[Usage] = (Usage.SERVER, Usage.CLIENT)
                               ) -> x509.Certificate:
    """Inside the TEE: get evidence bound to ``key`` and put it in ``key``'s certificate.

    ``attester`` is any :class:`~veritee.platform.base.Platform` whose scheme is registered
    (emulated or real SEV-SNP, TDX, SGX ...), or an SEV-SNP guest object. The evidence carries
    :func:`report_data_for` the key (the scheme's binding size). The certificate is
    self-signed by ``key`` unless ``ca`` signs it. With ``include_endorsements`` what the
    platform attaches (SEV-SNP: the host's certificate table, VCEK/ASK/ARK) goes into the
    endorsements extension so a verifier needs no collateral fetch; it is *not* trusted for
    that: the chain must still end at the verifier's anchors. (DCAP quotes carry their PCK
    chain themselves.)
    """
    scheme, evidence, attached = _evidence(attester, key, include_endorsements)
    extensions = [_extension(OID_TCG_DICE_CMW, CmwRecord(media_type_for(scheme), evidence))]
    if attached:
        extensions.append(_extension(OID_TCG_DICE_ENDORSEMENT_MANIFEST,
                                     CmwRecord(endorsements_media_type_for(scheme), attached)))
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
    scheme = scheme_for_media_type(record.media_type)
    if scheme is None:
        raise FormatError("evidence CMW", "type", got=record.media_type,
                          want=f"an evidence media type ({MEDIA_TYPE_SNP_REPORT}, "
                               f"{MEDIA_TYPE_TDX_QUOTE}, {_VENDOR_TREE}<scheme>-evidence)")
    if record.indicator is not None and not record.indicator & _IND_EVIDENCE:
        raise FormatError("evidence CMW", "ind", got=record.indicator, want="the Evidence bit")
    table: bytes | None = None
    raw_table = _raw_extension(cert, OID_TCG_DICE_ENDORSEMENT_MANIFEST)
    if raw_table is not None:
        endorsement = CmwRecord.from_cbor(raw_table, structure="endorsement CMW")
        if endorsement.media_type != endorsements_media_type_for(scheme):
            raise FormatError("endorsement CMW", "type", got=endorsement.media_type,
                              want=endorsements_media_type_for(scheme))
        if endorsement.indicator is not None and not endorsement.indicator & _IND_ENDORSEMENTS:
            raise FormatError("endorsement CMW", "ind", got=endorsement.indicator,
                              want="the Endorsements bit")
        table = endorsement.value
    return CertificateEvidence(report=record.value, cert_table=table, scheme=scheme)


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


def _per_vendor(value: Any, kind: type[Anchors] | type[Collateral], vendor: str) -> Any:
    """``value`` as :class:`Anchors`/:class:`Collateral`: given as such, or as the entry of
    the certificate's scheme's vendor (e.g. AMD ``TrustAnchors``, Intel root certificates)."""
    if value is None:
        return kind()
    if isinstance(value, kind):
        return value
    return kind({vendor: value})


def verify_attested_certificate(cert: x509.Certificate, *, policy: Any = None,
                                collateral: Any = None, anchors: Any = None,
                                now: datetime | None = None,
                                ca: x509.Certificate | None = None,
                                require_crl: bool = False,
                                cache: Any = None,
                                max_age: timedelta = DEFAULT_MAX_AGE,
                                verifier: Verifier | None = None) -> Appraisal:
    """Verify an attested certificate and appraise its evidence; return the appraisal or raise.

    1. The certificate is valid at ``now`` (``certs.leaf.expired`` / ``.not_yet_valid``) and
       was issued at most ``max_age`` before ``now`` (``ratls.certificate.too_old``): the
       evidence carries no nonce, and its validity period is the attester's choice.
    2. Its signature verifies: against ``ca`` when given (full :func:`verify_leaf`), else its
       self-signature when self-issued; otherwise it is recorded as not checked.
    3. The evidence extension parses (:class:`FormatError` otherwise; missing:
       ``ratls.evidence.missing``); its media type names a registered scheme, which must
       recognise the bytes.
    4. :class:`veritee.attest.Verifier` verifies and appraises it, expecting the binding of
       this certificate's key (:func:`report_data_for`): signature, chain to ``anchors``
       (default: the vendor's genuine roots; emulated roots only when passed), then the whole
       policy. Evidence bound to another key fails ``<scheme>.binding.mismatch``
       (:class:`PolicyRejected`).

    ``policy``: the scheme's policy (or a mapping from scheme name to policy; ``None``: the
    scheme's secure default, which pins no workload). ``anchors`` / ``collateral``:
    :class:`~veritee.schemes.Anchors` / :class:`~veritee.schemes.Collateral`, or the value of
    the certificate's scheme's vendor (AMD ``TrustAnchors`` / ``AmdCertificates``, Intel
    roots / ``IntelCollateral``). ``verifier`` replaces anchors, collateral, ``require_crl``
    and ``cache`` with a relying party's own. The certificate checks are added to the
    appraisal's verification trace (``ratls.*``). Leave a policy's ``report_data`` unset: the
    binding is this function's to check (ConfigError otherwise).
    """
    now = now or datetime.now(UTC)
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
    scheme = schemes.get(carried.scheme)
    if not scheme.recognise(carried.report):
        raise FormatError("evidence CMW", "value", got=f"{len(carried.report)} bytes",
                          want=f"{scheme.name} evidence (as its media type says)")
    chosen = policy.get(scheme.name) if isinstance(policy, Mapping) else policy
    if chosen is not None and getattr(chosen, "report_data", None) is not None:
        raise ConfigError("policy.report_data: the certificate's key binding is checked by "
                          "verify_attested_certificate; leave it unset")
    if chosen is None and not isinstance(policy, Mapping):
        policy = scheme.default_policy()
    expected = report_data_for(_public_key(cert), scheme.binding_size)
    if verifier is None:
        verifier = Verifier(anchors=_per_vendor(anchors, Anchors, scheme.vendor),
                            collateral=_per_vendor(collateral, Collateral, scheme.vendor),
                            require_revocation=require_crl)
        if cache is not None:
            verifier.caches[scheme.name] = cache
    checks.append(Finding("ratls.key_binding", Outcome.PASS, "binding", got=expected,
                          message=f"the {scheme.name} evidence must carry the binding of "
                                  "this certificate's SubjectPublicKeyInfo (checked by "
                                  f"{scheme.name}.binding.mismatch)"))
    part = EvidencePart(carried.report, scheme=scheme.name, attached=carried.cert_table)
    try:
        appraisal = verifier.verify(part, policy=policy, expected_binding=expected, now=now)
    except PolicyRejected as rejected:
        raise PolicyRejected(_with_checks(rejected.appraisal, checks)) from None
    assert isinstance(appraisal, Appraisal)  # one part in, one appraisal out
    return _with_checks(appraisal, checks)


def _with_checks(appraisal: Appraisal, checks: Sequence[Finding]) -> Appraisal:
    return appraisal.with_verification((*appraisal.verification, *checks))


def _public_key(cert: x509.Certificate) -> PublicKey:
    key = cert.public_key()
    if key_type_of(key) is None or not isinstance(key, PublicKey):
        raise VerificationError("certs.key.unsupported",
                                f"certificate key {type(key).__name__} is not supported")
    return key
