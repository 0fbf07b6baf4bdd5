"""Trust anchors: the genuine vendor roots, pinned by the SHA-256 of their DER encoding.

Only these pins are trusted by default. Emulated or test roots are never trusted unless a caller
builds :class:`TrustAnchors` from them explicitly with :meth:`TrustAnchors.from_certificates`.
No certificate file is shipped: a pin is enough to recognise the ARK a chain presents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from veritee.crypto.amd_certs import AmdCertificate
from veritee.formats.sevsnp import Product

__all__ = ["AMD_ARK_SHA256", "TrustAnchors", "fingerprint"]

AMD_ARK_SHA256: Mapping[Product, str] = MappingProxyType({
    # AMD Root Keys as served by KDS (https://kdsintf.amd.com/vcek/v1/<product>/cert_chain);
    # the same DER is in go-sev-guest verify/trust, virtee/sev builtin certs and trustee.
    Product.MILAN: "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    Product.GENOA: "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    Product.TURIN: "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
})
"""SHA-256 (hex) of the DER of each genuine AMD ARK, by product."""


def fingerprint(cert: AmdCertificate | x509.Certificate | bytes) -> str:
    """SHA-256 hex of a certificate's DER (``bytes`` are taken to be DER)."""
    if isinstance(cert, AmdCertificate):
        return cert.sha256
    if isinstance(cert, x509.Certificate):
        return cert.fingerprint(hashes.SHA256()).hex()
    h = hashes.Hash(hashes.SHA256())
    h.update(bytes(cert))
    return h.finalize().hex()


def _product_of(cert: AmdCertificate | x509.Certificate) -> Product:
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    cn = str(cns[0].value) if len(cns) == 1 else ""
    for product in Product:
        if cn == f"ARK-{product.value}":
            return product
    raise ValueError(f"cannot tell the product of root {cn!r}; pass product=")


@dataclass(frozen=True)
class TrustAnchors:
    """The root certificates a verifier accepts, as ``(sha256 hex, product)`` pins.

    ``name`` says where the pins came from ("amd" for the genuine roots).
    """

    pins: frozenset[tuple[str, Product]]
    name: str = "explicit"

    @classmethod
    def amd(cls) -> TrustAnchors:
        """The genuine AMD ARKs (Milan, Genoa, Turin)."""
        return cls(frozenset((fp, p) for p, fp in AMD_ARK_SHA256.items()), name="amd")

    @classmethod
    def from_certificates(cls, *certs: AmdCertificate | x509.Certificate,
                          product: Product | None = None,
                          name: str = "explicit") -> TrustAnchors:
        """Trust exactly ``certs`` (e.g. an emulated machine's ARK) as roots.

        ``product`` defaults to the one each ARK names in its CN ("ARK-Milan" -> Milan).
        """
        if not certs:
            raise ValueError("from_certificates needs at least one certificate")
        return cls(frozenset((fingerprint(c), product or _product_of(c)) for c in certs),
                   name=name)

    def __or__(self, other: TrustAnchors) -> TrustAnchors:
        return TrustAnchors(self.pins | other.pins, name=f"{self.name}+{other.name}")

    def product_of(self, cert: AmdCertificate | x509.Certificate | bytes) -> Product | None:
        """The product the pin for ``cert`` is for, or ``None`` when it is not pinned."""
        fp = fingerprint(cert)
        return next((p for f, p in self.pins if f == fp), None)

    def is_trusted(self, cert: AmdCertificate | x509.Certificate | bytes) -> bool:
        """True when ``cert``'s DER hashes to one of the pins."""
        return self.product_of(cert) is not None
