"""Findings: one check and its outcome, shared by verification (trust) and appraisal (policy).

Each :class:`Finding` has a stable ``code`` naming the check (``sevsnp.report.signature``,
``sevsnp.measurement.mismatch``); ``outcome`` says whether it passed, failed or was skipped.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["NOT_SET", "Finding", "Outcome", "check", "failed", "jsonable", "passed", "skipped"]

NOT_SET = "no value in the policy"
"""Why a policy check was skipped when the policy gives no value for it."""


class Outcome(enum.StrEnum):
    """The outcome of one check."""

    PASS = "pass"  # noqa: S105 - an outcome, not a password
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, init=False)
class Finding:
    """One check and its outcome, in the form *field, got, want*.

    ``code`` is stable across releases (tests pin it): ``<tee>.<field>.<what>``.
    """

    code: str
    outcome: Outcome
    field: str
    got: Any = None
    want: Any = None
    message: str = ""

    def __init__(self, code: str, outcome: Outcome, field: str,  # noqa: PLR0917 (the
                 got: Any = None, want: Any = None,  # dataclass's own positional order)
                 message: str = "") -> None:
        # The generated frozen __init__ sets each field through object.__setattr__; an
        # attestation makes a few dozen findings, so they are set in one step.
        self.__dict__.update(code=code, outcome=outcome, field=field, got=got, want=want,
                             message=message)

    @property
    def passed(self) -> bool:
        """True when the check ran and passed."""
        return self.outcome is Outcome.PASS

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"code": self.code, "outcome": self.outcome.value, "field": self.field,
                "got": jsonable(self.got), "want": jsonable(self.want),
                "message": self.message}

    def __str__(self) -> str:
        mark = {Outcome.PASS: "ok  ", Outcome.FAIL: "FAIL", Outcome.SKIP: "skip"}[self.outcome]
        text = f"[{mark}] {self.code}: {self.field}"
        if self.outcome is Outcome.FAIL:
            text += f", got {_fmt(self.got)}, want {_fmt(self.want)}"
        elif self.outcome is Outcome.PASS and self.got is not None:
            text += f" = {_fmt(self.got)}"
        if self.message:
            text += f" ({self.message})"
        return text


def passed(code: str, fld: str, got: Any = None, want: Any = None,
           message: str = "") -> Finding:
    """A check that ran and passed; ``code`` names the check, not a failure."""
    return Finding(code, Outcome.PASS, fld, got, want, message)


def failed(code: str, fld: str, got: Any = None, want: Any = None,
           message: str = "") -> Finding:
    """A check that ran and failed; ``message`` says why."""
    return Finding(code, Outcome.FAIL, fld, got, want, message)


def skipped(code: str, fld: str, why: str = NOT_SET, *, got: Any = None) -> Finding:
    """A check that did not run; ``why`` says why (recorded as ``not checked: why``)."""
    return Finding(code, Outcome.SKIP, fld, got, message=f"not checked: {why}")


def check(code: str, fld: str, got: Any, want: Any, ok: bool,  # noqa: PLR0917 - a table row
          why: str = "") -> Finding:
    """PASS when ``ok``, else FAIL with ``why``: one appraisal row."""
    return Finding(code, Outcome.PASS if ok else Outcome.FAIL, fld, got, want,
                   "" if ok else why)


_PLAIN = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    """``value`` as JSON-friendly data (bytes as hex, enums by value, sets sorted)."""
    kind = type(value)
    if kind in _PLAIN:  # most values: exact types only (an IntEnum is not an int here)
        return value
    if kind is dict:
        # Plain members copied without a call each (an EAR's claims are mostly plain).
        plain = _PLAIN
        return {k if type(k) is str else str(k): v if type(v) in plain else jsonable(v)
                for k, v in value.items()}
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _fmt(value: Any) -> str:
    v = jsonable(value)
    text = v if isinstance(v, str) else json.dumps(v)
    return text if len(text) <= 100 else text[:100] + "..."
