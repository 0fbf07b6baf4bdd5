"""Intel collateral loaders: dcap-qvl JSON, PCS bodies + chains, directories, quote files."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest

from veritee.collateral.intel import (
    load_collateral_json,
    load_crl,
    load_directory,
    load_files,
    read_quote,
)
from veritee.errors import ConfigError
from veritee.formats.intel import Quote

from _evidence import EVIDENCE_DIR, evidence_available


@pytest.fixture
def ev() -> Path:
    if not evidence_available():
        pytest.skip("shared evidence not present")
    return EVIDENCE_DIR


def test_dcap_qvl_directory_equals_explicit_json(ev: Path) -> None:
    d = ev / "tdx/v4-dcap-qvl-b0c06f-uptodate"
    by_dir = load_directory(d)
    by_file = load_files(collateral_json=d / "tdx_quote_collateral.json")
    assert by_dir == by_file
    assert by_dir.tcb_info is not None and by_dir.tcb_info.startswith(b'{"id":"TDX"')
    assert by_dir.pck_crl is not None and by_dir.root_ca_crl is not None
    assert len(by_dir.tcb_info_issuer_chain) == 2


def test_go_tdx_guest_directory_is_sniffed(ev: Path) -> None:
    d = ev / "tdx/v4-go-tdx-guest-spr-50806f"
    col = load_directory(d)
    assert col.tcb_info is not None and col.qe_identity is not None
    assert col.pck_crl is not None and col.root_ca_crl is not None
    assert col.tcb_info_issuer_chain and col.qe_identity_issuer_chain


def test_sgx_sample_directory_with_separate_pck_cert(ev: Path) -> None:
    col = load_directory(ev / "sgx/v3-intel-qvl-sample-nonprod-root")
    assert len(col.pck_chain) == 3  # pckCert.pem + pckSignChain.pem
    assert col.qe_identity is not None and b'"id":"QE"' in col.qe_identity  # not the QVE


def test_two_tcb_infos_in_one_directory_are_refused(ev: Path) -> None:
    with pytest.raises(ConfigError):
        load_directory(ev / "sgx/v3-occlum-30606a")


@pytest.mark.parametrize(("d", "name"), [("tdx/v4-dcap-qvl-hex-b0c06f", "tdx-quote.hex"),
                                         ("tdx/v4-dcap-qvl-near-20a06f", "quote_hex.txt"),
                                         ("azure-tdx/v4-teekit", "tdx-v4-azure"),
                                         ("gcp/tdx-v4-teekit", "tdx-v4-gcp.json")])
def test_quote_text_forms_are_decoded(ev: Path, d: str, name: str) -> None:
    q = Quote.from_bytes(read_quote(ev / d / name))
    assert q.is_tdx


def test_gcp_json_and_binary_are_the_same_quote(ev: Path) -> None:
    d = ev / "gcp/tdx-v4-teekit"
    assert read_quote(d / "tdx-v4-gcp.json").rstrip(b"\0") == read_quote(d / "quote.bin").rstrip(
        b"\0")


def test_read_quote_forms(tmp_path: Path) -> None:
    raw = bytes([4, 0, 2, 0]) + bytes(60)
    (tmp_path / "hex").write_text("0x" + raw.hex() + "\n")
    (tmp_path / "b64").write_text(base64.b64encode(raw).decode())
    (tmp_path / "json").write_text(f'{{"quote": "{base64.b64encode(raw).decode()}"}}')
    (tmp_path / "bin").write_bytes(raw)
    for name in ("hex", "b64", "json", "bin"):
        assert read_quote(tmp_path / name) == raw
    (tmp_path / "bad.json").write_text('{"x": 1}')
    with pytest.raises(ConfigError):
        read_quote(tmp_path / "bad.json")


def test_bad_collateral_json_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        load_collateral_json("[1]")
    with pytest.raises(ConfigError):
        load_collateral_json('{"tcb_info_signature": "zz"}')
    with pytest.raises(ConfigError):
        load_crl(b"not a crl")


def test_crl_forms(ev: Path) -> None:
    der = (ev / "roots/intel_sgx_root_ca_crl_2025-03-20.der").read_bytes()
    assert load_crl(der) == load_crl(der.hex().encode())


def test_loaded_directory_verifies_under_the_sample_root(ev: Path) -> None:
    from veritee.trust.intel import load_certificates, verify_quote

    d = ev / "sgx/v3-intel-qvl-sample-nonprod-root"
    root = load_certificates((d / "trustedRootCaCert.pem").read_bytes())[0]
    v = verify_quote(read_quote(d / "quote.dat"), load_directory(d),
                     now=datetime(2026, 8, 28, 11, 36, 54, tzinfo=UTC), trusted_roots=[root])
    assert v.tcb is not None and v.tcb.status is not None and v.tcb.status.value == "UpToDate"
