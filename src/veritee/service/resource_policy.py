"""Per-resource release policies, evaluated over a verified EAR's claims.

Each resource carries its own :class:`ResourcePolicy`; a token that satisfied the verifier's
appraisal policy still gets a resource only if *that resource's* policy passes over the
token's claims. Evaluation lists every check as a :class:`~veritee.findings.Finding`
(``resource.<field>.<what>``), like appraisal, so a refusal names all that was wrong.

Secure defaults: the token's status must be ``affirming``, debug guests are refused, and a
policy must pin the workload (``measurements`` for SEV-SNP, ``mrtd`` for Intel TDX) unless it
says ``allow_any_workload = true`` explicitly: there is no accept-all default.

TEE-specific fields fail closed on the other TEE's tokens: ``measurements``, ``host_data``,
``chip_ids`` and a non-zero ``min_guest_svn`` are SEV-SNP claims and *fail* for a ``tdx``
token; ``mrtd`` is a TDX claim and fails for an ``sevsnp`` token.

Every scheme: ``workloads`` pins claims per scheme, ``{scheme: {claim: [allowed values]}}``,
over the common claims (``measurement``, ``debug``, ``tcb_status`` ...; see
:data:`veritee.schemes.COMMON_CLAIMS`) and the scheme's own (``host_data``, ``mrconfigid``,
...): ``{"tdx": {"measurement": ["<MRTD hex>"]}, "nvidia": {"measurement": [...]}}``. A pin is
only ever compared with claims of a submodule *of that scheme*, and a pinned scheme the token
has no submodule of fails (``resource.workload.absent``): a field for one TEE never matches
evidence of another. A token whose primary attester is of a scheme that neither the legacy
fields (SEV-SNP, TDX) nor ``workloads`` name fails ``resource.tee.unsupported``. The common
``debug`` claim is refused in every submodule that has it unless ``allow_debug``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from veritee.errors import ConfigError
from veritee.findings import Finding, Outcome
from veritee.results import TIERS, EarResult

__all__ = ["ResourcePolicy"]

_FIELDS = ("measurements", "mrtd", "allow_any_workload", "appraisal_policy_ids",
           "min_guest_svn", "allow_debug", "host_data", "chip_ids", "required_status",
           "workloads")
_TEES = ("sevsnp", "tdx")
_MAX_PINS = 256  # allowed values per claim


def _norm(value: Any) -> Any:
    """A claim value as pins compare it: hex text lowercase without ``0x``."""
    if isinstance(value, str):
        text = value.removeprefix("0x").removeprefix("0X")
        if text and all(c in "0123456789abcdefABCDEF" for c in text):
            return text.lower()
    return value


def _workloads(value: object) -> dict[str, dict[str, frozenset[Any]]] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"policy.workloads: got {str(value)[:80]}, want {{scheme: {{claim: "
                          "[allowed values]}}}")
    out: dict[str, dict[str, frozenset[Any]]] = {}
    for scheme, pins in value.items():
        where = f"policy.workloads.{str(scheme)[:64]}"
        if not isinstance(scheme, str) or not 1 <= len(scheme) <= 64:
            raise ConfigError(f"{where}: want a scheme name")
        if not isinstance(pins, Mapping) or not pins:
            raise ConfigError(f"{where}: got {str(pins)[:80]}, want {{claim: [allowed values]}} "
                              "(at least one claim)")
        claims: dict[str, frozenset[Any]] = {}
        for claim, allowed in pins.items():
            at = f"{where}.{str(claim)[:64]}"
            if not isinstance(claim, str) or not 1 <= len(claim) <= 64:
                raise ConfigError(f"{at}: want a claim name")
            if (not isinstance(allowed, list) or not 1 <= len(allowed) <= _MAX_PINS
                    or not all(isinstance(a, str | int | bool) for a in allowed)):
                raise ConfigError(f"{at}: got {str(allowed)[:80]}, want a list of 1..{_MAX_PINS} "
                                  "strings, numbers or booleans")
            claims[claim] = frozenset(_norm(a) for a in allowed)
        out[scheme] = claims
    return out


def _hex_set(value: object, name: str, length: int) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{name}: got {value!r}, want a non-empty list of hex strings")
    out = set()
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ConfigError(f"{name}[{i}]: got {item!r}, want a hex string")
        text = item.lower().removeprefix("0x")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ConfigError(f"{name}[{i}]: got {item!r}, want hex digits") from None
        if len(raw) != length:
            raise ConfigError(f"{name}[{i}]: got {len(raw)} bytes, want {length}")
        out.add(raw.hex())
    return frozenset(out)


def _listed(want: Any) -> Any:
    """A finding's ``want``: an allow-list (frozenset) as a sorted list, else as given."""
    return sorted(want) if isinstance(want, frozenset) else want


@dataclass(frozen=True)
class ResourcePolicy:
    """What a token's claims must show for one resource to be released."""

    measurements: frozenset[str] | None = None  # allowed launch digests (hex, 48 bytes)
    mrtd: frozenset[str] | None = None  # allowed Intel TDX MRTDs (hex, 48 bytes)
    allow_any_workload: bool = False
    appraisal_policy_ids: frozenset[str] | None = None  # verifier policies accepted
    min_guest_svn: int = 0
    allow_debug: bool = False
    host_data: str | None = None  # hex, 32 bytes
    chip_ids: frozenset[str] | None = None
    required_status: str = "affirming"
    workloads: dict[str, dict[str, frozenset[Any]]] | None = field(default=None, hash=False)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ResourcePolicy:
        """Parse and validate a JSON policy; :class:`ConfigError` names the bad key."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"policy: got {type(data).__name__}, want an object")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"policy.{unknown[0]}: unknown key (known: {', '.join(_FIELDS)})")
        measurements = _hex_set(data.get("measurements"), "policy.measurements", 48)
        mrtd = _hex_set(data.get("mrtd"), "policy.mrtd", 48)
        chip_ids = _hex_set(data.get("chip_ids"), "policy.chip_ids", 64)
        host = _hex_set([data["host_data"]] if data.get("host_data") is not None else None,
                        "policy.host_data", 32)
        ids = data.get("appraisal_policy_ids")
        if ids is not None and (not isinstance(ids, list) or not ids
                                or not all(isinstance(i, str) and i for i in ids)):
            raise ConfigError(f"policy.appraisal_policy_ids: got {ids!r}, want a non-empty list "
                              "of policy ids")
        svn = data.get("min_guest_svn", 0)
        if isinstance(svn, bool) or not isinstance(svn, int) or not 0 <= svn <= 0xFFFF_FFFF:
            raise ConfigError(f"policy.min_guest_svn: got {svn!r}, want an integer 0..2^32-1")
        flags = {}
        for name in ("allow_any_workload", "allow_debug"):
            value = data.get(name, False)
            if not isinstance(value, bool):
                raise ConfigError(f"policy.{name}: got {value!r}, want true or false")
            flags[name] = value
        status = data.get("required_status", "affirming")
        if status not in ("affirming", "warning"):
            raise ConfigError(f"policy.required_status: got {status!r}, want 'affirming' or "
                              "'warning'")
        workloads = _workloads(data.get("workloads"))
        if (measurements is None and mrtd is None and workloads is None
                and not flags["allow_any_workload"]):
            raise ConfigError("policy.measurements: required (a list of SEV-SNP launch "
                              "digests) or policy.mrtd (Intel TDX MRTDs) or policy.workloads "
                              "(claims per scheme), or set allow_any_workload = true explicitly")
        return cls(measurements=measurements, mrtd=mrtd, appraisal_policy_ids=(
            frozenset(ids) if ids is not None else None), min_guest_svn=svn,
            host_data=next(iter(host)) if host else None, chip_ids=chip_ids,
            required_status=status, workloads=workloads, **flags)

    def to_mapping(self) -> dict[str, Any]:
        """The JSON form; :meth:`from_mapping` inverts it."""
        return {
            "measurements": sorted(self.measurements) if self.measurements else None,
            "mrtd": sorted(self.mrtd) if self.mrtd else None,
            "allow_any_workload": self.allow_any_workload,
            "appraisal_policy_ids": (sorted(self.appraisal_policy_ids)
                                     if self.appraisal_policy_ids else None),
            "min_guest_svn": self.min_guest_svn,
            "allow_debug": self.allow_debug,
            "host_data": self.host_data,
            "chip_ids": sorted(self.chip_ids) if self.chip_ids else None,
            "required_status": self.required_status,
            "workloads": ({scheme: {claim: sorted(allowed, key=repr)
                                    for claim, allowed in pins.items()}
                           for scheme, pins in self.workloads.items()}
                          if self.workloads else None),
        }

    def evaluate(self, result: EarResult, *, failures_only: bool = False) -> list[Finding]:
        """Every check over the token's claims; the resource is released iff none failed.

        ``failures_only``: the same checks, but only the failed ones are listed (what a
        release needs: it refuses on, and reports, the failures alone).
        """
        c = result.verified_claims
        out: list[Finding] = []

        def check(code: str, fld: str, got: Any, want: Any, ok: bool,  # noqa: PLR0917
                  why: str) -> None:
            # An allow-list (a frozenset) is listed sorted, and sorted only when a finding is
            # made: a fleet's thousand measurements are not sorted for every release.
            if not ok:
                out.append(Finding(code, Outcome.FAIL, fld, got=got, want=_listed(want),
                                   message=why))
            elif not failures_only:
                out.append(Finding(code, Outcome.PASS, fld, got=got, want=_listed(want)))

        def skip(code: str, fld: str, why: str) -> None:
            if not failures_only:
                out.append(Finding(code, Outcome.SKIP, fld, message=why))

        tee = result.tee
        pinned = self.workloads or {}
        if tee not in _TEES and tee not in pinned:
            check("resource.tee.unsupported", "tee", tee, list(_TEES), False,
                  "token from a TEE this resource policy cannot evaluate")

        def other_tee(code: str, fld: str, owner: str, want: Any) -> None:
            # A field pinning another TEE's claim: the token cannot satisfy it. Fail closed.
            check(code, fld, f"<{tee} token>", want, False,
                  f"{fld} pins a {owner} claim; a {tee} token has none")

        status = result.status
        allowed = TIERS[1:TIERS.index(self.required_status) + 1]
        check("resource.status.insufficient", "ear.status", status, list(allowed),
              status in allowed, "the attestation result is not good enough for this resource")
        # The workload pin: measurements (SEV-SNP launch digest) and mrtd (Intel TDX).
        if self.measurements is not None and tee != "sevsnp":
            other_tee("resource.measurement.mismatch", "measurement", "sevsnp",
                      self.measurements)
        elif self.measurements is not None:
            got = c.get("measurement")
            check("resource.measurement.mismatch", "measurement", got, self.measurements,
                  got in self.measurements, "workload not allowed to read this resource")
        elif tee == "sevsnp" and not self.allow_any_workload and tee not in pinned:
            check("resource.measurement.mismatch", "measurement", c.get("measurement"),
                  "an SEV-SNP measurement pin", False,
                  "this resource pins no SEV-SNP workload (only mrtd)")
        else:
            skip("resource.measurement.mismatch", "measurement",
                 "allow_any_workload is true" if self.allow_any_workload
                 else "measurements is unset")
        if self.mrtd is not None and tee != "tdx":
            other_tee("resource.mrtd.mismatch", "mrtd", "tdx", self.mrtd)
        elif self.mrtd is not None:
            got = c.get("mrtd")
            check("resource.mrtd.mismatch", "mrtd", got, self.mrtd, got in self.mrtd,
                  "TD not allowed to read this resource")
        elif tee == "tdx" and not self.allow_any_workload and tee not in pinned:
            check("resource.mrtd.mismatch", "mrtd", c.get("mrtd"), "a TDX MRTD pin", False,
                  "this resource pins no TDX workload (only measurements)")
        else:
            skip("resource.mrtd.mismatch", "mrtd",
                 "allow_any_workload is true" if self.allow_any_workload else "mrtd is unset")
        if self.appraisal_policy_ids is None:
            skip("resource.appraisal_policy.not_allowed", "ear.appraisal-policy-id",
                 "appraisal_policy_ids is unset")
        else:
            got = result.submod.get("ear.appraisal-policy-id")
            check("resource.appraisal_policy.not_allowed", "ear.appraisal-policy-id", got,
                  self.appraisal_policy_ids, got in self.appraisal_policy_ids,
                  "appraised under a policy this resource does not accept")
        if tee == "sevsnp":
            svn = c.get("guest_svn")
            check("resource.guest_svn.below_minimum", "guest_svn", svn, self.min_guest_svn,
                  isinstance(svn, int) and svn >= self.min_guest_svn,
                  "guest SVN below the minimum")
        elif self.min_guest_svn:
            other_tee("resource.guest_svn.below_minimum", "guest_svn", "sevsnp",
                      self.min_guest_svn)
        else:
            skip("resource.guest_svn.below_minimum", "guest_svn",
                 f"min_guest_svn is 0 (a {tee} token has no guest SVN)")
        if tee == "tdx":
            attrs = c.get("td_attributes")
            debug: Any = (bool(int(attrs[:2], 16) & 1) if isinstance(attrs, str)
                          and len(attrs) >= 2 else None)
            fld = "td_attributes.debug"
        elif tee == "sevsnp":
            debug = c.get("guest_policy", {}).get("debug")
            fld = "guest_policy.debug"
        else:  # every other scheme: the common claim (veritee.schemes.COMMON_CLAIMS)
            debug = c.get("debug")
            fld = "debug"
        if self.allow_debug:
            skip("resource.debug", fld, "allow_debug is true")
        elif fld == "debug" and "debug" in c and c["debug"] is None:
            # COMMON_CLAIMS: None where the TEE has no debug state (a TPM, ...).
            skip("resource.debug", fld, f"a {tee} attester has no debug state")
        else:
            check("resource.debug", fld, debug, False, debug is False,
                  "debug guest: its memory is readable by the host")
        if self.host_data is None:
            skip("resource.host_data.mismatch", "host_data", "host_data is unset")
        elif tee != "sevsnp":
            other_tee("resource.host_data.mismatch", "host_data", "sevsnp", self.host_data)
        else:
            got = c.get("host_data")
            check("resource.host_data.mismatch", "host_data", got, self.host_data,
                  got == self.host_data, "host data differs")
        if self.chip_ids is None:
            skip("resource.chip_id.mismatch", "chip_id", "chip_ids is unset")
        elif tee != "sevsnp":
            other_tee("resource.chip_id.mismatch", "chip_id", "sevsnp", self.chip_ids)
        else:
            got = c.get("chip_id")
            check("resource.chip_id.mismatch", "chip_id", got, self.chip_ids,
                  got in self.chip_ids, "chip not allowed for this resource")
        self._evaluate_submods(result, check)
        return out

    def _evaluate_submods(self, result: EarResult, check: Any) -> None:
        """``workloads`` pins over the submodules of their scheme, and ``debug`` in every
        submodule besides the primary (a device that has the claim)."""
        names = list(result.submods)
        for scheme, pins in (self.workloads or {}).items():
            mine = [n for n in names if result.scheme_of(n) == scheme]
            if not mine:
                check("resource.workload.absent", f"submods.{scheme}",
                      [result.scheme_of(n) for n in names], scheme, False,
                      f"this resource pins {scheme} claims; the token has no {scheme} "
                      "attester")
            for name in mine:
                claims = result.submods[name].get("veritee.verified-claims") or {}
                for claim, allowed in sorted(pins.items()):
                    got = claims.get(claim) if isinstance(claims, dict) else None
                    ok = got is not None and not isinstance(got, dict | list) and \
                        _norm(got) in allowed
                    check("resource.claim.mismatch", f"{name}.{claim}", got,
                          sorted(allowed, key=repr), ok,
                          f"{scheme} {claim} not allowed to read this resource")
        for name in names[1:]:
            claims = result.submods[name].get("veritee.verified-claims") or {}
            debug = claims.get("debug") if isinstance(claims, dict) else None
            if isinstance(debug, bool) and not self.allow_debug:
                check("resource.debug", f"{name}.debug", debug, False, debug is False,
                      "debug attester: its state is readable by the host")
