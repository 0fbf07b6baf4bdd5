"""Appraisal of verified Arm PSA and CCA tokens: :class:`PsaPolicy` and :class:`CcaPolicy`.

Secure defaults: the (platform) security lifecycle must be in the ``secured`` state
(0x3000-0x30ff, RFC 9783 s4.3.1); other states (debug, provisioning, decommissioned) need an
explicit ``allowed_lifecycle_states``. Every other value left ``None`` is not checked and is
listed as skipped. Every check runs; each finding has a stable code from :data:`FINDING_CODES`.

=======================================  ==========================================================
code                                     check
=======================================  ==========================================================
``psa.lifecycle.state``                  lifecycle state in ``allowed_lifecycle_states``
``psa.nonce.mismatch``                   nonce equals ``nonce`` (constant time)
``psa.profile.mismatch``                 profile in ``profiles``
``psa.implementation_id.mismatch``       implementation id in ``implementation_ids``
``psa.instance_id.mismatch``             instance id in ``instance_ids``
``psa.sw_components.mismatch``           every measurement value in ``sw_measurements``
``cca.platform.lifecycle.state``         as ``psa.lifecycle.state``, on the platform token
``cca.platform.profile.mismatch``        platform profile in ``platform_profiles``
``cca.platform.implementation_id...``    ``.mismatch``: implementation id in the allow-list
``cca.platform.instance_id.mismatch``    instance id in ``instance_ids``
``cca.platform.sw_components.mismatch``  every platform measurement in ``sw_measurements``
``cca.realm.challenge.mismatch``         realm challenge equals ``challenge`` (64 bytes)
``cca.realm.personalization.mismatch``   personalization value equals ``personalization_value``
``cca.realm.rim.mismatch``               realm initial measurement in ``rim``
``cca.realm.rem0.mismatch`` .. ``rem3``  each REM in ``rems[i]`` (``None`` entries skipped)
=======================================  ==========================================================
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from veritee.errors import ConfigError
from veritee.findings import Finding
from veritee.formats.psa import LIFECYCLE_STATES, SwComponent
from veritee.policy import Appraisal, _load, _mapping
from veritee.policy._checks import contains as _in
from veritee.policy._checks import finding as _ok
from veritee.policy._checks import skipped as _skip
from veritee.trust.cca import VerifiedCcaToken
from veritee.trust.psa import VerifiedPsaToken

__all__ = ["FINDING_CODES", "CcaPolicy", "PsaPolicy", "appraise", "cca_policy_from_mapping",
           "claims", "policy_to_mapping", "psa_policy_from_mapping"]

FINDING_CODES: frozenset[str] = frozenset({
    "psa.lifecycle.state", "psa.nonce.mismatch", "psa.profile.mismatch",
    "psa.implementation_id.mismatch", "psa.instance_id.mismatch", "psa.sw_components.mismatch",
    "cca.platform.lifecycle.state", "cca.platform.profile.mismatch",
    "cca.platform.implementation_id.mismatch", "cca.platform.instance_id.mismatch",
    "cca.platform.sw_components.mismatch", "cca.realm.challenge.mismatch",
    "cca.realm.personalization.mismatch", "cca.realm.rim.mismatch",
    *(f"cca.realm.rem{i}.mismatch" for i in range(4)),
})
"""Every finding code this module emits (pinned by a test)."""

_STATES = frozenset(name for _, name in LIFECYCLE_STATES)
_SECURED: frozenset[str] = frozenset({"secured"})


def _states(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise ConfigError("allowed_lifecycle_states must be a collection of names, not a string")
    out = frozenset(value)
    if not out or not out <= _STATES:
        raise ConfigError(f"allowed_lifecycle_states: want a non-empty subset of {sorted(_STATES)}")
    return out


def _values(name: str, value: Iterable[bytes] | None, sizes: tuple[int, ...]
            ) -> frozenset[bytes] | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | str):
        raise ConfigError(f"{name} must be a collection of byte strings, not one value")
    out = frozenset(bytes(v) for v in value)
    if not out or any(len(v) not in sizes for v in out):
        raise ConfigError(f"{name}: want a non-empty collection of {sizes}-byte values")
    return out


def _strs(name: str, value: Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise ConfigError(f"{name} must be a collection of strings, not one string")
    out = frozenset(value)
    if not out or not all(isinstance(v, str) for v in out):
        raise ConfigError(f"{name}: want a non-empty collection of strings")
    return out


def _exact(name: str, value: bytes | None, sizes: tuple[int, ...]) -> bytes | None:
    if value is not None and len(value) not in sizes:
        raise ConfigError(f"{name}: want {sizes} bytes, got {len(value)}")
    return None if value is None else bytes(value)


_DIGESTS = (32, 48, 64)


@dataclass(frozen=True)
class PsaPolicy:
    """What a relying party accepts from a PSA token. ``None`` checks are not run."""

    policy_id: str = "psa-default"
    allowed_lifecycle_states: AbstractSet[str] = field(default_factory=lambda: _SECURED)
    nonce: bytes | None = None
    profiles: AbstractSet[str] | None = None
    implementation_ids: AbstractSet[bytes] | None = None
    instance_ids: AbstractSet[bytes] | None = None
    sw_measurements: AbstractSet[bytes] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_lifecycle_states",
                           _states(self.allowed_lifecycle_states))
        object.__setattr__(self, "nonce", _exact("nonce", self.nonce, _DIGESTS))
        object.__setattr__(self, "profiles", _strs("profiles", self.profiles))
        object.__setattr__(self, "implementation_ids",
                           _values("implementation_ids", self.implementation_ids, (32,)))
        object.__setattr__(self, "instance_ids", _values("instance_ids", self.instance_ids,
                                                         (33,)))
        object.__setattr__(self, "sw_measurements",
                           _values("sw_measurements", self.sw_measurements,
                                   tuple(range(16, 65))))


@dataclass(frozen=True)
class CcaPolicy:
    """What a relying party accepts from a CCA token. ``None`` checks are not run.

    ``rems`` is ``None`` (no REM checked) or four entries, each an allow-list or ``None``.
    """

    policy_id: str = "cca-default"
    allowed_lifecycle_states: AbstractSet[str] = field(default_factory=lambda: _SECURED)
    challenge: bytes | None = None
    platform_profiles: AbstractSet[str] | None = None
    implementation_ids: AbstractSet[bytes] | None = None
    instance_ids: AbstractSet[bytes] | None = None
    sw_measurements: AbstractSet[bytes] | None = None
    personalization_value: bytes | None = None
    rim: AbstractSet[bytes] | None = None
    rems: Sequence[AbstractSet[bytes] | None] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_lifecycle_states",
                           _states(self.allowed_lifecycle_states))
        object.__setattr__(self, "challenge", _exact("challenge", self.challenge, (64,)))
        object.__setattr__(self, "platform_profiles",
                           _strs("platform_profiles", self.platform_profiles))
        object.__setattr__(self, "implementation_ids",
                           _values("implementation_ids", self.implementation_ids, (32,)))
        object.__setattr__(self, "instance_ids", _values("instance_ids", self.instance_ids,
                                                         (33,)))
        object.__setattr__(self, "sw_measurements",
                           _values("sw_measurements", self.sw_measurements,
                                   tuple(range(16, 65))))
        object.__setattr__(self, "personalization_value",
                           _exact("personalization_value", self.personalization_value, (64,)))
        object.__setattr__(self, "rim", _values("rim", self.rim, _DIGESTS))
        if self.rems is not None:
            if isinstance(self.rems, bytes | str) or len(self.rems) != 4:
                raise ConfigError("rems: want four entries (an allow-list or None each)")
            object.__setattr__(self, "rems", tuple(
                _values(f"rems[{i}]", r, _DIGESTS) for i, r in enumerate(self.rems)))


_SW = range(16, 65)


def _read_rems(value: object, path: str) -> tuple[frozenset[bytes] | None, ...]:
    items = _load.read_list(value, path, "a list of four entries (a list of hex values or "
                            "null each)")
    if len(items) != 4:
        raise _load.config_error(path, value, "a list of four entries")
    read = _mapping.hex_set_reader(_DIGESTS)
    return tuple(None if v is None else read(v, f"{path}[{i}]") for i, v in enumerate(items))


_COMMON: dict[str, _mapping.Reader] = {
    "policy_id": _load.read_str,
    "allowed_lifecycle_states": _mapping.str_set_reader,
    "implementation_ids": _mapping.hex_set_reader((32,)),
    "instance_ids": _mapping.hex_set_reader((33,)),
    "sw_measurements": _mapping.hex_set_reader(_SW),
}
_PSA_READERS: dict[str, _mapping.Reader] = {
    **_COMMON, "nonce": _mapping.hex_reader(_DIGESTS), "profiles": _mapping.str_set_reader}
_CCA_READERS: dict[str, _mapping.Reader] = {
    **_COMMON, "challenge": _mapping.hex_reader((64,)),
    "platform_profiles": _mapping.str_set_reader,
    "personalization_value": _mapping.hex_reader((64,)),
    "rim": _mapping.hex_set_reader(_DIGESTS), "rems": _read_rems}


def psa_policy_from_mapping(data: Mapping[str, Any]) -> PsaPolicy:
    """A :class:`PsaPolicy` from its TOML/JSON form: the field names as keys, bytes as hex,
    sets as lists, ``null`` for "not checked" (``allowed_lifecycle_states`` cannot be null).
    :class:`~veritee.errors.ConfigError` names the bad key."""
    return _mapping.from_mapping(PsaPolicy, data, _PSA_READERS,
                                 set(_PSA_READERS) - {"policy_id", "allowed_lifecycle_states"})


def cca_policy_from_mapping(data: Mapping[str, Any]) -> CcaPolicy:
    """A :class:`CcaPolicy` from its TOML/JSON form (as :func:`psa_policy_from_mapping`;
    ``rems`` is a list of four entries, each a list of hex values or ``null``)."""
    return _mapping.from_mapping(CcaPolicy, data, _CCA_READERS,
                                 set(_CCA_READERS) - {"policy_id", "allowed_lifecycle_states"})


def policy_to_mapping(policy: PsaPolicy | CcaPolicy) -> dict[str, Any]:
    """The JSON form of either policy (inverted exactly by the ``*_from_mapping`` reader)."""
    return _mapping.to_mapping(policy)


def _member(code: str, fld: str, got: bytes, allowed: AbstractSet[bytes] | None) -> Finding:
    if allowed is None:
        return _skip(code, fld)
    return _ok(code, fld, got, sorted(allowed), _in(got, allowed), "not in the allow-list")


def _equal(code: str, fld: str, got: bytes, want: bytes | None) -> Finding:
    if want is None:
        return _skip(code, fld)
    return _ok(code, fld, got, want, hmac.compare_digest(got, want))


def _lifecycle(code: str, value: int, state: str, allowed: AbstractSet[str]) -> Finding:
    return _ok(code, "security lifecycle", f"{state} (0x{value:04x})", sorted(allowed),
               state in allowed, "lifecycle state not allowed")


def _profile(code: str, got: str | None, allowed: AbstractSet[str] | None) -> Finding:
    if allowed is None:
        return _skip(code, "profile")
    return _ok(code, "profile", got, sorted(allowed), got in allowed)


def _sw(code: str, comps: tuple[SwComponent, ...], allowed: AbstractSet[bytes] | None
        ) -> Finding:
    if allowed is None:
        return _skip(code, "software components")
    bad = [c.measurement_value for c in comps if not _in(c.measurement_value, allowed)]
    return _ok(code, "software components", bad or [c.measurement_value for c in comps],
               sorted(allowed), not bad and bool(comps),
               "measurements not in the allow-list" if comps else "no software components")


def _appraise_psa(v: VerifiedPsaToken, p: PsaPolicy) -> list[Finding]:
    c = v.token.claims
    return [
        _lifecycle("psa.lifecycle.state", c.security_lifecycle, c.lifecycle_state,
                   p.allowed_lifecycle_states),
        _equal("psa.nonce.mismatch", "nonce", c.nonce, p.nonce),
        _profile("psa.profile.mismatch", c.profile, p.profiles),
        _member("psa.implementation_id.mismatch", "implementation id", c.implementation_id,
                p.implementation_ids),
        _member("psa.instance_id.mismatch", "instance id", c.instance_id, p.instance_ids),
        _sw("psa.sw_components.mismatch", c.sw_components, p.sw_measurements),
    ]


def _appraise_cca(v: VerifiedCcaToken, p: CcaPolicy) -> list[Finding]:
    pc, rc = v.token.platform_claims, v.token.realm_claims
    out = [
        _lifecycle("cca.platform.lifecycle.state", pc.lifecycle, pc.lifecycle_state,
                   p.allowed_lifecycle_states),
        _profile("cca.platform.profile.mismatch", pc.profile, p.platform_profiles),
        _member("cca.platform.implementation_id.mismatch", "implementation id",
                pc.implementation_id, p.implementation_ids),
        _member("cca.platform.instance_id.mismatch", "instance id", pc.instance_id,
                p.instance_ids),
        _sw("cca.platform.sw_components.mismatch", pc.sw_components, p.sw_measurements),
        _equal("cca.realm.challenge.mismatch", "realm challenge", rc.challenge, p.challenge),
        _equal("cca.realm.personalization.mismatch", "personalization value",
               rc.personalization_value, p.personalization_value),
        _member("cca.realm.rim.mismatch", "RIM", rc.initial_measurement, p.rim),
    ]
    rems = p.rems if p.rems is not None else (None, None, None, None)
    out += [_member(f"cca.realm.rem{i}.mismatch", f"REM{i}", rc.extensible_measurements[i],
                    rems[i]) for i in range(4)]
    return out


def appraise(verified: VerifiedPsaToken | VerifiedCcaToken,
             policy: PsaPolicy | CcaPolicy) -> Appraisal:
    """Appraise a verified token; every check runs, none raises (a policy of the wrong kind
    for the token raises :class:`~veritee.errors.ConfigError`)."""
    if isinstance(verified, VerifiedPsaToken) and isinstance(policy, PsaPolicy):
        tee, findings = "psa", _appraise_psa(verified, policy)
    elif isinstance(verified, VerifiedCcaToken) and isinstance(policy, CcaPolicy):
        tee, findings = "cca", _appraise_cca(verified, policy)
    else:
        raise ConfigError(f"{type(policy).__name__} cannot appraise {type(verified).__name__}")
    return Appraisal(tee=tee, policy_id=policy.policy_id, findings=tuple(findings),
                     verification=verified.checks, claims=claims(verified))


def _sw_claims(comps: tuple[SwComponent, ...]) -> list[dict[str, Any]]:
    return [{"measurement_type": c.measurement_type, "measurement_value":
             c.measurement_value.hex(), "signer_id": c.signer_id.hex() if c.signer_id else None,
             "version": c.version, "measurement_desc": c.measurement_desc} for c in comps]


def claims(verified: VerifiedPsaToken | VerifiedCcaToken) -> dict[str, Any]:
    """The verified claims a relying party may use, JSON-ready (bytes as lowercase hex)."""
    if isinstance(verified, VerifiedPsaToken):
        c = verified.token.claims
        return {"tee": "psa", "profile": c.profile, "client_id": c.client_id,
                "security_lifecycle": c.security_lifecycle, "lifecycle_state": c.lifecycle_state,
                "implementation_id": c.implementation_id.hex(),
                "instance_id": c.instance_id.hex(), "nonce": c.nonce.hex(),
                "boot_seed": c.boot_seed.hex() if c.boot_seed else None,
                "certification_reference": c.certification_reference,
                "verification_service": c.verification_service,
                "sw_components": _sw_claims(c.sw_components)}
    pc, rc = verified.token.platform_claims, verified.token.realm_claims
    return {"tee": "cca", "platform_profile": pc.profile,
            "platform_challenge": pc.challenge.hex(),
            "implementation_id": pc.implementation_id.hex(),
            "instance_id": pc.instance_id.hex(), "config": pc.config.hex(),
            "lifecycle": pc.lifecycle, "lifecycle_state": pc.lifecycle_state,
            "platform_hash_algo_id": pc.hash_algo_id,
            "sw_components": _sw_claims(pc.sw_components),
            "realm_profile": rc.profile, "realm_challenge": rc.challenge.hex(),
            "personalization_value": rc.personalization_value.hex(),
            "rim": rc.initial_measurement.hex(),
            "rems": [r.hex() for r in rc.extensible_measurements],
            "realm_hash_algo_id": rc.hash_algo_id,
            "rak": rc.public_key.raw.hex(), "rak_hash_algo_id": rc.public_key_hash_algo_id}
