"""Scale-out (issue 15, part 3): three replicas on one PostgreSQL behind HAProxy, one killed
with SIGKILL mid-traffic.

Clients that retry an exchange through the balancer lose none; no nonce is accepted twice
(checked in the audit log, and by replaying one accepted attestation to every replica
directly); the audit chain written by the three processes verifies.
"""

from __future__ import annotations

import base64
import threading
from collections import Counter
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.client import AttesterClient, evidence_for
from veritee.errors import VeriteeError
from veritee.service.audit import verify_chain
from veritee.service.storage import open_store

from _cluster import RESOURCE, SECRET, Cluster, haproxy_binary
from _service_support import pg_database, pg_schema_url  # noqa: F401 - fixture by name

CLIENTS = 4
PER_CLIENT = 12
KILL_AFTER = 12  # exchanges completed (over all clients) before the replica is killed


def _exchange(url: str, guest: Any, http: httpx.Client) -> tuple[bytes, int]:
    """One whole exchange, retried from a fresh challenge if the balancer or a replica
    fails it; returns the secret and how many attempts it took."""
    for attempt in range(1, 21):
        try:
            with AttesterClient(url, guest, http=http, dev_mode=True) as client:
                return client.fetch(RESOURCE), attempt
        except (httpx.HTTPError, VeriteeError):
            continue
    raise AssertionError("an exchange failed 20 times in a row")


@pytest.mark.skipif(haproxy_binary() is None, reason="haproxy not installed (.ci/run installs it)")
def test_replica_killed_mid_traffic_loses_no_exchange(pg_database: str) -> None:  # noqa: F811
    db = pg_schema_url(pg_database)
    with Cluster(db, 3) as cluster:
        done: list[tuple[bytes, int]] = []
        lock = threading.Lock()
        killed = threading.Event()
        errors: list[BaseException] = []

        def client() -> None:
            try:
                with httpx.Client(timeout=30) as http:
                    for _ in range(PER_CLIENT):
                        result = _exchange(cluster.url, cluster.guest, http)
                        with lock:
                            done.append(result)
                            if len(done) == KILL_AFTER and not killed.is_set():
                                killed.set()
                                cluster.kill(1)  # while the other clients are mid-exchange
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert killed.is_set() and cluster.replicas[1].poll() is not None
        assert len(done) == CLIENTS * PER_CLIENT  # no exchange lost
        assert all(secret == SECRET for secret, _ in done)

        # An accepted attestation replayed to every surviving replica directly is refused:
        # the nonce is single-use across processes (it lives in the shared database).
        with httpx.Client(timeout=30) as http:
            nonce_b64 = http.post(f"{cluster.url}/v1/challenge").json()["nonce"]
            body = evidence_for(cluster.guest, base64.urlsafe_b64decode(
                                    nonce_b64 + "=" * (-len(nonce_b64) % 4)),
                                ec.generate_private_key(ec.SECP384R1()))
            assert http.post(f"{cluster.url}/v1/attest", json=body).status_code == 200
            for i, url in enumerate(cluster.replica_urls):
                if i == 1:
                    continue  # the killed one
                replay = http.post(f"{url}/v1/attest", json=body)
                assert replay.status_code == 403, replay.text
                assert replay.json()["code"].startswith("nonce.")

        integrity = cluster.integrity
    store = open_store(db, migrate=False)
    store.integrity = integrity
    try:
        with store.transaction(write=False) as tx:
            rows = tx.audit_rows()
        report = verify_chain(rows, integrity)
        assert report.ok, report
        accepted = [r.detail["nonce"] for r in rows
                    if r.event == "attestation" and r.outcome == "accepted"]
        assert len(accepted) >= CLIENTS * PER_CLIENT + 1
        assert [n for n, c in Counter(accepted).items() if c > 1] == []  # no nonce twice
    finally:
        store.close()
