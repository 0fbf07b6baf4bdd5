"""End to end over HTTP: an emulated TDX TD attests with a fresh nonce and gets its secret.

The service runs the production TDX path (``verify_quote`` -> ``TdxPolicy`` -> resource
policy); only the trust anchor differs: the emulated Intel root is passed explicitly with
``intel_trust_roots`` (dev_mode), and the emulated vendor's collateral sits in
``intel_collateral_dir``. REPORTDATA is SHA-512(nonce || SPKI(key)), made by the client.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.client import AttesterClient, ServiceRefused, evidence_for
from veritee.errors import ConfigError
from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor
from veritee.platform.emulated.tdx import EmulatedTd, InsecureEmulatedTdxMachine
from veritee.results import verify_ear
from veritee.service.settings import settings_from_mapping

from _service_support import Service

FIRMWARE = b"emulated TDVF for the service test".ljust(8192, b"\0")
SECRET = b"TD database key: 0b5e"


@pytest.fixture(scope="module")
def intel_vendor() -> EmulatedIntelVendor:
    return EmulatedIntelVendor.generate(now=datetime.now(UTC))


@pytest.fixture
def tdx_machine(intel_vendor: EmulatedIntelVendor) -> InsecureEmulatedTdxMachine:
    return InsecureEmulatedTdxMachine(intel_vendor, cpu=EmulatedIntelCpu(intel_vendor))


@pytest.fixture
def td(tdx_machine: InsecureEmulatedTdxMachine) -> EmulatedTd:
    return tdx_machine.launch(FIRMWARE)


def _start(factory: Callable[..., Service], intel_vendor: EmulatedIntelVendor, tmp_path: Path, *,
           trust: bool = True) -> Service:
    col = tmp_path / "intel"
    intel_vendor.write_collateral(col, "TDX", datetime.now(UTC))
    extra = {"intel_trust_roots": (str(col / "root_ca.pem"),)} if trust else {}
    return factory(f"sqlite:///{tmp_path}/veritee.db", intel_collateral_dir=str(col), **extra)


def _provision(svc: Service, mrtd: bytes) -> None:
    r = svc.http.put(f"{svc.url}/v1/admin/resources/tds/db/key", headers=svc.admin_headers(),
                     json={"secret": base64.b64encode(SECRET).decode(),
                           "policy": {"mrtd": [mrtd.hex()]}})
    assert r.status_code == 200, r.text


def _codes(info: pytest.ExceptionInfo[ServiceRefused]) -> list[str]:
    return [f["code"] for f in info.value.problem.get("failures", [])]


def test_emulated_td_gets_its_secret_with_a_fresh_nonce(
        service_factory: Callable[..., Service], intel_vendor: EmulatedIntelVendor, td: EmulatedTd,
        tmp_path: Path) -> None:
    svc = _start(service_factory, intel_vendor, tmp_path)
    _provision(svc, td.mr_td)
    with AttesterClient(svc.url, td, dev_mode=True) as client:
        passport = client.attest()
        assert client.get_resource("tds/db/key", passport) == SECRET
    ear = verify_ear(passport.token, svc.http.get(f"{svc.url}/v1/jwks").json())
    assert ear.tee == "tdx" and ear.status == "affirming"
    assert ear.verified_claims["mrtd"] == td.mr_td.hex()
    assert ear.verified_claims["tcb_status"] == "UpToDate"
    events = [(r.event, r.outcome) for r in svc.audit()]
    assert ("attestation", "accepted") in events and ("release", "granted") in events


def test_td_with_another_mrtd_is_refused_the_secret(
        service_factory: Callable[..., Service], intel_vendor: EmulatedIntelVendor,
        tdx_machine: InsecureEmulatedTdxMachine, td: EmulatedTd, tmp_path: Path) -> None:
    svc = _start(service_factory, intel_vendor, tmp_path)
    _provision(svc, td.mr_td)
    impostor = tdx_machine.launch(FIRMWARE[:-1] + b"\x01")
    with AttesterClient(svc.url, impostor, dev_mode=True) as client:
        passport = client.attest()  # a genuine TD: attestation passes
        with pytest.raises(ServiceRefused) as info:
            client.get_resource("tds/db/key", passport)
    assert (info.value.status, info.value.code) == (403, "resource.policy")
    assert _codes(info) == ["resource.mrtd.mismatch"]


def test_debug_td_is_refused(service_factory: Callable[..., Service],
                             intel_vendor: EmulatedIntelVendor,
                             tdx_machine: InsecureEmulatedTdxMachine, tmp_path: Path) -> None:
    svc = _start(service_factory, intel_vendor, tmp_path)
    debug = tdx_machine.launch(FIRMWARE, debug=True)
    _provision(svc, debug.mr_td)
    with AttesterClient(svc.url, debug, dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert info.value.status == 403 and _codes(info) == ["tdx.debug"]


@pytest.mark.parametrize(("release", "status"), [(1, "Revoked"), (2, "OutOfDate")])
def test_td_on_revoked_or_out_of_date_microcode_is_refused(
        service_factory: Callable[..., Service], intel_vendor: EmulatedIntelVendor,
        tdx_machine: InsecureEmulatedTdxMachine, td: EmulatedTd, tmp_path: Path, release: int,
        status: str) -> None:
    svc = _start(service_factory, intel_vendor, tmp_path)
    _provision(svc, td.mr_td)
    tdx_machine.cpu.update_microcode(release)
    with AttesterClient(svc.url, td, dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert _codes(info) == ["tdx.tcb.status"]
    assert verify_ear(info.value.problem["ear"], svc.http.get(f"{svc.url}/v1/jwks").json(),
                      accept=("contraindicated",)).verified_claims["tcb_status"] == status


def test_quote_bound_to_an_old_nonce_is_refused(
        service_factory: Callable[..., Service], intel_vendor: EmulatedIntelVendor, td: EmulatedTd,
        tmp_path: Path) -> None:
    svc = _start(service_factory, intel_vendor, tmp_path)
    key = ec.generate_private_key(ec.SECP384R1())
    with AttesterClient(svc.url, td, dev_mode=True) as client:
        old = evidence_for(td, client.challenge(), key)
        fresh = evidence_for(td, client.challenge(), key)
    replay = {**fresh, "evidence": old["evidence"]}
    r = svc.http.post(f"{svc.url}/v1/attest", json=replay)
    assert r.status_code == 403
    assert [f["code"] for f in r.json()["failures"]] == ["tdx.binding.mismatch"]


def test_emulated_root_is_not_trusted_without_the_setting(
        service_factory: Callable[..., Service], intel_vendor: EmulatedIntelVendor, td: EmulatedTd,
        tmp_path: Path) -> None:
    svc = _start(service_factory, intel_vendor, tmp_path, trust=False)
    with AttesterClient(svc.url, td, dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert info.value.code == "intel.chain.root_untrusted"


def test_intel_trust_roots_need_dev_mode(tmp_path: Path) -> None:
    base = {"emulated_machine_dir": str(tmp_path), "key_source": "sevsnp"}
    assert settings_from_mapping({**base, "dev_mode": True, "intel_trust_roots": ["r.pem"]}
                                 ).intel_trust_roots == ("r.pem",)
    with pytest.raises(ConfigError, match="intel_trust_roots"):
        settings_from_mapping({**base, "intel_trust_roots": ["r.pem"]})
