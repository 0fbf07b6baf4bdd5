"""AWS Nitro Enclaves attestation document verification: chain to the pinned root, ES384.

Steps, in order (each is a passed :class:`~veritee.findings.Finding` in
``VerifiedNitroDocument.checks``; the first failure raises
:class:`~veritee.errors.VerificationError` with the stable code shown). The procedure is
nsm-api ``docs/attestation_process.md`` section 3 ("Attestation Document Validation") and the
AWS Nitro Enclaves User Guide, "Verifying the root of trust":

1. ``nitro.cose.algorithm`` - the protected header is ``{1: -35}`` (ES384); enforced by the
   parser (:class:`~veritee.formats.nitro.NitroDocument`), recorded here.
2. ``nitro.digest`` - ``digest`` is ``"SHA384"`` and every PCR is 48 bytes (section 3.2.2.2:
   the only allowed digest; ``unsupported``).
3. ``nitro.chain.root`` - ``cabundle[0]`` is the root (section 3.2.3 gives the order
   ``[ROOT, INTERM_1, ..., INTERM_N]``); the SHA-256 of its DER must be pinned
   (:data:`AWS_NITRO_ROOT_G1_SHA256` unless ``trusted_roots`` says otherwise:
   ``root_untrusted``) and it must be self-signed.
4. ``nitro.chain.signature`` - root -> cabundle[1] -> ... -> cabundle[n-1] -> ``certificate``:
   each certificate names its parent as issuer and carries its parent's ECDSA P-384 /
   SHA-384 signature (``verify_directly_issued_by``; ``nitro.chain.algorithm`` when a
   certificate uses another algorithm or curve).
5. ``nitro.chain.constraints`` - section 3.2.3.2/3.2.3.3: every CA certificate has a critical
   basicConstraints with CA=TRUE, a pathLenConstraint that allows the CAs below it, and
   keyCertSign; the leaf is not a CA and, when it has keyUsage, has digitalSignature.
6. ``nitro.chain.validity`` - every certificate, the root included (section 3.2.3.1), is
   valid at ``now`` (``expired`` / ``not_yet_valid`` otherwise). Leaf certificates live
   about three hours, so
   verification of a stored document needs a ``now`` close to its ``timestamp``.
7. ``nitro.timestamp`` - the document's ``timestamp`` lies inside the leaf's validity (a
   consistency check of veritee's own: the NSM signs with a fresh leaf; ``outside_leaf``).
8. ``nitro.signature`` - the leaf key signs ``Sig_structure`` (RFC 9052 section 4.4) with
   ECDSA P-384 / SHA-384; the COSE signature is raw ``r || s`` (RFC 9053 section 2.1) and is
   converted to DER for ``cryptography``.

Deliberately not done here: revocation (AWS publishes no CRL for the Nitro attestation PKI
that the NSM documents reference in a usable way; the short leaf lifetime is the mitigation),
freshness against a nonce or a maximum age and every PCR comparison (policy:
:mod:`veritee.policy.nitro`), and fetching anything.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import SignatureAlgorithmOID

from veritee.crypto._x509 import load_certificate
from veritee.errors import VerificationError
from veritee.findings import Finding, passed
from veritee.formats.nitro import NitroDocument, NitroPayload
from veritee.trust._common import (
    Pins,
    check_validity,
    extension,
    fingerprint,
    issued_by,
    require_aware,
    verify_raw_ecdsa,
)

__all__ = ["AWS_NITRO_ROOT_G1_SHA256", "VerifiedNitroDocument", "verify_document"]

AWS_NITRO_ROOT_G1_SHA256 = "641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b"
"""SHA-256 of the DER of "CN=aws.nitro-enclaves, OU=AWS, O=Amazon, C=US" (AWS Nitro Enclaves
Root G1, 2019-10-28 .. 2049-10-28), the root of the commercial AWS partitions published at
https://aws-nitro-enclaves.amazonaws.com/AWS_NitroEnclaves_Root-G1.zip (AWS quotes
8cf60e2b... as the SHA-256 of that zip file, not of the certificate)."""

_SHA384_PCR = 48
_E = TypeVar("_E", bound=x509.ExtensionType)


@dataclass(frozen=True)
class VerifiedNitroDocument:
    """A document whose chain and COSE signature were checked at ``checked_at``.

    ``chain`` is leaf first: ``(certificate, cabundle[n-1], ..., cabundle[0] = root)``.
    """

    document: NitroDocument
    chain: tuple[x509.Certificate, ...]
    root_fingerprint: str
    checks: tuple[Finding, ...]
    checked_at: datetime

    @property
    def payload(self) -> NitroPayload:
        """The verified payload (PCRs, nonce, user data, public key, ...)."""
        return self.document.payload

    @property
    def leaf(self) -> x509.Certificate:
        """The certificate whose key signed the document."""
        return self.chain[0]


def _load(der: bytes, what: str) -> x509.Certificate:
    # Every field parsed here, at the edge (veritee.crypto._x509): later reads cannot raise.
    return load_certificate(der, structure="NitroPayload", field=what)


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _check_algorithm(cert: x509.Certificate, what: str) -> None:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise VerificationError("nitro.chain.algorithm", f"{what} key: {exc}") from exc
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA384:
        oid = cert.signature_algorithm_oid.dotted_string
        raise VerificationError("nitro.chain.algorithm",
                                f"{what} is signed with {oid}, want ecdsa-with-SHA384")
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve,
                                                                       ec.SECP384R1):
        raise VerificationError("nitro.chain.algorithm", f"{what} key is not ECDSA P-384")


def _ext(cert: x509.Certificate, kind: type[_E]) -> x509.Extension[_E] | None:
    return extension(cert, kind, code="nitro.chain.constraints")


def _check_ca(cert: x509.Certificate, what: str, cas_below: int) -> None:
    bc = _ext(cert, x509.BasicConstraints)
    if bc is None or not bc.critical or not bc.value.ca:
        raise VerificationError("nitro.chain.constraints",
                                f"{what} lacks a critical basicConstraints CA=TRUE")
    if bc.value.path_length is not None and bc.value.path_length < cas_below:
        raise VerificationError("nitro.chain.constraints",
                                f"{what} pathLenConstraint {bc.value.path_length} < "
                                f"{cas_below} CA(s) below it")
    ku = _ext(cert, x509.KeyUsage)
    if ku is None or not ku.value.key_cert_sign:
        raise VerificationError("nitro.chain.constraints", f"{what} lacks keyUsage keyCertSign")


def _check_leaf(cert: x509.Certificate) -> None:
    bc = _ext(cert, x509.BasicConstraints)
    if bc is not None and bc.value.ca:
        raise VerificationError("nitro.chain.constraints", "the signing certificate is a CA")
    ku = _ext(cert, x509.KeyUsage)
    if ku is not None and not ku.value.digital_signature:
        raise VerificationError("nitro.chain.constraints",
                                "the signing certificate lacks keyUsage digitalSignature")


def verify_document(document: NitroDocument | bytes, *, now: datetime,
                    trusted_roots: Iterable[str | x509.Certificate] | None = None,
                    ) -> VerifiedNitroDocument:
    """Verify a Nitro attestation document at ``now`` against the pinned AWS root.

    ``trusted_roots`` replaces the production pin (SHA-256 hex strings of the root's DER, or
    certificates): pass a non-production root explicitly to accept its chains. Raises
    :class:`~veritee.errors.VerificationError` (stable ``code``, see the module docstring) or
    :class:`~veritee.errors.FormatError` (bytes that are not a document, certificates that
    are not DER).
    """
    require_aware(now)
    doc = document if isinstance(document, NitroDocument) else NitroDocument.from_bytes(document)
    p = doc.payload
    pins = Pins.of(trusted_roots, AWS_NITRO_ROOT_G1_SHA256)
    checks: list[Finding] = []

    # 1. COSE algorithm (the parser refuses anything but {1: -35}).
    checks.append(passed("nitro.cose.algorithm", "protected.alg", got=doc.algorithm, want=-35))

    # 2. Digest: SHA384 and 48-byte PCRs.
    bad = sorted(i for i, v in p.pcrs.items() if len(v) != _SHA384_PCR)
    if p.digest != "SHA384" or bad:
        raise VerificationError("nitro.digest.unsupported",
                                f"digest {p.digest!r} with PCR(s) {bad} not 48 bytes; "
                                "want SHA384 and 48-byte PCRs")
    checks.append(passed("nitro.digest", "digest", got=p.digest, want="SHA384"))

    # 3. Root: cabundle[0], pinned, self-signed.
    bundle = tuple(_load(der, f"cabundle[{i}]") for i, der in enumerate(p.cabundle))
    leaf = _load(p.certificate, "certificate")
    root = bundle[0]
    root_fp = fingerprint(root)
    if root not in pins:
        raise VerificationError("nitro.chain.root_untrusted",
                                f"cabundle[0] {_name(root)} (sha256 {root_fp}) is not a "
                                "trusted root")
    _check_algorithm(root, "root")
    if not issued_by(root, root):
        raise VerificationError("nitro.chain.signature", "the root is not self-signed")
    checks.append(passed("nitro.chain.root", "cabundle[0]", got=root_fp, message=_name(root)))

    # 4.-5. Links root -> intermediates -> leaf, with algorithms and constraints.
    path = (*bundle, leaf)  # root first
    for i, (parent, child) in enumerate(itertools.pairwise(path)):
        what = "the signing certificate" if child is leaf else f"cabundle[{i + 1}]"
        _check_algorithm(child, what)
        if not issued_by(child, parent):
            raise VerificationError("nitro.chain.signature",
                                    f"{what} ({_name(child)}) is not signed by "
                                    f"{_name(parent)}")
    checks.append(passed("nitro.chain.signature", "certificate <- cabundle",
          got=f"{len(path)} certificates", message="ECDSA P-384 / SHA-384 links"))
    for i, ca in enumerate(bundle):
        _check_ca(ca, f"cabundle[{i}]", len(bundle) - 1 - i)
    _check_leaf(leaf)
    checks.append(passed("nitro.chain.constraints", "basicConstraints / keyUsage"))

    # 6. Validity of every certificate at now.
    for i, cert in enumerate(bundle):
        check_validity(cert, now, code="nitro.chain", what=f"cabundle[{i}] ({_name(cert)})")
    check_validity(leaf, now, code="nitro.chain",
                   what=f"the signing certificate ({_name(leaf)})")
    checks.append(passed("nitro.chain.validity", "notBefore..notAfter", got=now.isoformat(),
          want=f"{leaf.not_valid_before_utc.isoformat()}..{leaf.not_valid_after_utc.isoformat()}"))

    # 7. The document's timestamp lies inside the leaf's validity.
    ts = p.timestamp
    if not leaf.not_valid_before_utc <= ts <= leaf.not_valid_after_utc:
        raise VerificationError("nitro.timestamp.outside_leaf",
                                f"timestamp {ts.isoformat()} outside the signing certificate's "
                                "validity")
    checks.append(passed("nitro.timestamp", "timestamp", got=ts.isoformat()))

    # 8. COSE_Sign1 signature over Sig_structure.
    if not verify_raw_ecdsa(leaf.public_key(), doc.signature, doc.sig_structure):
        raise VerificationError("nitro.signature",
                                "COSE_Sign1 signature does not verify with the signing "
                                "certificate's key")
    checks.append(passed("nitro.signature", "COSE_Sign1", message="ES384 over Sig_structure"))

    return VerifiedNitroDocument(document=doc, chain=tuple(reversed(path)),
                                 root_fingerprint=root_fp, checks=tuple(checks),
                                 checked_at=now)
