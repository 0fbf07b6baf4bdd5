"""The ``worker_threads`` setting: how many requests a worker runs in threads at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import anyio.to_thread
import pytest

from veritee.client import AttesterClient
from veritee.errors import ConfigError
from veritee.service.limits import ThreadBudget
from veritee.service.settings import Settings, settings_from_mapping

from _service_support import SECRET_A, Guests, Service, provision


def test_thread_budget_sets_the_limiter_of_every_loop() -> None:
    seen: list[float] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(anyio.to_thread.current_default_thread_limiter().total_tokens)

    budget = ThreadBudget(inner, threads=3)

    async def two_requests() -> None:
        await budget({"type": "http"}, None, None)
        await budget({"type": "http"}, None, None)

    asyncio.run(two_requests())
    asyncio.run(two_requests())  # a new event loop has a new default limiter: set it too
    assert seen == [3, 3, 3, 3]


def test_worker_threads_default_and_bounds() -> None:
    base = {"dev_mode": True, "emulated_machine_dir": "/nonexistent"}
    assert Settings().worker_threads == 40  # anyio's own default: unchanged unless set
    assert settings_from_mapping({**base, "worker_threads": 8}, env={}).worker_threads == 8
    for bad in (0, 257):
        with pytest.raises(ConfigError, match="worker_threads"):
            settings_from_mapping({**base, "worker_threads": bad}, env={})


def test_exchanges_run_with_a_small_thread_pool(service_factory: Callable[..., Service],
                                                database_url: str, guests: Guests) -> None:
    svc = service_factory(database_url, worker_threads=2)
    provision(svc, guests)
    results: list[bytes] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with AttesterClient(svc.url, guests.a, dev_mode=True) as client:
                results.append(client.fetch("apps/a/key"))
        except BaseException as exc:
            errors.append(exc)

    # More concurrent exchanges than threads: the rest wait for a thread, none fails.
    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results == [SECRET_A] * 6
