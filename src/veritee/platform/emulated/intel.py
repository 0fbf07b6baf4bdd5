"""An emulated Intel vendor and CPU: PCK certificates, DCAP collateral and the quoting enclaves.

INSECURE BY NAME: every key here lives in ordinary process memory. The point is that the
evidence and collateral are in Intel's real formats, so ``veritee.trust.intel.verify_quote``
checks them with the code that checks real quotes; only the trust anchor differs, and the
emulated root is trusted only when passed explicitly (``trusted_roots=[vendor.root]``).

What is modelled, and from where:

* **PKI** (Intel "SGX PCK Certificate and CRL Profile"): an ECDSA P-256 "Intel SGX Root CA"
  (self-signed), an "Intel SGX PCK Processor CA", PCK leaf certificates carrying the SGX
  Extensions (OID 1.2.840.113741.1.13.1: ``.1`` PPID, ``.2`` TCB with ``.2.1``-``.2.16``
  component SVNs, ``.2.17`` PCESVN and ``.2.18`` CPUSVN, ``.3`` PCE-ID, ``.4`` FMSPC, ``.5``
  SGX Type), an "Intel SGX TCB Signing" certificate, the root CA CRL and the PCK CRL. The
  names are Intel's (``collateral.intel.load_directory`` sorts certificates by them); the
  organisation says ``INSECURE emulated Intel vendor``.
* **Collateral** (Intel PCS API v4, "TCB Info V3" and "Enclave Identity V2" models): signed
  ``{"tcbInfo": ..., "signature": ...}`` for SGX and TDX (TDX with ``tdxModule`` and
  ``tdxModuleIdentities``), ``{"enclaveIdentity": ...}`` for ``QE`` and ``TD_QE``; signatures
  are raw ECDSA ``r||s`` over the exact JSON bytes of the inner object, as Intel's are.
* **TCB**: a CPU's TCB is its microcode release (CPUSVN: 16 component SVNs, which the PCK
  certificate repeats as its TCB components) and its PCE SVN; the PCK key is derived from the
  CPU secret *and* that TCB, so a microcode update gives a new PCK key and certificate and,
  matched against the vendor's TCB levels, a new TCB status - as on real parts.
* **Quoting enclaves** (SGX QL API / TDX QL API "Quote Format"): the QE (SGX) and TD QE (TDX)
  hold a P-256 attestation key, certify it with a QE report signed by the PCK key
  (REPORTDATA = SHA-256(attestation key || QE auth data) || 0^32) and sign
  header || [body descriptor] || body. Certification data type 5 (PEM PCK chain), nested in
  type 6 for v4/v5 quotes.

Deliberately simplified (and said in the README's TEE table): the QE and TD QE are not
themselves measured enclaves (their MRENCLAVE/MRSIGNER are fixed digests named after the
vendor); the PCE is folded into the CPU; there is no PPID encryption, no platform
manifest and no Platform CA / multi-package platform.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from veritee._fs import atomic_write
from veritee.errors import PlatformError
from veritee.formats.intel import (
    INTEL_QE_VENDOR_ID,
    SGX_EXTENSIONS_OID,
    BodyType,
    CertificationData,
    CertificationDataType,
    QeReportCertificationData,
    Quote,
    QuoteHeader,
    QuoteSignatureData,
    SgxReportBody,
    TcbStatus,
    TdReportBody,
    TeeType,
)
from veritee.trust.intel import IntelCollateral

__all__ = [
    "EmulatedIntelCpu",
    "EmulatedIntelVendor",
    "IntelTcbLevel",
    "QuotingEnclave",
    "cpusvn_for_release",
    "der_pck_extensions",
]

_ORG = "INSECURE emulated Intel vendor (veritee)"
_ATTRS_QE = bytes.fromhex("11000000000000000000000000000000")  # INIT | MODE64BIT
_ATTRS_MASK_QE = bytes.fromhex("fbffffffffffffff0000000000000000")  # Intel's QE identity mask
QE_ISVPRODID = 1
TD_QE_ISVPRODID = 2


def _hkdf(secret: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(hashes.SHA256(), length, salt=None, info=info).derive(secret)


def _p256_from_seed(seed: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-256 key derived from ``seed`` (reduced into [1, n-1])."""
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    scalar = int.from_bytes(_hkdf(seed, b"p256 scalar", 48), "big") % (n - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def _raw_sig(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA P-256/SHA-256 as Intel encodes it: r || s, 32 bytes each, big endian."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _point(key: ec.EllipticCurvePublicKey) -> bytes:
    """The 64-byte x || y of a P-256 key (the quote's attestation key field)."""
    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)[1:]


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- DER for the PCK SGX Extensions (a SEQUENCE of {OID, value}; no generic encoder needed) ----


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def _der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        rest = part >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        out += bytes(reversed(chunk))
    return _der(0x06, bytes(out))


def _der_int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True))


def _pair(suffix: str, value: bytes) -> bytes:
    return _der(0x30, _der_oid(f"{SGX_EXTENSIONS_OID}.{suffix}") + value)


def der_pck_extensions(*, ppid: bytes, cpusvn: bytes, pcesvn: int, pce_id: bytes,
                       fmspc: bytes, components: Sequence[int] | None = None,
                       sgx_type: int = 0) -> bytes:
    """The DER value of the PCK certificate's SGX Extensions (Intel PCK profile, Table 2).

    ``components`` (16 SVNs) default to the CPUSVN bytes, as on parts whose TCB components
    are the CPUSVN bytes one to one.
    """
    comps = list(components if components is not None else cpusvn)
    if len(comps) != 16 or len(cpusvn) != 16 or len(ppid) != 16:
        raise ValueError("16 TCB components, a 16-byte CPUSVN and a 16-byte PPID are required")
    tcb = b"".join(_pair(f"2.{i + 1}", _der_int(c)) for i, c in enumerate(comps))
    tcb += _pair("2.17", _der_int(pcesvn)) + _pair("2.18", _der(0x04, cpusvn))
    return _der(0x30, _pair("1", _der(0x04, ppid)) + _pair("2", _der(0x30, tcb))
                + _pair("3", _der(0x04, pce_id)) + _pair("4", _der(0x04, fmspc))
                + _pair("5", _der(0x0A, bytes([sgx_type]))))


# -- TCB ----------------------------------------------------------------------------------------


def cpusvn_for_release(release: int) -> bytes:
    """The CPUSVN of the emulated CPU running microcode release ``release``.

    Components 1-2 (early / late microcode) carry the release; the others stay fixed
    (component SVNs as Intel's TCB Info lists them for a Xeon: 2, 2, 255 for the SINIT ACM...).
    """
    if not 0 <= release <= 250:
        raise ValueError("microcode release: want 0..250")
    return bytes([release, release, 2, 2, 255, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0])


@dataclass(frozen=True)
class IntelTcbLevel:
    """One TCB level the emulated vendor publishes: microcode release, PCE SVN, status."""

    release: int
    pcesvn: int
    status: TcbStatus
    tcb_date: datetime
    advisory_ids: tuple[str, ...] = ()


def default_tcb_levels() -> tuple[IntelTcbLevel, ...]:
    """Three releases: 3 is current, 2 is out of date, 1 is revoked (newest first, as PCS)."""
    return (
        IntelTcbLevel(3, 13, TcbStatus.UP_TO_DATE, datetime(2025, 5, 14, tzinfo=UTC)),
        IntelTcbLevel(2, 11, TcbStatus.OUT_OF_DATE, datetime(2024, 3, 13, tzinfo=UTC),
                      ("EMULATED-SA-00002",)),
        IntelTcbLevel(1, 10, TcbStatus.REVOKED, datetime(2023, 2, 15, tzinfo=UTC),
                      ("EMULATED-SA-00001", "EMULATED-SA-00002")),
    )


@dataclass(frozen=True)
class TdxModuleLevel:
    """A TDX module release the vendor lists (``tdxModuleIdentities[].tcbLevels``)."""

    isvsvn: int
    status: TcbStatus
    tcb_date: datetime
    advisory_ids: tuple[str, ...] = ()


def default_module_levels() -> tuple[TdxModuleLevel, ...]:
    """TDX module 1.5 (``TDX_03``): minor SVN 5 current, 3 out of date."""
    return (TdxModuleLevel(5, TcbStatus.UP_TO_DATE, datetime(2025, 5, 14, tzinfo=UTC)),
            TdxModuleLevel(3, TcbStatus.OUT_OF_DATE, datetime(2024, 3, 13, tzinfo=UTC),
                           ("EMULATED-SA-00003",)))


TDX_MODULE_MAJOR = 3
"""``TEE_TCB_SVN[1]`` of the emulated TDX module: its identity is ``TDX_03``."""
MR_SIGNER_SEAM = bytes(48)
"""MRSIGNERSEAM of an Intel-signed TDX module is all zero (TDX module ABI, TEE_TCB_INFO)."""


# -- the vendor ---------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
                      x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
                      x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
                      x509.NameAttribute(NameOID.COUNTRY_NAME, "US")])


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=False, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=True, crl_sign=True, encipher_only=False,
                         decipher_only=False)


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=True,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=False, crl_sign=False, encipher_only=False,
                         decipher_only=False)


def _issue(subject: str, key: ec.EllipticCurvePublicKey, issuer: x509.Name,
           issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool, path_length: int | None,
           not_before: datetime, not_after: datetime,
           extra: Sequence[x509.ExtensionType] = ()) -> x509.Certificate:
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
         .public_key(key).serial_number(x509.random_serial_number())
         .not_valid_before(not_before).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
         .add_extension(_ca_usage() if ca else _leaf_usage(), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
             issuer_key.public_key()), critical=False))
    for ext in extra:
        b = b.add_extension(ext, critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@dataclass
class EmulatedIntelVendor:
    """Intel's role: the SGX Root CA, the PCK Processor CA, the TCB Signing key, the TCB levels
    (a "TCB recovery" is a new first level) and the QE identities.

    Never a genuine Intel root; trusted only when a caller passes :attr:`root` explicitly.
    """

    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    tcb_signing_key: ec.EllipticCurvePrivateKey
    tcb_signing: x509.Certificate
    qe_mrsigner: bytes
    created: datetime
    fmspc: bytes = bytes.fromhex("00906ed50000")
    pce_id: bytes = bytes(2)
    tcb_levels: tuple[IntelTcbLevel, ...] = field(default_factory=default_tcb_levels)
    module_levels: tuple[TdxModuleLevel, ...] = field(default_factory=default_module_levels)
    qe_svn_min: int = 8
    tcb_evaluation_data_number: int = 17
    revoked_pck_serials: set[int] = field(default_factory=set)
    revoked_ca: bool = False

    @classmethod
    def generate(cls, *, now: datetime | None = None) -> EmulatedIntelVendor:
        """A vendor with fresh P-256 keys (Intel's PKI is ECDSA P-256 throughout)."""
        now = now or datetime.now(UTC)
        nb, na = now - timedelta(days=1), now + timedelta(days=25 * 365)
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = _name("Intel SGX Root CA")
        root = _issue("Intel SGX Root CA", root_key.public_key(), root_name, root_key,
                      ca=True, path_length=1, not_before=nb, not_after=na)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _issue("Intel SGX PCK Processor CA", ca_key.public_key(), root_name, root_key,
                    ca=True, path_length=0, not_before=nb, not_after=na)
        tcb_key = ec.generate_private_key(ec.SECP256R1())
        tcb = _issue("Intel SGX TCB Signing", tcb_key.public_key(), root_name, root_key,
                     ca=False, path_length=None, not_before=nb, not_after=na)
        qe_signer = hashlib.sha256(b"emulated Intel QE signing key" + os.urandom(32)).digest()
        return cls(root_key=root_key, root=root, ca_key=ca_key, ca=ca, tcb_signing_key=tcb_key,
                   tcb_signing=tcb, qe_mrsigner=qe_signer, created=now)

    # -- persistence -----------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write the vendor (private keys included: it is an emulation) to ``directory``."""
        from cryptography.hazmat.primitives.serialization import (
            NoEncryption,
            PrivateFormat,
        )

        def key(k: ec.EllipticCurvePrivateKey) -> str:
            return k.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()

        def cert(c: x509.Certificate) -> str:
            return c.public_bytes(Encoding.PEM).decode()

        state = {"root_key": key(self.root_key), "root": cert(self.root),
                 "ca_key": key(self.ca_key), "ca": cert(self.ca),
                 "tcb_signing_key": key(self.tcb_signing_key),
                 "tcb_signing": cert(self.tcb_signing), "qe_mrsigner": self.qe_mrsigner.hex(),
                 "created": _iso(self.created), "fmspc": self.fmspc.hex(),
                 "revoked_pck_serials": sorted(self.revoked_pck_serials)}
        atomic_write(directory / "intel-vendor.json", json.dumps(state).encode(), 0o600)

    @classmethod
    def load(cls, directory: Path) -> EmulatedIntelVendor:
        """Read a vendor written by :meth:`save` (PlatformError when it is unreadable)."""
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        path = directory / "intel-vendor.json"
        try:
            state = json.loads(path.read_bytes())

            def key(name: str) -> ec.EllipticCurvePrivateKey:
                k = load_pem_private_key(state[name].encode(), None)
                if not isinstance(k, ec.EllipticCurvePrivateKey):
                    raise TypeError(name)
                return k

            def cert(name: str) -> x509.Certificate:
                return x509.load_pem_x509_certificate(state[name].encode())

            return cls(root_key=key("root_key"), root=cert("root"), ca_key=key("ca_key"),
                       ca=cert("ca"), tcb_signing_key=key("tcb_signing_key"),
                       tcb_signing=cert("tcb_signing"),
                       qe_mrsigner=bytes.fromhex(state["qe_mrsigner"]),
                       created=datetime.fromisoformat(state["created"].replace("Z", "+00:00")),
                       fmspc=bytes.fromhex(state["fmspc"]),
                       revoked_pck_serials=set(state["revoked_pck_serials"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PlatformError(f"{path}: not a saved emulated Intel vendor ({exc})") from None

    # -- certificates ----------------------------------------------------------------------
    def certify_pck(self, key: ec.EllipticCurvePublicKey, *, ppid: bytes, cpusvn: bytes,
                    pcesvn: int, now: datetime) -> x509.Certificate:
        """Issue a PCK certificate as Intel's PCS serves it for (PPID, CPUSVN, PCESVN)."""
        ext = x509.UnrecognizedExtension(
            x509.ObjectIdentifier(SGX_EXTENSIONS_OID),
            der_pck_extensions(ppid=ppid, cpusvn=cpusvn, pcesvn=pcesvn, pce_id=self.pce_id,
                               fmspc=self.fmspc))
        return _issue("Intel SGX PCK Certificate", key, self.ca.subject, self.ca_key, ca=False,
                      path_length=None, not_before=now - timedelta(days=1),
                      not_after=now + timedelta(days=7 * 365), extra=[ext])

    def revoke_pck(self, cert: x509.Certificate) -> None:
        """List ``cert`` in the next PCK CRL (a compromised platform)."""
        self.revoked_pck_serials.add(cert.serial_number)

    def _crl(self, issuer: x509.Certificate, key: ec.EllipticCurvePrivateKey,
             serials: Sequence[int], now: datetime) -> x509.CertificateRevocationList:
        b = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
             .last_update(now - timedelta(hours=1)).next_update(now + timedelta(days=30))
             .add_extension(x509.CRLNumber(1), critical=False))
        for serial in sorted(serials):
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial)
                .revocation_date(now - timedelta(hours=1)).build())
        return b.sign(key, hashes.SHA256())

    def root_ca_crl(self, now: datetime) -> x509.CertificateRevocationList:
        """The root CA CRL (lists the Processor CA when :attr:`revoked_ca`)."""
        return self._crl(self.root, self.root_key,
                         [self.ca.serial_number] if self.revoked_ca else [], now)

    def pck_crl(self, now: datetime) -> x509.CertificateRevocationList:
        """The PCK CRL of the Processor CA."""
        return self._crl(self.ca, self.ca_key, sorted(self.revoked_pck_serials), now)

    # -- collateral ------------------------------------------------------------------------
    def _signed(self, member: str, obj: Mapping[str, object]) -> tuple[bytes, bytes, bytes]:
        """(inner JSON bytes, raw signature, PCS response body)."""
        inner = json.dumps(obj, separators=(",", ":")).encode()
        sig = _raw_sig(self.tcb_signing_key, inner)
        body = b'{"' + member.encode() + b'":' + inner + b',"signature":"' + sig.hex().encode() \
            + b'"}'
        return inner, sig, body

    def tcb_info(self, tee: str, now: datetime) -> bytes:
        """The PCS ``tcb`` response body (TCB Info V3) for ``tee`` ``SGX`` or ``TDX``."""
        levels: list[dict[str, object]] = []
        for lv in self.tcb_levels:
            sgx = [{"svn": s} for s in cpusvn_for_release(lv.release)]
            tcb: dict[str, object] = {"sgxtcbcomponents": sgx, "pcesvn": lv.pcesvn}
            if tee == "TDX":
                # Bytes 0-1 belong to the TDX module identity (TEE_TCB_SVN[1] > 0).
                tcb["tdxtcbcomponents"] = [{"svn": 0}] * 16
            entry: dict[str, object] = {"tcb": tcb, "tcbDate": _iso(lv.tcb_date),
                                        "tcbStatus": lv.status.value}
            if lv.advisory_ids:
                entry["advisoryIDs"] = list(lv.advisory_ids)
            levels.append(entry)
        obj: dict[str, object] = {
            "id": tee, "version": 3, "issueDate": _iso(now - timedelta(days=1)),
            "nextUpdate": _iso(now + timedelta(days=30)), "fmspc": self.fmspc.hex(),
            "pceId": self.pce_id.hex(), "tcbType": 0,
            "tcbEvaluationDataNumber": self.tcb_evaluation_data_number}
        if tee == "TDX":
            module = {"mrsigner": MR_SIGNER_SEAM.hex(), "attributes": "00" * 8,
                      "attributesMask": "ff" * 8}
            obj["tdxModule"] = module
            obj["tdxModuleIdentities"] = [{
                "id": f"TDX_{TDX_MODULE_MAJOR:02X}", **module,
                "tcbLevels": [{"tcb": {"isvsvn": m.isvsvn}, "tcbDate": _iso(m.tcb_date),
                               "tcbStatus": m.status.value,
                               **({"advisoryIDs": list(m.advisory_ids)}
                                  if m.advisory_ids else {})}
                              for m in self.module_levels]}]
        obj["tcbLevels"] = levels
        return self._signed("tcbInfo", obj)[2]

    def qe_identity(self, tee: str, now: datetime) -> bytes:
        """The PCS ``qe/identity`` (``QE``) or ``tdqe/identity`` (``TD_QE``) response body."""
        obj = {"id": "TD_QE" if tee == "TDX" else "QE", "version": 2,
               "issueDate": _iso(now - timedelta(days=1)),
               "nextUpdate": _iso(now + timedelta(days=30)),
               "tcbEvaluationDataNumber": self.tcb_evaluation_data_number,
               "miscselect": "00000000", "miscselectMask": "ffffffff",
               "attributes": _ATTRS_QE.hex(), "attributesMask": _ATTRS_MASK_QE.hex(),
               "mrsigner": self.qe_mrsigner.hex(),
               "isvprodid": TD_QE_ISVPRODID if tee == "TDX" else QE_ISVPRODID,
               "tcbLevels": [{"tcb": {"isvsvn": self.qe_svn_min},
                              "tcbDate": _iso(datetime(2025, 5, 14, tzinfo=UTC)),
                              "tcbStatus": "UpToDate"},
                             {"tcb": {"isvsvn": 0},
                              "tcbDate": _iso(datetime(2023, 2, 15, tzinfo=UTC)),
                              "tcbStatus": "OutOfDate"}]}
        return self._signed("enclaveIdentity", obj)[2]

    def collateral(self, tee: str, now: datetime) -> IntelCollateral:
        """Everything a verifier needs for ``tee`` (``SGX``/``TDX``), CRLs and QE identity
        included, as :class:`~veritee.trust.intel.IntelCollateral`."""
        from veritee.formats.intel import signed_json_member

        tcb_raw, tcb_sig = signed_json_member(self.tcb_info(tee, now), "tcbInfo")
        qe_raw, qe_sig = signed_json_member(self.qe_identity(tee, now), "enclaveIdentity")
        return IntelCollateral(tcb_info=tcb_raw, tcb_info_signature=tcb_sig,
                               tcb_info_issuer_chain=(self.tcb_signing, self.root),
                               qe_identity=qe_raw, qe_identity_signature=qe_sig,
                               qe_identity_issuer_chain=(self.tcb_signing, self.root),
                               pck_crl=self.pck_crl(now), root_ca_crl=self.root_ca_crl(now))

    def write_collateral(self, directory: Path, tee: str, now: datetime) -> None:
        """Write the collateral as files ``veritee.collateral.intel.load_directory`` reads:
        ``tcb_info.json``, ``qe_identity.json``, ``tcb_signing_chain.pem``, ``root_ca.crl``
        (PEM), ``pck.crl`` (PEM) and ``root_ca.pem`` (the anchor to pass explicitly)."""
        pem = Encoding.PEM
        atomic_write(directory / "tcb_info.json", self.tcb_info(tee, now), 0o644)
        atomic_write(directory / "qe_identity.json", self.qe_identity(tee, now), 0o644)
        atomic_write(directory / "tcb_signing_chain.pem", self.tcb_signing.public_bytes(pem),
                     0o644)
        atomic_write(directory / "root_ca.crl", self.root_ca_crl(now).public_bytes(pem), 0o644)
        atomic_write(directory / "pck.crl", self.pck_crl(now).public_bytes(pem), 0o644)
        atomic_write(directory / "root_ca.pem", self.root.public_bytes(pem), 0o644)


# -- the CPU and its quoting enclaves --------------------------------------------------------


class EmulatedIntelCpu:
    """One emulated Intel CPU package: a fused secret, a PPID, the microcode release (CPUSVN),
    the PCE SVN, and the PCK key and certificate for that TCB.

    Keys derived from the CPU secret (HKDF-SHA-256 with distinct labels): the PCK key per
    (CPUSVN, PCESVN), the SGX report/seal key bases (see ``platform.emulated.sgx``) and the
    TDREPORT MAC key (``platform.emulated.tdx``).
    """

    def __init__(self, vendor: EmulatedIntelVendor, *, release: int = 3,
                 pcesvn: int | None = None, secret: bytes | None = None,
                 now: datetime | None = None) -> None:
        self.vendor = vendor
        self._secret = secret if secret is not None else os.urandom(32)
        self.ppid = _hkdf(self._secret, b"PPID", 16)
        self.now = now or vendor.created  # when its PCK certificates are issued
        self.release = release
        self.pcesvn = pcesvn if pcesvn is not None else self._pcesvn_for(release)
        self._pck_cert: x509.Certificate | None = None
        self._pck_key: tuple[bytes, ec.EllipticCurvePrivateKey] | None = None
        self.qe = QuotingEnclave(self, tdx=False)
        self.td_qe = QuotingEnclave(self, tdx=True)

    def _pcesvn_for(self, release: int) -> int:
        return next((lv.pcesvn for lv in self.vendor.tcb_levels if lv.release == release), 10)

    def save(self, directory: Path) -> None:
        """Write the CPU's fused secret and microcode state (it is an emulation)."""
        state = {"secret": self._secret.hex(), "release": self.release, "pcesvn": self.pcesvn,
                 "now": _iso(self.now)}
        atomic_write(directory / "intel-cpu.json", json.dumps(state).encode(), 0o600)

    @classmethod
    def load(cls, vendor: EmulatedIntelVendor, directory: Path) -> EmulatedIntelCpu:
        """Read a CPU written by :meth:`save`."""
        path = directory / "intel-cpu.json"
        try:
            state = json.loads(path.read_bytes())
            return cls(vendor, release=int(state["release"]), pcesvn=int(state["pcesvn"]),
                       secret=bytes.fromhex(state["secret"]),
                       now=datetime.fromisoformat(state["now"].replace("Z", "+00:00")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PlatformError(f"{path}: not a saved emulated Intel CPU ({exc})") from None

    @classmethod
    def open(cls, directory: Path) -> EmulatedIntelCpu:
        """The CPU (and its vendor) kept in ``directory``, created there on first use."""
        if (directory / "intel-cpu.json").exists():
            vendor = EmulatedIntelVendor.load(directory)
            return cls.load(vendor, directory)
        vendor = EmulatedIntelVendor.generate()
        cpu = cls(vendor)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        vendor.save(directory)
        cpu.save(directory)
        return cpu

    @property
    def cpusvn(self) -> bytes:
        """The 16-byte CPUSVN of the loaded microcode."""
        return cpusvn_for_release(self.release)

    def derive(self, label: bytes, length: int = 32) -> bytes:
        """A CPU-internal key for ``label`` (never leaves the emulated package)."""
        return _hkdf(self._secret, b"veritee emulated Intel CPU: " + label, length)

    def update_microcode(self, release: int, *, pcesvn: int | None = None) -> None:
        """Load another microcode release (a TCB recovery, or a rollback): CPUSVN, PCESVN and
        so the PCK key and certificate change, and with them the TCB status."""
        self.release = release
        self.pcesvn = pcesvn if pcesvn is not None else self._pcesvn_for(release)
        self._pck_cert = None

    def pck_key(self) -> ec.EllipticCurvePrivateKey:
        """The PCK private key for the current TCB (derived, as the PCE derives it)."""
        tcb = self.cpusvn + self.pcesvn.to_bytes(2, "little")
        if self._pck_key is None or self._pck_key[0] != tcb:
            self._pck_key = (tcb, _p256_from_seed(self.derive(b"PCK " + tcb)))
        return self._pck_key[1]

    def pck_certificate(self) -> x509.Certificate:
        """The PCK certificate for the current TCB (issued once per TCB by the vendor)."""
        if self._pck_cert is None:
            self._pck_cert = self.vendor.certify_pck(
                self.pck_key().public_key(), ppid=self.ppid, cpusvn=self.cpusvn,
                pcesvn=self.pcesvn, now=self.now)
        return self._pck_cert

    def pck_chain_pem(self) -> bytes:
        """Certification data type 5: PCK, Processor CA, root, PEM, leaf first."""
        return b"".join(c.public_bytes(Encoding.PEM)
                        for c in (self.pck_certificate(), self.vendor.ca, self.vendor.root))


class QuotingEnclave:
    """The QE (SGX, ISVPRODID 1) or TD QE (TDX, ISVPRODID 2) of one CPU.

    It turns a verified local report body into a quote: a per-CPU P-256 attestation key,
    certified by a QE report that the PCK key signs, signs the quote's signed region.
    """

    def __init__(self, cpu: EmulatedIntelCpu, *, tdx: bool, isv_svn: int = 8) -> None:
        self.cpu = cpu
        self.tdx = tdx
        self.isv_svn = isv_svn
        self.attestation_key = _p256_from_seed(cpu.derive(
            b"TD QE attestation key" if tdx else b"QE attestation key"))
        self.auth_data = bytes(range(32))  # QE authentication data (SGX QL API: 32 bytes)

    @property
    def mr_enclave(self) -> bytes:
        """The QE's (fixed) enclave measurement."""
        return hashlib.sha256(b"emulated TD QE" if self.tdx else b"emulated QE").digest()

    def qe_report(self) -> SgxReportBody:
        """The QE's own report: REPORTDATA = SHA-256(attestation key || auth data) || 0^32."""
        bind = hashlib.sha256(_point(self.attestation_key.public_key())
                              + self.auth_data).digest()
        return SgxReportBody(
            cpu_svn=self.cpu.cpusvn, misc_select=0, isv_ext_prod_id=bytes(16),
            attributes=_ATTRS_QE, mr_enclave=self.mr_enclave,
            mr_signer=self.cpu.vendor.qe_mrsigner, config_id=bytes(64),
            isv_prod_id=TD_QE_ISVPRODID if self.tdx else QE_ISVPRODID, isv_svn=self.isv_svn,
            config_svn=0, isv_family_id=bytes(16), report_data=bind + bytes(32))

    def quote(self, body: SgxReportBody | TdReportBody, *, version: int) -> bytes:
        """Sign ``body`` into a quote of ``version`` (3: SGX; 4 or 5: TDX, 5 also SGX)."""
        is_td = isinstance(body, TdReportBody)
        if is_td != self.tdx:
            raise PlatformError("the TD QE quotes TD reports and the QE enclave reports")
        if version not in ((4, 5) if is_td else (3, 5)):
            raise PlatformError(f"quote version {version} not available for this body")
        if isinstance(body, TdReportBody):
            body_type = BodyType.TD15 if body.is_td15 else BodyType.TD10
        else:
            body_type = BodyType.SGX
        if body_type is BodyType.TD15 and version != 5:
            raise PlatformError("a TD 1.5 body needs a v5 quote")
        header = QuoteHeader(version=version, att_key_type=2,
                             tee_type=TeeType.TDX if is_td else TeeType.SGX,
                             qe_svn=self.isv_svn, pce_svn=self.cpu.pcesvn,
                             qe_vendor_id=INTEL_QE_VENDOR_ID,
                             user_data=hashlib.sha256(self.cpu.ppid).digest()[:20])
        qe_report = self.qe_report()
        cert = CertificationData(CertificationDataType.PCK_CHAIN, self.cpu.pck_chain_pem())
        qe = QeReportCertificationData(
            qe_report=qe_report,
            qe_report_signature=_raw_sig(self.cpu.pck_key(), qe_report.to_bytes()),
            qe_auth_data=self.auth_data, certification_data=cert)
        unsigned = Quote(header=header, body_type=body_type, body=body,
                         signature_data=QuoteSignatureData(bytes(64), bytes(64), qe))
        sig = _raw_sig(self.attestation_key, unsigned.signed_bytes)
        signed = replace(unsigned, signature_data=QuoteSignatureData(
            sig, _point(self.attestation_key.public_key()), qe))
        return signed.to_bytes()
