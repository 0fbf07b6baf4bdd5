"""``veritee cert``: issue a CA/CSR/leaf, check it, make and inspect an attested certificate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from veritee.cli import main


def test_issue_ca_csr_leaf_and_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "issue", "ca", "--subject", "CN=Test CA", "--out",
                 str(tmp_path / "ca")]) == 0
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert main(["cert", "issue", "csr", "--subject", "CN=svc", "--dns", "svc.local",
                 "--key-type", "ed25519", "--out", str(tmp_path / "csr")]) == 0
    assert main(["cert", "issue", "leaf", "--ca-cert", str(tmp_path / "ca" / "ca.pem"),
                 "--ca-key", str(tmp_path / "ca" / "ca.key"), "--csr",
                 str(tmp_path / "csr" / "csr.pem"), "--out", str(tmp_path / "leaf")]) == 0
    leaf = str(tmp_path / "leaf" / "cert.pem")
    ca = str(tmp_path / "ca" / "ca.pem")
    assert main(["cert", "check", leaf, "--ca", ca]) == 0
    assert main(["cert", "check", leaf, "--ca", ca, "--at", "2099-01-01T00:00:00Z"]) == 4
    assert "certs.ca.expired" in capsys.readouterr().err


def test_issue_leaf_with_new_key_client_only(tmp_path: Path) -> None:
    assert main(["cert", "issue", "ca", "--subject", "CN=CA", "--out", str(tmp_path)]) == 0
    assert main(["cert", "issue", "leaf", "--ca-cert", str(tmp_path / "ca.pem"), "--ca-key",
                 str(tmp_path / "ca.key"), "--subject", "CN=client", "--usage", "client",
                 "--out", str(tmp_path / "leaf")]) == 0
    assert (tmp_path / "leaf" / "key.pem").exists()
    assert main(["cert", "check", str(tmp_path / "leaf" / "cert.pem"), "--ca",
                 str(tmp_path / "ca.pem"), "--usage", "server"]) == 4


def test_leaf_without_subject_or_csr_is_bad_input(tmp_path: Path) -> None:
    assert main(["cert", "issue", "ca", "--subject", "CN=CA", "--out", str(tmp_path)]) == 0
    assert main(["cert", "issue", "leaf", "--ca-cert", str(tmp_path / "ca.pem"), "--ca-key",
                 str(tmp_path / "ca.key"), "--out", str(tmp_path / "leaf")]) == 3


def test_attested_then_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "att"
    assert main(["cert", "attested", "--out", str(out), "--key-size", "2048",
                 "--dns", "localhost"]) == 0
    capsys.readouterr()
    ark = str(out / "certs" / "ark.pem")
    cert = str(out / "cert.pem")
    assert main(["cert", "inspect", cert, "--trust-root", ark, "--policy",
                 str(out / "policy.json"), "--crl", str(out / "certs" / "crl.pem"),
                 "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["certificate"]["evidence_extension"] is True
    assert shown["appraisal"]["accepted"] is True
    assert shown["appraisal"]["policy_id"] == "emulated-workload"
    # Without the emulated root: the genuine AMD roots do not sign emulated evidence.
    assert main(["cert", "inspect", cert]) == 4
    assert "sevsnp.chain.ark_untrusted" in capsys.readouterr().err


def test_inspect_debug_guest_is_policy_rejected(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dbg"
    assert main(["cert", "attested", "--out", str(out), "--key-size", "2048",
                 "--debug-guest"]) == 0
    capsys.readouterr()
    assert main(["cert", "inspect", str(out / "cert.pem"), "--trust-root",
                 str(out / "certs" / "ark.pem")]) == 6
    assert "sevsnp.policy.debug" in capsys.readouterr().out


def test_inspect_plain_certificate_has_no_evidence(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "issue", "ca", "--subject", "CN=CA", "--out", str(tmp_path)]) == 0
    assert main(["cert", "inspect", str(tmp_path / "ca.pem")]) == 4
    assert "ratls.evidence.missing" in capsys.readouterr().err


def test_inspect_garbage_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "x.pem").write_bytes(b"not a certificate")
    assert main(["cert", "inspect", str(tmp_path / "x.pem")]) == 3


def test_cert_needs_an_action() -> None:
    assert main(["cert"]) == 2
