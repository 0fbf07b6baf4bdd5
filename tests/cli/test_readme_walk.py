"""The README's service walkthrough, run exactly as written (only the port is a free one).

install -> emulated guest -> serve -> admin (token, resource) -> ``kbs get --seal`` ->
``unseal --aad`` -> audit verify, in one ``bash -e`` in a fresh directory, with the ``veritee``
of this environment on PATH.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _walkthrough() -> str:
    text = README.read_text()
    m = re.search(r"<!-- walkthrough:start -->\s*```sh\n(.*?)```\s*<!-- walkthrough:end -->",
                  text, re.S)
    assert m is not None, "README lost its walkthrough block"
    return m.group(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_readme_service_walkthrough_runs_as_written(tmp_path: Path) -> None:
    bindir = Path(sys.executable).parent
    if not (bindir / "veritee").exists():
        pytest.skip("no veritee console script beside the interpreter")
    script = _walkthrough().replace("8080", str(_free_port()))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VERITEE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"
    # If a step fails, -e stops the script; the trap stops the server it may have started.
    guarded = "set -euo pipefail\ntrap 'kill $SERVER 2>/dev/null || true' EXIT\nSERVER=\n" + script
    r = subprocess.run(["bash", "-c", guarded], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300, check=False)
    assert r.returncode == 0, f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    assert (tmp_path / "pw.out").read_bytes() == b"hunter2"
    assert b"hunter2" not in (tmp_path / "pw.sealed").read_bytes()
    assert "stored db/password version 1" in r.stdout
    assert r.stdout.count("audit log OK") == 1
