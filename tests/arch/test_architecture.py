"""Layering: walk every import in src/ with ``ast`` and keep the dependency edges honest.

errors <- _wire <- formats <- trust <- policy <- attest <- cli; crypto beside formats;
collateral only under attest/cli; nothing in src imports veritee.testing.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "veritee"

BASE = {"veritee", "veritee.errors", "veritee._wire", "veritee._fs", "veritee.findings",
        "veritee._decode", "veritee._memo"}
ALLOWED: dict[str, set[str]] = {
    "veritee.errors": set(),
    "veritee._wire": {"veritee.errors"},
    # the bounded decoders (JSON, CBOR, text, files) sit beside _wire: errors only
    "veritee._decode": {"veritee.errors"},
    # bounded memo tables: nothing of veritee
    "veritee._memo": set(),
    "veritee._fs": set(),
    "veritee.findings": set(),
    "veritee.formats": BASE | {"veritee.formats"},
    "veritee.crypto": BASE | {"veritee.formats", "veritee.crypto"},
    "veritee.trust": BASE | {"veritee.formats", "veritee.crypto", "veritee.trust"},
    "veritee.policy": BASE | {"veritee.formats", "veritee.trust", "veritee.policy"},
    "veritee.collateral": BASE | {"veritee.formats", "veritee.crypto", "veritee.trust",
                                  "veritee.collateral"},
    "veritee.platform": BASE | {"veritee.formats", "veritee.crypto", "veritee.trust",
                                "veritee.platform"},
    # schemes: one per evidence family (formats + trust + policy behind one Protocol).
    "veritee.schemes": BASE | {"veritee.formats", "veritee.crypto", "veritee.trust",
                               "veritee.policy", "veritee.collateral", "veritee.results",
                               "veritee.schemes"},
    "veritee.attest": BASE | {"veritee.formats", "veritee.crypto", "veritee.trust",
                              "veritee.policy", "veritee.collateral", "veritee.schemes",
                              "veritee.results"},
    # Above attest: attested certificates verify through attest.Verifier and find the
    # scheme in the registry; tls sits on ratls.
    "veritee.ratls": BASE | {"veritee.formats", "veritee.crypto", "veritee.trust",
                             "veritee.policy", "veritee.attest", "veritee.schemes"},
    "veritee.tls": BASE | {"veritee.crypto", "veritee.trust", "veritee.policy",
                           "veritee.ratls"},
    # results: Appraisal -> EAR; encodes findings, never decides (no trust, no attest).
    "veritee.results": BASE | {"veritee.policy"},
    # client: above attest (binds report data), reads EAR results; no service internals.
    "veritee.client": BASE | {"veritee.formats", "veritee.crypto", "veritee.trust",
                              "veritee.policy", "veritee.attest", "veritee.results"},
}
# client_coco: the CoCo KBS protocol client, beside client (no service internals).
ALLOWED["veritee.client_coco"] = BASE | {"veritee.formats", "veritee.crypto", "veritee.client"}
FORBIDDEN_EVERYWHERE_BUT_TESTING = "veritee.testing"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.AST) -> set[str]:
    """veritee modules imported at run time (``if TYPE_CHECKING:`` blocks are skipped)."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            test = node.test
            if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(a.name for a in node.names if a.name.startswith("veritee"))

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.module and node.module.startswith("veritee"):
                found.add(node.module)

    Visitor().visit(tree)
    return found


def _layer(module: str) -> str | None:
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def _allowed(target: str, allowed: set[str]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed)


MODULES = sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=_module_name)
def test_imports_follow_the_layering(path: Path) -> None:
    module = _module_name(path)
    imports = _imports(ast.parse(path.read_text(), filename=str(path)))
    if not module.startswith("veritee.testing"):
        assert not [i for i in imports if i.startswith(FORBIDDEN_EVERYWHERE_BUT_TESTING)], (
            f"{module} imports veritee.testing")
    layer = _layer(module)
    if layer is None:  # cli, testing, service: top of the stack
        return
    bad = sorted(i for i in imports if i != "veritee" and not _allowed(i, ALLOWED[layer] | {layer}))
    assert not bad, f"{module} ({layer}) must not import {bad}"


def test_every_module_is_checked() -> None:
    assert len(MODULES) > 20
