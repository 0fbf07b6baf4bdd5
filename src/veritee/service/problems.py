"""Errors -> HTTP: RFC 9457 problem+json bodies, from one table.

Route code raises; it never builds error responses. The broker (:mod:`veritee.service.core`)
raises *domain* errors: :class:`ServiceError` subclasses (``InvalidRequest``,
``NonceRejected``, ``AttestationRejected``, ``Unauthenticated``, ``Forbidden``, ``NotFound``,
``ResourceRefused``), each a :class:`~veritee.errors.VeriteeError` with a stable ``code``, or
the library's own families (``FormatError``, ``VerificationError``, ...). :data:`ERROR_STATUS`
is the one table from error class to HTTP status, subclasses first, exactly as the CLI maps
families to exit codes; :func:`problem_for` turns any veritee error into the :class:`Problem`
the handlers render. Nothing else chooses a status.
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

__all__ = [
    "ERROR_STATUS",
    "PROBLEM_TYPE_BASE",
    "AttestationRejected",
    "Forbidden",
    "InvalidRequest",
    "NonceRejected",
    "NotFound",
    "Problem",
    "ResourceRefused",
    "ServiceError",
    "Unauthenticated",
    "problem_body",
    "problem_for",
    "status_for",
]

PROBLEM_TYPE_BASE = "urn:veritee:problem:"


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


class ServiceError(Problem, VeriteeError):
    """A refusal by the broker: a stable ``code``, a ``detail`` for people, ``extra`` body
    members (``failures``, ``ear``) and response ``headers``; its HTTP status comes from
    :data:`ERROR_STATUS` by class, never from the raiser."""

    def __init__(self, code: str, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        status, title = status_for(self)
        super().__init__(status, code, detail, title=code if status < 500 else title,
                         headers=headers, **extra)


class InvalidRequest(ServiceError):  # noqa: N818 - a refusal, named as clients see it
    """The request is malformed (a field's type, size or value): ``request.invalid``."""

    def __init__(self, detail: str, *, code: str = "request.invalid", **extra: Any) -> None:
        super().__init__(code, detail, **extra)


class NonceRejected(ServiceError):  # noqa: N818 - a refusal, named as clients see it
    """The challenge nonce is unknown, used or expired (``nonce.<state>``)."""


class AttestationRejected(ServiceError):  # noqa: N818 - a refusal, named as clients see it
    """Verified evidence the appraisal policy refused (``attestation.rejected``)."""


class Unauthenticated(ServiceError):  # noqa: N818 - a refusal, named as clients see it
    """No, an unknown or an invalid credential (``token.*``, ``admin.unauthenticated``)."""


class Forbidden(ServiceError):  # noqa: N818 - a refusal, named as clients see it
    """An authenticated caller without the role this needs (``admin.forbidden``)."""


class NotFound(ServiceError):  # noqa: N818 - a refusal, named as clients see it
    """No such policy, reference value, resource or token (``<kind>.not_found``)."""


class ResourceRefused(ServiceError):  # noqa: N818 - a refusal, named as clients see it
    """A resource's own policy refused the token's claims (``resource.policy``)."""


# The one table from error class to HTTP status; order matters (subclasses first).
ERROR_STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (InvalidRequest, 400, "invalid request"),
    (NonceRejected, 403, "challenge refused"),
    (AttestationRejected, 403, "attestation rejected by policy"),
    (Unauthenticated, 401, "unauthenticated"),
    (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not found"),
    (ResourceRefused, 403, "resource policy refused"),
    (PolicyRejected, 403, "attestation rejected by policy"),
    (VerificationError, 403, "evidence failed verification"),
    (FormatError, 400, "malformed input"),
    (ConfigError, 400, "invalid input"),
    (CollateralError, 422, "collateral missing"),
    (SealingError, 500, "key material unavailable"),
)

# The code a library error family gets when it has none of its own (VerificationError has).
_FAMILY_CODE: tuple[tuple[type[VeriteeError], str], ...] = (
    (FormatError, "evidence.malformed"),
    (ConfigError, "request.invalid"),
    (CollateralError, "evidence.collateral"),
)


def status_for(error: BaseException) -> tuple[int, str]:
    """The HTTP status and title for an error, from :data:`ERROR_STATUS` (500 otherwise)."""
    for cls, status, title in ERROR_STATUS:
        if isinstance(error, cls):
            return status, title
    return 500, "internal error"


def problem_for(error: VeriteeError) -> Problem:
    """The :class:`Problem` for any veritee error: a :class:`ServiceError` is one already;
    a library family gets its status from :data:`ERROR_STATUS` and a stable code (its own
    ``code`` when it has one, e.g. ``sevsnp.report.signature``)."""
    if isinstance(error, Problem):
        return error
    status, title = status_for(error)
    code = getattr(error, "code", None)
    if not isinstance(code, str):
        code = next((c for cls, c in _FAMILY_CODE if isinstance(error, cls)), "internal")
    detail = str(error) if status < 500 else title  # never leak internals on 5xx
    return Problem(status, code, detail, title=title)


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
