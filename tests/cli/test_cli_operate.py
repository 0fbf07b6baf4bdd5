"""Issue 15, part 5: the operator-facing CLI fixes, one test (or more) per fix.

Each test fails on the code before the fix: ``kbs get --seal`` output that ``unseal`` could
not open, no way to export the emulated roots, a mistyped ``--state`` silently making a new
chip, ``unseal`` overwriting its output, ``seal --inspect`` not naming the binding, a key store
unusable from the CLI, and crash debris of interrupted writes kept for good.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_public_key,
)

from veritee._fs import atomic_write
from veritee.cli import main
from veritee.crypto.amd_certs import load_certificates
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("state")
    InsecureEmulatedSnpMachine.open(path, key_size=2048)
    return path


# -- kbs get --seal -> unseal ------------------------------------------------------------------
class _FakeBroker:
    """Stands in for the HTTP exchange: the sealing step after it is what is under test."""

    def __init__(self, url: str, source: object, *, timeout: float,
                 dev_mode: bool = False) -> None:
        self.source = source

    def __enter__(self) -> _FakeBroker:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def fetch(self, resource: str) -> bytes:
        return f"secret of {resource}".encode()


def test_kbs_sealed_secret_opens_with_unseal_aad(state: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("veritee.client.AttesterClient", _FakeBroker)
    sealed, out = tmp_path / "pw.sealed", tmp_path / "pw"
    assert main(["kbs", "get", "db/password", "--url", "http://127.0.0.1:1", "--out",
                 str(sealed), "--seal", "--state", str(state)]) == 0
    assert "--aad db/password" in capsys.readouterr().err  # the command to open it is printed
    assert main(["unseal", str(sealed), str(out), "--aad", "db/password",
                 "--state", str(state)]) == 0
    assert out.read_bytes() == b"secret of db/password"


def test_sealed_secret_swapped_between_resources_is_refused(state: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setattr("veritee.client.AttesterClient", _FakeBroker)
    sealed = tmp_path / "a.sealed"
    assert main(["kbs", "get", "app/a", "--url", "http://127.0.0.1:1", "--out", str(sealed),
                 "--seal", "--state", str(state)]) == 0
    # An attacker with the disk renames app/a's file to where app/b's is expected.
    assert main(["unseal", str(sealed), str(tmp_path / "b"), "--aad", "app/b",
                 "--state", str(state)]) == 8
    assert main(["unseal", str(sealed), str(tmp_path / "b"), "--state", str(state)]) == 8
    assert not (tmp_path / "b").exists()


def test_aad_given_for_a_stream_is_refused_not_ignored(state: Path, tmp_path: Path) -> None:
    src, sealed = tmp_path / "in", tmp_path / "in.sealed"
    src.write_bytes(b"x" * 1000)
    assert main(["seal", str(src), str(sealed), "--state", str(state)]) == 0
    assert main(["unseal", str(sealed), str(tmp_path / "o"), "--aad", "db/password",
                 "--state", str(state)]) == 3


def test_seal_with_aad_round_trip(state: Path, tmp_path: Path) -> None:
    src, sealed = tmp_path / "in", tmp_path / "in.sealed"
    src.write_bytes(b"config")
    assert main(["seal", str(src), str(sealed), "--aad", "ctx", "--state", str(state)]) == 0
    assert main(["unseal", str(sealed), str(tmp_path / "o"), "--state", str(state)]) == 8
    assert main(["unseal", str(sealed), str(tmp_path / "o"), "--aad", "ctx",
                 "--state", str(state)]) == 0
    assert (tmp_path / "o").read_bytes() == b"config"


# -- emulate export-roots ------------------------------------------------------------------------
def test_export_roots_writes_the_state_machines_ark(state: Path, tmp_path: Path) -> None:
    out = tmp_path / "roots"
    assert main(["emulate", "export-roots", "--state", str(state), "--out", str(out)]) == 0
    machine = InsecureEmulatedSnpMachine.load(state)
    ark = x509.load_pem_x509_certificate((out / "ark.pem").read_bytes())
    assert ark.public_bytes(Encoding.DER) == machine.vendor.ark.public_bytes(Encoding.DER)
    ask = x509.load_pem_x509_certificate((out / "ask.pem").read_bytes())
    assert ask.issuer == ark.subject
    guest_cert = machine.certificates().vek
    assert guest_cert is not None
    vcek = load_certificates((out / "vcek.pem").read_bytes(), source="vcek.pem")[0]
    assert vcek.public_key() == guest_cert.public_key()


def test_export_roots_of_a_missing_machine_is_a_clear_error(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    assert main(["emulate", "export-roots", "--state", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "r")]) == 3
    assert "no emulated machine" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# -- --state must exist unless --create --------------------------------------------------------
def test_mistyped_state_does_not_create_a_new_chip(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    src.write_bytes(b"x")
    typo = tmp_path / "stat"
    assert main(["seal", str(src), str(tmp_path / "s"), "--state", str(typo)]) == 3
    err = capsys.readouterr().err
    assert "no emulated machine" in err and "--create" in err
    assert not typo.exists()
    assert main(["seal", str(src), str(tmp_path / "s"), "--state", str(typo), "--create",
                 "--platform", "emulated"]) == 0
    assert "created a new emulated" in capsys.readouterr().err


def test_state_from_the_environment_must_exist_too(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERITEE_STATE_DIR", str(tmp_path / "typo"))
    assert main(["kbs", "measurement"]) == 3
    assert not (tmp_path / "typo").exists()


# -- unseal refuses to overwrite -----------------------------------------------------------------
def test_unseal_does_not_overwrite_without_force(state: Path, tmp_path: Path) -> None:
    src, sealed, out = tmp_path / "in", tmp_path / "in.sealed", tmp_path / "out"
    src.write_bytes(b"new")
    assert main(["seal", str(src), str(sealed), "--state", str(state)]) == 0
    out.write_bytes(b"precious")
    assert main(["unseal", str(sealed), str(out), "--state", str(state)]) == 3
    assert out.read_bytes() == b"precious"
    assert main(["unseal", str(sealed), str(out), "--state", str(state), "--force"]) == 0
    assert out.read_bytes() == b"new"


# -- seal --inspect names the binding ------------------------------------------------------------
def test_inspect_names_the_bound_identity(state: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "id.pem"
    key.write_bytes(ec.generate_private_key(ec.SECP384R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    src = tmp_path / "in"
    src.write_bytes(b"x")
    m, s = tmp_path / "m.sealed", tmp_path / "s.sealed"
    assert main(["seal", str(src), str(m), "--state", str(state)]) == 0
    assert main(["seal", str(src), str(s), "--policy", "signer", "--min-svn", "2",
                 "--id-key", str(key), "--svn", "5", "--state", str(state)]) == 0
    capsys.readouterr()
    assert main(["seal", "--inspect", str(m)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("bound to: the exact launch MEASUREMENT")
    assert main(["seal", "--inspect", str(s), "--format", "json"]) == 0
    bound = json.loads(capsys.readouterr().out)["bound_to"]
    assert bound["policy"] == "signer" and bound["guest_svn_floor"] == 2
    assert "MEASUREMENT" not in bound["fields"] and "GUEST_SVN" in bound["fields"]
    assert "launch signer" in bound["summary"] and "SVN floor 2" in bound["summary"]


# -- the key store from the CLI ------------------------------------------------------------------
def _keys(common: list[str], *argv: str) -> int:
    return main(["keys", *argv, *common])


def test_keys_sign_verify_export_public(state: Path, tmp_path: Path) -> None:
    common = ["--state", str(state), "--store", str(tmp_path / "keys")]
    assert _keys(common, "create", "signer", "--type", "ec-p384") == 0
    msg, sig, pub = tmp_path / "msg", tmp_path / "sig", tmp_path / "pub.pem"
    msg.write_bytes(b"release 1.2.3")
    assert _keys(common, "sign", "signer", "--in", str(msg), "--out", str(sig)) == 0
    assert _keys(common, "verify", "signer", "--in", str(msg), "--signature", str(sig)) == 0
    assert _keys(common, "export-public", "signer", "--out", str(pub)) == 0
    public = load_pem_public_key(pub.read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(sig.read_bytes(), msg.read_bytes(), ec.ECDSA(hashes.SHA384()))  # standard
    assert "PRIVATE" not in pub.read_text()


def test_keys_verify_rejects_a_forged_signature(state: Path, tmp_path: Path) -> None:
    common = ["--state", str(state), "--store", str(tmp_path / "keys")]
    assert _keys(common, "create", "signer", "--type", "ed25519") == 0
    msg, sig = tmp_path / "msg", tmp_path / "sig"
    msg.write_bytes(b"pay 10")
    assert _keys(common, "sign", "signer", "--in", str(msg), "--out", str(sig)) == 0
    msg.write_bytes(b"pay 1000")
    assert _keys(common, "verify", "signer", "--in", str(msg), "--signature", str(sig)) == 4


def test_keys_encrypt_decrypt_wrap_unwrap(state: Path, tmp_path: Path) -> None:
    common = ["--state", str(state), "--store", str(tmp_path / "keys")]
    assert _keys(common, "create", "dek", "--type", "aes-256", "--usage", "decrypt,wrap") == 0
    plain, ct, back = tmp_path / "plain", tmp_path / "ct", tmp_path / "back"
    plain.write_bytes(b"card numbers")
    assert _keys(common, "encrypt", "dek", "--in", str(plain), "--out", str(ct),
                 "--aad", "tbl") == 0
    assert b"card numbers" not in ct.read_bytes()
    assert _keys(common, "decrypt", "dek", "--in", str(ct), "--out", str(back),
                 "--aad", "tbl") == 0
    assert back.read_bytes() == b"card numbers"
    assert back.stat().st_mode & 0o077 == 0  # plaintext is written private
    # the associated data is checked: a ciphertext moved to another table does not decrypt
    assert _keys(common, "decrypt", "dek", "--in", str(ct), "--out", str(tmp_path / "x"),
                 "--aad", "other") == 4
    kek_in, wrapped, unwrapped = tmp_path / "k", tmp_path / "w", tmp_path / "u"
    kek_in.write_bytes(os.urandom(32))
    assert _keys(common, "wrap", "dek", "--in", str(kek_in), "--out", str(wrapped)) == 0
    assert _keys(common, "unwrap", "dek", "--in", str(wrapped), "--out", str(unwrapped)) == 0
    assert unwrapped.read_bytes() == kek_in.read_bytes()
    # an existing output is not overwritten without --force
    assert _keys(common, "unwrap", "dek", "--in", str(wrapped), "--out", str(unwrapped)) == 3
    # an AES key has no public half; a sign-only key cannot decrypt
    assert _keys(common, "export-public", "dek") == 9


def test_keys_wrong_usage_is_refused(state: Path, tmp_path: Path) -> None:
    common = ["--state", str(state), "--store", str(tmp_path / "keys")]
    assert _keys(common, "create", "dek", "--type", "aes-256", "--usage", "decrypt") == 0
    k = tmp_path / "k"
    k.write_bytes(os.urandom(32))
    assert _keys(common, "wrap", "dek", "--in", str(k), "--out", str(tmp_path / "w")) == 9
    assert _keys(common, "sign", "dek", "--in", str(k), "--out", str(tmp_path / "s")) == 9


def test_cert_issue_with_a_store_key_writes_no_private_key(state: Path, tmp_path: Path) -> None:
    store = ["--state", str(state), "--store", str(tmp_path / "keys")]
    assert _keys(store, "create", "ca", "--type", "ec-p384") == 0
    assert _keys(store, "create", "tls", "--type", "ec-p256") == 0
    ca_dir, leaf_dir, csr_dir = tmp_path / "ca", tmp_path / "leaf", tmp_path / "csr"
    assert main(["cert", "issue", "ca", "--subject", "CN=Store CA", "--out", str(ca_dir),
                 "--key", "store:ca", *store]) == 0
    assert not (ca_dir / "ca.key").exists()
    pub = tmp_path / "ca.pub"
    assert _keys(store, "export-public", "ca", "--out", str(pub)) == 0
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    assert ca.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo) == \
        pub.read_bytes()
    assert main(["cert", "issue", "leaf", "--ca-cert", str(ca_dir / "ca.pem"),
                 "--ca-key", "store:ca", "--key", "store:tls", "--subject", "CN=svc",
                 "--dns", "svc.local", "--out", str(leaf_dir), *store]) == 0
    assert not (leaf_dir / "key.pem").exists()
    assert main(["cert", "check", str(leaf_dir / "cert.pem"), "--ca",
                 str(ca_dir / "ca.pem")]) == 0
    assert main(["cert", "issue", "csr", "--subject", "CN=svc", "--out", str(csr_dir),
                 "--key", "store:tls", *store]) == 0
    csr = x509.load_pem_x509_csr((csr_dir / "csr.pem").read_bytes())
    assert csr.is_signature_valid and not (csr_dir / "key.pem").exists()
    assert main(["cert", "issue", "ca", "--subject", "CN=x", "--out", str(ca_dir),
                 "--key", "ca", *store]) == 3  # not store:NAME


# -- crash debris -------------------------------------------------------------------------------
_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from veritee._fs import atomic_open
    with atomic_open(Path(sys.argv[1])) as fh:
        fh.write(b"half of a large file")
        fh.flush()
        print("writing", flush=True)
        time.sleep(600)
""")


def test_debris_of_a_killed_writer_is_removed_by_the_next_write(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "out.sealed"
    child = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "writing\n"
    finally:
        child.kill()  # SIGKILL: no cleanup runs in the writer
        child.wait()
    debris = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(debris) == 1
    keep = tmp_path / ".out.sealed.not-mine.tmp"  # not the writer's pattern: left alone
    keep.write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="veritee.fs"):
        atomic_write(target, b"new version")
    assert target.read_bytes() == b"new version"
    assert not debris[0].exists() and keep.exists()
    assert any(str(debris[0]) in r.getMessage() for r in caplog.records)  # and says so


def test_seal_cli_removes_debris_of_an_interrupted_seal(state: Path, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    src, sealed = tmp_path / "in", tmp_path / "out.sealed"
    src.write_bytes(b"x" * 5000)
    stale = tmp_path / ".out.sealed.k3x9_q2z.tmp"
    stale.write_bytes(b"\0" * 4096)
    with caplog.at_level(logging.WARNING, logger="veritee.fs"):
        assert main(["seal", str(src), str(sealed), "--state", str(state)]) == 0
    assert not stale.exists()
    assert any("interrupted write" in r.getMessage() for r in caplog.records)
