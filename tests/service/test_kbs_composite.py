"""Composite evidence through the KBS protocol front (/kbs/v0, 0.3.0+ ``additional_evidence``):
an emulated SEV-SNP guest (the primary) and a fake NVIDIA GPU (a device) in one Attestation.

Bindings as Trustee's ``kbs/src/attestation/backend.rs`` computes them: the primary carries
``H({additional-evidence, nonce, tee-pubkey})`` (so a device cannot be dropped or swapped), each
device ``H({nonce, tee-pubkey})`` regularized to its field (the GPU's SPDM requester nonce: 32
bytes). NVIDIA device certificates are checked for revocation by OCSP only, so the service lists
``nvidia`` in ``revocation_optional`` (as tests/service/test_service_nvidia.py does).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from veritee import schemes
from veritee.client_coco import CocoKbsClient
from veritee.formats.coco import canonical_json, regularize
from veritee.results import verify_ear
from veritee.service import MasterKey
from veritee.testing import nvidia

from _service_support import Guests, Service, start_service


@pytest.fixture(scope="module")
def gpu() -> Any:
    return nvidia.FakeNvidia(now=datetime.now(UTC))


@pytest.fixture
def svc(gpu: Any, machine: Any, tmp_path: Path) -> Iterator[Service]:
    anchors = schemes.Anchors({"amd": machine.anchors(), "nvidia": gpu.anchors()})
    service = start_service(f"sqlite:///{tmp_path}/kbs.db", machine,
                            master=MasterKey(b"\x44" * 32), anchors=anchors,
                            revocation_optional=("nvidia",))
    yield service
    service.close()


def _gpu_evidence(gpu: Any, *, nonce: Callable[[bytes], bytes] = lambda d: regularize(d, 32)
                  ) -> Callable[[bytes], str]:
    """attestation-agent's shape: {nvidia: {device_evidence_list: [{evidence, certificate}]}},
    the GPU answering ``nonce(device digest)`` as its SPDM requester nonce."""
    def make(digest: bytes) -> str:
        report = gpu.report(nonce=nonce(digest))
        device = {"arch": "HOPPER", "evidence": base64.b64encode(report).decode(),
                  "certificate": base64.b64encode(gpu.chain_pem()).decode()}
        return json.dumps({"nvidia": {"device_evidence_list": [device]}})
    return make


def _kbs(svc: Service, guest: Any) -> CocoKbsClient:
    return CocoKbsClient(svc.url, guest, dev_mode=True, http=httpx.Client(timeout=10))


def _post(svc: Service, kbs: CocoKbsClient, message: dict[str, Any]) -> httpx.Response:
    return kbs._http.post(f"{svc.url}/kbs/v0/attest", content=canonical_json(message))


def test_cpu_and_gpu_get_one_token_with_a_submod_each_and_a_resource(
        svc: Service, gpu: Any, guests: Guests) -> None:
    with _kbs(svc, guests.a) as kbs:
        message = kbs.attestation(kbs.auth(), additional_evidence=_gpu_evidence(gpu))
        r = _post(svc, kbs, message)
        assert r.status_code == 200, r.text
        ear = verify_ear(r.json()["token"], svc.http.get(f"{svc.url}/v1/jwks").json())
        assert list(ear.submods) == ["sevsnp", "nvidia"] and ear.status == "affirming"
        assert ear.submods["nvidia"]["veritee.verified-claims"]["tee"] == "nvidia"
        r = svc.http.put(f"{svc.url}/v1/admin/resources/apps/gpu/weights",
                         headers=svc.admin_headers(),
                         json={"secret": base64.b64encode(b"model key").decode(),
                               "policy": {"measurements": [guests.a.measurement.hex()]}})
        assert r.status_code == 200, r.text
        # The attested session cookie releases the resource (encrypted to tee-pubkey).
        assert kbs.resource("apps/gpu/weights") == b"model key"
    accepted = [e for e in svc.audit() if e.event == "attestation"][-1]
    assert accepted.outcome == "accepted" and accepted.detail["front"] == "kbs"
    assert [p["tee"] for p in accepted.detail["parts"]] == ["sevsnp", "nvidia"]


def test_a_gpu_answering_another_nonce_is_refused(svc: Service, gpu: Any,
                                                  guests: Guests) -> None:
    # The GPU's report answers a nonce of the attacker's choosing (e.g. a recorded report):
    # the CPU binds the additional-evidence string, but the GPU itself must answer H({nonce,
    # tee-pubkey}).
    with _kbs(svc, guests.a) as kbs:
        message = kbs.attestation(kbs.auth(), additional_evidence=_gpu_evidence(
            gpu, nonce=lambda d: bytes(32)))
        r = _post(svc, kbs, message)
    assert r.status_code == 401 and r.json()["code"] == "attestation.rejected", r.text
    assert "nvidia.binding.mismatch" in [f["code"] for f in r.json()["failures"]]


def test_a_device_of_an_unknown_tee_is_refused_by_name(svc: Service, guests: Guests) -> None:
    with _kbs(svc, guests.a) as kbs:
        message = kbs.attestation(kbs.auth(), additional_evidence=lambda d: json.dumps(
            {"quantum-gpu": {"x": 1}}))
        r = _post(svc, kbs, message)
    assert r.status_code == 401 and r.json()["code"] == "kbs.tee.unsupported", r.text
    assert "quantum-gpu" in r.json()["detail"]


def test_a_dropped_device_breaks_the_primarys_binding(svc: Service, gpu: Any,
                                                      guests: Guests) -> None:
    # The primary's runtime data names the additional-evidence string: removing the GPU in
    # transit (to hide it from the policy) changes the primary's binding.
    with _kbs(svc, guests.a) as kbs:
        message = kbs.attestation(kbs.auth(), additional_evidence=_gpu_evidence(gpu))
        message["tee-evidence"]["additional_evidence"] = ""
        r = _post(svc, kbs, message)
    assert r.status_code == 401
    assert "sevsnp.binding.mismatch" in [f["code"] for f in r.json()["failures"]]


def test_the_broker_takes_one_raw_binding_per_part(svc: Service, gpu: Any,
                                                   guests: Guests) -> None:
    """What the front calls: each part is checked against its own binding, in order; a count
    that does not match the parts (or one value for two attesters) is an invalid request."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from joserfc.jwk import ECKey

    from veritee.attest import EvidencePart
    from veritee.service import problems
    from veritee.service.core import Broker

    broker: Broker = svc.app.state.broker
    jwk = ECKey.import_key(ec.generate_private_key(ec.SECP384R1()).public_key()).as_dict(
        private=False)
    cpu, dev = b"\x5a" * 64, b"\xa5" * 32
    report, table = guests.a.extended_report(cpu)
    parts = [EvidencePart(report, "sevsnp", table),
             EvidencePart(gpu.report(nonce=dev), "nvidia", gpu.chain_pem())]
    out = broker.attest_parts(parts, broker.challenge().nonce, jwk, binding=[cpu, dev],
                              front="kbs")
    assert out.result.status == "affirming" and list(out.result.submods) == ["sevsnp", "nvidia"]
    # Swapped device binding: that part fails, by its scheme's binding check.
    with pytest.raises(problems.AttestationRejected) as exc:
        broker.attest_parts(parts, broker.challenge().nonce, jwk,
                            binding=[cpu, regularize(cpu, 32)], front="kbs")
    assert "nvidia.binding.mismatch" in [f["code"] for f in exc.value.extra["failures"]]
    for wrong in (cpu, [cpu], [cpu, dev, dev]):
        with pytest.raises(problems.InvalidRequest):
            broker.attest_parts(parts, broker.challenge().nonce, jwk, binding=wrong,
                                front="kbs")
        assert svc.refusals()[-1].detail["code"] == "request.invalid"


def test_composite_evidence_needs_protocol_0_3_0(guests: Guests) -> None:
    from veritee.errors import ConfigError

    client = CocoKbsClient("http://127.0.0.1:1", guests.a, dev_mode=True, version="0.2.0")
    with client, pytest.raises(ConfigError, match="additional_evidence"):
        client.attestation({"nonce": "bm9uY2U=", "extra-params": {}},
                           additional_evidence=lambda d: "{}")
