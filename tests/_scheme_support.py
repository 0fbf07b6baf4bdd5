"""Helpers for the front-door tests of every scheme: a fresh challenge, the binding it asks
for, and mutated evidence for the property tests (import as ``from _scheme_support import``)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import strategies as st

from veritee import attest, schemes


def challenge(nonce: bytes = b"fresh nonce") -> attest.Challenge:
    """A challenge binding ``nonce`` to a new TEE key."""
    return attest.Challenge.for_key(nonce, ec.generate_private_key(ec.SECP384R1()).public_key())


def bound(c: attest.Challenge, size: int = 64) -> bytes:
    """What evidence with ``size`` bytes of binding must carry for ``c``."""
    return schemes.expected_binding(c.nonce, c.key_spki, size)


@st.composite
def mutated(draw: st.DrawFn, seeds: tuple[bytes, ...]) -> bytes:
    """One of ``seeds`` with one to three bit flips, cuts or insertions."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        data = data or bytearray(b"\x00")
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        if kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[at:at + draw(st.integers(1, 64))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data) or b"\x00"
