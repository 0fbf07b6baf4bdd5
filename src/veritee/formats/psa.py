"""Arm PSA attestation tokens (RFC 9783, formerly draft-tschofenig-rats-psa-token): bytes -> claims.

A PSA token is a COSE_Sign1 (:mod:`veritee.formats.cose`) whose payload is an EAT claims map.
Two claim-key generations exist and both are read:

* **P2** (RFC 9783 s4, profile ``http://arm.com/psa/2.0.0`` and later ``tag:psacertified.org,...``):
  nonce 10, instance-id (``ueid``) 256, profile 265, client-id 2394, security-lifecycle 2395,
  implementation-id 2396, boot-seed 2397, certification-reference 2398, software-components
  2399, verification-service 2400.
* **P1** (``PSA_IOT_PROFILE_1``, draft-tschofenig-rats-psa-token-05 and earlier, as emitted by
  older TF-M): private-use keys -75000 (profile) .. -75010 (origination), with hardware-version
  -75005 in place of the certification reference and no-sw-measurements -75007.

Software components (RFC 9783 s4.4.1) are maps: 1 measurement-type, 2 measurement-value,
4 version, 5 signer-id, 6 measurement-desc. Claim sizes follow RFC 9783: nonce 32/48/64 bytes,
instance-id 33 bytes with type byte 0x01 (RAND/EUI is not used: 0x01 || hash of the IAK),
implementation-id 32 bytes, boot-seed 8..32 bytes. Unknown claims are ignored (EAT allows
extension claims) but kept in ``PsaClaims.extra``.

Not handled: COSE_Mac0 tokens (symmetric IAK; no public verification possible), the
``tag:psacertified.org,2023:psa#tfm`` profile's optional claim relaxations beyond the above.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from veritee.errors import FormatError
from veritee.formats.cose import CoseSign1, decode_cbor

__all__ = [
    "LIFECYCLE_STATES",
    "PsaClaims",
    "PsaToken",
    "SwComponent",
    "lifecycle_state",
    "parse_sw_components",
]

_STRUCT = "PSA token"


class _K(enum.IntEnum):
    """RFC 9783 s4 claim keys (P2)."""

    NONCE = 10
    INSTANCE_ID = 256
    PROFILE = 265
    CLIENT_ID = 2394
    LIFECYCLE = 2395
    IMPLEMENTATION_ID = 2396
    BOOT_SEED = 2397
    CERTIFICATION_REFERENCE = 2398
    SW_COMPONENTS = 2399
    VERIFICATION_SERVICE = 2400


# P1 (PSA_IOT_PROFILE_1) private-use keys -> the P2 meaning they carry.
_P1 = {
    -75000: _K.PROFILE, -75001: _K.CLIENT_ID, -75002: _K.LIFECYCLE,
    -75003: _K.IMPLEMENTATION_ID, -75004: _K.BOOT_SEED, -75005: _K.CERTIFICATION_REFERENCE,
    -75006: _K.SW_COMPONENTS, -75008: _K.NONCE, -75009: _K.INSTANCE_ID,
    -75010: _K.VERIFICATION_SERVICE,
}
_P1_NO_SW_MEASUREMENTS = -75007

LIFECYCLE_STATES: tuple[tuple[int, str], ...] = (
    (0x0000, "unknown"), (0x1000, "assembly-and-test"), (0x2000, "psa-rot-provisioning"),
    (0x3000, "secured"), (0x4000, "non-psa-rot-debug"), (0x5000, "recoverable-psa-rot-debug"),
    (0x6000, "decommissioned"),
)
"""RFC 9783 s4.3.1: lifecycle major states; the low byte (0x00-0xff) is implementation defined."""


def lifecycle_state(value: int) -> str:
    """The named state of a security-lifecycle value, or ``"invalid"`` (RFC 9783 s4.3.1)."""
    for base, name in LIFECYCLE_STATES:
        if base <= value <= base + 0xFF:
            return name
    return "invalid"


@dataclass(frozen=True)
class SwComponent:
    """One software component (RFC 9783 s4.4.1)."""

    measurement_value: bytes
    signer_id: bytes | None = None
    measurement_type: str | None = None
    version: str | None = None
    measurement_desc: str | None = None


def _bstr(structure: str, name: str, value: Any, sizes: tuple[int, ...] | range) -> bytes:
    if not isinstance(value, bytes):
        raise FormatError(structure, name, got=type(value).__name__, want="bstr")
    if len(value) not in sizes:
        raise FormatError(structure, name, got=f"{len(value)} bytes",
                          want=f"{list(sizes) if isinstance(sizes, tuple) else sizes} bytes")
    return value


def _tstr(structure: str, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise FormatError(structure, name, got=type(value).__name__, want="tstr")
    return value


def _uint(structure: str, name: str, value: Any, *, signed: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (value < 0 and not signed):
        raise FormatError(structure, name, got=value, want="int" if signed else "uint")
    return value


_DIGEST = range(16, 65)  # measurement values / signer ids: SHA-1-sized .. SHA-512-sized


def parse_sw_components(structure: str, value: Any) -> tuple[SwComponent, ...]:
    """Parse a software-components array (shared with the CCA platform token)."""
    if not isinstance(value, tuple) or not value:
        raise FormatError(structure, "sw_components", got=value if not value else
                          type(value).__name__, want="non-empty array")
    out = []
    for i, comp in enumerate(value):
        where = f"sw_components[{i}]"
        if not isinstance(comp, dict):
            raise FormatError(structure, where, got=type(comp).__name__, want="map")
        if 2 not in comp:
            raise FormatError(structure, f"{where}.measurement_value", got="absent",
                              want="present")
        mv = _bstr(structure, f"{where}.measurement_value", comp[2], _DIGEST)
        sid = (None if 5 not in comp
               else _bstr(structure, f"{where}.signer_id", comp[5], _DIGEST))
        strs = {}
        for key, name in ((1, "measurement_type"), (4, "version"), (6, "measurement_desc")):
            strs[name] = None if key not in comp else _tstr(structure, f"{where}.{name}",
                                                            comp[key])
        out.append(SwComponent(mv, sid, **strs))
    return tuple(out)


@dataclass(frozen=True)
class PsaClaims:
    """The PSA claims (RFC 9783 s4), with P1 keys mapped onto the same fields."""

    profile: str | None
    client_id: int
    security_lifecycle: int
    implementation_id: bytes
    boot_seed: bytes | None
    certification_reference: str | None
    sw_components: tuple[SwComponent, ...]
    nonce: bytes
    instance_id: bytes
    verification_service: str | None = None
    legacy_p1: bool = False
    extra: dict[Any, Any] = field(default_factory=dict, compare=False)

    @property
    def lifecycle_state(self) -> str:
        """The named lifecycle state (``secured``, ...)."""
        return lifecycle_state(self.security_lifecycle)

    @classmethod
    def from_map(cls, claims: Any, *, structure: str = _STRUCT) -> PsaClaims:
        """Validate a decoded claims map."""
        if not isinstance(claims, dict):
            raise FormatError(structure, "claims", got=type(claims).__name__, want="map")
        p1 = any(isinstance(k, int) and k in _P1 for k in claims)
        p2 = any(isinstance(k, int) and k in {int(x) for x in _K if x != _K.NONCE}
                 for k in claims)
        if p1 and p2:
            raise FormatError(structure, "claims", got="P1 and P2 keys",
                              want="one claim-key generation")
        c: dict[_K, Any] = {}
        extra: dict[Any, Any] = {}
        for key, value in claims.items():
            if p1 and isinstance(key, int) and key in _P1:
                c[_P1[key]] = value
            elif not p1 and isinstance(key, int) and key in {int(x) for x in _K}:
                c[_K(key)] = value
            else:  # extension claims (and P1 no-sw-measurements) are kept, not interpreted
                extra[key] = value
        for need in (_K.CLIENT_ID, _K.LIFECYCLE, _K.IMPLEMENTATION_ID, _K.NONCE,
                     _K.INSTANCE_ID):
            if need not in c:
                raise FormatError(structure, need.name.lower(), got="absent", want="present")
        if _K.SW_COMPONENTS in c:
            sw = parse_sw_components(structure, c[_K.SW_COMPONENTS])
        elif p1 and _P1_NO_SW_MEASUREMENTS in claims:
            sw = ()
        else:
            raise FormatError(structure, "sw_components", got="absent", want="present")
        instance = _bstr(structure, "instance_id", c[_K.INSTANCE_ID], (33,))
        if instance[0] != 0x01:
            raise FormatError(structure, "instance_id", got=f"type 0x{instance[0]:02x}",
                              want="type 0x01 (RAND)")
        lifecycle = _uint(structure, "security_lifecycle", c[_K.LIFECYCLE])
        if lifecycle_state(lifecycle) == "invalid":
            raise FormatError(structure, "security_lifecycle", got=hex(lifecycle),
                              want="a RFC 9783 s4.3.1 state")
        return cls(
            profile=(None if _K.PROFILE not in c
                     else _tstr(structure, "profile", c[_K.PROFILE])),
            client_id=_uint(structure, "client_id", c[_K.CLIENT_ID], signed=True),
            security_lifecycle=lifecycle,
            implementation_id=_bstr(structure, "implementation_id", c[_K.IMPLEMENTATION_ID],
                                    (32,)),
            boot_seed=(None if _K.BOOT_SEED not in c
                       else _bstr(structure, "boot_seed", c[_K.BOOT_SEED], range(8, 33))),
            certification_reference=(
                None if _K.CERTIFICATION_REFERENCE not in c
                else _tstr(structure, "certification_reference",
                           c[_K.CERTIFICATION_REFERENCE])),
            sw_components=sw,
            nonce=_bstr(structure, "nonce", c[_K.NONCE], (32, 48, 64)),
            instance_id=instance,
            verification_service=(
                None if _K.VERIFICATION_SERVICE not in c
                else _tstr(structure, "verification_service", c[_K.VERIFICATION_SERVICE])),
            legacy_p1=p1,
            extra=extra,
        )


@dataclass(frozen=True)
class PsaToken:
    """A PSA attestation token: the COSE_Sign1 envelope and its validated claims."""

    message: CoseSign1
    claims: PsaClaims

    @classmethod
    def from_bytes(cls, data: bytes) -> PsaToken:
        """Parse a COSE_Sign1 PSA token (tag 18 or untagged)."""
        msg = CoseSign1.from_bytes(data, structure=_STRUCT)
        payload = decode_cbor(msg.payload, structure=f"{_STRUCT}.payload")
        return cls(msg, PsaClaims.from_map(payload))

    @property
    def raw(self) -> bytes:
        """The token bytes as parsed."""
        return self.message.raw

    def to_bytes(self) -> bytes:
        """Serialise the envelope (claims are carried verbatim in the signed payload)."""
        return self.message.to_bytes()
