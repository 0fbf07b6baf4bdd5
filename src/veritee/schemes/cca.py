"""The Arm CCA scheme: a CCA attestation token (RMM DEN0137 A.7), platform + realm tokens.

Anchors (vendor ``arm``, as :mod:`veritee.schemes.psa`): the CPAK of each platform the
verifier knows, keyed by the platform token's instance id (or a sequence of keys to try);
``None`` is a configuration error. The realm token is trusted through the platform token
(platform challenge = hash of the RAK, :mod:`veritee.trust.cca`). Collateral: none.

Binding: the realm token's challenge (claim 10, 64 bytes, RMM A.7.2.3.1), ``binding_size``
64: the realm asks RMM for a token with ``challenge = SHA-512(nonce || SPKI)``.

Common claims: ``measurement`` = the realm initial measurement (RIM); ``debug`` from the
platform lifecycle state (the CCA platform token shares RFC 9783's lifecycle states: 0x4000
and 0x5000 are debug states); the realm token has no debug claim of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from veritee.formats.cca import CcaToken
from veritee.policy.arm import CcaPolicy, appraise, cca_policy_from_mapping, policy_to_mapping
from veritee.schemes import Context, Verified
from veritee.schemes._shared import PolicyRouted, plain, read_anchor_files
from veritee.schemes.psa import (
    ARM_REVOCATION,
    debug_state,
    trust_vector,
    verify_by_device_key,
)
from veritee.trust.cca import VerifiedCcaToken, verify_cca_token

__all__ = ["SCHEME", "CcaScheme"]

_CCA_TAGS = (b"\xd9\x01\x8f", b"\xd9\x03\x8b")  # CBOR tag 399 (RMM 1.0) and legacy 907


class CcaScheme(PolicyRouted):
    """Arm CCA attestation tokens (tag 399, legacy tag 907)."""

    name = "cca"
    vendor = "arm"
    binding_size = 64
    policy_type = CcaPolicy
    _policy_appraise = staticmethod(appraise)
    _vector = staticmethod(trust_vector)

    def recognise(self, data: bytes) -> bool:
        """CBOR tag 399 (or 907) followed by a map."""
        return bytes(data[:3]) in _CCA_TAGS and data[3:4] != b"" and data[3] >> 5 == 5

    def parse(self, data: bytes, *, attached: bytes | None = None) -> CcaToken:
        """The token; ``attached`` is not used."""
        return CcaToken.from_bytes(data)

    def verify(self, evidence: CcaToken, ctx: Context) -> Verified:
        """Realm signature with the RAK, RAK bound to the platform challenge, platform
        signature with the CPAK known for the platform's instance id."""
        return verify_by_device_key(self.name, evidence.platform_claims.instance_id, ctx,
                                    lambda k: verify_cca_token(evidence, cpak_public_key=k),
                                    "CPAK")

    def binding(self, verified: Verified) -> bytes:
        """The realm challenge (64 bytes)."""
        native: VerifiedCcaToken = verified.native
        return native.token.realm_claims.challenge

    def claims(self, verified: Verified) -> dict[str, Any]:
        """:func:`veritee.policy.arm.claims` plus the common claims."""
        from veritee.policy.arm import claims

        native: VerifiedCcaToken = verified.native
        return {**claims(native), "tee": self.name,
                "measurement": native.token.realm_claims.initial_measurement.hex(),
                "debug": debug_state(native.token.platform_claims.lifecycle_state),
                "tcb_status": None, "advisory_ids": [],
                "binding": self.binding(verified).hex()}

    def describe(self, evidence: CcaToken) -> dict[str, Any]:
        """Every field of the (unverified) token for ``veritee show``, JSON-ready."""
        return {"format": "arm-cca-token", "evidence": plain(evidence),
                "lifecycle_state": evidence.platform_claims.lifecycle_state}

    def load_anchors(self, paths: Sequence[Path]) -> list[bytes]:
        """Platform keys (``--key``: PEM/DER/JWK or a certificate); any of them may sign."""
        return read_anchor_files(paths)

    def revocation(self, verified: Verified) -> dict[str, Any]:
        """A provisioned platform key has no revocation to check."""
        return ARM_REVOCATION

    def default_policy(self) -> CcaPolicy:
        """:class:`CcaPolicy` with its secure defaults (platform lifecycle ``secured``)."""
        return CcaPolicy()

    def policy_from_mapping(self, data: Mapping[str, Any]) -> CcaPolicy:
        """See :func:`veritee.policy.arm.cca_policy_from_mapping`."""
        return cca_policy_from_mapping(data)

    def policy_to_mapping(self, policy: Any) -> dict[str, Any]:
        """See :func:`veritee.policy.arm.policy_to_mapping`."""
        return policy_to_mapping(policy)



SCHEME = CcaScheme()
