"""``veritee show/verify/appraise`` recognise Intel DCAP quotes and use Intel collateral."""

from __future__ import annotations

import json

import pytest

from veritee.attest import is_intel_quote
from veritee.cli import main

from _evidence import EVIDENCE_DIR, evidence_available

needs_evidence = pytest.mark.skipif(not evidence_available(), reason="no shared evidence")
TDX = EVIDENCE_DIR / "tdx" / "v4-dcap-qvl-b0c06f-uptodate"
SGX = EVIDENCE_DIR / "sgx" / "v3-dcap-qvl-00a067"
NONPROD = EVIDENCE_DIR / "sgx" / "v3-intel-qvl-sample-nonprod-root"
TDX_AT, SGX_AT = "2025-07-19T10:00:34Z", "2025-07-19T10:01:17Z"


@needs_evidence
def test_detects_intel_quotes_and_not_snp_reports() -> None:
    assert is_intel_quote((TDX / "tdx_quote").read_bytes())
    assert is_intel_quote((SGX / "sgx_quote").read_bytes())
    snp = EVIDENCE_DIR / "snp" / "milan-v2-go-sev-guest" / "attestation.bin"
    assert not is_intel_quote(snp.read_bytes())


@needs_evidence
def test_show_tdx_quote(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(TDX / "tdx_quote"), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "intel-tdx-quote"
    assert doc["quote"]["header"]["version"] == 4


@needs_evidence
def test_verify_and_appraise_uptodate_tdx(capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(TDX / "tdx_quote"), "--certs", str(TDX), "--at", TDX_AT]
    assert main(["verify", *args]) == 0
    assert "TCB status: UpToDate" in capsys.readouterr().out
    assert main(["appraise", *args]) == 0
    assert "verdict: ACCEPTED" in capsys.readouterr().out


@needs_evidence
def test_sgx_configuration_needed_rejected_by_default_policy(
        capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(SGX / "sgx_quote"), "--certs", str(SGX), "--at", SGX_AT]
    assert main(["verify", *args]) == 0
    assert main(["appraise", *args]) == 6
    assert "sgx.tcb.status" in capsys.readouterr().out


@needs_evidence
def test_expired_collateral_is_a_verification_failure() -> None:
    assert main(["verify", str(TDX / "tdx_quote"), "--certs", str(TDX), "--at",
                 "2030-01-01T00:00:00Z"]) == 4


@needs_evidence
def test_non_production_root_needs_explicit_trust(capsys: pytest.CaptureFixture[str]) -> None:
    quote = str(NONPROD / "quote.dat")
    assert main(["verify", quote, "--certs", str(NONPROD)]) == 4
    assert "root_untrusted" in capsys.readouterr().err


@needs_evidence
def test_intel_quote_with_snp_policy_file_is_bad_input(tmp_path: object,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """--policy is read by the recognised scheme (issue 11): an SEV-SNP key in a policy for a
    TD quote is refused naming it; a TDX policy file is used."""
    from pathlib import Path

    policy = Path(str(tmp_path)) / "p.toml"
    policy.write_text("min_tcb = { bootloader = 1 }\n")
    args = ["appraise", str(TDX / "tdx_quote"), "--certs", str(TDX), "--at", TDX_AT,
            "--policy", str(policy)]
    assert main(args) == 3
    assert "min_tcb: unknown key" in capsys.readouterr().err
    policy.write_text('mrtd = ["' + "00" * 48 + '"]\n')
    assert main(args) == 6
    assert "tdx.mrtd.mismatch" in capsys.readouterr().out
