"""The TPM scheme through the one front door with a real (software) TPM: swtpm produces fresh
Trustee-tpm-JSON evidence for the verifier's challenge (``platform.adapters.TpmAdapter``), the
verifier enrolls its AK by credential activation (``platform.tpm.register_ak``) and verifies.

Each attack changes one thing and expects one error or one finding. Skipped when swtpm (or
tpm2-pytss) is absent, as tests/platform's swtpm tests are.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import attest
from veritee.attest import Challenge
from veritee.errors import PolicyRejected, VerificationError
from veritee.formats.tpm import HashAlg, ObjectAttr, TpmtPublic
from veritee.policy import Appraisal
from veritee.policy.tpm import TpmPolicy, ak_pin
from veritee.schemes import Anchors, expected_binding, get, recognise
from veritee.trust.tpm import TpmAnchors

swtpm = pytest.importorskip("veritee.platform.tpm")
REASON = swtpm.swtpm_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

TEE_KEY = ec.generate_private_key(ec.SECP256R1()).public_key()


@pytest.fixture(scope="module")
def tpm() -> Iterator[Any]:
    state = Path(tempfile.mkdtemp(prefix="veritee-front-door-tpm-"))
    platform = swtpm.InsecureSwtpmPlatform.open(state)
    try:
        yield platform
    finally:
        platform.close()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def anchors(tpm: Any) -> Anchors:
    """The verifier's enrolment of this TPM's AK: EK certificate to the swtpm CA (passed
    explicitly: never trusted by default), then TPM2_ActivateCredential."""
    registered = swtpm.register_ak(tpm, roots=[tpm.ca_root()],
                                   intermediates=tpm.ca_intermediates(),
                                   now=datetime.now(UTC))
    return Anchors({"tpm": TpmAnchors(registered_aks=(registered,))})


def _challenge(nonce: bytes = b"fresh verifier nonce") -> Challenge:
    return Challenge.for_key(nonce, TEE_KEY)


@pytest.fixture(scope="module")
def evidence(tpm: Any) -> bytes:
    from veritee.platform.adapters import TpmAdapter

    c = _challenge()
    data: bytes = TpmAdapter(tpm).evidence(
        expected_binding(c.nonce, c.key_spki, get("tpm").binding_size)).data
    return data


def _edit(data: bytes, change: Any) -> bytes:
    doc = json.loads(data)
    change(doc)
    return json.dumps(doc).encode()


def _flip_b64(value: str, at: int) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[at] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def test_fresh_swtpm_evidence_is_accepted(evidence: bytes, anchors: Anchors) -> None:
    assert recognise(evidence).name == "tpm"
    a = attest.verify(evidence, policy=TpmPolicy(), anchors=anchors, challenge=_challenge())
    assert isinstance(a, Appraisal) and a.accepted, a.to_text()
    assert a.claims["ak_binding"] == "credential-activation"
    assert a.claims["tee"] == "tpm"
    assert a.vector is not None
    assert a.vector["hardware"] == 2 and a.vector["instance-identity"] == 2
    # The event log of the measured boot replayed against the quoted PCRs.
    assert a.claims["event_log_replayed"]


def test_reference_pcrs_match_and_a_changed_one_is_refused(evidence: bytes,
                                                           anchors: Anchors) -> None:
    first = attest.verify(evidence, policy=TpmPolicy(), anchors=anchors,
                          challenge=_challenge())
    assert isinstance(first, Appraisal)
    reference = {HashAlg.SHA256: {int(i): bytes.fromhex(v) for i, v in
                                  first.claims["pcrs"]["sha256"].items()}}
    ok = attest.verify(evidence, policy=TpmPolicy(pcrs=reference), anchors=anchors,
                       challenge=_challenge())
    assert isinstance(ok, Appraisal) and ok.vector is not None
    assert ok.vector["executables"] == 3
    reference[HashAlg.SHA256][7] = bytes(32)
    with pytest.raises(PolicyRejected) as info:
        attest.verify(evidence, policy=TpmPolicy(pcrs=reference), anchors=anchors,
                      challenge=_challenge())
    assert info.value.appraisal.codes() == ["tpm.pcr.mismatch"]


def test_wrong_nonce_is_refused(evidence: bytes, anchors: Anchors) -> None:
    with pytest.raises(PolicyRejected) as info:
        attest.verify(evidence, policy=TpmPolicy(), anchors=anchors,
                      challenge=_challenge(b"another nonce"))
    assert info.value.appraisal.codes() == ["tpm.binding.mismatch"]


def test_tampered_quote_is_refused(evidence: bytes, anchors: Anchors) -> None:
    def flip(doc: dict[str, Any]) -> None:
        doc["tpm_quote"]["message"] = _flip_b64(doc["tpm_quote"]["message"], 40)

    with pytest.raises(VerificationError) as info:
        attest.verify(_edit(evidence, flip), policy=TpmPolicy(), anchors=anchors,
                      challenge=_challenge())
    assert info.value.code == "tpm.quote.signature"


def test_tampered_pcr_value_is_refused(evidence: bytes, anchors: Anchors) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["tpm_quote"]["pcrs"][4] = "00" * 32

    with pytest.raises(VerificationError) as info:
        attest.verify(_edit(evidence, change), policy=TpmPolicy(), anchors=anchors,
                      challenge=_challenge())
    assert info.value.code == "tpm.quote.pcr_digest"


def test_tampered_event_log_is_refused(evidence: bytes, anchors: Anchors) -> None:
    from veritee.formats.eventlog import EventLog

    doc = json.loads(evidence)
    log = EventLog.from_bytes(base64.b64decode(doc["event_log"]))
    measured = next(e for e in log.measured() if e.pcr in range(8))
    # TCG_PCR_EVENT2 (PFP 10.2.2): pcrIndex, eventType, count (12 bytes), then per bank in
    # Spec ID order hashAlg (2) || digest. Flip the SHA-256 digest: the bank the quote covers
    # (a SHA-1 digest is not backed by this quote, so its change would prove nothing).
    assert log.spec_id is not None
    at = measured.offset + 12
    for alg in log.spec_id.algorithms:
        if alg.hash_alg is HashAlg.SHA256:
            break
        at += 2 + alg.digest_size
    doc["event_log"] = _flip_b64(doc["event_log"], at + 2)
    with pytest.raises(VerificationError) as info:
        attest.verify(json.dumps(doc).encode(), policy=TpmPolicy(), anchors=anchors,
                      challenge=_challenge())
    assert info.value.code == "tpm.eventlog.replay_mismatch"


def test_unbound_ak_is_refused(evidence: bytes) -> None:
    """No enrolment, no AK certificate, no pin: a valid quote by *some* key (issue 18)."""
    with pytest.raises(PolicyRejected) as info:
        attest.verify(evidence, policy=TpmPolicy(), challenge=_challenge())
    assert info.value.appraisal.codes() == ["tpm.ak.unbound"]
    assert info.value.appraisal.vector is not None
    assert info.value.appraisal.vector["hardware"] == 97


def test_ak_enrolled_elsewhere_does_not_bind(evidence: bytes, tpm: Any) -> None:
    """An enrolled AK with other attributes (same key, fixedTPM cleared): not the object the
    TPM activated the credential for, so the Name differs and nothing binds."""
    ak: TpmtPublic = tpm.ak_public()
    raw = bytearray(ak.raw)
    attrs = int.from_bytes(raw[4:8], "big") & ~int(ObjectAttr.FIXED_TPM)
    raw[4:8] = attrs.to_bytes(4, "big")  # TPMT_PUBLIC.objectAttributes (Part 2, 12.2.4)
    other = TpmtPublic.from_bytes(bytes(raw))
    with pytest.raises(PolicyRejected) as info:
        attest.verify(evidence, policy=TpmPolicy(),
                      anchors=Anchors({"tpm": TpmAnchors(registered_aks=(other,))}),
                      challenge=_challenge())
    assert info.value.appraisal.codes() == ["tpm.ak.unbound"]


def test_duplicable_ak_attributes_in_the_evidence_are_refused(evidence: bytes,
                                                                tpm: Any) -> None:
    """The attester claims its AK lacks fixedTPM|fixedParent (a duplicable key): even pinned,
    the attribute check refuses it; enrolment does not match its Name either."""
    raw = bytearray(base64.b64decode(json.loads(evidence)["ak_tpmt_public"]))
    attrs = int.from_bytes(raw[4:8], "big") & ~int(ObjectAttr.FIXED_TPM |
                                                    ObjectAttr.FIXED_PARENT)
    raw[4:8] = attrs.to_bytes(4, "big")

    def swap(doc: dict[str, Any]) -> None:
        doc["ak_tpmt_public"] = base64.b64encode(bytes(raw)).decode()

    pin = frozenset({ak_pin(tpm.ak_public())})
    with pytest.raises(PolicyRejected) as info:
        attest.verify(_edit(evidence, swap), policy=TpmPolicy(ak_pins=pin),
                      challenge=_challenge())
    assert info.value.appraisal.codes() == ["tpm.ak.properties"]


def test_another_key_substituted_for_the_ak_is_refused(evidence: bytes,
                                                       anchors: Anchors) -> None:
    from veritee.trust.tpm import ak_spki

    other = ec.generate_private_key(ec.SECP256R1()).public_key()

    def swap(doc: dict[str, Any]) -> None:
        doc["ak_public"] = base64.b64encode(ak_spki(other)).decode()
        del doc["ak_tpmt_public"]

    with pytest.raises(VerificationError) as info:
        attest.verify(_edit(evidence, swap), policy=TpmPolicy(), anchors=anchors,
                      challenge=_challenge())
    assert info.value.code == "tpm.quote.signature"
