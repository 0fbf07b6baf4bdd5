"""``veritee tpm eventlog --eventlog LOG --pcrs FILE``: exit 0 when the log replays to the given
values (tpm2_pcrread YAML or JSON), 4 when it does not (issue 11; ``--pcrs`` was ignored)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from veritee.cli import main
from veritee.formats.eventlog import EventLog
from veritee.formats.tpm import HashAlg

from _tpm_support import EV_EFI_ACTION, build_log, file_of, replay_by_hand, samples


def _yaml(values: dict[HashAlg, dict[int, bytes]]) -> str:
    out = []
    for bank, pcrs in values.items():
        out.append(f"  {bank.name.lower()}:")
        out += [f"    {i:<2}: 0x{v.hex().upper()}" for i, v in sorted(pcrs.items())]
    return "\n".join(out) + "\n"


def _run(tmp_path: Path, log: bytes, pcrs_text: str, *extra: str) -> int:
    (tmp_path / "log").write_bytes(log)
    (tmp_path / "pcrs").write_text(pcrs_text)
    return main(["tpm", "eventlog", "--eventlog", str(tmp_path / "log"), "--pcrs",
                 str(tmp_path / "pcrs"), *extra])


LOG = build_log([(0, b"fw"), (4, b"app"), (5, EV_EFI_ACTION, b"gpt"), (7, b"sb")])


def _values() -> dict[HashAlg, dict[int, bytes]]:
    replay = EventLog.from_bytes(LOG).replay(HashAlg.SHA256)
    return {HashAlg.SHA256: {i: replay.get(i, bytes(32)) for i in range(8)}}


def test_log_that_replays_to_the_pcrread_values_exits_0(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, LOG, _yaml(_values())) == 0
    assert "verdict: VERIFIED" in capsys.readouterr().out


def test_one_changed_pcr_exits_4_and_names_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = _values()
    values[HashAlg.SHA256][7] = bytes(32)
    assert _run(tmp_path, LOG, _yaml(values), "--format", "json") == 4
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "failed"
    assert [m["pcr"] for m in doc["mismatched"]] == ["SHA256:7"]


def test_json_values_and_a_bank_the_log_lacks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = {"sha256": {str(i): v.hex() for i, v in _values()[HashAlg.SHA256].items()}}
    assert _run(tmp_path, LOG, json.dumps(values)) == 0
    capsys.readouterr()
    values["sha384"] = {"0": "00" * 48}  # the log has no SHA-384 bank: not confirmed
    assert _run(tmp_path, LOG, json.dumps(values), "--format", "json") == 4
    assert json.loads(capsys.readouterr().out)["banks_not_checked"] == ["SHA384"]


def test_missing_exit_boot_services_is_reported_and_accepted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = _values()
    bank = HashAlg.SHA256
    values[bank][5] = replay_by_hand(bank, [bank.digest(b"Exit Boot Services Invocation"),
                                            bank.digest(b"Exit Boot Services Returned with "
                                                        b"Success")], start=values[bank][5])
    assert _run(tmp_path, LOG, _yaml(values)) == 0
    assert "ExitBootServices" in capsys.readouterr().out


def test_garbage_pcr_file_is_bad_input(tmp_path: Path) -> None:
    assert _run(tmp_path, LOG, "sha256:\n  0 : 0x00\n") == 3


def _samples_with_pcrs() -> list[dict[str, Any]]:
    return [s for s in samples("eventlog")
            if (s.get("known_fields") or {}).get("source_asserted_pcrs")]


@pytest.mark.evidence
@pytest.mark.parametrize("sample", _samples_with_pcrs(), ids=lambda s: s["id"])
def test_real_log_against_the_source_asserted_pcrs(
        sample: dict[str, Any], tmp_path: Path) -> None:
    """Every real log with PCR values its source asserts replays to them through the CLI, and a
    single changed value is refused (exit 4)."""
    asserted = sample["known_fields"]["source_asserted_pcrs"]
    text = json.dumps(asserted)
    log = file_of(sample, "event_log").read_bytes()
    assert _run(tmp_path, log, text) == 0
    bank = next(iter(asserted))
    index = next(iter(asserted[bank]))
    value = bytearray.fromhex(asserted[bank][index])
    value[0] ^= 1
    changed = {**asserted, bank: {**asserted[bank], index: value.hex()}}
    assert _run(tmp_path, log, json.dumps(changed)) == 4
