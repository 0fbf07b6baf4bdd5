"""Arm CCA attestation tokens (RMM spec DEN0137 A.7 "CCA attestation token"): bytes -> claims.

Envelope (two generations, both read):

* current: CBOR tag 399 ``{44234: bstr(platform COSE_Sign1), 44241: bstr(realm COSE_Sign1)}``
  (RMM 1.0 A.7.1.1; islet/veraison ``TAG_CCA_TOKEN = 399``);
* legacy draft: CBOR tag 907 ``{44234: [content-format, bstr], 44241: [content-format, bstr]}``
  (a CMW collection; veraison/ccatoken ``CBORCMWCollection``). A tag-907 map whose values are
  bare bstr is rejected, as veraison/ccatoken does.

Platform token claims (draft-ffm-rats-cca-token, keys shared with RFC 9783): profile 265,
challenge 10 (32/48/64 bytes), implementation-id 2396 (32 bytes), instance-id 256 (33 bytes,
0x01 ||...), config 2401, lifecycle 2395, sw-components 2399, verification-service 2400,
hash-algo-id 2402. Realm token claims (RMM A.7.2.3): challenge 10 (64 bytes), personalization
value 44235 (64 bytes), hash-algo-id 44236, public-key (RAK) 44237, initial measurement 44238,
extensible measurements 44239 (array of 4), public-key-hash-algo-id 44240, profile 265.

The RAK claim is either a bstr-wrapped COSE_Key (RFC 9052 s7: kty 2 EC2, crv 1/2/3, x, y) or,
in pre-1.0 tokens (TF-RMM before the profile claim), a raw uncompressed SEC1 point
``0x04 || x || y``; :class:`RealmPublicKey` carries both forms as coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from veritee.errors import FormatError
from veritee.formats.cose import CoseSign1, Tag, decode_cbor
from veritee.formats.psa import (
    SwComponent,
    _bstr,
    _tstr,
    _uint,
    lifecycle_state,
    parse_sw_components,
)

__all__ = [
    "CCA_LEGACY_TAG",
    "CCA_TOKEN_TAG",
    "CcaPlatformClaims",
    "CcaRealmClaims",
    "CcaToken",
    "RealmPublicKey",
]

CCA_TOKEN_TAG = 399
CCA_LEGACY_TAG = 907
PLATFORM_KEY = 44234
REALM_KEY = 44241

_PSTRUCT = "CCA platform token"
_RSTRUCT = "CCA realm token"
_STRUCT = "CCA token"

_EC2_CURVES = {1: ("P-256", 32), 2: ("P-384", 48), 3: ("P-521", 66)}


@dataclass(frozen=True)
class RealmPublicKey:
    """The RAK from claim 44237: an EC public key as affine coordinates.

    ``raw`` is the exact claim value (the bytes hashed for the platform binding),
    ``form`` is ``"cose_key"`` or ``"raw_point"``.
    """

    curve: str
    x: bytes
    y: bytes
    raw: bytes
    form: str

    @property
    def sec1(self) -> bytes:
        """Uncompressed SEC1 encoding ``0x04 || x || y``."""
        return b"\x04" + self.x + self.y

    @classmethod
    def from_claim(cls, value: Any) -> RealmPublicKey:
        """Parse claim 44237 (COSE_Key bstr or raw SEC1 point)."""
        raw = _bstr(_RSTRUCT, "public_key", value, range(1, 1025))
        if raw[0] == 0x04:
            for curve, size in _EC2_CURVES.values():
                if len(raw) == 1 + 2 * size:
                    return cls(curve, raw[1:1 + size], raw[1 + size:], raw, "raw_point")
            raise FormatError(_RSTRUCT, "public_key", got=f"{len(raw)}-byte point",
                              want="65, 97 or 133 bytes")
        key = decode_cbor(raw, structure=f"{_RSTRUCT}.public_key")
        if not isinstance(key, dict):
            raise FormatError(_RSTRUCT, "public_key", got=type(key).__name__,
                              want="COSE_Key map or SEC1 point")
        if key.get(1) != 2:
            raise FormatError(_RSTRUCT, "public_key.kty", got=key.get(1), want=2)
        crv = key.get(-1)
        if isinstance(crv, bool) or crv not in _EC2_CURVES:
            raise FormatError(_RSTRUCT, "public_key.crv", got=crv, want=sorted(_EC2_CURVES))
        curve, size = _EC2_CURVES[crv]
        x = _bstr(_RSTRUCT, "public_key.x", key.get(-2), (size,))
        y = _bstr(_RSTRUCT, "public_key.y", key.get(-3), (size,))
        return cls(curve, x, y, raw, "cose_key")


@dataclass(frozen=True)
class CcaPlatformClaims:
    """CCA platform token claims."""

    profile: str | None
    challenge: bytes
    implementation_id: bytes
    instance_id: bytes
    config: bytes
    lifecycle: int
    sw_components: tuple[SwComponent, ...]
    hash_algo_id: str
    verification_service: str | None = None

    @property
    def lifecycle_state(self) -> str:
        """Named lifecycle state (RFC 9783 s4.3.1 ranges, shared by CCA)."""
        return lifecycle_state(self.lifecycle)

    @classmethod
    def from_map(cls, c: Any) -> CcaPlatformClaims:
        """Validate a decoded platform claims map."""
        s = _PSTRUCT
        if not isinstance(c, dict):
            raise FormatError(s, "claims", got=type(c).__name__, want="map")
        for key, name in ((10, "challenge"), (2396, "implementation_id"),
                          (256, "instance_id"), (2401, "config"), (2395, "lifecycle"),
                          (2399, "sw_components"), (2402, "hash_algo_id")):
            if key not in c:
                raise FormatError(s, name, got="absent", want="present")
        instance = _bstr(s, "instance_id", c[256], (33,))
        if instance[0] != 0x01:
            raise FormatError(s, "instance_id", got=f"type 0x{instance[0]:02x}",
                              want="type 0x01")
        lifecycle = _uint(s, "lifecycle", c[2395])
        if lifecycle_state(lifecycle) == "invalid":
            raise FormatError(s, "lifecycle", got=hex(lifecycle), want="a lifecycle state")
        return cls(
            profile=None if 265 not in c else _tstr(s, "profile", c[265]),
            challenge=_bstr(s, "challenge", c[10], (32, 48, 64)),
            implementation_id=_bstr(s, "implementation_id", c[2396], (32,)),
            instance_id=instance,
            config=_bstr(s, "config", c[2401], range(0, 4097)),
            lifecycle=lifecycle,
            sw_components=parse_sw_components(s, c[2399]),
            hash_algo_id=_tstr(s, "hash_algo_id", c[2402]),
            verification_service=None if 2400 not in c else _tstr(s, "verification_service",
                                                                  c[2400]),
        )


@dataclass(frozen=True)
class CcaRealmClaims:
    """CCA realm token claims (RMM A.7.2.3)."""

    profile: str | None
    challenge: bytes
    personalization_value: bytes
    initial_measurement: bytes
    extensible_measurements: tuple[bytes, bytes, bytes, bytes]
    hash_algo_id: str
    public_key: RealmPublicKey
    public_key_hash_algo_id: str

    @classmethod
    def from_map(cls, c: Any) -> CcaRealmClaims:
        """Validate a decoded realm claims map."""
        s = _RSTRUCT
        if not isinstance(c, dict):
            raise FormatError(s, "claims", got=type(c).__name__, want="map")
        for key, name in ((10, "challenge"), (44235, "personalization_value"),
                          (44236, "hash_algo_id"), (44237, "public_key"),
                          (44238, "initial_measurement"), (44239, "extensible_measurements"),
                          (44240, "public_key_hash_algo_id")):
            if key not in c:
                raise FormatError(s, name, got="absent", want="present")
        rim = _bstr(s, "initial_measurement", c[44238], (32, 48, 64))
        rems = c[44239]
        if not isinstance(rems, tuple) or len(rems) != 4:
            raise FormatError(s, "extensible_measurements", got=rems if not isinstance(
                rems, tuple) else f"{len(rems)} entries", want="array of 4")
        r = tuple(_bstr(s, f"extensible_measurements[{i}]", v, (len(rim),))
                  for i, v in enumerate(rems))
        return cls(
            profile=None if 265 not in c else _tstr(s, "profile", c[265]),
            challenge=_bstr(s, "challenge", c[10], (64,)),
            personalization_value=_bstr(s, "personalization_value", c[44235], (64,)),
            initial_measurement=rim,
            extensible_measurements=(r[0], r[1], r[2], r[3]),
            hash_algo_id=_tstr(s, "hash_algo_id", c[44236]),
            public_key=RealmPublicKey.from_claim(c[44237]),
            public_key_hash_algo_id=_tstr(s, "public_key_hash_algo_id", c[44240]),
        )


def _sign1(structure: str, value: Any) -> CoseSign1:
    if not isinstance(value, bytes):
        raise FormatError(_STRUCT, structure, got=type(value).__name__, want="bstr")
    return CoseSign1.from_bytes(value, structure=structure)


@dataclass(frozen=True)
class CcaToken:
    """A CCA attestation token: both COSE_Sign1 envelopes and their validated claims."""

    collection_tag: int
    platform: CoseSign1
    platform_claims: CcaPlatformClaims
    realm: CoseSign1
    realm_claims: CcaRealmClaims
    raw: bytes = b""

    @classmethod
    def from_bytes(cls, data: bytes) -> CcaToken:
        """Parse a tag-399 (or legacy tag-907) CCA token."""
        top = decode_cbor(data, structure=_STRUCT)
        if not isinstance(top, Tag) or top.number not in (CCA_TOKEN_TAG, CCA_LEGACY_TAG):
            raise FormatError(_STRUCT, "tag", got=top.number if isinstance(top, Tag) else
                              type(top).__name__, want=[CCA_TOKEN_TAG, CCA_LEGACY_TAG])
        coll = top.value
        if not isinstance(coll, dict) or set(coll) != {PLATFORM_KEY, REALM_KEY}:
            raise FormatError(_STRUCT, "collection", got=sorted(map(str, coll)) if isinstance(
                coll, dict) else type(coll).__name__, want=[PLATFORM_KEY, REALM_KEY])
        parts = {}
        for key in (PLATFORM_KEY, REALM_KEY):
            value = coll[key]
            if top.number == CCA_LEGACY_TAG:
                if (not isinstance(value, tuple) or len(value) != 2
                        or isinstance(value[0], bool) or not isinstance(value[0], int)):
                    raise FormatError(_STRUCT, f"collection.{key}", got=type(value).__name__,
                                      want="[content-format, bstr] (tag 907)")
                value = value[1]
            parts[key] = value
        platform = _sign1(_PSTRUCT, parts[PLATFORM_KEY])
        realm = _sign1(_RSTRUCT, parts[REALM_KEY])
        pclaims = CcaPlatformClaims.from_map(
            decode_cbor(platform.payload, structure=f"{_PSTRUCT}.payload"))
        rclaims = CcaRealmClaims.from_map(
            decode_cbor(realm.payload, structure=f"{_RSTRUCT}.payload"))
        return cls(top.number, platform, pclaims, realm, rclaims, bytes(data))
