"""``veritee verify/appraise`` recognise AWS Nitro documents, Arm PSA/CCA tokens and NVIDIA
reports through the scheme registry (the pre-scheme ``cli._tokens`` fallback is gone)."""

from __future__ import annotations

import pytest

from veritee.cli import main

from _evidence import EVIDENCE_DIR, evidence_available

needs_evidence = pytest.mark.skipif(not evidence_available(), reason="no shared evidence")
CCA = EVIDENCE_DIR / "cca" / "tf-rmm-cca-token-399"
PSA = EVIDENCE_DIR / "psa" / "tfm-psa-2.0.0-sign1"
NITRO = EVIDENCE_DIR / "nitro" / "brave-nitro-utils-example-doc" / "attestation_doc.cbor"
NITRO_AT = "2022-07-26T18:39:12Z"


@needs_evidence
def test_cca_token_with_its_platform_key(capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(CCA / "cca_token.cbor"), "--key", str(CCA / "cca_platform.pub")]
    assert main(["verify", *args]) == 0
    assert "cca.binding.rak_hash" in capsys.readouterr().out
    assert main(["appraise", *args]) == 0


@needs_evidence
def test_cca_token_with_another_key_fails() -> None:
    other = EVIDENCE_DIR / "cca" / "veraison-parsec-cca" / "iak_p256_public.jwk.json"
    assert main(["verify", str(CCA / "cca_token.cbor"), "--key", str(other)]) == 4


@needs_evidence
def test_token_without_key_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(CCA / "cca_token.cbor")]) == 3
    assert "--key" in capsys.readouterr().err


@needs_evidence
def test_psa_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(PSA / "psa-2_0_0_sign1.bin"), "--key",
                 str(PSA / "public.pem")]) == 0
    assert "verified psa evidence (arm-psa-token)" in capsys.readouterr().out


@needs_evidence
def test_nitro_document_at_its_time_and_later(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(NITRO), "--at", NITRO_AT]) == 0
    assert "(aws-nitro-document)" in capsys.readouterr().out
    assert main(["verify", str(NITRO), "--at", "2024-01-01T00:00:00Z"]) == 4
    assert main(["appraise", str(NITRO), "--at", NITRO_AT]) == 6  # a debug-mode enclave
    assert "nitro.debug" in capsys.readouterr().out


NVIDIA = EVIDENCE_DIR / "nvidia"
GPU_AT = "2026-06-01T00:00:00Z"


@needs_evidence
def test_nvidia_transcript_with_its_chain(capsys: pytest.CaptureFixture[str]) -> None:
    d = NVIDIA / "h100-nvtrust-sample-550.90.07"
    args = ["verify", str(d / "hopperAttestationReport.txt"), "--at", GPU_AT]
    assert main(args) == 5  # no chain given: missing collateral, as SEV-SNP without a VCEK
    assert main([*args, "--certs", str(d / "hopperCertChain.txt")]) == 0
    assert "(nvidia-spdm)" in capsys.readouterr().out


@needs_evidence
def test_nvidia_invalid_signature_sample() -> None:
    d = NVIDIA / "h100-sdk-invalid-signature"
    files = sorted(p for p in d.iterdir() if "Report" in p.name or "report" in p.name)
    chains = sorted(p for p in d.iterdir() if "Chain" in p.name or "chain" in p.name)
    if not files or not chains:
        pytest.skip("sample layout differs")
    assert main(["verify", str(files[0]), "--certs", str(chains[0]), "--at", GPU_AT]) == 4


@needs_evidence
def test_nvat_evidence_json_appraised() -> None:
    evidence = NVIDIA / "b200-veraison-evidence-json" / "blackwell-evidence.json"
    assert main(["appraise", str(evidence), "--at", GPU_AT]) == 0
