"""End to end over HTTP: an emulated SGX enclave attests with a fresh nonce and gets its secret.

Nothing in the service knows SGX: the quote is recognised by the registry's ``sgx`` scheme,
appraised under its default policy (``sgx-default``), and released by a resource policy that
pins the enclave through ``workloads``. Only the trust anchor differs from production: the
emulated Intel root is passed with ``intel_trust_roots`` (dev_mode), beside the emulated
vendor's collateral in ``intel_collateral_dir``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee.client import AttesterClient, ServiceRefused, evidence_for
from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor
from veritee.platform.emulated.sgx import EmulatedEnclave, InsecureEmulatedSgxMachine
from veritee.results import verify_ear

from _service_support import Service

SECRET = b"enclave key: 5a17"


@pytest.fixture(scope="module")
def intel_vendor() -> EmulatedIntelVendor:
    return EmulatedIntelVendor.generate(now=datetime.now(UTC))


@pytest.fixture(scope="module")
def sgx(intel_vendor: EmulatedIntelVendor) -> InsecureEmulatedSgxMachine:
    return InsecureEmulatedSgxMachine(intel_vendor, cpu=EmulatedIntelCpu(intel_vendor))


@pytest.fixture(scope="module")
def signer() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=3, key_size=3072)


@pytest.fixture(scope="module")
def enclave(sgx: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey) -> EmulatedEnclave:
    return sgx.load(b"enclave code for the service test", signer)


def _start(factory: Callable[..., Service], vendor: EmulatedIntelVendor,
           tmp_path: Path) -> Service:
    col = tmp_path / "intel"
    vendor.write_collateral(col, "SGX", datetime.now(UTC))
    return factory(f"sqlite:///{tmp_path}/veritee.db", intel_collateral_dir=str(col),
                   intel_trust_roots=(str(col / "root_ca.pem"),))


def _provision(svc: Service, mrenclave: bytes) -> None:
    r = svc.http.put(f"{svc.url}/v1/admin/resources/enclaves/key", headers=svc.admin_headers(),
                     json={"secret": base64.b64encode(SECRET).decode(),
                           "policy": {"workloads": {"sgx": {"mrenclave": [mrenclave.hex()]}}}})
    assert r.status_code == 200, r.text


def test_emulated_enclave_gets_its_secret_with_a_fresh_nonce(
        service_factory: Callable[..., Service], intel_vendor: EmulatedIntelVendor,
        enclave: EmulatedEnclave, tmp_path: Path) -> None:
    svc = _start(service_factory, intel_vendor, tmp_path)
    _provision(svc, enclave.mr_enclave)
    with AttesterClient(svc.url, enclave, dev_mode=True) as client:
        passport = client.attest()
        assert client.get_resource("enclaves/key", passport) == SECRET
    ear = verify_ear(passport.token, svc.http.get(f"{svc.url}/v1/jwks").json())
    assert ear.tee == "sgx" and ear.status == "affirming"
    assert ear.submod["ear.appraisal-policy-id"] == "sgx-default"
    assert ear.verified_claims["mrenclave"] == enclave.mr_enclave.hex()


def test_another_enclave_is_refused_the_secret(
        service_factory: Callable[..., Service], intel_vendor: EmulatedIntelVendor,
        sgx: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey, enclave: EmulatedEnclave,
        tmp_path: Path) -> None:
    svc = _start(service_factory, intel_vendor, tmp_path)
    _provision(svc, enclave.mr_enclave)
    other = sgx.load(b"another enclave", signer)
    with AttesterClient(svc.url, other, dev_mode=True) as client:
        passport = client.attest()
        with pytest.raises(ServiceRefused) as info:
            client.get_resource("enclaves/key", passport)
    assert [f["code"] for f in info.value.problem["failures"]] == ["resource.claim.mismatch"]


def test_an_sgx_quote_bound_to_an_old_nonce_is_refused(
        service_factory: Callable[..., Service], intel_vendor: EmulatedIntelVendor,
        enclave: EmulatedEnclave, tmp_path: Path) -> None:
    svc = _start(service_factory, intel_vendor, tmp_path)
    key = ec.generate_private_key(ec.SECP384R1())
    with AttesterClient(svc.url, enclave, dev_mode=True) as client:
        old = evidence_for(enclave, client.challenge(), key)
        fresh = evidence_for(enclave, client.challenge(), key)
    r = svc.http.post(f"{svc.url}/v1/attest", json={**fresh, "evidence": old["evidence"]})
    assert r.status_code == 403
    assert [f["code"] for f in r.json()["failures"]] == ["sgx.binding.mismatch"]


def test_an_sgx_reference_value_pins_the_enclave_in_the_appraisal(
        service_factory: Callable[..., Service], intel_vendor: EmulatedIntelVendor,
        sgx: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey, enclave: EmulatedEnclave,
        tmp_path: Path) -> None:
    svc = _start(service_factory, intel_vendor, tmp_path)
    r = svc.http.put(f"{svc.url}/v1/admin/reference-values/enclave",
                     headers=svc.admin_headers(),
                     json={"scheme": "sgx", "value": enclave.mr_enclave.hex()})
    assert r.status_code == 201, r.text
    with AttesterClient(svc.url, sgx.load(b"not the reference", signer),
                        dev_mode=True) as client, pytest.raises(ServiceRefused) as info:
        client.attest()
    assert [f["code"] for f in info.value.problem["failures"]] == ["sgx.mrenclave.mismatch"]
    with AttesterClient(svc.url, enclave, dev_mode=True) as client:
        assert client.attest().status == "affirming"


def test_a_debug_enclave_is_refused(
        service_factory: Callable[..., Service], intel_vendor: EmulatedIntelVendor,
        sgx: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    svc = _start(service_factory, intel_vendor, tmp_path)
    debug = sgx.load(b"enclave code for the service test", signer, debug=True)
    _provision(svc, debug.mr_enclave)
    with AttesterClient(svc.url, debug, dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert info.value.status == 403
    assert [f["code"] for f in info.value.problem["failures"]] == ["sgx.debug"]


@pytest.mark.parametrize(("release", "status"), [(1, "Revoked"), (2, "OutOfDate")])
def test_an_enclave_on_revoked_or_out_of_date_microcode_is_refused(
        service_factory: Callable[..., Service], intel_vendor: EmulatedIntelVendor,
        signer: rsa.RSAPrivateKey, tmp_path: Path, release: int, status: str) -> None:
    svc = _start(service_factory, intel_vendor, tmp_path)
    machine = InsecureEmulatedSgxMachine(intel_vendor, cpu=EmulatedIntelCpu(intel_vendor))
    enclave = machine.load(b"enclave code for the service test", signer)
    _provision(svc, enclave.mr_enclave)
    machine.cpu.update_microcode(release)
    with AttesterClient(svc.url, enclave, dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert [f["code"] for f in info.value.problem["failures"]] == ["sgx.tcb.status"]
    ear = verify_ear(info.value.problem["ear"], svc.http.get(f"{svc.url}/v1/jwks").json(),
                     accept=("contraindicated",))
    assert ear.verified_claims["tcb_status"] == status
