"""``veritee admin`` against a running service (uvicorn on loopback, in-process).

Every command goes through the admin HTTP API; the tests check what the service then holds
through the same API or its store, and that refusals carry the problem's code and detail.
"""

from __future__ import annotations

import io
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from veritee.cli import main
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine
from veritee.service import MasterKey

from _service_support import (  # noqa: F401 - fixtures by name
    Service,
    machine,
    start_service,
    vendor,
)

MEASUREMENT = "ab" * 48


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory,
        machine: InsecureEmulatedSnpMachine) -> Iterator[Service]:  # noqa: F811
    db = tmp_path_factory.mktemp("admin") / "svc.db"
    s = start_service(f"sqlite:///{db}", machine, master=MasterKey(b"\x22" * 32))
    yield s
    s.server.stop()
    s.http.close()
    s.store.close()


@pytest.fixture
def admin(svc: Service, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("VERITEE_ADMIN_TOKEN", svc.admin)
    return ["--url", svc.url]


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_resource_put_list_get_meta_delete(admin: list[str], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    secret, policy = tmp_path / "pw", tmp_path / "policy.json"
    secret.write_bytes(b"hunter2\n")
    policy.write_text(json.dumps({"measurements": [MEASUREMENT]}))
    assert main(["admin", "resource", "put", "db/password", "--secret-file", str(secret),
                 "--policy", str(policy), *admin]) == 0
    assert "stored db/password version 1" in capsys.readouterr().out
    assert main(["admin", "resource", "list", "--format", "json", *admin]) == 0
    listed = _json(capsys)
    assert isinstance(listed, dict)
    assert [r["path"] for r in listed["resources"]] == ["db/password"]
    assert main(["admin", "resource", "get-meta", "db/password", "--format", "json",
                 *admin]) == 0
    meta = _json(capsys)
    assert isinstance(meta, dict) and meta["version"] == 1
    assert MEASUREMENT in json.dumps(meta["policy"]) and "hunter2" not in json.dumps(meta)
    assert main(["admin", "resource", "delete", "db/password", *admin]) == 0
    capsys.readouterr()
    assert main(["admin", "resource", "get-meta", "db/password", *admin]) == 3
    assert "resource.not_found" in capsys.readouterr().err


def test_resource_secret_from_stdin(admin: list[str], tmp_path: Path, svc: Service,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(f'measurements = ["{MEASUREMENT}"]\n')

    class _Stdin:
        buffer = io.BytesIO(b"from stdin")

    monkeypatch.setattr(sys, "stdin", _Stdin())
    assert main(["admin", "resource", "put", "app/key", "--secret-file", "-", "--policy",
                 str(policy), *admin]) == 0
    with svc.store.transaction(write=False) as tx:
        assert [p for p, _, _ in tx.resource_list()] == ["app/key"]
    assert main(["admin", "resource", "delete", "app/key", *admin]) == 0


def test_refusal_prints_the_problem_code_and_detail(admin: list[str], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    secret, policy = tmp_path / "pw", tmp_path / "policy.json"
    secret.write_bytes(b"x")
    policy.write_text(json.dumps({"measurements": ["not hex"]}))
    assert main(["admin", "resource", "put", "db/x", "--secret-file", str(secret),
                 "--policy", str(policy), *admin]) == 3
    err = capsys.readouterr().err
    assert "refused:" in err and "policy.measurements" in err and "HTTP 400" in err


def test_policy_put_get_list_delete(admin: list[str], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "strict.toml"
    doc.write_text(f'measurements = ["{MEASUREMENT}"]\n')
    assert main(["admin", "policy", "put", "strict", "--file", str(doc), *admin]) == 0
    assert main(["admin", "policy", "get", "strict", "--format", "json", *admin]) == 0
    capsys.readouterr()
    assert main(["admin", "policy", "list", "--format", "json", *admin]) == 0
    listed = _json(capsys)
    assert isinstance(listed, dict) and "strict" in listed["policies"]
    assert main(["admin", "policy", "delete", "strict", *admin]) == 0
    capsys.readouterr()
    assert main(["admin", "policy", "get", "strict", *admin]) == 3
    assert "policy.not_found" in capsys.readouterr().err


def test_reference_value_put_list_delete(admin: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "reference-value", "put", "web-v3", "--value", MEASUREMENT,
                 *admin]) == 0
    capsys.readouterr()
    assert main(["admin", "reference-value", "list", *admin]) == 0
    assert (f"name=web-v3  scheme=sevsnp  kind=measurement  value={MEASUREMENT}"
            in capsys.readouterr().out)
    assert main(["admin", "reference-value", "delete", "web-v3", *admin]) == 0
    capsys.readouterr()
    assert main(["admin", "reference-value", "list", "--format", "json", *admin]) == 0
    listed = _json(capsys)
    assert isinstance(listed, dict) and listed["reference_values"] == []


def test_policy_put_for_another_scheme(admin: list[str], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """--scheme sends the scheme: a TDX policy is stored as TDX (its own fields), a file that
    names another scheme is refused, an unknown name is refused before the service is asked."""
    doc = tmp_path / "td.json"
    doc.write_text(json.dumps({"mrtd": [MEASUREMENT]}))
    assert main(["admin", "policy", "put", "td", "--file", str(doc), *admin]) == 3
    assert "mrtd" in capsys.readouterr().err  # not a field of the default (sevsnp) policy
    assert main(["admin", "policy", "put", "td", "--file", str(doc), "--scheme", "tdx",
                 *admin]) == 0
    assert "stored tdx policy td" in capsys.readouterr().out
    assert main(["admin", "policy", "get", "td", "--format", "json", *admin]) == 0
    stored = _json(capsys)
    assert isinstance(stored, dict) and stored["scheme"] == "tdx"
    # the stored document names its scheme: put back as it is, with or without --scheme
    again = tmp_path / "again.json"
    again.write_text(json.dumps(stored))
    assert main(["admin", "policy", "put", "td", "--file", str(again), *admin]) == 0
    assert main(["admin", "policy", "put", "td", "--file", str(again), "--scheme", "sevsnp",
                 *admin]) == 3
    assert "names scheme 'tdx'" in capsys.readouterr().err
    assert main(["admin", "policy", "put", "td", "--file", str(doc), "--scheme", "tdxx",
                 "--url", "http://127.0.0.1:9"]) == 3  # refused here: no service is asked
    err = capsys.readouterr().err
    assert "--scheme: got 'tdxx'" in err and "sevsnp" in err and "nvidia" in err
    assert main(["admin", "policy", "delete", "td", *admin]) == 0


def test_reference_value_for_another_scheme(admin: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """An SGX MRENCLAVE is 32 bytes: refused as a (48-byte) SEV-SNP measurement, stored with
    --scheme sgx, and listed with its scheme."""
    enclave = "cd" * 32
    assert main(["admin", "reference-value", "put", "enclave", "--value", enclave,
                 *admin]) == 3
    capsys.readouterr()
    assert main(["admin", "reference-value", "put", "enclave", "--value", enclave,
                 "--scheme", "sgx", *admin]) == 0
    assert "stored sgx reference value enclave" in capsys.readouterr().out
    assert main(["admin", "reference-value", "list", "--format", "json", *admin]) == 0
    listed = _json(capsys)
    assert isinstance(listed, dict)
    assert {"name": "enclave", "kind": "measurement", "scheme": "sgx",
            "value": enclave} in listed["reference_values"]
    assert main(["admin", "reference-value", "put", "x", "--value", enclave, "--scheme",
                 "nope", "--url", "http://127.0.0.1:9"]) == 3
    assert main(["admin", "reference-value", "delete", "enclave", *admin]) == 0


def test_token_create_list_revoke(admin: list[str], svc: Service, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "token", "create", "--name", "dashboard", "--role", "reader",
                 *admin]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    token, token_id = out[-1], out[0].removeprefix("token_id: ")
    assert token and " " not in token  # alone on its last line
    assert main(["admin", "token", "list", "--format", "json", *admin]) == 0
    listed = _json(capsys)
    assert isinstance(listed, dict)
    assert any(t["token_id"] == token_id and t["role"] == "reader" for t in listed["tokens"])
    # The new reader token, from a file: it can look, not change.
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    monkeypatch.delenv("VERITEE_ADMIN_TOKEN")
    reader = ["--url", svc.url, "--token-file", str(token_file)]
    assert main(["admin", "resource", "list", *reader]) == 0
    capsys.readouterr()
    assert main(["admin", "reference-value", "put", "x", "--value", MEASUREMENT,
                 *reader]) == 4
    assert "HTTP 403" in capsys.readouterr().err
    monkeypatch.setenv("VERITEE_ADMIN_TOKEN", svc.admin)
    assert main(["admin", "token", "revoke", token_id, *admin]) == 0
    capsys.readouterr()
    assert main(["admin", "resource", "list", *reader]) == 4  # a revoked token is refused
    assert "HTTP 401" in capsys.readouterr().err


def test_audit_list_and_verify(admin: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["admin", "reference-value", "put", "audited", "--value", MEASUREMENT,
                 *admin]) == 0
    capsys.readouterr()
    assert main(["admin", "audit", "list", "--format", "json", "--limit", "1000",
                 *admin]) == 0
    listed = _json(capsys)
    assert isinstance(listed, dict)
    assert any(e["subject"].endswith("audited") for e in listed["entries"])
    assert main(["admin", "audit", "verify", *admin]) == 0
    assert capsys.readouterr().out.startswith("audit log OK:")


def test_token_on_the_command_line_is_refused_and_not_echoed(
        svc: Service, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("VERITEE_ADMIN_TOKEN", raising=False)
    assert main(["admin", "resource", "list", "--url", svc.url, "--token", svc.admin]) == 3
    err = capsys.readouterr().err
    assert "refused" in err and svc.admin not in err  # not used, and not echoed either
    assert main(["admin", "resource", "list", "--url", svc.url, "--token-f", "x"]) == 2
    assert main(["admin", "resource", "list", "--url", svc.url]) == 3
    assert "VERITEE_ADMIN_TOKEN" in capsys.readouterr().err


def test_unreachable_service_is_exit_5(admin: list[str],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["admin", "resource", "list", "--url", f"http://127.0.0.1:{port}",
                 "--timeout", "5"]) == 5
    assert "service.unreachable" in capsys.readouterr().err


def test_keys_rotate_makes_a_new_current_key_and_keeps_the_old_published(
        admin: list[str], svc: Service, capsys: pytest.CaptureFixture[str]) -> None:
    before = {k["kid"] for k in svc.http.get(f"{svc.url}/v1/jwks").json()["keys"]}
    assert main(["admin", "keys", "rotate", "--format", "json", *admin]) == 0
    doc = _json(capsys)
    assert isinstance(doc, dict) and doc["retired"] in before and doc["kid"] not in before
    after = {k["kid"] for k in svc.http.get(f"{svc.url}/v1/jwks").json()["keys"]}
    assert after == before | {doc["kid"]}
    assert main(["admin", "keys", "rotate", *admin]) == 0
    assert "signing key rotated: current" in capsys.readouterr().out


def test_local_tools_make_a_master_key_and_bootstrap_a_token(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "master.key"
    assert main(["admin", "master-key-new", "--out", str(key)]) == 0
    assert key.stat().st_mode & 0o077 == 0
    settings = tmp_path / "service.toml"
    settings.write_text(f'database_url = "sqlite:///{tmp_path}/boot.db"\n'
                        f'key_source = "file"\nmaster_key_file = "{key}"\n')
    capsys.readouterr()
    assert main(["admin", "token-create", "--settings", str(settings), "--name", "ops"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()[-1]) > 20


def test_token_is_not_sent_in_clear_off_loopback(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VERITEE_ADMIN_TOKEN", "vt_secret-token-value")
    assert main(["admin", "resource", "list", "--url", "http://192.0.2.1:8080"]) == 3
    err = capsys.readouterr().err
    assert "https" in err and "vt_secret-token-value" not in err
