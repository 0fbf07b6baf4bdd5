"""Request ids and one JSON log format for everything the service process prints.

* :class:`RequestContext` (outermost ASGI middleware) gives every HTTP request an id: the
  client's ``X-Request-ID`` when it is a plain token (8-64 of ``[A-Za-z0-9._-]``, so it cannot
  forge log lines), else a fresh one. The id is echoed in the ``X-Request-ID`` response
  header, is in every ``veritee.service`` log line written while the request runs
  (:func:`~veritee.service.observability.log_event` reads it) and in every problem body.
* :class:`AccessLog` (pure ASGI, inside the bounds checks) times every request and writes
  the latency metric and the ``http.request`` log line under the route's path
  (:func:`route_name`: also for FastAPI's own routes, ``/openapi.json`` and ``/docs``, which
  would otherwise be "unmatched").
* :func:`uvicorn_log_config` makes uvicorn's own loggers (start-up, errors, and the access
  log when it is on) print JSON lines too, in the same ``{"ts", "event", ...}`` shape.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from starlette.routing import Match

from veritee.service.observability import log_event

__all__ = ["AccessLog", "JsonLogFormatter", "RequestContext", "current_request_id",
           "route_name", "uvicorn_log_config", "worker_metrics_dir"]

_REQUEST_ID: ContextVar[str | None] = ContextVar("veritee_request_id", default=None)
_CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def current_request_id() -> str | None:
    """The id of the HTTP request being served, or None outside one."""
    return _REQUEST_ID.get()


class RequestContext:
    """ASGI middleware: the request id (context variable + response header)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers") or ():
            if name == b"x-request-id":
                given = value  # the last one wins, as dict(headers) had it
        text = given.decode("latin-1")
        rid = text if _CLIENT_ID.fullmatch(text) else uuid.uuid4().hex
        token = _REQUEST_ID.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() != b"x-request-id"]
                message["headers"] = [*headers, (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _REQUEST_ID.reset(token)


def route_name(scope: Scope) -> str:
    """The path template of the route that served ``scope`` (``"unmatched"`` if none).

    FastAPI records its API routes in ``scope["route"]`` while routing; the app's other routes
    (``/openapi.json``, ``/docs``) are matched here, only when asked, so the common request
    pays for one routing pass, not two.
    """
    route = scope.get("route")
    if route is None:
        router = getattr(scope.get("app"), "router", None)
        for candidate in getattr(router, "routes", ()):
            try:
                match, _ = candidate.matches(scope)
            except (KeyError, TypeError):
                continue
            if match is Match.FULL:
                route = scope["route"] = candidate
                break
    return str(getattr(route, "path", "unmatched"))


class AccessLog:
    """ASGI middleware: request latency by route (``histogram``) and one ``http.request`` log
    line per answered request (method, route, status, ms; never the query, headers or body).

    Pure ASGI rather than Starlette's ``BaseHTTPMiddleware``, which runs the rest of the app
    in a second task with a memory stream between them: a cost every request paid. A request
    whose handler raises is neither timed nor logged here, as before: the error handler
    outside logs it.
    """

    def __init__(self, app: ASGIApp, *, histogram: Any) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, send_status)
        elapsed = time.perf_counter() - t0
        name = route_name(scope)
        self.histogram.labels(name).observe(elapsed)
        # Paths of resources may be sensitive names but not secrets; query strings, headers
        # and bodies are never logged.
        log_event("http.request", method=scope["method"], route=name, status=status,
                  ms=round(elapsed * 1000, 2))


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``event``, ``message``
    (and ``request_id`` inside a request). A record whose message is already a JSON object
    (the service's own events) is passed through with ``level`` and ``logger`` added."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        doc: dict[str, Any] | None = None
        if message.startswith("{"):
            try:
                parsed = json.loads(message)
                doc = parsed if isinstance(parsed, dict) else None
            except ValueError:
                doc = None
        if doc is None:
            doc = {"ts": round(record.created or time.time(), 3), "event": record.name,
                   "message": message}
        doc.setdefault("level", record.levelname.lower())
        doc.setdefault("logger", record.name)
        rid = current_request_id()
        if rid is not None:
            doc.setdefault("request_id", rid)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, sort_keys=True)


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn: its loggers print JSON lines on stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json",
               "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonLogFormatter"}},
        "handlers": {"json": handler},
        "loggers": {name: {"handlers": ["json"], "level": level.upper(), "propagate": False}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
        # Anything else that logs (libraries, veritee.fs warnings) in the same format.
        "root": {"handlers": ["json"], "level": "WARNING"},
    }


@contextmanager
def worker_metrics_dir(workers: int) -> Iterator[None]:
    """With several workers and no ``PROMETHEUS_MULTIPROC_DIR``, give them a fresh private one
    (removed afterwards), so /metrics sums every worker's counters instead of showing the one
    worker that happened to answer. An operator's own directory is left as set."""
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    directory = tempfile.mkdtemp(prefix="veritee-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory  # read by each spawned worker
    try:
        yield
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        shutil.rmtree(directory, ignore_errors=True)
