"""``veritee serve`` output (issue 15, part 6): every line JSON, one request id across the
response header, the problem body and the log; FastAPI's own routes named; /metrics summed
over the workers without the operator setting PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[str]) -> None:
    for _ in range(600):  # polling for start-up, not a timed assertion
        if proc.poll() is not None:
            raise AssertionError(f"service exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("service not ready")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[dict[str, object]],
                                                                dict[str, object]]:
    tmp = tmp_path_factory.mktemp("serve")
    InsecureEmulatedSnpMachine.open(tmp / "machine", key_size=2048)
    settings = tmp / "service.json"
    settings.write_text(json.dumps({
        "dev_mode": True, "database_url": f"sqlite:///{tmp}/svc.db", "key_source": "emulated",
        "emulated_machine_dir": str(tmp / "machine"), "master_key_file": str(tmp / "mk"),
        "log_level": "info"}))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("VERITEE_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    cli = "from veritee.cli import main; raise SystemExit(main())"
    proc = subprocess.Popen([sys.executable, "-c", cli, "serve", "--settings",
                             str(settings), "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    seen: dict[str, object] = {}
    try:
        _wait_ready(url, proc)
        r = httpx.get(f"{url}/healthz", headers={"X-Request-ID": "client-req-0001"})
        seen["echoed"] = r.headers.get("x-request-id")
        r = httpx.get(f"{url}/healthz", headers={"X-Request-ID": "x y"})  # not a token
        seen["replaced"] = r.headers.get("x-request-id")
        httpx.get(f"{url}/openapi.json")
        httpx.get(f"{url}/docs")
        r = httpx.get(f"{url}/v1/admin/resources")  # no token: a problem
        seen["problem"] = r.json()
        seen["problem_header"] = r.headers.get("x-request-id")
        for _ in range(8):  # fresh connections, so both workers may serve some
            with httpx.Client() as c:
                assert c.post(f"{url}/v1/challenge").status_code == 200
        seen["metrics"] = httpx.get(f"{url}/metrics").text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    lines = [line for line in err.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"a log line that is not JSON: {line!r}") from None
    return url, parsed, seen


def test_every_log_line_of_serve_is_json(served: tuple[str, list[dict[str, object]],
                                                       dict[str, object]]) -> None:
    _, logs, _ = served
    assert logs
    assert any(str(e.get("logger", "")).startswith("uvicorn") for e in logs)  # uvicorn's too
    assert any(e.get("event") == "http.request" for e in logs)


def test_request_id_is_in_header_problem_body_and_log(
        served: tuple[str, list[dict[str, object]], dict[str, object]]) -> None:
    _, logs, seen = served
    assert seen["echoed"] == "client-req-0001"
    replaced = str(seen["replaced"])
    assert replaced != "x y" and re.fullmatch(r"[0-9a-f]{32}", replaced)
    problem = seen["problem"]
    assert isinstance(problem, dict)
    assert problem["request_id"] == seen["problem_header"]
    assert any(e.get("event") == "http.request" and e.get("request_id") == problem["request_id"]
               and e.get("status") == 401 for e in logs)
    assert all("request_id" in e for e in logs if e.get("event") == "http.request")


def test_fastapi_own_routes_are_not_logged_unmatched(
        served: tuple[str, list[dict[str, object]], dict[str, object]]) -> None:
    _, logs, _ = served
    routes = {e.get("route") for e in logs if e.get("event") == "http.request"}
    assert {"/openapi.json", "/docs"} <= routes


def test_metrics_sum_over_workers_by_default(
        served: tuple[str, list[dict[str, object]], dict[str, object]]) -> None:
    _, _, seen = served
    m = re.search(r"^veritee_challenges_total(?:\{[^}]*\})? ([0-9.e+]+)$", str(seen["metrics"]),
                  re.M)
    assert m is not None, seen["metrics"]
    assert float(m.group(1)) == 8.0
