"""Bounded input and total error mapping (issue 9 findings 4, 5 and 6).

Over real HTTP on loopback: oversized bodies are refused while they stream, before any
authentication; odd input gets a 4xx problem+json, never a 500 or a reset; a database that
stops answering gives 503 ``service.unavailable`` without infrastructure detail, and the
service recovers by itself.
"""

from __future__ import annotations

import base64
import json
import socket
import sqlite3
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec

from veritee.client import AttesterClient, evidence_for
from veritee.results import verify_ear

from _service_support import Guests, Service, provision

PROBLEM = "application/problem+json"


def _raw(svc: Service, head: bytes, chunks: list[bytes] | None = None,
         finish: bool = False) -> tuple[int, bytes]:
    """Send a request head and (chunked) body pieces on one socket; return the answer.

    With ``finish`` False the terminating zero-length chunk is never sent: an answer then
    proves the server decided without waiting for (or reading) the rest of the body.
    """
    port = urlsplit(svc.url).port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(head)
        for chunk in chunks or []:
            try:
                s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except OSError:
                break  # the server answered and closed while we were still sending
        if finish:
            s.sendall(b"0\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.find(b"\r\n\r\n") + 4 + 10:
            part = s.recv(65536)
            if not part:
                break
            data += part
    status = int(data.split(b" ", 2)[1])
    return status, data


def _chunked_head(method: str, path: str, extra: str = "") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\n{extra}\r\n").encode()


def test_chunked_body_over_limit_refused_before_read(service: Service) -> None:
    """Finding 4: a chunked body past 2 MiB is refused as it streams; the rest is never read."""
    chunks = [b"x" * 65536] * 40  # 2.5 MiB offered, no terminating chunk
    status, data = _raw(service, _chunked_head("POST", "/v1/attest"), chunks)
    assert status == 413 and PROBLEM.encode() in data and b"request.too_large" in data


def test_chunked_admin_body_refused_before_authentication(service: Service) -> None:
    """Finding 4: no token, a large chunked PUT: 413 (the body limit), not a 401 after
    reading it all."""
    chunks = [b"x" * 65536] * 40
    status, data = _raw(service, _chunked_head("PUT", "/v1/admin/resources/x"), chunks)
    assert status == 413 and b"request.too_large" in data


def test_small_chunked_body_still_works(service: Service) -> None:
    status, data = _raw(service, _chunked_head("PUT", "/v1/admin/resources/x"),
                        [b'{"policy": {}}'], finish=True)
    assert status == 401 and b"admin.unauthenticated" in data


def test_declared_length_over_limit_refused_unread(service: Service) -> None:
    head = (b"POST /v1/attest HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 300000000\r\n"
            b"Content-Type: application/json\r\n\r\n")
    status, data = _raw(service, head)
    assert status == 413 and PROBLEM.encode() in data


def test_oversized_headers_refused_as_problem(service: Service) -> None:
    r = service.http.get(f"{service.url}/v1/jwks", headers={"X-Pad": "a" * 20000})
    assert r.status_code == 431 and r.headers["content-type"] == PROBLEM


def test_long_path_refused_and_not_stored(service: Service) -> None:
    """Finding 5: a 60,000-character resource path was stored."""
    path = "a" * 60000
    r = service.http.put(f"{service.url}/v1/admin/resources/{path}",
                         headers=service.admin_headers(),
                         json={"secret": "eA==", "policy": {"allow_any_workload": True}})
    assert r.status_code == 414 and r.headers["content-type"] == PROBLEM
    r = service.http.put(f"{service.url}/v1/admin/resources/{'b' * 1500}",
                         headers=service.admin_headers(),
                         json={"secret": "eA==", "policy": {"allow_any_workload": True}})
    assert r.status_code == 400 and "1024" in r.json()["detail"]
    with service.store.transaction(write=False) as tx:
        assert all(len(p) <= 1024 for p, _, _ in tx.resource_list())


def test_nul_in_resource_path_refused_and_audited(service: Service) -> None:
    """Finding 5: GET /v1/resources/a%00b was a 500 on PostgreSQL and left no audit entry."""
    r = service.http.get(f"{service.url}/v1/resources/a%00b")
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM
    last = service.refusals()[-1]
    assert last.event == "release" and last.detail["code"] == "request.invalid"
    assert last.subject.startswith("resource-invalid:")


def test_nul_in_admin_path_parameters_refused(service: Service) -> None:
    for path in ("/v1/admin/policies/a%00b", "/v1/admin/reference-values/a%01",
                 "/v1/admin/tokens/x%00"):
        for method in ("GET", "PUT", "DELETE"):
            r = service.http.request(method, f"{service.url}{path}",
                                     headers=service.admin_headers(), json={})
            assert 400 <= r.status_code < 500 and r.headers["content-type"] == PROBLEM, r.text


def test_bad_token_names_refused(service: Service) -> None:
    """Finding 5: a lone surrogate was a 500; a number silently became a string."""
    for name in ("\ud800", 12345, "", "x" * 101, "a\x00b", None):
        body = json.dumps({"name": name, "role": "reader"})  # keeps \ud800 escaped
        r = service.http.post(f"{service.url}/v1/admin/tokens", content=body,
                              headers={**service.admin_headers(),
                                       "Content-Type": "application/json"})
        assert r.status_code == 400 and r.headers["content-type"] == PROBLEM, (name, r.text)
    with service.store.transaction(write=False) as tx:
        assert [t["name"] for t in tx.token_list()] == ["test admin"]


def test_unhashable_curve_in_runtime_key_refused(service: Service, guests: Guests) -> None:
    """Finding 5: runtime_data.key.crv as a list raised TypeError (unauthenticated)."""
    nonce = base64.urlsafe_b64decode(service.http.post(
        f"{service.url}/v1/challenge").json()["nonce"] + "==")
    body = evidence_for(guests.a, nonce, ec.generate_private_key(ec.SECP384R1()))
    body["runtime_data"]["key"]["crv"] = ["P-384"]
    r = service.http.post(f"{service.url}/v1/attest", json=body)
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM


def test_huge_audit_cursor_refused(service: Service) -> None:
    """Finding 5: after=9223372036854775808 overflowed SQLite's integer."""
    r = service.http.get(f"{service.url}/v1/admin/audit?after=9223372036854775808",
                         headers=service.admin_headers())
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM


def _sub(claims: dict[str, Any]) -> dict[str, Any]:
    sub: dict[str, Any] = next(iter(claims["submods"].values()))
    return sub


_MALFORMED: dict[str, Callable[[dict[str, Any]], None]] = {
    "cnf-oct": lambda c: c.update(cnf={"jwk": {"kty": "oct", "k": "AAAA"}}),
    "cnf-string": lambda c: c.update(cnf={"jwk": "a string"}),
    "cnf-not-object": lambda c: c.update(cnf="not an object"),
    "claims-list": lambda c: _sub(c).update({"veritee.verified-claims": ["a", "list"]}),
    "guest-policy-null": lambda c: _sub(c)["veritee.verified-claims"].update(
        guest_policy=None),
    "measurement-list": lambda c: _sub(c)["veritee.verified-claims"].update(measurement=["x"]),
}


def test_signed_ear_with_malformed_claims_refused(service: Service, guests: Guests) -> None:
    """Finding 5: correctly signed EARs with malformed claims were 500s."""
    import copy

    from veritee.results import sign_ear

    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        passport = client.attest()
    jwks = service.http.get(f"{service.url}/v1/jwks").json()
    genuine = dict(verify_ear(passport.token, jwks).claims)
    key = service.app.state.broker.signing_key
    for name, edit in _MALFORMED.items():
        claims = copy.deepcopy(genuine)
        edit(claims)
        token = sign_ear(claims, key.private_key, kid=key.kid)
        r = service.http.get(f"{service.url}/v1/resources/apps/a/key",
                             headers={"Authorization": f"Bearer {token}"})
        assert r.status_code in (401, 403), (name, r.text)
        assert r.headers["content-type"] == PROBLEM


def test_large_bearer_token_answered_not_reset(service: Service) -> None:
    """Finding 5: a large bearer token reset the connection; within the server's own request
    head limit it is now a 431 problem."""
    r = service.http.get(f"{service.url}/v1/resources/apps/a/key",
                         headers={"Authorization": "Bearer " + "a" * 20000})
    assert r.status_code == 431 and r.headers["content-type"] == PROBLEM


# -- database outages ---------------------------------------------------------------------

def _no_infra(text: str) -> None:
    for leak in ("5432", "127.0.0.1", "psycopg", "sqlite", "OperationalError", "connection"):
        assert leak not in text, f"{leak!r} leaked: {text}"


def test_sqlite_locked_past_the_timeout_is_503(service_factory: Callable[..., Service],
                                               tmp_path: Any, guests: Guests) -> None:
    url = f"sqlite:///{tmp_path}/locked.db"
    svc = service_factory(url, db_statement_timeout_ms=300)
    provision(svc, guests)
    other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        r = svc.http.post(f"{svc.url}/v1/attest", json=_fresh_evidence(svc, guests))
        assert r.status_code == 503 and r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == "service.unavailable"
        _no_infra(r.text)
    finally:
        other.execute("ROLLBACK")
        other.close()
    r = svc.http.post(f"{svc.url}/v1/attest", json=_fresh_evidence(svc, guests))
    assert r.status_code == 200, r.text  # recovered


def _fresh_evidence(svc: Service, guests: Guests) -> dict[str, Any]:
    """Evidence for a fresh challenge (which needs no database: the nonce carries its tag)."""
    r = svc.http.post(f"{svc.url}/v1/challenge")
    assert r.status_code == 200, r.text
    nonce = base64.urlsafe_b64decode(r.json()["nonce"] + "==")
    return evidence_for(guests.a, nonce, ec.generate_private_key(ec.SECP384R1()))


def test_postgresql_outage_is_503_and_recovers(service_factory: Callable[..., Service],
                                               pg_database: str, guests: Guests) -> None:
    """Finding 6: a PostgreSQL outage gave 400 ConfigError with host and port, and 500s."""
    import psycopg

    from _service_support import PG_ADMIN_URL, pg_schema_url

    svc = service_factory(pg_schema_url(pg_database))
    provision(svc, guests)
    name = pg_database.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                      "datname = %s AND pid <> pg_backend_pid()", (name,))
        try:
            for route in ("/v1/attest", "/readyz"):
                r = (svc.http.post(f"{svc.url}{route}", json=_fresh_evidence(svc, guests))
                     if route == "/v1/attest" else svc.http.get(f"{svc.url}{route}"))
                assert r.status_code == 503 and r.headers["content-type"] == PROBLEM
                assert r.json()["code"] == "service.unavailable"
                _no_infra(r.text)
            r = svc.http.get(f"{svc.url}/v1/resources/apps/a/key",
                             headers={"Authorization": "Bearer x"})
            assert r.status_code == 503
        finally:
            admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
    with AttesterClient(svc.url, guests.a, dev_mode=True) as client:
        assert client.fetch("apps/a/key")  # recovered without a restart
