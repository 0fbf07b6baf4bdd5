"""Policy dataclass <-> JSON/TOML mapping, shared by the Nitro, Arm and NVIDIA policies.

A policy file names the dataclass fields; each field has a reader (``value, key path ->
typed value``) that raises :class:`~veritee.errors.ConfigError` naming the key. ``null`` sets
an optional field to ``None`` (not checked); missing keys keep the secure defaults. The
writer emits every field (bytes as hex, sets as sorted lists), so ``from_mapping(to_mapping(p))
== p``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from veritee.errors import ConfigError
from veritee.policy import _load

__all__ = ["Reader", "from_mapping", "hex_reader", "hex_set_reader", "str_set_reader",
           "to_jsonable", "to_mapping"]

Reader = Callable[[object, str], Any]
_P = TypeVar("_P")


def hex_reader(sizes: Collection[int]) -> Reader:
    """A reader of one hex string whose decoded length is in ``sizes``."""
    def read(value: object, path: str) -> bytes:
        want = f"a hex string of {sorted(sizes)} bytes"
        if not isinstance(value, str):
            raise _load.config_error(path, value, want)
        text = value.strip().removeprefix("0x").removeprefix("0X")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise _load.config_error(path, value, want) from None
        if len(raw) not in sizes:
            raise ConfigError(f"{path}: got {len(raw)} bytes, want {want}")
        return raw
    return read


def hex_set_reader(sizes: Collection[int]) -> Reader:
    """A reader of a non-empty list of hex strings (each length in ``sizes``)."""
    one = hex_reader(sizes)

    def read(value: object, path: str) -> frozenset[bytes]:
        items = _load.read_list(value, path, "a non-empty list of hex strings")
        return frozenset(one(v, f"{path}[{i}]") for i, v in enumerate(items))
    return read


def str_set_reader(value: object, path: str) -> frozenset[str]:
    """A non-empty list of strings."""
    items = _load.read_list(value, path, "a non-empty list of strings")
    return frozenset(_load.read_str(v, f"{path}[{i}]") for i, v in enumerate(items))


def from_mapping(cls: type[_P], data: Mapping[str, Any], readers: Mapping[str, Reader],
                 optional: Collection[str]) -> _P:
    """``cls(**fields)`` from a parsed TOML/JSON table; unknown keys and bad values raise
    :class:`ConfigError` naming the key."""
    table = _load.read_table(data, "<policy>")
    _load.check_keys(table, readers)
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        kwargs[key] = None if value is None and key in optional else readers[key](value, key)
    return cls(**kwargs)


def to_jsonable(value: object) -> Any:
    """Bytes as hex, sets as sorted lists, mappings with string keys; scalars unchanged."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, frozenset | set):
        return sorted(to_jsonable(v) for v in value)
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in sorted(value.items(), key=lambda kv:
                                                          str(kv[0]))}
    raise TypeError(f"cannot serialise {type(value).__name__}")  # pragma: no cover


def to_mapping(policy: Any) -> dict[str, Any]:
    """Every field of the policy dataclass, JSON-ready."""
    return {f.name: to_jsonable(getattr(policy, f.name)) for f in dataclasses.fields(policy)}
