"""Appraisal of verified Intel quotes: :class:`TdxPolicy` and :class:`SgxPolicy`.

Secure defaults: debug TDs / enclaves are rejected (TD ATTRIBUTES bit 0, SGX ATTRIBUTES.DEBUG),
only the ``UpToDate`` TCB status is accepted (other statuses need an explicit opt-in list; a
quote with no TCB Info collateral or no matching TCB level fails ``*.tcb.status``), the QE
Identity must have been verified (``*.qe_identity.required``: without it nothing proves that
the enclave that certified the attestation key is Intel's Quoting Enclave -- Intel QVL's
``QuoteVerifier`` refuses a quote without it), both CRLs must have been checked
(``*.revocation.unchecked`` unless ``allow_unchecked_revocation``), the QE vendor ID must be
Intel's, and a TD must have SEPT_VE_DISABLE set (``require_sept_ve_disable``: with it clear the
VMM can make the TD take #VE on its own private pages, which a guest kernel that does not
handle them -- the Linux TDX guest refuses to boot without it -- cannot defend against).
Every allow-list left as ``None`` is not checked (listed as skipped). Every check runs; each
finding has a stable code from :data:`FINDING_CODES`.

=========================  ====================================================================
code                       check
=========================  ====================================================================
``<tee>.tee.type``         the quote is for the policy's TEE (TDX policy on a TDX quote)
``<tee>.debug``            debug bit clear unless ``allow_debug``
``<tee>.tcb.status``       TCB status (Intel rules, ``trust.intel.evaluate_tcb``) is allowed
``tdx.mrtd.mismatch``      MRTD in the allow-list (likewise ``rtmr0``..``rtmr3``, ``mrseam``,
                           ``mrconfigid``, ``mrowner``)
``sgx.mrenclave.mismatch`` MRENCLAVE in the allow-list (likewise ``mrsigner``)
``sgx.isvprodid.mismatch`` ISVPRODID equals the policy's
``sgx.isvsvn.below_minimum`` ISVSVN >= ``min_isv_svn``
``<tee>.report_data...``   REPORTDATA equals the expected 64 bytes (``report_data.mismatch``)
``<tee>.qe_identity...``   the QE Identity was verified (``qe_identity.required``)
``<tee>.qe_vendor_id``     the quote header's QE vendor ID is Intel's
``<tee>.revocation...``    the root CA and PCK CRLs were both checked (``revocation.unchecked``)
``<tee>.tcb.advisory...``  no advisory ID in ``denied_advisories`` (``tcb.advisory_denied``)
``tdx.td_attributes...``   SEPT_VE_DISABLE (bit 28) set (``td_attributes.sept_ve_disable``);
                           TD ATTRIBUTES & mask == value (``td_attributes.mismatch``)
``tdx.xfam.mismatch``      XFAM & mask == value
=========================  ====================================================================

TD ATTRIBUTES bits (Intel TDX Module ABI spec, "TDATTRIBUTES"): 0 DEBUG, 28 SEPT_VE_DISABLE,
29 MIGRATABLE, 30 PKS, 31 KL, 63 PERFMON; the 8 bytes are little-endian, so the policy's
masks are integers over ``int.from_bytes(td_attributes, "little")`` (likewise XFAM).
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from veritee.errors import ConfigError
from veritee.findings import Finding, Outcome
from veritee.formats.intel import SgxReportBody, TcbStatus, TdReportBody
from veritee.policy import Appraisal, _load
from veritee.policy._checks import contains as _in
from veritee.policy._checks import finding as _ok
from veritee.policy._checks import skipped as _skip
from veritee.trust.intel import VerifiedQuote

__all__ = ["FINDING_CODES", "INTEL_QE_VENDOR_ID", "SEPT_VE_DISABLE", "SgxPolicy", "TdxPolicy",
           "appraise", "claims", "policy_from_mapping", "policy_to_mapping"]

INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
"""QE_VENDOR_ID of Intel's Quoting Enclave (Intel SGX ECDSA QuoteLibReference, "Quote Header")."""

SEPT_VE_DISABLE = 1 << 28
"""TD ATTRIBUTES bit 28: EPT violations on private pages do not become #VE in the TD."""

_DEFAULT_CLAIMS = frozenset({"hardware", "instance-identity", "configuration", "runtime-opaque"})

_TDX_MEASUREMENTS = ("mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrseam", "mrconfigid",
                     "mrowner")
_SGX_MEASUREMENTS = ("mrenclave", "mrsigner")

_COMMON = ("qe_identity.required", "qe_vendor_id", "revocation.unchecked",
           "tcb.advisory_denied")

FINDING_CODES: frozenset[str] = frozenset({
    "tdx.tee.type", "tdx.debug", "tdx.tcb.status", "tdx.report_data.mismatch",
    *(f"tdx.{m}.mismatch" for m in _TDX_MEASUREMENTS),
    "tdx.td_attributes.sept_ve_disable", "tdx.td_attributes.mismatch", "tdx.xfam.mismatch",
    "sgx.tee.type", "sgx.debug", "sgx.tcb.status", "sgx.report_data.mismatch",
    *(f"sgx.{m}.mismatch" for m in _SGX_MEASUREMENTS),
    "sgx.isvprodid.mismatch", "sgx.isvsvn.below_minimum",
    *(f"{t}.{c}" for t in ("tdx", "sgx") for c in _COMMON),
})
"""Every finding code this module emits (pinned by a test)."""

_DEFAULT_STATUSES: frozenset[TcbStatus] = frozenset({TcbStatus.UP_TO_DATE})


def _statuses(value: Iterable[str] | None) -> frozenset[TcbStatus] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise ConfigError("allowed_tcb_statuses must be a collection of statuses, not a string")
    try:
        return frozenset(TcbStatus(v) for v in value)
    except ValueError as exc:
        raise ConfigError(f"allowed_tcb_statuses: {exc}") from exc


def _digests(name: str, value: Iterable[bytes] | None, size: int) -> frozenset[bytes] | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | str):
        raise ConfigError(f"{name} must be a collection of digests, not one value")
    out = frozenset(bytes(v) for v in value)
    if not out or any(len(v) != size for v in out):
        raise ConfigError(f"{name}: want a non-empty collection of {size}-byte values")
    return out


def _advisories(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ConfigError("denied_advisories must be a collection of advisory IDs (strings)")
    return frozenset(value)


_AR4SI_CLAIMS = frozenset({"instance-identity", "configuration", "executables", "file-system",
                           "hardware", "runtime-opaque", "storage-opaque", "sourced-data"})


def _claims(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ConfigError("required_claims must be a collection of AR4SI claim names")
    unknown = sorted(set(value) - _AR4SI_CLAIMS)
    if unknown:
        raise ConfigError(f"required_claims: unknown AR4SI claims {unknown}")
    return frozenset(value)


def _u64(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise ConfigError(f"{name} must be an integer 0..2**64-1")
    return value


def _check_common(p: TdxPolicy | SgxPolicy) -> None:
    for name in ("allow_debug", "require_qe_identity", "allow_unchecked_revocation"):
        if not isinstance(getattr(p, name), bool):
            raise ConfigError(f"{name} must be true or false")
    object.__setattr__(p, "allowed_tcb_statuses", _statuses(p.allowed_tcb_statuses))
    object.__setattr__(p, "denied_advisories", _advisories(p.denied_advisories))
    object.__setattr__(p, "required_claims", _claims(p.required_claims))
    object.__setattr__(p, "report_data", _report_data(p.report_data))


def _report_data(value: bytes | None) -> bytes | None:
    if value is not None and len(value) != 64:
        raise ConfigError(f"report_data: want 64 bytes, got {len(value)}")
    return None if value is None else bytes(value)


@dataclass(frozen=True)
class TdxPolicy:
    """What a relying party accepts from a TD. ``None`` allow-lists are not checked.

    Sets are normalised to frozensets (statuses to :class:`TcbStatus`); bad values raise
    :class:`~veritee.errors.ConfigError`.
    """

    policy_id: str = "tdx-default"
    allow_debug: bool = False
    allowed_tcb_statuses: AbstractSet[str] | None = field(
        default_factory=lambda: _DEFAULT_STATUSES)
    mrtd: AbstractSet[bytes] | None = None
    rtmr0: AbstractSet[bytes] | None = None
    rtmr1: AbstractSet[bytes] | None = None
    rtmr2: AbstractSet[bytes] | None = None
    rtmr3: AbstractSet[bytes] | None = None
    mrseam: AbstractSet[bytes] | None = None
    mrconfigid: AbstractSet[bytes] | None = None
    mrowner: AbstractSet[bytes] | None = None
    report_data: bytes | None = None
    require_qe_identity: bool = True
    allow_unchecked_revocation: bool = False
    denied_advisories: AbstractSet[str] = frozenset()
    require_sept_ve_disable: bool = True
    td_attributes_mask: int = 0  # 0: not checked; e.g. PKS|KL|PERFMON with value 0 forbids them
    td_attributes_value: int = 0
    xfam_mask: int = 0
    xfam_value: int = 0
    required_claims: AbstractSet[str] = _DEFAULT_CLAIMS

    def __post_init__(self) -> None:
        _check_common(self)
        if not isinstance(self.require_sept_ve_disable, bool):
            raise ConfigError("require_sept_ve_disable must be true or false")
        for name in _TDX_MEASUREMENTS:
            object.__setattr__(self, name, _digests(name, getattr(self, name), 48))
        for mask, value in (("td_attributes_mask", "td_attributes_value"),
                            ("xfam_mask", "xfam_value")):
            m, v = _u64(mask, getattr(self, mask)), _u64(value, getattr(self, value))
            if v & ~m:
                raise ConfigError(f"{value} has bits outside {mask}: {v & ~m:#x}")


@dataclass(frozen=True)
class SgxPolicy:
    """What a relying party accepts from an enclave. ``None`` checks are not run."""

    policy_id: str = "sgx-default"
    allow_debug: bool = False
    allowed_tcb_statuses: AbstractSet[str] | None = field(
        default_factory=lambda: _DEFAULT_STATUSES)
    mrenclave: AbstractSet[bytes] | None = None
    mrsigner: AbstractSet[bytes] | None = None
    isv_prod_id: int | None = None
    min_isv_svn: int | None = None
    report_data: bytes | None = None
    require_qe_identity: bool = True
    allow_unchecked_revocation: bool = False
    denied_advisories: AbstractSet[str] = frozenset()
    required_claims: AbstractSet[str] = _DEFAULT_CLAIMS

    def __post_init__(self) -> None:
        _check_common(self)
        for name in _SGX_MEASUREMENTS:
            object.__setattr__(self, name, _digests(name, getattr(self, name), 32))
        for name in ("isv_prod_id", "min_isv_svn"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)
                                  or not 0 <= v <= 0xFFFF):
                raise ConfigError(f"{name} must be an integer 0..65535")


def _common(tee: str, v: VerifiedQuote, p: TdxPolicy | SgxPolicy) -> list[Finding]:
    """The checks every Intel quote gets: QE identity, QE vendor, revocation, advisories."""
    out = []
    code = f"{tee}.qe_identity.required"
    if not p.require_qe_identity:
        out.append(_skip(code, "QE Identity", "require_qe_identity is false"))
    else:
        out.append(_ok(code, "QE Identity", "verified" if v.qe_identity else "absent",
                       "verified", v.qe_identity is not None,
                       "no QE Identity in the collateral: nothing proves the attestation key was"
                       " certified by Intel's Quoting Enclave (pass the qe_identity JSON)"))
    vendor = v.quote.header.qe_vendor_id
    out.append(_ok(f"{tee}.qe_vendor_id", "QE_VENDOR_ID", vendor, INTEL_QE_VENDOR_ID,
                   hmac.compare_digest(vendor, INTEL_QE_VENDOR_ID), "not Intel's Quoting Enclave"))
    code = f"{tee}.revocation.unchecked"
    done = {f.code for f in v.checks if f.outcome is Outcome.PASS}
    missing = [c.split(".")[-1] for c in ("intel.crl.root", "intel.crl.pck") if c not in done]
    if not missing:
        out.append(_ok(code, "CRLs", "checked", "checked", True))
    elif p.allow_unchecked_revocation:
        out.append(_skip(code, "CRLs", f"no {'/'.join(missing)} CRL; allow_unchecked_revocation"
                                       " is true"))
    else:
        out.append(_ok(code, "CRLs", f"not checked: {', '.join(missing)}", "root and pck",
                       False, "the PCK chain was not checked against Intel's CRLs: put the"
                       " root CA and PCK CRLs in the collateral or set"
                       " allow_unchecked_revocation"))
    code = f"{tee}.tcb.advisory_denied"
    if not p.denied_advisories:
        out.append(_skip(code, "advisory IDs", "denied_advisories is empty"))
    else:
        got = list(v.tcb.advisory_ids) if v.tcb else []
        hit = sorted(set(got) & set(p.denied_advisories))
        out.append(_ok(code, "advisory IDs", got, f"none of {sorted(p.denied_advisories)}",
                       not hit, f"the TCB level is affected by denied advisories {hit}"))
    return out


def _masked(code: str, fld: str, raw: bytes, mask: int, value: int) -> Finding:
    if not mask:
        return _skip(code, fld, f"no {fld} mask in the policy")
    got = int.from_bytes(raw, "little")
    return _ok(code, fld, f"{got:#018x}", f"{value:#x} under mask {mask:#x}",
               got & mask == value, f"bits {(got & mask) ^ value:#x} differ under the mask")


def _tcb(tee: str, v: VerifiedQuote, allowed: AbstractSet[str] | None) -> Finding:
    code = f"{tee}.tcb.status"
    if allowed is None:
        return _skip(code, "TCB status")
    want = sorted(allowed)
    if v.tcb is None:
        return _ok(code, "TCB status", "unknown", want, False,
                   "no TCB Info in the collateral: the TCB status was not evaluated")
    if v.tcb.status is None:
        return _ok(code, "TCB status", "TcbNotSupported", want, False, v.tcb.reason)
    return _ok(code, "TCB status", v.tcb.status.value, want, v.tcb.status in allowed,
               f"advisories {list(v.tcb.advisory_ids)}")


def _measure(code: str, fld: str, got: bytes, allowed: AbstractSet[bytes] | None) -> Finding:
    if allowed is None:
        return _skip(code, fld)
    return _ok(code, fld, got, sorted(allowed), _in(got, allowed), "not in the allow-list")


def _report(code: str, got: bytes, want: bytes | None) -> Finding:
    if want is None:
        return _skip(code, "REPORTDATA")
    return _ok(code, "REPORTDATA", got, want, hmac.compare_digest(got, want))


def _appraise_tdx(v: VerifiedQuote, p: TdxPolicy) -> list[Finding]:
    body = v.quote.body
    if not isinstance(body, TdReportBody):
        return [_ok("tdx.tee.type", "TEE type", v.tee, "tdx", False, "not a TDX quote")]
    out = [_ok("tdx.tee.type", "TEE type", "tdx", "tdx", True),
           _ok("tdx.debug", "TD ATTRIBUTES.DEBUG", body.debug, False,
               p.allow_debug or not body.debug, "debug TD (its memory is readable by the host)"),
           _tcb("tdx", v, p.allowed_tcb_statuses)]
    values = {"mrtd": body.mr_td, "rtmr0": body.rtmrs[0], "rtmr1": body.rtmrs[1],
              "rtmr2": body.rtmrs[2], "rtmr3": body.rtmrs[3], "mrseam": body.mr_seam,
              "mrconfigid": body.mr_config_id, "mrowner": body.mr_owner}
    out += [_measure(f"tdx.{m}.mismatch", m.upper(), values[m], getattr(p, m))
            for m in _TDX_MEASUREMENTS]
    out.append(_report("tdx.report_data.mismatch", body.report_data, p.report_data))
    attrs = int.from_bytes(body.td_attributes, "little")
    out.append(_skip("tdx.td_attributes.sept_ve_disable", "TD ATTRIBUTES.SEPT_VE_DISABLE",
                     "require_sept_ve_disable is false") if not p.require_sept_ve_disable else
               _ok("tdx.td_attributes.sept_ve_disable", "TD ATTRIBUTES.SEPT_VE_DISABLE",
                   bool(attrs & SEPT_VE_DISABLE), True, bool(attrs & SEPT_VE_DISABLE),
                   "the VMM can inject #VE on the TD's private pages (bit 28 clear)"))
    out.append(_masked("tdx.td_attributes.mismatch", "TD ATTRIBUTES", body.td_attributes,
                       p.td_attributes_mask, p.td_attributes_value))
    out.append(_masked("tdx.xfam.mismatch", "XFAM", body.xfam, p.xfam_mask, p.xfam_value))
    return out + _common("tdx", v, p)


def _appraise_sgx(v: VerifiedQuote, p: SgxPolicy) -> list[Finding]:
    body = v.quote.body
    if not isinstance(body, SgxReportBody):
        return [_ok("sgx.tee.type", "TEE type", v.tee, "sgx", False, "not an SGX quote")]
    out = [_ok("sgx.tee.type", "TEE type", "sgx", "sgx", True),
           _ok("sgx.debug", "ATTRIBUTES.DEBUG", body.debug, False,
               p.allow_debug or not body.debug, "debug enclave"),
           _tcb("sgx", v, p.allowed_tcb_statuses),
           _measure("sgx.mrenclave.mismatch", "MRENCLAVE", body.mr_enclave, p.mrenclave),
           _measure("sgx.mrsigner.mismatch", "MRSIGNER", body.mr_signer, p.mrsigner)]
    out.append(_skip("sgx.isvprodid.mismatch", "ISVPRODID") if p.isv_prod_id is None else
               _ok("sgx.isvprodid.mismatch", "ISVPRODID", body.isv_prod_id, p.isv_prod_id,
                   body.isv_prod_id == p.isv_prod_id))
    out.append(_skip("sgx.isvsvn.below_minimum", "ISVSVN") if p.min_isv_svn is None else
               _ok("sgx.isvsvn.below_minimum", "ISVSVN", body.isv_svn, f">= {p.min_isv_svn}",
                   body.isv_svn >= p.min_isv_svn))
    out.append(_report("sgx.report_data.mismatch", body.report_data, p.report_data))
    return out + _common("sgx", v, p)


def appraise(verified: VerifiedQuote, policy: TdxPolicy | SgxPolicy) -> Appraisal:
    """Appraise a verified quote; every check runs, none raises."""
    if isinstance(policy, TdxPolicy):
        tee, findings = "tdx", _appraise_tdx(verified, policy)
    else:
        tee, findings = "sgx", _appraise_sgx(verified, policy)
    return Appraisal(tee=tee, policy_id=policy.policy_id, findings=tuple(findings),
                     verification=verified.checks, claims=claims(verified),
                     required_claims=frozenset(policy.required_claims))


def claims(verified: VerifiedQuote) -> dict[str, Any]:
    """The verified claims a relying party may use, JSON-ready (bytes as lowercase hex)."""
    q, body, tcb = verified.quote, verified.quote.body, verified.tcb
    out: dict[str, Any] = {
        "tee": verified.tee, "quote_version": q.header.version,
        "fmspc": verified.pck.fmspc.hex(), "pce_id": verified.pck.pce_id.hex(),
        "root_fingerprint": verified.root_fingerprint,
        "tcb_status": (tcb.status.value if tcb and tcb.status else
                       ("TcbNotSupported" if tcb else None)),
        "advisory_ids": list(tcb.advisory_ids) if tcb else [],
        "qe_identity_verified": verified.qe_identity is not None,
        "report_data": body.report_data.hex(),
    }
    if isinstance(body, TdReportBody):
        out.update(mrtd=body.mr_td.hex(), rtmrs=[r.hex() for r in body.rtmrs],
                   mrseam=body.mr_seam.hex(), mrconfigid=body.mr_config_id.hex(),
                   mrowner=body.mr_owner.hex(), tee_tcb_svn=body.tee_tcb_svn.hex(),
                   td_attributes=body.td_attributes.hex(), xfam=body.xfam.hex())
    else:
        out.update(mrenclave=body.mr_enclave.hex(), mrsigner=body.mr_signer.hex(),
                   isv_prod_id=body.isv_prod_id, isv_svn=body.isv_svn,
                   attributes=body.attributes.hex())
    return out


# -- policy files (TOML / JSON) ---------------------------------------------------------------


def _read_u64(value: object, path: str) -> int:
    """An integer 0..2**64-1, or a hex string (TOML integers stop at 2**63-1)."""
    if isinstance(value, str):
        text = value.strip().lower()
        digits = text[2:] if text.startswith("0x") else text
        if not digits or any(c not in "0123456789abcdef" for c in digits) or len(digits) > 16:
            raise _load.config_error(path, value, "an integer 0..2**64-1 or a hex string")
        return int(digits, 16)
    return _load.read_int(value, path, 0, (1 << 64) - 1)


def _read_strings(value: object, path: str) -> frozenset[str]:
    """A list of strings (may be empty)."""
    if not isinstance(value, list | tuple):
        raise _load.config_error(path, value, "a list of strings")
    return frozenset(_load.read_str(v, f"{path}[{i}]") for i, v in enumerate(value))


def _read_statuses(value: object, path: str) -> frozenset[str]:
    items = _load.read_list(value, path, "a non-empty list of TCB statuses")
    known = [s.value for s in TcbStatus]
    out = set()
    for i, v in enumerate(items):
        text = _load.read_str(v, f"{path}[{i}]")
        if text not in known:
            raise _load.config_error(f"{path}[{i}]", v, f"one of {', '.join(known)}")
        out.add(text)
    return frozenset(out)


def _read_policy_id(value: object, path: str) -> str:
    text = _load.read_str(value, path)
    if not text:
        raise _load.config_error(path, value, "a non-empty string")
    return text


def _hex_set(size: int) -> Callable[[object, str], frozenset[bytes]]:
    return lambda value, path: _load.read_hex_set(value, path, size)


_Reader = Callable[[object, str], Any]
_COMMON_READERS: dict[str, _Reader] = {
    "policy_id": _read_policy_id,
    "allow_debug": _load.read_bool,
    "allowed_tcb_statuses": _read_statuses,
    "report_data": lambda v, p: _load.read_hex(v, p, 64),
    "require_qe_identity": _load.read_bool,
    "allow_unchecked_revocation": _load.read_bool,
    "denied_advisories": _read_strings,
    "required_claims": _read_strings,
}
_READERS: dict[type, dict[str, _Reader]] = {
    TdxPolicy: {**_COMMON_READERS,
                **{m: _hex_set(48) for m in _TDX_MEASUREMENTS},
                "require_sept_ve_disable": _load.read_bool,
                **{k: _read_u64 for k in ("td_attributes_mask", "td_attributes_value",
                                          "xfam_mask", "xfam_value")}},
    SgxPolicy: {**_COMMON_READERS,
                **{m: _hex_set(32) for m in _SGX_MEASUREMENTS},
                "isv_prod_id": lambda v, p: _load.read_int(v, p, 0, 0xFFFF),
                "min_isv_svn": lambda v, p: _load.read_int(v, p, 0, 0xFFFF)},
}
# Fields a JSON null (or an absent key) turns off: "not checked".
_OPTIONAL = frozenset({"allowed_tcb_statuses", "report_data", "isv_prod_id", "min_isv_svn",
                       *_TDX_MEASUREMENTS, *_SGX_MEASUREMENTS})


def policy_from_mapping(data: Mapping[str, Any], kind: type[TdxPolicy] | type[SgxPolicy]
                        ) -> TdxPolicy | SgxPolicy:
    """A :class:`TdxPolicy` or :class:`SgxPolicy` (``kind``) from a parsed TOML/JSON mapping.

    Keys are the policy's field names; digests and REPORTDATA are hex strings (``0x``
    optional), sets are lists, TCB statuses are Intel's spelling (``"UpToDate"``), TD
    ATTRIBUTES / XFAM masks integers or hex strings; a JSON ``null`` turns an allow-list off
    (not checked). Missing keys take the secure defaults. A wrong key or value is a
    :class:`~veritee.errors.ConfigError` naming it.
    """
    readers = _READERS[kind]
    table = _load.read_table(data, "<policy>")
    _load.check_keys(table, readers)
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        kwargs[key] = None if value is None and key in _OPTIONAL else readers[key](value, key)
    return kind(**kwargs)


def policy_to_mapping(policy: TdxPolicy | SgxPolicy) -> dict[str, Any]:
    """The JSON-ready mapping of ``policy``; :func:`policy_from_mapping` inverts it exactly.

    Every field is present (``None`` as ``null``); sets are sorted lists.
    """
    out: dict[str, Any] = {}
    for f in dataclasses.fields(policy):
        value = getattr(policy, f.name)
        if isinstance(value, bytes):
            value = value.hex()
        elif isinstance(value, AbstractSet):
            value = sorted(v.hex() if isinstance(v, bytes) else str(v) for v in value)
        out[f.name] = value
    return out
