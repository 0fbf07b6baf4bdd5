"""AMD Key Distribution Service (KDS) client: VCEKs, certificate chains and CRLs, cached.

The only network I/O of the SEV-SNP path, and it never decides anything: what it fetches is
verified like any other collateral (the ARK must match a pinned fingerprint, every signature
and validity is checked). URLs follow AMD's "Versioned Chip Endorsement Key (VCEK) Certificate
and KDS Interface Specification" (57230):

* ``/vcek/v1/{product}/{hwid}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`` (Turin adds
  ``fmcSPL`` and takes the 8-byte hwID) -> the VCEK, DER;
* ``/{vcek|vlek}/v1/{product}/cert_chain`` -> ASK (or ASVK) then ARK, PEM;
* ``/{vcek|vlek}/v1/{product}/crl`` -> the ARK's CRL, DER.

VLEKs are not served by hwID (the cloud provider holds them): a VLEK must come with the
evidence. Responses are cached on disk (``cache_dir``) with atomic writes: certificates by
URL, CRLs until their nextUpdate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx
from cryptography import x509

from veritee._decode import read_bounded
from veritee._fs import atomic_write
from veritee.crypto._x509 import load_crl as load_x509_crl
from veritee.crypto.amd_certs import AmdCertificate, load_certificates
from veritee.errors import CollateralError, FormatError
from veritee.formats.sevsnp import AttestationReport, Product, SigningKey, TcbVersion
from veritee.trust.sevsnp import AmdCertificates

__all__ = ["DEFAULT_KDS", "KdsClient", "vcek_url"]

DEFAULT_KDS = "https://kdsintf.amd.com"


def vcek_url(base: str, product: Product, chip_id: bytes, tcb: TcbVersion) -> str:
    """The KDS URL of the VCEK for ``chip_id`` at ``tcb`` (57230, "VCEK Certificate")."""
    turin = product is Product.TURIN
    hwid = chip_id[:8] if turin else chip_id
    query = f"blSPL={tcb.bootloader}&teeSPL={tcb.tee}&snpSPL={tcb.snp}&ucodeSPL={tcb.microcode}"
    if turin:
        query = f"fmcSPL={tcb.fmc}&" + query
    return f"{base.rstrip('/')}/vcek/v1/{product.value}/{hwid.hex()}?{query}"


class KdsClient:
    """Fetches collateral from AMD's KDS (or a mirror at ``base_url``), with a disk cache."""

    def __init__(self, base_url: str = DEFAULT_KDS, *, cache_dir: Path | None = None,
                 timeout: float = 10.0, client: httpx.Client | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.cache_dir = cache_dir
        self._client = client or httpx.Client(timeout=timeout, follow_redirects=False)
        self._now = now

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def _cache_path(self, url: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / hashlib.sha256(url.encode()).hexdigest()

    def _get(self, url: str, *, cacheable: bool = True) -> bytes:
        path = self._cache_path(url)
        if cacheable and path is not None and path.is_file():
            return _read_cached(path, url)
        try:
            # Streamed and cut at _MAX_RESPONSE: a hostile mirror cannot make us hold more.
            with self._client.stream("GET", url) as response:
                if response.status_code == 429:
                    raise CollateralError(f"{url}: rate limited by the KDS (HTTP 429); retry "
                                          "later or use a cache directory")
                if response.status_code != 200:
                    raise CollateralError(f"{url}: HTTP {response.status_code}")
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > _MAX_RESPONSE:
                        raise CollateralError(f"{url}: response larger than {_MAX_RESPONSE} "
                                              "bytes")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            # A person reads this: the reason, not the exception class (unless it has no text).
            raise CollateralError(f"{url}: cannot reach AMD's KDS: "
                                  f"{exc or type(exc).__name__}") from None
        body = b"".join(chunks)
        if path is not None:
            atomic_write(path, body, 0o644)
        return body

    def vcek(self, product: Product, chip_id: bytes, tcb: TcbVersion) -> AmdCertificate:
        """The VCEK for this chip and TCB."""
        url = vcek_url(self.base_url, product, chip_id, tcb)
        try:
            return AmdCertificate.from_der(self._get(url))
        except FormatError as exc:
            raise CollateralError(f"{url}: not a DER certificate ({exc})") from None

    def cert_chain(self, product: Product, kind: SigningKey = SigningKey.VCEK
                   ) -> tuple[AmdCertificate, AmdCertificate]:
        """(ASK or ASVK, ARK) for ``product``."""
        url = f"{self.base_url}/{kind.name.lower()}/v1/{product.value}/cert_chain"
        try:
            certs = load_certificates(self._get(url), source=url)
        except FormatError as exc:
            raise CollateralError(f"{url}: not a PEM chain ({exc})") from None
        if len(certs) != 2:
            raise CollateralError(f"{url}: got {len(certs)} certificates, want 2 (ASK, ARK)")
        return certs[0], certs[1]

    def crl(self, product: Product, kind: SigningKey = SigningKey.VCEK
            ) -> x509.CertificateRevocationList:
        """The ARK's CRL; a cached copy is used until its nextUpdate."""
        url = f"{self.base_url}/{kind.name.lower()}/v1/{product.value}/crl"
        cached = self._cache_path(url)
        if cached is not None and cached.is_file() and self._now is not None:
            crl = _load_crl(_read_cached(cached, url), url)
            if crl.next_update_utc is not None and self._now() < crl.next_update_utc:
                return crl
        return _load_crl(self._get(url, cacheable=False), url)

    def collateral_for(self, report: AttestationReport, *, product: Product | None = None,
                       with_crl: bool = False) -> AmdCertificates:
        """Everything needed to verify ``report``: its VCEK, ASK and ARK (and the CRL)."""
        prod = product or (report.cpuid.product if report.cpuid else None)
        if prod is None:
            raise CollateralError("the report carries no CPUID (version 2): say which product "
                                  "it is (Milan, Genoa, Turin) to fetch its VCEK")
        kind = report.signer_info.signing_key
        if kind is not SigningKey.VCEK:
            raise CollateralError(f"{kind.name}-signed report: the KDS serves VCEKs by chip; "
                                  "a VLEK must come with the evidence")
        if report.signer_info.mask_chip_key or not any(report.chip_id):
            raise CollateralError("CHIP_ID is masked: the VCEK cannot be looked up")
        ask, ark = self.cert_chain(prod)
        return AmdCertificates(ark=ark, ask=ask,
                               vek=self.vcek(prod, report.chip_id, report.reported_tcb),
                               crl=self.crl(prod) if with_crl else None)


_MAX_RESPONSE = 1 << 20
"""Largest KDS response accepted: a certificate chain or CRL is a few KiB."""


def _read_cached(path: Path, url: str) -> bytes:
    try:
        return read_bounded(path, limit=_MAX_RESPONSE, what="KDS cache")
    except (OSError, FormatError) as exc:
        raise CollateralError(f"{url}: cached copy {path} unreadable ({exc})") from None


def _load_crl(data: bytes, source: str) -> x509.CertificateRevocationList:
    # Every field parsed here (crypto._x509): a malformed CRL is a CollateralError now.
    try:
        return load_x509_crl(data, structure=source)
    except FormatError:
        raise CollateralError(f"{source}: not a CRL") from None
