"""Throwaway PostgreSQL databases for the benchmarks (one per run, dropped afterwards).

The server is ``$VERITEE_BENCH_PG`` (else ``$VERITEE_TEST_PG``, the tests' setting), an admin
URL; the default is the local trust-auth server at 127.0.0.1:5432.
"""

from __future__ import annotations

import os
import secrets

PG_ADMIN = os.environ.get("VERITEE_BENCH_PG", os.environ.get(
    "VERITEE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))


def create_database() -> str:
    """Create an empty database on :data:`PG_ADMIN`'s server; return its URL (raises when the
    server cannot be reached)."""
    import psycopg

    name = f"veritee_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    """Drop a database :func:`create_database` made (connections to it are closed)."""
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
