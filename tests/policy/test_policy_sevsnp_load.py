"""SEV-SNP policy files: TOML/JSON loading, strict keys and types, and the JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from veritee.errors import ConfigError
from veritee.formats.sevsnp import Product, SigningKey
from veritee.policy.sevsnp import (
    DEFAULT_TCB_FLOOR,
    SevSnpPolicy,
    TcbFloor,
    load_policy,
    policy_from_mapping,
    policy_to_mapping,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "sevsnp-policy.toml"
M1, M2 = "ab" * 48, "cd" * 48


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def roundtrip(policy: SevSnpPolicy) -> SevSnpPolicy:
    return policy_from_mapping(json.loads(json.dumps(policy_to_mapping(policy))))


# -- defaults ------------------------------------------------------------------------------------


def test_secure_defaults() -> None:
    p = SevSnpPolicy()
    assert p.allow_debug is False
    assert p.allow_migration_agent is False
    assert p.allowed_vmpls == {0}
    assert p.min_report_version == 2
    assert p.allowed_signing_keys == {SigningKey.VCEK, SigningKey.VLEK}
    assert p.min_tcb == DEFAULT_TCB_FLOOR  # a TCB floor always applies unless removed
    assert p.require_committed_equals_current is True  # issue 18: provisional firmware refused
    assert p.allow_unchecked_revocation is False  # issue 18: revocation checked or refused
    assert set(p.min_tcb) == {Product.MILAN, Product.GENOA}  # type: ignore[arg-type]
    assert policy_from_mapping({}) == p


def test_policy_is_hashable_and_immutable() -> None:
    p = SevSnpPolicy(min_tcb={Product.MILAN: TcbFloor(snp=3)})
    hash(p)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.allow_debug = True  # type: ignore[misc]
    # The per-product floors are a read-only view: the caller's dict cannot change the policy.
    with pytest.raises(TypeError):
        p.min_tcb[Product.GENOA] = TcbFloor()  # type: ignore[index]


# -- loading -------------------------------------------------------------------------------------


def test_load_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "p.toml", f"""
policy_id = "prod"
measurements = ["0x{M1}", "{M2.upper()}"]
host_data = "{'11' * 32}"
allowed_products = ["Milan"]
allowed_signing_keys = ["VCEK"]
allowed_vmpls = [0, 1]
min_abi = [1, 51]
min_firmware = "1.55.21"
[min_tcb]
bootloader = 3
microcode = 115
""")
    p = load_policy(path)
    assert p.policy_id == "prod"
    assert p.measurements == frozenset({bytes.fromhex(M1), bytes.fromhex(M2)})
    assert p.host_data == b"\x11" * 32
    assert p.allowed_products == frozenset({Product.MILAN})
    assert p.allowed_signing_keys == {SigningKey.VCEK}
    assert p.allowed_vmpls == {0, 1}
    assert p.min_abi == (1, 51)
    assert p.min_firmware == (1, 55, 21)
    assert p.min_tcb == TcbFloor(bootloader=3, microcode=115)


def test_load_toml_per_product_floors(tmp_path: Path) -> None:
    path = write(tmp_path, "p.toml", """
[min_tcb.Milan]
snp = 8
[min_tcb.Turin]
fmc = 1
""")
    assert load_policy(path).min_tcb == {Product.MILAN: TcbFloor(snp=8),
                                         Product.TURIN: TcbFloor(fmc=1)}


def test_load_json_with_null_meaning_not_checked(tmp_path: Path) -> None:
    path = write(tmp_path, "p.json", json.dumps({
        "measurements": [M1], "min_tcb": None, "min_report_version": 3,
    }))
    p = load_policy(path)
    assert p.measurements == frozenset({bytes.fromhex(M1)})
    assert p.min_tcb is None
    assert p.min_report_version == 3


@pytest.mark.parametrize(("text", "want"), [
    (json.dumps({"allow_smt": False}), False),
    ("allow_smt = false\n", False),
])
def test_format_sniffed_without_known_extension(tmp_path: Path, text: str, want: bool) -> None:
    assert load_policy(write(tmp_path, "policy.conf", text)).allow_smt is want


def test_example_file_covers_every_key_and_loads() -> None:
    keys = set(tomllib.loads(EXAMPLE.read_text()))
    assert keys == {f.name for f in dataclasses.fields(SevSnpPolicy)}
    p = load_policy(EXAMPLE)
    assert p.floor_for(Product.TURIN) == TcbFloor(fmc=1, bootloader=1, tee=1, snp=1, microcode=1)
    assert roundtrip(p) == p


# -- unknown keys, types and lengths ----------------------------------------------------------


@pytest.mark.parametrize(("text", "path"), [
    ("measurement = []\n", "measurement: unknown key"),
    ("[min_tcb]\nbootlader = 3\n", "min_tcb.bootlader: unknown key"),
    ("[min_tcb.Milan]\nbootlader = 3\n", "min_tcb.Milan.bootlader: unknown key"),
    ("[min_tcb.Naples]\nsnp = 1\n", "min_tcb.Naples: unknown key"),
])
def test_unknown_key_named_with_its_path(tmp_path: Path, text: str, path: str) -> None:
    with pytest.raises(ConfigError, match=path) as info:
        load_policy(write(tmp_path, "p.toml", text))
    assert "known keys:" in str(info.value)
    assert "p.toml" in str(info.value)


def test_unknown_nested_key_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        policy_from_mapping({"min_tcb": {"Milan": {"bootlader": 3}}})
    assert str(info.value) == ("min_tcb.Milan.bootlader: unknown key; known keys: "
                               "bootloader, tee, snp, microcode, fmc")


def test_flat_and_per_product_floors_cannot_mix() -> None:
    with pytest.raises(ConfigError, match=r"min_tcb\.snp: .*per-product"):
        policy_from_mapping({"min_tcb": {"Milan": {"snp": 1}, "snp": 2}})


@pytest.mark.parametrize(("data", "match"), [
    ({"measurements": ["ab" * 47]}, r"measurements\[0\]: got 94 hex digits, want .*48 bytes"),
    ({"measurements": [M1, "ab" * 49]}, r"measurements\[1\]: got 98 hex digits"),
    ({"report_data": "00" * 63}, r"report_data: got 126 hex digits, want .*64 bytes"),
    ({"host_data": "0x" + "00" * 33}, r"host_data: got 66 hex digits, want .*32 bytes"),
    ({"family_id": "zz" * 16}, r"family_id: got 'zz"),
    ({"image_id": 1234}, r"image_id: got 1234, want a hex string of 16 bytes"),
    ({"chip_ids": ["00" * 32]}, r"chip_ids\[0\]: got 64 hex digits"),
    ({"id_key_digests": ["0x" + "00" * 47]}, r"id_key_digests\[0\]: got 94"),
])
def test_bad_hex_lengths_and_values(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        policy_from_mapping(data)


@pytest.mark.parametrize(("data", "match"), [
    ({"allow_debug": "yes"}, r"allow_debug: got 'yes', want true or false"),
    ({"allow_debug": 1}, r"allow_debug: got 1, want true or false"),
    ({"allow_debug": None}, r"allow_debug: got None"),
    ({"min_guest_svn": True}, r"min_guest_svn: got True, want an integer"),
    ({"min_guest_svn": -1}, r"min_guest_svn: got -1"),
    ({"min_guest_svn": 1.5}, r"min_guest_svn: got 1.5"),
    ({"allowed_vmpls": [0, 4]}, r"allowed_vmpls\[1\]: got 4, want an integer 0..3"),
    ({"allowed_vmpls": []}, r"allowed_vmpls: got \[\], want a non-empty list"),
    ({"measurements": []}, r"measurements: got \[\], want a non-empty list"),
    ({"allowed_products": ["milan"]}, r"allowed_products\[0\]: got 'milan', want one of Milan"),
    ({"allowed_signing_keys": ["NONE"]}, r"allowed_signing_keys\[0\]: got 'NONE'"),
    ({"min_abi": "1.55.3"}, r"min_abi: got '1.55.3', want 2 integers"),
    ({"min_firmware": [1, 55, 256]}, r"min_firmware\[2\]: got 256, want an integer 0..255"),
    ({"min_tcb": {"snp": 256}}, r"min_tcb.snp: got 256"),
    ({"min_tcb": [1, 2]}, r"min_tcb: got \[1, 2\], want a table"),
    ({"policy_id": ""}, r"policy_id: got '', want a non-empty string"),
    ({"id_key_digests": ["00" * 48]}, r"id_key_digests: got 'an all-zero digest'"),
])
def test_wrong_types_name_field_got_want(data: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        policy_from_mapping(data)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_policy(write(tmp_path, "bad.toml", "allow_debug = \n"))
    with pytest.raises(ConfigError, match="invalid JSON"):
        load_policy(write(tmp_path, "bad.json", "{"))
    with pytest.raises(ConfigError, match="top level"):
        load_policy(write(tmp_path, "list.json", "[]"))


# -- programmatic construction is validated too ------------------------------------------------


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"measurements": frozenset({b"short"})}, r"measurements\[\]: got 5 bytes, want 48"),
    ({"report_data": b"\x00" * 32}, r"report_data: got 32 bytes, want 64"),
    ({"allowed_vmpls": frozenset()}, r"allowed_vmpls: .*non-empty"),
    ({"allowed_signing_keys": frozenset({SigningKey.NONE})}, r"allowed_signing_keys"),
    ({"author_key_digests": frozenset({bytes(48)})}, r"author_key_digests: .*all-zero"),
    ({"min_tcb": {}}, r"min_tcb"),
    ({"min_tcb": {"Milan": TcbFloor()}}, r"min_tcb"),
    ({"min_abi": (1, 2, 3)}, r"min_abi"),
    ({"allow_debug": "false"}, r"allow_debug"),
])
def test_constructor_rejects_bad_values(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SevSnpPolicy(**kwargs)


def test_tcb_floor_range_checked() -> None:
    with pytest.raises(ConfigError, match=r"min_tcb.microcode: got 300"):
        TcbFloor(microcode=300)


def test_sets_given_as_lists_are_frozen() -> None:
    p = SevSnpPolicy(measurements=[bytes(48)], allowed_vmpls=[0, 1])  # type: ignore[arg-type]
    assert p.measurements == frozenset({bytes(48)})
    assert isinstance(p.allowed_vmpls, frozenset)


# -- round trip ----------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", [
    SevSnpPolicy(),
    SevSnpPolicy(min_tcb=None, allowed_products=frozenset({Product.GENOA})),
    SevSnpPolicy(
        policy_id="every-field",
        measurements=frozenset({bytes.fromhex(M1), bytes.fromhex(M2)}),
        report_data=bytes(range(64)), host_data=b"\x01" * 32,
        id_key_digests=frozenset({b"\x02" * 48}), author_key_digests=frozenset({b"\x03" * 48}),
        family_id=b"\x04" * 16, image_id=b"\x05" * 16, min_guest_svn=9,
        chip_ids=frozenset({b"\x06" * 64}), allowed_products=frozenset(Product),
        allowed_signing_keys=frozenset({SigningKey.VLEK}), min_report_version=5,
        allowed_vmpls=frozenset({0, 2}), allow_debug=True, allow_migration_agent=True,
        allow_smt=False, require_single_socket=True, min_abi=(1, 55),
        min_tcb={Product.MILAN: TcbFloor(3, 0, 8, 115), Product.TURIN: TcbFloor(fmc=1)},
        min_firmware=(1, 55, 21), require_committed_equals_current=True,
        require_smt_disabled=True, require_tsme=True),
], ids=["default", "no-floor", "every-field"])
def test_round_trip_through_json(policy: SevSnpPolicy) -> None:
    mapping = policy_to_mapping(policy)
    assert set(mapping) == {f.name for f in dataclasses.fields(SevSnpPolicy)}
    assert roundtrip(policy) == policy
    # Deterministic output: the same policy always serialises to the same JSON.
    assert json.dumps(mapping) == json.dumps(policy_to_mapping(roundtrip(policy)))
