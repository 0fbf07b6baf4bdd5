"""Real samples of ../shared/evidence sent to the service's ``/v1/attest`` (issue 11, "What it
must show"): a real sample can never carry the service's fresh challenge, so for one sample per
family the scheme's binding check refuses it (403 ``attestation.rejected`` with the failure
``<scheme>.binding.mismatch``), the refusal is audited, and everything before the binding
(signature, chain to the vendor's root, the sample's collateral) passed: the only failures are
the binding and what the scheme's secure default policy adds for an unpinned workload.

The service's clock is moved to the time at which the manifest says the sample verifies; the
trust anchors and collateral are the sample's, passed to ``create_app`` (production roots where
the vendor has one: AWS, AMD, Intel, NVIDIA). Revocation is waived (``require_crl`` off, dev
mode) because no sample ships a current CRL for its chain; that is tested elsewhere.
Skips cleanly when the corpus is absent.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from veritee import attest, schemes
from veritee.policy import Appraisal
from veritee.service import MasterKey, Settings, create_app
from veritee.service.core import create_admin_token
from veritee.service.server import LoopbackServer
from veritee.service.storage import open_store

from _evidence import EVIDENCE_DIR, evidence_available, load_manifest

pytestmark = [pytest.mark.evidence,
              pytest.mark.skipif(not evidence_available(), reason="shared evidence absent"),
              pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")]


@dataclass
class Sample:
    """One family's sample as the service needs it."""

    scheme: str
    evidence: bytes
    at: datetime
    attached: bytes | None = None
    anchors: dict[str, Any] = field(default_factory=dict)
    collateral: dict[str, Any] = field(default_factory=dict)

    def default_findings(self) -> set[str]:
        """What the scheme's secure default policy refuses in this sample through the front
        door (``attest``), with no challenge to meet: an unpinned workload, an old TCB..."""
        verifier = attest.Verifier(anchors=schemes.Anchors(self.anchors),
                                   collateral=schemes.Collateral(self.collateral),
                                   require_revocation=False)
        appraisal = verifier.appraise(
            attest.EvidencePart(self.evidence, scheme=schemes.get(self.scheme),
                                attached=self.attached),
            policy=schemes.get(self.scheme).default_policy(), now=self.at)
        assert isinstance(appraisal, Appraisal)
        # The service here runs with require_crl off (the operator's waiver): not a finding.
        return set(appraisal.codes()) - {f"{self.scheme}.revocation.unchecked"}


def _nitro() -> Sample:
    from _nitro_support import case

    raw, _, at = case("evervault-beta-doc-in-tls-cert-san", "extracted_doc_nondebug.cbor").load()
    return Sample("nitro", raw, at)


def _arm(sample_id: str) -> dict[str, Any]:
    from _arm_support import MANIFEST

    (sample,) = [s for s in load_manifest(MANIFEST)["samples"] if s["id"] == sample_id]
    return sample


def _psa() -> Sample:
    from veritee.collateral.arm import load_public_key

    from _arm_support import sample_path
    from _nvidia_support import NOW

    s = _arm("veraison-psa-iot-token")
    key = load_public_key(sample_path(s, "trust_anchor_endorsement"))
    return Sample("psa", sample_path(s, "token").read_bytes(), NOW, anchors={"arm": key})


def _cca() -> Sample:
    from veritee.collateral.arm import public_key_from_jwk

    from _arm_support import sample_path
    from _nvidia_support import NOW

    s = _arm("trustee-cca-example-token")
    (ta,) = json.loads(sample_path(s, "trust_anchors").read_text())
    return Sample("cca", sample_path(s, "cca_token").read_bytes(), NOW,
                  anchors={"arm": {ta["instance-id"]: public_key_from_jwk(ta["pkey"])}})


def _nvidia() -> Sample:
    from _nvidia_support import GOOD, NOW

    assert GOOD.chain is not None
    return Sample("nvidia", (GOOD.dir / GOOD.report).read_bytes(), NOW,
                  attached=(GOOD.dir / GOOD.chain).read_bytes())


def _tpm() -> Sample:
    from _tpm_support import file_of, samples

    (s,) = [s for s in samples("gcp-vtpm") if s["id"] == "gce-cos-85-no-nonce"]
    roots = schemes.get("tpm").load_collateral([file_of(s, "ek_ak_root"),
                                                file_of(s, "ek_ak_intermediate")])
    return Sample("tpm", file_of(s, "attestation_protobuf").read_bytes(),
                  datetime(2025, 1, 1, tzinfo=UTC), collateral={"tpm": roots})


def _az_snp() -> Sample:
    from veritee.collateral.tpm import load_trustee_azure_vtpm
    from veritee.crypto.amd_certs import load_certificates
    from veritee.trust.sevsnp import AmdCertificates, parse_vek_extensions

    from _tpm_support import file_of, samples

    (s,) = [s for s in samples("azure-vtpm") if s["id"] == "azure-snp-vtpm-evidence-v2"]
    data = file_of(s, "evidence_json").read_bytes()
    vcek = load_trustee_azure_vtpm(data).vcek
    assert vcek is not None
    product = parse_vek_extensions(load_certificates(vcek, source="vcek")[0]).product
    chain = EVIDENCE_DIR / "roots" / f"amd_{product.value.lower()}_cert_chain_vcek.pem"
    ask, ark = load_certificates(chain.read_bytes(), source=str(chain))
    return Sample("az-snp-vtpm", data, datetime(2025, 6, 1, tzinfo=UTC),
                  collateral={"amd": AmdCertificates(ark=ark, ask=ask)})


def _az_tdx() -> Sample:
    from _evidence import sample_time
    from _tpm_support import file_of, samples

    (s,) = [s for s in samples("azure-vtpm") if s["id"] == "azure-tdx-vtpm"]
    (tdx,) = [t for t in load_manifest()["samples"] if t["dir"] == "azure-tdx/v4-trustee"]
    return Sample("az-tdx-vtpm", file_of(s, "evidence_json_v1").read_bytes(), sample_time(tdx))


def _sevsnp() -> Sample:
    """A Milan report from MANIFEST.json with the VCEK it ships and AMD's Milan chain."""
    from _evidence import manifest_samples, sample_time

    (s,) = [s for s in manifest_samples("snp/") if s["id"] == SNP_SAMPLE]
    d = EVIDENCE_DIR / s["dir"]
    files = {role: d / name.split(" ", maxsplit=1)[0] for role, name in s["files"].items()}
    paths = [p for role, p in files.items() if role == "vcek" or "chain" in role]
    paths.append(EVIDENCE_DIR / "roots" / "amd_milan_cert_chain_vcek.pem")
    certs = schemes.get("sevsnp").load_collateral(paths)
    data = files["report"].read_bytes()
    if data[:1] != b"\x02":  # hex text
        data = bytes.fromhex(data.decode())
    return Sample("sevsnp", data, sample_time(s),
                  collateral={"amd": certs})


def _intel(prefix: str, scheme: str) -> Callable[[], Sample]:
    def make() -> Sample:
        from _evidence import manifest_samples
        from _intel_support import load_sample

        (s,) = [s for s in manifest_samples(prefix.split("/", maxsplit=1)[0] + "/")
                if s["dir"] == prefix.rstrip("/")]
        loaded = load_sample(s)
        return Sample(scheme, loaded.quote_bytes, loaded.now,
                      collateral={"intel": loaded.collateral})
    return make


SNP_SAMPLE = "snp-milan-v2-go-sev-guest"
FAMILIES: dict[str, Callable[[], Sample]] = {
    "nitro": _nitro, "psa": _psa, "cca": _cca, "nvidia": _nvidia, "tpm": _tpm,
    "az-snp-vtpm": _az_snp, "az-tdx-vtpm": _az_tdx, "sevsnp": _sevsnp,
    "tdx": _intel("tdx/v4-dcap-qvl-b0c06f-uptodate/", "tdx"),
    "sgx": _intel("sgx/v3-dcap-qvl-00a067/", "sgx")}


@dataclass
class Running:
    url: str
    http: httpx.Client
    store: Any
    admin: str


class _At:
    """The service clock, set to the sample's time (the service reads it once per request)."""

    def __init__(self, at: datetime) -> None:
        self.offset = at.timestamp() - time.time()

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture(params=sorted(FAMILIES))
def sample(request: pytest.FixtureRequest) -> Sample:
    if not evidence_available():
        pytest.skip("shared evidence absent")
    return FAMILIES[request.param]()


@pytest.fixture
def svc(sample: Sample, tmp_path: Path) -> Iterator[Running]:
    url = f"sqlite:///{tmp_path}/veritee.db"
    settings = Settings(database_url=url, dev_mode=True, key_source="emulated",
                        emulated_machine_dir="/nonexistent", require_crl=False)
    store = open_store(url, statement_timeout_ms=settings.db_statement_timeout_ms)
    app = create_app(settings, master_key=MasterKey(b"\x55" * 32), store=store,
                     anchors=schemes.Anchors(sample.anchors) if sample.anchors else None,
                     collateral=schemes.Collateral(sample.collateral), clock=_At(sample.at))
    server = LoopbackServer(app).start()
    _, token = create_admin_token(store, "test admin", "admin")
    running = Running(server.url, httpx.Client(timeout=30), store, token)
    yield running
    running.http.close()
    server.stop()
    store.close()


def _body(svc: Running, sample: Sample) -> dict[str, Any]:
    """A /v1/attest body for a fresh challenge that carries the sample as it is."""
    nonce = svc.http.post(f"{svc.url}/v1/challenge").json()["nonce"]
    key = ec.generate_private_key(ec.SECP384R1())
    body: dict[str, Any] = {
        "evidence": base64.b64encode(sample.evidence).decode(), "scheme": sample.scheme,
        "runtime_data": {"nonce": nonce,
                         "key": ECKey.import_key(key.public_key()).as_dict(private=False)}}
    if sample.attached is not None:
        body["attached"] = base64.b64encode(sample.attached).decode()
    return body


def _refusals(svc: Running) -> list[Any]:
    with svc.store.transaction(write=False) as tx:
        return [r for r in tx.audit_rows() if r.outcome == "refused"]


def test_a_real_sample_is_refused_by_its_schemes_binding_check_and_audited(
        svc: Running, sample: Sample) -> None:
    default = sample.default_findings()
    assert f"{sample.scheme}.binding.mismatch" not in default
    before = len(_refusals(svc))
    r = svc.http.post(f"{svc.url}/v1/attest", json=_body(svc, sample))
    assert r.status_code == 403, r.text
    problem = r.json()
    assert problem["code"] == "attestation.rejected", problem
    codes = {f["code"] for f in problem["failures"]}
    # The binding refuses it; verification (signature, chain, collateral) passed: the other
    # failures are exactly what the front door's default policy finds in the sample.
    assert codes == {f"{sample.scheme}.binding.mismatch"} | default, problem
    refusals = _refusals(svc)
    assert len(refusals) == before + 1
    assert f"{sample.scheme}.binding.mismatch" in refusals[-1].detail["failures"]


def test_a_tampered_sample_is_refused_before_any_binding(svc: Running, sample: Sample) -> None:
    """The same sample with its signature's last byte changed never reaches the binding: the
    refusal names a verification failure (so the test above shows the genuine sample passed
    verification and only its binding failed)."""
    body = _body(svc, sample)
    data = bytearray(sample.evidence)
    data[_signature_byte(sample)] ^= 0x01
    body["evidence"] = base64.b64encode(bytes(data)).decode()
    r = svc.http.post(f"{svc.url}/v1/attest", json=body)
    problem = r.json()
    assert f"{sample.scheme}.binding.mismatch" not in r.text
    if sample.scheme.startswith("az-") and r.status_code == 400:
        # A JSON container: the flip may break its encoding (a typed error, never a 500).
        assert problem["code"] == "evidence.malformed", problem
        return
    # A verification error (signature, digest, replay), never an appraisal.
    assert r.status_code == 403 and problem["code"] != "attestation.rejected", problem
    assert problem["code"].split(".")[0] in (sample.scheme, "tpm", "intel"), problem


def _signature_byte(sample: Sample) -> int:
    """An offset inside the signed bytes or the signature of each sample."""
    if sample.scheme in ("nitro", "psa", "cca"):
        return len(sample.evidence) - 2  # COSE_Sign1: the signature is last
    if sample.scheme == "nvidia":
        return len(sample.evidence) - 4  # hex text: the signature is last
    if sample.scheme == "sevsnp":
        return 0x2A0 + 1  # SEV-SNP ABI Table 23: SIGNATURE at 0x2A0
    if sample.scheme == "tdx":
        return 48 + 520  # TD 1.0 body REPORTDATA (DCAP quote v4 header is 48 bytes)
    if sample.scheme == "sgx":
        return 48 + 320  # SGX REPORT_BODY REPORTDATA at 320
    return len(sample.evidence) // 2
