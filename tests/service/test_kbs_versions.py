"""/kbs/v0 by protocol version (0.1.0-0.4.0), RSA TEE keys, the registry-driven TEE list, and
``veritee kbs get --protocol coco --tee tdx|sgx``.

The message shapes per version come from Trustee's protocol document and its history
(``kbs/src/attestation/backend.rs`` at each version; kbs-types ``Attestation``; Trustee pull
requests #445 (0.1.1: evidence as a JSON value), #597 (0.2.0: RFC 7516 JWE, EC and
RSA-OAEP-256 keys), guest-components #991 (0.3.0: composite evidence) and #841 (0.4.0:
runtime-data/init-data)); nothing is copied from those repositories. Each test names the
rule or the attack it pins.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from veritee.client import ServiceRefused
from veritee.client_coco import CocoKbsClient, snp_evidence
from veritee.formats.coco import (
    PROTOCOL_VERSIONS,
    canonical_json,
    regularize,
    runtime_data,
)

from _service_support import SECRET_A, Guests, Service, provision

ERR = "https://github.com/confidential-containers/kbs/errors/"
VERSIONS = list(PROTOCOL_VERSIONS)


@pytest.fixture
def svc(service_factory: Callable[..., Service], tmp_path: Path, guests: Guests) -> Service:
    s = service_factory(f"sqlite:///{tmp_path}/kbs.db")
    provision(s, guests)
    return s


@pytest.fixture
def svc_rsa1_5(service_factory: Callable[..., Service], database_url: str,
               guests: Guests) -> Service:
    """A service that allows RSA1_5 keys, on SQLite and PostgreSQL (skipped when absent)."""
    s = service_factory(database_url, kbs_allow_rsa1_5=True)
    provision(s, guests)
    return s


def _kbs(svc: Service, guest: Any, **kw: Any) -> CocoKbsClient:
    return CocoKbsClient(svc.url, guest, dev_mode=True, http=httpx.Client(timeout=10), **kw)


# -- every version end to end ---------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_guest_of_each_protocol_version_fetches_a_resource(svc_rsa1_5: Service,
                                                           guests: Guests, version: str) -> None:
    with _kbs(svc_rsa1_5, guests.a, version=version) as kbs:
        challenge = kbs.auth()
        message = kbs.attestation(challenge)
        r = kbs._http.post(f"{svc_rsa1_5.url}/kbs/v0/attest", content=canonical_json(message))
        assert r.status_code == 200, r.text
        kbs.token = r.json()["token"]
        response = kbs._http.get(f"{svc_rsa1_5.url}/kbs/v0/resource/apps/a/key").json()
        assert kbs.resource("apps/a/key") == SECRET_A
    proto = PROTOCOL_VERSIONS[version]
    # The shapes each version's guests send and read:
    if proto.challenge_extra_string:
        assert challenge["extra-params"] == ""  # kbs-types 0.5: a String
    else:
        assert challenge["extra-params"] == {"selected-hash-algorithm": "sha384"}
    assert ("runtime-data" in message) == proto.runtime_data_member
    assert ("tee-pubkey" in message) != proto.runtime_data_member
    evidence = message["tee-evidence"]
    if proto.composite:
        assert set(evidence) == {"primary_evidence", "additional_evidence"}
    else:
        assert isinstance(evidence, str) == proto.evidence_as_string
    key = message.get("tee-pubkey") or message["runtime-data"]["tee-pubkey"]
    assert key["kty"] == ("RSA" if version.startswith("0.1.") else "EC")
    assert ("aad" in response) == proto.legacy_aad  # the 0.1.x Response form


@pytest.mark.parametrize("older,newer", [("0.2.0", "0.4.0"), ("0.1.1", "0.4.0"),
                                         ("0.4.0", "0.2.0")])
def test_message_of_another_version_than_the_session_is_refused(
        svc_rsa1_5: Service, guests: Guests, older: str, newer: str) -> None:
    # A downgrade (or upgrade) after the handshake: the session's version decides the shape.
    with _kbs(svc_rsa1_5, guests.a, version=newer) as kbs:
        challenge = kbs.auth()
        other = _kbs(svc_rsa1_5, guests.a, version=older)
        message = other.attestation(challenge)
        r = kbs._http.post(f"{svc_rsa1_5.url}/kbs/v0/attest", content=canonical_json(message))
    assert r.status_code == 401 and r.json()["code"] == "evidence.malformed", r.text
    assert r.json()["type"] == ERR + "AttestationError"


def test_0_4_0_binding_names_the_additional_evidence_and_0_2_0_does_not(
        svc: Service, guests: Guests) -> None:
    # Evidence bound with 0.4.0's rule (with "additional-evidence") in a 0.2.0 session:
    # everything else is right, so only the binding can refuse it.
    with _kbs(svc, guests.a, version="0.2.0") as kbs:
        challenge = kbs.auth()
        message = kbs.attestation(challenge)
        pubkey = message["tee-pubkey"]
        wrong = regularize(hashlib.sha384(canonical_json(runtime_data(
            challenge["nonce"], pubkey, ""))).digest(), 64)
        report, table = guests.a.extended_report(wrong)
        message["tee-evidence"] = snp_evidence(report, table)
        r = kbs._http.post(f"{svc.url}/kbs/v0/attest", content=canonical_json(message))
    assert r.status_code == 401 and r.json()["code"] == "attestation.rejected", r.text
    # (sevsnp.report_data.mismatch, or sevsnp.binding.mismatch once the broker checks the
    # binding generically through attest.Verifier)
    assert any(c in f["code"] for f in r.json()["failures"] for c in ("report_data", "binding"))


def test_0_1_0_evidence_must_be_a_json_string(svc_rsa1_5: Service, guests: Guests) -> None:
    with _kbs(svc_rsa1_5, guests.a, version="0.1.0") as kbs:
        message = kbs.attestation(kbs.auth())
        message["tee-evidence"] = json.loads(message["tee-evidence"])
        r = kbs._http.post(f"{svc_rsa1_5.url}/kbs/v0/attest", content=canonical_json(message))
    assert r.status_code == 401 and "tee-evidence" in r.json()["detail"]


# -- RSA TEE keys -----------------------------------------------------------------------------
def test_rsa_oaep_256_key_gets_its_resource(svc: Service, guests: Guests) -> None:
    with _kbs(svc, guests.a, key_algorithm="RSA-OAEP-256") as kbs:
        assert kbs.get_resource("apps/a/key") == SECRET_A
        token = kbs.token
    # The EAR is bound to the RSA key (cnf keeps its algorithm), so a bearer fetch is
    # encrypted to it too.
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))  # type: ignore[union-attr]
    assert claims["cnf"]["jwk"]["kty"] == "RSA"
    assert claims["cnf"]["jwk"]["alg"] == "RSA-OAEP-256"


def test_rsa_4096_key_session_cookie_still_opens(svc: Service, guests: Guests) -> None:
    # The RSA modulus makes the EAR (and the cookie that carries it) larger; the attested
    # cookie must still be accepted for the resource request.
    with _kbs(svc, guests.a, key_algorithm="RSA-OAEP-256", rsa_bits=4096) as kbs:
        assert kbs.get_resource("apps/a/key") == SECRET_A
        assert len(kbs._http.cookies["kbs-session-id"]) > 4096


def test_rsa1_5_key_is_refused_by_default_and_burns_the_challenge(svc: Service,
                                                                   guests: Guests) -> None:
    with _kbs(svc, guests.a, version="0.1.1") as kbs, pytest.raises(ServiceRefused) as exc:
        kbs.attest()
    assert exc.value.status == 401 and exc.value.problem["code"] == "kbs.key.rsa1_5"
    assert "kbs_allow_rsa1_5" in exc.value.problem["detail"]
    assert svc.refusals()[-1].detail["code"] == "kbs.key.rsa1_5"


def test_small_rsa_key_is_refused(svc: Service, guests: Guests) -> None:
    with _kbs(svc, guests.a, key_algorithm="RSA-OAEP-256") as kbs:
        message = kbs.attestation(kbs.auth())
        key = message["runtime-data"]["tee-pubkey"]
        n = int.from_bytes(base64.urlsafe_b64decode(key["n"] + "=="), "big") >> 1100
        key["n"] = base64.urlsafe_b64encode(n.to_bytes(128, "big")).rstrip(b"=").decode()
        r = kbs._http.post(f"{svc.url}/kbs/v0/attest", content=canonical_json(message))
    assert r.status_code == 401 and r.json()["type"] == ERR + "AttestationError", r.text


# -- which TEEs: the registry decides, per request ----------------------------------------
def test_tee_list_follows_the_scheme_registry(svc: Service, guests: Guests,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import veritee.schemes as schemes

    monkeypatch.setattr(schemes, "_REGISTERED", ())  # no scheme registered at all
    r = httpx.post(f"{svc.url}/kbs/v0/auth",
                   json={"version": "0.4.0", "tee": "snp", "extra-params": {}})
    assert r.status_code == 401 and r.json()["code"] == "kbs.tee.unsupported"
    assert "no 'sevsnp' scheme is registered" in r.json()["detail"]
    monkeypatch.undo()
    r = httpx.post(f"{svc.url}/kbs/v0/auth",
                   json={"version": "0.4.0", "tee": "snp", "extra-params": {}})
    assert r.status_code == 200


def test_composite_evidence_names_each_device(svc: Service, guests: Guests) -> None:
    with _kbs(svc, guests.a) as kbs:
        message = kbs.attestation(kbs.auth())
        message["tee-evidence"]["additional_evidence"] = json.dumps(
            {"nvidia": {"device_evidence_list": []}})
        r = kbs._http.post(f"{svc.url}/kbs/v0/attest", content=canonical_json(message))
    # No device in the list: a protocol error naming the device (composite evidence itself
    # is verified: tests/service/test_kbs_composite.py).
    assert r.status_code == 401 and r.json()["code"] == "evidence.malformed", r.text
    assert "nvidia" in r.json()["detail"]


# -- the CLI, --protocol coco --tee tdx|sgx ----------------------------------------------------
def test_cli_kbs_get_protocol_coco_tee_tdx_and_sgx(tmp_path: Path) -> None:
    from veritee.cli import main
    from veritee.cli._demo import demo_image
    from veritee.platform.emulated.intel import EmulatedIntelCpu
    from veritee.platform.emulated.tdx import InsecureEmulatedTdxMachine
    from veritee.service import MasterKey, Settings, create_app
    from veritee.service.core import create_admin_token
    from veritee.service.server import LoopbackServer
    from veritee.service.storage import open_store
    from veritee.trust.roots import TrustAnchors

    state = tmp_path / "state"
    cpu = EmulatedIntelCpu.open(state)
    mrtd = InsecureEmulatedTdxMachine(cpu.vendor, cpu=cpu).launch(demo_image()).mr_td
    col = tmp_path / "intel"
    cpu.vendor.write_collateral(col, "TDX", datetime.now(UTC))
    url = f"sqlite:///{tmp_path / 'kbs.db'}"
    store = open_store(url)
    settings = Settings(database_url=url, dev_mode=True, key_source="emulated",
                        emulated_machine_dir=str(tmp_path), intel_collateral_dir=str(col),
                        intel_trust_roots=(str(col / "root_ca.pem"),))
    app = create_app(settings, master_key=MasterKey.generate(), anchors=TrustAnchors.amd(),
                     store=store)
    _, admin = create_admin_token(store, "t", "admin")
    out = tmp_path / "secret"
    try:
        with LoopbackServer(app) as server:
            httpx.put(f"{server.url}/v1/admin/resources/tds/db/k",
                      headers={"Authorization": f"Bearer {admin}"},
                      json={"secret": base64.b64encode(b"td key").decode(),
                            "policy": {"mrtd": [mrtd.hex()]}}).raise_for_status()
            base = ["--url", server.url, "--out", str(out), "--protocol", "coco",
                    "--state", str(state), "--dev-mode"]
            assert main(["kbs", "get", "tds/db/k", "--tee", "tdx", *base]) == 0
            assert out.read_bytes() == b"td key"
            # SGX: refused by the service with the protocol's error until the sgx scheme
            # is registered and the broker verifies it; then the enclave attests and the
            # resource (pinned to the TD's MRTD) is refused by its policy (exit 4).
            from veritee.service.kbs_protocol import _unavailable

            code = main(["kbs", "get", "tds/db/k", "--tee", "sgx", *base])
            assert code != 0
            if _unavailable("sgx", app.state.broker) is None:
                assert code == 4
    finally:
        store.close()


# -- tampered evidence: the protocol's error shape -----------------------------------------
@pytest.mark.parametrize("field,index", [("measurement", 0), ("report_data", 63),
                                         ("host_data", 5)])
def test_tampered_evidence_is_refused_in_the_protocol_error_shape(
        svc: Service, guests: Guests, field: str, index: int) -> None:
    with _kbs(svc, guests.a) as kbs:
        message = kbs.attestation(kbs.auth())
        report = message["tee-evidence"]["primary_evidence"]["attestation_report"]
        report[field][index] ^= 1  # one bit of the signed report
        r = kbs._http.post(f"{svc.url}/kbs/v0/attest", content=canonical_json(message))
    assert r.status_code == 401, r.text
    body = r.json()
    assert body["type"] == ERR + "AttestationError" and isinstance(body["detail"], str)
    assert r.headers["content-type"] == "application/problem+json"
    assert "signature" in body["code"] or "signature" in body["detail"], body
    assert "set-cookie" not in r.headers  # no attested session for a refused attestation


def test_tampered_tdx_quote_is_refused_in_the_protocol_error_shape(
        service_factory: Callable[..., Service], tmp_path: Path) -> None:
    from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor
    from veritee.platform.emulated.tdx import InsecureEmulatedTdxMachine

    vendor = EmulatedIntelVendor.generate(now=datetime.now(UTC))
    td = InsecureEmulatedTdxMachine(vendor, cpu=EmulatedIntelCpu(vendor)).launch(
        b"TDVF".ljust(8192, b"\0"))
    col = tmp_path / "intel"
    vendor.write_collateral(col, "TDX", datetime.now(UTC))
    s = service_factory(f"sqlite:///{tmp_path}/tdx.db", intel_collateral_dir=str(col),
                        intel_trust_roots=(str(col / "root_ca.pem"),))
    with CocoKbsClient(s.url, td, dev_mode=True, tee="tdx") as kbs:
        message = kbs.attestation(kbs.auth())
        quote = bytearray(base64.b64decode(message["tee-evidence"]["primary_evidence"]["quote"]))
        quote[200] ^= 1  # inside the TD report body (signed by the QE's attestation key)
        message["tee-evidence"]["primary_evidence"]["quote"] = base64.b64encode(
            bytes(quote)).decode()
        r = kbs._http.post(f"{s.url}/kbs/v0/attest", content=canonical_json(message))
    assert r.status_code == 401 and r.json()["type"] == ERR + "AttestationError", r.text
    assert s.refusals()[-1].detail["front"] == "kbs"


# -- an emulated SGX enclave through /kbs/v0 (once the broker verifies the sgx scheme) -------
def test_emulated_sgx_enclave_fetches_through_kbs_v0_and_another_is_refused(
        service_factory: Callable[..., Service], tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys

    from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor
    from veritee.platform.emulated.sgx import InsecureEmulatedSgxMachine
    from veritee.service.kbs_protocol import _unavailable

    vendor = EmulatedIntelVendor.generate(now=datetime.now(UTC))
    machine = InsecureEmulatedSgxMachine(vendor, cpu=EmulatedIntelCpu(vendor))
    signer = rsa_keys.generate_private_key(3, 3072)
    enclave = machine.load(b"\x90" * 64 + b"kbs enclave", signer)
    other = machine.load(b"\x90" * 64 + b"another enclave", signer)
    col = tmp_path / "intel"
    vendor.write_collateral(col, "SGX", datetime.now(UTC))
    s = service_factory(f"sqlite:///{tmp_path}/sgx.db", intel_collateral_dir=str(col),
                        intel_trust_roots=(str(col / "root_ca.pem"),))
    why = _unavailable("sgx", s.app.state.broker)
    if why is not None:
        pytest.skip(f"sgx through /kbs/v0: {why}")
    r = s.http.put(f"{s.url}/v1/admin/resources/enclaves/db/key", headers=s.admin_headers(),
                   json={"secret": base64.b64encode(b"enclave key").decode(),
                         "policy": {"workloads": {"sgx": {
                             "measurement": [enclave.mr_enclave.hex()]}}}})
    assert r.status_code == 200, r.text
    with CocoKbsClient(s.url, enclave, dev_mode=True, tee="sgx") as kbs:
        assert kbs.get_resource("enclaves/db/key") == b"enclave key"
    with CocoKbsClient(s.url, other, dev_mode=True, tee="sgx") as kbs, \
            pytest.raises(ServiceRefused) as exc:
        kbs.get_resource("enclaves/db/key")
    assert exc.value.status == 403 and exc.value.problem["type"] == ERR + "PolicyDeny"
