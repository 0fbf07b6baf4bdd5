"""The audit chain stays one chain under concurrent appends from several stores (replicas)
and threads, on both databases: the head is read only once the chain's lock is held (on
PostgreSQL in the same round trip as taking it), so no two entries ever share a predecessor."""

from __future__ import annotations

import os
import threading

import pytest

from veritee.service.audit import verify_chain
from veritee.service.integrity import StateIntegrity
from veritee.service.storage import Store, open_store

_KEY = os.urandom(32)


def _store(url: str) -> Store:
    store = open_store(url)
    store.integrity = StateIntegrity(_KEY)
    return store


@pytest.mark.parametrize("replicas,threads,each", [(3, 4, 15)])
def test_concurrent_appends_make_one_chain(database_url: str, replicas: int, threads: int,
                                           each: int) -> None:
    stores = [_store(database_url) for _ in range(replicas)]
    errors: list[BaseException] = []

    def work(store: Store, n: int) -> None:
        try:
            for i in range(each):
                with store.transaction() as tx:
                    tx.audit_append("test", "ok", f"t{n}", {"i": i, "n": n}, "2026-12-05T00:00Z")
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(stores[k % replicas], k))
            for k in range(replicas * threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors
    with stores[0].transaction(write=False) as tx:
        rows = tx.audit_rows()
    report = verify_chain(rows, stores[0].integrity)
    assert report.ok, report.problem
    assert report.entries == replicas * threads * each
    assert sorted(r.seq for r in rows) == list(range(1, replicas * threads * each + 1))
    for store in stores:
        store.close()
