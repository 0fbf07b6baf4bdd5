"""Master-key sources, first start, rotation and file hygiene (issue 9 findings 3, 8, 9).

``file`` and ``pkcs11`` (SoftHSM2) start the service outside dev mode on an ordinary machine;
``emulated`` is dev-only. Workers starting together open one key; rotation re-wraps the data
key in one transaction; key and state files must be owner-only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from veritee.errors import ConfigError
from veritee.service import MasterKey, Settings, create_app
from veritee.service.app import service_master_key
from veritee.service.keys import create_master_key_file, rotate_master_key
from veritee.service.storage import open_store

SOFTHSM_LIB = Path("/usr/lib/softhsm/libsofthsm2.so")


def _file_settings(tmp: Path, *, dev_mode: bool = False, name: str = "master.key") -> Settings:
    return Settings(database_url=f"sqlite:///{tmp}/svc.db", dev_mode=dev_mode,
                    key_source="file", master_key_file=str(tmp / name))


def _put_secret(app: object, path: str, secret: bytes) -> None:
    broker = app.state.broker  # type: ignore[attr-defined]
    broker.put_resource("test", path, {"secret": __import__("base64").b64encode(secret)
                                       .decode(), "policy": {"allow_any_workload": True}})


def _read_secret(app: object, path: str) -> bytes:
    broker = app.state.broker  # type: ignore[attr-defined]
    with broker.store.transaction(write=False) as tx:
        found = tx.resource_row(path)
    assert found is not None
    return bytes(broker.master.decrypt(found[1], path.encode()))


def test_service_starts_outside_dev_mode_with_a_file_key(tmp_path: Path) -> None:
    settings = _file_settings(tmp_path)
    create_master_key_file(Path(settings.master_key_file))
    assert Path(settings.master_key_file).stat().st_mode & 0o777 == 0o600
    app = create_app(settings)
    _put_secret(app, "k", b"s3cret")
    app.state.broker.store.close()
    again = create_app(settings)  # the same key opens the same state
    assert _read_secret(again, "k") == b"s3cret"
    again.state.broker.store.close()


def test_world_readable_master_key_file_refused_outside_dev_mode(tmp_path: Path) -> None:
    settings = _file_settings(tmp_path)
    create_master_key_file(Path(settings.master_key_file))
    os.chmod(settings.master_key_file, 0o644)
    with pytest.raises(ConfigError, match="mode 0644, want 0600"):
        service_master_key(settings)
    service_master_key(replace(settings, dev_mode=True))  # tolerated in development
    os.chmod(settings.master_key_file, 0o600)
    service_master_key(settings)


def test_master_key_file_of_wrong_length_refused(tmp_path: Path) -> None:
    key = tmp_path / "master.key"
    key.write_bytes(b"\x01" * 31)
    key.chmod(0o600)
    with pytest.raises(ConfigError, match="want exactly 32"):
        service_master_key(_file_settings(tmp_path))


def test_master_key_file_is_never_overwritten(tmp_path: Path) -> None:
    first = create_master_key_file(tmp_path / "k")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        create_master_key_file(tmp_path / "k")
    assert (tmp_path / "k").read_bytes() == first.key


def test_world_readable_sealed_master_key_refused_outside_dev_mode(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/svc.db", dev_mode=True,
                        key_source="emulated", emulated_machine_dir=str(tmp_path / "m"),
                        master_key_file=str(tmp_path / "master.sealed"))
    service_master_key(settings)
    assert (tmp_path / "master.sealed").stat().st_mode & 0o777 == 0o600
    os.chmod(tmp_path / "master.sealed", 0o640)
    with pytest.raises(ConfigError, match="master_key_file"):
        service_master_key(replace(settings, dev_mode=False))


def test_new_sqlite_database_is_created_owner_only(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/new/svc.db")
    store.close()
    assert (tmp_path / "new" / "svc.db").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700


_OPEN_KEY = """
import sys, time, pathlib
from veritee.service import Settings
from veritee.service.app import service_master_key
go = pathlib.Path(sys.argv[2])
while not go.exists():
    time.sleep(0.005)
tmp = pathlib.Path(sys.argv[1])
s = Settings(database_url="sqlite:///x.db", dev_mode=True, key_source="emulated",
             emulated_machine_dir=str(tmp / "machine"), master_key_file=str(tmp / "m.sealed"))
print(service_master_key(s).key_id)
"""


def test_two_workers_first_start_share_one_master_key(tmp_path: Path) -> None:
    """Finding 3: workers starting together on an empty directory each made a machine and
    a key; now exactly one is created and every process (and every later start) opens it."""
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_KEY, str(tmp_path), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    time.sleep(0.3)  # let them all reach the start line (not a timing assertion)
    go.touch()
    ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        ids.append(out.strip())
    assert len(set(ids)) == 1
    settings = Settings(database_url="sqlite:///x.db", dev_mode=True, key_source="emulated",
                        emulated_machine_dir=str(tmp_path / "machine"),
                        master_key_file=str(tmp_path / "m.sealed"))
    assert service_master_key(settings).key_id == ids[0]


def test_master_key_rotation_rewraps_everything(tmp_path: Path) -> None:
    old_settings = _file_settings(tmp_path, name="old.key")
    new_settings = _file_settings(tmp_path, name="new.key")
    old, new = (create_master_key_file(Path(s.master_key_file))
                for s in (old_settings, new_settings))
    app = create_app(old_settings)
    _put_secret(app, "k", b"kept across rotation")
    store = app.state.broker.store
    assert rotate_master_key(store, old, new, now=time.time()) == new.key_id
    store.close()
    with pytest.raises(ConfigError, match="wrapped by master key"):
        create_app(old_settings)
    app = create_app(new_settings)
    assert _read_secret(app, "k") == b"kept across rotation"
    from veritee.service.audit import verify_chain

    store = app.state.broker.store
    with store.transaction(write=False) as tx:
        rows = tx.audit_rows()
    assert verify_chain(rows, store.integrity).ok
    assert rows[-1].event == "admin.master_key.rotate"
    with pytest.raises(ConfigError, match="does not unwrap"):
        rotate_master_key(store, old, MasterKey.generate(), now=time.time())
    store.close()


def test_rotation_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from veritee.cli import main

    old_file, new_file = tmp_path / "old.key", tmp_path / "new.key"
    assert main(["admin", "master-key-new", "--out", str(old_file)]) == 0
    assert main(["admin", "master-key-new", "--out", str(new_file)]) == 0
    for name, key in (("old.json", old_file), ("new.json", new_file)):
        (tmp_path / name).write_text(json.dumps({
            "database_url": f"sqlite:///{tmp_path}/svc.db", "key_source": "file",
            "master_key_file": str(key)}))
    create_app(_file_settings(tmp_path, name="old.key")).state.broker.store.close()
    assert main(["admin", "rotate-master-key", "--settings", str(tmp_path / "old.json"),
                 "--new-settings", str(tmp_path / "new.json")]) == 0
    assert main(["audit", "verify", "--settings", str(tmp_path / "new.json")]) == 0
    assert "audit log OK" in capsys.readouterr().out


# -- PKCS#11 (SoftHSM2) -------------------------------------------------------------------

@pytest.fixture(scope="module")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A SoftHSM2 token 'veritee' (user PIN in pin.txt, 0600) for this module."""
    if not SOFTHSM_LIB.exists() or shutil.which("softhsm2-util") is None:
        pytest.skip("SoftHSM2 is not installed (Debian package softhsm2)")
    pytest.importorskip("pkcs11")
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir(mode=0o700)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "veritee",
                    "--pin", "1234", "--so-pin", "5678"], check=True, capture_output=True)
    pin = root / "pin.txt"
    pin.write_text("1234\n")
    pin.chmod(0o600)
    yield root
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous


def _pkcs11_settings(tmp: Path, softhsm: Path, **kw: object) -> Settings:
    base = Settings(database_url=f"sqlite:///{tmp}/svc.db", dev_mode=False,
                    key_source="pkcs11", master_key_file=str(tmp / "hsm"),
                    pkcs11_module=str(SOFTHSM_LIB), pkcs11_pin_file=str(softhsm / "pin.txt"))
    return replace(base, **kw)  # type: ignore[arg-type]


def test_service_starts_outside_dev_mode_with_pkcs11(tmp_path: Path, softhsm: Path) -> None:
    settings = _pkcs11_settings(tmp_path, softhsm, pkcs11_key_label="svc-a")
    app = create_app(settings)
    _put_secret(app, "k", b"hsm-held")
    app.state.broker.store.close()
    again = create_app(settings)
    assert _read_secret(again, "k") == b"hsm-held"
    again.state.broker.store.close()


def test_pkcs11_master_key_never_leaves_the_token(tmp_path: Path, softhsm: Path) -> None:
    from pkcs11 import Attribute

    key = service_master_key(_pkcs11_settings(tmp_path, softhsm, pkcs11_key_label="svc-b"))
    handle = key._key  # type: ignore[attr-defined]
    assert handle[Attribute.SENSITIVE] is True and handle[Attribute.EXTRACTABLE] is False
    assert not hasattr(key, "key")  # no key bytes in this process
    wrapped = key.encrypt(b"data key", b"aad")
    assert key.decrypt(wrapped, b"aad") == b"data key"
    from veritee.errors import SealingError

    with pytest.raises(SealingError):
        key.decrypt(wrapped, b"other aad")
    key.close()  # type: ignore[attr-defined]


def test_pkcs11_wrong_pin_or_loose_pin_file_refused(tmp_path: Path, softhsm: Path) -> None:
    bad = tmp_path / "pin"
    bad.write_text("0000")
    bad.chmod(0o600)
    with pytest.raises(ConfigError, match="cannot open token"):
        service_master_key(_pkcs11_settings(tmp_path, softhsm, pkcs11_pin_file=str(bad)))
    bad.chmod(0o644)
    with pytest.raises(ConfigError, match="pkcs11_pin_file"):
        service_master_key(_pkcs11_settings(tmp_path, softhsm, pkcs11_pin_file=str(bad)))


def test_rotation_from_file_to_pkcs11(tmp_path: Path, softhsm: Path) -> None:
    file_settings = _file_settings(tmp_path)
    old = create_master_key_file(Path(file_settings.master_key_file))
    app = create_app(file_settings)
    _put_secret(app, "k", b"moved into the HSM")
    hsm_settings = _pkcs11_settings(tmp_path, softhsm, pkcs11_key_label="svc-c")
    hsm = service_master_key(hsm_settings)
    rotate_master_key(app.state.broker.store, old, hsm, now=time.time())
    hsm.close()  # type: ignore[attr-defined]
    app.state.broker.store.close()
    app = create_app(hsm_settings)
    assert _read_secret(app, "k") == b"moved into the HSM"
    app.state.broker.store.close()
