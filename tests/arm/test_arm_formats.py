"""Strict CBOR / COSE_Sign1 / PSA / CCA parsing: malformed inputs raise FormatError."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.collateral.arm import parse_public_key, public_key_from_jwk
from veritee.errors import ConfigError, FormatError
from veritee.formats.cca import CcaToken, RealmPublicKey
from veritee.formats.cose import MAX_DEPTH, CoseAlg, CoseSign1, Tag, decode_cbor, encode_cbor
from veritee.formats.psa import PsaToken, lifecycle_state

from _arm_support import cca_token, psa_token, sign1


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize("value", [0, 23, 24, 255, 256, 2**32, 2**64 - 1, -1, -24, -25,
                                   -(2**64), b"", b"\x00" * 300, "", "héllo", (), (1, (2,)),
                                   {1: 2, "a": b"b", b"k": (None, True, False)},
                                   Tag(18, (b"x",)), Tag(399, {44234: b""})])
def test_cbor_round_trip(value: object) -> None:
    assert decode_cbor(encode_cbor(value)) == (value if not isinstance(value, dict)
                                               else dict(value))


@pytest.mark.parametrize(("data", "why"), [
    (b"", "empty"), (b"\x01\x02", "trailing bytes"), (b"\x5f\x41\x00\xff", "indefinite"),
    (b"\xa2\x01\x02\x01\x03", "duplicate map key"), (b"\xf9\x00\x00", "half float"),
    (b"\xfb" + b"\x00" * 8, "double"), (b"\xf7", "undefined"), (b"\x1c", "reserved info"),
    (b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff", "huge bstr"),
    (b"\x9b\x7f\xff\xff\xff\xff\xff\xff\xff", "huge array"),
    (b"\x62\xff\xfe", "bad utf-8"), (b"\xa1\x80\x01", "array as map key"),
    (b"\x81" * (MAX_DEPTH + 2) + b"\x00", "too deep"),
    (b"\x40" * 2, "two items"), (b"\x00" * (64 * 1024 + 1), "too big"),
])
def test_strict_cbor_rejects(data: bytes, why: str) -> None:
    with pytest.raises(FormatError):
        decode_cbor(data)


def test_cose_sign1_round_trip_and_sig_structure() -> None:
    raw = sign1(b"\xa0", _key())
    msg = CoseSign1.from_bytes(raw)
    assert msg.tagged and msg.alg is CoseAlg.ES256 and msg.to_bytes() == raw
    # RFC 9052 s4.4: ["Signature1", h'A10126', h'', h'A0']
    # 84 (array 4) 6a "Signature1" 43 a10126 40 (empty aad) 41 a0 (payload)
    assert msg.sig_structure() == bytes.fromhex("846a5369676e61747572653143a10126" "40" "41a0")
    untagged = sign1(b"\xa0", _key(), tagged=False)
    assert not CoseSign1.from_bytes(untagged).tagged


@pytest.mark.parametrize(("item", "why"), [
    (Tag(17, (b"\xa1\x01\x05", {}, b"", b"s")), "COSE_Mac0 tag"),
    ((b"\xa1\x01\x26", {}, b""), "3 elements"),
    ((b"", {}, b"p", b"s"), "empty protected"),
    ((encode_cbor({1: -257}), {}, b"p", b"s"), "RS256 not accepted"),
    ((encode_cbor({4: b"kid"}), {}, b"p", b"s"), "no alg"),
    ((encode_cbor({1: -7}), {1: -7}, b"p", b"s"), "alg unprotected"),
    ((encode_cbor({1: -7}), {}, None, b"s"), "detached payload"),
    ((encode_cbor({1: -7}), {}, b"p", b""), "empty signature"),
    ((encode_cbor((1, -7)), {}, b"p", b"s"), "protected not a map"),
    ((encode_cbor({1: True}), {}, b"p", b"s"), "bool alg"),
])
def test_malformed_cose_sign1_is_rejected(item: object, why: str) -> None:
    with pytest.raises(FormatError):
        CoseSign1.from_bytes(encode_cbor(item))


def test_p1_and_p2_claim_keys_together_are_malformed() -> None:
    from _arm_support import psa_claims
    claims = psa_claims()
    claims[-75000] = "PSA_IOT_PROFILE_1"
    with pytest.raises(FormatError):
        PsaToken.from_bytes(sign1(encode_cbor(claims), _key()))


@pytest.mark.parametrize("over", [
    {"nonce": b"\x00" * 31}, {"implementation_id": b"\x00" * 31}, {"lifecycle": 0x7000},
    {"lifecycle": -1}, {"sw_components": ()}, {"sw_components": ({1: "BL"},)},
    {"boot_seed": b"\x00" * 4}, {"client_id": "one"}, {"profile": 5}])
def test_psa_claims_out_of_spec_are_malformed(over: dict[str, object]) -> None:
    with pytest.raises(FormatError):
        PsaToken.from_bytes(psa_token(_key(), **over))


def test_lifecycle_states() -> None:
    assert lifecycle_state(0x3000) == lifecycle_state(0x30FF) == "secured"
    assert lifecycle_state(0x3100) == "invalid"


def test_cca_legacy_collection_with_bare_bstr_values_is_malformed() -> None:
    parts = cca_token()
    t = CcaToken.from_bytes(parts.token)
    bad = encode_cbor(Tag(907, {44234: t.platform.raw, 44241: t.realm.raw}))
    with pytest.raises(FormatError):
        CcaToken.from_bytes(bad)
    extra = encode_cbor(Tag(399, {44234: t.platform.raw, 44241: t.realm.raw, 1: b""}))
    with pytest.raises(FormatError):
        CcaToken.from_bytes(extra)
    with pytest.raises(FormatError):
        CcaToken.from_bytes(encode_cbor(Tag(398, {44234: t.platform.raw, 44241: t.realm.raw})))


def test_rak_forms() -> None:
    pub = ec.generate_private_key(ec.SECP384R1()).public_key()
    n = pub.public_numbers()
    point = b"\x04" + n.x.to_bytes(48, "big") + n.y.to_bytes(48, "big")
    raw = RealmPublicKey.from_claim(point)
    assert (raw.form, raw.curve, raw.sec1) == ("raw_point", "P-384", point)
    cose = RealmPublicKey.from_claim(encode_cbor({1: 2, -1: 2, -2: point[1:49],
                                                  -3: point[49:]}))
    assert (cose.form, cose.sec1) == ("cose_key", point)
    for bad in (point[:-1], encode_cbor({1: 1, -1: 6, -2: b"x" * 32}),
                encode_cbor({1: 2, -1: 2, -2: point[1:49]}), b"", 5):
        with pytest.raises(FormatError):
            RealmPublicKey.from_claim(bad)


def test_key_loading_forms() -> None:
    with pytest.raises(ConfigError):
        public_key_from_jwk({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"})
    with pytest.raises(ConfigError):
        public_key_from_jwk({"kty": "RSA"})
    with pytest.raises(ConfigError):
        parse_public_key(b"not a key")
    with pytest.raises(ConfigError):
        parse_public_key(b"[1, 2]")


def test_bool_map_key_cannot_pose_as_alg() -> None:
    """``{true: -35}`` must not read as ``{1: -35}`` (Python's True == 1)."""
    from veritee.errors import FormatError
    from veritee.formats.cose import CoseSign1, decode_cbor

    with pytest.raises(FormatError) as exc:
        decode_cbor(bytes.fromhex("a1f53822"))
    assert exc.value.field == "map_key"
    message = bytes.fromhex("d284") + bytes.fromhex("44a1f53822") + bytes.fromhex("a0") \
        + bytes.fromhex("41") + b"x" + bytes.fromhex("4100")
    with pytest.raises(FormatError):
        CoseSign1.from_bytes(message)
