"""Appraisal of verified NVIDIA GPU / NVSwitch attestation reports: :class:`GpuPolicy`.

Secure default: the request must have asked for *all* measurement blocks (GET_MEASUREMENTS
Param2 = 0xFF, DSP0274 1.1 "measurement operation"), so a report cannot leave a block out by
asking for fewer; every expected value or allow-list left as ``None`` is not checked and is
listed as skipped. Every check runs; each finding has a stable code from
:data:`FINDING_CODES`.

Reference values: ``measurements`` maps an SPDM block index (1-based, as in the report) to
the accepted values. NVIDIA's RIMs number measurements from 0, so RIM index ``i`` is block
``i + 1`` (nvtrust ``local_gpu_verifier``; the evidence manifest says the same); a caller
reading a RIM adds 1. The values must be the same length as the block's value (48 bytes for
SHA-384); a listed index the report does not carry fails.

===================================  ==========================================================
code                                 check
===================================  ==========================================================
``nvidia.request.all_blocks``        request Param2 is 0xFF unless ``require_all_blocks`` is
                                     false
``nvidia.nonce.mismatch``            the request nonce equals ``nonce`` (32 bytes)
``nvidia.driver_version.mismatch``   the opaque DRIVER_VERSION is in ``driver_versions``
``nvidia.vbios_version.mismatch``    the opaque VBIOS_VERSION (``"96.00.9f.00.01"``) is in
                                     ``vbios_versions``
``nvidia.measurement.mismatch``      for each index of ``measurements``: the block's value is
                                     in the allow-list (one finding per index)
===================================  ==========================================================

Not checked here (and why): OCSP revocation of the device chain (online only; recorded as a
skipped verification check by :mod:`veritee.trust.nvidia`), RIM signatures (no XML-DSig
implementation without a new dependency).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from veritee.errors import ConfigError
from veritee.findings import Finding
from veritee.formats.nvidia import NONCE_SIZE
from veritee.policy import Appraisal, _load, _mapping
from veritee.policy._checks import contains as _in
from veritee.policy._checks import finding as _ok
from veritee.policy._checks import skipped as _skip
from veritee.trust.nvidia import VerifiedGpuReport

__all__ = ["FINDING_CODES", "GpuPolicy", "appraise", "claims", "policy_from_mapping",
           "policy_to_mapping"]

FINDING_CODES: frozenset[str] = frozenset({
    "nvidia.request.all_blocks",
    "nvidia.nonce.mismatch",
    "nvidia.driver_version.mismatch",
    "nvidia.vbios_version.mismatch",
    "nvidia.measurement.mismatch",
})
"""Every finding code this module emits (pinned by a test)."""

_ALL_BLOCKS = 0xFF
_MAX_DIGEST = 64


def _strings(name: str, value: Iterable[str] | None, *, lower: bool) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes):
        raise ConfigError(f"{name} must be a collection of versions, not one value")
    out = frozenset(v.lower() if lower else v for v in value)
    if not out or not all(isinstance(v, str) and v for v in out):
        raise ConfigError(f"{name}: want a non-empty collection of non-empty strings")
    return out


def _measurements(value: Mapping[int, Iterable[bytes]] | None,
                  ) -> Mapping[int, frozenset[bytes]] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise ConfigError("measurements: want a non-empty mapping of block index -> values")
    out: dict[int, frozenset[bytes]] = {}
    for index, allowed in value.items():
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= 0xFE:
            raise ConfigError(f"measurements: block index {index!r} is not 0..254")
        if isinstance(allowed, bytes | bytearray | str):
            raise ConfigError(f"measurements[{index}] must be a collection of values")
        vals = frozenset(bytes(v) for v in allowed)
        if not vals or any(not 0 < len(v) <= _MAX_DIGEST for v in vals):
            raise ConfigError(f"measurements[{index}]: want 1..{_MAX_DIGEST}-byte values")
        out[index] = vals
    return MappingProxyType(out)


@dataclass(frozen=True)
class GpuPolicy:
    """What a relying party accepts from an NVIDIA GPU or NVSwitch. ``None`` checks are skipped.

    Versions are strings as :class:`~veritee.formats.nvidia.OpaqueData` renders them
    (``"550.90.07"``; VBIOS compared case-insensitively). Bad values raise
    :class:`~veritee.errors.ConfigError`.
    """

    policy_id: str = "nvidia-default"
    require_all_blocks: bool = True
    nonce: bytes | None = None
    driver_versions: AbstractSet[str] | None = None
    vbios_versions: AbstractSet[str] | None = None
    measurements: Mapping[int, AbstractSet[bytes]] | None = None

    def __post_init__(self) -> None:
        if self.nonce is not None and (not isinstance(self.nonce, bytes | bytearray)
                                       or len(self.nonce) != NONCE_SIZE):
            raise ConfigError(f"nonce: want {NONCE_SIZE} bytes")
        if self.nonce is not None:
            object.__setattr__(self, "nonce", bytes(self.nonce))
        object.__setattr__(self, "driver_versions",
                           _strings("driver_versions", self.driver_versions, lower=False))
        object.__setattr__(self, "vbios_versions",
                           _strings("vbios_versions", self.vbios_versions, lower=True))
        object.__setattr__(self, "measurements", _measurements(self.measurements))


def _read_measurements(value: object, path: str) -> dict[int, frozenset[bytes]]:
    table = _load.read_table(value, path)
    out: dict[int, frozenset[bytes]] = {}
    for key, allowed in table.items():
        if not key.isdigit():
            raise _load.config_error(f"{path}.{key}", key, "a block index 0..254")
        index = _load.read_int(int(key), f"{path}.{key}", 0, 0xFE)
        out[index] = _mapping.hex_set_reader(range(1, _MAX_DIGEST + 1))(allowed,
                                                                         f"{path}.{key}")
    return out


_READERS: dict[str, _mapping.Reader] = {
    "policy_id": _load.read_str,
    "require_all_blocks": _load.read_bool,
    "nonce": _mapping.hex_reader((NONCE_SIZE,)),
    "driver_versions": _mapping.str_set_reader,
    "vbios_versions": _mapping.str_set_reader,
    "measurements": _read_measurements,
}
_OPTIONAL = frozenset({"nonce", "driver_versions", "vbios_versions", "measurements"})


def policy_from_mapping(data: Mapping[str, Any]) -> GpuPolicy:
    """A :class:`GpuPolicy` from its TOML/JSON form: the field names as keys, ``nonce`` as
    hex, versions as lists of strings, ``measurements`` as a table from the SPDM block index
    (a string: ``"1"``) to a list of hex values; ``null`` for "not checked".
    :class:`~veritee.errors.ConfigError` names the bad key."""
    return _mapping.from_mapping(GpuPolicy, data, _READERS, _OPTIONAL)


def policy_to_mapping(policy: GpuPolicy) -> dict[str, Any]:
    """The JSON form of ``policy`` (inverted exactly by :func:`policy_from_mapping`)."""
    return _mapping.to_mapping(policy)


def _version(code: str, fld: str, got: str | None, allowed: AbstractSet[str] | None,
             ) -> Finding:
    if allowed is None:
        return _skip(code, fld)
    return _ok(code, fld, got, sorted(allowed), got is not None and got in allowed,
               "not in the allow-list" if got is not None else "the report has no such field")


def _blocks(v: VerifiedGpuReport, refs: Mapping[int, AbstractSet[bytes]] | None,
            ) -> list[Finding]:
    code = "nvidia.measurement.mismatch"
    if refs is None:
        return [_skip(code, "measurement blocks")]
    out: list[Finding] = []
    for index in sorted(refs):
        allowed = refs[index]
        block = v.report.response.block(index)
        fld = f"measurement[{index}]"
        if block is None:
            out.append(_ok(code, fld, None, sorted(allowed), False,
                           "the report has no such block"))
            continue
        out.append(_ok(code, fld, block.value, sorted(allowed), _in(block.value, allowed),
                       "not a reference value"))
    return out


def appraise(verified: VerifiedGpuReport, policy: GpuPolicy) -> Appraisal:
    """Appraise a verified report; every check runs, none raises."""
    rep = verified.report
    param2 = rep.request.param2
    findings = [
        _ok("nvidia.request.all_blocks", "request.Param2", hex(param2), hex(_ALL_BLOCKS),
            param2 == _ALL_BLOCKS,
            "the request did not ask for every measurement block")
        if policy.require_all_blocks else
        _skip("nvidia.request.all_blocks", "request.Param2", "require_all_blocks is false"),
    ]
    if policy.nonce is None:
        findings.append(_skip("nvidia.nonce.mismatch", "request nonce"))
    else:
        findings.append(_ok("nvidia.nonce.mismatch", "request nonce", rep.nonce, policy.nonce,
                            hmac.compare_digest(rep.nonce, policy.nonce),
                            "not the expected nonce"))
    findings.append(_version("nvidia.driver_version.mismatch", "opaque DRIVER_VERSION",
                             rep.opaque.driver_version, policy.driver_versions))
    vbios = rep.opaque.vbios_version
    findings.append(_version("nvidia.vbios_version.mismatch", "opaque VBIOS_VERSION",
                             None if vbios is None else vbios.lower(), policy.vbios_versions))
    findings += _blocks(verified, policy.measurements)
    return Appraisal(tee="nvidia", policy_id=policy.policy_id, findings=tuple(findings),
                     verification=verified.checks, claims=claims(verified))


def claims(verified: VerifiedGpuReport) -> dict[str, Any]:
    """The verified claims a relying party may use, JSON-ready (bytes as lowercase hex)."""
    rep = verified.report
    op = rep.opaque
    fwid = op.fwid
    return {
        "tee": "nvidia",
        "nonce": rep.nonce.hex(),
        "responder_nonce": rep.response.nonce.hex(),
        "driver_version": op.driver_version,
        "vbios_version": op.vbios_version,
        "fwid": None if fwid is None else fwid.hex(),
        "opaque": {f.name: f.value.hex() for f in op.fields},
        "measurements": {str(b.index): b.value.hex() for b in rep.response.blocks},
        "root_fingerprint": verified.root_fingerprint,
        "leaf_subject": verified.leaf.subject.rfc4514_string(),
    }
