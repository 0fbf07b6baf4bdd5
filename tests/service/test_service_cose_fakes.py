"""End to end over HTTP for the COSE-signed TEEs: AWS Nitro (``veritee.testing.nitro``), Arm
PSA and Arm CCA (``veritee.testing.arm``) answer a fresh challenge, get an EAR and a resource
pinned to their own workload; a wrong binding and a resource pinned to another workload are
refused (issue 11, "End-to-end service tests ... fakes that sign with real keys").

The fakes sign with real keys; their anchors reach the service only as the explicit
``create_app(..., anchors=...)`` argument (never a production default). Each scheme's binding is
64 bytes: SHA-512(nonce || SPKI(key)) in the Nitro ``nonce``, the PSA ``nonce`` claim and the CCA
realm ``challenge``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import schemes
from veritee.client import AttesterClient, ServiceRefused, evidence_for
from veritee.results import TIERS, verify_ear
from veritee.service import MasterKey
from veritee.testing.arm import FakeCca, FakePsa
from veritee.testing.nitro import FakeNitro

from _service_support import Service, challenge_nonce, start_service


class Source:
    """A fake TEE as an evidence source for the /v1 client: ``make(binding) -> evidence``."""

    binding_size = 64

    def __init__(self, scheme: str, make: Callable[[bytes], bytes]) -> None:
        self.scheme = scheme
        self.make = make

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]:
        return self.make(report_data), b""


@dataclass
class Tee:
    """One fake TEE: its scheme, anchors (vendor -> anchors), a source, and a second source
    of the same device running another workload."""

    scheme: str
    vendor: str
    anchors: Any
    source: Source
    other: Source
    pin: str = "measurement"
    policy: dict[str, Any] | None = None


def _nitro() -> Tee:
    fake = FakeNitro(now=datetime.now(UTC))
    mine, theirs = b"\x10" * 48, b"\x77" * 48  # FakeNitro's default PCR0, another image
    # Nitro's secure default refuses an unpinned image: the operator's appraisal policy
    # admits both images; the resource policies tell them apart.
    policy = {"scheme": "nitro", "pcr0": [mine.hex(), theirs.hex()]}
    return Tee("nitro", "aws", fake.anchors(),
               Source("nitro", lambda b: fake.document(nonce=b, pcrs={0: mine})),
               Source("nitro", lambda b: fake.document(nonce=b, pcrs={0: theirs})),
               policy=policy)


def _psa() -> Tee:
    fake = FakePsa()
    # A PSA token has no single measurement (claims "measurement" is None): the workload is
    # the caller partition, client_id (RFC 9783 s4.2.1).
    return Tee("psa", "arm", fake.anchors(),
               Source("psa", lambda b: fake.token(nonce=b, client_id=1)),
               Source("psa", lambda b: fake.token(nonce=b, client_id=7)), pin="client_id")


def _cca() -> Tee:
    fake = FakeCca()
    return Tee("cca", "arm", fake.anchors(),
               Source("cca", lambda b: fake.token(challenge=b)),
               Source("cca", lambda b: fake.token(challenge=b, rim=b"\x99" * 48)))


FAKES = {"nitro": _nitro, "psa": _psa, "cca": _cca}


@pytest.fixture(params=sorted(FAKES))
def tee(request: pytest.FixtureRequest) -> Tee:
    return FAKES[request.param]()


@pytest.fixture
def svc(tee: Tee, machine: Any, tmp_path: Path) -> Iterator[Service]:
    anchors = schemes.Anchors({"amd": machine.anchors(), tee.vendor: tee.anchors})
    service = start_service(f"sqlite:///{tmp_path}/veritee.db", machine,
                            master=MasterKey(b"\x44" * 32), anchors=anchors)
    if tee.policy is not None:
        r = service.http.put(f"{service.url}/v1/admin/policies/{tee.scheme}-default",
                             headers=service.admin_headers(), json=tee.policy)
        assert r.status_code == 201, r.text
    yield service
    service.close()


def _jwks(svc: Service) -> dict[str, Any]:
    body: dict[str, Any] = svc.http.get(f"{svc.url}/v1/jwks").json()
    return body


def _pin(tee: Tee, claims: dict[str, Any]) -> dict[str, list[Any]]:
    """The workload pin of a token's claims (the scheme's workload claim)."""
    value = claims.get(tee.pin)
    assert isinstance(value, (str, int)) and value, sorted(claims)
    return {tee.pin: [value]}


def _put(svc: Service, path: str, secret: bytes, policy: dict[str, Any]) -> None:
    r = svc.http.put(f"{svc.url}/v1/admin/resources/{path}", headers=svc.admin_headers(),
                     json={"secret": base64.b64encode(secret).decode(), "policy": policy})
    assert r.status_code == 200, r.text


def test_a_fresh_challenge_gets_an_ear_and_the_resource_pinned_to_the_workload(
        svc: Service, tee: Tee) -> None:
    with AttesterClient(svc.url, tee.source, dev_mode=True) as client:
        passport = client.attest()
        ear = verify_ear(passport.token, _jwks(svc))
        assert ear.tee == tee.scheme and ear.status == "affirming", ear.submod
        assert ear.submod["veritee.trace"][f"{tee.scheme}.binding.mismatch"] == "pass"
        _put(svc, f"{tee.scheme}/key", b"secret for " + tee.scheme.encode(),
             {"workloads": {tee.scheme: _pin(tee, ear.verified_claims)}})
        assert client.get_resource(f"{tee.scheme}/key", passport) == \
            b"secret for " + tee.scheme.encode()


def test_evidence_bound_to_another_key_is_refused_and_audited(svc: Service, tee: Tee) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    body = evidence_for(tee.source, challenge_nonce(svc), key)
    other = evidence_for(tee.source, challenge_nonce(svc), ec.generate_private_key(ec.SECP384R1()))
    body["runtime_data"]["nonce"] = other["runtime_data"]["nonce"]  # fresh, but not bound
    before = len(svc.refusals())
    r = svc.http.post(f"{svc.url}/v1/attest", json=body)
    assert r.status_code == 403, r.text
    assert [f["code"] for f in r.json()["failures"]] == [f"{tee.scheme}.binding.mismatch"]
    ear = verify_ear(r.json()["ear"], _jwks(svc), accept=TIERS)
    assert ear.status == "contraindicated"
    assert len(svc.refusals()) == before + 1


def test_a_resource_pinned_to_another_workload_stays_closed(svc: Service, tee: Tee) -> None:
    with AttesterClient(svc.url, tee.other, dev_mode=True) as client:
        other = verify_ear(client.attest().token, _jwks(svc)).verified_claims
    with AttesterClient(svc.url, tee.source, dev_mode=True) as client:
        passport = client.attest()
        mine = verify_ear(passport.token, _jwks(svc)).verified_claims
        assert _pin(tee, other) != _pin(tee, mine)  # the two workloads differ in their measurement
        _put(svc, f"{tee.scheme}/theirs", b"not yours",
             {"workloads": {tee.scheme: _pin(tee, other)}})
        with pytest.raises(ServiceRefused) as info:
            client.get_resource(f"{tee.scheme}/theirs", passport)
        assert info.value.status == 403
        assert info.value.code == "resource.policy", info.value.problem
