"""Bounded requests: body, header and path limits applied before anything else runs.

:class:`BoundedRequest` is a pure ASGI middleware placed outermost, so it runs before routing,
before authentication and before any body parsing. It reads the request body itself, chunk by
chunk as the server delivers it (``Content-Length`` or ``Transfer-Encoding: chunked`` alike),
and answers 413 the moment the total passes the limit, without reading the rest: a client can
make a worker hold at most ``max_body`` bytes, whether or not it has a token (issue 9 finding
4: a 200 MB chunked body used to be read whole). The buffered body is then replayed to the
application unchanged.

Headers (total bytes; RFC 9110 leaves the limit to the server, 431 is RFC 6585 section 5) and
the path (bytes, and no control characters or NUL: they end in a database as a 500 on
PostgreSQL) are capped the same way. Every refusal is an RFC 9457 problem+json.

:class:`ThreadBudget` sets how many requests a worker runs at once in its thread pool (the
routes that touch the database are plain functions, which Starlette runs in anyio's worker
threads): setting ``worker_threads``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from veritee.service.problems import PROBLEM_TYPE_BASE

__all__ = ["MAX_BODY", "MAX_HEADER_BYTES", "MAX_PATH_BYTES", "BoundedRequest", "ThreadBudget"]

MAX_BODY = 2 << 20  # 2 MiB: a 1 MiB secret in base64 plus slack; evidence is ~1-10 KiB
MAX_HEADER_BYTES = 16 << 10  # all header names and values together (an SEV-SNP EAR is
#                              ~6 KiB, each device submod of a composite EAR ~3 KiB more)
MAX_PATH_BYTES = 2048  # the raw (percent-encoded) path; resource paths are capped at 1024

Scope = dict[str, Any]
Message = dict[str, Any]


def _problem(status: int, code: str, detail: str, instance: str) -> bytes:
    return json.dumps({"type": PROBLEM_TYPE_BASE + code, "title": code, "status": status,
                       "detail": detail, "instance": instance[:200], "code": code}).encode()


class BoundedRequest:
    """ASGI middleware: refuse oversized bodies (while streaming), headers and paths."""

    def __init__(self, app: Any, *, max_body: int = MAX_BODY,
                 max_header_bytes: int = MAX_HEADER_BYTES,
                 max_path_bytes: int = MAX_PATH_BYTES) -> None:
        self.app = app
        self.max_body = max_body
        self.max_header_bytes = max_header_bytes
        self.max_path_bytes = max_path_bytes
        self.audited_prefix = "/v1/resources/"

    async def _drain(self, receive: Any) -> None:
        """Read (and drop) a body of at most ``max_body`` bytes before refusing the request
        for its path or headers: closing a socket with unread data makes the kernel answer
        with a reset, and the client may then never see the problem."""
        total = 0
        while total <= self.max_body:
            message = await receive()
            if message["type"] != "http.request":
                return
            total += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _refuse(self, send: Any, status: int, code: str, detail: str,
                      path: str) -> None:
        body = _problem(status, code, detail, path)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or scope.get("path", "").encode("utf-8",
                                                                               "replace")
        path = str(scope.get("path", ""))
        shown = raw_path.decode("latin-1")
        if len(raw_path) > self.max_path_bytes:
            await self._drain(receive)
            await self._refuse(send, 414, "request.uri_too_long",
                               f"path: want at most {self.max_path_bytes} bytes", shown)
            return
        # /v1/resources/ paths are checked by the broker instead, so the refusal is audited.
        if not path.startswith(self.audited_prefix) and any(
                ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF
                or c == "\ufffd" for c in path):
            await self._drain(receive)
            await self._refuse(send, 400, "request.invalid",
                               "path: control characters, NUL or invalid UTF-8 are not allowed",
                               shown)
            return
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        if sum(len(k) + len(v) for k, v in headers) > self.max_header_bytes:
            await self._drain(receive)
            await self._refuse(send, 431, "request.headers_too_large",
                               f"headers: want at most {self.max_header_bytes} bytes in all",
                               shown)
            return
        for name, value in headers:
            if name == b"content-length" and (not value.isdigit()
                                              or int(value) > self.max_body):
                await self._refuse(send, 413, "request.too_large",
                                   f"body: want at most {self.max_body} bytes", shown)
                return
        # Read the body here, bounded, before the application (and its auth) sees anything.
        chunks: list[bytes] = []
        total = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body:
                await self._refuse(send, 413, "request.too_large",
                                   f"body: want at most {self.max_body} bytes", shown)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)


class ThreadBudget:
    """ASGI middleware: at most ``threads`` requests of this worker run in threads at once.

    anyio's default limiter (40) is per event loop and exists only once a loop runs, so it is
    set at the first request each loop serves (a lifespan hook would not run where the app is
    served with ``lifespan="off"``). Fewer threads mean fewer of them competing for the GIL:
    less CPU per request and a shorter hold of the audit chain's database lock, whose holder
    waits for the GIL between its statements (docs/operations.md, "Scale-out figures").
    """

    def __init__(self, app: Any, *, threads: int) -> None:
        self.app = app
        self.threads = threads
        self._loop: object = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = self.threads
            self._loop = loop
        await self.app(scope, receive, send)
