"""Total error mapping, as a property: every route, arbitrary paths, bodies and headers.

For any request: never a 5xx, every error is problem+json with a ``code``, an
unauthenticated (or wrongly authenticated) request stores nothing, and the audit chain still
verifies. The application runs in-process (Starlette's test client) on SQLite.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from veritee.service import MasterKey, Settings, create_app
from veritee.service.audit import verify_chain
from veritee.service.core import create_admin_token
from veritee.service.storage import open_store

_TABLES = ("appraisal_policies", "reference_values", "resources", "admin_tokens",
           "signing_keys", "service_keys")


@pytest.fixture(scope="module")
def app_and_token(tmp_path_factory: pytest.TempPathFactory,
                  machine: Any) -> Iterator[tuple[Any, str]]:
    tmp: Path = tmp_path_factory.mktemp("prop")
    url = f"sqlite:///{tmp}/svc.db"
    store = open_store(url)
    app = create_app(Settings(database_url=url, dev_mode=True, key_source="emulated",
                              emulated_machine_dir="/nonexistent"),
                     master_key=MasterKey(b"\x44" * 32), anchors=machine.anchors(), store=store)
    _, token = create_admin_token(store, "prop admin", "admin")
    yield app, token
    store.close()


def _routes(app: Any) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            for method in sorted(route.methods - {"HEAD"}):
                out.append((method, route.path))
    return sorted(out)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
    | st.sampled_from(["\ud800", "a\x00b", "x" * 2000, "admin", "reader", "measurement",
                       "P-256", "EC", "00" * 48, "sevsnp", "tdx", "nosuchtee"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "role", "secret", "policy", "kind", "value", "evidence",
                         "cert_table", "runtime_data", "nonce", "key", "crv", "kty",
                         "measurements", "policy_id", "allow_any_workload", "x", "y",
                         "scheme", "attached", "additional_evidence", "workloads",
                         "measurement", "sevsnp", "tdx"])
        | st.text(max_size=10), inner, max_size=5),
    max_leaves=12)

# Path parameters: anything a URL can carry (lone surrogates cannot be percent-encoded).
_param = st.text(st.characters(exclude_categories=["Cs"]), min_size=0, max_size=40) | \
    st.sampled_from(["a%00b", "..", "a/../../b", "x" * 1100, "default", "apps/a/key"])


def _state(app: Any) -> dict[str, int]:
    store = app.state.broker.store
    with store.transaction(write=False) as tx:
        return {t: int(tx.one(f"SELECT COUNT(*) FROM {t}")[0]) for t in _TABLES}


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_route_answers_4xx_problem_or_success_never_5xx(
        app_and_token: tuple[Any, str], data: st.DataObject) -> None:
    app, admin = app_and_token
    method, template = data.draw(st.sampled_from(_routes(app)), label="route")
    path = re.sub(r"\{(\w+)(:path)?\}",
                  lambda m: quote(data.draw(_param, label=m.group(1)), safe="/" if m.group(2)
                                  else ""), template)
    auth = data.draw(st.sampled_from(["none", "admin", "admin", "admin", "junk", "huge"]),
                     label="auth")
    headers = {"Content-Type": "application/json"}
    if auth == "admin":
        headers["Authorization"] = f"Bearer {admin}"
    elif auth == "junk":
        headers["Authorization"] = data.draw(st.text(
            st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60), label="hdr")
    elif auth == "huge":
        headers["Authorization"] = "Bearer " + "A" * 9000
    body = data.draw(_json, label="body")
    number = st.sampled_from([0, -1, 1000, 1001, 2 ** 31, 2 ** 63 - 1, 2 ** 63, 2 ** 64]) | \
        st.integers(min_value=-(2 ** 70), max_value=2 ** 70) | st.text(max_size=5)
    query = data.draw(st.fixed_dictionaries({}, optional={"after": number, "limit": number}),
                      label="query")
    before = _state(app)
    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.request(method, path, headers=headers, params=query,
                           content=json.dumps(body).encode() if method in ("POST", "PUT")
                           else None)
    assert r.status_code < 500, (method, path, r.status_code, r.text[:300])
    if r.status_code >= 400:
        assert r.headers["content-type"] == "application/problem+json", r.text[:300]
        assert isinstance(r.json().get("code"), str)
    if auth != "admin":
        assert _state(app) == before, (method, path)
    store = app.state.broker.store
    with store.transaction(write=False) as tx:
        assert verify_chain(tx.audit_rows(), store.integrity).ok
