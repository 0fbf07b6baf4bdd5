"""The AMD SEV-SNP scheme: a bare ``ATTESTATION_REPORT``, an Azure HCL report wrapping one, or a
configfs-tsm report (JSON/CBOR) carrying one and its certificate table.

Collateral (vendor ``amd``): :class:`~veritee.trust.sevsnp.AmdCertificates` (ARK, ASK/ASVK,
VCEK/VLEK, CRL), merged with the evidence's certificate table, then (when the context has a
fetcher ``amd``, a :class:`~veritee.collateral.kds.KdsClient`) AMD's KDS. Anchors:
:class:`~veritee.trust.roots.TrustAnchors` (default: the genuine AMD ARKs). Binding:
REPORT_DATA, 64 bytes. Policy: :class:`~veritee.policy.sevsnp.SevSnpPolicy`.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from veritee._memo import remember
from veritee.errors import CollateralError, ConfigError, FormatError, VerificationError
from veritee.findings import Finding, Outcome
from veritee.formats.azure import HclReport
from veritee.formats.sevsnp import (
    REPORT_SIZE,
    SIGNED_SIZE,
    AttestationReport,
    CertTable,
    EcdsaP384Signature,
    Product,
)
from veritee.formats.tsm import TsmReport
from veritee.policy import Appraisal
from veritee.policy.sevsnp import SevSnpPolicy, appraise, policy_from_mapping, policy_to_mapping
from veritee.results import (
    AFFIRMING,
    NO_CLAIM,
    VectorRules,
    vector_from_rules,
)
from veritee.schemes import Context, Verified
from veritee.trust.roots import TrustAnchors
from veritee.trust.sevsnp import AmdCertificates, ChainCache, VerifiedReport, verify_report

__all__ = ["SCHEME", "VECTOR_RULES", "SevSnpCache", "SevSnpEvidence", "SevSnpScheme",
           "trust_vector"]

_HCL_MAGIC = b"HCLA"

VECTOR_RULES = VectorRules(
    hardware_unrecognised=("sevsnp.product.", "sevsnp.signing_key."),
    hardware_unsafe=("sevsnp.tcb.", "sevsnp.committed_tcb.", "sevsnp.launch_tcb.",
                     "sevsnp.firmware.", "sevsnp.report_version.", "sevsnp.reported_tcb."),
    hardware_unknown=("sevsnp.revocation.",),
    executables=("sevsnp.measurement.", "sevsnp.id_key.", "sevsnp.author_key.",
                 "sevsnp.family_id.", "sevsnp.image_id.", "sevsnp.guest_svn."),
    reference=("sevsnp.measurement.mismatch",),
    config_contraindicated=("sevsnp.policy.debug", "sevsnp.policy.migrate_ma"),
    config_unsafe=("sevsnp.policy.", "sevsnp.vmpl.", "sevsnp.host_data.", "sevsnp.platform."),
    config_check="sevsnp.policy.debug",
)
"""The SEV-SNP AR4SI mapping (docs/policy.md, "Trust vector"): TCB floors / firmware ->
hardware, launch digest and ID-block fields -> executables, guest policy / VMPL / HOST_DATA /
platform info -> configuration."""


def _hardware(findings: tuple[Finding, ...]) -> int:
    """Affirming only when a TCB floor with a non-zero component passed (a zero floor cannot
    fail, so it proves nothing about the platform)."""
    meaningful = any(x.outcome is Outcome.PASS and isinstance(x.want, int) and x.want > 0
                     and x.code.startswith("sevsnp.tcb.") and x.code.endswith(".below_minimum")
                     for x in findings)
    return AFFIRMING if meaningful else NO_CLAIM


def trust_vector(appraisal: Appraisal) -> dict[str, int]:
    """The AR4SI vector of an SEV-SNP appraisal (see :data:`VECTOR_RULES`).

    ``runtime-opaque``: SEV-SNP encrypts guest memory; a DEBUG guest lets the hypervisor
    decrypt it, whatever the policy said about allowing debug.
    """
    guest_policy = appraisal.claims.get("guest_policy", {})
    debug = bool(guest_policy.get("debug", False)) if isinstance(guest_policy, dict) else False
    return vector_from_rules(appraisal, VECTOR_RULES, hardware=_hardware, debug=debug)



# A guest's reports differ only in REPORT_DATA and the signature, and every guest on a chip
# sends the same certificate table: what is derived from the rest is kept in these tables,
# keyed by every input it depends on (veritee._memo: bounded, only successful parses kept).
_MEMO_MAX = 1024
_APPRAISALS: dict[tuple[Any, ...], tuple[SevSnpPolicy, Appraisal]] = {}
_REPORTS: dict[bytes, AttestationReport] = {}
_TABLES: dict[bytes, CertTable] = {}
_REPORT_DATA = slice(0x050, 0x090)  # ABI 56860 Table 22: REPORT_DATA, 64 bytes
_REPORT_FIELDS = tuple(f.name for f in fields(AttestationReport))


def _parse_report(data: bytes) -> AttestationReport:
    """:meth:`AttestationReport.from_bytes`; a report whose bytes but REPORT_DATA and the
    signature equal a parsed one's is that report with these two fields (each read as the
    full parse reads it: any 64 bytes, and the signature structure with its checks)."""
    if len(data) != REPORT_SIZE:
        return AttestationReport.from_bytes(data)  # the parse says what is wrong
    key = data[:_REPORT_DATA.start] + data[_REPORT_DATA.stop:SIGNED_SIZE]
    known = _REPORTS.get(key)
    if known is None:
        return remember(_REPORTS, key, AttestationReport.from_bytes(data), _MEMO_MAX)
    signature = EcdsaP384Signature.from_bytes(data[SIGNED_SIZE:], structure="ATTESTATION_REPORT",
                                              base=SIGNED_SIZE)
    # The kept report's fields (dataclasses.replace costs a third of a parse), then the two
    # that differ, and the input as the serialisation (as from_bytes keeps it).
    kept = known.__dict__
    report = object.__new__(AttestationReport)
    report.__dict__.update({name: kept[name] for name in _REPORT_FIELDS},
                           report_data=data[_REPORT_DATA], signature=signature, raw=data)
    return report


def _parse_table(data: bytes) -> CertTable:
    """:meth:`CertTable.from_bytes`, once per distinct table."""
    known = _TABLES.get(data)
    return known if known is not None else remember(_TABLES, data, CertTable.from_bytes(data),
                                                       _MEMO_MAX)


def _appraisal_memo_key(native: VerifiedReport, policy: Any) -> tuple[Any, ...] | None:
    """What :func:`veritee.policy.sevsnp.appraise` and the common claims read, but
    REPORT_DATA: the signed report bytes around it, the product, VEK and ARK the chain
    proved, whether the CRL was checked, and the policy (by identity: a policy is immutable,
    and the entry holds it, so its id is not reused while the entry lives). None when the
    policy reads REPORT_DATA itself."""
    if not isinstance(policy, SevSnpPolicy) or policy.report_data is not None:
        return None
    raw = native.report.raw
    return (id(policy), raw[:_REPORT_DATA.start], raw[_REPORT_DATA.stop:SIGNED_SIZE],
            native.product, native.vek, native.ark_fingerprint, native.crl_checked)


def _reused(kept: Appraisal, native: VerifiedReport) -> Appraisal:
    """``kept`` for a report that differs from its own only in REPORT_DATA (and signature):
    this report's REPORT_DATA claims and verification trace; the nested claims copied, so
    a caller that edits its appraisal's claims cannot reach the kept one."""
    claims = {k: (dict(v) if type(v) is dict else list(v) if type(v) is list else v)
              for k, v in kept.claims.items()}
    claims["report_data"] = claims["binding"] = native.report.report_data.hex()
    return kept.evolve(verification=tuple(native.checks), claims=claims)


@dataclass(frozen=True)
class SevSnpEvidence:
    """Parsed evidence: the SEV-SNP report and, when wrapped, the wrapper it came in."""

    report: AttestationReport
    hcl: HclReport | None = None
    cert_table: CertTable | None = None
    container: str | None = None

    @property
    def format(self) -> str:
        """A short name of the evidence format."""
        if self.hcl is not None:
            return "azure-hcl+sevsnp"
        return "configfs-tsm+sevsnp" if self.container == "configfs-tsm" else "sevsnp"


class SevSnpCache(ChainCache):
    """The scheme's cache: validated chains (:class:`ChainCache`) and parsed certificate
    tables. Every guest on a chip sends the same table, and parsing its three certificates
    costs more than a warm verification (measured in the service: 2 ms of 3.4 ms)."""

    def __init__(self, max_entries: int = 256) -> None:
        super().__init__(max_entries)
        self._tables: OrderedDict[CertTable, AmdCertificates] = OrderedDict()

    def table_collateral(self, table: CertTable) -> AmdCertificates:
        """The certificates of ``table``, parsed once per distinct table (LRU)."""
        from veritee.collateral.amd import from_cert_table

        with self._lock:
            found = self._tables.get(table)
            if found is not None:
                self._tables.move_to_end(table)
                return found
        certs = from_cert_table(table)
        with self._lock:
            self._tables[table] = certs
            while len(self._tables) > self.max_entries:
                self._tables.popitem(last=False)
        return certs


def _collateral(evidence: SevSnpEvidence, given: AmdCertificates | None, fetcher: Any,
                require_crl: bool, cache: Any = None) -> AmdCertificates:
    """Certificates from the caller first, then the evidence's own certificate table, then
    (only when something is still missing and a fetcher was given) AMD's KDS."""
    from veritee.collateral.amd import from_cert_table

    certs = given or AmdCertificates(ark=None, ask=None, vek=None, crl=None)
    if evidence.cert_table is not None:
        certs = certs.merged(cache.table_collateral(evidence.cert_table)
                             if isinstance(cache, SevSnpCache)
                             else from_cert_table(evidence.cert_table))
    if fetcher is not None and (certs.missing() or (require_crl and certs.crl is None)):
        certs = certs.merged(fetcher.collateral_for(evidence.report, with_crl=require_crl))
    if certs.vek is None:
        raise CollateralError("no VCEK/VLEK certificate: pass --certs PATH, an extended "
                              "report's certificate table, or --fetch to ask AMD's KDS")
    return certs


def _cpuid(report: AttestationReport) -> dict[str, Any] | None:
    """CPUID_FAM_ID / CPUID_MOD_ID / CPUID_STEP (report version >= 3) as numbers."""
    if report.cpuid is None:
        return None
    c = report.cpuid
    return {"family": c.family, "model": c.model, "stepping": c.stepping,
            "product": c.product.value if c.product else None}


def _check_hcl_binding(hcl: HclReport, verified: VerifiedReport) -> VerifiedReport:
    """The HCL's runtime data is bound to the report: REPORT_DATA = hash of variable data."""
    want = hcl.expected_report_data()
    got = verified.report.report_data
    if not hmac.compare_digest(got, want):
        raise VerificationError("azure.hcl.report_data_binding",
                                f"REPORT_DATA {got.hex()} is not the hash of the HCL runtime "
                                f"data {want.hex()}")
    check = Finding("azure.hcl.report_data_binding", Outcome.PASS, "REPORT_DATA", got=got,
                    want=want, message="runtime claims bound to the hardware report")
    return replace(verified, checks=(*verified.checks, check))


class SevSnpScheme:
    """SEV-SNP reports (bare, Azure HCL, configfs-tsm)."""

    name = "sevsnp"
    vendor = "amd"
    binding_size = 64
    policy_type = SevSnpPolicy
    evidence_type = SevSnpEvidence

    def recognise(self, data: bytes) -> bool:
        """A 1184-byte report, an HCL report, or a configfs-tsm report from ``sev_guest``."""
        if data[:4] == _HCL_MAGIC or len(data) == REPORT_SIZE:
            return True
        return TsmReport.looks_like(data) and b"sev_guest" in data[:4096]

    def parse(self, data: bytes, *, attached: bytes | None = None) -> SevSnpEvidence:
        """Parse; ``attached`` is an extended report's certificate table (GUID table)."""
        table = _parse_table(attached) if attached else None
        if data[:4] == _HCL_MAGIC:
            hcl = HclReport.from_bytes(data)
            if hcl.snp_report is None:
                raise FormatError("HCL_REPORT", "report_type", got=hcl.report_type,
                                  want="an SEV-SNP hardware report")
            return SevSnpEvidence(report=hcl.snp_report, hcl=hcl, cert_table=table)
        if len(data) == REPORT_SIZE:
            return SevSnpEvidence(report=_parse_report(data), cert_table=table)
        if TsmReport.looks_like(data):
            tsm = TsmReport.from_bytes(data)
            if tsm.provider != "sev_guest":
                raise FormatError("TSM_REPORT", "provider", got=tsm.provider, want="sev_guest")
            if table is None and tsm.auxblob:
                table = _parse_table(tsm.auxblob)
            return SevSnpEvidence(report=_parse_report(tsm.outblob),
                                  cert_table=table, container="configfs-tsm")
        raise FormatError("evidence", "<format>",
                          got=f"{len(data)} bytes starting {data[:4].hex()}",
                          want=f"a {REPORT_SIZE}-byte SEV-SNP report, an Azure HCL report or "
                          "a configfs-tsm report (JSON/CBOR)")

    def verify(self, evidence: SevSnpEvidence, ctx: Context) -> Verified:
        """VEK signature, ARK -> ASK/ASVK -> VEK chain, CRL, VEK/report TCB binding; for
        an HCL report also the HCL runtime-data binding."""
        anchors = ctx.anchors.get(self.vendor) or TrustAnchors.amd()
        cache = ctx.caches.get(self.name)
        certs = _collateral(evidence, ctx.collateral.get(self.vendor),
                            ctx.fetchers.get(self.vendor), ctx.require_revocation, cache)
        verified = verify_report(evidence.report, certs, anchors=anchors, now=ctx.now,
                                 require_crl=ctx.require_revocation,
                                 cache=cache if isinstance(cache, ChainCache) else None)
        if evidence.hcl is not None:
            verified = _check_hcl_binding(evidence.hcl, verified)
        return Verified(self.name, verified, tuple(verified.checks), ctx.now)

    def binding(self, verified: Verified) -> bytes:
        """REPORT_DATA (64 bytes)."""
        report_data: bytes = verified.native.report.report_data
        return report_data

    def claims(self, verified: Verified) -> dict[str, Any]:
        """The SEV-SNP claims (:func:`veritee.policy.sevsnp.claims`) plus the common ones."""
        from veritee.policy.sevsnp import claims

        return self._with_common(claims(verified.native), verified.native.report)

    def _with_common(self, own: dict[str, Any], report: AttestationReport) -> dict[str, Any]:
        return {**own, "tee": self.name, "debug": bool(own["guest_policy"]["debug"]),
                "tcb_status": None, "advisory_ids": [],
                "binding": own["report_data"], "cpuid": _cpuid(report)}

    def describe(self, evidence: SevSnpEvidence) -> dict[str, Any]:
        """Every field of the (unverified) report for ``veritee show``, JSON-ready; CPUID
        fields as numbers."""
        fields = evidence.report.to_dict()
        fields["cpuid"] = _cpuid(evidence.report)
        doc: dict[str, Any] = {"format": evidence.format, "report": fields}
        if evidence.hcl is not None:
            doc["hcl"] = {"report_type": str(evidence.hcl.report_type),
                          "runtime_claims": evidence.hcl.runtime_claims()}
        return doc

    def default_policy(self) -> SevSnpPolicy:
        """:class:`SevSnpPolicy` with its secure defaults."""
        return SevSnpPolicy()

    def policy_from_mapping(self, data: Mapping[str, Any]) -> SevSnpPolicy:
        """See :func:`veritee.policy.sevsnp.policy_from_mapping`."""
        return policy_from_mapping(data)

    def policy_to_mapping(self, policy: Any) -> dict[str, Any]:
        """See :func:`veritee.policy.sevsnp.policy_to_mapping`."""
        return policy_to_mapping(policy)

    def appraise(self, verified: Verified, policy: Any) -> Appraisal:
        """:func:`veritee.policy.sevsnp.appraise`, with the common claims.

        A guest's reports differ between its attestations only in REPORT_DATA and the
        signature, which the appraisal does not read unless the policy pins REPORT_DATA: the
        appraisal of the rest is kept (:func:`_appraisal_memo_key`) and reused with this
        report's REPORT_DATA claims and verification trace.
        """
        native: VerifiedReport = verified.native
        key = _appraisal_memo_key(native, policy)
        if key is not None:
            hit = _APPRAISALS.get(key)
            if hit is not None and hit[0] is policy:
                return _reused(hit[1], native)
        result = appraise(native, policy)
        # The policy's appraisal carries its claims already: add the common ones (and the
        # vector) in one copy.
        result = result.evolve(claims=self._with_common(dict(result.claims), native.report))
        result = result.evolve(vector=trust_vector(result))
        if key is None:
            return result
        remember(_APPRAISALS, key, (policy, result), _MEMO_MAX)
        return _reused(result, native)

    def trust_vector(self, appraisal: Appraisal) -> dict[str, int]:
        """This scheme's AR4SI mapping (:func:`trust_vector`)."""
        return trust_vector(appraisal)

    def load_anchors(self, paths: Sequence[Path]) -> TrustAnchors:
        """ARKs to trust instead of AMD's (an emulated machine's ``ark.pem``), PEM or DER."""
        from veritee.crypto.amd_certs import load_certificates

        roots = [c for p in paths for c in load_certificates(_read_anchor(p), source=str(p))]
        if not roots:
            raise ConfigError("trust root: no certificate in " + ", ".join(map(str, paths)))
        return TrustAnchors.from_certificates(*roots)

    def revocation(self, verified: Verified) -> dict[str, Any]:
        """Whether the chain was checked against the ARK's CRL."""
        native: VerifiedReport = verified.native
        if native.crl_checked:
            return {"checked": True, "detail": "checked against the ARK's CRL"}
        return {"checked": False, "detail": "not checked: no CRL in the collateral or the "
                "evidence (the default appraisal policy refuses an unchecked chain)"}

    def new_fetcher(self, *, url: str | None, cache_dir: Path | None,
                    clock: Callable[[], datetime], product: str | None = None) -> Any:
        """A KDS client (``url`` default: AMD's) that fills in missing VCEK/chain/CRL;
        ``product`` (Milan, Genoa, Turin) names the product of a report without CPUID
        fields (version 2), which the KDS URL needs."""
        from veritee.collateral.kds import DEFAULT_KDS, KdsClient

        chosen = None
        if product is not None:
            try:
                chosen = Product(product)
            except ValueError:
                raise ConfigError(f"product: got {product!r}, want one of "
                                  f"{', '.join(p.value for p in Product)}") from None
        return _KdsForProduct(KdsClient(url or DEFAULT_KDS, cache_dir=cache_dir, now=clock),
                              chosen)

    def new_cache(self) -> SevSnpCache:
        """Validated chains and parsed certificate tables (a warm verification is about one
        ECDSA verify)."""
        return SevSnpCache()

    def load_collateral(self, paths: Sequence[Path]) -> AmdCertificates | None:
        """AMD certificates (and CRLs) from files and directories; ``None`` when there is
        none. A file that is not well-formed collateral is an error naming it (FormatError or
        ConfigError), never skipped: a skipped CRL would let a revoked chain pass unnoticed."""
        from veritee.collateral.amd import load_paths

        certs = load_paths(*paths)
        return None if certs == AmdCertificates() else certs


class _KdsForProduct:
    """A KDS client that knows the product of reports without CPUID fields."""

    def __init__(self, client: Any, product: Product | None) -> None:
        self.client = client
        self.product = product

    def collateral_for(self, report: AttestationReport, *, with_crl: bool = False
                       ) -> AmdCertificates:
        if self.product is None and report.cpuid is None:
            raise CollateralError(f"the report (version {report.version}) carries no CPUID "
                                  "fields: name its product (Milan, Genoa or Turin; veritee: "
                                  "--product NAME) to fetch its VCEK")
        certs: AmdCertificates = self.client.collateral_for(report, product=self.product,
                                                            with_crl=with_crl)
        return certs


def _read_anchor(path: Path) -> bytes:
    from veritee._decode import limit_for, read_bounded

    try:
        return read_bounded(path, limit=limit_for("certificate"), what="trust root")
    except OSError as exc:
        raise ConfigError(f"trust root {path}: cannot read ({exc.strerror or exc})") from None


SCHEME = SevSnpScheme()
