"""Errors -> HTTP: RFC 9457 problem+json bodies, from one table.

Route code raises; it never builds error responses. :class:`Problem` is the service's own
family (refusals with a stable ``code``), and :data:`ERROR_STATUS` maps each veritee error
family to one status, subclasses first, exactly as the CLI maps them to exit codes.
"""

from __future__ import annotations

from typing import Any

from veritee.errors import (
    CollateralError,
    ConfigError,
    FormatError,
    PolicyRejected,
    SealingError,
    VerificationError,
    VeriteeError,
)

__all__ = ["ERROR_STATUS", "PROBLEM_TYPE_BASE", "Problem", "problem_body", "status_for"]

PROBLEM_TYPE_BASE = "urn:veritee:problem:"

# One table from error family to HTTP status; order matters (subclasses first).
ERROR_STATUS: tuple[tuple[type[VeriteeError], int, str], ...] = (
    (PolicyRejected, 403, "attestation rejected by policy"),
    (VerificationError, 403, "evidence failed verification"),
    (FormatError, 400, "malformed input"),
    (ConfigError, 400, "invalid input"),
    (CollateralError, 422, "collateral missing"),
    (SealingError, 500, "key material unavailable"),
)


class Problem(Exception):  # noqa: N818 - an RFC 9457 "problem", the name clients see
    """A refusal or client error with an HTTP status, a stable code and a detail text.

    ``extra`` members are added to the problem+json body (e.g. ``failures``).
    """

    def __init__(self, status: int, code: str, detail: str, *, title: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.title = title or code
        self.headers = headers or {}
        self.extra = extra


def status_for(error: VeriteeError) -> tuple[int, str]:
    """The HTTP status and title for a veritee error family."""
    for cls, status, title in ERROR_STATUS:
        if isinstance(error, cls):
            return status, title
    return 500, "internal error"


def problem_body(status: int, code: str, title: str, detail: str, instance: str,
                 **extra: Any) -> dict[str, Any]:
    """An RFC 9457 body; ``code`` also becomes the ``type`` URN."""
    body: dict[str, Any] = {"type": PROBLEM_TYPE_BASE + code, "title": title, "status": status,
                            "detail": detail, "instance": instance, "code": code}
    body.update(extra)
    from veritee.service._reqlog import current_request_id

    rid = current_request_id()  # the id in the logs and the X-Request-ID header
    if rid is not None:
        body.setdefault("request_id", rid)
    return body
