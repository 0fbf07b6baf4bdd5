"""RA-TLS and attested TLS reach every TEE through the scheme registry: ``veritee.ratls`` and
``veritee.tls`` import no TEE module (``formats/trust/policy/collateral/schemes.<tee>``,
``platform``) at run time (imports under ``if TYPE_CHECKING:`` are types only)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "veritee"
TEE_LAYERS = ("veritee.formats.", "veritee.trust.", "veritee.policy.", "veritee.collateral.",
              "veritee.schemes.", "veritee.platform")


def _runtime_imports(path: Path) -> list[str]:
    found: list[str] = []

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            found.append(node.module or "")

        def visit_Import(self, node: ast.Import) -> None:
            found.extend(a.name for a in node.names)

    Visitor().visit(ast.parse(path.read_text(), filename=str(path)))
    return found


@pytest.mark.parametrize("rel", ["ratls.py", "tls.py"])
def test_no_tee_module_is_imported(rel: str) -> None:
    bad = [m for m in _runtime_imports(SRC / rel) if m.startswith(TEE_LAYERS)]
    assert not bad, f"{rel} imports TEE modules directly: {bad}"
