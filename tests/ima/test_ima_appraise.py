"""IMA appraisal: allow-list by path, signatures, violations; every check is reported; the
finding codes are pinned."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee.errors import ConfigError
from veritee.findings import Outcome
from veritee.formats.ima import ImaEntry, ImaLog
from veritee.policy.ima import FINDING_CODES, AllowedDigest, ImaPolicy, appraise
from veritee.trust.ima import VerifiedImaLog, replay_ima, verify_ima_log

from _evidence import EVIDENCE_DIR, evidence_available


def _samples() -> list[dict[str, Any]]:
    path = EVIDENCE_DIR / "MANIFEST-2.json"
    if not evidence_available() or not path.is_file():
        return []
    return [s for s in json.loads(path.read_text())["samples"] if s["family"] == "ima"]


SAMPLES = _samples()


def _by_id(sample_id: str) -> dict[str, Any]:
    for s in SAMPLES:
        if s["id"] == sample_id:
            return s
    pytest.skip(f"sample {sample_id} not in the evidence corpus")


def _file(sample: dict[str, Any], role: str) -> Path:
    return Path(EVIDENCE_DIR / sample["dir"] / sample["files"][role].split(" ")[0])


def _verified(sample: dict[str, Any], *, quoted: bool = True, keys: Any = ()) -> VerifiedImaLog:
    if "ima_log" in sample["files"]:
        log = ImaLog.from_binary(_file(sample, "ima_log").read_bytes(), strict=False)
    else:
        log = ImaLog.from_ascii(_file(sample, "ima_ascii_log").read_bytes())
    pcr = bytes.fromhex(sample["known_fields"]["replayed_pcr10_sha1"]) if quoted else None
    return verify_ima_log(log, pcr10=pcr, keys=keys)


def _allow_all_of(v: VerifiedImaLog) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in v.entries:
        assert e.name is not None and e.file_digest is not None
        out.setdefault(e.name, []).append(e.file_digest)
    return out


def _keys(sample: dict[str, Any]) -> list[Any]:
    keys = [serialization.load_pem_public_key(_file(sample, r).read_bytes())
            for r in ("rsa_pubkey", "ec_pubkey_secp256k1")]
    assert all(isinstance(k, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) for k in keys)
    return keys


def test_finding_codes_are_pinned() -> None:
    assert frozenset({
        "ima.replay.unchecked", "ima.entry.unreplayed", "ima.violation", "ima.digest.weak",
        "ima.allowlist.unknown_path", "ima.allowlist.digest_mismatch", "ima.signature.missing",
    }) == FINDING_CODES


@pytest.mark.evidence
def test_minimal_sha256_log_is_accepted_by_the_keylime_generated_policy() -> None:
    sample = _by_id("keylime-ima-ng-sha256-minimal")
    policy = ImaPolicy({e["path"]: [e["file_digest"].split(":")[1]]
                        for e in sample["known_fields"]["entries"]})
    appraisal = appraise(_verified(sample), policy)
    assert appraisal.accepted, appraisal.to_text()
    assert {f.code for f in appraisal.findings} == FINDING_CODES
    assert appraisal.claims["replayed"] == sample["known_fields"]["replayed_pcr10_sha1"]


@pytest.mark.evidence
@pytest.mark.parametrize("sample_id", ["tss-ima-ng-sha1", "tss-ima-legacy-sha1"])
def test_sha1_file_digests_are_weak_by_default(sample_id: str) -> None:
    v = _verified(_by_id(sample_id))
    assert appraise(v, ImaPolicy(_allow_all_of(v))).codes() == ["ima.digest.weak"]
    assert appraise(v, ImaPolicy(_allow_all_of(v), allow_weak_digests=True)).accepted


@pytest.mark.evidence
def test_keylime_allowlist_leaves_the_unlisted_modules_unknown() -> None:
    sample = _by_id("keylime-ima-sig-ascii-signed")
    policy = ImaPolicy({p: [d] for p, d in
                        sample["known_fields"]["allowlist_sha256_from_test"].items()})
    appraisal = appraise(_verified(sample), policy)
    bad = list(appraisal.failures)
    assert {f.code for f in bad} == {"ima.allowlist.unknown_path"}
    assert sorted(f.got for f in bad) == sorted(
        e["path"] for e in sample["known_fields"]["entries"] if e["path"].endswith(".ko"))


@pytest.mark.evidence
def test_signed_entries_pass_without_allowlist_entries_when_accepted() -> None:
    sample = _by_id("keylime-ima-sig-ascii-signed")
    v = _verified(sample, keys=_keys(sample))
    allow = {k: d for k, d in _allow_all_of(v).items() if k not in ("/usr/bin/dd",
                                                                    "/usr/bin/zmore")}
    assert appraise(v, ImaPolicy(allow, accept_signed=True)).accepted
    rejected = appraise(v, ImaPolicy(allow))
    assert rejected.codes() == ["ima.allowlist.unknown_path"] * 2


@pytest.mark.evidence
def test_required_signatures_flag_unsigned_files() -> None:
    sample = _by_id("keylime-ima-sig-ascii-signed")
    v = _verified(sample, keys=_keys(sample)[:1])  # the EC key is not trusted
    appraisal = appraise(v, ImaPolicy(_allow_all_of(v), require_signatures=True))
    missing = [f for f in appraisal.failures if f.code == "ima.signature.missing"]
    assert len(missing) == 3  # two modules unsigned, zmore signed by an untrusted key
    assert any(f.got == "signature by a key not given" for f in missing)


@pytest.mark.evidence
def test_file_with_an_unlisted_digest_is_a_mismatch() -> None:
    sample = _by_id("keylime-ima-ng-sha256-minimal")
    v = _verified(sample)
    allow = _allow_all_of(v)
    allow["/data"] = ["sha256:" + "00" * 32]
    appraisal = appraise(v, ImaPolicy(allow))
    assert appraisal.codes() == ["ima.allowlist.digest_mismatch"]


@pytest.mark.evidence
def test_log_not_replayed_against_a_quote_is_rejected() -> None:
    sample = _by_id("keylime-ima-ng-sha256-minimal")
    v = _verified(sample, quoted=False)
    assert appraise(v, ImaPolicy(_allow_all_of(v))).codes() == ["ima.replay.unchecked"]
    lax = appraise(v, ImaPolicy(_allow_all_of(v), require_quoted_pcr=False))
    assert lax.accepted and any(f.outcome is Outcome.SKIP for f in lax.findings)


@pytest.mark.evidence
def test_violation_record_is_rejected_by_default() -> None:
    sample = _by_id("tss-ima-sig-sha256")
    log = ImaLog.from_binary(_file(sample, "ima_log_invalidated_variant").read_bytes())
    v = verify_ima_log(log, pcr10=replay_ima(log))
    allow = {e.name: [e.file_digest] for e in log.entries if not e.violation}
    policy = ImaPolicy(allow, allow_weak_digests=True)  # type: ignore[arg-type]
    assert appraise(v, policy).codes() == ["ima.violation"]
    assert appraise(v, replace(policy, allow_violations=True)).accepted


def test_entry_of_another_pcr_is_flagged_unreplayed() -> None:
    data = (len(b"sha256:\0") + 32).to_bytes(4, "little") + b"sha256:\0" + bytes(32)
    data += (3).to_bytes(4, "little") + b"/a\0"
    entry = ImaEntry(10, hashlib.sha1(data).digest(), "ima-ng", data, "sha256", bytes(32), "/a")
    log = ImaLog((entry, replace(entry, pcr=11)))
    v = verify_ima_log(log, pcr10=replay_ima(log))
    appraisal = appraise(v, ImaPolicy({"/a": ["00" * 32]}))
    assert appraisal.codes() == ["ima.entry.unreplayed"]


def test_empty_allowlist_rejects_every_entry() -> None:
    data = (len(b"sha256:\0") + 32).to_bytes(4, "little") + b"sha256:\0" + bytes(32)
    data += (3).to_bytes(4, "little") + b"/a\0"
    entry = ImaEntry(10, hashlib.sha1(data).digest(), "ima-ng", data, "sha256", bytes(32), "/a")
    log = ImaLog((entry,))
    v = verify_ima_log(log, pcr10=replay_ima(log))
    assert appraise(v, ImaPolicy({})).codes() == ["ima.allowlist.unknown_path"]


@pytest.mark.parametrize("bad", [{"/a": "00"}, {"/a": ["zz"]}, {"/a": ["sha256:00"]},
                                 {"": ["00"]}, {"/a": [1]}])
def test_malformed_allowlist_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError):
        ImaPolicy(bad)


def test_allowed_digest_forms() -> None:
    assert AllowedDigest.parse("SHA1:" + "ab" * 20) == AllowedDigest("sha1", bytes([0xab]) * 20)
    assert str(AllowedDigest.parse("ab" * 32)) == "ab" * 32
