"""Small helpers every appraisal uses to record a check as a :class:`Finding`."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

from veritee.findings import Finding, Outcome

__all__ = ["contains", "finding", "skipped"]

NOT_SET = "no value in the policy"


def finding(code: str, fld: str, got: Any, want: Any, ok: bool,  # noqa: PLR0917 - a table row
            why: str = "") -> Finding:
    """A PASS or FAIL finding; ``why`` explains a failure."""
    return Finding(code, Outcome.PASS if ok else Outcome.FAIL, fld, got, want,
                   "" if ok else why)


def skipped(code: str, fld: str, why: str = NOT_SET) -> Finding:
    """A check the policy did not ask for."""
    return Finding(code, Outcome.SKIP, fld, message=f"not checked: {why}")


def contains(value: bytes, allowed: Iterable[bytes]) -> bool:
    """Constant-time membership: every entry is compared, whatever matches first."""
    found = False
    for candidate in allowed:
        found |= hmac.compare_digest(value, candidate)
    return found
