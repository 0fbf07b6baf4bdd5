"""Service test fixtures: defined in ``tests/_service_support.py`` (importable by test files)."""

from _service_support import (  # noqa: F401 - pytest discovers fixtures by name here
    database_url,
    guests,
    machine,
    pg_database,
    service,
    service_factory,
    vendor,
)
