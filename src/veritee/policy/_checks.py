"""Small helpers every appraisal uses to record a check as a :class:`Finding`.

``finding`` and ``skipped`` are :func:`veritee.findings.check` and
:func:`veritee.findings.skipped`: one set of finding helpers for trust and policy alike.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from veritee.findings import NOT_SET, check, skipped

__all__ = ["NOT_SET", "contains", "finding", "skipped"]

finding = check
"""A PASS or FAIL finding; ``why`` explains a failure (:func:`veritee.findings.check`)."""


def contains(value: bytes, allowed: Iterable[bytes]) -> bool:
    """Constant-time membership: every entry is compared, whatever matches first."""
    found = False
    for candidate in allowed:
        found |= hmac.compare_digest(value, candidate)
    return found
