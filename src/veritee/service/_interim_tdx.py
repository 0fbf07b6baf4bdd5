"""Intel TDX quotes behind the scheme contract, until the registry has a ``tdx`` scheme.

TEMPORARY (issue 11): the ``tdx`` scheme (``veritee.schemes.intel``) is written in parallel.
Until it is registered, the broker looks a quote up here *after* the registry
(:func:`scheme_for`), so nothing else in the service names a TEE; once ``tdx`` is in
:func:`veritee.schemes.names`, this module is never consulted and is to be deleted.

It implements the :class:`~veritee.schemes.Scheme` protocol over the existing trust and policy
layers (``trust.intel.verify_quote``, ``policy.intel.appraise``) and mirrors
:meth:`veritee.attest.Verifier._one` for the binding check (``tdx.binding.mismatch``), so an
appraisal looks the same before and after the real scheme lands.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from veritee.attest import Challenge, EvidencePart, is_intel_quote
from veritee.errors import ConfigError, FormatError
from veritee.findings import Finding, Outcome
from veritee.formats.intel import TcbStatus
from veritee.policy import Appraisal
from veritee.policy.intel import TdxPolicy
from veritee.policy.intel import appraise as appraise_intel
from veritee.policy.intel import claims as intel_claims
from veritee.schemes import Context, Verified, expected_binding

__all__ = ["INTERIM_TDX", "appraise_part", "scheme_for"]

# The policy keys this interim form reads and writes (the real scheme takes every field).
_KEYS = ("policy_id", "allowed_tcb_statuses", "allow_unchecked_revocation", "mrtd",
         "mrconfigid", "allow_debug")


def _hex_set(name: str, value: object) -> frozenset[bytes] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name}: got {value!r}, want a list of hex strings")
    try:
        out = frozenset(bytes.fromhex(v.lower().removeprefix("0x")) for v in value)
    except ValueError:
        raise ConfigError(f"{name}: got {value!r}, want hex digits") from None
    bad = [len(v) for v in out if len(v) != 48]
    if bad:
        raise ConfigError(f"{name}: got {bad[0]} bytes, want 48")
    return out


class _InterimTdx:
    """Intel TDX quotes (v4/v5) with the trust and policy layers on main."""

    name = "tdx"
    vendor = "intel"
    binding_size = 64
    policy_type = TdxPolicy
    reference_key = "mrtd"

    def recognise(self, data: bytes) -> bool:
        """A DCAP quote whose TEE type is TDX (header TEE_TYPE 0x81)."""
        return is_intel_quote(data) and int.from_bytes(data[4:8], "little") == 0x81

    def parse(self, data: bytes, *, attached: bytes | None = None) -> bytes:
        """The quote bytes (parsed during verification); nothing may be attached."""
        if attached:
            raise FormatError("tdx", "attached", got=f"{len(attached)} bytes",
                              want="nothing (a quote carries its PCK chain)")
        return data

    def verify(self, evidence: bytes, ctx: Context) -> Verified:
        """Chain, QE report, quote signature, TCB Info and QE Identity at ``ctx.now``."""
        from veritee.trust.intel import verify_quote

        verified = verify_quote(evidence, ctx.collateral.get(self.vendor), now=ctx.now,
                                trusted_roots=ctx.anchors.get(self.vendor))
        if verified.tee != "tdx":
            raise FormatError("quote", "tee_type", got=verified.tee, want="tdx")
        return Verified(self.name, verified, tuple(verified.checks), ctx.now)

    def binding(self, verified: Verified) -> bytes:
        """REPORTDATA (64 bytes)."""
        data: bytes = verified.native.quote.body.report_data
        return data

    def claims(self, verified: Verified) -> dict[str, Any]:
        """The Intel claims plus the common ones."""
        own = intel_claims(verified.native)
        attrs = str(own.get("td_attributes") or "00")
        return {**own, "tee": self.name, "measurement": own.get("mrtd"),
                "debug": bool(int(attrs[:2], 16) & 1),
                "advisory_ids": list(own.get("advisory_ids") or []),
                "binding": verified.native.quote.body.report_data.hex()}

    def default_policy(self) -> TdxPolicy:
        """:class:`TdxPolicy` with its secure defaults."""
        return TdxPolicy()

    def policy_from_mapping(self, data: Mapping[str, Any]) -> TdxPolicy:
        """The interim subset of :class:`TdxPolicy` (see ``_KEYS``)."""
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise ConfigError(f"{unknown[0]}: unknown key for a tdx policy (known until the "
                              f"tdx scheme lands: {', '.join(_KEYS)})")
        kw: dict[str, Any] = {}
        if "policy_id" in data:
            kw["policy_id"] = data["policy_id"]
        statuses = data.get("allowed_tcb_statuses")
        if statuses is not None:
            known = {t.value for t in TcbStatus}
            if not isinstance(statuses, list) or not set(statuses) <= known:
                raise ConfigError(f"allowed_tcb_statuses: got {statuses!r}, want TCB statuses")
            kw["allowed_tcb_statuses"] = frozenset(statuses)
        for flag in ("allow_unchecked_revocation", "allow_debug"):
            if flag in data:
                if not isinstance(data[flag], bool):
                    raise ConfigError(f"{flag}: got {data[flag]!r}, want true or false")
                kw[flag] = data[flag]
        for key in ("mrtd", "mrconfigid"):
            if data.get(key) is not None:
                kw[key] = _hex_set(key, data[key])
        return TdxPolicy(**kw)

    def policy_to_mapping(self, policy: Any) -> dict[str, Any]:
        """The interim subset's JSON form."""
        out: dict[str, Any] = {"policy_id": policy.policy_id,
                               "allow_unchecked_revocation": policy.allow_unchecked_revocation,
                               "allow_debug": policy.allow_debug}
        out["allowed_tcb_statuses"] = (sorted(str(getattr(s, "value", s)) for s in
                                              policy.allowed_tcb_statuses)
                                       if policy.allowed_tcb_statuses is not None else None)
        for key in ("mrtd", "mrconfigid"):
            value = getattr(policy, key)
            out[key] = sorted(v.hex() for v in value) if value is not None else None
        return out

    def appraise(self, verified: Verified, policy: Any) -> Appraisal:
        """:func:`veritee.policy.intel.appraise` with the common claims and the vector."""
        from veritee.results import trust_vector

        result = appraise_intel(verified.native, policy)
        result = replace(result, claims=self.claims(verified))
        return replace(result, vector=trust_vector(result))

    def new_cache(self) -> None:
        """No cache."""
        return None

    def load_collateral(self, paths: Sequence[Path]) -> Any:
        """Intel collateral from one directory."""
        from veritee.collateral.intel import load_directory

        return load_directory(paths[0]) if paths else None


INTERIM_TDX = _InterimTdx()


def scheme_for(part: EvidencePart) -> Any:
    """The interim scheme when the registry has no ``tdx`` and ``part`` is a TDX quote."""
    from veritee.schemes import names

    if INTERIM_TDX.name in names():
        return None
    if part.scheme == INTERIM_TDX.name or (part.scheme is None
                                          and INTERIM_TDX.recognise(part.data)):
        return INTERIM_TDX
    return None


def appraise_part(part: EvidencePart, ctx: Context, policy: Any,
                  challenge: Challenge | None, expected: bytes | None) -> Appraisal:
    """:meth:`veritee.attest.Verifier._one` for the interim scheme."""
    scheme = INTERIM_TDX
    verified = scheme.verify(scheme.parse(part.data, attached=part.attached), ctx)
    if challenge is not None:
        expected = expected_binding(challenge.nonce, challenge.key_spki, scheme.binding_size)
    appraisal = scheme.appraise(verified, policy)
    code = f"{scheme.name}.binding.mismatch"
    if expected is None:
        check = Finding(code, Outcome.SKIP, "binding", message="no challenge given: "
                        "freshness and key binding not checked")
    else:
        got = scheme.binding(verified)
        ok = hmac.compare_digest(got, expected)
        check = Finding(code, Outcome.PASS if ok else Outcome.FAIL, "binding", got=got,
                        want=expected, message="" if ok else "the evidence does not carry "
                        "the verifier's challenge")
    appraisal = replace(appraisal, findings=(check, *appraisal.findings))
    if appraisal.vector is not None:
        from veritee.results import binding_identity

        appraisal = replace(appraisal, vector={**appraisal.vector,
                                               "instance-identity": binding_identity(appraisal)})
    return appraisal
