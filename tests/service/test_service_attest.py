"""End to end over real HTTP on loopback, against SQLite and PostgreSQL.

A good guest gets its secret; each attack is refused with its own code, and each refusal is
in the audit log.
"""

from __future__ import annotations

import base64
import os

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee._decode import b64url as _b64url
from veritee.client import AttesterClient, Passport, ServiceRefused, evidence_for
from veritee.results import ear_claims, sign_ear

from _service_support import SECRET_A, Guests, Service


def _attest_raw(svc: Service, body: dict[str, object]) -> httpx.Response:
    return svc.http.post(f"{svc.url}/v1/attest", json=body)


def _nonce(svc: Service) -> bytes:
    r = svc.http.post(f"{svc.url}/v1/challenge")
    assert r.status_code == 200
    text = r.json()["nonce"]
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _last_refusal(svc: Service, code: str) -> None:
    refusals = svc.refusals()
    assert refusals, "no refusal in the audit log"
    assert refusals[-1].detail["code"] == code, refusals[-1]


def test_good_guest_gets_its_secret(service: Service, guests: Guests) -> None:
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        passport = client.attest()
        assert passport.status == "affirming"
        assert client.get_resource("apps/a/key", passport) == SECRET_A
    events = [(r.event, r.outcome) for r in service.audit()]
    assert ("attestation", "accepted") in events
    assert ("release", "granted") in events


def test_guest_with_wrong_measurement_is_refused(service: Service, guests: Guests) -> None:
    with AttesterClient(service.url, guests.unknown, dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert info.value.status == 403
    codes = [f["code"] for f in info.value.problem["failures"]]
    assert codes == ["sevsnp.measurement.mismatch"]
    _last_refusal(service, "attestation.rejected")
    assert service.refusals()[-1].detail["failures"] == ["sevsnp.measurement.mismatch"]


def test_debug_guest_is_refused(service: Service, guests: Guests) -> None:
    with AttesterClient(service.url, guests.debug, dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert [f["code"] for f in info.value.problem["failures"]] == ["sevsnp.policy.debug"]
    assert service.refusals()[-1].detail["vector"]["runtime-opaque"] == 96
    _last_refusal(service, "attestation.rejected")


def test_contraindicated_ear_from_a_refusal_opens_no_resource(service: Service,
                                                             guests: Guests) -> None:
    """A refused attestation still returns a signed EAR (status contraindicated) for the
    record; it must not work as a passport, even for a resource that pins no measurement."""
    h = service.admin_headers()
    r = service.http.put(f"{service.url}/v1/admin/resources/open/any", headers=h,
                         json={"secret": base64.b64encode(b"x").decode(),
                               "policy": {"allow_any_workload": True}})
    assert r.status_code in (200, 201), r.text
    key = ec.generate_private_key(ec.SECP384R1())
    r = _attest_raw(service, evidence_for(guests.debug, _nonce(service), key))
    assert r.status_code == 403
    ear = r.json()["ear"]
    with AttesterClient(service.url, guests.debug, dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as info:
        client.get_resource("open/any", Passport(token=ear, key=key))
    # Refused before any resource policy runs: verify_ear now checks the status itself.
    assert info.value.status == 401
    assert info.value.problem["code"] == "token.invalid"
    assert "ear.status" in info.value.problem["detail"]
    _last_refusal(service, "token.invalid")


def test_replayed_nonce_is_refused(service: Service, guests: Guests) -> None:
    nonce = _nonce(service)
    body = evidence_for(guests.a, nonce, ec.generate_private_key(ec.SECP384R1()))
    assert _attest_raw(service, body).status_code == 200
    replay = _attest_raw(service, body)
    assert replay.status_code == 403
    assert replay.headers["content-type"] == "application/problem+json"
    assert replay.json()["code"] == "nonce.used"
    _last_refusal(service, "nonce.used")


def test_unknown_nonce_is_refused(service: Service, guests: Guests) -> None:
    body = evidence_for(guests.a, os.urandom(32), ec.generate_private_key(ec.SECP384R1()))
    r = _attest_raw(service, body)
    assert (r.status_code, r.json()["code"]) == (403, "nonce.unknown")
    _last_refusal(service, "nonce.unknown")


def test_expired_nonce_is_refused(service: Service, guests: Guests) -> None:
    nonce = _nonce(service)
    service.clock.offset += service.app.state.settings.nonce_ttl + 1
    body = evidence_for(guests.a, nonce, ec.generate_private_key(ec.SECP384R1()))
    r = _attest_raw(service, body)
    assert (r.status_code, r.json()["code"]) == (403, "nonce.expired")
    _last_refusal(service, "nonce.expired")


def test_stale_token_is_refused(service: Service, guests: Guests) -> None:
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        passport = client.attest()
        service.clock.offset += service.app.state.settings.token_ttl + 1
        with pytest.raises(ServiceRefused) as info:
            client.get_resource("apps/a/key", passport)
    assert (info.value.status, info.value.code) == (401, "token.expired")
    _last_refusal(service, "token.expired")


def test_forged_token_is_refused(service: Service, guests: Guests) -> None:
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        genuine = client.attest()
        # Same claims and kid, signed by a key the service never published.
        from veritee.results import verify_ear

        jwks = service.http.get(f"{service.url}/v1/jwks").json()
        claims = verify_ear(genuine.token, jwks).claims
        kid = jwks["keys"][0]["kid"]
        forged = sign_ear(claims, ec.generate_private_key(ec.SECP256R1()), kid=kid)
        with pytest.raises(ServiceRefused) as info:
            client.get_resource("apps/a/key", Passport(forged, genuine.key))
    assert (info.value.status, info.value.code) == (401, "token.invalid")
    _last_refusal(service, "token.invalid")


def test_token_with_edited_claims_is_refused(service: Service, guests: Guests) -> None:
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        genuine = client.attest()
    head, payload, sig = genuine.token.split(".")
    import json

    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["exp"] += 3600
    edited = _b64url(json.dumps(claims).encode())
    r = service.http.get(f"{service.url}/v1/resources/apps/a/key",
                         headers={"Authorization": f"Bearer {head}.{edited}.{sig}"})
    assert (r.status_code, r.json()["code"]) == (401, "token.invalid")
    _last_refusal(service, "token.invalid")


def test_token_for_another_resources_policy_is_refused(service: Service,
                                                       guests: Guests) -> None:
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        passport = client.attest()  # A is a known workload: attestation passes
        with pytest.raises(ServiceRefused) as info:
            client.get_resource("apps/b/password", passport)  # B's resource pins B
    assert (info.value.status, info.value.code) == (403, "resource.policy")
    assert [f["code"] for f in info.value.problem["failures"]] == [
        "resource.measurement.mismatch"]
    _last_refusal(service, "resource.policy")
    assert service.refusals()[-1].detail["failures"] == ["resource.measurement.mismatch"]


def test_report_data_not_binding_the_key_is_refused(service: Service, guests: Guests) -> None:
    nonce = _nonce(service)
    bound = ec.generate_private_key(ec.SECP384R1())
    body = evidence_for(guests.a, nonce, bound)
    # Present a different key than the one REPORT_DATA binds (a key swap by a MITM).
    other = ec.generate_private_key(ec.SECP384R1())
    from joserfc.jwk import ECKey

    body["runtime_data"]["key"] = ECKey.import_key(other.public_key()).as_dict(private=False)  # type: ignore[index]
    r = _attest_raw(service, body)
    assert r.status_code == 403
    assert [f["code"] for f in r.json()["failures"]] == ["sevsnp.binding.mismatch"]
    _last_refusal(service, "attestation.rejected")
    assert service.refusals()[-1].detail["vector"]["instance-identity"] == 99


def test_missing_token_and_unknown_resource(service: Service, guests: Guests) -> None:
    r = service.http.get(f"{service.url}/v1/resources/apps/a/key")
    assert (r.status_code, r.json()["code"]) == (401, "token.missing")
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        passport = client.attest()
        with pytest.raises(ServiceRefused) as info:
            client.get_resource("no/such/thing", passport)
    assert info.value.status == 404
    _last_refusal(service, "resource.not_found")


def test_malformed_evidence_gets_problem_naming_the_field(service: Service) -> None:
    nonce = _nonce(service)
    key = ec.generate_private_key(ec.SECP384R1())
    from joserfc.jwk import ECKey

    body = {"evidence": base64.b64encode(b"\x01" * 100).decode(),
            "runtime_data": {"nonce": _b64url(nonce),
                             "key": ECKey.import_key(key.public_key()).as_dict()}}
    r = _attest_raw(service, body)
    assert r.status_code == 400
    assert "evidence" in r.json()["detail"]
    r = _attest_raw(service, {"evidence": "AAAA"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.runtime_data"


def test_the_token_is_an_ear_with_vector_and_trace(service: Service, guests: Guests) -> None:
    from veritee.client import verify_passport

    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        passport = client.attest()
    jwks = service.http.get(f"{service.url}/v1/jwks").json()
    result = verify_passport(passport.token, jwks, issuer="veritee",
                             holder_key=passport.key.public_key())
    sub = result.submod
    assert result.claims["eat_profile"] == "tag:github.com,2023:veraison/ear"
    assert sub["ear.status"] == "affirming"
    assert sub["ear.trustworthiness-vector"] == {
        "hardware": 2, "instance-identity": 2, "executables": 3, "configuration": 2,
        "runtime-opaque": 2}
    assert sub["ear.appraisal-policy-id"] == "default"
    assert sub["veritee.trace"]["sevsnp.report.signature"] == "pass"
    assert sub["veritee.trace"]["sevsnp.measurement.mismatch"] == "pass"
    assert sub["veritee.verified-claims"]["measurement"] == guests.a.measurement.hex()
    assert result.claims["exp"] - result.claims["iat"] == 300
    _ = ear_claims  # the encoder is unit-tested in test_service_results.py
