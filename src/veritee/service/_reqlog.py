"""Request ids and one JSON log format for everything the service process prints.

* :class:`RequestContext` (outermost ASGI middleware) gives every HTTP request an id: the
  client's ``X-Request-ID`` when it is a plain token (8-64 of ``[A-Za-z0-9._-]``, so it cannot
  forge log lines), else a fresh one. The id is echoed in the ``X-Request-ID`` response
  header, is in every ``veritee.service`` log line written while the request runs
  (:func:`~veritee.service.observability.log_event` reads it) and in every problem body.
  It also names the route of requests FastAPI's own routes serve (``/openapi.json``,
  ``/docs``), which the latency metric and the request log otherwise call "unmatched".
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

__all__ = ["JsonLogFormatter", "RequestContext", "current_request_id", "uvicorn_log_config",
           "worker_metrics_dir"]

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
    """ASGI middleware: request id (context variable + response header) and route naming."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or ()).get(b"x-request-id", b"").decode("latin-1")
        rid = given if _CLIENT_ID.fullmatch(given) else uuid.uuid4().hex
        token = _REQUEST_ID.set(rid)
        self._name_route(scope)

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

    @staticmethod
    def _name_route(scope: Scope) -> None:
        # FastAPI sets scope["route"] for its API routes only; match the app's other routes
        # (openapi.json, docs) here so they are logged and measured under their path.
        app = scope.get("app")
        router = getattr(app, "router", None)
        for route in getattr(router, "routes", ()):
            try:
                match, _ = route.matches(scope)
            except (KeyError, TypeError):
                continue
            if match is Match.FULL:
                scope.setdefault("route", route)
                return


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
