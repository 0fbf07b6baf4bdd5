"""``veritee isolation`` prints the matrix it computes by running the attacks.

The proof that nothing is hard-coded: break one hardware rule (monkeypatch a mode) and the
printed cell changes.
"""

from __future__ import annotations

import json

import pytest

import veritee.cli
from veritee.cli import main
from veritee.platform.emulated.isolation import (
    ATTACKS,
    MODES,
    Attack,
    Mode,
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


def _cli_outcomes(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, str]]:
    assert main(["isolation", "--format", "json", "--pages", "16"]) == 0
    doc = json.loads(capsys.readouterr().out)
    outcomes: dict[str, dict[str, str]] = doc["matrix"]["outcomes"]
    return outcomes


def test_cli_matrix_equals_the_computed_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    computed = run_matrix(pages=16)
    assert _cli_outcomes(capsys) == {
        a.value: {m.value: computed.outcome(a, m).name for m in MODES} for a in ATTACKS}


def test_cli_text_prints_the_matrix_and_tcb_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["isolation", "--pages", "16"]) == 0
    out = capsys.readouterr().out
    text = run_matrix(pages=16).to_text()
    for line in text.splitlines()[:12]:
        assert line in out
    assert "Trusted computing base" in out
    assert "SGX        yes       no        -                 no          no       no        yes" \
        in out


def test_cli_cell_changes_when_the_rmp_write_check_is_removed(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli_outcomes(capsys)["write"]["sev-snp"] == Outcome.FAULT_TO_HYPERVISOR.name
    monkeypatch.setattr(SnpRules, "host_store", SevRules.host_store)  # no RMP write check
    broken = _cli_outcomes(capsys)
    assert broken["write"]["sev-snp"] == Outcome.UNDETECTED_CORRUPTION.name
    assert broken["replay"]["sev-snp"] == Outcome.UNDETECTED_CORRUPTION.name
    assert broken["write"]["sev"] == Outcome.UNDETECTED_CORRUPTION.name


def test_cli_cell_changes_without_the_integrity_tree(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli_outcomes(capsys)["dram-replay"]["sgx"] == Outcome.DETECTED_BY_GUEST.name
    # An MEE that trusts whatever counter DRAM holds, and no data MAC check:
    monkeypatch.setattr(CounterTree, "_path", lambda self, leaf: [
        self._load(level, leaf // 8 ** (level + 1)) for level in range(self.depth)])
    monkeypatch.setattr(SgxRules, "_data_mac", lambda self, c, a, v: _AlwaysValid())
    assert _cli_outcomes(capsys)["dram-replay"]["sgx"] == Outcome.UNDETECTED_CORRUPTION.name


class _AlwaysValid:
    def verify(self, _tag: bytes) -> None:
        return None

    def finalize(self) -> bytes:
        return bytes(32)


def test_cli_rejects_a_silly_page_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["isolation", "--pages", "1"]) == 3
    assert "--pages" in capsys.readouterr().err


def test_cli_json_has_the_tcb_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["isolation", "--format", "json", "--pages", "8"]) == 0
    tcb = {row["technology"]: row for row in json.loads(capsys.readouterr().out)["tcb"]}
    assert set(tcb) == {"plain VM", "SEV", "SEV-SNP", "SGX", "TDX"}
    assert "hypervisor" in tcb["plain VM"]["inside_tcb"]
    assert tcb["SGX"]["inside_tcb"] == ["hardware", "application"]
    assert tcb["SEV-SNP"]["tcb"]["hypervisor"] == "no"


def test_demo_lines_run_one_attack_on_sev_and_snp() -> None:
    lines = demo_lines()
    text = "\n".join(lines)
    assert f"sev: {Outcome.UNDETECTED_CORRUPTION.name}" in text
    assert f"sev-snp: {Outcome.DETECTED_BY_GUEST.name}" in text
    assert "#VC" in text
    assert demo_lines(Attack.REPLAY, (Mode.SGX,))[1] == f"  sgx: {Outcome.FAULT_TO_HYPERVISOR.name}"
