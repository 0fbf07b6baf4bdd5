"""IMA log verification: every real sample replays to its manifest PCR 10; one-change attacks
(an edited entry, a dropped or reordered entry, a tampered signature) each raise one code."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from veritee.errors import VerificationError
from veritee.findings import Outcome
from veritee.formats.ima import ImaEntry, ImaLog, ImaSignature, KernelHashAlgo
from veritee.formats.tpm import HashAlg
from veritee.trust.ima import ImaPublicKey, ima_key_id, replay_ima, verify_ima_log

from _evidence import EVIDENCE_DIR, evidence_available


def _samples() -> list[dict[str, Any]]:
    path = EVIDENCE_DIR / "MANIFEST-2.json"
    if not evidence_available() or not path.is_file():
        return []
    return [s for s in json.loads(path.read_text())["samples"] if s["family"] == "ima"]


SAMPLES = _samples()


def _file(sample: dict[str, Any], role: str) -> Path:
    return Path(EVIDENCE_DIR / sample["dir"] / sample["files"][role].split(" ")[0])


def _log(sample: dict[str, Any]) -> ImaLog:
    if "ima_log" in sample["files"]:
        return ImaLog.from_binary(_file(sample, "ima_log").read_bytes(), strict=False)
    return ImaLog.from_ascii(_file(sample, "ima_ascii_log").read_bytes())


def _pcr(sample: dict[str, Any]) -> bytes:
    return bytes.fromhex(sample["known_fields"]["replayed_pcr10_sha1"])


def _by_id(sample_id: str) -> dict[str, Any]:
    for s in SAMPLES:
        if s["id"] == sample_id:
            return s
    pytest.skip(f"sample {sample_id} not in the evidence corpus")


def _keylime() -> tuple[dict[str, Any], ImaLog, ImaPublicKey, ImaPublicKey]:
    sample = _by_id("keylime-ima-sig-ascii-signed")
    keys = [serialization.load_pem_public_key(_file(sample, r).read_bytes())
            for r in ("rsa_pubkey", "ec_pubkey_secp256k1")]
    rsa_key, ec_key = keys
    assert isinstance(rsa_key, rsa.RSAPublicKey) and isinstance(ec_key, ec.EllipticCurvePublicKey)
    return sample, _log(sample), rsa_key, ec_key


def _rehash(entry: ImaEntry, **changes: Any) -> ImaEntry:
    """The entry with ``changes`` and a template hash recomputed (what a log forger does)."""
    changed = replace(entry, **changes)
    if "sig" in changes:
        data = changed.template_data
        old = len(entry.sig).to_bytes(4, "little") + entry.sig
        assert data.endswith(old)
        data = data[:-len(old)] + len(changed.sig).to_bytes(4, "little") + changed.sig
        changed = replace(changed, template_data=data)
    return replace(changed, template_hash=hashlib.sha1(changed.template_data).digest())


def _codes(exc: pytest.ExceptionInfo[VerificationError]) -> str:
    return exc.value.code


# -- real samples --------------------------------------------------------------------------
@pytest.mark.evidence
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s["id"])
def test_real_log_replays_to_the_manifest_pcr10(sample: dict[str, Any]) -> None:
    log = _log(sample)
    verified = verify_ima_log(log, pcr10=_pcr(sample))
    assert verified.replayed == _pcr(sample)
    assert [c.code for c in verified.checks] == ["ima.template_hash", "ima.replay",
                                                 "ima.signature"]
    assert [c.outcome for c in verified.checks] == [Outcome.PASS, Outcome.PASS, Outcome.SKIP]
    assert verified.violations == () and verified.unreplayed == ()


@pytest.mark.evidence
@pytest.mark.parametrize("sample", [s for s in SAMPLES if "ima_log" in s["files"]],
                         ids=lambda s: s["id"])
def test_sha256_bank_replay_with_zero_padded_template_hashes(sample: dict[str, Any]) -> None:
    want = bytes.fromhex(sample["known_fields"][
        "replayed_pcr10_sha256_bank_with_zero_padded_sha1_template_hashes"])
    verified = verify_ima_log(_log(sample), pcr10=want, bank=HashAlg.SHA256)
    assert verified.replayed == want
    per_bank = replay_ima(_log(sample), HashAlg.SHA256, per_bank_template_hash=True)
    assert per_bank != want  # a 5.8+ kernel would extend a different value


@pytest.mark.evidence
@pytest.mark.parametrize("sample_id", ["tss-ima-sig-sha256", "tss-ima-legacy-sha1"])
def test_invalidated_variant_replays_violation_as_all_ff(sample_id: str) -> None:
    sample = _by_id(sample_id)
    kf = sample["known_fields"]["invalidated_variant"]
    log = ImaLog.from_binary(_file(sample, "ima_log_invalidated_variant").read_bytes())
    verified = verify_ima_log(log, pcr10=bytes.fromhex(kf["replayed_pcr10_sha1"]))
    assert len(verified.violations) == kf["invalidated_entries"]


@pytest.mark.evidence
def test_keylime_signatures_verify_with_their_keys() -> None:
    _, log, rsa_key, ec_key = _keylime()
    names = {i: e.name for i, e in enumerate(log.entries)}
    both = verify_ima_log(log, keys=[rsa_key, ec_key])
    assert {names[i] for i in both.signatures} == {"/usr/bin/dd", "/usr/bin/zmore"}
    assert both.unverified_signatures == ()
    rsa_only = verify_ima_log(log, keys=[rsa_key])
    assert {names[i] for i in rsa_only.signatures} == {"/usr/bin/dd"}
    assert {names[i] for i in rsa_only.unverified_signatures} == {"/usr/bin/zmore"}
    assert ima_key_id(rsa_key).hex() == "f3452d23" and ima_key_id(ec_key).hex() == "531f4025"


@pytest.mark.evidence
def test_keylime_bad_signature_entry_is_rejected_by_its_template_hash() -> None:
    sample, _, rsa_key, ec_key = _keylime()
    log = ImaLog.from_ascii(_file(sample, "negative_malformed_signature_entry").read_bytes())
    with pytest.raises(VerificationError) as exc:
        verify_ima_log(log, keys=[rsa_key, ec_key])
    assert _codes(exc) == "ima.template_hash"
    # A forger who also fixes the template hash still fails: the header is malformed.
    forged = ImaLog((_rehash(log.entries[0]),))
    with pytest.raises(VerificationError) as exc:
        verify_ima_log(forged, keys=[rsa_key, ec_key])
    assert _codes(exc) == "ima.signature"


# -- attacks: one change, one code ----------------------------------------------------------
@pytest.mark.evidence
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s["id"])
def test_edited_entry_fails_its_template_hash(sample: dict[str, Any]) -> None:
    log = _log(sample)
    entry = log.entries[-1]
    data = bytearray(entry.template_data)
    data[-2] ^= 0x01  # one byte of the file name (or its padding / signature)
    tampered = ImaLog((*log.entries[:-1], replace(entry, template_data=bytes(data))))
    with pytest.raises(VerificationError) as exc:
        verify_ima_log(tampered, pcr10=_pcr(sample))
    assert _codes(exc) == "ima.template_hash"


@pytest.mark.evidence
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s["id"])
def test_dropped_entry_fails_the_replay(sample: dict[str, Any]) -> None:
    log = _log(sample)
    dropped = ImaLog(log.entries[:-1])
    with pytest.raises(VerificationError) as exc:
        verify_ima_log(dropped, pcr10=_pcr(sample))
    assert _codes(exc) == "ima.replay_mismatch"


@pytest.mark.evidence
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s["id"])
def test_reordered_entries_fail_the_replay(sample: dict[str, Any]) -> None:
    e = _log(sample).entries
    with pytest.raises(VerificationError) as exc:
        verify_ima_log(ImaLog((e[1], e[0], *e[2:])), pcr10=_pcr(sample))
    assert _codes(exc) == "ima.replay_mismatch"


@pytest.mark.evidence
def test_entry_hidden_as_violation_fails_the_replay() -> None:
    sample = _by_id("tss-ima-ng-sha1")
    e = _log(sample).entries
    hidden = replace(e[2], template_hash=bytes(20))
    with pytest.raises(VerificationError) as exc:
        verify_ima_log(ImaLog((*e[:2], hidden, *e[3:])), pcr10=_pcr(sample))
    assert _codes(exc) == "ima.replay_mismatch"


@pytest.mark.evidence
@pytest.mark.parametrize("name", ["/usr/bin/dd", "/usr/bin/zmore"])
def test_tampered_signature_fails_under_its_key(name: str) -> None:
    _, log, rsa_key, ec_key = _keylime()
    index = next(i for i, e in enumerate(log.entries) if e.name == name)
    entry = log.entries[index]
    sig = bytearray(entry.sig)
    sig[-1] ^= 0x01
    forged = list(log.entries)
    forged[index] = _rehash(entry, sig=bytes(sig))
    with pytest.raises(VerificationError) as exc:
        verify_ima_log(ImaLog(tuple(forged)), keys=[rsa_key, ec_key])
    assert _codes(exc) == "ima.signature"


@pytest.mark.evidence
def test_signature_moved_to_another_file_fails() -> None:
    _, log, rsa_key, _ = _keylime()
    e = list(log.entries)
    dd = next(x for x in e if x.name == "/usr/bin/dd")
    e[4] = _rehash(e[4], sig=dd.sig)  # zmore's digest, dd's signature
    with pytest.raises(VerificationError) as exc:
        verify_ima_log(ImaLog(tuple(e)), keys=[rsa_key])
    assert _codes(exc) == "ima.signature"


def test_signature_hash_must_be_the_measured_digest_algorithm() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    digest = hashlib.sha256(b"file").digest()
    der = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    kid = ima_key_id(key.public_key())
    for algo, ok in ((KernelHashAlgo.SHA256, True), (KernelHashAlgo.SHA512, False)):
        sig = ImaSignature(3, 2, algo, kid, der).to_bytes()
        entry = _signed_entry("/bin/f", digest, sig)
        if ok:
            v = verify_ima_log(ImaLog((entry,)), keys=[key.public_key()])
            assert v.signatures == {0: kid}
        else:
            with pytest.raises(VerificationError, match=r"ima\.signature"):
                verify_ima_log(ImaLog((entry,)), keys=[key.public_key()])


def _signed_entry(path: str, digest: bytes, sig: bytes) -> ImaEntry:
    def fld(b: bytes) -> bytes:
        return len(b).to_bytes(4, "little") + b
    data = fld(b"sha256:\0" + digest) + fld(path.encode() + b"\0") + fld(sig)
    return ImaEntry(10, hashlib.sha1(data).digest(), "ima-sig", data, "sha256", digest, path,
                    sig=sig)


def test_fresh_rsa_key_signature_verifies_and_a_different_key_does_not() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    digest = hashlib.sha256(b"content").digest()
    raw = key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    kid = ima_key_id(key.public_key())
    entry = _signed_entry("/usr/bin/x", digest,
                          ImaSignature(3, 2, KernelHashAlgo.SHA256, kid, raw).to_bytes())
    assert verify_ima_log(ImaLog((entry,)), keys=[key.public_key()]).signatures == {0: kid}
    unverified = verify_ima_log(ImaLog((entry,)), keys=[other.public_key()])
    assert unverified.unverified_signatures == (0,) and not unverified.signatures


def test_wrong_size_pcr_value_is_rejected() -> None:
    with pytest.raises(VerificationError, match=r"ima\.replay_mismatch"):
        verify_ima_log(ImaLog(()), pcr10=bytes(32))


def test_entries_of_other_pcrs_are_not_replayed_into_pcr10() -> None:
    entry = _signed_entry("/a", bytes(32), b"")
    other = replace(entry, pcr=11)
    v = verify_ima_log(ImaLog((entry, other)), pcr10=replay_ima(ImaLog((entry,))))
    assert v.unreplayed == (1,)
