"""The matrices in README.md and docs/isolation.md are the code's output, never hand-written.

Each generated block sits between ``<!-- BEGIN GENERATED: name -->`` and ``<!-- END
GENERATED: name -->``. This test fails when a block differs from what the code prints now;
``python tests/isolation/test_isolation_docs.py`` rewrites the blocks.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

import pytest

from veritee.cli._isolation import render_isolation
from veritee.platform.emulated.isolation import run_matrix

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "isolation.md"
README = ROOT / "README.md"
PAGES = 64


@functools.cache
def blocks() -> dict[str, str]:
    """Every generated block's content, computed now."""
    matrix = run_matrix(pages=PAGES)
    hidden = run_matrix(pages=PAGES, ciphertext_hiding=True, guests=("careful",))
    return {
        "isolation-full": render_isolation(pages=PAGES),
        "isolation-cth": hidden.table("careful"),
        "readme-matrix": "\n\n".join(f"{guest} guest:\n{matrix.table(guest)}"
                                     for guest in matrix.guests),
    }


FILES = {DOCS: ("isolation-full", "isolation-cth"), README: ("readme-matrix",)}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- BEGIN GENERATED: {re.escape(name)} -->\n)(.*?)"
                      rf"(<!-- END GENERATED: {re.escape(name)} -->)", re.DOTALL)


def _fenced(text: str) -> str:
    return f"```text\n{text}\n```\n"


def rewrite() -> None:
    """Paste the current output into every generated block."""
    current = blocks()
    for path, names in FILES.items():
        text = path.read_text(encoding="utf-8")
        for name in names:
            text, n = _pattern(name).subn(
                lambda m, name=name: m.group(1) + _fenced(current[name]) + m.group(3), text)
            if n != 1:
                raise SystemExit(f"{path}: no generated block {name!r}")
        path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(("path", "name"), [(p, n) for p, ns in FILES.items() for n in ns],
                         ids=lambda v: v.name if isinstance(v, Path) else v)
def test_generated_block_matches_the_code(path: Path, name: str) -> None:
    match = _pattern(name).search(path.read_text(encoding="utf-8"))
    assert match, f"{path.name} lost its generated block {name!r}"
    assert match.group(2) == _fenced(blocks()[name]), (
        f"{path.name}: block {name!r} differs from the code's output; run "
        "python tests/isolation/test_isolation_docs.py")


def test_docs_make_no_claim_the_matrix_contradicts() -> None:
    """Regression: the docs said SEV-SNP 'closes every software attack'."""
    text = DOCS.read_text(encoding="utf-8") + README.read_text(encoding="utf-8")
    assert "closes every software attack" not in text
    assert "naive" in text and "CIPHERTEXT_PATTERN_LEAKED" in text


if __name__ == "__main__":
    rewrite()
    sys.exit(0)
