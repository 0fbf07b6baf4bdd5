"""Azure confidential VMs' vTPM evidence (Trustee's ``az-snp-vtpm`` / ``az-tdx-vtpm`` JSON).

The evidence is a vTPM quote (TPMS_ATTEST, a bare RSASSA-PKCS1-v1_5/SHA-256 signature, 24
SHA-256 PCRs), the HCL report read from the vTPM's NV index 0x01400001
(:mod:`veritee.formats.azure`) and, for SEV-SNP, the VCEK; for TDX, the TD quote. Layouts v0
(byte arrays as JSON int lists, ``quote``/``report``), v1 and v2 (hex quote fields, base64url
HCL report) are read by :func:`veritee.collateral.tpm.load_trustee_azure_vtpm`.

Verification, in order (each step a stable code in the trace):

1. the hardware report: SEV-SNP - the report inside the HCL report, VCEK -> ASK -> ARK, at
   ``ctx.now`` (:func:`veritee.trust.sevsnp.verify_report`; AMD collateral from the context,
   the VCEK from the evidence); TDX - the TD quote, PCK chain, QE report and signature
   (:func:`veritee.trust.intel.verify_quote`; Intel collateral from the context);
2. ``tpm.azure.report_data``: the hardware REPORT_DATA is the hash of the HCL runtime claims;
3. ``tpm.azure.hw_report``: the verified SNP report is the one in the HCL report / the TD
   quote's REPORTDATA is the TDREPORT's;
4. ``tpm.azure.ak`` then the quote (signature by the claims' ``HCLAkPub``, TPM_GENERATED, PCR
   digest): :func:`veritee.trust.tpm.verify_azure_vtpm_quote`. The AK is then bound
   (``ak_binding`` = ``azure-hcl``): the hardware vouches for it.

Binding: the quote's extraData (Trustee puts its report data there; ``binding_size`` 32 as for
any TPM). Policy: :class:`~veritee.policy.tpm.TpmPolicy`, plus ``tpm.azure.debug``: a debug
SEV-SNP guest / TD is refused (its memory is readable by the host). The hardware TCB is not
appraised here (the SEV-SNP and TDX schemes do that on the bare reports): the AR4SI
``hardware`` claim therefore stays "no claim" unless an AK check fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from veritee.errors import CollateralError, ConfigError, FormatError
from veritee.findings import Finding, Outcome
from veritee.formats.azure import HclReport, IgvmReportType
from veritee.formats.tpm import TpmtSignature
from veritee.policy import Appraisal
from veritee.policy.tpm import (
    TpmPolicy,
    appraise,
    claims,
    policy_from_mapping,
    policy_to_mapping,
)
from veritee.schemes import Context, Verified
from veritee.schemes.tpm import tpm_vector
from veritee.trust.tpm import VerifiedTpmQuote, verify_azure_vtpm_quote

__all__ = ["SNP_SCHEME", "TDX_SCHEME", "AzureVtpmEvidence", "AzureVtpmScheme"]

_SNIFF = 1 << 20


@dataclass(frozen=True)
class AzureVtpmEvidence:
    """Parsed evidence: the vTPM quote, the HCL report and the hardware evidence."""

    attest: bytes
    signature: TpmtSignature
    pcrs: dict[Any, dict[int, bytes]]
    hcl: HclReport
    vcek: bytes | None = field(default=None, repr=False)
    td_quote: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class AzureVerified:
    """The verified quote and the verified hardware evidence it is bound to."""

    quote: VerifiedTpmQuote
    hardware: Any  # VerifiedReport (SEV-SNP) or VerifiedQuote (TDX)
    debug: bool

    @property
    def attest(self) -> Any:
        """The quote's TPMS_ATTEST."""
        return self.quote.attest


class AzureVtpmScheme:
    """Azure SNP or TDX confidential VM vTPM evidence (Trustee's JSON)."""

    binding_size = 32
    policy_type = TpmPolicy

    def __init__(self, name: str, report_type: IgvmReportType, vendor: str) -> None:
        self.name = name
        self.vendor = vendor
        self._report_type = report_type

    def recognise(self, data: bytes) -> bool:
        """A JSON object with a quote and an HCL report (``tpm_quote``/``quote`` and
        ``hcl_report``/``report``); TDX when it carries ``td_quote``."""
        head = bytes(data[:_SNIFF])
        if not head.lstrip().startswith(b"{"):
            return False
        quote = b'"tpm_quote"' in head or b'"quote"' in head
        hcl = b'"hcl_report"' in head or b'"report"' in head
        tdx = b'"td_quote"' in head
        want_tdx = self._report_type is IgvmReportType.TDX
        return quote and hcl and b'"ak_public"' not in head and tdx == want_tdx

    def parse(self, data: bytes, *, attached: bytes | None = None) -> AzureVtpmEvidence:
        """The quote, the HCL report (of this scheme's TEE) and the VCEK / TD quote."""
        from veritee.collateral.tpm import load_trustee_azure_vtpm

        ev = load_trustee_azure_vtpm(bytes(data))
        if ev.hcl_report is None:
            raise FormatError("az-vtpm evidence", "hcl_report", got="missing", want="present")
        hcl = HclReport.from_bytes(ev.hcl_report)
        if hcl.report_type is not self._report_type:
            raise FormatError("HCL_REPORT", "report_type", got=hcl.report_type.name,
                              want=self._report_type.name)
        if self._report_type is IgvmReportType.TDX and ev.td_quote is None:
            raise FormatError("az-tdx-vtpm evidence", "td_quote", got="missing",
                              want="the TD quote")
        return AzureVtpmEvidence(ev.attest, ev.signature, ev.pcrs, hcl, ev.vcek, ev.td_quote)

    # -- verification ---------------------------------------------------------------------------
    def _snp(self, evidence: AzureVtpmEvidence, ctx: Context) -> tuple[Any, bool]:
        from veritee.crypto.amd_certs import load_certificates
        from veritee.trust.roots import TrustAnchors
        from veritee.trust.sevsnp import AmdCertificates, ChainCache, verify_report

        report = evidence.hcl.snp_report
        assert report is not None  # HclReport guarantees it for report type SNP
        given = ctx.collateral.get("amd")
        if given is not None and not isinstance(given, AmdCertificates):
            raise ConfigError(f"collateral['amd']: got a {type(given).__name__}, want "
                              "AmdCertificates")
        certs = given or AmdCertificates()
        if evidence.vcek is not None:
            vek = load_certificates(evidence.vcek, source="vcek")[0]
            certs = certs.merged(AmdCertificates(vek=vek))
        fetcher = ctx.fetchers.get("amd")
        if fetcher is not None and (certs.missing() or
                                    (ctx.require_revocation and certs.crl is None)):
            certs = certs.merged(fetcher.collateral_for(report,
                                                        with_crl=ctx.require_revocation))
        if certs.vek is None:
            raise CollateralError("no VCEK: the evidence carries none; pass the AMD "
                                  "certificates (--certs) or fetch them")
        cache = ctx.caches.get("sevsnp")
        verified = verify_report(report, certs, anchors=ctx.anchors.get("amd") or
                                 TrustAnchors.amd(), now=ctx.now,
                                 require_crl=ctx.require_revocation,
                                 cache=cache if isinstance(cache, ChainCache) else None)
        return verified, bool(report.policy.debug)

    def _tdx(self, evidence: AzureVtpmEvidence, ctx: Context) -> tuple[Any, bool]:
        from veritee.formats.intel import TdReportBody
        from veritee.trust.intel import IntelCollateral, verify_quote

        given = ctx.collateral.get("intel")
        if given is not None and not isinstance(given, IntelCollateral):
            raise ConfigError(f"collateral['intel']: got a {type(given).__name__}, want "
                              "IntelCollateral")
        roots = ctx.anchors.get("intel")
        assert evidence.td_quote is not None
        verified = verify_quote(evidence.td_quote, given, now=ctx.now,
                                trusted_roots=list(roots) if roots else None)
        body = verified.quote.body
        if not isinstance(body, TdReportBody):
            raise FormatError("az-tdx-vtpm evidence", "td_quote", got="an SGX quote",
                              want="a TDX quote")
        return verified, bool(body.debug)

    def verify(self, evidence: AzureVtpmEvidence, ctx: Context) -> Verified:
        """The hardware evidence, the HCL runtime-claims binding, then the quote by the
        HCL's AK (extraData is compared by the front door)."""
        from veritee.formats.intel import TdReportBody

        if self._report_type is IgvmReportType.SNP:
            hardware, debug = self._snp(evidence, ctx)
            quote = verify_azure_vtpm_quote(evidence.attest, evidence.signature, evidence.hcl,
                                            nonce=None, pcrs=evidence.pcrs, snp=hardware)
        else:
            hardware, debug = self._tdx(evidence, ctx)
            body = hardware.quote.body
            assert isinstance(body, TdReportBody)
            quote = verify_azure_vtpm_quote(evidence.attest, evidence.signature, evidence.hcl,
                                            nonce=None, pcrs=evidence.pcrs,
                                            tdx_report_data=body.report_data)
        native = AzureVerified(quote, hardware, debug)
        checks = (*hardware.checks, *quote.checks)
        return Verified(self.name, native, checks, ctx.now)

    def binding(self, verified: Verified) -> bytes:
        """The vTPM quote's extraData."""
        extra: bytes = verified.native.quote.attest.extra_data
        return extra

    def claims(self, verified: Verified) -> dict[str, Any]:
        """The TPM claims, the HCL runtime claims and the common ones."""
        native: AzureVerified = verified.native
        own = claims(native.quote)
        runtime = native.quote.hcl_report.runtime_claims() if native.quote.hcl_report else {}
        measurement = None
        if self._report_type is IgvmReportType.SNP:
            measurement = native.hardware.report.measurement.hex()
        else:
            measurement = native.hardware.quote.body.mr_td.hex()
        return {**own, "tee": self.name, "measurement": measurement, "debug": native.debug,
                "tcb_status": None, "advisory_ids": [], "binding": self.binding(verified).hex(),
                "hcl_runtime_claims": {k: v for k, v in runtime.items() if k != "keys"}}

    def default_policy(self) -> TpmPolicy:
        """:class:`TpmPolicy` defaults (the HCL binding satisfies the AK binding)."""
        return TpmPolicy(policy_id=self.name)

    def policy_from_mapping(self, data: Mapping[str, Any]) -> TpmPolicy:
        """See :func:`veritee.policy.tpm.policy_from_mapping`."""
        return policy_from_mapping(data)

    def policy_to_mapping(self, policy: Any) -> dict[str, Any]:
        """See :func:`veritee.policy.tpm.policy_to_mapping`."""
        return policy_to_mapping(policy)

    def appraise(self, verified: Verified, policy: Any) -> Appraisal:
        """The TPM appraisal of the quote, plus ``tpm.azure.debug``; the TPM vector with
        ``runtime-opaque`` from the hardware's debug bit and ``hardware`` no claim unless an AK
        check failed (the hardware TCB is not appraised here)."""
        from veritee.results import AFFIRMING, CONTRAINDICATED, NO_CLAIM

        native: AzureVerified = verified.native
        result = appraise(native.quote, policy)
        debug = Finding("tpm.azure.debug", Outcome.FAIL if native.debug else Outcome.PASS,
                        "hardware report debug", got=native.debug, want=False,
                        message="a debug guest's memory is readable by the host"
                        if native.debug else "")
        result = replace(result, tee=self.name, findings=(*result.findings, debug),
                         verification=verified.checks, claims=self.claims(verified))
        vector = tpm_vector(result, native.quote)
        if vector["hardware"] == AFFIRMING:
            vector["hardware"] = NO_CLAIM
        vector["runtime-opaque"] = CONTRAINDICATED if native.debug else AFFIRMING
        return replace(result, vector=vector)

    def new_cache(self) -> None:
        """No cache of its own (the SEV-SNP chain cache is shared through the context)."""
        return None

    def load_collateral(self, paths: Sequence[Path]) -> Any:
        """The hardware vendor's collateral from files (AMD certificates / Intel collateral)."""
        if self._report_type is IgvmReportType.SNP:
            from veritee.schemes.sevsnp import SCHEME as SEVSNP

            return SEVSNP.load_collateral(paths)
        from veritee.collateral.intel import load_directory

        for path in paths:
            if Path(path).is_dir():
                try:
                    return load_directory(path)
                except (FormatError, CollateralError):
                    continue
        return None


SNP_SCHEME = AzureVtpmScheme("az-snp-vtpm", IgvmReportType.SNP, "amd")
TDX_SCHEME = AzureVtpmScheme("az-tdx-vtpm", IgvmReportType.TDX, "intel")
