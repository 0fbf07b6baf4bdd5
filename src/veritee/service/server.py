"""Running the service: uvicorn with one or several worker processes.

Workers are separate processes (uvicorn's multiprocess supervisor), each building its own
app from the same settings through :func:`app_from_env`; they share state only through the
database, which is why nonces, the signing key and the audit chain live there.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from fastapi import FastAPI

from veritee.service.settings import Settings, load_settings

__all__ = ["app_from_env", "configure_logging", "serve"]

SETTINGS_ENV = "VERITEE_SETTINGS_FILE"


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

    path = os.environ.get(SETTINGS_ENV)
    settings = load_settings(Path(path) if path else None)
    configure_logging(settings.log_level)
    return create_app(settings)


def serve(settings: Settings, settings_path: Path | None) -> None:
    """Run uvicorn until interrupted; validates settings and the database first."""
    import uvicorn

    from veritee.service.storage import open_store

    # Fail fast in the parent (bad URL, unreachable database) and migrate once, before
    # workers race to do it.
    open_store(settings.database_url).close()
    if settings_path is not None:
        os.environ[SETTINGS_ENV] = str(Path(settings_path).resolve())
    # Command-line overrides must reach the workers too: they read the environment.
    os.environ["VERITEE_HOST"] = settings.host
    os.environ["VERITEE_PORT"] = str(settings.port)
    os.environ["VERITEE_WORKERS"] = str(settings.workers)
    configure_logging(settings.log_level)
    uvicorn.run("veritee.service.server:app_from_env", factory=True, host=settings.host,
                port=settings.port, workers=settings.workers, log_level=settings.log_level,
                ssl_certfile=settings.tls_certfile, ssl_keyfile=settings.tls_keyfile,
                access_log=False, timeout_graceful_shutdown=10)
