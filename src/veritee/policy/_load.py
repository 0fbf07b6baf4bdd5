"""Shared helpers for reading policy files (TOML or JSON) into typed values.

Every helper takes the *key path* of the value it reads (``"min_tcb.Milan.bootloader"``) and
raises :class:`~veritee.errors.ConfigError` naming that path, what was found and what was
expected. Nothing here knows about a particular TEE; ``policy/<tee>.py`` builds on it.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from veritee.errors import ConfigError

__all__ = [
    "check_keys",
    "config_error",
    "load_mapping",
    "read_bool",
    "read_hex",
    "read_hex_set",
    "read_int",
    "read_list",
    "read_str",
    "read_table",
    "read_version",
]


def config_error(path: str, got: object, want: str) -> ConfigError:
    """A :class:`ConfigError` in the form *field: got ..., want ...*."""
    return ConfigError(f"{path}: got {_show(got)}, want {want}")


def load_mapping(path: str | Path) -> dict[str, Any]:
    """Read a TOML or JSON file into a dict.

    The format follows the extension (``.toml`` or ``.json``); any other extension is sniffed:
    a document whose first non-blank character is ``{`` is JSON, anything else TOML.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    suffix = p.suffix.lower()
    is_json = suffix == ".json" or (suffix != ".toml" and text.lstrip().startswith("{"))
    data: object
    if is_json:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}: invalid JSON: {exc}") from exc
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}") from exc
    if not isinstance(data, dict):
        raise config_error(str(p), type(data).__name__, "a table/object at the top level")
    return data


def check_keys(table: Mapping[str, Any], known: Iterable[str], prefix: str = "") -> None:
    """Reject any key of ``table`` not in ``known``, naming its full path."""
    known_list = list(known)
    for key in table:
        if key not in known_list:
            raise ConfigError(f"{prefix}{key}: unknown key; known keys: {', '.join(known_list)}")


def read_table(value: object, path: str) -> Mapping[str, Any]:
    """``value`` as a table (a TOML table or JSON object with string keys)."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise config_error(path, value, "a table")
    return value


def read_bool(value: object, path: str) -> bool:
    """``value`` as a boolean (no 0/1 or "yes": a typo must not flip a security switch)."""
    if not isinstance(value, bool):
        raise config_error(path, value, "true or false")
    return value


def read_int(value: object, path: str, lo: int, hi: int) -> int:
    """``value`` as an integer in ``[lo, hi]`` (booleans and floats are rejected)."""
    # bool is a subclass of int in Python; `true` must not silently mean 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise config_error(path, value, f"an integer {lo}..{hi}")
    if not lo <= value <= hi:
        raise config_error(path, value, f"an integer {lo}..{hi}")
    return value


def read_str(value: object, path: str) -> str:
    """``value`` as a string."""
    if not isinstance(value, str):
        raise config_error(path, value, "a string")
    return value


def read_hex(value: object, path: str, length: int) -> bytes:
    """A hex string (optional ``0x`` prefix) of exactly ``length`` bytes."""
    want = f"a hex string of {length} bytes ({2 * length} hex digits)"
    if not isinstance(value, str):
        raise config_error(path, value, want)
    text = value.strip()
    if text[:2].lower() == "0x":
        text = text[2:]
    if any(c not in "0123456789abcdefABCDEF" for c in text):
        raise config_error(path, value, want)
    if len(text) != 2 * length:
        raise ConfigError(f"{path}: got {len(text)} hex digits, want {want}")
    return bytes.fromhex(text)


def read_hex_set(value: object, path: str, length: int) -> frozenset[bytes]:
    """A non-empty list of hex strings, each exactly ``length`` bytes."""
    items = read_list(value, path, f"a non-empty list of {length}-byte hex strings")
    return frozenset(read_hex(v, f"{path}[{i}]", length) for i, v in enumerate(items))


def read_version(value: object, path: str, parts: int) -> tuple[int, ...]:
    """A version as a list of ``parts`` integers 0..255 or a dotted string (``"1.55.21"``)."""
    want = f"{parts} integers 0..255 as a list or a dotted string"
    items: list[object]
    if isinstance(value, str):
        pieces = value.strip().split(".")
        if len(pieces) != parts or not all(p.isdigit() for p in pieces):
            raise config_error(path, value, want)
        items = [int(p) for p in pieces]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise config_error(path, value, want)
    if len(items) != parts:
        raise config_error(path, value, want)
    return tuple(read_int(v, f"{path}[{i}]", 0, 0xFF) for i, v in enumerate(items))


def read_list(value: object, path: str, want: str) -> list[object]:
    """A non-empty list (TOML/JSON array); ``want`` describes it for the error message."""
    # An empty allow-list would reject every report: almost surely a mistake, so say so.
    if not isinstance(value, list | tuple) or not value:
        raise config_error(path, value, want)
    return list(value)


def _show(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
