"""Linear-time parsers: for each parser, doubling the input four times must multiply the
time by about sixteen, not by 256 (what a quadratic parser does).

This is a benchmark-style check, not a wall-clock assertion: the best CPU times of interleaved
runs at size n and 16n are compared (garbage collection paused); the bound, x48, is three
times what linear parsers measure (x14-x17, also under load 13 on 2 cores) while a quadratic
parser fails it (the old event-log parser measured x112 here). The
event-log case is the regression test for the quadratic ``any(buf[pos:])`` that made a 15 MB
log take 136 s.
"""

from __future__ import annotations

import base64
import dataclasses
import gc
import struct
import time
from collections.abc import Callable

import pytest

from veritee._decode import decode_binary_text, load_cbor, load_json
from veritee.formats.eventlog import EventLog
from veritee.formats.ima import ImaLog
from veritee.formats.tsm import TsmReport

from _evidence import EVIDENCE_DIR, evidence_available

RATIO = 48.0  # linear: ~16 (x14-x17 measured); quadratic: ~256 (x112 measured: caches)
FACTOR = 16


def _ratio(fn: Callable[[bytes], object], small: bytes, large: bytes, runs: int = 5) -> float:
    """Best CPU time at ``large`` over best CPU time at ``small``, runs interleaved.

    CPU time of this process (``process_time``), not wall time: on a loaded machine the time
    spent descheduled is not the parser's. Interleaving puts both sizes under the same load;
    garbage collection is paused, so a collection landing in one run only is not counted.
    """
    fn(small)  # warm up (imports, caches)
    best = {len(small): float("inf"), len(large): float("inf")}
    gc.collect()
    gc.disable()
    try:
        for _ in range(runs):
            for data in (small, large):
                t0 = time.process_time()
                fn(data)
                best[len(data)] = min(best[len(data)], time.process_time() - t0)
    finally:
        gc.enable()
    return best[len(large)] / max(best[len(small)], 1e-6)


def _legacy_log(n: int) -> bytes:
    # TCG PC Client FPF, 10.2.1 TCG_PCR_EVENT: pcrIndex, eventType, SHA-1 digest, size, data.
    return (struct.pack("<II", 1, 0xD) + b"\x01" * 20 + struct.pack("<I", 0)) * n


def _ima_ascii(n: int) -> bytes:
    line = "10 " + "00" * 20 + " ima-ng sha256:" + "11" * 32 + " /usr/bin/x\n"
    return (line * n).encode()


def _ima_binary(n: int) -> bytes:
    return ImaLog.from_ascii(_ima_ascii(n)).to_binary()


def _json(n: int) -> bytes:
    return b'{"a": [' + b"1, " * n + b'1], "b": "' + b"x" * n + b'"}'


def _cbor(n: int) -> bytes:
    # RFC 8949: array (4-byte length) of n small unsigned integers.
    return b"\x9a" + n.to_bytes(4, "big") + b"\x01" * n


def _hex_text(n: int) -> bytes:
    h = (bytes(range(256)) * (n // 256 + 1))[:n].hex()
    return "\n".join(h[i:i + 64] for i in range(0, len(h), 64)).encode()


def _tsm(n: int) -> bytes:
    blob = base64.urlsafe_b64encode(b"\x5a" * n).rstrip(b"=").decode()
    return f'{{"provider": "sev_guest", "outblob": "{blob}"}}'.encode()


CASES: dict[str, tuple[Callable[[bytes], object], Callable[[int], bytes], int]] = {
    "eventlog": (EventLog.from_bytes, _legacy_log, 4_000),
    "ima_ascii": (ImaLog.from_ascii, _ima_ascii, 1_000),
    "ima_binary": (ImaLog.from_binary, _ima_binary, 1_000),
    "json": (lambda d: load_json(d, structure="t", max_size=1 << 24), _json, 10_000),
    "cbor": (lambda d: load_cbor(d, structure="t", max_size=1 << 24), _cbor, 20_000),
    "text": (lambda d: decode_binary_text(d, structure="t", field="f"), _hex_text, 400_000),
    "tsm": (TsmReport.from_bytes, _tsm, 30_000),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_doubling_the_input_four_times_multiplies_the_time_by_about_sixteen(name: str) -> None:
    parse, make, n = CASES[name]
    ratio = _ratio(parse, make(n), make(FACTOR * n))
    assert ratio < RATIO, f"{name}: x{ratio:.1f} for x{FACTOR} input (linear ~16)"


@pytest.mark.skipif(not evidence_available(), reason="no shared evidence")
def test_doubling_the_quote_certification_data_four_times_is_linear() -> None:
    from veritee.collateral.intel import read_quote
    from veritee.formats.intel import CertificationData, Quote

    q = Quote.from_bytes(read_quote(EVIDENCE_DIR / "tdx" / "v4-trustee-50806f" /
                                    "tdx_quote_4.dat"))

    def quote_with(n: int) -> bytes:
        qe = q.signature_data.qe
        cd = CertificationData(cert_type=5, data=b"\x30\x00" * n)
        return dataclasses.replace(q, signature_data=dataclasses.replace(
            q.signature_data, qe=dataclasses.replace(qe, certification_data=cd))).to_bytes()

    def parse(d: bytes) -> object:
        return Quote.from_bytes(d).signature_data.qe.certification_data.pck_chain_bytes

    ratio = _ratio(parse, quote_with(10_000), quote_with(FACTOR * 10_000))
    assert ratio < RATIO, f"quote: x{ratio:.1f} for x{FACTOR} input"
