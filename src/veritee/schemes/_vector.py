"""Small readers of an appraisal's findings, for the schemes' own AR4SI mappings.

Each scheme decides what its findings mean for the AR4SI trustworthiness vector
(draft-ietf-rats-ar4si section 2.3); the tier values are the constants of
:mod:`veritee.results`. ``instance-identity`` is not set here: :mod:`veritee.attest` derives it
from its generic binding check (:func:`veritee.results.binding_identity`).
"""

from __future__ import annotations

from collections.abc import Iterable

from veritee.findings import Finding, Outcome

__all__ = ["failed", "passed"]


def failed(findings: Iterable[Finding], *prefixes: str) -> bool:
    """True when a finding whose code starts with one of ``prefixes`` failed."""
    return any(f.outcome is Outcome.FAIL and f.code.startswith(prefixes) for f in findings)


def passed(findings: Iterable[Finding], *prefixes: str) -> bool:
    """True when a finding whose code starts with one of ``prefixes`` ran and passed."""
    return any(f.outcome is Outcome.PASS and f.code.startswith(prefixes) for f in findings)
