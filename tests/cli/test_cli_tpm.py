"""``veritee tpm quote`` and ``veritee tpm eventlog`` on real samples."""

from __future__ import annotations

import json

import pytest

from veritee.cli import main

from _evidence import EVIDENCE_DIR, evidence_available

needs_evidence = pytest.mark.skipif(not evidence_available(), reason="no shared evidence")
KEYLIME = EVIDENCE_DIR / "tpm" / "keylime-checkquote-rsa2048-sha256"
LOG = EVIDENCE_DIR / "eventlog" / "fedora37-systemd-boot" / "event-sd-boot-fedora37.bin"


def _quote_args(nonce: str) -> list[str]:
    return ["tpm", "quote", "--quote", str(KEYLIME / "quote.attest.bin"), "--signature",
            str(KEYLIME / "quote.sig.bin"), "--ak", str(KEYLIME / "ak_pub.pem"), "--nonce",
            nonce, "--pcrs", str(KEYLIME / "pcrs.tpm2tools.bin")]


@needs_evidence
def test_real_quote_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_quote_args(f"@{KEYLIME / 'nonce.txt'}")) == 0
    assert "verdict: VERIFIED" in capsys.readouterr().out


@needs_evidence
def test_wrong_nonce_is_a_verification_failure(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_quote_args("00112233")) == 4
    assert "tpm.quote.nonce" in capsys.readouterr().err


def test_missing_argument_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Each action has its own options: a missing one is a usage error (2) naming them all,
    with the action's usage line (before subcommands: exit 3, one flag at a time)."""
    assert main(["tpm", "quote", "--quote", "q.attest"]) == 2
    err = capsys.readouterr().err
    assert "usage: veritee tpm quote" in err
    assert "required: --signature, --ak, --nonce" in err


@needs_evidence
def test_eventlog_replay(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tpm", "eventlog", "--eventlog", str(LOG), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["events"] > 10 and "SHA256" in doc["pcrs"]


def test_garbage_eventlog_is_bad_input(tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "log.bin"
    bad.write_bytes(b"this is not a TCG event log at all" * 3)
    assert main(["tpm", "eventlog", "--eventlog", str(bad)]) == 3


IMA = EVIDENCE_DIR / "ima" / "keylime-ima-sig-ascii-signed"
EK = EVIDENCE_DIR / "tpm" / "infineon-slb9670-ek-rsa"


@needs_evidence
def test_ima_log_replay_and_pcr10(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["tpm", "ima", "--ima-log", str(IMA / "ascii_runtime_measurements.txt")]
    assert main([*args, "--ima-key", str(IMA / "rsa2048pub.pem")]) == 0
    assert "PCR 10 = 357ad3db" in capsys.readouterr().out
    assert main([*args, "--pcr10", "357ad3dba1f24238f7818d82e4049a642854d17a"]) == 0
    assert main([*args, "--pcr10", "00" * 20]) == 4


@needs_evidence
def test_ek_chain(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["tpm", "ek", "--ek-cert", str(EK / "ek_cert.der"), "--intermediate",
            str(EK / "intermediate_ca.der"), "--root", str(EK / "root_ca.pem")]
    assert main([*args, "--at", "2024-01-01T00:00:00Z"]) == 0
    assert "tpm.ek.profile" in capsys.readouterr().out
    assert main([*args, "--at", "2050-01-01T00:00:00Z"]) == 4
    assert main(["tpm", "ek", "--ek-cert", str(EK / "ek_cert.der")]) == 2  # --root missing
