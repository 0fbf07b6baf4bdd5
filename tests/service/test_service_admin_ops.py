"""Admin API (bearer tokens, roles, problem+json, transactions), audit chain, operations."""

from __future__ import annotations

import base64
import logging

import pytest

from veritee.client import AttesterClient
from veritee.service.audit import verify_chain
from veritee.service.core import create_admin_token
from veritee.service.storage.migrations import MIGRATIONS

from _service_support import SECRET_A, Guests, Service


def test_admin_endpoints_need_a_token(service: Service) -> None:
    r = service.http.get(f"{service.url}/v1/admin/resources")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    r = service.http.get(f"{service.url}/v1/admin/resources",
                         headers={"Authorization": "Bearer vt_not_a_real_token"})
    assert (r.status_code, r.json()["code"]) == (401, "admin.unauthenticated")


def test_reader_can_read_but_not_write(service: Service) -> None:
    _, reader = create_admin_token(service.store, "auditor", "reader")
    h = {"Authorization": f"Bearer {reader}"}
    r = service.http.get(f"{service.url}/v1/admin/resources", headers=h)
    assert r.status_code == 200
    assert {x["path"] for x in r.json()["resources"]} == {"apps/a/key", "apps/b/password"}
    assert "secret" not in r.text and base64.b64encode(SECRET_A).decode() not in r.text
    r = service.http.put(f"{service.url}/v1/admin/reference-values/x", headers=h,
                         json={"kind": "measurement", "value": "00" * 48})
    assert (r.status_code, r.json()["code"]) == (403, "admin.forbidden")


def test_tokens_are_stored_hashed_and_revocable(service: Service) -> None:
    r = service.http.post(f"{service.url}/v1/admin/tokens", headers=service.admin_headers(),
                          json={"name": "ci", "role": "reader"})
    assert r.status_code == 201
    token, token_id = r.json()["token"], r.json()["token_id"]
    with service.store.transaction(write=False) as tx:
        stored = [tuple(row) for row in tx.all("SELECT * FROM admin_tokens")]
    assert token not in repr(stored)
    h = {"Authorization": f"Bearer {token}"}
    assert service.http.get(f"{service.url}/v1/admin/audit", headers=h).status_code == 200
    r = service.http.delete(f"{service.url}/v1/admin/tokens/{token_id}",
                            headers=service.admin_headers())
    assert r.status_code == 204
    assert service.http.get(f"{service.url}/v1/admin/audit", headers=h).status_code == 401


def test_bad_policy_gets_problem_naming_the_key_and_nothing_is_written(
        service: Service) -> None:
    before = len(service.audit())
    r = service.http.put(f"{service.url}/v1/admin/policies/strict",
                         headers=service.admin_headers(),
                         json={"allow_debug": False, "min_tcb": {"bootlader": 3}})
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert "min_tcb.bootlader" in r.json()["detail"]
    assert service.http.get(f"{service.url}/v1/admin/policies/strict",
                            headers=service.admin_headers()).status_code == 404
    assert len(service.audit()) == before


def test_bad_resource_input_is_refused_whole(service: Service) -> None:
    h = service.admin_headers()
    r = service.http.put(f"{service.url}/v1/admin/resources/new/thing", headers=h,
                         json={"secret": base64.b64encode(b"s").decode(), "policy": {}})
    assert r.status_code == 400
    assert "policy.measurements" in r.json()["detail"]  # no accept-all default
    r = service.http.put(f"{service.url}/v1/admin/resources/new/thing", headers=h,
                         json={"secret": "%%%", "policy": {"allow_any_workload": True}})
    assert r.status_code == 400 and "secret" in r.json()["detail"]
    r = service.http.get(f"{service.url}/v1/admin/resources", headers=h)
    assert "new/thing" not in {x["path"] for x in r.json()["resources"]}


def test_appraisal_policy_managed_through_admin_applies(service: Service,
                                                        guests: Guests) -> None:
    h = service.admin_headers()
    r = service.http.put(f"{service.url}/v1/admin/policies/default", headers=h,
                         json={"allowed_vmpls": [1]})  # min_guest_svn needs an ID key
    assert r.status_code == 201, r.text
    from veritee.client import ServiceRefused

    with AttesterClient(service.url, guests.a, dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as e:
        client.attest()
    assert [f["code"] for f in e.value.problem["failures"]] == ["sevsnp.vmpl.not_allowed"]
    assert service.http.delete(f"{service.url}/v1/admin/policies/default",
                               headers=h).status_code == 204
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        assert client.fetch("apps/a/key") == SECRET_A


def test_audit_chain_verifies_and_detects_tampering(service: Service, guests: Guests,
                                                    tmp_path: object) -> None:
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        client.fetch("apps/a/key")
    with service.store.transaction(write=False) as tx:
        report = verify_chain(tx.audit_rows(), service.store.integrity)
    assert report.ok and report.entries >= 5
    r = service.http.get(f"{service.url}/v1/admin/audit/verify",
                         headers=service.admin_headers())
    assert r.json()["ok"] is True
    # The database refuses changes to the log ...
    with pytest.raises(Exception, match="append-only"), service.store.transaction() as tx:
        tx.execute("UPDATE audit_log SET outcome = 'granted' WHERE seq = 1")
    # ... and whoever bypasses that (drops the trigger) is caught by the chain.
    with service.store.transaction() as tx:
        if tx.dialect == "sqlite":
            tx.execute("DROP TRIGGER audit_log_no_update")
        else:
            tx.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")
        tx.execute("UPDATE audit_log SET outcome = 'granted' WHERE seq = 3")
    with service.store.transaction(write=False) as tx:
        report = verify_chain(tx.audit_rows(), service.store.integrity)
    assert not report.ok and report.bad_seq == 3 and "changed" in report.problem


def test_ops_endpoints(service: Service, guests: Guests) -> None:
    assert service.http.get(f"{service.url}/healthz").json() == {"status": "ok"}
    ready = service.http.get(f"{service.url}/readyz").json()
    assert ready["status"] == "ready" and ready["schema_version"] == len(MIGRATIONS)
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        client.fetch("apps/a/key")
    text = service.http.get(f"{service.url}/metrics").text
    assert 'veritee_attestations_total{outcome="accepted"} 1.0' in text
    assert 'veritee_verdicts_total{status="affirming"} 1.0' in text
    assert 'veritee_releases_total{outcome="granted"} 1.0' in text
    assert "veritee_request_seconds_bucket" in text
    assert "veritee_verification_seconds_count 1.0" in text
    spec = service.http.get(f"{service.url}/openapi.json").json()
    assert {"/v1/challenge", "/v1/attest", "/v1/resources/{path}", "/v1/jwks"} <= set(
        spec["paths"])
    # The exchange's routes answer with JSON they encode themselves (no response model):
    # the document still says each 200 is a JSON object.
    for path, method in (("/v1/challenge", "post"), ("/v1/attest", "post"),
                         ("/v1/resources/{path}", "get"), ("/v1/jwks", "get")):
        ok = spec["paths"][path][method]["responses"]["200"]
        assert ok["content"]["application/json"]["schema"]["type"] == "object", path
    r = service.http.post(f"{service.url}/v1/challenge")
    assert r.headers["content-type"] == "application/json" and set(r.json()) == {
        "nonce", "expires_at", "expires_in"}
    jwks = service.http.get(f"{service.url}/.well-known/jwks.json").json()
    assert jwks["keys"][0]["alg"] == "ES256" and "d" not in jwks["keys"][0]


def test_logs_never_contain_secrets_or_tokens(service: Service, guests: Guests,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="veritee.service")
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        passport = client.attest()
        assert client.get_resource("apps/a/key", passport) == SECRET_A
    text = caplog.text
    assert "release.granted" in text and "attestation.accepted" in text
    for leak in (SECRET_A.decode(), base64.b64encode(SECRET_A).decode(), passport.token,
                 passport.token.split(".")[2], service.admin):
        assert leak not in text


def test_secrets_are_encrypted_at_rest(service: Service) -> None:
    with service.store.transaction(write=False) as tx:
        rows = [tuple(r) for r in tx.all("SELECT * FROM resources")]
        keys = [tuple(r) for r in tx.all("SELECT * FROM signing_keys")]
    dump = repr(rows) + repr(keys)
    assert SECRET_A.decode() not in dump
    assert base64.b64encode(SECRET_A).decode() not in dump
    assert "PRIVATE KEY" not in dump
