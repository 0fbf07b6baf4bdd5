"""Issue 14, target 4: ``veritee --help`` starts in a few times a bare ``python -c pass``.

Kept so without timing anything: building the whole parser (and running ``--help`` for the
top level and for ``verify``) in a fresh interpreter must not import the libraries the
commands use (httpx, joserfc, cryptography, the trust, collateral, platform, scheme and
service modules). Those imports are what made start-up 9.3x a bare interpreter;
``benchmarks/bench_cli.py`` measures the ratio.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

# Third-party packages that must not be imported to build the parser.
FORBIDDEN_THIRD_PARTY = ("httpx", "joserfc", "cryptography", "cbor2", "uvicorn", "starlette",
                         "fastapi", "psycopg", "orjson", "pydantic")
# The veritee modules a start may import: the package, its errors, and the CLI's own modules
# (which import their libraries only when a command runs).
ALLOWED_VERITEE = ("veritee", "veritee.errors", "veritee.cli")


def _modules_after(code: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter after running ``code`` (stdout discarded)."""
    script = textwrap.dedent(f"""
        import contextlib, io, json, sys
        with contextlib.redirect_stdout(io.StringIO()):
        {textwrap.indent(textwrap.dedent(code), "    ")}
        sys.stderr.write(json.dumps(sorted(sys.modules)))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def _offenders(modules: set[str]) -> list[str]:
    bad = [m for m in modules if m.split(".")[0] in FORBIDDEN_THIRD_PARTY]
    bad += [m for m in modules if m.startswith("veritee") and m not in ALLOWED_VERITEE
            and not m.startswith("veritee.cli.")]
    return sorted(bad)


@pytest.mark.parametrize("code", [
    "import veritee.cli; veritee.cli.build_parser()",
    "from veritee.cli import main; main(['--help'])",
    "from veritee.cli import main; main(['verify', '--help'])",
    "from veritee.cli import main; main(['admin', 'resource', 'put', '--help'])",
], ids=["build_parser", "help", "verify-help", "admin-help"])
def test_building_the_parser_imports_no_heavy_library(code: str) -> None:
    modules = _modules_after(code)
    assert "veritee.cli" in modules  # the probe ran
    assert _offenders(modules) == [], (
        "the CLI's start imports these; import them inside the command function instead")


def test_the_probe_sees_a_heavy_import() -> None:
    """The check can fail: a command that runs does import its libraries."""
    modules = _modules_after("import veritee.cli._tpm as t; import veritee.trust.tpm")
    assert "veritee.trust.tpm" in _offenders(modules)
    assert "cryptography" in {m.split(".")[0] for m in _offenders(modules)}
