"""An emulated AMD SEV-SNP machine: chip, secure-processor firmware, and guests.

INSECURE BY NAME. Everything here runs in one ordinary process: the "hardware secrets" are
Python bytes in memory, so the emulation protects nothing against anyone who can read this
process. What it gives is *faithful evidence*: reports in the exact ATTESTATION_REPORT byte
format, signed by a VCEK that is derived from the chip secret and the TCB the way real parts do
it (a firmware update yields a different VCEK), chained to an ARK generated for this emulated
vendor. The verifier runs the same code on these reports as on real AMD ones; only the trust
anchor differs, and the emulated ARK is trusted only when a caller passes it explicitly.

Modelled on the SEV-SNP firmware ABI (AMD 56860):

* SNP_LAUNCH_START fixes the guest policy; SNP_LAUNCH_UPDATE extends the launch digest page by
  page (see :mod:`.measurement`); SNP_LAUNCH_FINISH checks an optional ID block (expected
  digest, family/image ID, guest SVN, policy) signed by an ID key, itself optionally signed by
  an author key, and records HOST_DATA.
* MSG_REPORT_REQ: a guest running at VMPL *n* may ask for a report at VMPL >= *n* only.
* The report's signature is by the VCEK for REPORTED_TCB.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veritee._fs import atomic_write
from veritee.crypto import amd_certs
from veritee.crypto.amd_certs import AmdCertificate, load_certificates
from veritee.errors import ConfigError, FormatError, PlatformError
from veritee.formats.sevsnp import (
    AttestationReport,
    CertTable,
    Cpuid,
    EcdsaP384Signature,
    FirmwareVersion,
    GuestFieldSelect,
    GuestPolicy,
    MsgKeyReq,
    MsgReportReq,
    PlatformInfo,
    Product,
    RootKeySelect,
    SignerInfo,
    SigningKey,
    TcbLayout,
    TcbVersion,
)
from veritee.platform.emulated.measurement import GuestImage, measure
from veritee.trust.roots import TrustAnchors
from veritee.trust.sevsnp import AmdCertificates

__all__ = [
    "EmulatedAmdVendor",
    "EmulatedSnpGuest",
    "IdBlock",
    "InsecureEmulatedSnpMachine",
    "ecdsa_p384_public_key_digest",
    "sign_id_block",
]

_P384_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
    "581a0db248b0a77aecec196accc52973", 16)

# CPUID family/model/stepping a real part of each product reports (report v3+).
_CPUID = {
    Product.MILAN: Cpuid(family=0x19, model=0x01, stepping=0x01),
    Product.GENOA: Cpuid(family=0x19, model=0x11, stepping=0x01),
    Product.TURIN: Cpuid(family=0x1A, model=0x02, stepping=0x01),
}
_DEFAULT_TCB = {
    Product.MILAN: TcbVersion(bootloader=4, tee=0, snp=23, microcode=213),
    Product.GENOA: TcbVersion(bootloader=10, tee=0, snp=23, microcode=84),
    Product.TURIN: TcbVersion(fmc=1, bootloader=1, tee=1, snp=4, microcode=76),
}


def _hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA384(), length=length, salt=b"veritee-emulated-amd-sp",
                info=info).derive(secret)


def ecdsa_p384_public_key_digest(key: ec.EllipticCurvePublicKey) -> bytes:
    """SHA-384 of a P-384 public key in the firmware's ``ECDSA Public Key`` layout.

    ABI 56860 "ECDSA Public Key Structure": CURVE u32 (2 = P-384) at 0x0, QX at 0x4 and QY at
    0x4C as 72-byte little-endian values, reserved to 0x404. ID_KEY_DIGEST and
    AUTHOR_KEY_DIGEST in the report are SHA-384 over this structure.
    """
    if not isinstance(key.curve, ec.SECP384R1):
        raise PlatformError(f"ID/author keys must be P-384, got {key.curve.name}")
    nums = key.public_numbers()
    buf = bytearray(0x404)
    buf[0:4] = (2).to_bytes(4, "little")
    buf[0x04:0x04 + 72] = nums.x.to_bytes(72, "little")
    buf[0x4C:0x4C + 72] = nums.y.to_bytes(72, "little")
    return hashlib.sha384(bytes(buf)).digest()


@dataclass(frozen=True)
class IdBlock:
    """``ID_BLOCK`` (ABI 56860 "ID_BLOCK Structure"): what the guest owner expects at launch."""

    ld: bytes  # expected launch digest (MEASUREMENT)
    family_id: bytes = bytes(16)
    image_id: bytes = bytes(16)
    guest_svn: int = 0
    policy: GuestPolicy = field(default_factory=GuestPolicy)
    version: int = 1

    def to_bytes(self) -> bytes:
        """The 0x60-byte structure that the ID key signs."""
        if len(self.ld) != 48 or len(self.family_id) != 16 or len(self.image_id) != 16:
            raise FormatError("ID_BLOCK", "LD/FAMILY_ID/IMAGE_ID", got=(len(self.ld),
                              len(self.family_id), len(self.image_id)), want=(48, 16, 16))
        return (self.ld + self.family_id + self.image_id + self.version.to_bytes(4, "little")
                + self.guest_svn.to_bytes(4, "little") + self.policy.to_u64().to_bytes(8, "little"))


@dataclass(frozen=True)
class IdAuth:
    """The ID block's authentication: ID key signature, and optionally the author key's."""

    id_key: ec.EllipticCurvePublicKey
    id_block_signature: bytes  # DER ECDSA P-384/SHA-384 over IdBlock.to_bytes()
    author_key: ec.EllipticCurvePublicKey | None = None
    id_key_signature: bytes | None = None  # by the author key over the ID key digest


def sign_id_block(block: IdBlock, id_key: ec.EllipticCurvePrivateKey,
                  author_key: ec.EllipticCurvePrivateKey | None = None) -> IdAuth:
    """Sign an ID block as a guest owner does before launch."""
    sig = id_key.sign(block.to_bytes(), ec.ECDSA(hashes.SHA384()))
    id_pub = id_key.public_key()
    if author_key is None:
        return IdAuth(id_key=id_pub, id_block_signature=sig)
    key_sig = author_key.sign(ecdsa_p384_public_key_digest(id_pub), ec.ECDSA(hashes.SHA384()))
    return IdAuth(id_key=id_pub, id_block_signature=sig, author_key=author_key.public_key(),
                  id_key_signature=key_sig)


@dataclass
class EmulatedAmdVendor:
    """The emulated vendor: an ARK and ASK (RSA, RSASSA-PSS SHA-384) that certify VCEKs.

    Generated fresh for each emulated world. Never a genuine AMD root, and never trusted unless
    a caller passes :meth:`anchors` explicitly.
    """

    product: Product
    ark_key: rsa.RSAPrivateKey
    ask_key: rsa.RSAPrivateKey
    ark: AmdCertificate
    ask: AmdCertificate

    @classmethod
    def generate(cls, product: Product = Product.MILAN, *, key_size: int = 4096,
                 now: datetime | None = None) -> EmulatedAmdVendor:
        """Create a vendor with fresh RSA keys (4096 bits as AMD uses; tests may use 2048)."""
        now = now or datetime.now(UTC)
        ark_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        ask_key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
        nb, na = now - timedelta(days=1), now + timedelta(days=25 * 365)
        ark = amd_certs.make_ark(ark_key, product, not_before=nb, not_after=na)
        ask = amd_certs.make_ask(ark_key, ark, ask_key.public_key(), product, not_before=nb,
                                 not_after=na)
        return cls(product=product, ark_key=ark_key, ask_key=ask_key, ark=ark, ask=ask)

    def anchors(self) -> TrustAnchors:
        """Trust anchors that accept this emulated vendor's ARK (explicit opt-in)."""
        return TrustAnchors.from_certificates(self.ark, product=self.product)

    def certify_vcek(self, public_key: ec.EllipticCurvePublicKey, tcb: TcbVersion,
                     hwid: bytes, *, now: datetime) -> AmdCertificate:
        """Issue a VCEK certificate as AMD's KDS does for (hwID, TCB)."""
        return amd_certs.make_vek(self.ask_key, self.ask, public_key, self.product, tcb=tcb,
                                  hwid=hwid, kind=SigningKey.VCEK,
                                  not_before=now - timedelta(days=1),
                                  not_after=now + timedelta(days=7 * 365))


class _SecureProcessor:
    """The AMD-SP firmware of one chip: holds the chip secret, derives VCEKs, signs reports."""

    def __init__(self, chip_secret: bytes, product: Product, tcb: TcbVersion,
                 version: FirmwareVersion) -> None:
        self._chip_secret = chip_secret
        self.product = product
        self.tcb = tcb
        self.committed_tcb = tcb
        self.version = version
        self.committed_version = version
        self._vceks: dict[int, ec.EllipticCurvePrivateKey] = {}

    def chip_secret_hex(self) -> str:
        """The chip secret, for persisting the emulated chip's fuses (insecure by name)."""
        return self._chip_secret.hex()

    @property
    def chip_id(self) -> bytes:
        """CHIP_ID: 64 bytes unique to the chip (Turin: an 8-byte ID, zero-padded)."""
        raw = _hkdf(self._chip_secret, b"chip-id", 64)
        return raw[:8] + bytes(56) if self.product is Product.TURIN else raw

    @property
    def hwid(self) -> bytes:
        """The hwID that AMD's KDS puts in VCEK certificates for this chip."""
        return self.chip_id[:8] if self.product is Product.TURIN else self.chip_id

    def vcek(self, tcb: TcbVersion) -> ec.EllipticCurvePrivateKey:
        """The VCEK for ``tcb``: a deterministic function of the chip secret and the TCB.

        Real parts derive the VCEK from a chip-unique secret mixed with each component's SPL,
        so a TCB change yields another key; we mirror that with HKDF over the TCB bytes.
        """
        key_id = tcb.to_u64()
        if key_id not in self._vceks:
            okm = _hkdf(self._chip_secret, b"vcek" + key_id.to_bytes(8, "little"), 64)
            d = int.from_bytes(okm, "big") % (_P384_ORDER - 1) + 1
            self._vceks[key_id] = ec.derive_private_key(d, ec.SECP384R1())
        return self._vceks[key_id]

    def chip_root_key(self, tcb: TcbVersion | None) -> bytes:
        """The chip's VCEK-root secret for ``tcb`` (or the TCB-independent root when None).

        Firmware can derive the root of its own TCB and of any older one (it is a one-way
        function of the chip secret and each SPL); the caller checks "older", we derive.
        """
        label = b"vcek-root" + (b"" if tcb is None else tcb.to_u64().to_bytes(8, "little"))
        return _hkdf(self._chip_secret, label, 48)

    def sign(self, report: AttestationReport) -> AttestationReport:
        """Sign the report's first 0x2A0 bytes with the VCEK for its REPORTED_TCB."""
        unsigned = replace(report, signature=EcdsaP384Signature(0, 0))
        der = self.vcek(report.reported_tcb).sign(unsigned.signed_bytes,
                                                  ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        return replace(unsigned, signature=EcdsaP384Signature(r, s))


@dataclass
class EmulatedSnpGuest:
    """A launched confidential VM on an emulated machine."""

    machine: InsecureEmulatedSnpMachine
    policy: GuestPolicy
    measurement: bytes
    host_data: bytes
    launch_tcb: TcbVersion
    report_id: bytes
    id_block: IdBlock | None = None
    id_key_digest: bytes = bytes(48)
    author_key_digest: bytes = bytes(48)
    vmpl: int = 0  # the privilege level the guest software runs at
    vmrk: bytes = field(default_factory=lambda: secrets.token_bytes(48), repr=False)

    @property
    def guest_svn(self) -> int:
        """The guest SVN from the ID block (0 without one)."""
        return self.id_block.guest_svn if self.id_block else 0

    def derived_key(self, request: MsgKeyReq) -> bytes:
        """MSG_KEY_REQ -> a 32-byte key from the secure processor (SNP_GET_DERIVED_KEY)."""
        return self.machine.handle_key_request(self, request.to_bytes())

    def attestation_report(self, report_data: bytes, vmpl: int | None = None,
                           *, report_version: int | None = None) -> bytes:
        """Ask the secure processor for a signed ATTESTATION_REPORT (1184 bytes)."""
        req = MsgReportReq(report_data=report_data,
                           vmpl=self.vmpl if vmpl is None else vmpl, key_sel=1)
        return self.machine.handle_report_request(self, req.to_bytes(),
                                                  report_version=report_version)

    def extended_report(self, report_data: bytes, vmpl: int | None = None) -> tuple[bytes, bytes]:
        """A report plus the certificate table (VCEK, ASK, ARK) as the host supplies it."""
        report = self.attestation_report(report_data, vmpl)
        return report, self.machine.cert_table().to_bytes()


class InsecureEmulatedSnpMachine:
    """An emulated AMD SEV-SNP host: one chip, its firmware, and the guests it launches.

    INSECURE: for development and tests. See the module docstring for what is modelled.
    """

    def __init__(self, vendor: EmulatedAmdVendor, *, chip_secret: bytes | None = None,
                 tcb: TcbVersion | None = None, firmware: FirmwareVersion | None = None,
                 platform_info: PlatformInfo | None = None, report_version: int = 3,
                 clock: datetime | None = None) -> None:
        self.vendor = vendor
        self.product = vendor.product
        tcb = tcb or _DEFAULT_TCB[self.product]
        if tcb.layout is not TcbLayout.for_product(self.product):
            raise PlatformError(f"TCB layout {tcb.layout.value} does not fit {self.product}")
        self._sp = _SecureProcessor(chip_secret or secrets.token_bytes(32), self.product, tcb,
                                    firmware or FirmwareVersion(1, 55, 40))
        self.platform_info = platform_info or PlatformInfo(smt_enabled=True, ecc_enabled=True,
                                                           alias_check_complete=True)
        if report_version not in (2, 3, 5):
            raise PlatformError(f"report version {report_version} not emulated (2, 3, 5)")
        self.report_version = report_version
        self._clock = clock
        self._vcek_certs: dict[int, AmdCertificate] = {}
        self._counters: dict[bytes, int] = {}
        self._state_dir: Path | None = None

    @classmethod
    def create(cls, product: Product = Product.MILAN, *, key_size: int = 4096,
               report_version: int = 3, clock: datetime | None = None
               ) -> InsecureEmulatedSnpMachine:
        """A machine with a fresh emulated vendor and a random chip secret."""
        return cls(EmulatedAmdVendor.generate(product, key_size=key_size, now=clock),
                   report_version=report_version, clock=clock)

    # -- persistence (the chip's fuses and NV state, kept in a file: insecure by name) ------
    STATE_FILE = "emulated-snp.json"

    def save(self, directory: Path) -> None:
        """Persist chip, firmware, vendor and NV counters to ``directory`` (atomically).

        From then on every NV change (counters) is written through, as real NV storage is.
        """
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )

        def key_pem(key: rsa.RSAPrivateKey) -> str:
            return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()

        sp = self._sp
        state = {
            "format": "veritee-emulated-snp/1",
            "product": self.product.value,
            "chip_secret": sp.chip_secret_hex(),
            "tcb": sp.tcb.to_u64(), "committed_tcb": sp.committed_tcb.to_u64(),
            "version": sp.version.as_tuple(), "committed_version": sp.committed_version.as_tuple(),
            "platform_info": self.platform_info.to_u64(),
            "report_version": self.report_version,
            "counters": {k.hex(): v for k, v in self._counters.items()},
            "ark_key": key_pem(self.vendor.ark_key), "ask_key": key_pem(self.vendor.ask_key),
            "ark": self.vendor.ark.public_bytes(Encoding.PEM).decode(),
            "ask": self.vendor.ask.public_bytes(Encoding.PEM).decode(),
        }
        atomic_write(Path(directory) / self.STATE_FILE, json.dumps(state, indent=1).encode())
        self._state_dir = Path(directory)

    @classmethod
    def load(cls, directory: Path) -> InsecureEmulatedSnpMachine:
        """Load a machine saved with :meth:`save`; ConfigError if the state is malformed."""
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        path = Path(directory) / cls.STATE_FILE
        try:
            state = json.loads(path.read_bytes())
            if state.get("format") != "veritee-emulated-snp/1":
                raise ConfigError(f"{path}: format {state.get('format')!r}, "
                                  "want 'veritee-emulated-snp/1'")
            product = Product(state["product"])
            layout = TcbLayout.for_product(product)
            ark_key = load_pem_private_key(state["ark_key"].encode(), None)
            ask_key = load_pem_private_key(state["ask_key"].encode(), None)
            if not isinstance(ark_key, rsa.RSAPrivateKey) or not isinstance(
                    ask_key, rsa.RSAPrivateKey):
                raise ConfigError(f"{path}: vendor keys must be RSA")
            vendor = EmulatedAmdVendor(
                product=product, ark_key=ark_key, ask_key=ask_key,
                ark=load_certificates(state["ark"].encode(), source=str(path))[0],
                ask=load_certificates(state["ask"].encode(), source=str(path))[0])
            machine = cls(vendor, chip_secret=bytes.fromhex(state["chip_secret"]),
                          tcb=TcbVersion.from_u64(state["tcb"], layout),
                          firmware=FirmwareVersion(*state["version"]),
                          platform_info=PlatformInfo.from_u64(state["platform_info"]),
                          report_version=state["report_version"])
            machine._sp.committed_tcb = TcbVersion.from_u64(state["committed_tcb"], layout)
            machine._sp.committed_version = FirmwareVersion(*state["committed_version"])
            machine._counters = {bytes.fromhex(k): int(v) for k, v in state["counters"].items()}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read emulated machine state ({exc.strerror})"
                              ) from None
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError | FormatError):
                raise
            raise ConfigError(f"{path}: malformed emulated machine state ({exc!r})") from None
        machine._state_dir = Path(directory)
        return machine

    @classmethod
    def open(cls, directory: Path, product: Product = Product.MILAN, *,
             key_size: int = 4096) -> InsecureEmulatedSnpMachine:
        """Load the machine kept in ``directory``, creating (and saving) it the first time."""
        if (Path(directory) / cls.STATE_FILE).exists():
            return cls.load(directory)
        machine = cls.create(product, key_size=key_size)
        machine.save(directory)
        return machine

    def _persist(self) -> None:
        if self._state_dir is not None:
            self.save(self._state_dir)

    # -- identity and collateral -----------------------------------------------------------
    @property
    def chip_id(self) -> bytes:
        """This chip's CHIP_ID."""
        return self._sp.chip_id

    @property
    def tcb(self) -> TcbVersion:
        """The firmware's current TCB."""
        return self._sp.tcb

    def now(self) -> datetime:
        """The machine's clock (fixed when the machine was built with ``clock``)."""
        return self._clock or datetime.now(UTC)

    def vcek_certificate(self, tcb: TcbVersion | None = None) -> AmdCertificate:
        """The VCEK certificate for ``tcb`` (default: the current TCB), as KDS would issue."""
        tcb = tcb or self._sp.tcb
        key = tcb.to_u64()
        if key not in self._vcek_certs:
            self._vcek_certs[key] = self.vendor.certify_vcek(
                self._sp.vcek(tcb).public_key(), tcb, self._sp.hwid, now=self.now())
        return self._vcek_certs[key]

    def certificates(self, tcb: TcbVersion | None = None) -> AmdCertificates:
        """ARK, ASK and VCEK as a verifier needs them."""
        return AmdCertificates(ark=self.vendor.ark, ask=self.vendor.ask,
                               vek=self.vcek_certificate(tcb), crl=None)

    def anchors(self) -> TrustAnchors:
        """Explicit trust in this machine's emulated vendor root."""
        return self.vendor.anchors()

    def cert_table(self) -> CertTable:
        """The GHCB certificate table the host hands to the guest with an extended report."""
        from cryptography.hazmat.primitives.serialization import Encoding

        return CertTable.build({"VCEK": self.vcek_certificate().public_bytes(Encoding.DER),
                                "ASK": self.vendor.ask.public_bytes(Encoding.DER),
                                "ARK": self.vendor.ark.public_bytes(Encoding.DER)})

    # -- firmware --------------------------------------------------------------------------
    def update_firmware(self, tcb: TcbVersion, version: FirmwareVersion | None = None, *,
                        commit: bool = True) -> None:
        """Install new secure-processor firmware: the TCB (and so the VCEK) changes.

        ``commit=False`` models a provisional update (SNP_COMMIT not yet run): the committed
        TCB and version stay behind.
        """
        if tcb.layout is not TcbLayout.for_product(self.product):
            raise PlatformError(f"TCB layout {tcb.layout.value} does not fit {self.product}")
        self._sp.tcb = tcb
        if version is not None:
            self._sp.version = version
        if commit:
            self._sp.committed_tcb = tcb
            self._sp.committed_version = self._sp.version

    # -- launch ----------------------------------------------------------------------------
    def launch(self, image: GuestImage, *, policy: GuestPolicy | None = None,
               vcpus: int = 1, host_data: bytes = bytes(32), id_block: IdBlock | None = None,
               id_auth: IdAuth | None = None) -> EmulatedSnpGuest:
        """SNP_LAUNCH_START/UPDATE/FINISH: measure ``image`` and start a guest.

        The launch digest covers every region of the image in order, then one VMSA page per
        vCPU. With an ID block, the firmware refuses the launch unless its expected digest and
        policy match and its signature verifies (ABI 56860, SNP_LAUNCH_FINISH).
        """
        policy = policy or GuestPolicy(smt=True)
        if len(host_data) != 32:
            raise PlatformError(f"HOST_DATA must be 32 bytes, got {len(host_data)}")
        if not 1 <= vcpus <= 512:
            raise PlatformError(f"vcpus must be 1..512, got {vcpus}")
        if not policy.smt and self.platform_info.smt_enabled:
            # ABI 56860 SNP_LAUNCH_START: SMT enabled on the host but disallowed by policy.
            raise PlatformError("guest policy forbids SMT but SMT is enabled on this host")
        measurement = measure(image, vmsas=[vmsa_page(vcpu) for vcpu in range(vcpus)])
        id_key_digest = author_key_digest = bytes(48)
        if id_block is not None:
            if id_auth is None:
                raise PlatformError("an ID block needs its ID_AUTH signature")
            self._check_id_block(id_block, id_auth, measurement, policy)
            id_key_digest = ecdsa_p384_public_key_digest(id_auth.id_key)
            if id_auth.author_key is not None:
                author_key_digest = ecdsa_p384_public_key_digest(id_auth.author_key)
        return EmulatedSnpGuest(
            machine=self, policy=policy, measurement=measurement, host_data=host_data,
            launch_tcb=self._sp.tcb, report_id=secrets.token_bytes(32), id_block=id_block,
            id_key_digest=id_key_digest, author_key_digest=author_key_digest)

    @staticmethod
    def _check_id_block(block: IdBlock, auth: IdAuth, measurement: bytes,
                        policy: GuestPolicy) -> None:
        from cryptography.exceptions import InvalidSignature

        if not hmac.compare_digest(block.ld, measurement):
            raise PlatformError("SNP_LAUNCH_FINISH: ID block digest does not match the launch "
                                f"measurement (got {block.ld.hex()}, measured {measurement.hex()})")
        if block.policy != policy:
            raise PlatformError("SNP_LAUNCH_FINISH: ID block policy differs from launch policy")
        try:
            auth.id_key.verify(auth.id_block_signature, block.to_bytes(),
                               ec.ECDSA(hashes.SHA384()))
            if auth.author_key is not None:
                if auth.id_key_signature is None:
                    raise PlatformError("author key given without its signature over the ID key")
                auth.author_key.verify(auth.id_key_signature,
                                       ecdsa_p384_public_key_digest(auth.id_key),
                                       ec.ECDSA(hashes.SHA384()))
        except InvalidSignature:
            raise PlatformError("SNP_LAUNCH_FINISH: ID block authentication failed") from None

    # -- guest requests --------------------------------------------------------------------
    def handle_report_request(self, guest: EmulatedSnpGuest, request: bytes, *,
                              report_version: int | None = None) -> bytes:
        """MSG_REPORT_REQ -> signed ATTESTATION_REPORT bytes."""
        req = MsgReportReq.from_bytes(request)
        if req.vmpl < guest.vmpl:
            # ABI 56860 MSG_REPORT_REQ: VMPL must be >= the requesting VMPL.
            raise PlatformError(f"a guest at VMPL{guest.vmpl} cannot request a VMPL{req.vmpl} "
                                "report")
        if req.key_sel == 2:
            raise PlatformError("no VLEK is installed on this emulated chip")
        version = report_version or self.report_version
        sp = self._sp
        block = guest.id_block
        report = AttestationReport(
            version=version,
            guest_svn=block.guest_svn if block else 0,
            policy=guest.policy,
            family_id=block.family_id if block else bytes(16),
            image_id=block.image_id if block else bytes(16),
            vmpl=req.vmpl,
            signature_algo=1,
            current_tcb=sp.tcb,
            platform_info=self.platform_info,
            signer_info=SignerInfo(author_key_en=guest.author_key_digest != bytes(48),
                                   signing_key=SigningKey.VCEK),
            report_data=req.report_data,
            measurement=guest.measurement,
            host_data=guest.host_data,
            id_key_digest=guest.id_key_digest,
            author_key_digest=guest.author_key_digest,
            report_id=guest.report_id,
            report_id_ma=b"\xff" * 32,  # no migration agent
            reported_tcb=sp.tcb,
            chip_id=sp.chip_id,
            committed_tcb=sp.committed_tcb,
            current_version=sp.version,
            committed_version=sp.committed_version,
            launch_tcb=guest.launch_tcb,
            signature=EcdsaP384Signature(0, 0),
            cpuid=_CPUID[self.product] if version >= 3 else None,
            launch_mit_vector=0 if version >= 5 else None,
            current_mit_vector=0 if version >= 5 else None,
        )
        return sp.sign(report).to_bytes()

    def handle_key_request(self, guest: EmulatedSnpGuest, request: bytes) -> bytes:
        """MSG_KEY_REQ -> MSG_KEY_RSP's 32-byte DERIVED_KEY.

        ABI 56860 MSG_KEY_REQ: the key is derived from the selected root key and mixes in
        the VMPL, GUEST_FIELD_SELECT itself, the selected guest fields (the *requested*
        GUEST_SVN and TCB_VERSION, which must not exceed the guest's SVN and the current
        TCB) and the launch signer: the author key digest when AUTHOR_KEY_EN, else the ID
        key digest. So a newer workload can derive an older identity's key, never the reverse.
        """
        req = MsgKeyReq.from_bytes(request)
        if req.vmpl < guest.vmpl:
            raise PlatformError(f"a guest at VMPL{guest.vmpl} cannot derive a VMPL{req.vmpl} key")
        if req.key_sel == 2:
            raise PlatformError("no VLEK is installed on this emulated chip")
        sel = req.guest_field_select
        if sel & GuestFieldSelect.GUEST_SVN and req.guest_svn > guest.guest_svn:
            raise PlatformError(f"requested GUEST_SVN {req.guest_svn} exceeds the guest's "
                                f"{guest.guest_svn}")
        tcb: TcbVersion | None = None
        if sel & GuestFieldSelect.TCB_VERSION:
            tcb = TcbVersion.from_u64(req.tcb_version, TcbLayout.for_product(self.product),
                                      structure="MSG_KEY_REQ", offset=0x18)
            current = self._sp.tcb.components()
            higher = [k for k, v in tcb.components().items() if v > current[k]]
            if higher:
                raise PlatformError(f"requested TCB_VERSION exceeds the current TCB in {higher}")
        if req.root_key_select is RootKeySelect.VMRK:
            root = guest.vmrk
        else:
            root = self._sp.chip_root_key(tcb)
        signer = guest.author_key_digest if guest.author_key_digest != bytes(48) \
            else guest.id_key_digest
        block = guest.id_block
        fields = [
            (GuestFieldSelect.GUEST_POLICY, guest.policy.to_u64().to_bytes(8, "little")),
            (GuestFieldSelect.IMAGE_ID, block.image_id if block else bytes(16)),
            (GuestFieldSelect.FAMILY_ID, block.family_id if block else bytes(16)),
            (GuestFieldSelect.MEASUREMENT, guest.measurement),
            (GuestFieldSelect.GUEST_SVN, req.guest_svn.to_bytes(4, "little")),
            (GuestFieldSelect.TCB_VERSION, req.tcb_version.to_bytes(8, "little")),
        ]
        context = b"".join(value if sel & bit else bytes(len(value)) for bit, value in fields)
        info = (b"msg-key-req" + req.vmpl.to_bytes(4, "little") + int(sel).to_bytes(8, "little")
                + signer + context)
        return HKDF(algorithm=hashes.SHA384(), length=32, salt=None, info=info).derive(root)

    # -- non-volatile monotonic counters (rollback protection) -----------------------------
    def counter_create(self, counter_id: bytes | None = None) -> bytes:
        """Allocate a monotonic counter in the secure processor's NV state; return its id.

        With ``counter_id`` (a caller-declared id) the counter is created at 0 only if it
        does not exist yet; an existing one keeps its value (values never go down).
        """
        if counter_id is None:
            counter_id = secrets.token_bytes(16)
        elif len(counter_id) != 16:
            raise PlatformError(f"counter id: got {len(counter_id)} bytes, want 16")
        elif counter_id in self._counters:
            return counter_id
        self._counters[counter_id] = 0
        self._persist()
        return counter_id

    def counter_read(self, counter_id: bytes) -> int:
        """The counter's value; PlatformError for an unknown id."""
        try:
            return self._counters[counter_id]
        except KeyError:
            raise PlatformError(f"no monotonic counter {counter_id.hex()}") from None

    def counter_advance(self, counter_id: bytes, to: int) -> int:
        """Raise the counter to ``to`` (never lowers it); return the new value."""
        value = max(self.counter_read(counter_id), to)
        if value != self._counters[counter_id]:
            self._counters[counter_id] = value
            self._persist()
        return value

    def trng(self, n: int) -> bytes:
        """Bytes from the secure processor's TRNG (the host OS's CSPRNG stands in for it)."""
        return os.urandom(n)


def vmsa_page(vcpu: int) -> bytes:
    """A deterministic initial VMSA page for ``vcpu`` (4096 bytes).

    A simplified reset state (the real VMSA layout, ABI 56860 "VMSA", is large): the x86
    reset vector CS base/selector and RIP at their VMSA offsets, and the vCPU number, so each
    vCPU's page and therefore the launch digest depend on the vCPU count.
    """
    page = bytearray(4096)
    # CS segment: selector 0xF000 at 0x10, attrib 0x9B at 0x12, limit 0xFFFF at 0x14,
    # base 0xFFFF0000 at 0x18 (VMSA segment register layout); RIP 0xFFF0 at 0x178.
    page[0x10:0x12] = (0xF000).to_bytes(2, "little")
    page[0x12:0x14] = (0x9B).to_bytes(2, "little")
    page[0x14:0x18] = (0xFFFF).to_bytes(4, "little")
    page[0x18:0x20] = (0xFFFF0000).to_bytes(8, "little")
    page[0x178:0x180] = (0xFFF0).to_bytes(8, "little")
    page[0x3F0:0x3F8] = vcpu.to_bytes(8, "little")  # stands in for the APIC ID
    return bytes(page)
