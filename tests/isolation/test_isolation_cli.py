"""``veritee isolation`` prints the matrix it computes by running the attacks.

The proof that nothing is hard-coded: break one hardware rule, or the careful guest's
bitmap check (monkeypatch it), and the printed cell changes.
"""

from __future__ import annotations

import json
import re

import pytest

import veritee.cli
from veritee.cli import main
from veritee.platform.emulated.isolation import (
    ATTACKS,
    GUESTS,
    MODES,
    Attack,
    CarefulGuest,
    Mode,
    NaiveGuest,
    Outcome,
    demo_lines,
    run_matrix,
)
from veritee.platform.emulated.isolation.epc import SgxRules
from veritee.platform.emulated.isolation.integrity import CounterTree
from veritee.platform.emulated.isolation.modes import SevRules
from veritee.platform.emulated.isolation.rmp import SnpRules

MODULE = "veritee.cli._isolation"


def test_command_is_registered() -> None:
    assert MODULE in veritee.cli._COMMAND_MODULES


def _cli(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, object]:
    assert main(["isolation", "--format", "json", "--pages", "16", *extra]) == 0
    doc: dict[str, object] = json.loads(capsys.readouterr().out)
    return doc


def _outcomes(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, dict[str, str]]:
    matrix = _cli(capsys, *extra)["matrix"]
    assert isinstance(matrix, dict)
    careful: dict[str, dict[str, str]] = matrix["outcomes"]["careful"]
    return careful


def test_cli_matrix_equals_the_computed_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    computed = run_matrix(pages=16)
    matrix = _cli(capsys)["matrix"]
    assert isinstance(matrix, dict)
    assert matrix["outcomes"] == {
        g: {a.value: {m.value: computed.outcome(a, m, g).name for m in MODES} for a in ATTACKS}
        for g in GUESTS}


def test_cli_json_has_every_cell_with_its_rule_and_source(
        capsys: pytest.CaptureFixture[str]) -> None:
    matrix = _cli(capsys)["matrix"]
    assert isinstance(matrix, dict)
    cells = matrix["cells"]
    assert len(cells) == len(ATTACKS) * len(MODES) * len(GUESTS)
    assert {(c["attack"], c["mode"], c["guest"]) for c in cells} == {
        (a.value, m.value, g) for a in ATTACKS for m in MODES for g in GUESTS}
    for cell in cells:
        assert cell["rule"] and cell["source"] and cell["trace"], cell
    remap = next(c for c in cells if (c["attack"], c["mode"], c["guest"])
                 == ("remap", "sev-snp", "careful"))
    assert "bitmap" in remap["rule"]


def test_cli_text_prints_both_guests_tcbs_and_not_modelled(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["isolation", "--pages", "16"]) == 0
    out = capsys.readouterr().out
    matrix = run_matrix(pages=16)
    for guest in GUESTS:
        for line in matrix.table(guest).splitlines():
            assert line in out
    assert "Isolation TCB" in out and "Attestation TCB" in out
    assert re.search(r"EPYC 7003 \(Zen 3\) +AES-128-XTS", out)
    assert re.search(r"EPYC 9004 \(Zen 4\) +AES-256-XTS", out)
    for name in ("CacheWarp", "BadRAM", "Heckler / WeSee", "SEV-Step and controlled channels",
                 "DMA / IOMMU", "SEV-ES register state", "2 MiB pages",
                 "TDX beyond private memory"):
        assert f"* {name}:" in out


def test_cli_ciphertext_hiding_changes_the_snp_read_cells(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert _outcomes(capsys)["ciphertext-compare"]["sev-snp"] == "CIPHERTEXT_PATTERN_LEAKED"
    hidden = _outcomes(capsys, "--ciphertext-hiding")
    assert hidden["ciphertext-compare"]["sev-snp"] == "BLOCKED"
    assert hidden["read"]["sev-snp"] == "BLOCKED"
    assert hidden["dram-ciphertext-compare"]["sev-snp"] == "CIPHERTEXT_PATTERN_LEAKED"
    assert hidden["ciphertext-compare"]["sev"] == "CIPHERTEXT_PATTERN_LEAKED"


def test_cli_refuses_ciphertext_hiding_before_zen5(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["isolation", "--ciphertext-hiding", "--generation", "milan"]) == 3
    assert "turin" in capsys.readouterr().err


def test_cli_cell_changes_when_the_rmp_write_check_is_removed(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert _outcomes(capsys)["write"]["sev-snp"] == Outcome.FAULT_TO_HYPERVISOR.name
    monkeypatch.setattr(SnpRules, "host_store", SevRules.host_store)  # no RMP write check
    broken = _outcomes(capsys)
    assert broken["write"]["sev-snp"] == Outcome.UNDETECTED_CORRUPTION.name
    assert broken["replay"]["sev-snp"] == Outcome.UNDETECTED_CORRUPTION.name
    assert broken["write"]["sev"] == Outcome.UNDETECTED_CORRUPTION.name


def test_cli_cell_changes_when_the_careful_guest_forgets_its_bitmap(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Detection is the guest's code: swap in the naive handler and the cell follows."""
    assert _outcomes(capsys)["remap"]["sev-snp"] == Outcome.DETECTED_BY_GUEST.name
    monkeypatch.setattr(CarefulGuest, "on_unaccepted", NaiveGuest.on_unaccepted)
    assert _outcomes(capsys)["remap"]["sev-snp"] == Outcome.UNDETECTED_CORRUPTION.name


def test_cli_cell_changes_without_the_integrity_tree(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert _outcomes(capsys)["dram-replay"]["sgx-client"] == Outcome.PLATFORM_LOCKED.name
    # An MEE that trusts whatever counter DRAM holds, and no data MAC check:
    monkeypatch.setattr(CounterTree, "_path", lambda self, leaf: [
        self._load(level, leaf // 8 ** (level + 1)) for level in range(self.depth)])
    monkeypatch.setattr(SgxRules, "_data_mac", lambda self, c, a, v: _AlwaysValid())
    assert (_outcomes(capsys)["dram-replay"]["sgx-client"]
            == Outcome.UNDETECTED_CORRUPTION.name)


class _AlwaysValid:
    def verify(self, _tag: bytes) -> None:
        return None

    def finalize(self) -> bytes:
        return bytes(32)


def test_cli_rejects_a_silly_page_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["isolation", "--pages", "1"]) == 3
    assert "--pages" in capsys.readouterr().err


def test_cli_json_has_both_tcb_tables_with_sources(capsys: pytest.CaptureFixture[str]) -> None:
    tcb = _cli(capsys)["tcb"]
    assert isinstance(tcb, dict)
    iso = {row["technology"]: row for row in tcb["isolation"]}
    att = {row["technology"]: row for row in tcb["attestation"]}
    assert set(iso) == set(att) == {"plain VM", "SEV", "SEV-SNP", "SGX client",
                                    "SGX scalable", "TDX"}
    assert iso["SGX client"]["inside_tcb"] == ["CPU", "application"]
    assert "vendor enclaves" in att["SGX client"]["inside_tcb"]
    assert iso["SEV-SNP"]["tcb"]["hypervisor"]["trust"] == "no"
    assert "Threat Model" in iso["SEV-SNP"]["tcb"]["hypervisor"]["source"] or \
        "Page Validation" in iso["SEV-SNP"]["tcb"]["hypervisor"]["source"]


def test_demo_lines_run_one_attack_on_sev_and_both_snp_guests() -> None:
    text = "\n".join(demo_lines())
    assert f"sev: {Outcome.UNDETECTED_CORRUPTION.name}" in text
    assert f"sev-snp (careful guest): {Outcome.DETECTED_BY_GUEST.name}" in text
    assert f"sev-snp (naive guest): {Outcome.UNDETECTED_CORRUPTION.name}" in text
    assert "#VC" in text
    assert (demo_lines(Attack.REPLAY, (Mode.SGX_CLIENT,))[1]
            == f"  sgx-client: {Outcome.FAULT_TO_HYPERVISOR.name}")
