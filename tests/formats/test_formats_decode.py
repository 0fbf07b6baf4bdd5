"""The bounded decoders (veritee._decode): each refusal is an attack it stops."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest

from veritee._decode import (
    MAX_INT_DIGITS,
    MAX_JSON_DEPTH,
    Tag,
    decode_base64,
    decode_binary_text,
    decode_hex,
    limit_for,
    load_cbor,
    load_json,
    read_bounded,
)
from veritee.errors import FormatError


def test_duplicate_json_member_that_two_readers_would_resolve_differently() -> None:
    with pytest.raises(FormatError, match="duplicate"):
        load_json(b'{"mrtd": "aa", "mrtd": "bb"}', structure="t")


@pytest.mark.parametrize("text", [b"[NaN]", b"[Infinity]", b"[-Infinity]"])
def test_non_json_constants_are_refused(text: bytes) -> None:
    with pytest.raises(FormatError):
        load_json(text, structure="t")


def test_integer_digits_bounded_before_int_runs() -> None:
    load_json(b"[" + b"9" * MAX_INT_DIGITS + b"]", structure="t")
    with pytest.raises(FormatError, match="digits"):
        load_json(b"[" + b"9" * 100_000 + b"]", structure="t")


def test_nesting_past_the_depth_limit_and_past_the_recursion_limit() -> None:
    load_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH, structure="t")
    for depth in (MAX_JSON_DEPTH + 1, 200_000):
        with pytest.raises(FormatError, match="depth"):
            load_json(b"[" * depth + b"]" * depth, structure="t")


def test_utf16_json_that_json_loads_would_accept_is_refused() -> None:
    with pytest.raises(FormatError, match="UTF-8"):
        load_json('{"a": 1}'.encode("utf-16"), structure="t")


def test_oversized_json_is_refused_before_decoding() -> None:
    with pytest.raises(FormatError, match="size"):
        load_json(b" " * 11, structure="t", max_size=10)


def test_cbor_bignum_stays_a_tag_never_a_huge_int() -> None:
    value = load_cbor(b"\xc2\x59" + (2000).to_bytes(2, "big") + b"\xff" * 2000, structure="t")
    assert isinstance(value, Tag) and value.number == 2


def test_cbor_bignum_map_key_is_refused() -> None:
    with pytest.raises(FormatError, match="map_key"):
        load_cbor(b"\xa1\xc2\x41\x01\x00", structure="t")


def test_cbor_duplicate_key_and_trailing_bytes_are_refused() -> None:
    with pytest.raises(FormatError, match="duplicate"):
        load_cbor(b"\xa2\x01\x00\x01\x00", structure="t")
    with pytest.raises(FormatError, match="trailing"):
        load_cbor(b"\x00\x00", structure="t")


def test_cbor_array_length_larger_than_the_input_is_refused_before_looping() -> None:
    with pytest.raises(FormatError, match="array_length"):
        load_cbor(b"\x9b" + (1 << 62).to_bytes(8, "big"), structure="t")


def test_hex_with_0X_prefix_spaces_and_lines() -> None:
    assert decode_hex("0XdeAD be\nEF", structure="t", field="f") == b"\xde\xad\xbe\xef"
    with pytest.raises(FormatError):
        decode_hex("abc", structure="t", field="f")


def test_mixed_base64_alphabets_are_refused() -> None:
    assert decode_base64("+/+/", structure="t", field="f") == b"\xfb\xff\xbf"
    assert decode_base64("-_-_", structure="t", field="f") == b"\xfb\xff\xbf"
    with pytest.raises(FormatError, match="one alphabet"):
        decode_base64("+_-/", structure="t", field="f")
    with pytest.raises(FormatError):
        decode_base64("+/+/", structure="t", field="f", alphabet="url")


def test_binary_text_prefers_hex_then_base64() -> None:
    assert decode_binary_text("0x0102", structure="t", field="f") == b"\x01\x02"
    assert decode_binary_text("AQID\nBA==", structure="t", field="f") == b"\x01\x02\x03\x04"
    with pytest.raises(FormatError):
        decode_binary_text("not base64 !", structure="t", field="f")


def test_read_bounded_refuses_a_large_file_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big"
    with path.open("wb") as fh:
        fh.truncate(1 << 30)  # sparse
    with pytest.raises(FormatError, match="refused before reading"):
        read_bounded(path, limit=1 << 20, what="evidence")


def test_read_bounded_stops_a_pipe_at_the_limit(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def writer() -> None:
        with contextlib.suppress(BrokenPipeError):  # the reader stops at the limit
            fd = os.open(fifo, os.O_WRONLY)
            try:
                os.write(fd, b"x" * (1 << 20))
            finally:
                os.close(fd)

    t = threading.Thread(target=writer)
    t.start()
    with pytest.raises(FormatError, match="size"):
        read_bounded(fifo, limit=4096, what="evidence")
    t.join()


def test_limit_override_from_the_environment() -> None:
    assert limit_for("IMA log", {"VERITEE_MAX_IMA_LOG": "5"}) == 5
    assert limit_for("IMA log") == 256 << 20
    with pytest.raises(FormatError):
        limit_for("IMA log", {"VERITEE_MAX_IMA_LOG": "lots"})


# -- base64url (JOSE): pybase64 does the work, the standard library is the oracle ------------

def _oracle_b64url(text: str) -> bytes | None:
    """What RFC 7515 section 2 accepts, decided with the standard library alone: the
    base64url alphabet, no padding, a length that is not 1 mod 4, and the one text that
    re-encoding the bytes gives (so trailing bits are zero)."""
    import base64
    import binascii
    import re

    if not re.fullmatch(r"[A-Za-z0-9_-]*", text) or len(text) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == text else None


def _decoded(text: str) -> bytes | None:
    from veritee._decode import b64url_canonical

    try:
        return b64url_canonical(text)
    except ValueError:
        return None


def test_b64url_round_trips_and_is_the_oracles_encoding() -> None:
    import base64

    from veritee._decode import b64url, b64url_bytes

    for n in (*range(0, 70), 6537, 8700):
        data = os.urandom(n)
        text = b64url(data)
        assert text == base64.urlsafe_b64encode(data).rstrip(b"=").decode()
        assert b64url_bytes(data) == text.encode()
        assert _decoded(text) == data


@pytest.mark.parametrize("text", [
    "QUJD=", "QUI=", "QQ==", "QUJ+", "QUJ/", "QU JD", "QUJD\n", " QUJD", "Q", "QUJDR",
    "QR", "QUK", "QUJDRB", "\u00e9QUJ", "QU\x00D", "QUJD.", "-_-_-_-=",
])
def test_b64url_refuses_what_the_oracle_refuses(text: str) -> None:
    assert _oracle_b64url(text) is None
    assert _decoded(text) is None


def test_b64url_agrees_with_the_oracle_on_mangled_tokens() -> None:
    import random

    from veritee._decode import b64url

    rng = random.Random(1405)
    alphabet = "ABCXYZabcxyz0189-_+/= \n.\u00e9"
    for _ in range(3000):
        chars = list(b64url(os.urandom(rng.randrange(0, 40))))
        for _ in range(rng.randrange(0, 3)):
            at = rng.randrange(0, len(chars) + 1)
            op = rng.randrange(3)
            if op == 0:
                chars.insert(at, rng.choice(alphabet))
            elif chars and op == 1:
                del chars[min(at, len(chars) - 1)]
            elif chars:
                chars[min(at, len(chars) - 1)] = rng.choice(alphabet)
        text = "".join(chars)
        assert _decoded(text) == _oracle_b64url(text), repr(text)
