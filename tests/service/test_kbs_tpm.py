"""A TPM attester's evidence as a CoCo guest sends it (``tee: tpm``), through the KBS shape
conversion and the registered ``tpm`` scheme, bound by the protocol's rule.

swtpm produces Trustee-tpm-JSON evidence whose qualifying data (``TPMS_ATTEST.extraData``) is
the runtime-data digest regularized to the scheme's binding size: what ``/kbs/v0`` hands the
broker as the raw expected binding. Skipped without swtpm, as the TPM scheme's tests are.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from veritee import attest
from veritee.attest import EvidencePart
from veritee.errors import PolicyRejected
from veritee.formats.coco import canonical_json, primary_evidence, regularize, runtime_data
from veritee.policy import Appraisal
from veritee.policy.tpm import TpmPolicy
from veritee.schemes import Anchors, get
from veritee.trust.tpm import TpmAnchors

swtpm = pytest.importorskip("veritee.platform.tpm")
REASON = swtpm.swtpm_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

KEY = {"alg": "ECDH-ES+A256KW", "crv": "P-256", "kty": "EC", "x": "AAAA", "y": "BBBB"}


@pytest.fixture(scope="module")
def tpm() -> Iterator[Any]:
    state = Path(tempfile.mkdtemp(prefix="veritee-kbs-tpm-"))
    platform = swtpm.InsecureSwtpmPlatform.open(state)
    try:
        yield platform
    finally:
        platform.close()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def anchors(tpm: Any) -> Anchors:
    registered = swtpm.register_ak(tpm, roots=[tpm.ca_root()],
                                   intermediates=tpm.ca_intermediates(),
                                   now=datetime.now(UTC))
    return Anchors({"tpm": TpmAnchors(registered_aks=(registered,))})


def _binding(nonce: str) -> bytes:
    digest = hashlib.sha384(canonical_json(runtime_data(nonce, KEY, ""))).digest()
    return regularize(digest, get("tpm").binding_size)


def test_tpm_evidence_in_the_kbs_shape_carries_the_runtime_data_digest(
        tpm: Any, anchors: Anchors) -> None:
    from veritee.platform.adapters import TpmAdapter

    binding = _binding("bm9uY2Ux")
    doc = json.loads(TpmAdapter(tpm).evidence(binding).data)
    part = primary_evidence("tpm", doc)  # the kbs-types tee name -> the veritee scheme
    assert part.scheme == "tpm"
    a = attest.verify(EvidencePart(part.data, part.scheme, part.attached),
                      policy=TpmPolicy(), anchors=anchors, expected_binding=binding)
    assert isinstance(a, Appraisal) and a.accepted, a.to_text()
    # Another session's nonce (or /v1's rule) is not what the quote carries.
    with pytest.raises(PolicyRejected) as info:
        attest.verify(EvidencePart(part.data, part.scheme), policy=TpmPolicy(),
                      anchors=anchors, expected_binding=_binding("bm9uY2Uy"))
    assert info.value.appraisal.codes() == ["tpm.binding.mismatch"]


# -- real Azure vTPM evidence (Trustee's az-snp-vtpm documents), through the KBS shape --------
def _azure_samples() -> list[dict[str, Any]]:
    from _tpm_support import samples

    return [s for s in samples("azure-vtpm") if "evidence_json" in s["files"]]


@pytest.mark.parametrize("sample", _azure_samples(), ids=lambda s: str(s["id"]))
def test_real_azure_vtpm_evidence_passes_the_kbs_shape_unchanged(sample: dict[str, Any]
                                                                  ) -> None:
    # The az-snp-vtpm document a CoCo guest sends is re-serialised canonically by the shape
    # conversion; the scheme must verify it exactly as the original, bound by the quote's
    # nonce (TPMS_ATTEST.extraData: where the protocol's runtime-data digest goes).
    from veritee.collateral.tpm import load_trustee_azure_vtpm
    from veritee.crypto.amd_certs import load_certificates
    from veritee.schemes import Collateral
    from veritee.trust.sevsnp import AmdCertificates, parse_vek_extensions

    from _evidence import EVIDENCE_DIR
    from _tpm_support import file_of

    data = file_of(sample, "evidence_json").read_bytes()
    part = primary_evidence("az-snp-vtpm", json.loads(data))
    assert part.scheme == "az-snp-vtpm" and part.data != data  # re-serialised
    ev = load_trustee_azure_vtpm(part.data)
    assert ev.vcek is not None
    vek = load_certificates(ev.vcek, source="vcek")[0]
    chain = EVIDENCE_DIR / "roots" / (
        f"amd_{parse_vek_extensions(vek).product.value.lower()}_cert_chain_vcek.pem")
    ask, ark = load_certificates(chain.read_bytes(), source=str(chain))
    extra = bytes.fromhex(sample["known_fields"]["quote"]["extraData"])
    kwargs: dict[str, Any] = {"policy": TpmPolicy(), "now": datetime(2025, 6, 1, tzinfo=UTC),
                              "collateral": Collateral({"amd": AmdCertificates(ark=ark,
                                                                               ask=ask)})}
    a = attest.verify(EvidencePart(part.data, part.scheme), **kwargs, expected_binding=extra)
    assert isinstance(a, Appraisal) and a.claims["ak_binding"] == "azure-hcl"
    with pytest.raises(PolicyRejected):
        attest.verify(EvidencePart(part.data, part.scheme), **kwargs,
                      expected_binding=extra[::-1])


@pytest.mark.parametrize("sid,role,tee", [
    ("trustee-tpm-verifier-fixture", "evidence_json", "tpm"),
    ("azure-tdx-vtpm", "evidence_json_v0", "az-tdx-vtpm"),
    ("azure-tdx-vtpm", "evidence_json_v1", "az-tdx-vtpm"),
    ("azure-snp-vtpm-evidence-v1", "evidence_json", "azsnpvtpm"),
])
def test_recorded_trustee_documents_parse_the_same_after_the_kbs_shape(sid: str, role: str,
                                                                       tee: str) -> None:
    # Trustee's recorded tpm / Azure vTPM evidence documents, as a guest sends them: the
    # scheme parses the shape's canonical re-serialisation exactly as the original bytes.
    from _tpm_support import file_of, samples

    found = [s for s in samples("tpm", "azure-vtpm") if s["id"] == sid]
    if not found:
        pytest.skip(f"sample {sid} not in the shared evidence")
    data = file_of(found[0], role).read_bytes()
    part = primary_evidence(tee, json.loads(data))
    scheme = get(part.scheme)
    assert scheme.parse(part.data) == scheme.parse(data)
