"""Issue 11, "Error text for people": each case found by running the README's commands as a new
user would, one test per case. Each fails on the code before the fix (noted per test)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from veritee.cli import main
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine
from veritee.service import MasterKey

from _service_support import Service, start_service


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("state")
    InsecureEmulatedSnpMachine.open(path, key_size=2048)
    return path


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, state: Path) -> Iterator[Service]:
    db = tmp_path_factory.mktemp("svc") / "svc.db"
    s = start_service(f"sqlite:///{db}", InsecureEmulatedSnpMachine.load(state),
                      master=MasterKey(b"\x33" * 32))
    yield s
    s.server.stop()
    s.http.close()
    s.store.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_key_usages_are_words_not_enum_reprs(state: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``usages [<Usage.SIGN: 'sign'>] for aes-256: want a non-empty subset of
    [<Usage.DECRYPT: 'decrypt'>, <Usage.WRAP: 'wrap'>]``."""
    common = ["--state", str(state), "--store", str(tmp_path / "keys")]
    assert main(["keys", "create", "k", "--type", "aes-256", "--usage", "sign", *common]) == 9
    err = capsys.readouterr().err
    assert "<Usage" not in err and "Usage." not in err
    assert err == ("veritee: bad-request: usages sign for aes-256: want a non-empty subset of "
                   "decrypt, wrap\n")


def test_no_class_name_prefix(state: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``veritee: KeyStoreError: unknown-key: ...`` and ``veritee: ConfigError: ...``."""
    common = ["--state", str(state), "--store", str(tmp_path / "keys")]
    assert main(["keys", "rotate", "nope", *common]) == 9
    assert capsys.readouterr().err.startswith("veritee: unknown-key: no key named 'nope'")
    assert main(["seal", str(tmp_path / "missing"), str(tmp_path / "out"),
                 "--state", str(state)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("veritee: ") and "Error:" not in err


def test_format_error_expectation_is_not_cut_mid_word(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``want a 1184-byte SEV-SNP report, ... configfs-tsm report (JSON/C...``."""
    text = tmp_path / "notes.txt"
    text.write_text("these are not the bytes you are looking for\n" * 40)
    assert main(["verify", str(text)]) == 3
    err = capsys.readouterr().err
    assert "want " in err and "..." not in err  # whatever the expectation says, all of it


def test_long_values_are_cut_at_a_word_boundary() -> None:
    from veritee.errors import FormatError

    got = "alpha beta gamma delta " * 10
    message = str(FormatError("S", "f", got=got, want="a short value"))
    shown = message.split("got ", 1)[1].split(", want", maxsplit=1)[0]
    assert shown.endswith("...") and shown[:-3].split()[-1] in ("alpha", "beta", "gamma",
                                                                "delta")
    assert message.endswith("want a short value")


def test_kbs_get_service_unreachable_is_exit_5(state: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Before: exit 1, ``internal error: ConnectError: [Errno 111] Connection refused``."""
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["kbs", "get", "db/pw", "--url", url, "--dev-mode", "--state", str(state),
                 "--out", str(tmp_path / "pw"), "--timeout", "5"]) == 5
    err = capsys.readouterr().err
    assert err.startswith(f"veritee: cannot reach {url}/")
    assert "internal error" not in err and "ConnectError" not in err


def test_kbs_get_unknown_resource_is_not_found(svc: Service, state: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Before: exit 4 ("verification failed") for the service's 404."""
    args = ["kbs", "get", "no/such", "--url", svc.url, "--dev-mode", "--state", str(state),
            "--out", str(tmp_path / "o")]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert err.startswith("veritee: not found: resource.not_found")
    assert not (tmp_path / "o").exists()
    assert main([*args, "--format", "json"]) == 3
    doc = json.loads(capsys.readouterr().out)
    assert doc["error"]["status"] == 404 and doc["error"]["exit_code"] == 3
    assert doc["error"]["code"] == "resource.not_found"


def test_admin_unreachable_names_no_exception_class(monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``service.unreachable: http://...: ConnectError: [Errno 111] ...``."""
    monkeypatch.setenv("VERITEE_ADMIN_TOKEN", "x")
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["admin", "resource", "list", "--url", url, "--timeout", "5"]) == 5
    err = capsys.readouterr().err
    assert "service.unreachable: cannot reach" in err and "ConnectError" not in err


def test_admin_not_found_says_so(svc: Service, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("VERITEE_ADMIN_TOKEN", svc.admin)
    assert main(["admin", "policy", "get", "nope", "--url", svc.url]) == 3
    assert capsys.readouterr().err.startswith("veritee: not found: policy.not_found")


def test_a_bug_is_still_an_internal_error(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    def boom(args: object) -> int:
        raise KeyError("unexpected")

    monkeypatch.setattr("veritee.cli._tpm._cmd_eventlog", boom)
    assert main(["tpm", "eventlog", "--eventlog", "x"]) == 1
    assert "internal error: KeyError" in capsys.readouterr().err


def test_http_error_body_is_clipped_at_a_word() -> None:
    from veritee.cli import clip

    body = "upstream proxy error: the backend did not answer in time " * 10
    shown = clip(body, 60)
    assert shown.endswith(" ...") and len(shown) <= 64
    assert body.startswith(shown[:-4])
    assert shown[:-4].split()[-1] in body.split()
    assert clip("short") == "short"


def test_tpm_ima_bad_pcr10_is_a_usage_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Before: exit 1, ``internal error: ValueError: non-hexadecimal number found in
    fromhex() arg at position 0``."""
    assert main(["tpm", "ima", "--ima-log", str(tmp_path / "log"), "--pcr10", "zz"]) == 2
    err = capsys.readouterr().err
    assert "--pcr10: got 'zz', want hex digits" in err and "internal error" not in err


def test_tpm_ima_key_that_is_not_a_key_names_the_file(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """Before: ``AK.ak_public: got 766d0a, want SubjectPublicKeyInfo`` for an IMA key."""
    log, key = tmp_path / "log", tmp_path / "key.pem"
    log.write_text("10 " + "00" * 20 + " ima-ng sha256:" + "00" * 32 + " /init\n")
    key.write_text("vm\n")
    assert main(["tpm", "ima", "--ima-log", str(log), "--ima-key", str(key)]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"veritee: --ima-key {key}: not a PEM or DER SubjectPublicKeyInfo")


def test_missing_settings_file_is_not_called_a_policy(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``veritee serve --settings nope.toml`` said ``cannot read policy file``."""
    missing = tmp_path / "nope.toml"
    assert main(["serve", "--settings", str(missing)]) == 3
    assert capsys.readouterr().err == (f"veritee: {missing}: cannot read (No such file or "
                                       "directory)\n")


def test_kds_unreachable_is_exit_5_in_words(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Before: ``veritee: CollateralError: URL: ConnectError: [Errno 111] ...``."""
    out = tmp_path / "emu"
    assert main(["emulate", "--out", str(out), "--key-size", "2048"]) == 0
    capsys.readouterr()
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["verify", str(out / "report.bin"), "--fetch", "--kds-url", url,
                 "--kds-cache", str(tmp_path / "kds")]) == 5
    err = capsys.readouterr().err
    assert f"veritee: {url}/vcek/v1/Milan/" in err and "cannot reach AMD's KDS" in err
    assert "Error" not in err


def test_a_file_that_is_not_a_certificate_says_so_plainly(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    """Before: ``got notes.txt (error parsing asn1 value: ParseError { kind: UnexpectedTag
    {...`` (the parser's debug dump, cut mid-structure)."""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a certificate\n" * 20)
    assert main(["cert", "inspect", str(notes)]) == 3
    assert capsys.readouterr().err == (f"veritee: X.509 certificate.<der>: got {notes}, want a "
                                       "PEM or DER certificate (error parsing asn1 value)\n")
