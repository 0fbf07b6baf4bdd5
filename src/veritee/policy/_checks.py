"""Small helpers every appraisal uses to record a check as a :class:`Finding`.

``finding`` and ``skipped`` are :func:`veritee.findings.check` and
:func:`veritee.findings.skipped`: one set of finding helpers for trust and policy alike.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from veritee.findings import NOT_SET, Finding, check, skipped

__all__ = ["NOT_SET", "contains", "finding", "flag", "skipped"]

finding = check
"""A PASS or FAIL finding; ``why`` explains a failure (:func:`veritee.findings.check`)."""


def contains(value: bytes, allowed: Iterable[bytes]) -> bool:
    """Constant-time membership: every entry is compared, whatever matches first."""
    found = False
    for candidate in allowed:
        found |= hmac.compare_digest(value, candidate)
    return found


def flag(code: str, fld: str, got: bool, want: bool, *, waived: str | None = None,
         why: str = "") -> Finding:
    """A yes/no property that must equal ``want``; ``waived`` (why the policy does not ask
    for it, e.g. "allow_debug is true") records the check as skipped instead."""
    if waived is not None:
        return skipped(code, fld, waived)
    return check(code, fld, got, want, got == want, why)
