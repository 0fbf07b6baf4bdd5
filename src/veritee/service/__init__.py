"""Verifier and key-broker service: attestation-gated secret release over HTTP.

Entry points:

* :func:`create_app` - the FastAPI application for given :class:`Settings`
* :func:`load_settings` - settings from a TOML/JSON file and ``VERITEE_*`` variables
* :class:`MasterKey` / :func:`load_master_key` - the sealed key secrets are encrypted under

Layout: ``app`` (routes), ``deps`` (dependencies), ``core`` (the broker logic), ``problems``
(error -> HTTP table), ``storage`` (SQLite/PostgreSQL, migrations), ``audit`` (hash chain),
``keys`` (master and signing keys), ``resource_policy``, ``settings``, ``observability``,
``server`` (uvicorn). The protocol is documented in ``docs/service.md``.
"""

from __future__ import annotations

from veritee.service.app import create_app
from veritee.service.keys import KeyEncryptionKey, MasterKey, load_master_key
from veritee.service.settings import Settings, load_settings

__all__ = ["KeyEncryptionKey", "MasterKey", "Settings", "create_app", "load_master_key",
           "load_settings"]
