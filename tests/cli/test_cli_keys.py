"""``veritee keys`` on a persisted emulated machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from veritee.cli import main
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine


def test_keys_lifecycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    InsecureEmulatedSnpMachine.open(state, key_size=2048)
    common = ["--state", str(state), "--store", str(tmp_path / "keys")]
    assert main(["keys", "create", "tls", "--type", "ec-p256", *common]) == 0
    assert main(["keys", "create", "db", "--type", "aes-256", "--usage", "decrypt,wrap",
                 *common]) == 0
    assert main(["keys", "rotate", "db", *common]) == 0
    capsys.readouterr()
    assert main(["keys", "list", "--format", "json", *common]) == 0
    listed = {k["name"]: k for k in json.loads(capsys.readouterr().out)}
    assert listed["db"]["versions"] == [1, 2] and listed["tls"]["usages"] == ["sign"]
    assert main(["keys", "destroy", "tls", *common]) == 0
    assert main(["keys", "rotate", "tls", *common]) == 9
    assert main(["keys", "rotate", "nope", *common]) == 9
    assert main(["keys", "create", "bad", "--type", "aes-256", "--usage", "sign",
                 *common]) == 9
    assert main(["keys", "create", "bad", "--usage", "fly", *common]) == 3
    other = tmp_path / "other.img"
    other.write_bytes(b"another workload")
    assert main(["keys", "rotate", "db", *common, "--image", str(other)]) == 9
    assert "locked" in capsys.readouterr().err
