"""The real samples of ../shared/evidence that ``attest.verify`` is tested on
(tests/schemes/test_samples_cose_nvidia.py, test_samples_tpm.py) through ``veritee verify`` and
``veritee appraise --format json``, with their collateral / anchors / nonce / policy as command
line options: the CLI's exit code and verdict match the manifest's (issue 11, "What it must
show"). SEV-SNP and Intel are covered by tests/schemes/test_samples_snp_intel.py.

Policy files written here are the scheme's own mapping form (``policy_to_mapping``), as a user
would save them; evidence the tpm scheme needs in its container (keylime's loose tpm2-tools
files) is put into it byte for byte in ``tmp_path`` (nothing is copied into the repository).
Skips cleanly when the corpus is absent.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from veritee import schemes
from veritee.collateral.tpm import load_go_attestation_dump, load_trustee_azure_vtpm
from veritee.crypto.amd_certs import load_certificates
from veritee.formats.nitro import NitroDocument
from veritee.formats.tpm import TpmsAttest
from veritee.policy.nitro import NitroPolicy
from veritee.policy.tpm import TpmPolicy, ak_pin
from veritee.trust.sevsnp import parse_vek_extensions

from _arm_support import SAMPLE_VERDICTS, sample_path
from _evidence import EVIDENCE_DIR, evidence_available, load_manifest, manifest_samples, sample_time
from _nitro_support import NITRO_CASES, NitroCase, case
from _nvidia_support import (
    CHAIN_NEGATIVES,
    CHAIN_NEGATIVES_DIR,
    GOOD,
    NOW,
    REPORT_CASES,
    ReportCase,
)
from _tpm_support import file_of, samples

pytestmark = [pytest.mark.evidence,
              pytest.mark.skipif(not evidence_available(), reason="shared evidence absent"),
              pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")]

MANIFEST = "MANIFEST-2.json"
EXIT = {"valid": 0, "format": 3}  # otherwise a VerificationError code: exit 4
GCE_TIME = "2025-01-01T00:00:00+00:00"  # inside every GCE chain's validity window
AZURE_SNP_TIME = "2025-06-01T00:00:00+00:00"  # the Azure VCEKs: 2025-01 .. 2032-01


def _cases(cases: tuple[Any, ...]) -> tuple[Any, ...]:
    return cases if evidence_available() else ()


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """Run ``veritee ARGV --format json``; the exit code and the JSON document on stdout."""
    from veritee.cli import main

    code = main([*argv, "--format", "json"])
    out = capsys.readouterr().out
    doc: dict[str, Any] = json.loads(out)
    return code, doc


def _policy_file(tmp_path: Path, scheme: str, policy: Any) -> str:
    path = tmp_path / f"{scheme}-policy.json"
    path.write_text(json.dumps(schemes.get(scheme).policy_to_mapping(policy)))
    return str(path)


def _error(doc: dict[str, Any]) -> str | None:
    error = doc.get("error")
    return None if error is None else str(error.get("code"))


# -- AWS Nitro ----------------------------------------------------------------------------------
@pytest.mark.parametrize("c", _cases(NITRO_CASES), ids=lambda c: c.id)
def test_nitro_sample_through_the_cli(c: NitroCase, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    _, doc, at = c.load()
    argv = [str(c.path), "--at", at.isoformat()]
    code, out = _cli(capsys, "verify", *argv)
    assert code == 0 and out["verdict"] == "verified" and out["scheme"] == "nitro", out
    # The secure default refuses an unpinned image (and a debug enclave).
    code, out = _cli(capsys, "appraise", *argv)
    assert code == 6 and out["verdict"] == "rejected"
    assert "nitro.image.unpinned" in out["error"]["message"]
    assert ("nitro.debug" in out["error"]["message"]) is c.debug
    # The relying party's policy pins the image (and allows debug where the sample is one).
    policy = _policy_file(tmp_path, "nitro",
                          NitroPolicy(allow_debug=c.debug, pcr0={doc.payload.pcrs[0]}))
    code, out = _cli(capsys, "appraise", *argv, "--policy", policy)
    assert code == 0 and out["verdict"] == "accepted", out
    assert out["claims"]["debug"] is c.debug
    assert out["claims"]["measurement"] == doc.payload.pcrs[0].hex()


def test_nitro_expired_chain_and_tampered_document_through_the_cli(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    beta = case("evervault-beta-docs-debug-and-prod", "debug-mode-attestation-doc-bytes")
    code, out = _cli(capsys, "verify", str(beta.path), "--at", "2026-01-01T00:00:00+00:00")
    assert code == 4 and _error(out) == "nitro.chain.expired"
    ga = case("evervault-ga-doc-with-tls-cert", "attestation_doc.cbor")
    raw = ga.path.read_bytes()
    bad = bytearray(raw)
    bad[raw.index(b"module_id") + 12] ^= 0x01
    (tmp_path / "doc.cbor").write_bytes(bytes(bad))
    assert ga.at is not None
    code, out = _cli(capsys, "verify", str(tmp_path / "doc.cbor"), "--at", ga.at.isoformat())
    assert code == 4 and _error(out) == "nitro.signature"


def test_nitro_pcr_mismatch_through_the_cli(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    c = case("evervault-beta-doc-in-tls-cert-san", "extracted_doc_nondebug.cbor")
    _, doc, at = c.load()
    wrong = bytes(b ^ 0xFF for b in doc.payload.pcrs[0])
    policy = _policy_file(tmp_path, "nitro", NitroPolicy(pcr0={wrong}))
    code, out = _cli(capsys, "appraise", str(c.path), "--at", at.isoformat(), "--policy", policy)
    assert code == 6 and "nitro.pcr0.mismatch" in out["error"]["message"]
    assert isinstance(NitroDocument.from_bytes(c.path.read_bytes()), NitroDocument)


# -- Arm PSA / CCA ------------------------------------------------------------------------------
ARM_SAMPLES = manifest_samples("psa/", MANIFEST) + manifest_samples("cca/", MANIFEST)


def _arm_key_file(sample: dict[str, Any], role: str | None, tmp_path: Path) -> str:
    """The device key as a file for ``--key``: the sample's own, or the manifest's JWK."""
    if role is not None:
        return str(sample_path(sample, role))
    path = tmp_path / "iak.jwk"
    path.write_text(json.dumps(sample["known_fields"]["test_iak_public"]))
    return str(path)


def test_every_arm_sample_is_driven() -> None:
    load_manifest(MANIFEST)
    assert {s["id"] for s in ARM_SAMPLES} == set(SAMPLE_VERDICTS)


@pytest.mark.parametrize("sample", ARM_SAMPLES, ids=lambda s: s["id"])
def test_arm_sample_through_the_cli(sample: dict[str, Any], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    for role, key_role, want in SAMPLE_VERDICTS[sample["id"]]:
        argv = [str(sample_path(sample, role)), "--key",
                _arm_key_file(sample, key_role, tmp_path), "--at", NOW.isoformat()]
        code, out = _cli(capsys, "verify", *argv)
        assert code == EXIT.get(want, 4), (role, out)
        if want == "valid":
            assert out["verdict"] == "verified" and out["scheme"] == sample["family"], out
            code, out = _cli(capsys, "appraise", *argv)
            assert code == 0 and out["verdict"] == "accepted", (role, out)
            assert out["scheme"] == sample["family"]
        elif want != "format":
            assert _error(out) == want


def _arm_sample(sample_id: str) -> dict[str, Any]:
    load_manifest(MANIFEST)
    (sample,) = [s for s in ARM_SAMPLES if s["id"] == sample_id]
    return sample


def test_psa_token_under_another_key_and_nonce_through_the_cli(
        capsys: pytest.CaptureFixture[str]) -> None:
    integ, iot = _arm_sample("veraison-psa-integ-token"), _arm_sample("veraison-psa-iot-token")
    code, out = _cli(capsys, "verify", str(sample_path(integ, "token")), "--key",
                     str(sample_path(iot, "trust_anchor_endorsement")), "--at", NOW.isoformat())
    assert code == 4 and _error(out) == "psa.signature"
    argv = [str(sample_path(iot, "token")), "--key",
            str(sample_path(iot, "trust_anchor_endorsement")), "--at", NOW.isoformat()]
    nonce = iot["known_fields"]["claims"]["nonce"]
    code, out = _cli(capsys, "verify", *argv, "--nonce", nonce)
    assert code == 0, out
    code, out = _cli(capsys, "verify", *argv, "--nonce", "00" * (len(nonce) // 2))
    assert code == 4 and _error(out) == "psa.binding.mismatch"


# -- NVIDIA -------------------------------------------------------------------------------------
def _nvidia_argv(c: ReportCase) -> list[str]:
    argv = [str(c.dir / c.report), "--at", NOW.isoformat()]
    return argv + (["--certs", str(c.dir / c.chain)] if c.chain is not None else [])


@pytest.mark.parametrize("c", _cases(REPORT_CASES), ids=lambda c: c.id)
def test_nvidia_report_through_the_cli(c: ReportCase,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*_nvidia_argv(c), "--nonce", c.nonce().hex()]
    code, out = _cli(capsys, "verify", *argv)
    if c.error is not None:
        assert code == 4 and _error(out) == c.error, out
        return
    assert code == 0 and out["verdict"] == "verified" and out["scheme"] == "nvidia", out
    assert out["revocation"]["checked"] is False  # OCSP only: said, not hidden
    code, out = _cli(capsys, "appraise", *argv)
    assert code == 0 and out["verdict"] == "accepted", out


def test_nvidia_report_with_the_wrong_nonce_through_the_cli(
        capsys: pytest.CaptureFixture[str]) -> None:
    (c,) = [c for c in _cases(REPORT_CASES) if c.sample_id == "h100-sdk-sample-535.86.09-rims"]
    code, out = _cli(capsys, "verify", *_nvidia_argv(c), "--nonce", "00" * 32)
    assert code == 4 and _error(out) == "nvidia.binding.mismatch"


@pytest.mark.parametrize("name", sorted(CHAIN_NEGATIVES) if evidence_available() else [])
def test_nvidia_chain_negatives_through_the_cli(name: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _cli(capsys, "verify", str(GOOD.dir / GOOD.report), "--certs",
                     str(CHAIN_NEGATIVES_DIR / name), "--at", NOW.isoformat())
    assert code == 4 and _error(out) == CHAIN_NEGATIVES[name], out


# -- TPM / GCE vTPM -----------------------------------------------------------------------------
TPM_ALL = samples("tpm", "gcp-vtpm", "azure-vtpm")


def _by_id(sid: str) -> dict[str, Any]:
    found = next((s for s in TPM_ALL if s["id"] == sid), None)
    if found is None:
        pytest.skip("shared evidence not present")
    return found


def test_gce_attestation_through_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    """``veritee verify attestation.pb --nonce HEX --certs DIR`` (issue 11's GCE line): valid
    with the EK/AK CA; without it the AK is unbound (policy); another nonce fails binding."""
    s = _by_id("gce-cos-85-no-nonce")
    data = str(file_of(s, "attestation_protobuf"))
    certs = ["--certs", str(file_of(s, "ek_ak_root")),
             "--certs", str(file_of(s, "ek_ak_intermediate"))]
    code, out = _cli(capsys, "verify", data, *certs, "--at", GCE_TIME)
    assert code == 0 and out["verdict"] == "verified" and out["scheme"] == "tpm", out
    code, out = _cli(capsys, "appraise", data, *certs, "--at", GCE_TIME)
    assert code == 0 and out["verdict"] == "accepted", out
    assert out["claims"]["ak_binding"] == "certificate"
    code, out = _cli(capsys, "appraise", data, "--at", GCE_TIME)
    assert code == 6 and "tpm.ak.unbound" in out["error"]["message"]
    code, out = _cli(capsys, "verify", data, *certs, "--at", GCE_TIME, "--nonce", "00" * 32)
    assert code == 4 and _error(out) == "tpm.binding.mismatch"


def test_gce_windows_dump_through_the_cli(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """SHA-1 only: refused by default (tpm.hash.weak), valid with allow_sha1 and the AK
    pinned (the dump has no AK certificate)."""
    s = _by_id("gce-windows-shielded-vm-quote-eventlog")
    path = file_of(s, "dump_json")
    ak = load_go_attestation_dump(path.read_bytes()).ak
    pinned = _policy_file(tmp_path, "tpm", TpmPolicy(ak_pins=frozenset({ak_pin(ak)})))
    code, out = _cli(capsys, "appraise", str(path), "--policy", pinned)
    assert code == 6 and out["error"]["message"].endswith("tpm.hash.weak")
    allowed = _policy_file(tmp_path, "tpm",
                           TpmPolicy(ak_pins=frozenset({ak_pin(ak)}), allow_sha1=True))
    code, out = _cli(capsys, "appraise", str(path), "--policy", allowed)
    assert code == 0 and out["verdict"] == "accepted", out
    assert out["claims"]["pcrs"]["sha1"]["0"] == s["known_fields"]["pcrs"]["sha1"]["0"]


def test_trustee_tpm_fixture_through_the_cli(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from veritee.collateral.tpm import load_trustee_tpm

    s = _by_id("trustee-tpm-verifier-fixture")
    path = file_of(s, "evidence_json")
    ak = load_trustee_tpm(path.read_bytes()).ak
    nonce = s["known_fields"]["extraData"]
    policy = _policy_file(tmp_path, "tpm", TpmPolicy(ak_pins=frozenset({ak_pin(ak)})))
    code, out = _cli(capsys, "appraise", str(path), "--policy", policy, "--nonce", nonce)
    assert code == 0 and out["verdict"] == "accepted", out
    assert out["claims"]["binding"] == nonce
    code, out = _cli(capsys, "appraise", str(path), "--nonce", nonce)
    assert code == 6 and "tpm.ak.unbound" in out["error"]["message"]


def test_keylime_checkquote_through_the_cli(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """keylime's loose tpm2-tools files put into the tpm container (byte for byte)."""
    from veritee.collateral.tpm import load_spki_public_key
    from veritee.formats.tpm import (
        TpmtSignature,
        encode_tpm_evidence_json,
        parse_tpm2tools_pcrs,
    )
    from veritee.trust.tpm import ak_spki

    s = _by_id("keylime-checkquote-rsa2048-sha256")
    ak = load_spki_public_key(file_of(s, "ak_public_key").read_bytes())
    ev = encode_tpm_evidence_json(
        ak_spki_der=ak_spki(ak), attest=file_of(s, "quote_tpms_attest").read_bytes(),
        signature=TpmtSignature.from_bytes(file_of(s, "signature_tpmt_signature").read_bytes()),
        pcrs=parse_tpm2tools_pcrs(file_of(s, "pcr_values").read_bytes()))
    (tmp_path / "evidence.json").write_bytes(ev)
    nonce = file_of(s, "nonce").read_bytes().strip()
    policy = _policy_file(tmp_path, "tpm", TpmPolicy(ak_pins=frozenset({ak_pin(ak)})))
    argv = [str(tmp_path / "evidence.json"), "--policy", policy]
    code, out = _cli(capsys, "appraise", *argv, "--nonce", nonce.hex())
    assert code == 0 and out["verdict"] == "accepted", out
    assert out["claims"]["pcrs"]["sha256"]["16"] == \
        s["known_fields"]["pcr_values"]["sha256"]["16"]
    code, out = _cli(capsys, "appraise", *argv, "--nonce", (b"B" + nonce[1:]).hex())
    assert code == 6 and "tpm.binding.mismatch" in out["error"]["message"]


# -- Azure vTPM (SNP and TDX) -------------------------------------------------------------------
def _amd_chain(vcek: bytes) -> str:
    """The ARK/ASK chain of the VCEK's product (``--certs``)."""
    product = parse_vek_extensions(load_certificates(vcek, source="vcek")[0]).product
    return str(EVIDENCE_DIR / "roots" / f"amd_{product.value.lower()}_cert_chain_vcek.pem")


def _azure_snp() -> list[tuple[Path, str]]:
    """Every Trustee az-snp-vtpm evidence JSON of both manifests, with its time."""
    out = [(file_of(s, "evidence_json"), AZURE_SNP_TIME)
           for s in samples("azure-vtpm") if "evidence_json" in s["files"]]
    if evidence_available():
        data = json.loads((EVIDENCE_DIR / "MANIFEST.json").read_text())
        out += [(EVIDENCE_DIR / s["dir"] / s["files"]["evidence_json"],
                 sample_time(s).isoformat()) for s in data["samples"]
                if s["dir"].startswith("azure-snp/") and "evidence_json" in s["files"]]
    return out


@pytest.mark.parametrize(("path", "at"), _azure_snp(), ids=lambda v: str(v)[-48:])
def test_azure_snp_vtpm_evidence_through_the_cli(path: Path, at: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    ev = load_trustee_azure_vtpm(path.read_bytes())
    assert ev.vcek is not None
    nonce = TpmsAttest.from_bytes(ev.attest).extra_data
    argv = [str(path), "--certs", _amd_chain(ev.vcek), "--at", at]
    code, out = _cli(capsys, "verify", *argv, "--nonce", nonce.hex())
    assert code == 0 and out["scheme"] == "az-snp-vtpm", out
    code, out = _cli(capsys, "appraise", *argv, "--nonce", nonce.hex())
    assert code == 0 and out["verdict"] == "accepted", out
    assert out["claims"]["ak_binding"] == "azure-hcl" and out["claims"]["debug"] is False
    code, out = _cli(capsys, "verify", *argv, "--nonce", nonce[::-1].hex())
    assert code == 4 and _error(out) == "az-snp-vtpm.binding.mismatch"


def _tdx_time() -> datetime:
    data = json.loads((EVIDENCE_DIR / "MANIFEST.json").read_text())
    sample = next(s for s in data["samples"] if s["dir"] == "azure-tdx/v4-trustee")
    return sample_time(sample)


@pytest.mark.parametrize("role", ["evidence_json_v0", "evidence_json_v1"])
def test_azure_tdx_vtpm_evidence_through_the_cli(role: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    s = _by_id("azure-tdx-vtpm")
    argv = [str(file_of(s, role)), "--at", _tdx_time().isoformat()]
    code, out = _cli(capsys, "appraise", *argv, "--nonce", b"challenge".hex())
    assert out["scheme"] == "az-tdx-vtpm", out
    assert code == 0 and out["verdict"] == "accepted", out
    assert out["claims"]["ak_binding"] == "azure-hcl"
    code, out = _cli(capsys, "verify", *argv, "--nonce", b"challengf".hex())
    assert code == 4 and _error(out) == "az-tdx-vtpm.binding.mismatch"


def test_keylime_tpm2tools_files_through_the_cli(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The TPM2B_PUBLIC AK travels in the container, so its attributes are checked."""
    from veritee.formats.tpm import (
        TpmtSignature,
        encode_tpm_evidence_json,
        parse_tpm2b_public,
        parse_tpm2tools_pcrs,
    )
    from veritee.trust.tpm import ak_spki

    s = _by_id("keylime-tpm2tools-quote-files")
    ak = parse_tpm2b_public(file_of(s, "ak_tpm2b_public").read_bytes())
    ev = encode_tpm_evidence_json(
        ak_spki_der=ak_spki(ak), attest=file_of(s, "quote_tpms_attest").read_bytes(),
        signature=TpmtSignature.from_bytes(file_of(s, "signature_tpmt_signature").read_bytes()),
        pcrs=parse_tpm2tools_pcrs(file_of(s, "pcr_values").read_bytes()), ak_public=ak)
    (tmp_path / "evidence.json").write_bytes(ev)
    policy = _policy_file(tmp_path, "tpm", TpmPolicy(ak_pins=frozenset({ak_pin(ak)})))
    code, out = _cli(capsys, "appraise", str(tmp_path / "evidence.json"), "--policy", policy,
                     "--nonce", s["known_fields"]["extraData_hex"])
    assert code == 0 and out["verdict"] == "accepted", out
    assert out["claims"]["ak_name"] == s["known_fields"]["ak_name"]
    assert out["claims"]["ak_attributes"] == "0x00050072"


def test_parsec_platform_attestation_token_through_the_cli(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Veraison's Parsec PAT (a TPM2_Quote with no PCR values) in the tpm container."""
    import base64

    import cbor2

    from veritee.collateral.tpm import load_spki_public_key
    from veritee.trust.tpm import ak_spki

    s = _by_id("veraison-parsec-tpm-certify-quote")
    pat = cbor2.loads(file_of(s, "evidence_cbor").read_bytes())["pat"]
    ak = load_spki_public_key(file_of(s, "attestation_key_pem").read_bytes())
    (tmp_path / "evidence.json").write_text(json.dumps({
        "ak_public": base64.b64encode(ak_spki(ak)).decode(),
        "tpm_quote": {"message": base64.b64encode(pat["attestInfo"]).decode(),
                      "signature": base64.b64encode(pat["sig"]).decode(), "pcrs": {}}}))
    policy = _policy_file(tmp_path, "tpm", TpmPolicy(ak_pins=frozenset({ak_pin(ak)})))
    argv = [str(tmp_path / "evidence.json"), "--policy", policy]
    code, out = _cli(capsys, "appraise", *argv, "--nonce", "deadbeefdeadbeef")
    assert code == 0 and out["claims"]["pcrs"] == {}, out
    skipped = [c for c in out["checks"] if c["code"] == "tpm.quote.pcr_digest"]
    assert [c["outcome"] for c in skipped] == ["skip"]
    code, out = _cli(capsys, "verify", *argv[:1], "--nonce", "deadbeefdeadbeee")
    assert code == 4 and _error(out) == "tpm.binding.mismatch"


def test_azure_unit_hcl_and_quote_through_the_cli(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Trustee's unit-test HCL report and quote in one container: valid with 'challenge'; a
    flipped signature byte is a verification failure (exit 4)."""
    import base64

    s = _by_id("azure-snp-vtpm-unit-hcl-and-quote")
    quote = json.loads(file_of(s, "tpm_quote_json").read_text())
    hcl = file_of(s, "hcl_report").read_bytes()
    vcek = file_of(s, "vcek_pem").read_bytes()

    def container(q: dict[str, Any]) -> str:
        path = tmp_path / "evidence.json"
        path.write_text(json.dumps({
            "version": 1, "tpm_quote": q, "vcek": vcek.decode(),
            "hcl_report": base64.urlsafe_b64encode(hcl).decode().rstrip("=")}))
        return str(path)

    argv = ["--certs", _amd_chain(vcek), "--at", AZURE_SNP_TIME, "--nonce", b"challenge".hex()]
    code, out = _cli(capsys, "appraise", container(quote), *argv)
    assert code == 0 and out["verdict"] == "accepted", out
    sig = bytearray.fromhex(quote["signature"])
    sig[0] ^= 1
    code, out = _cli(capsys, "verify", container({**quote, "signature": sig.hex()}), *argv)
    assert code == 4 and _error(out) == "tpm.quote.signature"


def test_every_tpm_family_sample_with_evidence_is_driven() -> None:
    """Each TPM / GCE / Azure vTPM sample with evidence has a CLI test above (the EK
    certificate-only samples and the GCE certificates are not evidence)."""
    if not TPM_ALL:
        pytest.skip("shared evidence not present")
    driven = {"keylime-checkquote-rsa2048-sha256", "keylime-tpm2tools-quote-files",
              "trustee-tpm-verifier-fixture", "veraison-parsec-tpm-certify-quote",
              "gce-cos-85-no-nonce", "gce-windows-shielded-vm-quote-eventlog",
              "azure-snp-vtpm-unit-hcl-and-quote", "azure-tdx-vtpm",
              *(s["id"] for s in samples("azure-vtpm") if "evidence_json" in s["files"])}
    not_evidence = {"infineon-slb9670-ek-rsa", "infineon-slb9670-ek-ecc", "gce-vtpm-ek-ak-certs"}
    assert {s["id"] for s in TPM_ALL} <= driven | not_evidence


def _azure_hcl_reports() -> list[dict[str, Any]]:
    return [s for s in samples("azure-vtpm") if "hcl_report" in s["files"] and "snp" in s["id"]]


@pytest.mark.parametrize("s", _azure_hcl_reports(), ids=lambda s: s["id"])
def test_azure_hcl_report_alone_through_the_cli(s: dict[str, Any],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The HCL-wrapped SEV-SNP report of each Azure vTPM sample (what
    test_samples_snp_intel verifies through attest): recognised as sevsnp, verified with its
    VCEK a month after the VCEK's notBefore (MANIFEST-2 records no time)."""
    from datetime import timedelta

    vcek_role = "vcek_pem" if "vcek_pem" in s["files"] else "vcek"
    vcek = file_of(s, vcek_role)
    data = vcek.read_bytes()
    at = load_certificates(data, source="vcek")[0].not_valid_before_utc + timedelta(days=30)
    code, out = _cli(capsys, "verify", str(file_of(s, "hcl_report")), "--certs", str(vcek),
                     "--certs", _amd_chain(data), "--at", at.isoformat())
    assert code == 0 and out["verdict"] == "verified" and out["scheme"] == "sevsnp", out
    assert "azure.hcl.report_data_binding" in {c["code"] for c in out["checks"]}


def test_azure_td_quote_alone_through_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    """The Azure TDX vTPM's TD quote: PCK chain and quote signature verified a month after
    the PCK certificate's notBefore; no TCB Info ships, so no TCB status."""
    from datetime import timedelta

    from cryptography import x509

    from veritee.formats.intel import Quote

    s = _by_id("azure-tdx-vtpm")
    path = file_of(s, "td_quote")
    quote = Quote.from_bytes(path.read_bytes(), allow_nonzero_trailer=True)
    chain = quote.signature_data.qe.certification_data.pck_chain_bytes
    assert chain is not None
    at = x509.load_pem_x509_certificates(chain)[0].not_valid_before_utc + timedelta(days=30)
    argv = [str(path), "--at", at.isoformat()]
    if any(quote.trailer):
        argv.append("--allow-nonzero-trailer")
    code, out = _cli(capsys, "verify", *argv)
    assert code == 0 and out["verdict"] == "verified" and out["scheme"] == "tdx", out
    assert out["tcb_status"] is None
