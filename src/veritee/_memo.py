"""Bounded memo tables: values derived from exact inputs (bytes, stored texts), kept for reuse.

A table holds at most ``limit`` entries; a full table is emptied, then refilled by what is in
use, so hostile input can neither grow one without bound nor pin its entries. Only values
that were derived successfully are kept (a failure raises again next time). The key must
hold every input the value depends on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["built", "remember"]

_K = TypeVar("_K")
_V = TypeVar("_V")


def remember(table: dict[_K, _V], key: _K, value: _V, limit: int) -> _V:
    """Keep ``value`` under ``key`` in ``table`` (emptied first when it holds ``limit``);
    return ``value``."""
    if len(table) >= limit:
        table.clear()
    table[key] = value
    return value


def built(table: dict[_K, _V], key: _K, build: Callable[[], _V], limit: int) -> _V:
    """``table[key]``, built and remembered on first use."""
    found = table.get(key)
    return remember(table, key, build(), limit) if found is None else found
