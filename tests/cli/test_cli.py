"""The CLI: exit codes per error family, and the commands on real and emulated evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from veritee.cli import EXIT_CODES, build_parser, main

from _evidence import EVIDENCE_DIR, evidence_available

needs_evidence = pytest.mark.skipif(not evidence_available(),
                                    reason="shared evidence not present")
GO_SEV_GUEST = EVIDENCE_DIR / "snp" / "milan-v2-go-sev-guest"


def test_help_lists_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for code, meaning in EXIT_CODES.items():
        assert f"{code}  {meaning}" in out


def test_exit_codes_are_pinned() -> None:
    """Scripts depend on these numbers: changing one must be deliberate."""
    assert {k: v.split(" ")[0] for k, v in EXIT_CODES.items()} == {
        0: "success", 1: "internal", 2: "usage", 3: "bad", 4: "verification",
        5: "collateral", 6: "policy", 7: "platform", 8: "sealed", 9: "key"}


def test_usage_error_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify"]) == 2
    assert main(["no-such-command"]) == 2
    assert main(["verify", "x", "--at", "yesterday"]) == 2
    assert "ISO 8601" in capsys.readouterr().err


def test_bad_input_is_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "report.bin"
    bad.write_bytes(b"\x02" + bytes(100))
    assert main(["show", str(bad)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("veritee: evidence.") and "Traceback" not in err
    assert "FormatError" not in err  # no class names for people (issue 11)
    assert "want " in err and "..." not in err  # the expectation, never cut mid-word
    assert main(["show", str(tmp_path / "missing.bin")]) == 3


@needs_evidence
def test_show_real_report_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(GO_SEV_GUEST / "attestation.bin"), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["report"]["version"] == 2
    assert doc["report"]["chip_id"].startswith("3ac3fe21e13fb099")
    assert doc["report"]["reported_tcb"]["microcode"] == 68


@needs_evidence
def test_show_real_report_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(GO_SEV_GUEST / "attestation.bin")]) == 0
    out = capsys.readouterr().out
    assert "measurement: b07af962" in out and "debug: True" in out


@needs_evidence
def test_verify_real_report(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["verify", str(GO_SEV_GUEST / "attestation.bin"), "--certs", str(GO_SEV_GUEST),
                 "--at", "2022-09-24T01:00:00Z"])
    assert code == 0, capsys.readouterr()
    assert "VERIFIED" in capsys.readouterr().out


@needs_evidence
def test_verify_real_report_after_vcek_expiry_fails(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["verify", str(GO_SEV_GUEST / "attestation.bin"), "--certs", str(GO_SEV_GUEST),
                 "--at", "2030-01-01T00:00:00Z"])
    assert code == 4


@needs_evidence
def test_real_debug_guest_rejected_by_default_policy(capsys: pytest.CaptureFixture[str]) -> None:
    """The go-sev-guest sample was launched with DEBUG set (policy 0xb0000)."""
    code = main(["appraise", str(GO_SEV_GUEST / "attestation.bin"), "--certs",
                 str(GO_SEV_GUEST), "--at", "2022-09-24T01:00:00Z"])
    assert code == 6
    assert "sevsnp.policy.debug" in capsys.readouterr().out


def test_missing_collateral_is_exit_5(tmp_path: Path, emulated_dir: Path) -> None:
    assert main(["verify", str(emulated_dir / "report.bin")]) == 5


@pytest.fixture(scope="module")
def emulated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("emu")
    assert main(["emulate", "--out", str(out), "--key-size", "2048",
                 "--report-data", "00" * 64]) == 0
    return out


@pytest.fixture(scope="module")
def emulated_debug_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("emu-debug")
    assert main(["emulate", "--out", str(out), "--key-size", "2048", "--debug-guest"]) == 0
    return out


def test_emulated_report_verifies_only_with_explicit_root(emulated_dir: Path) -> None:
    report, certs = str(emulated_dir / "report.bin"), str(emulated_dir / "certs")
    assert main(["verify", report, "--certs", certs]) == 4
    assert main(["verify", report, "--certs", certs, "--trust-root",
                 str(emulated_dir / "certs" / "ark.pem")]) == 0


def test_emulated_debug_guest_policy_rejected_is_exit_6(emulated_debug_dir: Path,
                                                        tmp_path: Path) -> None:
    args = ["appraise", str(emulated_debug_dir / "report.bin"), "--certs",
            str(emulated_debug_dir / "certs"), "--trust-root",
            str(emulated_debug_dir / "certs" / "ark.pem")]
    assert main(args) == 6
    policy = tmp_path / "p.toml"
    policy.write_text("allow_debug = true\n")
    assert main([*args, "--policy", str(policy)]) == 0
    policy.write_text("allow_debugg = true\n")
    assert main([*args, "--policy", str(policy)]) == 3


def test_demo_runs_end_to_end(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--key-size", "2048"]) == 0
    out = capsys.readouterr().out
    assert "verdict: ACCEPTED" in out
    assert "NOT STOPPED" not in out
    assert "result: OK" in out


def test_parser_has_documented_commands() -> None:
    text = build_parser().format_help()
    for cmd in ("show", "verify", "appraise", "demo", "emulate"):
        assert cmd in text


@needs_evidence
def test_certs_from_several_places(capsys: pytest.CaptureFixture[str]) -> None:
    """A VCEK in the sample's directory plus AMD's chain file from elsewhere."""
    sample = EVIDENCE_DIR / "snp" / "milan-v3-dstack"
    chain = EVIDENCE_DIR / "roots" / "amd_milan_cert_chain_vcek.pem"
    args = ["verify", str(sample / "report.bin"), "--at", "2026-07-01T00:00:00Z"]
    assert main([*args, "--certs", str(sample)]) == 5  # no ARK there
    assert "missing: ark" in capsys.readouterr().err
    assert main([*args, "--certs", str(sample), "--certs", str(chain)]) == 0
