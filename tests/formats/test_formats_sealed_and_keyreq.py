"""Sealed header and MSG_KEY_REQ: round trips, reserved fields, and FormatError only."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.errors import FormatError
from veritee.formats.sealed import HEADER_SIZE, SealedHeader, SealKind, SealPolicyKind
from veritee.formats.sevsnp import GuestFieldSelect, MsgKeyReq, RootKeySelect


def _header(kind: SealKind = SealKind.BLOB) -> SealedHeader:
    return SealedHeader(kind=kind, policy=SealPolicyKind.SIGNER, root_key_select=0,
                        guest_field_select=0x3F, vmpl=1, guest_svn=7, tcb_version=0x1234,
                        counter_id=os.urandom(16), counter_value=3, salt=os.urandom(32),
                        chunk_size=0 if kind is SealKind.BLOB else 4096,
                        nonce=os.urandom(12) if kind is SealKind.BLOB
                        else os.urandom(7) + bytes(5))


@pytest.mark.parametrize("kind", list(SealKind))
def test_sealed_header_round_trip(kind: SealKind) -> None:
    h = _header(kind)
    raw = h.to_bytes()
    assert len(raw) == HEADER_SIZE and raw[:4] == b"VTSL"
    assert SealedHeader.from_bytes(raw) == h
    assert SealedHeader.from_bytes(raw + b"payload") == h


@pytest.mark.parametrize(("offset", "field"), [
    (0, "MAGIC"), (4, "FORMAT_VERSION"), (5, "KIND"), (6, "POLICY"), (7, "ROOT_KEY_SELECT"),
    (0x58, "CHUNK_SIZE"), (0x5C, "TEE"), (0x5D, "reserved"), (0x6C, "reserved")])
def test_sealed_header_field_errors(offset: int, field: str) -> None:
    raw = bytearray(_header().to_bytes())
    raw[offset] = 0xEE
    with pytest.raises(FormatError) as exc:
        SealedHeader.from_bytes(bytes(raw))
    assert exc.value.field == field


def test_stream_nonce_prefix_padding_must_be_zero() -> None:
    raw = bytearray(_header(SealKind.STREAM).to_bytes())
    raw[0x6B] = 1
    with pytest.raises(FormatError, match="NONCE_PREFIX"):
        SealedHeader.from_bytes(bytes(raw))


@settings(max_examples=200)
@given(st.binary(max_size=2 * HEADER_SIZE))
def test_sealed_header_arbitrary_bytes_only_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        SealedHeader.from_bytes(data)


def test_msg_key_req_round_trip_and_layout() -> None:
    req = MsgKeyReq(root_key_select=RootKeySelect.VMRK, key_sel=1,
                    guest_field_select=GuestFieldSelect.MEASUREMENT | GuestFieldSelect.GUEST_SVN,
                    vmpl=2, guest_svn=9, tcb_version=0x0102030405060708)
    raw = req.to_bytes()
    assert len(raw) == 0x20
    assert raw[0:4] == (1 | 1 << 1).to_bytes(4, "little")  # ROOT_KEY_SELECT, KEY_SEL
    assert raw[0x08:0x10] == (0b11000).to_bytes(8, "little")
    assert raw[0x10:0x14] == (2).to_bytes(4, "little")
    assert raw[0x14:0x18] == (9).to_bytes(4, "little")
    assert raw[0x18:0x20] == (0x0102030405060708).to_bytes(8, "little")
    assert MsgKeyReq.from_bytes(raw) == req


@pytest.mark.parametrize(("offset", "value"), [(0, 0x08), (4, 1), (0x08 + 0, 0x40), (0x10, 4)])
def test_msg_key_req_reserved_and_ranges(offset: int, value: int) -> None:
    raw = bytearray(MsgKeyReq().to_bytes())
    raw[offset] = value
    with pytest.raises(FormatError):
        MsgKeyReq.from_bytes(bytes(raw))


@settings(max_examples=200)
@given(st.binary(min_size=0x20, max_size=0x20))
def test_msg_key_req_arbitrary_bytes_only_format_error(data: bytes) -> None:
    with contextlib.suppress(FormatError):
        MsgKeyReq.from_bytes(data)
