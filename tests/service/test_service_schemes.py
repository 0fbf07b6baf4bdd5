"""The service's front door is the scheme registry: per-scheme policies and reference values,
composite evidence (one EAR, a submod per attester), revocation required by default (issue 18),
and the one error table.

Composite tests use two SEV-SNP attesters (the CPU and a second SNP guest standing in for a
device): the NVIDIA scheme and its fake signer are written in parallel (issue 11); the
composite path is scheme-agnostic, so an NVIDIA part goes through it unchanged.
"""

from __future__ import annotations

import ast
import base64
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, Request, Response

from veritee.client import AttesterClient, ServiceRefused, evidence_for
from veritee.errors import ConfigError, VerificationError
from veritee.findings import Outcome
from veritee.results import (
    MAX_SUBMODS,
    TIERS,
    EarResult,
    composite_ear_claims,
    sign_ear,
    verify_ear,
    worst_status,
)
from veritee.service import problems
from veritee.service.resource_policy import ResourcePolicy
from veritee.service.settings import settings_from_mapping

from _service_support import SECRET_A, Guests, Service, challenge_nonce, crl_dir, provision

SRC = Path(__file__).resolve().parents[2] / "src" / "veritee" / "service"


def _svc(factory: Callable[..., Service], tmp_path: Path, guests: Guests | None = None,
         **kw: Any) -> Service:
    svc = factory(f"sqlite:///{tmp_path}/veritee.db", **kw)
    if guests is not None:
        provision(svc, guests)
    return svc


def _jwks(svc: Service) -> dict[str, Any]:
    body: dict[str, Any] = svc.http.get(f"{svc.url}/v1/jwks").json()
    return body


def _codes(r: Any) -> list[str]:
    return [f["code"] for f in r.json().get("failures", [])]


# -- composite evidence ----------------------------------------------------------------------
def test_composite_evidence_gets_one_ear_with_a_submod_per_attester(
        service_factory: Callable[..., Service], tmp_path: Path, guests: Guests) -> None:
    svc = _svc(service_factory, tmp_path, guests)
    with AttesterClient(svc.url, guests.a, dev_mode=True, devices=[guests.b]) as client:
        passport = client.attest()
        assert client.get_resource("apps/a/key", passport) == SECRET_A
    ear = verify_ear(passport.token, _jwks(svc))
    assert list(ear.submods) == ["sevsnp", "sevsnp-2"]
    assert ear.status == "affirming" and ear.tee == "sevsnp"
    assert ear.verified_claims["measurement"] == guests.a.measurement.hex()
    second = ear.submods["sevsnp-2"]["veritee.verified-claims"]
    assert second["measurement"] == guests.b.measurement.hex()
    assert ear.submod["veritee.trace"]["sevsnp.binding.mismatch"] == "pass"
    # A device's trace keeps only what did not pass (the token travels in a header).
    assert "sevsnp.binding.mismatch" not in ear.submods["sevsnp-2"]["veritee.trace"]
    accepted = [r for r in svc.audit() if r.event == "attestation" and r.outcome == "accepted"]
    assert [p["submod"] for p in accepted[-1].detail["parts"]] == ["sevsnp", "sevsnp-2"]


def test_composite_with_a_rejected_device_is_refused_and_the_ear_says_which(
        service_factory: Callable[..., Service], tmp_path: Path, guests: Guests) -> None:
    svc = _svc(service_factory, tmp_path, guests)
    with AttesterClient(svc.url, guests.a, dev_mode=True, devices=[guests.debug]) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert [f["code"] for f in info.value.problem["failures"]] == ["sevsnp.policy.debug"]
    ear = verify_ear(info.value.problem["ear"], _jwks(svc), accept=TIERS)
    assert ear.submods["sevsnp"]["ear.status"] == "affirming"
    assert ear.submods["sevsnp-2"]["ear.status"] == "contraindicated"
    assert ear.status == "contraindicated"  # the worst of the parts


def test_device_evidence_bound_to_another_challenge_is_refused(
        service_factory: Callable[..., Service], tmp_path: Path, guests: Guests) -> None:
    svc = _svc(service_factory, tmp_path, guests)
    key = ec.generate_private_key(ec.SECP384R1())
    body = evidence_for(guests.a, challenge_nonce(svc), key, devices=[guests.b])
    stale = evidence_for(guests.a, challenge_nonce(svc), key, devices=[guests.b])
    body["additional_evidence"] = stale["additional_evidence"]  # a replayed device report
    r = svc.http.post(f"{svc.url}/v1/attest", json=body)
    assert r.status_code == 403 and _codes(r) == ["sevsnp.binding.mismatch"]


def test_too_many_devices_are_refused(service_factory: Callable[..., Service],
                                      tmp_path: Path, guests: Guests) -> None:
    svc = _svc(service_factory, tmp_path, guests)
    key = ec.generate_private_key(ec.SECP384R1())
    body = evidence_for(guests.a, challenge_nonce(svc), key)
    body["additional_evidence"] = [{"evidence": body["evidence"]}] * 16
    r = svc.http.post(f"{svc.url}/v1/attest", json=body)
    assert r.status_code in (400, 422)


def test_unknown_scheme_name_is_a_400_naming_it(service_factory: Callable[..., Service],
                                                tmp_path: Path, guests: Guests) -> None:
    svc = _svc(service_factory, tmp_path, guests)
    body = evidence_for(guests.a, challenge_nonce(svc), ec.generate_private_key(ec.SECP384R1()))
    r = svc.http.post(f"{svc.url}/v1/attest", json={**body, "scheme": "nosuchtee"})
    assert r.status_code == 400 and "nosuchtee" in r.json()["detail"]
    assert svc.refusals()[-1].detail["code"] == "request.invalid"


def test_attached_and_its_old_name_cert_table_are_the_same(
        service_factory: Callable[..., Service], tmp_path: Path, guests: Guests) -> None:
    svc = _svc(service_factory, tmp_path, guests)
    key = ec.generate_private_key(ec.SECP384R1())
    body = evidence_for(guests.a, challenge_nonce(svc), key)
    body["cert_table"] = body.pop("attached")
    assert svc.http.post(f"{svc.url}/v1/attest", json=body).status_code == 200
    body = evidence_for(guests.a, challenge_nonce(svc), key)
    body["cert_table"] = body["attached"]
    assert svc.http.post(f"{svc.url}/v1/attest", json=body).status_code == 400


# -- per-scheme appraisal policies and reference values --------------------------------------
def test_policy_documents_per_scheme_through_the_admin_api(
        service_factory: Callable[..., Service], tmp_path: Path, guests: Guests) -> None:
    svc = _svc(service_factory, tmp_path, guests)
    h = svc.admin_headers()
    base = f"{svc.url}/v1/admin/policies"
    r = svc.http.put(f"{base}/snp-x", headers=h, json={"scheme": "sevsnp", "allow_degub": True})
    assert r.status_code == 400 and "allow_degub" in r.json()["detail"]
    r = svc.http.put(f"{base}/td-x", headers=h, json={"scheme": "tdx", "mrtdd": []})
    assert r.status_code == 400 and "mrtdd" in r.json()["detail"]
    r = svc.http.put(f"{base}/x", headers=h, json={"scheme": "nosuchtee"})
    assert r.status_code == 400 and "scheme" in r.json()["detail"]
    r = svc.http.put(f"{base}/tdx-default", headers=h,
                     json={"scheme": "tdx", "allowed_tcb_statuses": ["UpToDate"]})
    assert r.status_code == 201, r.text
    assert r.json()["scheme"] == "tdx"
    doc = svc.http.get(f"{base}/tdx-default", headers=h).json()
    assert doc["scheme"] == "tdx" and doc["allowed_tcb_statuses"] == ["UpToDate"]
    listed = svc.http.get(base, headers=h).json()
    assert listed["active_by_scheme"]["tdx"] == "tdx-default"
    assert listed["active_by_scheme"]["sevsnp"] == "default"
    # An SEV-SNP document without "scheme" (as before schemes) is still an SEV-SNP policy.
    r = svc.http.put(f"{base}/default", headers=h, json={"allow_debug": True})
    assert r.status_code == 201 and r.json()["scheme"] == "sevsnp"
    key = ec.generate_private_key(ec.SECP384R1())
    r = svc.http.post(f"{svc.url}/v1/attest",
                      json=evidence_for(guests.debug, challenge_nonce(svc), key))
    # The stored policy allows debug: accepted, though the vector still says the memory is
    # readable (runtime-opaque contraindicated), so no resource opens with it.
    assert r.status_code == 200 and r.json()["status"] == "contraindicated", r.text


def test_a_policy_of_another_scheme_is_not_used_for_this_scheme(
        service_factory: Callable[..., Service], tmp_path: Path, guests: Guests) -> None:
    """appraisal_policies names a tdx document for sevsnp: refused, not silently used."""
    svc = _svc(service_factory, tmp_path, guests,
               appraisal_policies={"sevsnp": "td-policy"})
    r = svc.http.put(f"{svc.url}/v1/admin/policies/td-policy", headers=svc.admin_headers(),
                     json={"scheme": "tdx"})
    assert r.status_code == 201, r.text
    with AttesterClient(svc.url, guests.a, dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert info.value.status == 400 and "appraisal_policies.sevsnp" in info.value.problem[
        "detail"]


def test_reference_value_of_one_scheme_never_matches_another_schemes_evidence(
        service_factory: Callable[..., Service], tmp_path: Path, guests: Guests) -> None:
    svc = service_factory(f"sqlite:///{tmp_path}/veritee.db")
    h = svc.admin_headers()
    refs = f"{svc.url}/v1/admin/reference-values"
    # Guest A's launch digest stored as a TDX MRTD (also 48 bytes), guest B's as SEV-SNP.
    r = svc.http.put(f"{refs}/a-as-td", headers=h, json={
        "scheme": "tdx", "kind": "measurement", "value": guests.a.measurement.hex()})
    assert r.status_code == 201, r.text
    r = svc.http.put(f"{refs}/b", headers=h, json={"value": guests.b.measurement.hex()})
    assert r.status_code == 201, r.text
    listed = svc.http.get(refs, headers=h).json()["reference_values"]
    assert {(x["name"], x["scheme"]) for x in listed} == {("a-as-td", "tdx"), ("b", "sevsnp")}
    with AttesterClient(svc.url, guests.a, dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert [f["code"] for f in info.value.problem["failures"]] == [
        "sevsnp.measurement.mismatch"]
    with AttesterClient(svc.url, guests.b, dev_mode=True) as client:
        assert client.attest().status == "affirming"


@pytest.mark.parametrize(("body", "named"), [
    ({"scheme": "tdx", "value": "ab" * 32}, "value"),
    ({"scheme": "sevsnp", "value": "ab" * 47}, "value"),
    ({"value": "zz" * 48}, "value"),
    ({"scheme": "nosuchtee", "value": "ab" * 48}, "scheme"),
    ({"scheme": "sevsnp", "value": "ab" * 48, "colour": "red"}, "body"),
])
def test_reference_value_size_is_checked_per_scheme(
        service_factory: Callable[..., Service], tmp_path: Path, body: dict[str, Any],
        named: str) -> None:
    svc = service_factory(f"sqlite:///{tmp_path}/veritee.db")
    r = svc.http.put(f"{svc.url}/v1/admin/reference-values/x", headers=svc.admin_headers(),
                     json=body)
    assert r.status_code == 400 and r.json()["detail"].startswith(named), r.text


def test_moving_a_reference_value_to_another_scheme_in_the_database_is_detected(
        service_factory: Callable[..., Service], tmp_path: Path, guests: Guests) -> None:
    svc = service_factory(f"sqlite:///{tmp_path}/veritee.db")
    r = svc.http.put(f"{svc.url}/v1/admin/reference-values/a", headers=svc.admin_headers(),
                     json={"scheme": "tdx", "value": guests.a.measurement.hex()})
    assert r.status_code == 201
    with svc.store.transaction() as tx:
        tx.execute("UPDATE reference_values SET scheme = 'sevsnp' WHERE name = 'a'", ())
    r = svc.http.get(f"{svc.url}/v1/admin/reference-values", headers=svc.admin_headers())
    assert r.status_code == 500 and r.json()["code"] == "state.integrity"


# -- revocation (issue 18) --------------------------------------------------------------------
def test_without_a_crl_source_snp_evidence_is_refused_by_default(
        service_factory: Callable[..., Service], tmp_path: Path, guests: Guests) -> None:
    svc = _svc(service_factory, tmp_path, guests, amd_crl_dir=None)
    with AttesterClient(svc.url, guests.a, dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert (info.value.status, info.value.code) == (422, "evidence.collateral")
    assert "CRL" in info.value.problem["detail"]


def test_with_revocation_waived_the_ear_does_not_affirm_hardware(
        service_factory: Callable[..., Service], tmp_path: Path, guests: Guests) -> None:
    svc = _svc(service_factory, tmp_path, guests, require_crl=False)
    key = ec.generate_private_key(ec.SECP384R1())
    r = svc.http.post(f"{svc.url}/v1/attest",
                      json=evidence_for(guests.a, challenge_nonce(svc), key))
    assert r.status_code == 200, r.text
    ear = verify_ear(r.json()["token"], _jwks(svc), accept=TIERS)
    assert ear.submod["veritee.trace"]["sevsnp.revocation.unchecked"] == "skip"
    assert ear.submod["ear.trustworthiness-vector"]["hardware"] == 0
    assert ear.status == "none"  # hardware is a required claim: not affirming


def test_with_a_crl_the_ear_affirms_hardware(
        service_factory: Callable[..., Service], tmp_path: Path, guests: Guests) -> None:
    svc = _svc(service_factory, tmp_path, guests)
    key = ec.generate_private_key(ec.SECP384R1())
    r = svc.http.post(f"{svc.url}/v1/attest",
                      json=evidence_for(guests.a, challenge_nonce(svc), key))
    ear = verify_ear(r.json()["token"], _jwks(svc))
    assert ear.submod["veritee.trace"]["sevsnp.revocation.unchecked"] == "pass"
    assert ear.submod["ear.trustworthiness-vector"]["hardware"] == 2


def test_a_revoked_ask_is_refused(service_factory: Callable[..., Service], tmp_path: Path,
                                  guests: Guests) -> None:
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives.serialization import Encoding

    machine = guests.a.machine
    revoked = machine.vendor.crl(datetime.now(UTC), revoked=[machine.vendor.ask.serial_number])
    d = tmp_path / "crl"
    d.mkdir()
    (d / "ark.crl").write_bytes(revoked.public_bytes(Encoding.PEM))
    svc = _svc(service_factory, tmp_path, guests, amd_crl_dir=str(d))
    with AttesterClient(svc.url, guests.a, dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert info.value.status == 403 and "revoked" in info.value.code


def test_require_crl_off_is_refused_outside_dev_mode(tmp_path: Path) -> None:
    base = {"key_source": "file", "master_key_file": str(tmp_path / "k")}
    assert settings_from_mapping(base).require_crl is True
    with pytest.raises(ConfigError, match="require_crl"):
        settings_from_mapping({**base, "require_crl": False})
    assert settings_from_mapping({**base, "require_crl": False, "dev_mode": True,
                                  "emulated_machine_dir": str(tmp_path)}).require_crl is False


def test_settings_name_a_policy_per_scheme(tmp_path: Path) -> None:
    base = {"dev_mode": True, "emulated_machine_dir": str(tmp_path)}
    s = settings_from_mapping({**base, "appraisal_policies": {"sevsnp": "p1", "tdx": "p2"}})
    assert s.appraisal_policies == {"sevsnp": "p1", "tdx": "p2"}
    s = settings_from_mapping(base, env={"VERITEE_APPRAISAL_POLICIES": "sevsnp=a,tdx=b"})
    assert s.appraisal_policies == {"sevsnp": "a", "tdx": "b"}
    for bad in ({"sevsnp": 1}, ["sevsnp"], {"": "x"}):
        with pytest.raises(ConfigError, match="appraisal_policies"):
            settings_from_mapping({**base, "appraisal_policies": bad})
    with pytest.raises(ConfigError, match="amd_crl_dir"):
        from veritee.service.core import _collateral

        _collateral(settings_from_mapping({**base, "amd_crl_dir": str(tmp_path)}), None)


# -- resource policies per scheme -------------------------------------------------------------
def _token(*subs: tuple[str, dict[str, Any]], status: str = "affirming") -> EarResult:
    submods = {}
    for name, claims in subs:
        submods[name] = {"ear.status": status, "ear.appraisal-policy-id": "p",
                         "veritee.verified-claims": claims}
    return EarResult(header={}, claims={"submods": submods})


def _failed(policy: dict[str, Any], token: EarResult) -> list[str]:
    parsed = ResourcePolicy.from_mapping(policy)
    failed = [f for f in parsed.evaluate(token) if f.outcome is Outcome.FAIL]
    # What a release evaluates: the same checks, only the failures listed, in the same order
    # with the same got/want (every case below checks both forms).
    assert parsed.evaluate(token, failures_only=True) == failed
    return [f.code for f in failed]


M = "ab" * 48
SNP = ("sevsnp", {"tee": "sevsnp", "measurement": M, "debug": False, "guest_svn": 0,
                  "guest_policy": {"debug": False}})
TD = ("tdx", {"tee": "tdx", "measurement": M, "mrtd": M, "debug": False,
              "td_attributes": "00" * 8})
GPU = ("nvidia", {"tee": "nvidia", "measurement": "cd" * 48, "debug": False})


class _Counted(frozenset[str]):
    """An allow-list that counts how often it is walked (sorting walks it)."""

    walks = 0

    def __iter__(self) -> Iterator[str]:
        type(self).walks += 1
        return super().__iter__()


@pytest.mark.parametrize("field, claim", [("measurements", "measurement"), ("mrtd", "mrtd"),
                                          ("chip_ids", "chip_id")])
def test_an_allow_list_is_listed_only_in_a_finding(field: str, claim: str) -> None:
    """A fleet's allow-list is not sorted for a release that passes (failures only); a
    finding lists it sorted, as before, whenever one is made."""
    tee, base = (TD if field == "mrtd" else SNP)
    digest = hashlib.sha512 if field == "chip_ids" else hashlib.sha384  # 64 or 48 bytes
    fleet = [digest(b"%d" % i).hexdigest() for i in range(1000)]
    allowed = _Counted(fleet)
    doc: dict[str, Any] = {field: fleet[:1]}
    if field == "chip_ids":  # chip ids alone pin no workload: the measurement beside them
        doc["measurements"] = [M]
    policy = replace(ResourcePolicy.from_mapping(doc), **{field: allowed})
    ok = _token((tee, {**base, claim: fleet[7]}))
    _Counted.walks = 0
    assert policy.evaluate(ok, failures_only=True) == []
    assert _Counted.walks == 0
    passed = [f for f in policy.evaluate(ok) if f.code.endswith(".mismatch") and f.field == claim]
    assert passed[0].outcome is Outcome.PASS and passed[0].want == sorted(fleet)
    bad = _token((tee, {**base, claim: digest(b"not in the fleet").hexdigest()}))
    failed = policy.evaluate(bad, failures_only=True)
    assert [f.want for f in failed if f.field == claim] == [sorted(fleet)]


def test_workload_pins_apply_to_their_scheme_only() -> None:
    assert _failed({"workloads": {"sevsnp": {"measurement": [M]}}}, _token(SNP)) == []
    assert _failed({"workloads": {"tdx": {"measurement": ["0x" + M.upper()]}}},
                   _token(TD)) == []
    # The same digest pinned for TDX never opens the resource to an SEV-SNP guest.
    assert _failed({"workloads": {"tdx": {"measurement": [M]}}}, _token(SNP)) == [
        "resource.measurement.mismatch", "resource.workload.absent"]
    assert _failed({"workloads": {"sevsnp": {"measurement": ["ef" * 48]}}},
                   _token(SNP)) == ["resource.claim.mismatch"]
    assert _failed({"workloads": {"sevsnp": {"no_such_claim": ["x"]}}},
                   _token(SNP)) == ["resource.claim.mismatch"]


def test_workload_pins_over_a_composite_token() -> None:
    policy = {"workloads": {"sevsnp": {"measurement": [M]},
                            "nvidia": {"measurement": ["cd" * 48]}}}
    assert _failed(policy, _token(SNP, GPU)) == []
    assert _failed(policy, _token(SNP)) == ["resource.workload.absent"]
    debug_gpu = ("nvidia", {**GPU[1], "debug": True})
    assert _failed(policy, _token(SNP, debug_gpu)) == ["resource.debug"]
    assert _failed({**policy, "allow_debug": True}, _token(SNP, debug_gpu)) == []
    assert _failed(policy, _token(SNP, GPU, status="warning")) == [
        "resource.status.insufficient"]


def test_a_new_scheme_token_needs_a_workload_pin() -> None:
    nitro = ("nitro", {"tee": "nitro", "measurement": M, "debug": False})
    assert "resource.tee.unsupported" in _failed({"allow_any_workload": True}, _token(nitro))
    assert _failed({"workloads": {"nitro": {"measurement": [M]}}}, _token(nitro)) == []


@pytest.mark.parametrize(("doc", "key"), [
    ({"workloads": {}}, "policy.workloads"),
    ({"workloads": {"tdx": {}}}, "policy.workloads.tdx"),
    ({"workloads": {"tdx": {"measurement": []}}}, "policy.workloads.tdx.measurement"),
    ({"workloads": {"tdx": {"measurement": [{"x": 1}]}}}, "policy.workloads.tdx.measurement"),
    ({"workloads": {"tdx": ["measurement"]}}, "policy.workloads.tdx"),
])
def test_bad_workload_pins_name_the_key(doc: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ResourcePolicy.from_mapping(doc)


def test_workload_policy_round_trips() -> None:
    policy = ResourcePolicy.from_mapping({"workloads": {"tdx": {"measurement": [M],
                                                                "debug": [False]}}})
    assert ResourcePolicy.from_mapping(policy.to_mapping()) == policy


def test_resource_with_an_unknown_scheme_pin_is_refused_by_the_admin_api(
        service_factory: Callable[..., Service], tmp_path: Path) -> None:
    svc = service_factory(f"sqlite:///{tmp_path}/veritee.db")
    r = svc.http.put(f"{svc.url}/v1/admin/resources/x/y", headers=svc.admin_headers(),
                     json={"secret": "eA==", "policy": {"workloads": {"nosuchtee": {
                         "measurement": [M]}}}})
    assert r.status_code == 400 and "policy.workloads.nosuchtee" in r.json()["detail"]


def test_a_composite_token_gets_a_resource_pinned_per_scheme(
        service_factory: Callable[..., Service], tmp_path: Path, guests: Guests) -> None:
    """A pin holds for *every* attester of its scheme in the token."""
    svc = _svc(service_factory, tmp_path, guests)
    r = svc.http.put(f"{svc.url}/v1/admin/resources/gpu/model", headers=svc.admin_headers(),
                     json={"secret": base64.b64encode(b"weights key").decode(),
                           "policy": {"workloads": {"sevsnp": {"measurement": [
                               guests.a.measurement.hex(), guests.b.measurement.hex()]}}}})
    assert r.status_code == 200, r.text
    with AttesterClient(svc.url, guests.a, dev_mode=True, devices=[guests.b]) as client:
        assert client.get_resource("gpu/model", client.attest()) == b"weights key"
    # Guest C is genuine and passes the appraisal (no reference values pin it? they do: A, B
    # are the reference values, so C as a device is refused at attestation already).
    with AttesterClient(svc.url, guests.a, dev_mode=True, devices=[guests.unknown]) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert [f["code"] for f in info.value.problem["failures"]] == [
        "sevsnp.measurement.mismatch"]


def test_every_attester_of_a_pinned_scheme_must_match() -> None:
    other = ("sevsnp-2", {**SNP[1], "measurement": "ef" * 48})
    policy = {"workloads": {"sevsnp": {"measurement": [M]}}}
    assert _failed(policy, _token(SNP, other)) == ["resource.claim.mismatch"]
    findings = ResourcePolicy.from_mapping(policy).evaluate(_token(SNP, other))
    assert [f.field for f in findings if f.outcome is Outcome.FAIL] == ["sevsnp-2.measurement"]


# -- EAR with several submods -----------------------------------------------------------------
def _appraisal(tee: str, accepted: bool) -> Any:
    from veritee.findings import Finding
    from veritee.policy import Appraisal

    finding = Finding(f"{tee}.debug", Outcome.PASS if accepted else Outcome.FAIL, "debug")
    return Appraisal(tee=tee, policy_id=f"{tee}-p", findings=(finding,),
                     vector={"hardware": 2, "instance-identity": 2, "configuration": 2,
                             "runtime-opaque": 2})


def test_verify_ear_takes_several_submods_and_reports_the_worst() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    from veritee.results import public_jwk

    jwks = {"keys": [public_jwk(key, kid="k", alg="ES256")]}
    parts = [_appraisal("sevsnp", True), _appraisal("nvidia", True),
             _appraisal("nvidia", False)]
    claims = composite_ear_claims(parts, issuer="v", now=1000, ttl=60)
    assert list(claims["submods"]) == ["sevsnp", "nvidia", "nvidia-2"]
    token = sign_ear(claims, key, kid="k")
    with pytest.raises(VerificationError, match="contraindicated"):
        verify_ear(token, jwks, now=1001)
    ear = verify_ear(token, jwks, now=1001, accept=TIERS)
    assert ear.status == "contraindicated" and ear.tee == "sevsnp"
    ok = sign_ear(composite_ear_claims(parts[:2], issuer="v", now=1000, ttl=60), key, kid="k")
    assert verify_ear(ok, jwks, now=1001).status == "affirming"
    too_many = composite_ear_claims(parts[:1], issuer="v", now=1000, ttl=60)
    too_many["submods"] = {f"s{i}": too_many["submods"]["sevsnp"]
                           for i in range(MAX_SUBMODS + 1)}
    with pytest.raises(VerificationError, match="submods"):
        verify_ear(sign_ear(too_many, key, kid="k"), jwks, now=1001, accept=TIERS)
    assert worst_status(["affirming", "none", "warning"]) == "warning"
    assert worst_status(["affirming", "none"]) == "none"


# -- one error table ----------------------------------------------------------------------------
def test_every_service_error_gets_its_status_from_the_one_table() -> None:
    expected = {problems.InvalidRequest: 400, problems.NonceRejected: 403,
                problems.AttestationRejected: 403, problems.Unauthenticated: 401,
                problems.Forbidden: 403, problems.NotFound: 404, problems.ResourceRefused: 403}
    for cls, status in expected.items():
        err = cls("x.y", "detail") if cls is not problems.InvalidRequest else cls("detail")
        assert err.status == status and problems.problem_for(err) is err
    assert problems.problem_for(VerificationError("sevsnp.report.signature", "bad")).status == 403
    assert problems.problem_for(ConfigError("k: bad")).code == "request.invalid"


def test_core_builds_no_problem_itself_and_admin_routes_use_the_broker() -> None:
    tree = ast.parse((SRC / "core.py").read_text())
    built = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name) and n.func.id == "Problem"]
    assert built == [], f"core.py builds Problem(...) at lines {built}"
    app = (SRC / "app.py").read_text()
    admin = app[app.index("def _admin_routes"):]
    assert "broker.store" not in admin and "tx." not in admin


def test_no_tee_branches_in_the_service() -> None:
    """Everything per scheme comes from veritee.schemes (the TDX adapter aside, until the
    tdx scheme lands): no TEE comparisons, no TEE policy modules in core/app."""
    for name in ("core.py", "app.py"):
        text = (SRC / name).read_text()
        for tee in ("sevsnp", "tdx", "sgx", "nitro", "nvidia", "tpm"):
            assert f'tee == "{tee}"' not in text, (name, tee)
        assert "policy.sevsnp" not in text and "policy.intel" not in text, name
        assert "is_intel_quote" not in text, name
    # The broker imports no TEE module (formats, trust, per-TEE policy) at all at module level.
    tree = ast.parse((SRC / "core.py").read_text())
    top = [n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.module]
    tee = [m for m in top if m.startswith(("veritee.formats", "veritee.trust",
                                           "veritee.policy.", "veritee.platform"))]
    assert tee == [], tee


def test_crl_dir_helper_writes_a_loadable_crl(tmp_path: Path, guests: Guests) -> None:
    d = Path(crl_dir(guests.a.machine.vendor, tmp_path / "c"))
    assert (d / "ark.crl").read_bytes().startswith(b"-----BEGIN X509 CRL-----")


# -- the KDS as the SEV-SNP CRL source -------------------------------------------------------
def _fake_kds(guests: Guests, revoked: tuple[int, ...] = ()) -> tuple[Any, list[str]]:
    """A loopback KDS serving the emulated vendor's chain, VCEKs and CRL; records requests."""
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives.serialization import Encoding

    from veritee.service.server import LoopbackServer

    machine = guests.a.machine
    vendor = machine.vendor
    seen: list[str] = []
    kds = FastAPI()

    @kds.get("/vcek/v1/{product}/{what}")
    def serve(product: str, what: str, request: Request) -> Response:
        seen.append(f"{what}?{request.url.query}" if request.url.query else what)
        if what == "cert_chain":
            return Response(vendor.ask.public_bytes(Encoding.PEM)
                            + vendor.ark.public_bytes(Encoding.PEM))
        if what == "crl":
            return Response(vendor.crl(datetime.now(UTC), revoked=revoked).public_bytes(
                Encoding.DER))
        return Response(machine.vcek_certificate().public_bytes(Encoding.DER))

    return LoopbackServer(kds).start(), seen


@pytest.mark.parametrize("revoke", [False, True])
def test_the_kds_is_a_crl_source(service_factory: Callable[..., Service], tmp_path: Path,
                                 guests: Guests, revoke: bool) -> None:
    revoked = (guests.a.machine.vendor.ask.serial_number,) if revoke else ()
    kds, seen = _fake_kds(guests, revoked)
    try:
        svc = _svc(service_factory, tmp_path, guests, amd_crl_dir=None, amd_kds=True,
                   amd_kds_url=kds.url, amd_kds_cache_dir=str(tmp_path / "kds-cache"))
        with AttesterClient(svc.url, guests.a, dev_mode=True) as client:
            if revoke:
                with pytest.raises(ServiceRefused) as info:
                    client.attest()
                assert "revoked" in info.value.code
            else:
                ear = verify_ear(client.attest().token, _jwks(svc))
                trace = ear.submod["veritee.trace"]
                assert trace["sevsnp.revocation.unchecked"] == "pass"
        assert "crl" in seen
    finally:
        kds.stop()


def test_debug_claim_of_a_new_scheme_fails_closed_unless_the_tee_has_none() -> None:
    pin = {"workloads": {"tpm": {"ak_binding": ["credential-activation"]}}}
    base = {"tee": "tpm", "ak_binding": "credential-activation"}
    assert _failed(pin, _token(("tpm", {**base, "debug": None}))) == []  # no debug state
    assert _failed(pin, _token(("tpm", {**base, "debug": True}))) == ["resource.debug"]
    assert _failed(pin, _token(("tpm", base))) == ["resource.debug"]  # claim missing
    assert _failed(pin, _token(("tpm", {**base, "debug": "no"}))) == ["resource.debug"]


def test_another_front_calls_attest_parts_with_decoded_parts(
        service_factory: Callable[..., Service], tmp_path: Path, guests: Guests) -> None:
    """What the KBS front calls: parts as bytes, its own raw binding, one attester only."""
    from joserfc.jwk import ECKey

    from veritee.attest import EvidencePart
    from veritee.service.core import Broker

    svc = _svc(service_factory, tmp_path, guests)
    broker: Broker = svc.app.state.broker
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = ECKey.import_key(key.public_key()).as_dict(private=False)
    binding = b"\x5a" * 64  # the front's own rule (e.g. a hash of its runtime data)
    report, table = guests.a.extended_report(binding)
    out = broker.attest_parts([EvidencePart(report, "sevsnp", table)], broker.challenge().nonce,
                              jwk, binding=binding, front="kbs")
    assert out.result.status == "affirming"
    assert svc.audit()[-1].detail["front"] == "kbs"
    with pytest.raises(problems.InvalidRequest):
        broker.attest_parts([EvidencePart(report, "sevsnp", table)] * 2,
                            broker.challenge().nonce, jwk, binding=binding, front="kbs")
    assert svc.refusals()[-1].detail["code"] == "request.invalid"


def test_the_broker_parses_a_certificate_table_once(
        service_factory: Callable[..., Service], tmp_path: Path, guests: Guests) -> None:
    """The warm path: every guest on a chip sends the same table (the scheme's cache)."""
    from veritee.schemes.sevsnp import SevSnpCache

    svc = _svc(service_factory, tmp_path, guests)
    cache = svc.app.state.broker.verifier.caches["sevsnp"]
    assert isinstance(cache, SevSnpCache)
    for guest in (guests.a, guests.b, guests.a):
        with AttesterClient(svc.url, guest, dev_mode=True) as client:
            client.attest()
    assert len(cache._tables) == 1 and cache.hits >= 2
