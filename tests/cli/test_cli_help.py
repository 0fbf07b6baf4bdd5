"""Issue 11, "The CLI a person expects": every command, action and option is documented, the
groups are real subcommands, and key types have one spelling across commands."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from veritee.cli import KEY_TYPES, build_parser, main
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser in the tree with its command path (aliases visited once)."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            seen: set[int] = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:
                    seen.add(id(sub))
                    yield from _parsers(sub, (*path, name))


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._VersionAction):
            continue
        if action.help == argparse.SUPPRESS:  # hidden on purpose (admin's refused --token)
            continue
        if isinstance(action, argparse._SubParsersAction):
            listed = {a.dest for a in action._choices_actions if a.help}
            missing += [f"{name} (no help in the list)" for name in action.choices
                        if name not in listed and not _is_alias(action, name)]
            continue
        if not action.help:
            missing.append("/".join(action.option_strings) or action.dest)
    return missing


def _is_alias(action: argparse._SubParsersAction[argparse.ArgumentParser], name: str) -> bool:
    return any(name != a.dest and action.choices[a.dest] is action.choices[name]
               for a in action._choices_actions)


def test_every_option_and_action_has_help() -> None:
    missing = {" ".join(path) or "veritee": bad for path, p in _parsers(build_parser())
               if (bad := _undocumented(p))}
    assert missing == {}


def test_the_walk_finds_an_undocumented_option() -> None:
    """The check above can fail."""
    parser = build_parser()
    parser.add_argument("--undocumented")
    assert "--undocumented" in _undocumented(parser)


@pytest.mark.parametrize("path", [
    ("keys", "create"), ("keys", "sign"), ("keys", "list"), ("tpm", "quote"), ("tpm", "ek"),
    ("kbs", "get"), ("kbs", "measurement"), ("audit", "verify"),
    ("admin", "resource", "put"), ("admin", "token", "create"), ("admin", "audit", "verify"),
    ("admin", "keys", "rotate"), ("admin", "token-create")])
def test_groups_are_real_subcommands_with_their_own_help(
        path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*path, "--help"]) == 0
    assert f"usage: veritee {' '.join(path)}" in capsys.readouterr().out


def test_options_belong_to_their_action(capsys: pytest.CaptureFixture[str]) -> None:
    """Before: one parser per group, so ``keys list --signature X`` was accepted and ignored."""
    assert main(["keys", "list", "--signature", "sig.bin"]) == 2
    assert main(["tpm", "eventlog", "--eventlog", "x", "--nonce", "00"]) == 2
    assert main(["admin", "resource", "list", "--secret-file", "x"]) == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_aliases_for_the_spellings_people_try(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "generate", "--help"]) == 0
    assert main(["admin", "tokens", "create", "--help"]) == 0
    assert "--name" in capsys.readouterr().out


def test_command_parsers_built_alone_match_the_full_parser() -> None:
    """``main`` builds only the command it runs: that parser must be the full one's."""
    full = {path: p.format_help() for path, p in _parsers(build_parser())}
    for command in {path[0] for path in full if path}:
        alone = {path: p.format_help() for path, p in _parsers(build_parser(command))
                 if path[:1] == (command,)}
        assert alone == {path: h for path, h in full.items() if path[:1] == (command,)}


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("show", "verify", "appraise", "demo", "emulate", "seal", "keys", "cert",
                    "serve", "audit", "kbs", "admin", "tpm", "isolation"):
        assert f"\n    {command} " in out or f"\n    {command}\n" in out, command


# -- one spelling of key types ------------------------------------------------------------------
def test_key_types_are_spelled_as_the_key_store_spells_them() -> None:
    from veritee.cli._cert import _key_type
    from veritee.crypto.keys import KeyType

    assert set(KEY_TYPES) | {"aes-256"} == {k.value for k in KeyType}
    for name in KEY_TYPES:  # every one maps to a certificate key type
        assert _key_type(name) is not None


def test_cert_accepts_the_new_spelling_and_the_old_with_a_note(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    assert main(["cert", "issue", "ca", "--subject", "CN=a", "--key-type", "ec-p384",
                 "--out", str(tmp_path / "a")]) == 0
    assert "deprecated" not in capsys.readouterr().err
    ca = x509.load_pem_x509_certificate((tmp_path / "a" / "ca.pem").read_bytes())
    key = ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp384r1"
    assert main(["cert", "issue", "ca", "--subject", "CN=b", "--key-type", "p384",
                 "--out", str(tmp_path / "b")]) == 0
    assert "key type 'p384' is deprecated; use 'ec-p384'" in capsys.readouterr().err
    assert main(["cert", "issue", "ca", "--subject", "CN=c", "--key-type", "p521",
                 "--out", str(tmp_path / "c")]) == 2


def test_keys_accepts_the_old_cert_spelling_too(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine

    InsecureEmulatedSnpMachine.open(tmp_path / "state", key_size=2048)
    common = ["--state", str(tmp_path / "state"), "--store", str(tmp_path / "keys")]
    assert main(["keys", "create", "k", "--type", "p256", *common]) == 0
    captured = capsys.readouterr()
    assert "ec-p256" in captured.out and "deprecated" in captured.err


def test_seal_chunk_size_default_is_the_library_default() -> None:
    from veritee.cli._sealing_commands import DEFAULT_CHUNK_SIZE
    from veritee.sealing.stream import DEFAULT_CHUNK_SIZE as LIBRARY

    assert DEFAULT_CHUNK_SIZE == LIBRARY


def test_docs_list_every_command() -> None:
    """docs/cli.md's command list is complete (regenerate it from the parser if this fails)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    missing = [" ".join(("veritee", *path)) for path, _ in _parsers(build_parser())
               if path and f"`{' '.join(('veritee', *path))}`" not in doc]
    assert missing == []


def test_the_old_order_still_works_with_a_note(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Before, a group was one parser and took its options anywhere (``veritee keys --store D
    list``); that spelling still runs, and says how to write it now."""
    InsecureEmulatedSnpMachine.open(tmp_path / "state", key_size=2048)
    assert main(["keys", "--state", str(tmp_path / "state"), "--store", str(tmp_path / "k"),
                 "--format", "json", "list"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "[]"
    assert (f"use: veritee keys list --state {tmp_path / 'state'} --store {tmp_path / 'k'} "
            "--format json") in captured.err
    assert main(["keys", "--no-such-option", "list"]) == 2  # still a usage error
    assert "note:" not in capsys.readouterr().err
