"""FastAPI dependencies: the broker of the running app and the callers' bearer credentials.

The one place that reads ``request.app.state`` and the ``Authorization`` header, so routes
stay declarations.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from veritee.service.core import Broker

__all__ = ["AdminActor", "BrokerDep", "ReaderActor", "bearer", "get_broker"]


def get_broker(request: Request) -> Broker:
    """The :class:`Broker` built by ``create_app``."""
    broker: Broker = request.app.state.broker
    return broker


async def _broker(request: Request) -> Broker:
    # A coroutine, so FastAPI resolves it on the event loop: a plain function dependency is
    # run in the thread pool, a thread hand-off per request for one attribute read.
    return get_broker(request)


def bearer(request: Request) -> str | None:
    """The bearer credential of ``Authorization: Bearer <x>``, or None."""
    value = request.headers.get("authorization", "")
    scheme, _, cred = value.partition(" ")
    if scheme.lower() != "bearer" or not cred.strip():
        return None
    return cred.strip()


def _reader(request: Request) -> str:
    return get_broker(request).authenticate(bearer(request), need="reader")


def _admin(request: Request) -> str:
    return get_broker(request).authenticate(bearer(request), need="admin")


BrokerDep = Annotated[Broker, Depends(_broker)]
ReaderActor = Annotated[str, Depends(_reader)]
AdminActor = Annotated[str, Depends(_admin)]
