"""The Intel DCAP schemes: TDX quotes (v4, v5) and SGX quotes (v3), each its own scheme.

Evidence: a quote as binary, hex or base64 text, or JSON carrying a ``quote`` member (GCE,
Trustee). Collateral (vendor ``intel``): :class:`~veritee.trust.intel.IntelCollateral` (TCB Info,
QE Identity, CRLs, a PCK chain for certification data types 1-4). Anchors: an iterable of
SHA-256 pins (hex) or certificates of the Intel SGX Root CA to trust (``None``: the production
root, :data:`~veritee.trust.intel.INTEL_SGX_ROOT_CA_SHA256`). Binding: REPORTDATA, 64 bytes
(TDX Module ABI "TDREPORT_STRUCT", SGX SDM "REPORT"). Policy:
:class:`~veritee.policy.intel.TdxPolicy` / :class:`~veritee.policy.intel.SgxPolicy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from cryptography import x509

from veritee._decode import LIMITS, decode_binary_text, load_json
from veritee.errors import CollateralError, ConfigError, FormatError, VerificationError
from veritee.findings import Finding, Outcome
from veritee.formats.intel import Quote, SgxReportBody, TdReportBody, TeeType
from veritee.formats.tsm import TsmReport
from veritee.policy import Appraisal
from veritee.policy.intel import SgxPolicy, TdxPolicy, appraise, claims, policy_from_mapping
from veritee.policy.intel import policy_to_mapping as _policy_to_mapping
from veritee.results import (
    AFFIRMING,
    NO_CLAIM,
    WARNING_UNSAFE,
    VectorRules,
    outcome,
    vector_from_rules,
)
from veritee.schemes import Context, Verified
from veritee.schemes._shared import plain
from veritee.trust.intel import (
    INTEL_SGX_ROOT_CA_SHA256,
    IntelCache,
    IntelCollateral,
    VerifiedQuote,
    load_certificates,
    verify_quote,
)

__all__ = ["SGX", "TDX", "SgxScheme", "TdxScheme", "looks_like_quote", "quote_bytes"]

_HEADER_SIZE = 48
_TEXT = frozenset(b"0123456789abcdefABCDEFghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ+/-_=\r\n\t ")
_SNP_REPORT_SIZE = 1184  # an SEV-SNP report is never taken for a quote (its bytes 2-3 are 0)


def looks_like_quote(data: bytes) -> bool:
    """True when ``data`` starts like a DCAP quote header (SGX QL API "Quote Header").

    u16 VERSION 3/4/5, then u16 ATT_KEY_TYPE 2 (ECDSA P-256) or 3 (P-384); an SEV-SNP report
    starts with a u32 version, so its bytes 2-3 are zero.
    """
    return (len(data) >= _HEADER_SIZE and len(data) != _SNP_REPORT_SIZE
            and int.from_bytes(data[0:2], "little") in (3, 4, 5)
            and int.from_bytes(data[2:4], "little") in (2, 3))


def _find_quote(obj: Any) -> str | None:
    if isinstance(obj, dict):
        if isinstance(obj.get("quote"), str):
            return str(obj["quote"])
        for value in obj.values():
            found = _find_quote(value)
            if found is not None:
                return found
    return None


def quote_bytes(data: bytes) -> bytes | None:
    """The quote in ``data`` (binary, hex/base64 text, JSON with a ``quote`` member at any
    depth, or a configfs-tsm report from ``tdx_guest``), or ``None`` when it holds none.
    Never raises."""
    if looks_like_quote(data):
        return data
    text = data.strip()
    try:
        if TsmReport.looks_like(data) and b"tdx_guest" in data[:4096]:
            tsm = TsmReport.from_bytes(data)
            decoded = tsm.outblob if tsm.provider == "tdx_guest" else b""
        elif text[:1] == b"{":
            # Depth and size are bounded by load_json, so _find_quote's recursion is too.
            value = _find_quote(load_json(text, structure="evidence",
                                          max_size=LIMITS["evidence"]))
            decoded = (decode_binary_text(value, structure="evidence", field="quote")
                       if value is not None else b"")
        elif text and _TEXT.issuperset(text[:4096]) and _TEXT.issuperset(text):
            decoded = decode_binary_text(text, structure="evidence", field="quote")
        else:
            return None
    except FormatError:
        return None
    return decoded if looks_like_quote(decoded) else None


def _tee_of(data: bytes) -> TeeType | None:
    """The header's TEE type (v3 quotes are SGX; v4/v5 say so in u32 TEE_TYPE at 4)."""
    version = int.from_bytes(data[0:2], "little")
    if version == 3:
        return TeeType.SGX
    raw = int.from_bytes(data[4:8], "little")
    return TeeType(raw) if raw in (int(TeeType.SGX), int(TeeType.TDX)) else None


def _pretty_printed(raw: bytes | None) -> bool:
    """Signed JSON Intel serves is one line without spaces after separators."""
    return raw is not None and (b"\n" in raw or b'": ' in raw or b", " in raw)


def _vector_rules(tee: str, *, executables: tuple[str, ...], reference: tuple[str, ...],
                  config_unsafe: tuple[str, ...] = ()) -> VectorRules:
    """The Intel AR4SI mapping of ``tee``: TCB status -> hardware (a wrong TEE type or QE
    vendor is "not recognised"; revocation / QE Identity not checked is "no claim"),
    measurements -> executables, debug -> configuration (and runtime-opaque)."""
    return VectorRules(
        hardware_unrecognised=(f"{tee}.tee.type", f"{tee}.qe_vendor_id"),
        hardware_unsafe=(f"{tee}.tcb.",),
        hardware_unknown=(f"{tee}.revocation.", f"{tee}.qe_identity."),
        executables=executables, reference=reference,
        config_contraindicated=(f"{tee}.debug",), config_unsafe=config_unsafe,
        config_check=f"{tee}.debug")


class _IntelScheme:
    """What TDX and SGX share: quote parsing, DCAP verification, collateral, AR4SI engine."""

    name: str
    vendor = "intel"
    binding_size = 64
    policy_type: type
    _tee: TeeType
    _rules: VectorRules

    def __init__(self, *, allow_nonzero_trailer: bool = False) -> None:
        self.allow_nonzero_trailer = allow_nonzero_trailer

    def with_options(self, *, allow_nonzero_trailer: bool = False) -> Any:
        """A copy of this scheme whose parser accepts non-zero bytes after the signature
        data (they are unsigned and ignored: go-tdx-guest's test quotes carry some)."""
        return type(self)(allow_nonzero_trailer=allow_nonzero_trailer)

    # -- recognise / parse ---------------------------------------------------------------
    def recognise(self, data: bytes) -> bool:
        """A quote of this scheme's TEE (binary, text or JSON-wrapped)."""
        quote = quote_bytes(data)
        return quote is not None and _tee_of(quote) is self._tee

    def parse(self, data: bytes, *, attached: bytes | None = None) -> Quote:
        """The quote (``attached`` is not used: DCAP collateral comes through the context)."""
        raw = quote_bytes(data)
        if raw is None:
            raise FormatError("Quote", "header", offset=0,
                              got=f"{len(data)} bytes starting {bytes(data[:8]).hex()}",
                              want="an Intel DCAP quote (binary, hex or base64 text, or JSON "
                              "with a 'quote' member)")
        quote = Quote.from_bytes(raw, allow_nonzero_trailer=self.allow_nonzero_trailer)
        if quote.header.tee_type is not self._tee:
            raise FormatError("QuoteHeader", "tee_type", offset=4,
                              got=f"0x{int(quote.header.tee_type):x}",
                              want=f"0x{int(self._tee):x} ({self.name})")
        return quote

    def describe(self, quote: Quote) -> dict[str, Any]:
        """Every field of the (unverified) quote for ``veritee show``, JSON-ready."""
        return {"format": f"intel-{self.name}-quote", "quote": plain(quote)}

    # -- verify ------------------------------------------------------------------------
    def verify(self, quote: Quote, ctx: Context) -> Verified:
        """DCAP: PCK chain to the pinned root (CRLs when given), QE report, attestation key
        binding, quote signature, TCB Info / QE Identity and the TCB level (see
        :mod:`veritee.trust.intel`). ``ctx.require_revocation`` makes a missing CRL a
        :class:`~veritee.errors.CollateralError` (as for SEV-SNP)."""
        collateral = ctx.collateral.get(self.vendor)
        if collateral is not None and not isinstance(collateral, IntelCollateral):
            raise ConfigError(f"collateral['intel']: got a {type(collateral).__name__}, want "
                              "an IntelCollateral")
        anchors = ctx.anchors.get(self.vendor)
        # One pin or certificate on its own is taken as a list of one (a str is iterable).
        roots = (None if anchors is None else [anchors]
                 if isinstance(anchors, str | x509.Certificate) else list(anchors))
        cache = ctx.caches.get(self.name)
        try:
            verified = verify_quote(quote, collateral, now=ctx.now, trusted_roots=roots,
                                    cache=cache if isinstance(cache, IntelCache) else None)
        except VerificationError as exc:
            raise _explained(exc, collateral) from None
        if ctx.require_revocation and not _crls_checked(verified):
            # As for SEV-SNP: a CRL that is not there is collateral unavailable, not a forgery.
            missing = [n for n, c in (("root_ca_crl", collateral and collateral.root_ca_crl),
                                      ("pck_crl", collateral and collateral.pck_crl))
                       if c is None]
            raise CollateralError("Intel verification requires the root CA and PCK CRLs; "
                                  f"missing: {', '.join(missing)}")
        return Verified(self.name, verified, verified.checks, ctx.now)

    def binding(self, verified: Verified) -> bytes:
        """REPORTDATA (64 bytes)."""
        report_data: bytes = verified.native.quote.body.report_data
        return report_data

    def claims(self, verified: Verified) -> dict[str, Any]:
        """The Intel claims (:func:`veritee.policy.intel.claims`) plus the common ones."""
        v: VerifiedQuote = verified.native
        own = claims(v)
        body = v.quote.body
        measurement = (body.mr_td if isinstance(body, TdReportBody) else
                       body.mr_enclave if isinstance(body, SgxReportBody) else None)
        tcb = v.tcb
        return {**own, "tee": self.name,
                "measurement": measurement.hex() if measurement is not None else None,
                "debug": bool(body.debug), "binding": own["report_data"],
                "tcb_date": tcb.tcb_date.isoformat() if tcb and tcb.tcb_date else None,
                "revocation_checked": _crls_checked(v)}

    # -- appraise ----------------------------------------------------------------------
    def default_policy(self) -> Any:
        """The secure default policy (UpToDate only, QE Identity and both CRLs required)."""
        return self.policy_type()

    def policy_from_mapping(self, data: Mapping[str, Any]) -> Any:
        """See :func:`veritee.policy.intel.policy_from_mapping`."""
        return policy_from_mapping(data, self.policy_type)

    def policy_to_mapping(self, policy: Any) -> dict[str, Any]:
        """See :func:`veritee.policy.intel.policy_to_mapping`."""
        if not isinstance(policy, TdxPolicy | SgxPolicy) or not isinstance(
                policy, self.policy_type):
            raise ConfigError(f"policy: got a {type(policy).__name__}, want a "
                              f"{self.policy_type.__name__}")
        return _policy_to_mapping(policy)

    def appraise(self, verified: Verified, policy: Any) -> Appraisal:
        """:func:`veritee.policy.intel.appraise`, with the common claims and the vector."""
        result = appraise(verified.native, policy)
        result = replace(result, claims=self.claims(verified))
        return replace(result, vector=self.trust_vector(result))

    def trust_vector(self, appraisal: Appraisal) -> dict[str, int]:
        """The AR4SI vector of an Intel appraisal.

        ``hardware``: affirming only when the TCB status check ran with the QE Identity
        verified and the status is UpToDate; any other accepted status (OutOfDate,
        SWHardeningNeeded, ...) is AR4SI's "known vulnerabilities" (32), whatever the policy
        accepted. ``runtime-opaque``: contraindicated for a debug TD / enclave.
        """
        tee = self.name

        def hardware(findings: tuple[Finding, ...]) -> int:
            status = next((x for x in findings if x.code == f"{tee}.tcb.status"), None)
            if status is None or status.outcome is not Outcome.PASS:
                return NO_CLAIM
            if outcome(findings, f"{tee}.qe_identity.required") is not Outcome.PASS:
                return NO_CLAIM  # the TCB status did not include the QE's
            return AFFIRMING if status.got == "UpToDate" else WARNING_UNSAFE

        return vector_from_rules(appraisal, self._rules, hardware=hardware,
                                 debug=self._debug(appraisal.claims))

    def _debug(self, claims: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    # -- collateral and anchors ------------------------------------------------------------
    def load_anchors(self, paths: Sequence[Path], *,
                     keep_production: bool = False) -> list[x509.Certificate | str]:
        """Intel SGX Root CA certificates to trust instead of the production pin (Intel's
        non-production sample root, an emulated vendor's ``root_ca.pem``), PEM or DER; with
        ``keep_production``, beside it."""
        from veritee._decode import limit_for, read_bounded

        roots: list[x509.Certificate | str] = (
            [INTEL_SGX_ROOT_CA_SHA256] if keep_production else [])
        for path in paths:
            try:
                data = read_bounded(path, limit=limit_for("certificate"), what="trust root")
            except OSError as exc:
                raise ConfigError(f"trust root {path}: cannot read "
                                  f"({exc.strerror or exc})") from None
            roots += load_certificates(data, structure=f"trust root {path}")
        return roots

    def revocation(self, verified: Verified) -> dict[str, Any]:
        """Whether the PCK chain was checked against Intel's root CA CRL and PCK CRL."""
        done = {c.code for c in verified.native.checks if c.outcome is Outcome.PASS}
        missing = [name for code, name in (("intel.crl.root", "root CA CRL"),
                                           ("intel.crl.pck", "PCK CRL")) if code not in done]
        if not missing:
            return {"checked": True, "detail": "checked against Intel's root CA CRL and PCK CRL"}
        return {"checked": False, "detail": f"not checked: no {' and no '.join(missing)} in "
                "the collateral (the default appraisal policy refuses an unchecked chain)"}

    def new_cache(self) -> IntelCache:
        """Verified DCAP collateral and PCK chains, reused only for the exact bytes inside
        their validity windows (:class:`~veritee.trust.intel.IntelCache`)."""
        return IntelCache()

    def load_collateral(self, paths: Sequence[Path]) -> IntelCollateral | None:
        """Intel collateral from files and directories: PCS TCB Info / QE Identity JSON,
        dcap-qvl ``collateral.json``, CRLs, certificate chains; ``None`` when none is."""
        from veritee.collateral.intel import load_paths

        collateral = load_paths(*paths)
        return None if collateral == IntelCollateral() else collateral


def _crls_checked(v: VerifiedQuote) -> bool:
    done = {c.code for c in v.checks if c.outcome is Outcome.PASS}
    return {"intel.crl.root", "intel.crl.pck"} <= done


def _explained(exc: VerificationError, collateral: IntelCollateral | None) -> VerificationError:
    """Say why a signed collateral object fails when the cause is plain: Intel signs the exact
    bytes it served, so a pretty-printed (re-formatted) TCB Info or QE Identity never verifies."""
    raw = None
    if collateral is not None and exc.code == "intel.tcb_info.signature":
        raw = collateral.tcb_info
    elif collateral is not None and exc.code == "intel.qe_identity.signature":
        raw = collateral.qe_identity
    if not _pretty_printed(raw):
        return exc
    what = "TCB Info" if exc.code == "intel.tcb_info.signature" else "QE Identity"
    return VerificationError(exc.code, f"{exc} -- the {what} JSON looks pretty-printed "
                             "(re-formatted): Intel's signature is over the exact bytes it "
                             "served, so use the file as downloaded from the PCS")


class TdxScheme(_IntelScheme):
    """Intel TDX quotes (v4, v5; TD 1.0 and TD 1.5 bodies)."""

    name = "tdx"
    policy_type = TdxPolicy
    _tee = TeeType.TDX
    _rules = _vector_rules(
        "tdx", executables=("tdx.mrtd.", "tdx.rtmr", "tdx.mrseam."),
        reference=("tdx.mrtd.mismatch",),
        config_unsafe=("tdx.mrconfigid.", "tdx.mrowner.", "tdx.td_attributes.", "tdx.xfam."))

    def _debug(self, claims: Mapping[str, Any]) -> bool:
        # TD ATTRIBUTES bit 0 (hex of the little-endian bytes; TDX Module ABI "TDATTRIBUTES").
        return bool(int(str(claims.get("td_attributes") or "00")[:2], 16) & 1)


class SgxScheme(_IntelScheme):
    """Intel SGX quotes (v3, ECDSA P-256)."""

    name = "sgx"
    policy_type = SgxPolicy
    _tee = TeeType.SGX
    _rules = _vector_rules(
        "sgx", executables=("sgx.mrenclave.", "sgx.mrsigner.", "sgx.isvprodid.", "sgx.isvsvn."),
        reference=("sgx.mrenclave.mismatch", "sgx.mrsigner.mismatch"))

    def _debug(self, claims: Mapping[str, Any]) -> bool:
        # ATTRIBUTES.FLAGS bit 1 (DEBUG), SGX SDM "SECS.ATTRIBUTES".
        return bool(int(str(claims.get("attributes") or "00")[:2], 16) & 2)


TDX = TdxScheme()
SGX = SgxScheme()
