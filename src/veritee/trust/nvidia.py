"""NVIDIA GPU / NVSwitch attestation report verification: device chain, SPDM signature.

Steps, in order (each is a passed :class:`~veritee.findings.Finding` in
``VerifiedGpuReport.checks``; the first failure raises
:class:`~veritee.errors.VerificationError` with the stable code shown). The procedure is the
one of NVIDIA nvtrust ``local_gpu_verifier`` (``verifier/cc_admin.py``: verify the device
certificate chain, then the attestation report signature, then the nonce and the FWID) and
attestation-sdk ``nv-attestation-sdk-cpp`` (``GpuEvidence`` / ``SwitchEvidence``), and of
trustee ``deps/verifier/src/nvidia`` (``cert_chain.rs``, ``report.rs``):

1. ``nvidia.chain.length`` - the chain (leaf first, as the driver returns it) holds at least
   the signing certificate and a root (trustee: "Certificate chain must have at least the
   root CA and signing certificates").
2. ``nvidia.chain.root`` - the last certificate's SHA-256 (of its DER) is pinned
   (:data:`NVIDIA_DEVICE_IDENTITY_CA_SHA256` unless ``trusted_roots`` says otherwise;
   ``root_untrusted``) and it is self-signed. When the chain stops below the root and
   ``trusted_roots`` holds certificates, the one that issued the last certificate is appended.
3. ``nvidia.chain.signature`` - every certificate names its parent as issuer and carries its
   parent's signature (``verify_directly_issued_by``).
4. ``nvidia.chain.constraints`` - every certificate above the leaf has basicConstraints
   CA=TRUE; the leaf is not a CA and, when it has keyUsage, has digitalSignature.
5. ``nvidia.chain.validity`` - every certificate is valid at ``now`` (``expired`` /
   ``not_yet_valid``). Device
   certificates run to 9999-12-31, so in practice this pins nothing for real chains.
6. ``nvidia.key`` - the leaf key is ECDSA P-384 (``unsupported``): SPDM 1.1 with
   TPM_ALG_ECDSA_ECC_NIST_P384 / TPM_ALG_SHA_384, which every NVIDIA report uses.
7. ``nvidia.signature`` - the leaf key signs ``request || response-without-signature`` with
   ECDSA P-384 / SHA-384 (DSP0274 1.1, "MEASUREMENTS": the signature covers the
   GET_MEASUREMENTS request and the response up to the signature, "L1/L2"; the 96-byte raw
   ``r || s`` is converted to DER for ``cryptography``).
8. ``nvidia.fwid`` - when the report's opaque data carries an FWID, the leaf certificate's
   TCG DICE TcbInfo extension (OID 2.23.133.5.4.1; 2.23.133.5.4.1.1 on Blackwell leaves)
   carries that digest (``mismatch``,
   ``missing`` when the extension is absent; trustee: "FwId oid not found in the NVIDIA
   signing certificate"). The extension is searched for the DER OCTET STRING ``04 30 <fwid>``
   (the ``fwids`` digest encoding) rather than decoded field by field. A report without an
   FWID (older drivers, NVSwitch) records this check as skipped.
9. ``nvidia.nonce`` - when ``nonce`` is given, the request's 32-byte nonce equals it
   (``mismatch``); compared in constant time.

``nvidia.chain.revocation`` is always recorded as **skipped**: NVIDIA publishes device
certificate status only through OCSP (``ocsp.ndis.nvidia.com``), an online service; veritee
does no network I/O during verification, so a revoked or on-hold device certificate is *not*
detected here. Also left out: RIM (reference manifest) signature verification (XML-DSig would
need a new dependency; reference values are given to :mod:`veritee.policy.nvidia` directly).
"""

from __future__ import annotations

import hmac
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.crypto._x509 import load_certificate_chain
from veritee.errors import FormatError, VerificationError
from veritee.findings import Finding, passed, skipped
from veritee.formats.nvidia import NONCE_SIZE, GpuReport
from veritee.trust._common import (
    Pins,
    check_validity,
    extension,
    fingerprint,
    issued_by,
    require_aware,
    verify_raw_ecdsa,
)

__all__ = [
    "NVIDIA_DEVICE_IDENTITY_CA_SHA256",
    "TCG_DICE_TCB_INFO_OID",
    "VerifiedGpuReport",
    "parse_cert_chain",
    "verify_gpu_report",
]

NVIDIA_DEVICE_IDENTITY_CA_SHA256 = (
    "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48")
"""SHA-256 of the DER of "CN=NVIDIA Device Identity CA, O=NVIDIA" (2021-11-05 .. 9999-12-31),
the root of GPU and NVSwitch device chains, shipped by NVIDIA nvtrust as
``local_gpu_verifier/src/verifier/certs/verifier_device_root.pem`` (computed here from that
file, not copied)."""

TCG_DICE_TCB_INFO_OID = x509.ObjectIdentifier("2.23.133.5.4.1")
_BLACKWELL_TCB_INFO_OID = x509.ObjectIdentifier("2.23.133.5.4.1.1")
"""Blackwell (GB100) leaf certificates carry the TcbInfo under 2.23.133.5.4.1.1 (observed in
attestation-sdk ``blackwellCertChain.txt``; the FWID sits there as ``04 30 <fwid>``)."""


@dataclass(frozen=True)
class VerifiedGpuReport:
    """A report whose chain and SPDM signature were checked at ``checked_at``.

    ``chain`` is leaf first, root last.
    """

    report: GpuReport
    chain: tuple[x509.Certificate, ...]
    root_fingerprint: str
    checks: tuple[Finding, ...]
    checked_at: datetime

    @property
    def leaf(self) -> x509.Certificate:
        """The certificate whose key signed the report."""
        return self.chain[0]


def parse_cert_chain(pem: bytes | str) -> tuple[x509.Certificate, ...]:
    """Parse a PEM chain (leaf first), every field parsed at this edge
    (:mod:`veritee.crypto._x509`). Raises :class:`~veritee.errors.FormatError`."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    if not isinstance(data, bytes | bytearray) or b"-----BEGIN" not in data:
        raise FormatError("NvidiaCertChain", "<pem>", got="no PEM block",
                          want="PEM X.509 certificates")
    return load_certificate_chain(data, structure="NvidiaCertChain", field="<pem>")


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _basic(cert: x509.Certificate) -> x509.BasicConstraints | None:
    ext = extension(cert, x509.BasicConstraints, code="nvidia.chain.constraints")
    return None if ext is None else ext.value


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    ext = extension(cert, x509.KeyUsage, code="nvidia.chain.constraints")
    return None if ext is None else ext.value


def _tcb_info(cert: x509.Certificate) -> bytes | None:
    for oid in (TCG_DICE_TCB_INFO_OID, _BLACKWELL_TCB_INFO_OID):
        try:
            ext = cert.extensions.get_extension_for_oid(oid)
        except x509.ExtensionNotFound:
            continue
        except ValueError as exc:
            raise VerificationError("nvidia.fwid.missing", f"bad extensions: {exc}") from exc
        value = ext.value
        if isinstance(value, x509.UnrecognizedExtension):
            return value.value
    return None


def _complete(chain: list[x509.Certificate], anchors: Iterable[x509.Certificate]) -> None:
    last = chain[-1]
    if issued_by(last, last):
        return
    for anchor in anchors:
        if anchor.subject == last.issuer and issued_by(last, anchor):
            chain.append(anchor)
            return


def verify_gpu_report(report: GpuReport | bytes,
                      cert_chain: Sequence[x509.Certificate] | bytes | str, *, now: datetime,
                      nonce: bytes | None = None,
                      trusted_roots: Iterable[str | x509.Certificate] | None = None,
                      ) -> VerifiedGpuReport:
    """Verify an NVIDIA attestation report and its device chain at ``now``.

    ``report`` is a parsed :class:`~veritee.formats.nvidia.GpuReport` or the binary
    transcript; ``cert_chain`` certificates (leaf first) or their PEM. ``nonce`` (32 bytes)
    is the requester's challenge; callers with a 48-byte REPORT_DATA pass its first 32 bytes
    (as trustee ``regularize_data`` does). ``trusted_roots`` replaces the production pin
    (SHA-256 hex of the root's DER, or certificates). Raises
    :class:`~veritee.errors.VerificationError` (codes in the module docstring) or
    :class:`~veritee.errors.FormatError`.
    """
    require_aware(now)
    if nonce is not None and len(nonce) != NONCE_SIZE:
        raise ValueError(f"nonce must be {NONCE_SIZE} bytes, got {len(nonce)}")
    rep = report if isinstance(report, GpuReport) else GpuReport.from_bytes(report)
    chain = list(cert_chain if not isinstance(cert_chain, bytes | str)
                 else parse_cert_chain(cert_chain))
    pins = Pins.of(trusted_roots, NVIDIA_DEVICE_IDENTITY_CA_SHA256)
    checks: list[Finding] = []

    # 1. Length: the signing certificate and a root at least.
    if chain:
        _complete(chain, list(pins.certificates))
    if len(chain) < 2:
        raise VerificationError("nvidia.chain.length",
                                f"{len(chain)} certificate(s); want the signing certificate "
                                "and the root at least")
    checks.append(passed("nvidia.chain.length", "certificates", got=len(chain)))

    # 2. Root: pinned and self-signed.
    root, leaf = chain[-1], chain[0]
    root_fp = fingerprint(root)
    if root not in pins:
        raise VerificationError("nvidia.chain.root_untrusted",
                                f"root {_name(root)} (sha256 {root_fp}) is not a trusted root")
    if not issued_by(root, root):
        raise VerificationError("nvidia.chain.signature", "the root is not self-signed")
    checks.append(passed("nvidia.chain.root", "chain[-1]", got=root_fp, message=_name(root)))

    # 3. Links: each certificate signed by the next one.
    for i, (child, parent) in enumerate(itertools.pairwise(chain)):
        if child.issuer != parent.subject or not issued_by(child, parent):
            raise VerificationError("nvidia.chain.signature",
                                    f"chain[{i}] ({_name(child)}) is not issued by chain[{i + 1}]"
                                    f" ({_name(parent)})")
    checks.append(passed("nvidia.chain.signature", "chain[i] <- chain[i+1]",
          got=f"{len(chain)} certificates"))

    # 4. Constraints.
    for i, ca in enumerate(chain[1:], start=1):
        bc = _basic(ca)
        if bc is None or not bc.ca:
            raise VerificationError("nvidia.chain.constraints",
                                    f"chain[{i}] ({_name(ca)}) is not a CA")
    bc, ku = _basic(leaf), _key_usage(leaf)
    if (bc is not None and bc.ca) or (ku is not None and not ku.digital_signature):
        raise VerificationError("nvidia.chain.constraints",
                                "the signing certificate is a CA or lacks digitalSignature")
    checks.append(passed("nvidia.chain.constraints", "basicConstraints / keyUsage"))

    # 5. Validity at now.
    for i, cert in enumerate(chain):
        check_validity(cert, now, code="nvidia.chain", what=f"chain[{i}] ({_name(cert)})")
    checks.append(passed("nvidia.chain.validity", "notBefore..notAfter", got=now.isoformat()))
    checks.append(skipped("nvidia.chain.revocation", "OCSP status",
                          "NVIDIA device certificate status is only available from the "
                          "online OCSP service"))

    # 6. Leaf key: ECDSA P-384.
    try:
        key = leaf.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise VerificationError("nvidia.key.unsupported", f"leaf key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve,
                                                                       ec.SECP384R1):
        raise VerificationError("nvidia.key.unsupported", "the leaf key is not ECDSA P-384")
    checks.append(passed("nvidia.key", "leaf public key", got="ECDSA P-384"))

    # 7. SPDM signature over request || response-without-signature.
    if not verify_raw_ecdsa(key, rep.response.signature, rep.signed_data):
        raise VerificationError("nvidia.signature",
                                "the MEASUREMENTS signature does not verify with the leaf key")
    checks.append(passed("nvidia.signature", "MEASUREMENTS.Signature",
          message="ECDSA P-384 / SHA-384 over request || response"))

    # 8. FWID binding between the opaque data and the leaf certificate.
    fwid = rep.opaque.fwid
    if fwid is None:
        checks.append(skipped("nvidia.fwid", "opaque FWID", "the report carries no FWID"))
    else:
        tcb = _tcb_info(leaf)
        if tcb is None:
            raise VerificationError("nvidia.fwid.missing",
                                    "the signing certificate has no TCG DICE TcbInfo "
                                    "(2.23.133.5.4.1) extension")
        if len(fwid) > 0x7F or bytes([0x04, len(fwid)]) + fwid not in tcb:
            raise VerificationError("nvidia.fwid.mismatch",
                                    f"opaque FWID {fwid.hex()} is not in the signing "
                                    "certificate's TcbInfo")
        checks.append(passed("nvidia.fwid", "FWID", got=fwid.hex()))

    # 9. Nonce.
    if nonce is not None:
        if not hmac.compare_digest(rep.nonce, nonce):
            raise VerificationError("nvidia.nonce.mismatch",
                                    f"request nonce {rep.nonce.hex()}, want {nonce.hex()}")
        checks.append(passed("nvidia.nonce", "request nonce", got=nonce.hex()))
    else:
        checks.append(skipped("nvidia.nonce", "request nonce",
                              "no nonce given (see GpuPolicy.nonce)"))

    return VerifiedGpuReport(report=rep, chain=tuple(chain), root_fingerprint=root_fp,
                             checks=tuple(checks), checked_at=now)
