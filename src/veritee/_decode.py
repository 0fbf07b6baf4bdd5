"""Bounded decoders for every value that enters from outside: JSON, CBOR, text, files.

Each decoder raises :class:`~veritee.errors.FormatError` (naming the structure and field) and
nothing else, however hostile the input, and each bounds what it will spend before spending it:

* :func:`load_json` - size cap first, then the standard library's C scanner with duplicate
  member names refused (RFC 8259 s4: names "SHOULD be unique"; two readers disagreeing on
  which one wins is how signed JSON gets reinterpreted), ``NaN``/``Infinity`` refused,
  integers capped at :data:`MAX_INT_DIGITS` digits (before ``int()`` runs, so the
  interpreter's 4,300-digit limit is never reached), nesting refused past ``max_depth``
  (``RecursionError`` from deeper input is caught too), and UTF-8 required (``json.loads`` of
  ``bytes`` would also accept UTF-16/32).
* :func:`load_cbor` - a strict RFC 8949 reader (definite lengths, no floats, unique keys of
  type int/tstr/bstr, ``false``/``true``/``null`` only, depth and size capped, no trailing
  bytes). Integers come from at most 8 argument bytes; tags 2/3 (bignums) stay
  :class:`Tag` objects, never converted to ``int``.
* :func:`decode_hex` / :func:`decode_base64` / :func:`decode_binary_text` - hex (optional
  ``0x``/``0X``), standard or URL-safe base64 (one alphabet, padding optional); whitespace
  anywhere (line-wrapped or space-grouped dumps) is ignored.
* :func:`read_bounded` - stats and reads at most ``limit`` bytes (``limit + 1`` to tell a
  pipe or ``/proc`` file that is too long from one that is not): never ``read_bytes()`` of an
  unbounded file.

Limits per input kind are in :data:`LIMITS` (documented in ``docs/limits.md``).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from dataclasses import dataclass
from typing import Any

import pybase64

from veritee.errors import FormatError

__all__ = [
    "LIMITS",
    "MAX_INT_DIGITS",
    "MAX_JSON_DEPTH",
    "Tag",
    "decode_base64",
    "decode_binary_text",
    "decode_hex",
    "limit_for",
    "load_cbor",
    "load_json",
    "read_bounded",
]

MAX_INT_DIGITS = 64
"""Longest JSON integer accepted (SVNs, versions and counters are far shorter)."""

MAX_JSON_DEPTH = 32
"""Deepest JSON nesting accepted (Intel TCB Info, the deepest real document, uses 6)."""

MAX_CBOR_DEPTH = 16
"""Deepest CBOR nesting accepted (Nitro/PSA/CCA documents use 4)."""

_MIB = 1 << 20

LIMITS: dict[str, int] = {
    # Evidence: an SEV-SNP report is 1,184 bytes, an Intel quote with its PCK chain ~5 KiB,
    # a Nitro document ~5 KiB, an NVIDIA report with its chain ~10 KiB.
    "evidence": 1 * _MIB,
    # Certificates, chains, CRLs, keys, policies, nonces and tables given as files.
    "certificate": 1 * _MIB,
    # Intel/AMD collateral files: TCB Info of a multi-package platform is ~20 KiB; CRLs of a
    # large PKI can reach a few MiB.
    "collateral": 16 * _MIB,
    # A TCG event log: MAX_EVENTS * a few hundred bytes.
    "event log": 16 * _MIB,
    # IMA logs grow with the workload: the largest cap, and overridable (docs/limits.md).
    "IMA log": 256 * _MIB,
}
"""Largest file accepted per input kind, in bytes. ``VERITEE_MAX_<KIND>`` (kind upper-cased,
spaces as ``_``, e.g. ``VERITEE_MAX_IMA_LOG``) raises or lowers one for the CLI."""


def limit_for(kind: str, environ: dict[str, str] | None = None) -> int:
    """The size limit for ``kind``: :data:`LIMITS`, or the ``VERITEE_MAX_<KIND>`` override
    from ``environ`` (the CLI passes ``os.environ``; library callers pass nothing)."""
    base = LIMITS.get(kind, LIMITS["certificate"])
    if environ is None:
        return base
    name = "VERITEE_MAX_" + kind.upper().replace(" ", "_")
    text = environ.get(name)
    if text is None:
        return base
    try:
        value = int(text.strip()[:20])
    except ValueError:
        raise FormatError("environment", name, got=text, want="a size in bytes") from None
    if value <= 0:
        raise FormatError("environment", name, got=value, want="a positive size in bytes")
    return value


def read_bounded(path: str | os.PathLike[str], *, limit: int, what: str) -> bytes:
    """Read the file at ``path`` if it holds at most ``limit`` bytes.

    The size is checked with ``fstat`` before reading, and the read itself stops at
    ``limit + 1`` bytes (pipes, ``/proc`` and ``/sys`` files report size 0). Raises
    :class:`FormatError` (``<what> <path>``, ``size``) when too large and :class:`OSError` when
    unreadable (callers word that for their users).
    """
    name = f"{what} {os.fspath(path)}"
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "is a directory")
        if stat.S_ISREG(st.st_mode) and st.st_size > limit:
            raise FormatError(name, "size", got=st.st_size, want=f"<= {limit} bytes",
                              detail="refused before reading; see docs/limits.md")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise FormatError(name, "size", got=f"> {limit}", want=f"<= {limit} bytes",
                          detail="see docs/limits.md")
    return data


# -- JSON ---------------------------------------------------------------------------------------
def load_json(data: bytes | str, *, structure: str, max_size: int = 1 * _MIB,
              max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode one JSON value under the rules in the module docstring."""
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data) > max_size:
            raise FormatError(structure, "<size>", got=len(data), want=f"<= {max_size} bytes")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(structure, "<encoding>", offset=exc.start, got="not UTF-8",
                              want="UTF-8 JSON") from None
    elif isinstance(data, str):
        if len(data) > max_size:
            raise FormatError(structure, "<size>", got=len(data), want=f"<= {max_size} chars")
        text = data
    else:
        raise FormatError(structure, "<input>", got=type(data).__name__, want="bytes or str")
    try:
        value = json.loads(text, object_pairs_hook=_unique_members, parse_int=_bounded_int,
                           parse_constant=_no_constant)
    except _JsonRefusedError as exc:
        raise FormatError(structure, exc.field, got=exc.got, want=exc.want) from None
    except json.JSONDecodeError as exc:
        raise FormatError(structure, "<json>", offset=exc.pos, got=exc.msg,
                          want="JSON") from None
    except RecursionError:
        raise FormatError(structure, "<depth>", got="nesting past the interpreter's limit",
                          want=f"<= {max_depth} levels") from None
    except ValueError as exc:  # anything else the decoder refuses (defensive)
        raise FormatError(structure, "<json>", got=str(exc)[:60], want="JSON") from None
    depth = _depth(value, max_depth)
    if depth > max_depth:
        raise FormatError(structure, "<depth>", got=depth, want=f"<= {max_depth} levels")
    return value


class _JsonRefusedError(ValueError):
    def __init__(self, field: str, got: object, want: str) -> None:
        super().__init__(field)
        self.field, self.got, self.want = field, got, want


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _JsonRefusedError(key, "a duplicate member name", "unique member names")
        out[key] = value
    return out


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _JsonRefusedError("<number>", f"an integer of {digits} digits",
                           f"<= {MAX_INT_DIGITS} digits")
    return int(text)


def _no_constant(name: str) -> Any:
    raise _JsonRefusedError("<number>", name, "a finite number (NaN/Infinity are not JSON)")


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a decoded JSON value, iteratively; stops counting past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, level + 1) for c in children if isinstance(c, dict | list))
    return deepest


# -- CBOR ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tag:
    """A CBOR tagged item (major type 6)."""

    number: int
    value: Any


class _CborReader:
    """Sequential reader over one CBOR buffer; raises FormatError only."""

    def __init__(self, data: bytes, structure: str, max_depth: int) -> None:
        self.data = data
        self.pos = 0
        self.structure = structure
        self.max_depth = max_depth

    def _fail(self, fld: str, got: object, want: object, detail: str | None = None) -> FormatError:
        return FormatError(self.structure, fld, offset=self.pos, got=got, want=want,
                           detail=detail)

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self._fail("length", n, f"<= {len(self.data) - self.pos} remaining bytes",
                             "truncated CBOR")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def head(self) -> tuple[int, int]:
        """(major type, argument) of the next item (RFC 8949 s3)."""
        ib = self.take(1)[0]
        major, info = ib >> 5, ib & 0x1F
        if info < 24:
            return major, info
        if info in (24, 25, 26, 27):
            size = 1 << (info - 24)
            return major, int.from_bytes(self.take(size), "big")
        if major == 7:
            raise self._fail("simple", info, "false/true/null", "floats and simple values "
                             "other than false/true/null are not accepted")
        raise self._fail("additional_info", info, "< 28",
                         "indefinite lengths and reserved values are not accepted")

    def item(self, depth: int) -> Any:
        if depth > self.max_depth:
            raise self._fail("depth", depth, f"<= {self.max_depth}")
        start = self.pos
        major, arg = self.head()
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major == 2:
            return self.take(arg)
        if major == 3:
            raw = self.take(arg)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise FormatError(self.structure, "tstr", offset=start, got=raw[:16],
                                  want="UTF-8") from None
        if major == 4:
            # Each element takes at least one byte: bound the count before looping.
            if arg > len(self.data) - self.pos:
                raise self._fail("array_length", arg, "<= remaining bytes")
            return tuple(self.item(depth + 1) for _ in range(arg))
        if major == 5:
            if arg > len(self.data) - self.pos:
                raise self._fail("map_length", arg, "<= remaining bytes")
            out: dict[Any, Any] = {}
            for _ in range(arg):
                key_at = self.pos
                key = self.item(depth + 1)
                # bool is an int in Python: {true: x} would read as {1: x}, so refuse it.
                if isinstance(key, bool) or not isinstance(key, int | str | bytes):
                    raise FormatError(self.structure, "map_key", offset=key_at,
                                      got=type(key).__name__, want="int, tstr or bstr")
                if key in out:
                    raise FormatError(self.structure, "map_key", offset=key_at, got=key,
                                      want="unique keys", detail="duplicate map key")
                out[key] = self.item(depth + 1)
            return out
        if major == 6:
            return Tag(arg, self.item(depth + 1))
        # major 7 with a one-byte argument (info < 24 returned above as arg)
        simple = {20: False, 21: True, 22: None}
        if arg in simple and self.data[start] & 0x1F == arg:
            return simple[arg]
        raise FormatError(self.structure, "simple", offset=start, got=arg,
                          want="false/true/null")


def load_cbor(data: bytes, *, structure: str, max_size: int = 64 * 1024,
              max_depth: int = MAX_CBOR_DEPTH) -> Any:
    """Decode exactly one CBOR item filling ``data`` (rules in the module docstring).

    Maps are ``dict`` (keys ``int``/``str``/``bytes``), arrays ``tuple``, tags :class:`Tag`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FormatError(structure, "input", got=type(data).__name__, want="bytes")
    if len(data) > max_size:
        raise FormatError(structure, "size", got=len(data), want=f"<= {max_size}")
    data = bytes(data)
    if not data:
        raise FormatError(structure, "size", got=0, want="> 0")
    reader = _CborReader(data, structure, max_depth)
    value = reader.item(0)
    if reader.pos != len(data):
        raise FormatError(structure, "trailing", offset=reader.pos,
                          got=len(data) - reader.pos, want=0, detail="bytes after the item")
    return value


# -- text encodings -----------------------------------------------------------------------------
_HEX = frozenset("0123456789abcdefABCDEF")
_B64_STD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
_B64_URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _text(value: bytes | str, structure: str, field: str) -> str:
    """``value`` as ASCII text with every whitespace character removed."""
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise FormatError(structure, field, got="non-ASCII bytes", want="text") from None
    elif not isinstance(value, str):
        raise FormatError(structure, field, got=type(value).__name__, want="text")
    return "".join(value.split())


_B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def decode_hex(value: bytes | str, *, structure: str, field: str) -> bytes:
    """Hex digits (either case, optional ``0x``/``0X``, whitespace anywhere) to bytes."""
    text = _text(value, structure, field)
    if text[:2] in ("0x", "0X"):
        text = text[2:]
    if len(text) % 2 or not _HEX.issuperset(text):
        raise FormatError(structure, field, got=_snippet(text), want="an even number of hex "
                          "digits")
    return bytes.fromhex(text)


def decode_base64(value: bytes | str, *, structure: str, field: str,
                  alphabet: str = "either") -> bytes:
    """Base64 to bytes: ``alphabet`` is ``"standard"`` (``+/``), ``"url"`` (``-_``) or
    ``"either"`` (one of the two, never a mix). Padding is optional, whitespace ignored."""
    text = _text(value, structure, field)
    body = text.rstrip("=")
    pad = len(text) - len(body)
    std, url = _B64_STD.issuperset(body), _B64_URL.issuperset(body)
    if alphabet == "standard":
        ok = std
    elif alphabet == "url":
        ok = url
    else:
        ok = std or url
    if not ok or pad > 2 or (pad and len(text) % 4) or len(body) % 4 == 1:
        want = {"standard": "base64", "url": "base64url"}.get(alphabet, "base64 or base64url")
        raise FormatError(structure, field, got=_snippet(text), want=f"{want} (one alphabet)")
    padded = body + "=" * (-len(body) % 4)
    try:
        if std:
            return base64.b64decode(padded, validate=True)
        return base64.urlsafe_b64decode(padded)
    except (binascii.Error, ValueError):  # pragma: no cover - the checks above are stricter
        raise FormatError(structure, field, got=_snippet(text), want="base64") from None


def b64url_canonical(part: str) -> bytes:
    """Strict base64url without padding (RFC 7515 section 2, as JOSE writes it): other
    characters, padding and non-zero trailing bits are refused (ValueError), so one value has
    exactly one encoding."""
    if "+" in part or "/" in part or "=" in part or len(part) % 4 == 1:
        raise ValueError("not base64url")
    try:
        # pybase64 (SIMD): an EAR's 8 KB payload in 2 us where binascii takes 20.
        raw = pybase64.b64decode(part + "=" * (-len(part) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ValueError("not base64url") from None
    # The last character may carry bits beyond the data (2 or 4): they must be zero.
    if len(part) % 4 and _B64_ALPHABET.index(part[-1]) & (0x0F if len(part) % 4 == 2 else 0x03):
        raise ValueError("non-canonical base64url")
    return raw


def b64url(data: bytes) -> str:
    """``data`` as base64url without padding (RFC 7515 section 2), the one canonical form
    :func:`b64url_canonical` reads."""
    return pybase64.b64encode(data, altchars=b"-_").rstrip(b"=").decode("ascii")


def b64url_bytes(data: bytes) -> bytes:
    """:func:`b64url` as ASCII bytes (a JWS signing input is bytes)."""
    return pybase64.b64encode(data, altchars=b"-_").rstrip(b"=")


def decode_binary_text(value: bytes | str, *, structure: str, field: str) -> bytes:
    """Hex (preferred when the text is valid hex, as quote tools write it) or base64/base64url."""
    text = _text(value, structure, field)
    hexpart = text[2:] if text[:2] in ("0x", "0X") else text
    if hexpart and len(hexpart) % 2 == 0 and _HEX.issuperset(hexpart):
        return bytes.fromhex(hexpart)
    try:
        return decode_base64(text, structure=structure, field=field)
    except FormatError:
        raise FormatError(structure, field, got=_snippet(text),
                          want="hex, base64 or base64url") from None


def _snippet(text: str) -> str:
    return text[:24] + (f"... ({len(text)} chars)" if len(text) > 24 else "")
