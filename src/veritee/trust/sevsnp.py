"""SEV-SNP report verification: VEK signature, AMD certificate chain, CRL, VEK/report binding.

CONTRACT (owned by the trust helper; the types below are shared with policy/attest/CLI and must
keep these fields; more fields may be added).
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from veritee.formats.sevsnp import AttestationReport, Product, SigningKey, TcbVersion
from veritee.policy import Finding


@dataclass(frozen=True)
class VekInfo:
    """What AMD's extensions in a VCEK/VLEK certificate say (OIDs 1.3.6.1.4.1.3704.1.*)."""

    kind: SigningKey  # VCEK or VLEK
    product: Product
    product_name: str  # as in the certificate, e.g. "Milan-B0"
    struct_version: int | None
    tcb: TcbVersion  # bl/tee/snp/ucode (+fmc for Turin) SPLs, in the product's layout
    hwid: bytes | None  # 64 bytes (Milan/Genoa) or 8 bytes (Turin); VCEK only
    csp_id: str | None  # VLEK only


@dataclass(frozen=True)
class VerifiedReport:
    """A report whose signature, chain and revocation status were checked at ``checked_at``."""

    report: AttestationReport
    product: Product
    vek: VekInfo
    chain: tuple[x509.Certificate, ...]  # (VEK, ASK or ASVK, ARK)
    ark_fingerprint: str  # SHA-256 hex of the ARK's DER
    checks: tuple[Finding, ...]  # every verification step that ran, all passed
