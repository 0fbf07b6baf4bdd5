"""Running the service: uvicorn with one or several worker processes.

Workers are separate processes (uvicorn's multiprocess supervisor), each building its own
app from the same settings through :func:`app_from_env`; they share state only through the
database, which is why nonces, the signing key and the audit chain live there.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from veritee.service.settings import Settings, load_settings

__all__ = ["LoopbackServer", "app_from_env", "check_port_free", "configure_logging", "serve"]

SETTINGS_ENV = "VERITEE_SETTINGS_FILE"
SUPERVISOR_ENV = "VERITEE_SUPERVISOR_PID"
_PR_SET_PDEATHSIG = 1  # prctl(2), linux/prctl.h


def _die_with_supervisor() -> None:
    """In a worker: exit when the supervisor dies (issue 9 finding 7).

    uvicorn's workers otherwise outlive a ``kill -9`` of their supervisor and keep the port.
    Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` (a graceful uvicorn shutdown), then a check
    that the supervisor did not die before the call took effect; elsewhere a thread polls
    the parent pid.
    """
    raw = os.environ.get(SUPERVISOR_ENV)
    if not raw or not raw.isdigit() or int(raw) == os.getpid():
        return
    supervisor = int(raw)
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes
        import ctypes.util
        import signal

        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
        except OSError:
            armed = False
    if os.getppid() != supervisor:
        os._exit(3)  # the supervisor is already gone: do not serve as an orphan

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(1.0)
        os._exit(3)

    if not armed:
        threading.Thread(target=watch, name="veritee-supervisor-watch", daemon=True).start()


def check_port_free(host: str, port: int) -> None:
    """Raise ConfigError with a clear message when ``host:port`` is already taken."""
    from veritee.errors import ConfigError

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: connections a crashed predecessor left in TIME_WAIT must not
        # block a restart; only a live listener makes the port taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (is "
                              "another 'veritee serve', or a leftover worker, using it?)"
                              ) from None


def configure_logging(level: str) -> None:
    """JSON lines from the ``veritee.service`` logger on stderr (the message is the JSON)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("veritee.service")
    log.handlers[:] = [handler]
    log.setLevel(level.upper())
    log.propagate = False


def app_from_env() -> FastAPI:
    """uvicorn factory: settings from ``$VERITEE_SETTINGS_FILE`` (if set) and ``VERITEE_*``."""
    from veritee.service.app import create_app

    _die_with_supervisor()
    path = os.environ.get(SETTINGS_ENV)
    settings = load_settings(Path(path) if path else None)
    configure_logging(settings.log_level)
    return create_app(settings)


def serve(settings: Settings, settings_path: Path | None) -> None:
    """Run uvicorn until interrupted; validates settings and the database first."""
    import uvicorn

    from veritee.service.storage import open_store

    # Fail fast in the parent: a taken port, a bad URL, an unreachable database; and migrate
    # once, before workers race to do it.
    check_port_free(settings.host, settings.port)
    open_store(settings.database_url, connect_timeout=settings.db_connect_timeout,
               statement_timeout_ms=settings.db_statement_timeout_ms).close()
    if settings_path is not None:
        os.environ[SETTINGS_ENV] = str(Path(settings_path).resolve())
    # Command-line overrides must reach the workers too: they read the environment.
    os.environ["VERITEE_HOST"] = settings.host
    os.environ["VERITEE_PORT"] = str(settings.port)
    os.environ["VERITEE_WORKERS"] = str(settings.workers)
    if settings.workers > 1:
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
    else:
        os.environ.pop(SUPERVISOR_ENV, None)
    configure_logging(settings.log_level)

    from veritee.service._reqlog import uvicorn_log_config, worker_metrics_dir

    # /metrics sums every worker's counters by default (prometheus_client multiprocess mode).
    with worker_metrics_dir(settings.workers):
        uvicorn.run("veritee.service.server:app_from_env", factory=True, host=settings.host,
                    port=settings.port, workers=settings.workers, log_level=settings.log_level,
                    ssl_certfile=settings.tls_certfile, ssl_keyfile=settings.tls_keyfile,
                    access_log=False, timeout_graceful_shutdown=10,
                    h11_max_incomplete_event_size=H11_MAX_HEAD,
                    log_config=uvicorn_log_config(settings.log_level))


H11_MAX_HEAD = 32 << 10
"""Largest request head h11 reads (its default is 16 KiB): room for the request line and
``limits.MAX_HEADER_BYTES`` of headers, which the BoundedRequest middleware then enforces
with a problem+json 431."""


class LoopbackServer:
    """uvicorn serving ``app`` on 127.0.0.1 (an ephemeral port) in a thread of this process:
    the demo's and the tests' way to run the service over real HTTP without a second process.
    """

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(
            app, log_level="warning", lifespan="off",
            h11_max_incomplete_event_size=H11_MAX_HEAD))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def start(self, timeout: float = 10.0) -> LoopbackServer:
        """Start serving; return once the server accepts connections."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start in {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
