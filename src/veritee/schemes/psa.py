"""The Arm PSA scheme: a PSA attestation token (RFC 9783), COSE_Sign1 signed by the IAK.

Anchors (vendor ``arm``, shared with :mod:`veritee.schemes.cca`): the device keys the
verifier knows. There is no public root to pin (RFC 9783 s5 leaves IAK provisioning to the
verifier), so ``None`` is a :class:`~veritee.errors.ConfigError` (nothing to verify with).
Accepted forms (:func:`device_keys`):

* a mapping ``instance id -> key`` or ``instance id -> sequence of keys``, the instance id as
  33 bytes or their hex (the token's ``instance-id`` claim, 0x01 || hash of the IAK): only
  the keys listed for the token's own instance id are tried;
* a sequence of keys (or one key): every key is tried (a verifier that knows a few devices
  without their ids).

A key is a :mod:`cryptography` public key, an X.509 certificate (its key, trusted only inside
the certificate's validity at ``ctx.now``) or PEM/DER/JWK bytes
(:func:`veritee.collateral.arm.parse_public_key`). Collateral: none.

Binding: the ``nonce`` claim (key 10; 32, 48 or 64 bytes). ``binding_size`` is 64, so a
challenge (:class:`veritee.attest.Challenge`) gives SHA-512(nonce || SPKI); an attester whose
token carries a 32- or 48-byte nonce is checked with the raw ``expected_binding`` instead.

Common claims: ``measurement`` is ``None`` (a PSA token has several software components, see
``sw_components``); ``debug`` is true for the two debug lifecycle states (RFC 9783 s4.3.1:
0x4000 non-PSA-RoT debug, 0x5000 recoverable PSA-RoT debug), ``None`` for ``unknown``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from veritee.crypto._x509 import load_certificate_chain
from veritee.errors import ConfigError, VerificationError
from veritee.findings import Finding, Outcome
from veritee.formats.cose import COSE_SIGN1_TAG, MAX_TOKEN_SIZE
from veritee.formats.psa import PsaToken
from veritee.policy import Appraisal
from veritee.policy.arm import PsaPolicy, appraise, policy_to_mapping, psa_policy_from_mapping
from veritee.schemes import Context, Verified
from veritee.schemes._shared import PolicyRouted, identity, plain, ran_and_passed, read_anchor_files
from veritee.trust._common import check_validity
from veritee.trust.psa import VerifiedPsaToken, verify_psa_token

__all__ = ["SCHEME", "PsaScheme", "debug_state", "device_keys", "trust_vector",
           "verify_by_device_key"]

_DEBUG_STATES = frozenset({"non-psa-rot-debug", "recoverable-psa-rot-debug"})
# The encoded claim heads recognise looks for (RFC 8949 heads, shortest form as every PSA
# producer writes them): key 256 (P2) or -75009 (P1) followed by a 33-byte bstr of type 0x01
# (instance-id, RFC 9783 s4.2.1); key 10 (P2) or -75008 (P1) followed by a 32/48/64-byte bstr
# (nonce, s4.1).
_INSTANCE_MARKS = (b"\x19\x01\x00\x58\x21\x01", b"\x3a\x00\x01\x25\x00\x58\x21\x01")
_NONCE_MARKS = tuple(key + b"\x58" + bytes([size]) for key in (b"\x0a", b"\x3a\x00\x01\x24\xff")
                     for size in (32, 48, 64))


def debug_state(state: str) -> bool | None:
    """The ``debug`` claim of a lifecycle state name (RFC 9783 s4.3.1)."""
    if state == "unknown":
        return None
    return state in _DEBUG_STATES


def _key(value: Any, now: datetime, what: str) -> Any:
    if isinstance(value, x509.Certificate):
        # A device certificate as the anchor: its key counts only inside its validity.
        check_validity(value, now, code=f"{what}.anchor",
                       what=f"the device certificate {value.subject.rfc4514_string()}")
        return value.public_key()
    if isinstance(value, bytes | bytearray):
        from veritee.collateral.arm import parse_public_key

        raw = bytes(value)
        if b"-----BEGIN CERTIFICATE" not in raw:
            try:
                return parse_public_key(raw)
            except ConfigError:
                if raw[:1] != b"\x30":  # not DER: neither a key nor a certificate
                    raise
        (cert,) = load_certificate_chain(raw, structure="anchors['arm']", max_certs=1)
        return _key(cert, now, what)
    return value


def _instance_id(value: object) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        try:
            return bytes.fromhex(value.removeprefix("0x"))
        except ValueError:
            pass
    raise ConfigError(f"anchors['arm']: instance id {value!r} is not bytes or hex")


def device_keys(anchors: Any, instance_id: bytes, what: str, now: datetime) -> list[Any]:
    """The keys to try for a token from ``instance_id``: :class:`ConfigError` without any
    ``arm`` anchors, ``VerificationError`` when they name no key for it (code
    ``<what>.anchor.unknown``) or a certificate not valid at ``now``
    (``<what>.anchor.expired`` / ``.not_yet_valid``)."""
    code = f"{what}.anchor.unknown"
    if anchors is None:  # nothing to verify against: the verifier's configuration, not the token
        raise ConfigError(f"{what} tokens are signed by a device key the verifier provisions: "
                          "give it as anchors {'arm': {instance_id: public_key}} (veritee "
                          f"--key FILE); this token's instance id is {instance_id.hex()}")
    found: Any
    if isinstance(anchors, Mapping):
        table = {_instance_id(k): v for k, v in anchors.items()}
        if instance_id not in table:
            raise VerificationError(code, f"no device key is known for instance id "
                                    f"{instance_id.hex()}")
        found = table[instance_id]
    else:
        found = anchors
    if isinstance(found, Iterable) and not isinstance(found, bytes | bytearray | str):
        return [_key(k, now, what) for k in found]
    return [_key(found, now, what)]


def verify_by_device_key(scheme: str, instance_id: bytes, ctx: Context,
                         verify: Callable[[Any], Any], role: str) -> Verified:
    """Verify with each key the ``arm`` anchors list for ``instance_id`` (``role``: IAK,
    CPAK); the first that verifies wins, else the last failure is raised. The trace starts
    with ``<scheme>.anchor`` naming the instance id whose key was used."""
    error: VerificationError | None = None
    for key in device_keys(ctx.anchors.get("arm"), instance_id, scheme, ctx.now):
        try:
            native = verify(key)
        except VerificationError as exc:
            error = exc
            continue
        anchor = Finding(f"{scheme}.anchor", Outcome.PASS, f"{role} for the instance id",
                         got=instance_id.hex(), message="a device key the verifier knows")
        checks = (anchor, *native.checks)
        return Verified(scheme, replace(native, checks=checks), checks, ctx.now)
    raise error or VerificationError(f"{scheme}.anchor.unknown", "the anchors list no key")


def trust_vector(appraisal: Appraisal) -> dict[str, int]:
    """The AR4SI vector of a PSA or CCA appraisal (``appraisal.tee``; ``instance-identity``:
    :func:`~veritee.schemes._shared.identity`, the policy's nonce / realm challenge check).

    ``hardware``: the token was signed by a device key the verifier provisioned (so the
    device is genuine): affirming, unless an implementation/instance id allow-list failed
    (not recognised). ``executables``: approved when a software-component / RIM allow-list
    matched, unrecognised when one failed. ``configuration``: the lifecycle state:
    contraindicated when a debug state was refused, unsafe when another state was refused
    or allowed although not ``secured`` (or a profile/personalization check failed),
    affirming for ``secured``. ``runtime-opaque`` (CCA realms only): the realm's memory is
    out of the host's reach unless the platform is in a debug state.
    """
    from veritee.results import (
        AFFIRMING,
        APPROVED_BOOT,
        CONTRAINDICATED,
        NO_CLAIM,
        NOT_RECOGNIZED,
        UNRECOGNIZED_RUNTIME,
        WARNING_UNSAFE,
        failed,
    )

    f = appraisal.findings
    tee = appraisal.tee
    state = str(appraisal.claims.get("lifecycle_state", "unknown"))
    p = f"{tee}.platform." if tee == "cca" else f"{tee}."
    hardware = (NOT_RECOGNIZED if failed(f, (f"{p}implementation_id.", f"{p}instance_id."))
                else AFFIRMING)
    measured = (f"{p}sw_components.", "cca.realm.rim.", "cca.realm.rem")
    if failed(f, measured):
        executables = UNRECOGNIZED_RUNTIME
    elif ran_and_passed(f, measured):
        executables = APPROVED_BOOT
    else:
        executables = NO_CLAIM
    debug = debug_state(state)
    if failed(f, (f"{p}lifecycle.",)) and debug:
        configuration = CONTRAINDICATED
    elif (failed(f, (f"{p}lifecycle.", f"{p}profile.", "cca.realm.personalization."))
          or state != "secured"):
        configuration = WARNING_UNSAFE
    else:
        configuration = AFFIRMING
    nonce = "cca.realm.challenge." if tee == "cca" else "psa.nonce."
    vector = {"hardware": hardware, "instance-identity": identity(appraisal, nonce),
              "executables": executables, "configuration": configuration}
    if tee == "cca":
        vector["runtime-opaque"] = CONTRAINDICATED if debug else AFFIRMING
    return vector


ARM_REVOCATION: dict[str, Any] = {
    "checked": False, "detail": "not checked: none exists for a device key the verifier "
    "provisions (remove a revoked device's key from the anchors)"}


def _looks_like_sign1(data: bytes) -> bool:
    head = bytes(data[:2])
    return head[:1] == b"\x84" or head == bytes([0xC0 | COSE_SIGN1_TAG, 0x84])


class PsaScheme(PolicyRouted):
    """Arm PSA attestation tokens (P2 and PSA_IOT_PROFILE_1 claim keys)."""

    name = "psa"
    vendor = "arm"
    binding_size = 64
    policy_type = PsaPolicy
    _policy_appraise = staticmethod(appraise)
    _vector = staticmethod(trust_vector)

    def recognise(self, data: bytes) -> bool:
        """A COSE_Sign1 (tagged or not) that carries an instance-id and a nonce claim (found
        by their encoded heads, without decoding: :meth:`parse` checks the structure)."""
        if not _looks_like_sign1(data) or len(data) > MAX_TOKEN_SIZE:
            return False
        raw = bytes(data)
        return (any(m in raw for m in _INSTANCE_MARKS)
                and any(m in raw for m in _NONCE_MARKS))

    def parse(self, data: bytes, *, attached: bytes | None = None) -> PsaToken:
        """The token; ``attached`` is not used."""
        return PsaToken.from_bytes(data)

    def verify(self, evidence: PsaToken, ctx: Context) -> Verified:
        """The IAK known for the token's instance id signs it (COSE_Sign1)."""
        return verify_by_device_key(self.name, evidence.claims.instance_id, ctx,
                                    lambda k: verify_psa_token(evidence, iak_public_key=k),
                                    "IAK")

    def binding(self, verified: Verified) -> bytes:
        """The ``nonce`` claim (32, 48 or 64 bytes)."""
        native: VerifiedPsaToken = verified.native
        return native.token.claims.nonce

    def claims(self, verified: Verified) -> dict[str, Any]:
        """:func:`veritee.policy.arm.claims` plus the common claims."""
        from veritee.policy.arm import claims

        native: VerifiedPsaToken = verified.native
        return {**claims(native), "tee": self.name, "measurement": None,
                "debug": debug_state(native.token.claims.lifecycle_state), "tcb_status": None,
                "advisory_ids": [], "binding": self.binding(verified).hex()}

    def describe(self, evidence: PsaToken) -> dict[str, Any]:
        """Every field of the (unverified) token for ``veritee show``, JSON-ready."""
        return {"format": "arm-psa-token", "evidence": plain(evidence),
                "lifecycle_state": evidence.claims.lifecycle_state}

    def load_anchors(self, paths: Sequence[Path]) -> list[bytes]:
        """Device keys (``--key``: PEM/DER/JWK, a veraison endorsement, or a certificate);
        any of them may sign (the token's instance id is not known from a file)."""
        return read_anchor_files(paths)

    def revocation(self, verified: Verified) -> dict[str, Any]:
        """A provisioned device key has no revocation to check."""
        return ARM_REVOCATION

    def default_policy(self) -> PsaPolicy:
        """:class:`PsaPolicy` with its secure defaults (lifecycle ``secured``)."""
        return PsaPolicy()

    def policy_from_mapping(self, data: Mapping[str, Any]) -> PsaPolicy:
        """See :func:`veritee.policy.arm.psa_policy_from_mapping`."""
        return psa_policy_from_mapping(data)

    def policy_to_mapping(self, policy: Any) -> dict[str, Any]:
        """See :func:`veritee.policy.arm.policy_to_mapping`."""
        return policy_to_mapping(policy)



SCHEME = PsaScheme()
