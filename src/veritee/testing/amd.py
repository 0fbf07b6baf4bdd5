"""A fake AMD: a whole ARK -> ASK/ASVK -> VCEK/VLEK chain with real keys, and signed reports.

The fake signs for real, so tests run the production verifier unchanged; only the trust anchors
differ (:meth:`FakeAmd.anchors`, never trusted unless passed). Every field can be overridden to
build one-change negative cases::

    amd = FakeAmd(Product.MILAN, keys=FakeAmdKeys.generate(key_size=2048))
    report = amd.make_report(report_data=nonce)
    verify_report(report, amd.certificates(), anchors=amd.anchors(), now=amd.now)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from veritee.crypto.amd_certs import AmdCertificate, make_ark, make_ask, make_crl, make_vek
from veritee.formats.sevsnp import (
    AttestationReport,
    Cpuid,
    EcdsaP384Signature,
    FirmwareVersion,
    GuestPolicy,
    PlatformInfo,
    Product,
    SignerInfo,
    SigningKey,
    TcbVersion,
)
from veritee.trust.roots import TrustAnchors
from veritee.trust.sevsnp import AmdCertificates

__all__ = ["DEFAULT_NOW", "FakeAmd", "FakeAmdKeys"]

DEFAULT_NOW = datetime(2025, 1, 1, tzinfo=UTC)
"""The instant the default validity windows are built around (a constant, not a clock)."""

_CPUID = {Product.MILAN: Cpuid(0x19, 0x01, 0x01), Product.GENOA: Cpuid(0x19, 0x11, 0x01),
          Product.TURIN: Cpuid(0x1A, 0x02, 0x00)}
_TCB = {Product.MILAN: TcbVersion(bootloader=3, tee=0, snp=8, microcode=115),
        Product.GENOA: TcbVersion(bootloader=10, tee=0, snp=23, microcode=25),
        Product.TURIN: TcbVersion(bootloader=1, tee=0, snp=3, microcode=9, fmc=1)}


@dataclass(frozen=True)
class FakeAmdKeys:
    """The private keys of one fake AMD: RSA ARK, ASK, ASVK and ECDSA P-384 VCEK, VLEK.

    RSA-4096 (AMD's size) is slow to generate; tests share one set across a session and may use
    2048 bits.
    """

    ark: rsa.RSAPrivateKey
    ask: rsa.RSAPrivateKey
    asvk: rsa.RSAPrivateKey
    vcek: ec.EllipticCurvePrivateKey
    vlek: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls, *, key_size: int = 4096) -> FakeAmdKeys:
        """Fresh keys."""
        def rsa_key() -> rsa.RSAPrivateKey:
            return rsa.generate_private_key(public_exponent=65537, key_size=key_size)

        return cls(ark=rsa_key(), ask=rsa_key(), asvk=rsa_key(),
                   vcek=ec.generate_private_key(ec.SECP384R1()),
                   vlek=ec.generate_private_key(ec.SECP384R1()))


def _window(now: datetime, before: timedelta, after: timedelta) -> tuple[datetime, datetime]:
    return now - before, now + after


class FakeAmd:
    """Mints an AMD-profile chain for ``product`` and signs reports with the VEK.

    ``kind`` picks a VCEK (chip-bound, ``hwid``) or VLEK (CSP-bound, ``csp_id``) chain. The
    keyword overrides change one thing each: validity windows (``ark_validity`` ...), the TCB
    and hwID written into the VEK, its ``product_name``, serial numbers, and which key signs
    what (``ask_signer``/``vek_signer`` to sign with a key other than the real issuer,
    ``ark_signer`` for an ARK not signed by its own key). ``vek_options`` go to ``make_vek``
    unchanged (``salt_length``, ``omit``, ``extra``, ``common_name``...).
    """

    def __init__(self, product: Product = Product.MILAN, *, kind: SigningKey = SigningKey.VCEK,
                 keys: FakeAmdKeys | None = None, key_size: int = 4096,
                 now: datetime = DEFAULT_NOW, tcb: TcbVersion | None = None,
                 hwid: bytes | None = None, csp_id: str = "fake-csp",
                 product_name: str | None = None,
                 ark_validity: tuple[datetime, datetime] | None = None,
                 ask_validity: tuple[datetime, datetime] | None = None,
                 vek_validity: tuple[datetime, datetime] | None = None,
                 ark_serial: int | None = None, ask_serial: int | None = None,
                 vek_serial: int = 0,
                 ark_signer: rsa.RSAPrivateKey | None = None,
                 ask_signer: rsa.RSAPrivateKey | None = None,
                 vek_signer: rsa.RSAPrivateKey | None = None,
                 ark_options: dict[str, Any] | None = None,
                 ask_options: dict[str, Any] | None = None,
                 vek_options: dict[str, Any] | None = None) -> None:
        if kind not in (SigningKey.VCEK, SigningKey.VLEK):
            raise ValueError("kind must be VCEK or VLEK")
        self.product = product
        self.kind = kind
        self.now = now
        self.keys = keys or FakeAmdKeys.generate(key_size=key_size)
        self.tcb = tcb or _TCB[product]
        turin = product is Product.TURIN
        self.hwid = hwid if hwid is not None else bytes(range(0x40, 0x48) if turin
                                                        else range(0x40, 0x80))
        self.csp_id = csp_id
        ark_nb, ark_na = ark_validity or _window(now, timedelta(days=3650), timedelta(days=9000))
        ask_nb, ask_na = ask_validity or _window(now, timedelta(days=3600), timedelta(days=9000))
        vek_nb, vek_na = vek_validity or _window(now, timedelta(days=30), timedelta(days=7 * 365))
        self.ark = make_ark(self.keys.ark, product, not_before=ark_nb, not_after=ark_na,
                            serial=ark_serial, signer_key=ark_signer, **(ark_options or {}))
        # One ARK signs both intermediates, as at AMD; the ask_*/vek_* overrides apply to both
        # kinds, and `kind` picks which pair `ask`/`vek`, `certificates()` and reports use.
        self.asvk = make_ask(ask_signer or self.keys.ark, self.ark, self.keys.asvk.public_key(),
                             product, not_before=ask_nb, not_after=ask_na,
                             serial=ask_serial if kind is SigningKey.VLEK else None, vlek=True,
                             **(ask_options or {}))
        self.vlek = make_vek(vek_signer or self.keys.asvk, self.asvk,
                             self.keys.vlek.public_key(), product, self.tcb,
                             kind=SigningKey.VLEK, csp_id=csp_id, not_before=vek_nb,
                             not_after=vek_na, serial=vek_serial, product_name=product_name,
                             **(vek_options or {}))
        self.sev_ask = make_ask(ask_signer or self.keys.ark, self.ark,
                                self.keys.ask.public_key(), product, not_before=ask_nb,
                                not_after=ask_na,
                                serial=None if kind is SigningKey.VLEK else ask_serial,
                                **(ask_options or {}))
        self.vcek = make_vek(vek_signer or self.keys.ask, self.sev_ask,
                             self.keys.vcek.public_key(), product, self.tcb,
                             kind=SigningKey.VCEK, hwid=self.hwid, not_before=vek_nb,
                             not_after=vek_na, serial=vek_serial, product_name=product_name,
                             **(vek_options or {}))
        vlek = kind is SigningKey.VLEK
        # `ask`/`vek`: the intermediate (ASVK for VLEK) and VEK of this fake's `kind`.
        self.ask = self.asvk if vlek else self.sev_ask
        self.vek = self.vlek if vlek else self.vcek
        self._vek_key = self.keys.vlek if vlek else self.keys.vcek

    # -- collateral ------------------------------------------------------------------------
    def certificates(self, *, crl: x509.CertificateRevocationList | None = None,
                     kind: SigningKey | None = None) -> AmdCertificates:
        """The chain of ``kind`` (default: this fake's) and ``crl`` as verification collateral."""
        if (self.kind if kind is None else kind) is SigningKey.VLEK:
            return AmdCertificates(ark=self.ark, ask=self.asvk, vek=self.vlek, crl=crl)
        return AmdCertificates(ark=self.ark, ask=self.sev_ask, vek=self.vcek, crl=crl)

    def anchors(self) -> TrustAnchors:
        """Trust anchors that accept exactly this fake's ARK."""
        return TrustAnchors.from_certificates(self.ark, product=self.product,
                                              name=f"fake-amd-{self.product.value}")

    def crl(self, revoked: Iterable[int | AmdCertificate] = (), *,
            last_update: datetime | None = None, next_update: datetime | None = None,
            signer: rsa.RSAPrivateKey | None = None, salt_length: int = 48
            ) -> x509.CertificateRevocationList:
        """An ARK-issued CRL listing ``revoked`` (serials or certificates)."""
        serials = [r.serial_number if isinstance(r, AmdCertificate) else r for r in revoked]
        return make_crl(signer or self.keys.ark, self.ark, serials,
                        last_update or self.now - timedelta(days=1),
                        next_update or self.now + timedelta(days=7), salt_length=salt_length)

    # -- reports ---------------------------------------------------------------------------
    @property
    def cpuid(self) -> Cpuid:
        """The CPUID this fake chip reports."""
        return _CPUID[self.product]

    @property
    def chip_id(self) -> bytes:
        """CHIP_ID as the report carries it (Turin: the 8-byte hwID, zero-padded to 64)."""
        return self.hwid.ljust(64, b"\0")

    def make_report(self, **overrides: Any) -> AttestationReport:
        """A plausible v3 report from this chip, signed by the VEK; ``overrides`` set fields.

        Pass ``sign=False`` to get it unsigned (zero signature).
        """
        sign = overrides.pop("sign", True)
        fw = FirmwareVersion(1, 55, 21)
        fields: dict[str, Any] = dict(
            version=3, guest_svn=0, policy=GuestPolicy(smt=True), family_id=bytes(16),
            image_id=bytes(16), vmpl=0, signature_algo=1, current_tcb=self.tcb,
            platform_info=PlatformInfo(smt_enabled=True),
            signer_info=SignerInfo(signing_key=self.kind), report_data=bytes(64),
            measurement=bytes(range(48)), host_data=bytes(32), id_key_digest=bytes(48),
            author_key_digest=bytes(48), report_id=bytes(range(32)), report_id_ma=b"\xff" * 32,
            reported_tcb=self.tcb, chip_id=self.chip_id, committed_tcb=self.tcb,
            current_version=fw, committed_version=fw, launch_tcb=self.tcb,
            signature=EcdsaP384Signature(0, 0), cpuid=self.cpuid)
        fields.update(overrides)
        report = AttestationReport(**fields)
        return self.sign_report(report) if sign else report

    def sign_report(self, report: AttestationReport,
                    key: ec.EllipticCurvePrivateKey | None = None) -> AttestationReport:
        """``report`` with its signature set by this fake's VEK (or ``key``)."""
        signer = key or self._vek_key
        unsigned = dataclasses.replace(report, signature=EcdsaP384Signature(0, 0))
        der = signer.sign(unsigned.signed_bytes, ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        return dataclasses.replace(report, signature=EcdsaP384Signature(r, s))
