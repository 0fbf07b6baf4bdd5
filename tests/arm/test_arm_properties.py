"""Property tests: the Arm parsers only ever raise FormatError, on arbitrary or mutated bytes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.errors import FormatError, VerificationError
from veritee.formats.cca import CcaToken
from veritee.formats.cose import CoseSign1, decode_cbor
from veritee.formats.psa import PsaToken
from veritee.trust.cca import verify_cca_token
from veritee.trust.psa import verify_psa_token

from _arm_support import MANIFEST, cca_token, psa_token, sample_path
from _evidence import manifest_samples

PARSERS: dict[str, Callable[[bytes], Any]] = {
    "cbor": decode_cbor, "cose": CoseSign1.from_bytes, "psa": PsaToken.from_bytes,
    "cca": CcaToken.from_bytes,
}


@cache
def _seeds() -> tuple[bytes, ...]:
    out = [psa_token(ec.generate_private_key(ec.SECP256R1())), cca_token().token,
           cca_token(legacy=True).token]
    for s in manifest_samples("psa/", MANIFEST) + manifest_samples("cca/", MANIFEST):
        for role in ("token_sign1", "token", "cca_token", "good_token_399"):
            if role in s["files"]:
                out.append(sample_path(s, role).read_bytes())
    return tuple(out)


def _only_format_error(parse: Callable[[bytes], Any], data: bytes) -> None:
    with contextlib.suppress(FormatError):
        parse(data)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512))
@pytest.mark.parametrize("name", sorted(PARSERS))
def test_arbitrary_bytes_only_raise_format_error(name: str, data: bytes) -> None:
    _only_format_error(PARSERS[name], data)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    seed = bytearray(draw(st.sampled_from(_seeds())))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "set"]))
        at = draw(st.integers(0, len(seed) - 1))
        if kind == "flip":
            seed[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            seed[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del seed[at:at + draw(st.integers(1, 16))]
        else:
            seed[at:at] = draw(st.binary(min_size=1, max_size=8))
        if not seed:
            seed = bytearray(b"\x00")
    return bytes(seed)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_mutated())
@pytest.mark.parametrize("name", sorted(PARSERS))
def test_mutated_tokens_only_raise_format_error(name: str, data: bytes) -> None:
    _only_format_error(PARSERS[name], data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_mutated())
def test_verifiers_raise_only_format_or_verification_errors(data: bytes) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    for verify in (lambda d: verify_psa_token(d, iak_public_key=key),
                   lambda d: verify_cca_token(d, cpak_public_key=key)):
        with contextlib.suppress(FormatError, VerificationError):
            verify(data)
