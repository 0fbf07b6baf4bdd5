"""The emulated Intel structures' parsers only ever raise FormatError on arbitrary bytes, and
round-trip what they accept (TDREPORT, SIGSTRUCT, TARGETINFO, KEYREQUEST)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.errors import FormatError
from veritee.platform.emulated.sgx import (
    KEYREQUEST_SIZE,
    SIGSTRUCT_SIZE,
    TARGETINFO_SIZE,
    KeyRequest,
    Sigstruct,
    TargetInfo,
)
from veritee.platform.emulated.tdx import TDREPORT_SIZE, TdReport

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
PARSERS = {"TdReport": (TdReport.from_bytes, TDREPORT_SIZE),
           "Sigstruct": (Sigstruct.from_bytes, SIGSTRUCT_SIZE),
           "TargetInfo": (TargetInfo.from_bytes, TARGETINFO_SIZE),
           "KeyRequest": (KeyRequest.from_bytes, KEYREQUEST_SIZE)}


@pytest.mark.parametrize("name", sorted(PARSERS))
@PROPERTY
@given(data=st.data())
def test_parser_only_raises_format_error(name: str, data: st.DataObject) -> None:
    parse, size = PARSERS[name]
    raw = data.draw(st.one_of(st.binary(max_size=2 * size),
                              st.binary(min_size=size, max_size=size)))
    try:
        value = parse(raw)
    except FormatError:
        return
    assert value.to_bytes() == raw or name in ("TargetInfo", "KeyRequest", "TdReport")


@PROPERTY
@given(st.binary(min_size=TDREPORT_SIZE, max_size=TDREPORT_SIZE))
def test_tdreport_round_trips_when_it_parses(raw: bytes) -> None:
    raw = bytes([0x81]) + raw[1:]
    r = TdReport.from_bytes(raw)
    # Bytes 4..16 and 192..224 of REPORTMACSTRUCT are reserved: rebuilt as zero.
    again = TdReport.from_bytes(r.to_bytes())
    assert again == r
