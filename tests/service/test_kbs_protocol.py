"""The Confidential Containers KBS protocol front (/kbs/v0): conformance and end to end.

Messages are written from Trustee's ``docs/kbs_attestation_protocol.md`` and the kbs-types
message definitions (Request, Challenge, Attestation {init-data, runtime-data, tee-evidence},
Response, ErrorInformation) and from Trustee's ``kbs/src/attestation/backend.rs`` (version
"=0.4.0", the runtime-data binding, a session answering /attest with its token again); no
Trustee fixture is copied here. Every test names the attack or the protocol rule it pins.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.attest import bind_report_data
from veritee.client import AttesterClient, ServiceRefused, evidence_for
from veritee.client_coco import CocoKbsClient, snp_evidence
from veritee.crypto.kbs_jwe import decrypt_response
from veritee.errors import VerificationError
from veritee.formats.coco import canonical_json, runtime_data_digest
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine

from _service_support import SECRET_A, Guests, Service, image, provision

ERR = "https://github.com/confidential-containers/kbs/errors/"


@pytest.fixture
def sqlite_service(service_factory: Callable[..., Service], tmp_path: Path,
                   guests: Guests) -> Service:
    svc = service_factory(f"sqlite:///{tmp_path}/kbs.db")
    provision(svc, guests)
    return svc


def _kbs(svc: Service, guest: Any) -> CocoKbsClient:
    return CocoKbsClient(svc.url, guest, dev_mode=True, http=httpx.Client(timeout=10))


def _refusal(exc: pytest.ExceptionInfo[ServiceRefused], status: int, name: str) -> dict[str, Any]:
    assert exc.value.status == status, exc.value.problem
    assert exc.value.problem["type"] == ERR + name, exc.value.problem
    assert isinstance(exc.value.problem["detail"], str)
    return exc.value.problem


def _put(svc: Service, path: str, secret: bytes, measurement: bytes) -> None:
    r = svc.http.put(f"{svc.url}/v1/admin/resources/{path}", headers=svc.admin_headers(),
                     json={"secret": base64.b64encode(secret).decode(),
                           "policy": {"measurements": [measurement.hex()]}})
    assert r.status_code == 200, r.text


# -- end to end, SQLite and PostgreSQL --------------------------------------------------------
def test_emulated_snp_guest_fetches_a_resource_through_kbs_v0(service: Service,
                                                              guests: Guests) -> None:
    with _kbs(service, guests.a) as kbs:
        assert kbs.get_resource("apps/a/key") == SECRET_A
    events = [(r.event, r.outcome) for r in service.audit()]
    assert ("attestation", "accepted") in events and ("release", "granted") in events
    accepted = [r for r in service.audit() if r.event == "attestation"][-1]
    assert accepted.detail["front"] == "kbs" and accepted.detail["tee"] == "sevsnp"


def test_guest_with_the_wrong_measurement_is_refused(service: Service, guests: Guests) -> None:
    # B is a known workload (it attests) but the resource is pinned to A's measurement.
    with _kbs(service, guests.b) as kbs, pytest.raises(ServiceRefused) as exc:
        kbs.get_resource("apps/a/key")
    problem = _refusal(exc, 403, "PolicyDeny")
    assert problem["code"] == "resource.policy" and problem["failures"]
    # An unknown workload does not even get a token, and is told which check failed.
    with _kbs(service, guests.unknown) as kbs, pytest.raises(ServiceRefused) as exc:
        kbs.attest()
    problem = _refusal(exc, 401, "AttestationError")
    assert problem["code"] == "attestation.rejected"
    assert any("measurement" in f["code"] for f in problem["failures"])


def test_nonce_reused_across_the_two_fronts_is_refused(service: Service,
                                                       guests: Guests) -> None:
    # A /kbs/v0 challenge spent on /kbs/v0 cannot be replayed on /v1 ...
    with _kbs(service, guests.a) as kbs:
        challenge = kbs.auth()
        message = kbs.attestation(challenge)
        r = kbs._http.post(f"{service.url}/kbs/v0/attest", content=canonical_json(message))
        assert r.status_code == 200, r.text
    nonce = base64.b64decode(challenge["nonce"])
    key = ec.generate_private_key(ec.SECP384R1())
    r = service.http.post(f"{service.url}/v1/attest", json=evidence_for(guests.a, nonce, key))
    assert r.status_code == 403 and r.json()["code"] == "nonce.used", r.text
    # ... and a /kbs/v0 challenge first spent on /v1 is refused on /kbs/v0.
    with _kbs(service, guests.a) as kbs:
        challenge = kbs.auth()
        nonce = base64.b64decode(challenge["nonce"])
        r = service.http.post(f"{service.url}/v1/attest",
                              json=evidence_for(guests.a, nonce, key))
        assert r.status_code == 200, r.text
        r = kbs._http.post(f"{service.url}/kbs/v0/attest",
                           content=canonical_json(kbs.attestation(challenge)))
    assert r.status_code == 401 and r.json()["code"] == "nonce.used", r.text


# -- conformance: Request / Challenge / cookie ------------------------------------------------
def test_challenge_has_every_field_and_a_session_cookie(sqlite_service: Service,
                                                        guests: Guests) -> None:
    r = httpx.post(f"{sqlite_service.url}/kbs/v0/auth", json={
        "version": "0.4.0", "tee": "snp", "extra-params": ""})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"nonce", "extra-params"}
    assert len(base64.b64decode(body["nonce"], validate=True)) == 32  # Trustee: 32 bytes
    assert body["extra-params"] == {"selected-hash-algorithm": "sha384"}
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("kbs-session-id=")
    low = cookie.lower()
    assert "httponly" in low and "path=/kbs" in low and "samesite=strict" in low
    assert "secure" not in low  # plain http on loopback; set on https


def test_client_hash_algorithm_offer_is_honoured(sqlite_service: Service) -> None:
    r = httpx.post(f"{sqlite_service.url}/kbs/v0/auth", json={
        "version": "0.4.0", "tee": "snp",
        "extra-params": {"supported-hash-algorithms": ["sha512"]}})
    assert r.json()["extra-params"]["selected-hash-algorithm"] == "sha512"
    r = httpx.post(f"{sqlite_service.url}/kbs/v0/auth", json={
        "version": "0.4.0", "tee": "snp", "extra-params": {"supported-hash-algorithms": ["sm3"]}})
    assert r.status_code == 401 and r.json()["code"] == "kbs.hash"


@pytest.mark.parametrize("version", ["0.0.9", "0.5.0", "1.0.0", "0.4", "=0.4.0", ""])
def test_unknown_protocol_versions_are_refused(sqlite_service: Service, version: str) -> None:
    r = httpx.post(f"{sqlite_service.url}/kbs/v0/auth",
                   json={"version": version, "tee": "snp", "extra-params": {}})
    assert r.status_code == 401
    assert r.json()["type"] == ERR + "AttestationError"
    assert "Version Mismatch" in r.json()["detail"] and "set-cookie" not in r.headers
    # ErrorInformation is an RFC 7807 problem, as the protocol document says.
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("tee", ["snp", "tdx", "sgx", "azsnpvtpm", "aztdxvtpm", "tpm", "cca"])
def test_every_tee_with_a_registered_scheme_gets_a_challenge(sqlite_service: Service,
                                                             tee: str) -> None:
    r = httpx.post(f"{sqlite_service.url}/kbs/v0/auth",
                   json={"version": "0.4.0", "tee": tee, "extra-params": {}})
    assert r.status_code == 200, r.text
    assert r.json()["nonce"]


@pytest.mark.parametrize("tee", ["nvidia", "se", "csv", "sample", "no-such-tee"])
def test_tees_that_cannot_be_verified_are_refused_by_name(sqlite_service: Service,
                                                         tee: str) -> None:
    r = httpx.post(f"{sqlite_service.url}/kbs/v0/auth",
                   json={"version": "0.4.0", "tee": tee, "extra-params": {}})
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["type"] == ERR + "AttestationError" and body["code"] == "kbs.tee.unsupported"
    assert repr(tee) in body["detail"]
    # Each refusal lists what can be verified now (a device is refused as a primary TEE).
    assert "verifiable now: snp, tdx, sgx" in body["detail"] or (
        tee == "nvidia" and "device" in body["detail"])


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"version": "0.4.0"}',
                                  b'{"version": "0.4.0", "version": "0.4.0", "tee": "snp", '
                                  b'"extra-params": {}}'])
def test_malformed_requests_are_refused_in_the_protocol_shape(sqlite_service: Service,
                                                              body: bytes) -> None:
    r = httpx.post(f"{sqlite_service.url}/kbs/v0/auth", content=body)
    assert r.status_code == 401 and set(r.json()) >= {"type", "detail"}


def test_attest_without_the_session_cookie_is_refused(sqlite_service: Service,
                                                      guests: Guests) -> None:
    with _kbs(sqlite_service, guests.a) as kbs:
        message = kbs.attestation(kbs.auth())
    r = httpx.post(f"{sqlite_service.url}/kbs/v0/attest", content=canonical_json(message))
    assert r.status_code == 401 and r.json()["code"] == "kbs.session.missing"


def test_forged_session_cookie_is_refused(sqlite_service: Service, guests: Guests) -> None:
    with _kbs(sqlite_service, guests.a) as kbs:
        message = kbs.attestation(kbs.auth())
        real = kbs._http.cookies["kbs-session-id"]
        forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
        r = httpx.post(f"{sqlite_service.url}/kbs/v0/attest", content=canonical_json(message),
                       cookies={"kbs-session-id": forged})
    assert r.status_code == 401 and r.json()["code"] == "kbs.session.invalid"


def test_expired_session_is_refused(sqlite_service: Service, guests: Guests) -> None:
    with _kbs(sqlite_service, guests.a) as kbs:
        message = kbs.attestation(kbs.auth())
        sqlite_service.clock.offset += 3600
        r = kbs._http.post(f"{sqlite_service.url}/kbs/v0/attest",
                           content=canonical_json(message))
    assert r.status_code == 401 and r.json()["code"] == "kbs.session.expired"


# -- conformance: Attestation and the binding ------------------------------------------------
def test_nonce_not_from_the_session_is_refused_and_burns_the_challenge(
        sqlite_service: Service, guests: Guests) -> None:
    with _kbs(sqlite_service, guests.a) as kbs:
        challenge = kbs.auth()
        bad = kbs.attestation({**challenge, "nonce": base64.b64encode(bytes(32)).decode()})
        r = kbs._http.post(f"{sqlite_service.url}/kbs/v0/attest", content=canonical_json(bad))
        assert r.status_code == 401 and r.json()["code"] == "kbs.nonce.mismatch"
        # The challenge served one attempt: the right answer now is refused too.
        r = kbs._http.post(f"{sqlite_service.url}/kbs/v0/attest",
                           content=canonical_json(kbs.attestation(challenge)))
    assert r.status_code == 401 and r.json()["code"] == "nonce.used"
    assert [r.detail["code"] for r in sqlite_service.refusals()] == ["kbs.nonce.mismatch",
                                                                    "nonce.used"]


def test_tee_pubkey_substituted_after_the_report_is_refused(sqlite_service: Service,
                                                            guests: Guests) -> None:
    # A man in the middle swaps in its own key: the report data no longer matches.
    with _kbs(sqlite_service, guests.a) as kbs:
        message = kbs.attestation(kbs.auth())
        other = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
        message["runtime-data"]["tee-pubkey"]["x"] = base64.urlsafe_b64encode(
            other.x.to_bytes(32, "big")).rstrip(b"=").decode()
        message["runtime-data"]["tee-pubkey"]["y"] = base64.urlsafe_b64encode(
            other.y.to_bytes(32, "big")).rstrip(b"=").decode()
        r = kbs._http.post(f"{sqlite_service.url}/kbs/v0/attest",
                           content=canonical_json(message))
    assert r.status_code == 401 and r.json()["code"] == "attestation.rejected"
    assert any(f["code"] == "sevsnp.binding.mismatch" for f in r.json()["failures"])


def test_evidence_bound_with_the_v1_rule_is_not_accepted_on_kbs(sqlite_service: Service,
                                                                guests: Guests) -> None:
    with _kbs(sqlite_service, guests.a) as kbs:
        challenge = kbs.auth()
        message = kbs.attestation(challenge)
        key = ec.generate_private_key(ec.SECP256R1())
        report, table = guests.a.extended_report(
            bind_report_data(base64.b64decode(challenge["nonce"]), key.public_key()))
        message["tee-evidence"]["primary_evidence"] = snp_evidence(report, table)
        r = kbs._http.post(f"{sqlite_service.url}/kbs/v0/attest",
                           content=canonical_json(message))
    assert r.status_code == 401 and r.json()["code"] == "attestation.rejected"


def test_runtime_data_binding_is_the_protocol_rule() -> None:
    # Hand-computed from the rule: SHA-384 over the sorted, compact runtime-data JSON.
    pub = {"alg": "ECDH-ES+A256KW", "crv": "P-256", "kty": "EC", "x": "AAAA", "y": "BBBB"}
    text = ('{"additional-evidence":"","nonce":"bm9uY2U=","tee-pubkey":{"alg":"ECDH-ES+A256KW",'
            '"crv":"P-256","kty":"EC","x":"AAAA","y":"BBBB"}}')
    want = hashlib.sha384(text.encode()).digest() + bytes(16)
    assert runtime_data_digest("bm9uY2U=", pub, "") == want
    assert runtime_data_digest("bm9uY2U=", pub, "", "sha512") == hashlib.sha512(
        text.encode()).digest()


def test_malformed_device_evidence_is_a_protocol_error_naming_the_device(
        sqlite_service: Service, guests: Guests) -> None:
    # Composite evidence is verified (tests/service/test_kbs_composite.py); a device whose
    # evidence is not in its TEE's shape is refused before verification, by name.
    with _kbs(sqlite_service, guests.a) as kbs:
        message = kbs.attestation(kbs.auth())
        message["tee-evidence"]["additional_evidence"] = json.dumps({"nvidia": {"x": 1}})
        r = kbs._http.post(f"{sqlite_service.url}/kbs/v0/attest",
                           content=canonical_json(message))
    assert r.status_code == 401 and "nvidia" in r.json()["detail"], r.text
    assert r.json()["code"] == "evidence.malformed"


@pytest.mark.parametrize("mutate", [
    lambda m: m.pop("runtime-data"),
    lambda m: m["tee-evidence"].pop("primary_evidence"),
    lambda m: m["tee-evidence"]["primary_evidence"]["attestation_report"].pop("measurement"),
    lambda m: m["tee-evidence"]["primary_evidence"]["attestation_report"].update(
        measurement=[0] * 47),
    lambda m: m["runtime-data"]["tee-pubkey"].update(kty="RSA"),
    lambda m: m.update({"tee-pubkey": {}}),  # the pre-0.4.0 shape
])
def test_malformed_attestation_messages_are_refused_not_crashed(
        sqlite_service: Service, guests: Guests, mutate: Callable[[dict[str, Any]], Any]) -> None:
    with _kbs(sqlite_service, guests.a) as kbs:
        message = kbs.attestation(kbs.auth())
        mutate(message)
        r = kbs._http.post(f"{sqlite_service.url}/kbs/v0/attest",
                           content=canonical_json(message))
    assert r.status_code == 401 and r.json()["type"] == ERR + "AttestationError", r.text


def test_init_data_digest_must_be_the_guest_host_data(service_factory: Callable[..., Service],
                                                      tmp_path: Path,
                                                      machine: InsecureEmulatedSnpMachine
                                                      ) -> None:
    body = 'version = "0.1.0"\nalgorithm = "sha256"\n[data]\n"policy.rego" = "allow"\n'
    guest = machine.launch(image(b"workload with init-data"),
                           host_data=hashlib.sha256(body.encode()).digest())
    svc = service_factory(f"sqlite:///{tmp_path}/init.db")
    _put(svc, "default/init/key", b"bound to init-data", guest.measurement)
    with _kbs(svc, guest) as kbs:
        kbs.attest(init_data={"format": "toml", "body": body})
        assert kbs.resource("default/init/key") == b"bound to init-data"
    # Different init-data than the guest was launched with: refused on HOSTDATA.
    with _kbs(svc, guest) as kbs, pytest.raises(ServiceRefused) as exc:
        kbs.attest(init_data={"format": "toml", "body": body.replace("allow", "deny")})
    problem = _refusal(exc, 401, "AttestationError")
    assert any("host_data" in f["code"] for f in problem["failures"])


def test_attested_session_answers_attest_with_its_token_again(sqlite_service: Service,
                                                              guests: Guests) -> None:
    with _kbs(sqlite_service, guests.a) as kbs:
        token = kbs.attest()
        r = kbs._http.post(f"{sqlite_service.url}/kbs/v0/attest", content=b"{}")
    assert r.status_code == 200 and r.json() == {"token": token}


# -- conformance: resources --------------------------------------------------------------------
def test_one_attestation_serves_several_resources(sqlite_service: Service,
                                                  guests: Guests) -> None:
    for tag in ("1", "2", "3"):
        _put(sqlite_service, f"default/key/{tag}", f"secret {tag}".encode(),
             guests.a.measurement)
    with _kbs(sqlite_service, guests.a) as kbs:
        kbs.attest()
        assert [kbs.resource(f"default/key/{t}") for t in ("1", "2", "3")] == [
            b"secret 1", b"secret 2", b"secret 3"]
    events = [(r.event, r.outcome) for r in sqlite_service.audit()]
    assert events.count(("attestation", "accepted")) == 1
    assert events.count(("release", "granted")) == 3


def test_bearer_token_works_without_the_cookie(sqlite_service: Service,
                                               guests: Guests) -> None:
    with _kbs(sqlite_service, guests.a) as kbs:
        kbs.attest()
        kbs._http.cookies.clear()
        assert kbs.resource("apps/a/key", bearer=True) == SECRET_A


def test_resource_without_a_token_is_refused(sqlite_service: Service) -> None:
    r = httpx.get(f"{sqlite_service.url}/kbs/v0/resource/apps/a/key")
    assert r.status_code == 401 and r.json()["type"] == ERR + "TokenNotFound"


def test_challenge_cookie_alone_releases_nothing(sqlite_service: Service,
                                                 guests: Guests) -> None:
    with _kbs(sqlite_service, guests.a) as kbs:
        kbs.auth()
        r = kbs._http.get(f"{sqlite_service.url}/kbs/v0/resource/apps/a/key")
    assert r.status_code == 401 and r.json()["type"] == ERR + "TokenNotFound"


def test_expired_token_is_refused(sqlite_service: Service, guests: Guests) -> None:
    with _kbs(sqlite_service, guests.a) as kbs:
        token = kbs.attest()
        sqlite_service.clock.offset += 3600
        r = httpx.get(f"{sqlite_service.url}/kbs/v0/resource/apps/a/key",
                      headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401 and r.json()["code"] == "token.expired"
        r = kbs._http.get(f"{sqlite_service.url}/kbs/v0/resource/apps/a/key")
    assert r.status_code == 401 and r.json()["code"] == "kbs.session.expired"


def test_forged_token_is_refused(sqlite_service: Service, guests: Guests) -> None:
    with _kbs(sqlite_service, guests.a) as kbs:
        token = kbs.attest()
    head, body, sig = token.split(".")
    r = httpx.get(f"{sqlite_service.url}/kbs/v0/resource/apps/a/key",
                  headers={"Authorization": f"Bearer {head}.{body}.{sig[::-1]}"})
    assert r.status_code == 401 and r.json()["type"] == ERR + "TokenVerifierError"


@pytest.mark.parametrize("path,name", [("apps/a/missing", "ResourceNotFound"),
                                        ("apps/a", "InvalidRequestPath"),
                                        ("a/b/c/d", "InvalidRequestPath")])
def test_missing_resources_and_bad_paths_are_404(sqlite_service: Service, guests: Guests,
                                                 path: str, name: str) -> None:
    with _kbs(sqlite_service, guests.a) as kbs:
        kbs.attest()
        r = kbs._http.get(f"{sqlite_service.url}/kbs/v0/resource/{path}")
    assert r.status_code == 404 and r.json()["type"] == ERR + name


def test_response_is_a_flattened_jwe_readable_only_with_the_tee_key(
        sqlite_service: Service, guests: Guests) -> None:
    with _kbs(sqlite_service, guests.a) as kbs:
        token = kbs.attest()
        r = kbs._http.get(f"{sqlite_service.url}/kbs/v0/resource/apps/a/key")
        assert kbs._key is not None
        plain, header = decrypt_response(r.json(), kbs._key)
    assert plain == SECRET_A and r.headers["cache-control"] == "no-store"
    assert set(r.json()) == {"protected", "encrypted_key", "iv", "ciphertext", "tag"}
    assert header["alg"] == "ECDH-ES+A256KW" and header["enc"] == "A256GCM"
    assert header["epk"]["crv"] == "P-256" and header["veritee.resource"] == "apps/a/key"
    # A stolen token fetches a response nobody but the TEE can read.
    stolen = httpx.get(f"{sqlite_service.url}/kbs/v0/resource/apps/a/key",
                       headers={"Authorization": f"Bearer {token}"}).json()
    with pytest.raises(VerificationError):
        decrypt_response(stolen, ec.generate_private_key(ec.SECP256R1()))
    # A changed protected header fails the tag (it is the AAD).
    forged = dict(r.json())
    hdr = json.loads(base64.urlsafe_b64decode(forged["protected"] + "=="))
    hdr["veritee.resource"] = "apps/b/password"
    forged["protected"] = base64.urlsafe_b64encode(json.dumps(hdr).encode()).rstrip(
        b"=").decode()
    with pytest.raises(VerificationError):
        decrypt_response(forged, kbs._key)


def test_resource_stored_once_is_reachable_from_both_fronts(sqlite_service: Service,
                                                            guests: Guests) -> None:
    with _kbs(sqlite_service, guests.a) as kbs:
        via_kbs = kbs.get_resource("apps/a/key")
    with AttesterClient(sqlite_service.url, guests.a, dev_mode=True) as v1:
        via_v1 = v1.fetch("apps/a/key")
    assert via_kbs == via_v1 == SECRET_A
    metrics = httpx.get(f"{sqlite_service.url}/metrics").text
    assert 'route="/kbs/v0/attest"' in metrics


def test_cli_kbs_get_protocol_coco(sqlite_service: Service, tmp_path: Path,
                                   machine: InsecureEmulatedSnpMachine,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from veritee.cli import main

    state = tmp_path / "guest-machine"
    InsecureEmulatedSnpMachine(machine.vendor).save(state)
    assert main(["kbs", "measurement", "--state", str(state)]) == 0
    measurement = bytes.fromhex(capsys.readouterr().out.strip())
    r = sqlite_service.http.put(f"{sqlite_service.url}/v1/admin/reference-values/cli",
                                headers=sqlite_service.admin_headers(),
                                json={"kind": "measurement", "value": measurement.hex()})
    assert r.status_code == 201, r.text
    _put(sqlite_service, "default/disk/key", b"disk key 42", measurement)
    out = tmp_path / "secret.bin"
    assert main(["kbs", "get", "default/disk/key", "--protocol", "coco", "--url",
                 sqlite_service.url, "--state", str(state), "--out", str(out),
                 "--dev-mode"]) == 0
    assert out.read_bytes() == b"disk key 42"


# -- an emulated TDX TD through /kbs/v0 (main's emulated Intel platform) ------------------------
def test_emulated_tdx_td_fetches_through_kbs_v0_and_a_wrong_td_is_refused(
        service_factory: Callable[..., Service], tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor
    from veritee.platform.emulated.tdx import InsecureEmulatedTdxMachine

    vendor = EmulatedIntelVendor.generate(now=datetime.now(UTC))
    tdx = InsecureEmulatedTdxMachine(vendor, cpu=EmulatedIntelCpu(vendor))
    td = tdx.launch(b"TDVF for the KBS test".ljust(8192, b"\0"))
    other = tdx.launch(b"another TDVF".ljust(8192, b"\0"))
    col = tmp_path / "intel"
    vendor.write_collateral(col, "TDX", datetime.now(UTC))
    svc = service_factory(f"sqlite:///{tmp_path}/tdx.db", intel_collateral_dir=str(col),
                          intel_trust_roots=(str(col / "root_ca.pem"),))
    r = svc.http.put(f"{svc.url}/v1/admin/resources/tds/db/key", headers=svc.admin_headers(),
                     json={"secret": base64.b64encode(b"TD key").decode(),
                           "policy": {"mrtd": [td.mr_td.hex()]}})
    assert r.status_code == 200, r.text
    with CocoKbsClient(svc.url, td, dev_mode=True, tee="tdx") as kbs:
        assert kbs.get_resource("tds/db/key") == b"TD key"
    with CocoKbsClient(svc.url, other, dev_mode=True, tee="tdx") as kbs, \
            pytest.raises(ServiceRefused) as exc:
        kbs.get_resource("tds/db/key")
    assert _refusal(exc, 403, "PolicyDeny")["code"] == "resource.policy"
