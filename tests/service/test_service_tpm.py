"""End to end over HTTP: a (software) TPM attests to the service with a fresh challenge.

swtpm quotes with qualifyingData = SHA-256(nonce || SPKI(key)) (the ``tpm`` scheme's 32-byte
binding), the service verifies it through the registry like any scheme (the AK enrolled by
credential activation is the verifier's TPM anchor, passed to ``create_app`` explicitly), and a
resource pinned to a TPM claim is released. Skipped when swtpm is absent.
"""

from __future__ import annotations

import base64
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.client import AttesterClient, ServiceRefused, evidence_for
from veritee.results import verify_ear
from veritee.schemes import Anchors
from veritee.service import MasterKey
from veritee.trust.tpm import TpmAnchors

from _service_support import Service, challenge_nonce, start_service

swtpm = pytest.importorskip("veritee.platform.tpm")
REASON = swtpm.swtpm_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


class TpmSource:
    """The swtpm as an evidence source for the /v1 client: the tpm scheme, 32-byte binding."""

    scheme = "tpm"
    binding_size = 32

    def __init__(self, tpm: Any) -> None:
        from veritee.platform.adapters import TpmAdapter

        self.adapter = TpmAdapter(tpm)

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]:
        data: bytes = self.adapter.evidence(report_data).data
        return data, b""


@pytest.fixture(scope="module")
def tpm() -> Iterator[Any]:
    state = Path(tempfile.mkdtemp(prefix="veritee-service-tpm-"))
    platform = swtpm.InsecureSwtpmPlatform.open(state)
    try:
        yield platform
    finally:
        platform.close()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def svc(tpm: Any, machine: Any, tmp_path: Path) -> Iterator[Service]:
    registered = swtpm.register_ak(tpm, roots=[tpm.ca_root()],
                                   intermediates=tpm.ca_intermediates(), now=datetime.now(UTC))
    anchors = Anchors({"amd": machine.anchors(),
                       "tpm": TpmAnchors(registered_aks=(registered,))})
    service = start_service(f"sqlite:///{tmp_path}/veritee.db", machine,
                            master=MasterKey(b"\x22" * 32), anchors=anchors)
    yield service
    service.close()


def test_a_tpm_attests_with_a_fresh_challenge_and_gets_its_secret(svc: Service,
                                                                  tpm: Any) -> None:
    source = TpmSource(tpm)
    with AttesterClient(svc.url, source, dev_mode=True) as client:
        passport = client.attest()
    ear = verify_ear(passport.token, svc.http.get(f"{svc.url}/v1/jwks").json())
    assert ear.tee == "tpm" and ear.status == "affirming"
    assert ear.submod["veritee.trace"]["tpm.binding.mismatch"] == "pass"
    assert ear.submod["ear.appraisal-policy-id"] == "tpm-default"
    claims = ear.verified_claims
    pin = {k: [v] for k, v in claims.items()
           if k == "ak_binding" and isinstance(v, str)}
    assert pin, sorted(claims)
    r = svc.http.put(f"{svc.url}/v1/admin/resources/tpm/key", headers=svc.admin_headers(),
                     json={"secret": base64.b64encode(b"tpm secret").decode(),
                           "policy": {"workloads": {"tpm": pin}}})
    assert r.status_code == 200, r.text
    with AttesterClient(svc.url, source, dev_mode=True) as client:
        assert client.get_resource("tpm/key", passport) == b"tpm secret"
        # An SEV-SNP-only resource never opens to a TPM token.
        r = svc.http.put(f"{svc.url}/v1/admin/resources/snp/key", headers=svc.admin_headers(),
                         json={"secret": base64.b64encode(b"x").decode(),
                               "policy": {"measurements": ["ab" * 48]}})
        with pytest.raises(ServiceRefused) as info:
            client.get_resource("snp/key", passport)
        assert info.value.code == "resource.policy"


def test_a_tpm_quote_bound_to_another_key_is_refused(svc: Service, tpm: Any) -> None:
    source = TpmSource(tpm)
    key = ec.generate_private_key(ec.SECP384R1())
    body = evidence_for(source, challenge_nonce(svc), key)
    other = evidence_for(source, challenge_nonce(svc), ec.generate_private_key(ec.SECP384R1()))
    body["runtime_data"]["nonce"] = other["runtime_data"]["nonce"]  # a fresh, unbound nonce
    r = svc.http.post(f"{svc.url}/v1/attest", json=body)
    assert r.status_code == 403, r.text
    assert [f["code"] for f in r.json()["failures"]] == ["tpm.binding.mismatch"]


def test_a_tpm_policy_document_through_the_admin_api(svc: Service, tpm: Any) -> None:
    h = svc.admin_headers()
    r = svc.http.put(f"{svc.url}/v1/admin/policies/tpm-default", headers=h,
                     json={"scheme": "tpm", "no_such_field": 1})
    assert r.status_code == 400 and "no_such_field" in r.json()["detail"]
    r = svc.http.put(f"{svc.url}/v1/admin/policies/tpm-default", headers=h,
                     json={"scheme": "tpm", "pcrs": {"sha256": {"7": "00" * 32}}})
    assert r.status_code == 201, r.text
    with AttesterClient(svc.url, TpmSource(tpm), dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert "tpm.pcr.mismatch" in [f["code"] for f in info.value.problem["failures"]]
