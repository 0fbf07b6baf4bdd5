"""Helpers the schemes share: readers of an appraisal's findings (for each scheme's own AR4SI
mapping) and the reading of root anchors (pins or certificates).

Each scheme decides what its findings mean for the AR4SI trustworthiness vector
(draft-ietf-rats-ar4si section 2.3); the tier values are the constants of
:mod:`veritee.results`. ``instance-identity`` is not set here: :mod:`veritee.attest` derives it
from its generic binding check (:func:`veritee.results.binding_identity`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cryptography import x509

from veritee.errors import ConfigError
from veritee.findings import Finding, Outcome

__all__ = ["failed", "passed", "root_anchors"]


def failed(findings: Iterable[Finding], *prefixes: str) -> bool:
    """True when a finding whose code starts with one of ``prefixes`` failed."""
    return any(f.outcome is Outcome.FAIL and f.code.startswith(prefixes) for f in findings)


def passed(findings: Iterable[Finding], *prefixes: str) -> bool:
    """True when a finding whose code starts with one of ``prefixes`` ran and passed."""
    return any(f.outcome is Outcome.PASS and f.code.startswith(prefixes) for f in findings)


def root_anchors(value: Any, vendor: str, default: str) -> list[str | x509.Certificate] | None:
    """A vendor's anchors as ``trusted_roots``: ``None`` (the production pin, ``default``
    names it in errors), or SHA-256 hex pins and/or root certificates (one or several)."""
    if value is None:
        return None
    if isinstance(value, str | x509.Certificate):
        return [value]
    if isinstance(value, Iterable):
        roots = list(value)
        if roots and all(isinstance(r, str | x509.Certificate) for r in roots):
            return roots
    raise ConfigError(f"anchors[{vendor!r}]: want SHA-256 hex pins or root certificates (or "
                      f"None for {default}), got {type(value).__name__}")
