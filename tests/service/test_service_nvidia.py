"""A composite exchange over HTTP: an emulated SEV-SNP guest (the CPU) and a fake NVIDIA GPU
(real P-384 keys, NVIDIA's chain profile) answer one challenge; one EAR with a submod each.

The GPU's SPDM nonce is SHA-256(nonce || SPKI(key)) (the ``nvidia`` scheme's 32-byte binding),
the CPU's REPORT_DATA SHA-512 of the same. NVIDIA device certificates are checked for revocation
by OCSP only, so the service lists ``nvidia`` in ``revocation_optional`` (the trace records it).
Skipped until the ``nvidia`` scheme and its fake are registered.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import schemes
from veritee.client import AttesterClient, ServiceRefused, evidence_for
from veritee.results import TIERS, verify_ear
from veritee.service import MasterKey
from veritee.testing import nvidia

from _service_support import Guests, Service, challenge_nonce, start_service


class GpuSource:
    """The fake GPU as an evidence source: the nvidia scheme, 32-byte binding, its chain."""

    scheme = "nvidia"
    binding_size = 32

    def __init__(self, gpu: Any) -> None:
        self.gpu = gpu

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]:
        report: bytes = self.gpu.report(nonce=report_data)
        chain: bytes = self.gpu.chain_pem()
        return report, chain


@pytest.fixture(scope="module")
def gpu() -> Any:
    return nvidia.FakeNvidia(now=datetime.now(UTC))


@pytest.fixture
def svc(gpu: Any, machine: Any, tmp_path: Path) -> Iterator[Service]:
    anchors = schemes.Anchors({"amd": machine.anchors(), "nvidia": gpu.anchors()})
    service = start_service(f"sqlite:///{tmp_path}/veritee.db", machine,
                            master=MasterKey(b"\x33" * 32), anchors=anchors,
                            revocation_optional=("nvidia",))
    yield service
    service.close()


def test_cpu_and_gpu_get_one_ear_and_a_secret_pinned_to_both(svc: Service, gpu: Any,
                                                             guests: Guests) -> None:
    with AttesterClient(svc.url, guests.a, dev_mode=True, devices=[GpuSource(gpu)]) as client:
        passport = client.attest()
        ear = verify_ear(passport.token, svc.http.get(f"{svc.url}/v1/jwks").json())
        assert list(ear.submods) == ["sevsnp", "nvidia"] and ear.status == "affirming"
        gpu_claims = ear.submods["nvidia"]["veritee.verified-claims"]
        assert gpu_claims["tee"] == "nvidia"
        pin = {"sevsnp": {"measurement": [guests.a.measurement.hex()]}}
        if isinstance(gpu_claims.get("measurement"), str):
            pin["nvidia"] = {"measurement": [gpu_claims["measurement"]]}
        r = svc.http.put(f"{svc.url}/v1/admin/resources/gpu/weights",
                         headers=svc.admin_headers(),
                         json={"secret": base64.b64encode(b"model key").decode(),
                               "policy": {"workloads": pin}})
        assert r.status_code == 200, r.text
        assert client.get_resource("gpu/weights", passport) == b"model key"
    # Without the GPU the same resource stays closed when it pins the GPU.
    if "nvidia" in pin:
        with AttesterClient(svc.url, guests.a, dev_mode=True) as client, \
                pytest.raises(ServiceRefused) as info:
            client.get_resource("gpu/weights", client.attest())
        assert "resource.workload.absent" in [f["code"] for f in
                                              info.value.problem["failures"]]


def test_a_gpu_answering_another_challenge_is_refused(svc: Service, gpu: Any,
                                                      guests: Guests) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    body = evidence_for(guests.a, challenge_nonce(svc), key, devices=[GpuSource(gpu)])
    stale = evidence_for(guests.a, challenge_nonce(svc), key, devices=[GpuSource(gpu)])
    body["additional_evidence"] = stale["additional_evidence"]
    r = svc.http.post(f"{svc.url}/v1/attest", json=body)
    assert r.status_code == 403, r.text
    assert [f["code"] for f in r.json()["failures"]] == ["nvidia.binding.mismatch"]
    ear = verify_ear(r.json()["ear"], svc.http.get(f"{svc.url}/v1/jwks").json(), accept=TIERS)
    assert ear.submods["sevsnp"]["ear.status"] == "affirming"
    assert ear.submods["nvidia"]["ear.status"] == "contraindicated"


def test_without_revocation_optional_a_gpu_is_refused(gpu: Any, machine: Any, guests: Guests,
                                                      tmp_path: Path) -> None:
    """Revocation is required by default; NVIDIA's cannot be checked offline: refused."""
    anchors = schemes.Anchors({"amd": machine.anchors(), "nvidia": gpu.anchors()})
    svc = start_service(f"sqlite:///{tmp_path}/veritee.db", machine,
                        master=MasterKey(b"\x33" * 32), anchors=anchors)
    try:
        with AttesterClient(svc.url, guests.a, dev_mode=True,
                            devices=[GpuSource(gpu)]) as client, \
                pytest.raises(ServiceRefused) as info:
            client.attest()
        assert info.value.code == "nvidia.chain.revocation"
    finally:
        svc.close()
