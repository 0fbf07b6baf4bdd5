"""``veritee seal/unseal/reseal/keys --tee sgx|tdx|tpm`` through ``veritee.cli.main``: the
generic sealing API and key store on every emulated TEE (no "not yet" left)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from veritee.cli import main

EXIT_OK, EXIT_CONFIG, EXIT_SEALING = 0, 3, 8


def _swtpm_reason() -> str | None:
    from veritee.platform.tpm import swtpm_unavailable_reason

    return swtpm_unavailable_reason()


needs_swtpm = pytest.mark.skipif(_swtpm_reason() is not None, reason=str(_swtpm_reason()))


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_seal_inspect_reseal_and_streams_on_intel(tee: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--tee", tee, "--state", str(tmp_path / "state")]
    src = tmp_path / "in"
    src.write_bytes(b"large state " * 50_000)
    sealed = tmp_path / "s"
    assert main(["seal", str(src), str(sealed), *base, "--chunk-size", "4096"]) == EXIT_OK
    capsys.readouterr()
    assert main(["seal", "--inspect", str(sealed), "--format", "json"]) == EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["tee"] == tee and shown["kind"] == "stream"
    assert shown["bound_to"]["tee"] == tee
    assert main(["unseal", str(sealed), str(tmp_path / "o"), *base]) == EXIT_OK
    assert (tmp_path / "o").read_bytes() == src.read_bytes()
    # reseal in place to the signer policy (SGX: MRSIGNER; TDX: MROWNER)
    assert main(["reseal", str(sealed), *base, "--policy", "signer",
                 "--expect-policy", "measurement"]) == EXIT_OK
    assert main(["unseal", "--force", str(sealed), str(tmp_path / "o"), *base]) == EXIT_SEALING
    assert main(["unseal", "--force", str(sealed), str(tmp_path / "o"), *base, "--policy",
                 "signer"]) == EXIT_OK


def test_a_file_sealed_on_sgx_does_not_open_on_tdx(tmp_path: Path) -> None:
    state = ["--state", str(tmp_path / "state")]
    src = tmp_path / "in"
    src.write_bytes(b"x")
    assert main(["seal", str(src), str(tmp_path / "s"), "--tee", "sgx", *state]) == EXIT_OK
    assert main(["unseal", str(tmp_path / "s"), str(tmp_path / "o"), "--tee", "tdx",
                 *state]) == EXIT_SEALING


def test_sgx_min_tcb_is_a_cpusvn_floor(tmp_path: Path) -> None:
    base = ["--tee", "sgx", "--state", str(tmp_path / "state")]
    src = tmp_path / "in"
    src.write_bytes(b"x")
    assert main(["seal", str(src), str(tmp_path / "s"), *base]) == EXIT_OK
    assert main(["unseal", str(tmp_path / "s"), str(tmp_path / "o"), *base, "--min-tcb",
                 "ff" * 16]) == EXIT_SEALING
    assert main(["unseal", str(tmp_path / "s"), str(tmp_path / "o"), *base, "--min-tcb",
                 "00" * 16]) == EXIT_OK
    assert main(["unseal", "--force", str(tmp_path / "s"), str(tmp_path / "o"), *base,
                 "--min-tcb", "0102"]) == EXIT_CONFIG


@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_keys_on_intel_need_the_unsafe_opt_out(tee: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--tee", tee, "--state", str(tmp_path / "state"), "--store", str(tmp_path / "ks")]
    assert main(["keys", "create", "k", *base]) == EXIT_CONFIG  # no monotonic counters
    assert "rollback" in capsys.readouterr().err
    unsafe = [*base, "--unsafe-no-rollback-protection"]
    assert main(["keys", "create", "k", "--type", "ec-p256", *unsafe]) == EXIT_OK
    msg = tmp_path / "msg"
    msg.write_bytes(b"hello")
    assert main(["keys", "sign", "k", "--in", str(msg), "--out", str(tmp_path / "sig"),
                 *unsafe]) == EXIT_OK
    assert main(["keys", "verify", "k", "--in", str(msg), "--signature",
                 str(tmp_path / "sig"), *unsafe]) == EXIT_OK
    # another image: another workload, whose keys cannot open this store
    image = tmp_path / "other.img"
    image.write_bytes(b"another image")
    assert main(["keys", "list", *unsafe, "--image", str(image)]) != EXIT_OK


@needs_swtpm
def test_tpm_seal_pcrs_keys_with_rollback(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--tee", "tpm", "--platform", "emulated", "--state", str(tmp_path / "tpm")]
    src = tmp_path / "in"
    src.write_bytes(b"disk key")
    assert main(["seal", str(src), str(tmp_path / "s"), *base, "--pcrs", "0,7",
                 "--rollback"]) == EXIT_OK
    assert main(["unseal", str(tmp_path / "s"), str(tmp_path / "o"), *base,
                 "--rollback"]) == EXIT_SEALING  # the reader expects PCRs 0-7 by default
    assert main(["unseal", str(tmp_path / "s"), str(tmp_path / "o"), *base, "--pcrs", "0,7",
                 "--rollback"]) == EXIT_OK
    old = (tmp_path / "s").read_bytes()
    assert main(["seal", str(src), str(tmp_path / "s"), *base, "--pcrs", "0,7",
                 "--rollback"]) == EXIT_OK
    (tmp_path / "s").write_bytes(old)  # the host puts the older version back
    assert main(["unseal", "--force", str(tmp_path / "s"), str(tmp_path / "o"), *base,
                 "--pcrs", "0,7", "--rollback"]) == EXIT_SEALING
    # The key store runs with the TPM's NV counters: no unsafe opt-out needed.
    ks = [*base, "--store", str(tmp_path / "ks")]
    assert main(["keys", "create", "k", "--type", "aes-256", *ks]) == EXIT_OK
    capsys.readouterr()
    assert main(["keys", "list", "--format", "json", *ks]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)[0]["name"] == "k"


def _intel_registered() -> bool:
    from veritee import schemes

    return {"tdx", "sgx"} <= set(schemes.names())


@pytest.mark.skipif(not _intel_registered(),
                    reason="the tdx/sgx schemes are not in the registry yet (issue 11)")
@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_cert_attested_and_inspect_on_intel(tee: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "att"
    assert main(["cert", "attested", "--out", str(out), "--tee", tee]) == EXIT_OK
    capsys.readouterr()
    col = out / "collateral"
    argv = ["cert", "inspect", str(out / "cert.pem"), "--trust-root", str(col / "root_ca.pem"),
            "--certs", str(col), "--policy", str(out / "policy.json"), "--format", "json"]
    assert main(argv) == EXIT_OK
    shown = json.loads(capsys.readouterr().out)
    assert shown["certificate"]["scheme"] == tee and shown["appraisal"]["accepted"] is True
    assert shown["appraisal"]["policy_id"] == "emulated-workload"
    # Without the emulated root the pinned Intel root does not sign this evidence.
    assert main(["cert", "inspect", str(out / "cert.pem"), "--certs", str(col)]) == 4


def test_cert_attested_on_a_tpm_says_why_not(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "attested", "--out", str(tmp_path), "--tee", "tpm"]) == 7
    err = capsys.readouterr().err
    assert "AK" in err and "not yet" not in err


def test_cert_inspect_names_the_scheme(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "att"
    assert main(["cert", "attested", "--out", str(out), "--key-size", "2048"]) == EXIT_OK
    capsys.readouterr()
    assert main(["cert", "inspect", str(out / "cert.pem"), "--trust-root",
                 str(out / "certs" / "ark.pem"), "--crl", str(out / "certs" / "crl.pem"),
                 "--policy", str(out / "policy.json")]) == EXIT_OK
    assert "scheme: sevsnp" in capsys.readouterr().out


def test_kbs_get_seal_on_an_emulated_td(tmp_path: Path) -> None:
    """A secret released to the TD is sealed to the TD (key-service key, the resource path as
    associated data): it opens in that TD and in no other image."""
    import base64
    from datetime import UTC, datetime

    import httpx

    from veritee.cli._demo import demo_image
    from veritee.platform.emulated.intel import EmulatedIntelCpu
    from veritee.platform.emulated.tdx import InsecureEmulatedTdxMachine
    from veritee.service import MasterKey, Settings, create_app
    from veritee.service.core import create_admin_token
    from veritee.service.server import LoopbackServer
    from veritee.service.storage import open_store
    from veritee.trust.roots import TrustAnchors

    state = tmp_path / "state"
    cpu = EmulatedIntelCpu.open(state)
    mrtd = InsecureEmulatedTdxMachine(cpu.vendor, cpu=cpu).launch(demo_image()).mr_td
    col = tmp_path / "intel"
    cpu.vendor.write_collateral(col, "TDX", datetime.now(UTC))
    url = f"sqlite:///{tmp_path / 'kbs.db'}"
    store = open_store(url)
    settings = Settings(database_url=url, dev_mode=True, key_source="emulated",
                        emulated_machine_dir=str(tmp_path), intel_collateral_dir=str(col),
                        intel_trust_roots=(str(col / "root_ca.pem"),))
    app = create_app(settings, master_key=MasterKey.generate(), anchors=TrustAnchors.amd(),
                     store=store)
    _, admin = create_admin_token(store, "t", "admin")
    sealed, opened = tmp_path / "secret.sealed", tmp_path / "secret"
    base = ["--tee", "tdx", "--state", str(state)]
    try:
        with LoopbackServer(app) as server:
            httpx.put(f"{server.url}/v1/admin/resources/tds/k",
                      headers={"Authorization": f"Bearer {admin}"},
                      json={"secret": base64.b64encode(b"s3cret").decode(),
                            "policy": {"mrtd": [mrtd.hex()]}}).raise_for_status()
            assert main(["kbs", "get", "tds/k", "--url", server.url, "--out", str(sealed),
                         "--seal", "--dev-mode", *base]) == EXIT_OK
    finally:
        store.close()
    assert b"s3cret" not in sealed.read_bytes()
    assert main(["unseal", str(sealed), str(opened), "--aad", "tds/k", *base]) == EXIT_OK
    assert opened.read_bytes() == b"s3cret"
    image = tmp_path / "other.img"
    image.write_bytes(b"another firmware")
    assert main(["unseal", "--force", str(sealed), str(opened), "--aad", "tds/k", *base,
                 "--image", str(image)]) == EXIT_SEALING
