"""``veritee show/verify/appraise`` through the scheme registry (issue 11), run as commands.

Fakes (``veritee.testing``) sign for real, so these run without ../shared; the tests that use a
real sample say so and skip without it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from veritee.cli import main
from veritee.testing.amd import DEFAULT_NOW, FakeAmd, FakeAmdKeys
from veritee.testing.intel import FakeIntel

from _evidence import EVIDENCE_DIR, evidence_available

needs_evidence = pytest.mark.skipif(not evidence_available(), reason="no shared evidence")
SHAPE = {"verdict", "scheme", "format", "checks", "claims", "findings", "tcb_status",
         "advisory_ids", "tcb_date", "revocation"}


@pytest.fixture(scope="module")
def intel() -> FakeIntel:
    return FakeIntel.generate()


@pytest.fixture(scope="module")
def td(intel: FakeIntel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a TD quote (REPORTDATA 0x11 * 32, zero-padded), its collateral files
    and the fake root."""
    d = tmp_path_factory.mktemp("td")
    (d / "quote.dat").write_bytes(intel.td_quote(report_data=b"\x11" * 32 + bytes(32)))
    (d / "col").mkdir()
    intel.vendor.write_collateral(d / "col", "TDX", intel.now)
    return d


@pytest.fixture(scope="module")
def amd() -> FakeAmd:
    return FakeAmd(keys=FakeAmdKeys.generate(key_size=2048))


@pytest.fixture(scope="module")
def snp(amd: FakeAmd, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("snp")
    (d / "report.bin").write_bytes(amd.make_report().to_bytes())
    (d / "certs").mkdir()
    for name, cert in (("ark.der", amd.ark), ("ask.der", amd.ask), ("vcek.der", amd.vek)):
        (d / "certs" / name).write_bytes(cert.der)
    (d / "crl.der").write_bytes(amd.crl().public_bytes(Encoding.DER))
    return d


def _td_args(td: Path, intel: FakeIntel, *extra: str) -> list[str]:
    return [str(td / "quote.dat"), "--certs", str(td / "col"), "--trust-root",
            str(td / "col" / "root_ca.pem"), "--at", intel.now.isoformat(), *extra]


def _snp_args(snp: Path, *extra: str) -> list[str]:
    return [str(snp / "report.bin"), "--certs", str(snp / "certs"), "--trust-root",
            str(snp / "certs" / "ark.der"), "--at", DEFAULT_NOW.isoformat(), *extra]


def _json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


# -- recognition, encodings, --scheme -----------------------------------------------------------


def test_a_base64_td_quote_file_verifies(td: Path, intel: FakeIntel, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    b64 = tmp_path / "quote.b64"
    b64.write_bytes(base64.encodebytes((td / "quote.dat").read_bytes()))  # wrapped lines
    args = _td_args(td, intel)
    args[0] = str(b64)
    assert main(["verify", *args, "--format", "json"]) == 0
    doc = _json(capsys)
    assert doc["scheme"] == "tdx" and doc["verdict"] == "verified"
    hexfile = tmp_path / "quote.hex"
    hexfile.write_text((td / "quote.dat").read_bytes().hex())
    args[0] = str(hexfile)
    assert main(["verify", *args]) == 0


def test_scheme_option_names_the_scheme(td: Path, intel: FakeIntel,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", *_td_args(td, intel, "--scheme", "tdx")]) == 0
    capsys.readouterr()
    assert main(["verify", *_td_args(td, intel, "--scheme", "sgx")]) == 3  # a TD quote
    assert "tee_type" in capsys.readouterr().err
    assert main(["verify", *_td_args(td, intel, "--scheme", "nope")]) == 3
    err = capsys.readouterr().err
    assert all(name in err for name in ("sevsnp", "tdx", "sgx"))


def test_unknown_bytes_are_bad_input_naming_the_schemes(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"\x05\x00\x00\x00" + bytes(60))
    assert main(["show", str(bad)]) == 3
    err = capsys.readouterr().err
    assert all(name in err for name in ("sevsnp", "tdx", "sgx"))


# -- show ---------------------------------------------------------------------------------------


def test_show_every_registered_scheme(td: Path, snp: Path, intel: FakeIntel, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(td / "quote.dat"), "--format", "json"]) == 0
    doc = _json(capsys)
    assert doc["scheme"] == "tdx" and doc["format"] == "intel-tdx-quote"
    assert doc["quote"]["header"]["version"] == 4
    (tmp_path / "sgx.dat").write_bytes(intel.sgx_quote())
    assert main(["show", str(tmp_path / "sgx.dat"), "--format", "json"]) == 0
    assert _json(capsys)["quote"]["header"]["version"] == 3
    assert main(["show", str(snp / "report.bin"), "--format", "json"]) == 0
    cpuid = _json(capsys)["report"]["cpuid"]
    # Numbers are numbers (CPUID fields were hex strings before issue 11).
    assert isinstance(cpuid["family"], int) and cpuid["family"] == 0x19
    assert main(["show", str(snp / "report.bin")]) == 0
    assert "family: 25" in capsys.readouterr().out


@needs_evidence
def test_show_nvidia_reports_that_verify_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    d = EVIDENCE_DIR / "nvidia" / "h100-nvtrust-sample-550.90.07"
    assert main(["show", str(d / "hopperAttestationReport.txt"), "--format", "json"]) == 0
    doc = _json(capsys)
    assert doc["format"] == "nvidia-spdm"
    assert doc["evidence"]["request"]["nonce"].startswith("931d8dd0")
    assert main(["verify", str(d / "hopperAttestationReport.txt"), "--certs",
                 str(d / "hopperCertChain.txt"), "--at", "2026-06-01T00:00:00Z",
                 "--format", "json"]) == 0
    doc = _json(capsys)
    assert set(doc) >= SHAPE and doc["verdict"] == "verified"


# -- collateral and anchors ---------------------------------------------------------------------


def test_intel_collateral_over_several_paths(td: Path, intel: FakeIntel, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted((td / "col").iterdir())
    args = [str(td / "quote.dat"), "--trust-root", str(td / "col" / "root_ca.pem"), "--at",
            intel.now.isoformat()]
    for f in files:
        args += ["--certs", str(f)]
    assert main(["appraise", *args]) == 0
    assert "verdict: ACCEPTED" in capsys.readouterr().out


def test_a_dcap_qvl_collateral_json_file(intel: FakeIntel, td: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    col = intel.collateral("TDX")
    assert col.tcb_info and col.qe_identity and col.tcb_info_signature
    assert col.qe_identity_signature and col.pck_crl is not None and col.root_ca_crl is not None
    chain = "".join(c.public_bytes(Encoding.PEM).decode() for c in col.tcb_info_issuer_chain)
    (tmp_path / "collateral.json").write_text(json.dumps({
        "tcb_info": col.tcb_info.decode(), "tcb_info_signature": col.tcb_info_signature.hex(),
        "tcb_info_issuer_chain": chain, "qe_identity": col.qe_identity.decode(),
        "qe_identity_signature": col.qe_identity_signature.hex(),
        "qe_identity_issuer_chain": chain,
        "pck_crl": col.pck_crl.public_bytes(Encoding.DER).hex(),
        "root_ca_crl": col.root_ca_crl.public_bytes(Encoding.DER).hex()}))
    assert main(["appraise", str(td / "quote.dat"), "--certs", str(tmp_path / "collateral.json"),
                 "--trust-root", str(td / "col" / "root_ca.pem"), "--at",
                 intel.now.isoformat()]) == 0


def test_trust_root_goes_to_the_recognised_vendor(td: Path, snp: Path, intel: FakeIntel,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", *_snp_args(snp)]) == 0
    capsys.readouterr()
    no_root = _snp_args(snp)
    del no_root[3:5]
    assert main(["verify", *no_root]) == 4  # AMD's pinned ARKs refuse the fake chain
    assert "ark_untrusted" in capsys.readouterr().err
    # The Intel fake root given for an SNP report is not an ARK: refused, not ignored.
    wrong = _snp_args(snp)
    wrong[4] = str(td / "col" / "root_ca.pem")
    assert main(["verify", *wrong]) != 0


def test_a_malformed_collateral_file_is_named(snp: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert main(["verify", *_snp_args(snp, "--certs", str(bad))]) == 3
    assert "bad.pem" in capsys.readouterr().err


def test_pretty_printed_tcb_info_says_why_it_fails(td: Path, intel: FakeIntel, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    col = tmp_path / "col"
    col.mkdir()
    for f in (td / "col").iterdir():
        data = f.read_bytes()
        if f.name == "tcb_info.json":
            data = json.dumps(json.loads(data), indent=2).encode()
        (col / f.name).write_bytes(data)
    args = _td_args(td, intel)
    args[2] = str(col)
    assert main(["verify", *args]) == 4
    assert "pretty-printed" in capsys.readouterr().err


# -- verify output: one shape, revocation, TCB --------------------------------------------------


def test_one_json_shape_for_snp_and_tdx(td: Path, snp: Path, intel: FakeIntel,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", *_td_args(td, intel, "--format", "json")]) == 0
    tdx = _json(capsys)
    assert main(["verify", *_snp_args(snp, "--format", "json")]) == 0
    amd = _json(capsys)
    assert set(tdx) == set(amd) == SHAPE
    assert tdx["claims"] == {} and tdx["findings"] == []  # verify-only
    assert tdx["tcb_status"] == "UpToDate" and tdx["tcb_date"].startswith("2025-05-14")
    assert tdx["revocation"]["checked"] is True
    assert amd["revocation"] == {"checked": False, "detail": amd["revocation"]["detail"]}
    assert amd["revocation"]["detail"].startswith("not checked")
    assert main(["appraise", *_td_args(td, intel, "--format", "json")]) == 0
    appraised = _json(capsys)
    assert set(appraised) == SHAPE and appraised["verdict"] == "accepted"
    assert appraised["claims"]["tee"] == "tdx" and appraised["findings"]


def test_revocation_is_printed_for_every_scheme(td: Path, snp: Path, intel: FakeIntel,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", *_snp_args(snp, "--crl", str(snp / "crl.der"))]) == 0
    assert "revocation: checked against the ARK's CRL" in capsys.readouterr().out
    assert main(["verify", *_snp_args(snp)]) == 0
    assert "revocation: not checked" in capsys.readouterr().out
    assert main(["verify", *_td_args(td, intel)]) == 0
    out = capsys.readouterr().out
    assert "revocation: checked against Intel's root CA CRL and PCK CRL" in out
    assert "TCB status: UpToDate (TCB date 2025-05-14" in out and "advisory IDs: none" in out


def test_intel_verify_shows_advisories_and_the_tcb_date(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    old = FakeIntel.generate(release=2)  # an out-of-date level listing advisories
    (tmp_path / "q").write_bytes(old.td_quote())
    (tmp_path / "col").mkdir()
    old.vendor.write_collateral(tmp_path / "col", "TDX", old.now)
    args = [str(tmp_path / "q"), "--certs", str(tmp_path / "col"), "--trust-root",
            str(tmp_path / "col" / "root_ca.pem"), "--at", old.now.isoformat()]
    assert main(["verify", *args, "--format", "json"]) == 0
    doc = _json(capsys)
    assert doc["tcb_status"] == "OutOfDate" and doc["tcb_date"]
    assert doc["advisory_ids"] and all(a.startswith("EMULATED-SA-") for a in doc["advisory_ids"])
    assert main(["verify", *args]) == 0
    assert "advisory IDs: EMULATED-SA-" in capsys.readouterr().out


def test_require_crl_fails_without_crls(snp: Path, td: Path, intel: FakeIntel, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", *_snp_args(snp, "--require-crl")]) == 5  # collateral unavailable
    col = tmp_path / "col"
    col.mkdir()
    for f in (td / "col").iterdir():
        if not f.name.endswith(".crl"):
            (col / f.name).write_bytes(f.read_bytes())
    args = _td_args(td, intel, "--require-crl")
    args[2] = str(col)
    assert main(["verify", *args]) == 5
    assert "missing: root_ca_crl, pck_crl" in capsys.readouterr().err
    assert main(["verify", *_td_args(td, intel, "--require-crl")]) == 0
    assert main(["verify", *_snp_args(snp, "--require-crl", "--crl", str(snp / "crl.der"))]) == 0


# -- --nonce, --policy, --allow-nonzero-trailer -------------------------------------------------


def test_nonce_is_the_raw_bytes_the_evidence_must_carry(td: Path, intel: FakeIntel,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    assert main(["verify", *_td_args(td, intel, "--nonce", "11" * 32)]) == 0
    assert "[ok  ] tdx.binding.mismatch" in capsys.readouterr().out
    assert main(["verify", *_td_args(td, intel, "--nonce", "12" * 32, "--format",
                                     "json")]) == 4
    doc = _json(capsys)
    assert doc["error"]["code"] == "tdx.binding.mismatch" and doc["scheme"] == "tdx"
    assert main(["appraise", *_td_args(td, intel, "--nonce", "12" * 32)]) == 6
    assert "tdx.binding.mismatch" in capsys.readouterr().out
    assert main(["verify", *_td_args(td, intel, "--nonce", "11" * 65)]) == 3
    assert main(["verify", *_td_args(td, intel, "--nonce", "zz")]) == 3


def test_policy_file_is_read_by_the_recognised_scheme(td: Path, snp: Path, intel: FakeIntel,
                                                      tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    policy = tmp_path / "tdx.json"
    policy.write_text(json.dumps({"mrtd": ["00" * 48], "policy_id": "mine"}))
    assert main(["appraise", *_td_args(td, intel, "--policy", str(policy))]) == 0
    assert "under policy 'mine'" in capsys.readouterr().out
    policy.write_text(json.dumps({"mrtd": ["01" * 48]}))
    assert main(["appraise", *_td_args(td, intel, "--policy", str(policy), "--format",
                                       "json")]) == 6
    doc = _json(capsys)
    assert doc["verdict"] == "rejected" and "tdx.mrtd.mismatch" in doc["error"]["message"]
    toml = tmp_path / "p.toml"
    toml.write_text("allowed_tcb_statuses = ['UpToDat']\n")
    assert main(["appraise", *_td_args(td, intel, "--policy", str(toml))]) == 3
    assert "allowed_tcb_statuses[0]" in capsys.readouterr().err
    # The same file for an SNP report is read as an SEV-SNP policy.
    snp_policy = tmp_path / "snp.toml"
    snp_policy.write_text("allow_unchecked_revocation = true\nmin_tcb = {}\n"
                          "require_committed_equals_current = false\n")
    code = main(["appraise", *_snp_args(snp, "--policy", str(snp_policy))])
    assert code in (0, 6), capsys.readouterr()
    capsys.readouterr()
    snp_policy.write_text('mrtd = ["' + "00" * 48 + '"]\n')
    assert main(["appraise", *_snp_args(snp, "--policy", str(snp_policy))]) == 3
    assert "mrtd: unknown key" in capsys.readouterr().err


def test_nonzero_trailer_is_reachable_from_the_cli(td: Path, intel: FakeIntel, tmp_path: Path,
                                                   snp: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "trailer.dat").write_bytes((td / "quote.dat").read_bytes() + b"\x01\x02")
    args = _td_args(td, intel)
    args[0] = str(tmp_path / "trailer.dat")
    assert main(["verify", *args]) == 3
    assert "trailer" in capsys.readouterr().err
    assert main(["verify", *args, "--allow-nonzero-trailer"]) == 0
    assert main(["show", str(tmp_path / "trailer.dat"), "--allow-nonzero-trailer"]) == 0
    capsys.readouterr()
    assert main(["verify", *_snp_args(snp, "--allow-nonzero-trailer")]) == 3
    assert "Intel quotes" in capsys.readouterr().err


# -- failures still print JSON ------------------------------------------------------------------


def test_failures_print_json_with_the_error(td: Path, snp: Path, intel: FakeIntel,
                                            tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    no_root = _td_args(td, intel, "--format", "json")
    del no_root[3:5]
    assert main(["verify", *no_root]) == 4
    doc = _json(capsys)
    assert set(doc) == SHAPE | {"error"} and doc["verdict"] == "error"
    assert doc["error"]["exit_code"] == 4 and doc["error"]["code"] == "intel.chain.root_untrusted"
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x02" + bytes(100))
    assert main(["verify", str(bad), "--format", "json"]) == 3
    assert _json(capsys)["error"]["exit_code"] == 3
    assert main(["appraise", *_snp_args(snp, "--format", "json")]) == 6  # no CRL: refused
    doc = _json(capsys)
    assert doc["verdict"] == "rejected" and doc["error"]["exit_code"] == 6
    assert "sevsnp.revocation.unchecked" in doc["error"]["message"]
    assert isinstance(doc["claims"]["cpuid"]["family"], int)


# -- --fetch and --product ----------------------------------------------------------------------


def test_fetch_for_a_report_without_cpuid_asks_for_the_product(
        amd: FakeAmd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from veritee.collateral.kds import KdsClient

    asked: list[object] = []

    def collateral_for(self: KdsClient, report: object, *, product: object = None,
                       with_crl: bool = False) -> object:
        asked.append(product)
        return amd.certificates()

    monkeypatch.setattr(KdsClient, "collateral_for", collateral_for)
    report = tmp_path / "v2.bin"
    report.write_bytes(amd.make_report(version=2, cpuid=None).to_bytes())
    (tmp_path / "ark.der").write_bytes(amd.ark.der)
    args = ["verify", str(report), "--at", DEFAULT_NOW.isoformat(), "--trust-root",
            str(tmp_path / "ark.der"), "--fetch", "--kds-cache", str(tmp_path / "cache")]
    assert main(args) == 5
    assert "--product" in capsys.readouterr().err and asked == []
    assert main([*args, "--product", "Milan"]) == 0
    from veritee.formats.sevsnp import Product

    assert asked == [Product.MILAN]
    assert main(["verify", str(report), "--product", "Milan"]) == 3  # --product needs --fetch


@needs_evidence
def test_token_evidence_prints_the_same_shape(capsys: pytest.CaptureFixture[str]) -> None:
    """Nitro (as PSA/CCA/NVIDIA) goes through its registered scheme, in the one JSON shape,
    with a revocation line."""
    doc = EVIDENCE_DIR / "nitro" / "brave-nitro-utils-example-doc" / "attestation_doc.cbor"
    at = ["--at", "2022-07-26T18:39:12Z"]
    assert main(["verify", str(doc), *at, "--format", "json"]) == 0
    verified = _json(capsys)
    assert set(verified) == SHAPE and verified["scheme"] == "nitro"
    assert verified["format"] == "aws-nitro-document"
    assert main(["appraise", str(doc), *at, "--format", "json"]) == 6  # a debug-mode enclave
    rejected = _json(capsys)
    assert set(rejected) == SHAPE | {"error"} and rejected["verdict"] == "rejected"
    assert rejected["format"] == verified["format"]
    assert main(["verify", str(doc), *at]) == 0
    assert "revocation: not checked" in capsys.readouterr().out


@needs_evidence
def test_nonce_matches_a_shorter_binding_exactly(capsys: pytest.CaptureFixture[str]) -> None:
    """A vTPM's qualifying data is as long as the verifier's nonce ("challenge", 9 bytes):
    --nonce is compared with it as given, not padded to 64 bytes."""
    d = EVIDENCE_DIR / "azure-vtpm" / "azure-snp-vtpm-evidence-v0"
    args = ["verify", str(d / "evidence-v0.json"), "--certs", str(d / "vcek.der"), "--certs",
            str(EVIDENCE_DIR / "roots" / "amd_milan_cert_chain_vcek.pem")]
    assert main([*args, "--nonce", b"challenge".hex()]) == 0
    assert main([*args, "--nonce", b"challengf".hex()]) == 4
    assert "carries 6368616c6c656e6765" in capsys.readouterr().err


# -- several devices in one file (NVIDIA nvat evidence JSON) ----------------------------------
@pytest.fixture(scope="module")
def gpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(two-device nvat JSON, the same with device 1's signature made by another key, root)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from veritee.testing.nvidia import FakeNvidia

    gpu = FakeNvidia()
    d = tmp_path_factory.mktemp("gpus")
    good = [gpu.report(nonce=b"\x01" * 32), gpu.report(nonce=b"\x01" * 32)]
    (d / "two.json").write_bytes(gpu.nvat(good))
    forged = gpu.report(nonce=b"\x01" * 32, key=ec.generate_private_key(ec.SECP384R1()))
    (d / "forged.json").write_bytes(gpu.nvat([good[0], forged]))
    (d / "root.pem").write_bytes(gpu.root.public_bytes(Encoding.PEM))
    return d / "two.json", d / "forged.json", d / "root.pem"


def _gpu_args(path: Path, root: Path) -> list[str]:
    from veritee.testing.nvidia import DEFAULT_NOW as GPU_NOW

    return [str(path), "--trust-root", str(root), "--at", GPU_NOW.isoformat()]


@pytest.mark.parametrize("command", ["verify", "appraise"])
def test_every_device_of_an_nvat_json(command: str, gpus: tuple[Path, Path, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    two, _, root = gpus
    assert main([command, *_gpu_args(two, root), "--format", "json"]) == 0
    doc = _json(capsys)
    assert set(doc) == SHAPE | {"parts"} and doc["scheme"] == "nvidia"
    assert len(doc["parts"]) == 2
    assert all(set(p) >= SHAPE and p["verdict"] == doc["verdict"] for p in doc["parts"])
    assert doc["verdict"] == ("verified" if command == "verify" else "accepted")
    # every device's checks, in order, at the top level too
    assert len(doc["checks"]) == sum(len(p["checks"]) for p in doc["parts"])
    assert main([command, *_gpu_args(two, root)]) == 0
    out = capsys.readouterr().out
    assert "device 0 of 2:" in out and "device 1 of 2:" in out
    assert "(worst of 2 devices)" in out


@pytest.mark.parametrize("command", ["verify", "appraise"])
def test_one_forged_device_fails_the_whole_file(command: str, gpus: tuple[Path, Path, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Device 0 is genuine, device 1's report is signed by a key not in its chain: the file
    fails with the worst exit code (4), and the JSON says which device failed."""
    _, forged, root = gpus
    assert main([command, *_gpu_args(forged, root), "--format", "json"]) == 4
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["verdict"] == "error" and doc["error"]["exit_code"] == 4
    assert doc["error"]["message"].startswith("device 1: ")
    good, bad = doc["parts"]
    assert good["verdict"] in {"verified", "accepted"} and "error" not in good
    assert bad["verdict"] == "error" and bad["error"]["exit_code"] == 4
    assert "veritee: device 1: " in captured.err


def test_several_devices_with_a_wrong_nonce(gpus: tuple[Path, Path, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """--nonce is every device's challenge: a wrong one fails every device."""
    two, _, root = gpus
    assert main(["verify", *_gpu_args(two, root), "--nonce", "01" * 32]) == 0
    capsys.readouterr()
    assert main(["verify", *_gpu_args(two, root), "--nonce", "02" * 32,
                 "--format", "json"]) == 4
    doc = _json(capsys)
    assert [p["verdict"] for p in doc["parts"]] == ["error", "error"]


def test_show_every_device(gpus: tuple[Path, Path, Path],
                           capsys: pytest.CaptureFixture[str]) -> None:
    two, _, _ = gpus
    assert main(["show", str(two), "--format", "json"]) == 0
    doc = _json(capsys)
    assert doc["scheme"] == "nvidia" and len(doc["parts"]) == 2
    assert all(p["evidence"]["request"]["nonce"] == "01" * 32 for p in doc["parts"])


@needs_evidence
def test_real_devices_in_one_nvat_json(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The shared evidence holds no multi-device nvat JSON; two real single-device ones
    (a Blackwell and a Hopper, each valid per its manifest entry) are joined into one list
    at test time (nothing copied into the repository)."""
    d = EVIDENCE_DIR / "nvidia"
    files = [d / "b200-veraison-evidence-json" / "blackwell-evidence.json",
             d / "h100-sdk-evidence-json-570.86.10-cert-hold" / "hopper_evidence_cert_hold.json"]
    if not all(f.is_file() for f in files):
        pytest.skip("nvat samples absent")
    joined = tmp_path / "two.json"
    joined.write_text(json.dumps([e for f in files for e in json.loads(f.read_text())]))
    at = ["--at", "2026-06-01T00:00:00Z", "--format", "json"]
    assert main(["appraise", str(joined), *at]) == 0
    doc = _json(capsys)
    assert doc["verdict"] == "accepted" and len(doc["parts"]) == 2
    fwids = [c["got"] for p in doc["parts"] for c in p["checks"] if c["code"] == "nvidia.fwid"]
    assert len(set(fwids)) == 2  # two distinct devices


def test_one_device_nvat_json_stays_whole(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A one-device nvat JSON is not split: the scheme still checks the JSON's nonce against
    the report's (a split part is the bare transcript, which has no JSON nonce)."""
    from veritee.testing.nvidia import FakeNvidia

    gpu = FakeNvidia()
    report = gpu.report(nonce=b"\x01" * 32)
    (tmp_path / "root.pem").write_bytes(gpu.root.public_bytes(Encoding.PEM))
    (tmp_path / "one.json").write_bytes(gpu.nvat([report]))
    (tmp_path / "lying.json").write_bytes(gpu.nvat([report], nonce=b"\x02" * 32))
    assert main(["verify", *_gpu_args(tmp_path / "one.json", tmp_path / "root.pem"),
                 "--format", "json"]) == 0
    doc = _json(capsys)
    assert "parts" not in doc and doc["format"] == "nvidia-nvat-evidence"
    assert main(["verify", *_gpu_args(tmp_path / "lying.json", tmp_path / "root.pem")]) == 4
