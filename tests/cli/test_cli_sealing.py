"""``veritee seal/unseal/reseal`` on a persisted emulated machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from veritee.cli import main
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("state")
    InsecureEmulatedSnpMachine.open(path, key_size=2048)
    return path


def test_seal_inspect_unseal_round_trip(state: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    src, sealed, out = tmp_path / "in", tmp_path / "in.sealed", tmp_path / "out"
    src.write_bytes(os.urandom(300_000))
    assert main(["seal", str(src), str(sealed), "--state", str(state), "--platform", "emulated",
                 "--chunk-size", "65536"]) == 0
    capsys.readouterr()
    assert main(["seal", "--inspect", str(sealed), "--format", "json"]) == 0
    header = json.loads(capsys.readouterr().out)
    assert header["kind"] == "stream" and header["policy"] == "measurement"
    assert main(["unseal", str(sealed), str(out), "--state", str(state),
                 "--platform", "emulated"]) == 0
    assert out.read_bytes() == src.read_bytes()


def test_other_image_cannot_unseal_exit_8(state: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    src, sealed = tmp_path / "in", tmp_path / "in.sealed"
    src.write_bytes(b"secret")
    assert main(["seal", str(src), str(sealed), "--state", str(state)]) == 0
    other = tmp_path / "other.img"
    other.write_bytes(b"another workload")
    code = main(["unseal", str(sealed), str(tmp_path / "o"), "--state", str(state),
                 "--image", str(other)])
    assert code == 8
    assert "cannot be opened" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_rollback_via_cli(state: Path, tmp_path: Path) -> None:
    src, sealed = tmp_path / "in", tmp_path / "in.sealed"
    common = ["--state", str(state)]
    src.write_bytes(b"v1")
    assert main(["seal", str(src), str(sealed), "--rollback", *common]) == 0
    old = sealed.read_bytes()
    src.write_bytes(b"v2")
    assert main(["seal", str(src), str(sealed), "--rollback", *common]) == 0
    assert main(["unseal", str(sealed), str(tmp_path / "o"), "--rollback", *common]) == 0
    # the caller declares protection: without --rollback a counter-carrying file is refused
    assert main(["unseal", str(sealed), str(tmp_path / "o"), *common]) == 3
    sealed.write_bytes(old)
    assert main(["unseal", str(sealed), str(tmp_path / "o"), "--rollback", *common]) == 8


def test_cli_unseal_with_rollback_refuses_an_unprotected_file(state: Path,
                                                              tmp_path: Path) -> None:
    src, sealed = tmp_path / "in", tmp_path / "in.sealed"
    src.write_bytes(b"v1")
    common = ["--state", str(state)]
    assert main(["seal", str(src), str(sealed), *common]) == 0  # no counter
    assert main(["unseal", str(sealed), str(tmp_path / "o"), "--rollback", *common]) == 8


def test_signer_policy_and_reseal_via_cli(state: Path, tmp_path: Path) -> None:
    key = tmp_path / "id.pem"
    key.write_bytes(ec.generate_private_key(ec.SECP384R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    src, sealed = tmp_path / "in", tmp_path / "in.sealed"
    src.write_bytes(b"weights")
    v = lambda n: ["--state", str(state), "--id-key", str(key), "--svn", str(n)]  # noqa: E731
    assert main(["seal", str(src), str(sealed), "--policy", "signer", *v(2)]) == 0
    signer = lambda n: ["--policy", "signer", "--min-svn", str(n)]  # noqa: E731
    assert main(["unseal", str(sealed), str(tmp_path / "o3"), *signer(2), *v(3)]) == 0
    # the reader states its floor: by default its own SVN, so SVN-2 data is refused
    assert main(["unseal", str(sealed), str(tmp_path / "o3"), "--policy", "signer",
                 *v(3)]) == 8
    assert main(["unseal", str(sealed), str(tmp_path / "o"), *v(3)]) == 8  # not measurement
    assert main(["unseal", str(sealed), str(tmp_path / "o1"), *signer(1), *v(1)]) == 8
    assert main(["reseal", str(sealed), "--policy", "signer", "--expect-min-svn", "2",
                 *v(3)]) == 0
    assert main(["unseal", str(sealed), str(tmp_path / "o2"), *signer(2), *v(2)]) == 8
    assert main(["unseal", str(sealed), str(tmp_path / "o4"), "--policy", "signer",
                 *v(3)]) == 0
    assert (tmp_path / "o3").read_bytes() == b"weights"


def test_bad_sealed_file_is_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"not sealed at all" * 10)
    assert main(["seal", "--inspect", str(bad)]) == 3
