"""L3: appraisal. Verified evidence + a policy -> an :class:`Appraisal` listing every finding.

A policy is data with secure defaults. Appraising never stops at the first failure: every
check runs and is recorded as a :class:`Finding` with a stable ``code`` (for example
``sevsnp.measurement.mismatch``), so a relying party sees the whole picture at once. A check
whose policy value is ``None`` is not run and is listed under :attr:`Appraisal.skipped`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

from veritee.findings import Finding, Outcome, jsonable

__all__ = ["Appraisal", "Finding", "Outcome"]


@dataclass(frozen=True)
class Appraisal:
    """The result of appraising verified evidence against a policy.

    ``verification`` holds the findings of the cryptographic verification that preceded the
    appraisal (signature, chain, revocation), ``findings`` those of the policy, and ``claims``
    the verified claims a relying party may use (measurement, TCB, ...). ``required_claims``
    names the AR4SI trustworthiness claims the policy requires: an EAR whose vector has no
    claim ("none") for one of them is not ``affirming`` (:func:`veritee.results.ear_status`).
    """

    tee: str
    policy_id: str
    findings: tuple[Finding, ...]
    verification: tuple[Finding, ...] = ()
    claims: dict[str, Any] = field(default_factory=dict)
    required_claims: frozenset[str] = frozenset()
    vector: dict[str, int] | None = None
    """The AR4SI trustworthiness vector the scheme computed (``None``: not computed)."""

    @property
    def accepted(self) -> bool:
        """True when no verification or policy check failed."""
        return not self.failures

    def evolve(self, **changes: Any) -> Appraisal:
        """``dataclasses.replace(self, **changes)`` for the fields given, without its per-call
        field introspection (several per attestation). Cached properties are not carried
        over: they are recomputed from the new fields."""
        unknown = changes.keys() - _APPRAISAL_FIELDS
        if unknown:
            raise TypeError(f"Appraisal.evolve: unknown field(s) {sorted(unknown)}")
        new = object.__new__(Appraisal)
        own = self.__dict__
        new.__dict__.update({name: own[name] for name in _APPRAISAL_FIELDS}, **changes)
        return new

    @cached_property
    def failures(self) -> tuple[Finding, ...]:
        """Every failed check (computed once: an appraisal is immutable)."""
        return tuple(f for f in (*self.verification, *self.findings)
                     if f.outcome is Outcome.FAIL)

    @property
    def skipped(self) -> tuple[Finding, ...]:
        """Checks the policy did not ask for."""
        return tuple(f for f in self.findings if f.outcome is Outcome.SKIP)

    def codes(self) -> list[str]:
        """Codes of the failed checks, in order."""
        return [f.code for f in self.failures]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "tee": self.tee,
            "policy_id": self.policy_id,
            "accepted": self.accepted,
            "verification": [f.to_dict() for f in self.verification],
            "findings": [f.to_dict() for f in self.findings],
            "claims": jsonable(self.claims),
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """Render as JSON."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def to_text(self) -> str:
        """Render for a human: every check with its outcome, then the verdict."""
        lines = [f"appraisal of {self.tee} evidence under policy {self.policy_id!r}"]
        if self.verification:
            lines.append("verification:")
            lines += [f"  {f}" for f in self.verification]
        lines.append("policy:")
        lines += [f"  {f}" for f in self.findings]
        verdict = "ACCEPTED" if self.accepted else f"REJECTED ({len(self.failures)} failed)"
        lines.append(f"verdict: {verdict}")
        return "\n".join(lines)

    def with_verification(self, checks: Iterable[Finding]) -> Appraisal:
        """A copy with ``checks`` recorded as the verification trace."""
        return self.evolve(verification=tuple(checks))


_APPRAISAL_FIELDS = frozenset(f.name for f in fields(Appraisal))
