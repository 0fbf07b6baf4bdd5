"""``--tee tdx|sgx|tpm`` on the CLI: demo, emulate -> verify, kbs get, seal and unseal."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from veritee.cli import main
from veritee.cli._demo import demo_image
from veritee.platform.emulated.intel import EmulatedIntelCpu
from veritee.platform.emulated.tdx import InsecureEmulatedTdxMachine
from veritee.service import MasterKey, Settings, create_app
from veritee.service.core import create_admin_token
from veritee.service.server import LoopbackServer
from veritee.service.storage import open_store
from veritee.trust.roots import TrustAnchors

EXIT_OK, EXIT_VERIFY, EXIT_POLICY, EXIT_PLATFORM = 0, 4, 6, 7


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_demo_runs_the_whole_flow_on_an_intel_tee(tee: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--tee", tee]) == EXIT_OK
    out = capsys.readouterr().out
    assert "result: OK" in out and "NOT STOPPED" not in out


@pytest.mark.parametrize("tee", ["tdx", "sgx"])
def test_emulated_quote_verifies_with_its_root_and_only_with_it(
        tee: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulate", "--tee", tee, "--out", str(tmp_path)]) == EXIT_OK
    quote, col = tmp_path / "quote.dat", tmp_path / "collateral"
    assert main(["verify", str(quote), "--certs", str(col), "--trust-root",
                 str(col / "root_ca.pem")]) == EXIT_OK
    assert "TCB status: UpToDate" in capsys.readouterr().out
    assert main(["verify", str(quote), "--certs", str(col)]) == EXIT_VERIFY
    assert "root_untrusted" in capsys.readouterr().err


def test_emulated_debug_td_is_rejected_by_appraise(tmp_path: Path) -> None:
    assert main(["emulate", "--tee", "tdx", "--debug-guest", "--out", str(tmp_path)]) == 0
    col = tmp_path / "collateral"
    assert main(["appraise", str(tmp_path / "quote.dat"), "--certs", str(col),
                 "--trust-root", str(col / "root_ca.pem")]) == EXIT_POLICY


EXIT_SEALING = 8


def test_sgx_seal_unseal_on_the_cli(tmp_path: Path) -> None:
    """MRSIGNER sealing: a newer release reads the old one's file only when it says it
    accepts that SVN; MRENCLAVE sealing: another image cannot read it."""
    state, src = tmp_path / "state", tmp_path / "in"
    src.write_bytes(b"enclave state")
    other = tmp_path / "v3.img"
    other.write_bytes(b"release 3 of the enclave")
    base = ["--tee", "sgx", "--state", str(state)]
    assert main(["seal", str(src), str(tmp_path / "s"), *base, "--policy", "signer",
                 "--svn", "2"]) == EXIT_OK
    newer = [*base, "--policy", "signer", "--svn", "3", "--image", str(other)]
    assert main(["unseal", "--force", str(tmp_path / "s"), str(tmp_path / "o"),
                 *newer]) == EXIT_SEALING
    assert main(["unseal", "--force", str(tmp_path / "s"), str(tmp_path / "o"), *newer,
                 "--min-svn", "2"]) == EXIT_OK
    assert (tmp_path / "o").read_bytes() == b"enclave state"
    assert main(["seal", str(src), str(tmp_path / "m"), *base]) == EXIT_OK
    assert main(["unseal", "--force", str(tmp_path / "m"), str(tmp_path / "o2"), *base]) == EXIT_OK
    assert main(["unseal", "--force", str(tmp_path / "m"), str(tmp_path / "o3"), *base, "--image",
                 str(other)]) == EXIT_SEALING
    assert main(["seal", str(src), str(tmp_path / "r"), *base, "--rollback"]) == 3


def test_tdx_seal_unseal_on_the_cli(tmp_path: Path) -> None:
    state, src = tmp_path / "state", tmp_path / "in"
    src.write_bytes(b"TD state")
    other = tmp_path / "fw2"
    other.write_bytes(b"another firmware")
    base = ["--tee", "tdx", "--state", str(state)]
    assert main(["seal", str(src), str(tmp_path / "s"), *base]) == EXIT_OK
    assert main(["unseal", "--force", str(tmp_path / "s"), str(tmp_path / "o"), *base]) == EXIT_OK
    assert (tmp_path / "o").read_bytes() == b"TD state"
    assert main(["unseal", "--force", str(tmp_path / "s"), str(tmp_path / "o"), *base, "--image",
                 str(other)]) == EXIT_SEALING
    # An mrowner-sealed file is not what an mrtd reader expects: refused, not followed.
    assert main(["seal", str(src), str(tmp_path / "w"), *base, "--policy", "signer"]) == 0
    assert main(["unseal", "--force", str(tmp_path / "w"), str(tmp_path / "o"),
                 *base]) == EXIT_SEALING


def _swtpm_reason() -> str | None:
    from veritee.platform.tpm import swtpm_unavailable_reason

    return swtpm_unavailable_reason()


needs_swtpm = pytest.mark.skipif(_swtpm_reason() is not None, reason=str(_swtpm_reason()))


@needs_swtpm
def test_tpm_demo_emulate_and_seal_on_the_cli(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--tee", "tpm"]) == EXIT_OK
    assert "result: OK" in capsys.readouterr().out
    out = tmp_path / "q"
    nonce = "ab" * 32
    assert main(["emulate", "--tee", "tpm", "--out", str(out), "--report-data", nonce]) == 0
    assert main(["tpm", "quote", "--quote", str(out / "quote.attest"), "--signature",
                 str(out / "quote.sig"), "--ak", str(out / "ak.pub"), "--nonce", nonce,
                 "--pcrs", str(out / "quote.pcrs")]) == EXIT_OK
    assert main(["tpm", "ek", "--ek-cert", str(out / "ek.der"), "--intermediate",
                 str(out / "ca.pem"), "--root", str(out / "root.pem")]) == EXIT_OK
    src = tmp_path / "in"
    src.write_bytes(b"disk key")
    base = ["--tee", "tpm", "--platform", "emulated", "--state", str(tmp_path / "tpm")]
    assert main(["seal", str(src), str(tmp_path / "s"), *base]) == EXIT_OK
    assert main(["unseal", "--force", str(tmp_path / "s"), str(tmp_path / "o"), *base]) == EXIT_OK
    assert (tmp_path / "o").read_bytes() == b"disk key"
    assert main(["seal", str(src), str(tmp_path / "x"), *base, "--policy", "signer"]) == 3


def test_kbs_get_from_an_emulated_td(tmp_path: Path) -> None:
    """The TD kept in --state attests to a service that trusts its vendor's root."""
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
    out = tmp_path / "secret"
    try:
        with LoopbackServer(app) as server:
            httpx.put(f"{server.url}/v1/admin/resources/tds/k",
                      headers={"Authorization": f"Bearer {admin}"},
                      json={"secret": base64.b64encode(b"s3cret").decode(),
                            "policy": {"mrtd": [mrtd.hex()]}}).raise_for_status()
            assert main(["kbs", "get", "tds/k", "--url", server.url, "--out", str(out),
                         "--tee", "tdx", "--state", str(state), "--dev-mode"]) == EXIT_OK
            assert out.read_bytes() == b"s3cret"
            # Another image: another MRTD, refused by the resource policy.
            image = tmp_path / "other.img"
            image.write_bytes(b"another firmware")
            assert main(["kbs", "get", "tds/k", "--url", server.url, "--out", str(out),
                         "--tee", "tdx", "--state", str(state), "--image", str(image),
                         "--dev-mode"]) == 4
    finally:
        store.close()
