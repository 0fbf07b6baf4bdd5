"""The front door and the evidence commands reach every TEE through the scheme registry.

``veritee.attest`` and ``veritee.cli._verify`` import no TEE module (``formats/trust/policy/
collateral/schemes.<tee>``) at run time, anywhere in the file (imports under ``if
TYPE_CHECKING:`` are types only). The one exception is ``cli._verify._describe_token``, which
shows Nitro/PSA/CCA/NVIDIA evidence until those schemes are registered (issue 11, H2): it is
listed here so that it is deleted with them, not forgotten.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "veritee"
GENERIC = {"_load", "_checks", "_x509", "_wire"}  # shared helpers, not a TEE
LAYERS = ("veritee.formats.", "veritee.trust.", "veritee.policy.", "veritee.collateral.",
          "veritee.schemes.")
ALLOWED_IN = {("cli/_verify.py", "_describe_token")}


def _tee_imports(path: Path) -> list[tuple[str, str]]:
    """(enclosing function, module) for every run-time import of a TEE module."""
    found: list[tuple[str, str]] = []

    class Visitor(ast.NodeVisitor):
        def __init__(self) -> None:
            self.function = "<module>"

        def visit_If(self, node: ast.If) -> None:
            if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
            outer, self.function = self.function, node.name
            self.generic_visit(node)
            self.function = outer

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            self._check(node.module or "")

        def visit_Import(self, node: ast.Import) -> None:
            for alias in node.names:
                self._check(alias.name)

        def _check(self, module: str) -> None:
            if module.startswith(LAYERS) and module.split(".")[2] not in GENERIC:
                found.append((self.function, module))

    Visitor().visit(ast.parse(path.read_text(), filename=str(path)))
    return found


@pytest.mark.parametrize("rel", ["attest.py", "cli/_verify.py"])
def test_no_tee_module_is_imported(rel: str) -> None:
    bad = [(fn, m) for fn, m in _tee_imports(SRC / rel) if (rel, fn) not in ALLOWED_IN]
    assert not bad, f"{rel} imports TEE modules directly: {bad}"

