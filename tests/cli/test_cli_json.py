"""Issue 11: ``--format json`` for demo, emulate, kbs, audit and admin: one JSON document on
stdout, also on failure (with an ``error`` member); numbers are numbers."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from veritee.cli import main
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def test_demo_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--key-size", "2048", "--format", "json"]) == 0
    doc = _json(capsys)
    assert doc["ok"] is True and doc["tee"] == "snp" and "error" not in doc
    assert [s["step"] for s in doc["steps"]] == list(range(1, len(doc["steps"]) + 1))
    assert isinstance(doc["elapsed_s"], float)
    attacks = next(s for s in doc["steps"] if s["title"].startswith("Attacks"))
    assert attacks["lines"] and all("stopped" in line for line in attacks["lines"])


def test_demo_json_failure_has_an_error_member(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from veritee.errors import PlatformError

    def no_swtpm() -> int:
        print("\n[1] Manufacturing a software TPM")
        raise PlatformError("swtpm not found: install swtpm")

    monkeypatch.setattr("veritee.cli._demo_tpm.run_demo_tpm", no_swtpm)
    assert main(["demo", "--tee", "tpm", "--format", "json"]) == 7
    doc = _json(capsys)
    assert doc["ok"] is False and doc["error"]["exit_code"] == 7
    assert doc["error"]["message"] == "swtpm not found: install swtpm"
    assert doc["steps"][0]["title"] == "Manufacturing a software TPM"


def test_emulate_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "emu"
    assert main(["emulate", "--out", str(out), "--key-size", "2048", "--format", "json"]) == 0
    doc = _json(capsys)
    assert doc["report"] == str(out / "report.bin") and Path(doc["report"]).is_file()
    assert all(Path(p).is_file() for p in doc["certs"])
    assert len(bytes.fromhex(doc["measurement"])) == 48 and doc["debug"] is False


def test_emulate_export_roots_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    InsecureEmulatedSnpMachine.open(state, key_size=2048)
    assert main(["emulate", "export-roots", "--state", str(state), "--out",
                 str(tmp_path / "roots"), "--format", "json"]) == 0
    doc = _json(capsys)
    assert doc["trust_roots"] == [str(tmp_path / "roots" / "ark.pem")]
    assert main(["emulate", "export-roots", "--state", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "r"), "--format", "json"]) == 3
    assert "no emulated machine" in _json(capsys)["error"]["message"]


def test_kbs_measurement_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    InsecureEmulatedSnpMachine.open(state, key_size=2048)
    assert main(["kbs", "measurement", "--state", str(state), "--format", "json"]) == 0
    assert len(bytes.fromhex(_json(capsys)["measurement"])) == 48


def test_kbs_get_json_refuses_the_secret_on_stdout(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kbs", "get", "a/b", "--url", "http://127.0.0.1:1", "--out", "-",
                 "--format", "json"]) == 3
    assert "--out FILE" in _json(capsys)["error"]["message"]


def test_admin_failure_is_json_on_stdout(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VERITEE_ADMIN_TOKEN", "x")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["admin", "resource", "list", "--url", f"http://127.0.0.1:{port}",
                 "--timeout", "5", "--format", "json"]) == 5
    error = _json(capsys)["error"]
    assert error["code"] == "service.unreachable" and error["status"] == 0
    assert error["exit_code"] == 5


def test_local_admin_tools_and_audit_verify_json(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "master.key"
    assert main(["admin", "master-key-new", "--out", str(key), "--format", "json"]) == 0
    assert _json(capsys)["out"] == str(key)
    settings = tmp_path / "service.toml"
    settings.write_text(f'database_url = "sqlite:///{tmp_path}/boot.db"\n'
                        f'key_source = "file"\nmaster_key_file = "{key}"\n')
    assert main(["admin", "token-create", "--settings", str(settings), "--name", "ops",
                 "--format", "json"]) == 0
    token = _json(capsys)
    assert token["role"] == "admin" and token["name"] == "ops" and len(token["token"]) > 20
    assert main(["audit", "verify", "--settings", str(settings), "--format", "json"]) == 0
    audit = _json(capsys)
    assert audit["ok"] is True and isinstance(audit["entries"], int) and audit["entries"] >= 1
    assert main(["audit", "verify", "--settings", str(settings), "--format", "json",
                 "--expect-head", "00" * 32]) == 4
    broken = _json(capsys)
    assert broken["ok"] is False and broken["error"]["exit_code"] == 4


def test_keys_json_numbers_are_numbers(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    InsecureEmulatedSnpMachine.open(tmp_path / "state", key_size=2048)
    common = ["--state", str(tmp_path / "state"), "--store", str(tmp_path / "keys")]
    assert main(["keys", "create", "k", "--format", "json", *common]) == 0
    (info,) = _json(capsys)
    assert info["versions"] == [1] and info["exportable"] is False
    assert main(["keys", "destroy", "k", "--format", "json", *common]) == 0
    assert _json(capsys) == {"destroyed": "k"}


def test_a_command_that_printed_its_json_error_is_not_printed_twice(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from veritee.cli import json_reported
    from veritee.errors import ConfigError

    def reports_itself(args: object) -> int:
        print(json.dumps({"verdict": "error", "error": {"message": "bad"}}))
        raise json_reported(ConfigError("bad"))

    monkeypatch.setattr("veritee.cli._tpm._cmd_eventlog", reports_itself)
    assert main(["tpm", "eventlog", "--eventlog", "x", "--format", "json"]) == 3
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"verdict": "error", "error": {"message": "bad"}}
    assert captured.err == "veritee: bad\n"
