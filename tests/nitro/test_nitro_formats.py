"""The COSE_Sign1 / payload parser is strict, bounded, and only ever raises FormatError.

Documents are built here with cbor2 (an independent encoder) so that the parser is checked
against someone else's CBOR, not only its own.
"""

from __future__ import annotations

import contextlib
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.errors import FormatError
from veritee.formats.nitro import NitroDocument, NitroPayload, is_debug_pcrs

from _evidence import evidence_available
from _nitro_support import NITRO_CASES

PROTECTED = cbor2.dumps({1: -35})
CERT = b"\x30\x82" + b"\x00" * 300  # the parser does not look inside certificates


def _payload(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "module_id": "i-0123-enc0123", "digest": "SHA384", "timestamp": 1_700_000_000_000,
        "pcrs": {i: bytes(48) for i in range(16)}, "certificate": CERT,
        "cabundle": [CERT, CERT], "public_key": None, "user_data": b"hello", "nonce": b"n" * 20,
    }
    for key, value in changes.items():
        if value is _DROP:
            base.pop(key)
        else:
            base[key] = value
    return base


_DROP = object()


def _doc(payload: Any = None, *, protected: bytes = PROTECTED, unprotected: Any = None,
         signature: Any = b"\x01" * 96, tag: int | None = None) -> bytes:
    body = [protected, {} if unprotected is None else unprotected,
            cbor2.dumps(_payload() if payload is None else payload), signature]
    return cbor2.dumps(cbor2.CBORTag(tag, body) if tag is not None else body)


def test_minimal_document_parses() -> None:
    doc = NitroDocument.from_bytes(_doc())
    p = doc.payload
    assert p.module_id == "i-0123-enc0123" and p.digest == "SHA384"
    assert p.timestamp.year == 2023
    assert p.public_key is None and p.user_data == b"hello" and p.nonce == b"n" * 20
    assert p.cabundle == (CERT, CERT)
    assert p.debug_mode
    assert not doc.tagged
    assert doc.sig_structure == cbor2.dumps(["Signature1", PROTECTED, b"", p.raw])


def test_tag_18_is_accepted_and_remembered() -> None:
    doc = NitroDocument.from_bytes(_doc(tag=18))
    assert doc.tagged
    assert NitroDocument.from_bytes(doc.to_bytes()) == doc


def test_optional_fields_may_be_absent() -> None:
    doc = NitroDocument.from_bytes(_doc(_payload(public_key=_DROP, user_data=_DROP,
                                                 nonce=_DROP)))
    assert doc.payload.nonce is None and doc.payload.user_data is None


def test_round_trip_of_a_built_document() -> None:
    raw = _doc(_payload(public_key=b"k" * 10))
    doc = NitroDocument.from_bytes(raw)
    assert doc.to_bytes() == raw
    assert doc.payload.to_bytes() == doc.payload.raw


def test_is_debug_pcrs() -> None:
    assert is_debug_pcrs({0: bytes(48), 1: bytes(48), 2: bytes(48)})
    assert not is_debug_pcrs({0: bytes(48), 1: bytes(48), 2: b"\x01" * 48})
    assert not is_debug_pcrs({0: bytes(48), 1: bytes(48)})


@pytest.mark.parametrize(("data", "field"), [
    (_doc(tag=17), "tag"),
    (_doc(protected=cbor2.dumps({1: -7})), "protected"),  # ES256
    (_doc(protected=cbor2.dumps({1: -35, 4: b"kid"})), "protected"),
    (_doc(protected=b""), "protected"),
    (_doc(unprotected={4: b"kid"}), "unprotected"),
    (_doc(signature=b"\x01" * 64), "signature"),
    (_doc(signature=None), "signature"),
    (cbor2.dumps([PROTECTED, {}, None, b"\x01" * 96]), "payload"),  # detached payload
    (cbor2.dumps([PROTECTED, {}, cbor2.dumps(_payload())]), "message"),
    (cbor2.dumps({"a": 1}), "message"),
    (_doc() + b"\x00", "trailing"),
    (b"", "<document>"),
    (b"\x9f" + _doc()[1:], "additional_info"),  # indefinite-length array
    (b"\x84\x44", "array_length"),  # truncated: 4 items declared, 1 byte left
    (b"\x84\x58\x20" + bytes(8), "length"),  # truncated inside the first bstr
])
def test_bad_envelope_is_a_format_error(data: bytes, field: str) -> None:
    with pytest.raises(FormatError) as err:
        NitroDocument.from_bytes(data)
    assert err.value.field.startswith(field)


@pytest.mark.parametrize(("payload", "field"), [
    (_payload(extra=b"x"), "extra"),
    (_payload(module_id=_DROP), "module_id"),
    (_payload(module_id=""), "module_id"),
    (_payload(module_id=b"bytes"), "module_id"),
    (_payload(digest=_DROP), "digest"),
    (_payload(digest=384), "digest"),
    (_payload(timestamp=0), "timestamp"),
    (_payload(timestamp=-1), "timestamp"),
    (_payload(timestamp="1"), "timestamp"),
    (_payload(timestamp=253402300800000), "timestamp"),  # year 10000
    (_payload(timestamp=1.5), "simple"),  # floats are not read at all
    (_payload(pcrs={}), "pcrs"),
    (_payload(pcrs={32: bytes(48)}), "pcrs.<index>"),
    (_payload(pcrs={"0": bytes(48)}), "pcrs.<index>"),
    (_payload(pcrs={0: bytes(47)}), "pcrs.0"),
    (_payload(pcrs={i: bytes(48) for i in range(33)}), "pcrs"),
    (_payload(certificate=b""), "certificate"),
    (_payload(certificate=b"x" * 1025), "certificate"),
    (_payload(cabundle=[]), "cabundle"),
    (_payload(cabundle=CERT), "cabundle"),
    (_payload(cabundle=[CERT, "text"]), "cabundle[1]"),
    (_payload(cabundle=[CERT] * 17), "cabundle"),
    (_payload(public_key="text"), "public_key"),
    (_payload(user_data=b"u" * 1025), "user_data"),
    (_payload(nonce=[b"n"]), "nonce"),
    (_payload(nonce=cbor2.CBORTag(24, b"n")), "nonce"),  # no inner tags
    ([1, 2], "<payload>"),
])
def test_bad_payload_is_a_format_error(payload: Any, field: str) -> None:
    with pytest.raises(FormatError) as err:
        NitroDocument.from_bytes(_doc(payload))
    assert err.value.field.startswith(field), err.value


def test_duplicate_payload_key_is_a_format_error() -> None:
    good = NitroPayload.from_bytes(cbor2.dumps(_payload()))
    raw = good.raw
    # map(9) -> map(10) with "nonce" written twice.
    dup = bytes([raw[0] + 1]) + raw[1:] + cbor2.dumps("nonce") + cbor2.dumps(b"again")
    with pytest.raises(FormatError) as err:
        NitroPayload.from_bytes(dup)
    assert (err.value.structure, err.value.field, err.value.got) == ("NitroPayload", "map_key",
                                                                     "nonce")


def test_duplicate_pcr_index_is_a_format_error() -> None:
    pcrs = b"\xa2" + b"\x00\x58\x30" + bytes(48) + b"\x00\x58\x30" + bytes(48)
    raw = cbor2.dumps(_payload(pcrs={1: bytes(48)}))
    one = b"\xa1\x01\x58\x30" + bytes(48)
    with pytest.raises(FormatError) as err:
        NitroPayload.from_bytes(raw.replace(one, pcrs))
    assert (err.value.structure, err.value.field, err.value.got) == ("NitroPayload", "map_key", 0)


def test_huge_declared_lengths_are_bounded() -> None:
    # array of 2**63 items, map of 2**32 entries, bstr of 2**32 bytes: refused without work.
    for head in (b"\x9b\x80" + bytes(7), b"\xba\xff\xff\xff\xff", b"\x5a\xff\xff\xff\xff"):
        with pytest.raises(FormatError):
            NitroDocument.from_bytes(head + bytes(16))


def test_deep_nesting_is_bounded() -> None:
    with pytest.raises(FormatError):
        NitroDocument.from_bytes(b"\x81" * 2000 + b"\x00")


def test_oversized_document_is_refused() -> None:
    with pytest.raises(FormatError) as err:
        NitroDocument.from_bytes(b"\x84" + bytes(40_000))
    assert err.value.field == "<document>"


def _use(doc: NitroDocument) -> None:
    """Whatever parses must also be usable: properties and re-encoding never raise."""
    assert doc.payload.timestamp.tzinfo is not None
    assert isinstance(doc.payload.debug_mode, bool)
    assert NitroDocument.from_bytes(doc.to_bytes()).payload == doc.payload
    assert doc.sig_structure


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600))
def test_arbitrary_bytes_only_raise_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        _use(NitroDocument.from_bytes(data))


_CBOR_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=64)
    | st.text(max_size=16) | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.integers(0, 40) | st.text(max_size=12), inner, max_size=5),
    max_leaves=20)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(_CBOR_VALUES)
def test_arbitrary_cbor_payloads_only_raise_format_error(value: Any) -> None:
    with contextlib.suppress(FormatError):
        _use(NitroDocument.from_bytes(_doc(value)))


_SAMPLE = (NITRO_CASES[0].path.read_bytes()
           if evidence_available() and NITRO_CASES[0].path.is_file() else _doc())


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(_SAMPLE) - 1), st.integers(0, 255)),
                min_size=1, max_size=4),
       st.integers(0, len(_SAMPLE)))
def test_mutated_real_document_only_raises_format_error(
        edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(_SAMPLE)
    for at, value in edits:
        data[at] = value
    for candidate in (bytes(data), bytes(data[:cut])):
        with contextlib.suppress(FormatError):
            _use(NitroDocument.from_bytes(candidate))
