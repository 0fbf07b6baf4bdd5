"""Appraisal of verified Intel quotes: :class:`TdxPolicy` and :class:`SgxPolicy`.

Secure defaults: debug TDs / enclaves are rejected (TD ATTRIBUTES bit 0, SGX ATTRIBUTES.DEBUG),
only the ``UpToDate`` TCB status is accepted (other statuses need an explicit opt-in list; a
quote with no TCB Info collateral or no matching TCB level fails ``*.tcb.status``), and every
allow-list left as ``None`` is not checked (listed as skipped). Every check runs; each finding
has a stable code from :data:`FINDING_CODES`.

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
``sgx.isvsvn.below_min``   ISVSVN >= ``min_isv_svn``
``<tee>.report_data...``   REPORTDATA equals the expected 64 bytes (``report_data.mismatch``)
=========================  ====================================================================
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from veritee.errors import ConfigError
from veritee.findings import Finding
from veritee.formats.intel import SgxReportBody, TcbStatus, TdReportBody
from veritee.policy import Appraisal
from veritee.policy._checks import contains as _in
from veritee.policy._checks import finding as _ok
from veritee.policy._checks import skipped as _skip
from veritee.trust.intel import VerifiedQuote

__all__ = ["FINDING_CODES", "SgxPolicy", "TdxPolicy", "appraise", "claims"]

_TDX_MEASUREMENTS = ("mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrseam", "mrconfigid",
                     "mrowner")
_SGX_MEASUREMENTS = ("mrenclave", "mrsigner")

FINDING_CODES: frozenset[str] = frozenset({
    "tdx.tee.type", "tdx.debug", "tdx.tcb.status", "tdx.report_data.mismatch",
    *(f"tdx.{m}.mismatch" for m in _TDX_MEASUREMENTS),
    "sgx.tee.type", "sgx.debug", "sgx.tcb.status", "sgx.report_data.mismatch",
    *(f"sgx.{m}.mismatch" for m in _SGX_MEASUREMENTS),
    "sgx.isvprodid.mismatch", "sgx.isvsvn.below_min",
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

    def __post_init__(self) -> None:
        if not isinstance(self.allow_debug, bool):
            raise ConfigError("allow_debug must be true or false")
        object.__setattr__(self, "allowed_tcb_statuses", _statuses(self.allowed_tcb_statuses))
        for name in _TDX_MEASUREMENTS:
            object.__setattr__(self, name, _digests(name, getattr(self, name), 48))
        object.__setattr__(self, "report_data", _report_data(self.report_data))


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

    def __post_init__(self) -> None:
        if not isinstance(self.allow_debug, bool):
            raise ConfigError("allow_debug must be true or false")
        object.__setattr__(self, "allowed_tcb_statuses", _statuses(self.allowed_tcb_statuses))
        for name in _SGX_MEASUREMENTS:
            object.__setattr__(self, name, _digests(name, getattr(self, name), 32))
        for name in ("isv_prod_id", "min_isv_svn"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool)
                                  or not 0 <= v <= 0xFFFF):
                raise ConfigError(f"{name} must be an integer 0..65535")
        object.__setattr__(self, "report_data", _report_data(self.report_data))








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
    return out


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
    out.append(_skip("sgx.isvsvn.below_min", "ISVSVN") if p.min_isv_svn is None else
               _ok("sgx.isvsvn.below_min", "ISVSVN", body.isv_svn, f">= {p.min_isv_svn}",
                   body.isv_svn >= p.min_isv_svn))
    out.append(_report("sgx.report_data.mismatch", body.report_data, p.report_data))
    return out


def appraise(verified: VerifiedQuote, policy: TdxPolicy | SgxPolicy) -> Appraisal:
    """Appraise a verified quote; every check runs, none raises."""
    if isinstance(policy, TdxPolicy):
        tee, findings = "tdx", _appraise_tdx(verified, policy)
    else:
        tee, findings = "sgx", _appraise_sgx(verified, policy)
    return Appraisal(tee=tee, policy_id=policy.policy_id, findings=tuple(findings),
                     verification=verified.checks, claims=claims(verified))


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
