"""Arm CCA attestation token verification (RMM spec DEN0137 A.7; veraison/ccatoken ``Verify``).

Steps, in order (each a passed :class:`~veritee.findings.Finding` in ``VerifiedCcaToken.checks``;
the first failure raises :class:`~veritee.errors.VerificationError` with the code shown):

1. ``cca.realm.key`` - the RAK (realm claim 44237, COSE_Key or raw SEC1 point) is a valid
   point on its curve and suits the realm token's ``alg`` (RMM: ES384 / P-384 in practice).
2. ``cca.realm.signature`` - the realm COSE_Sign1 verifies with that RAK (RFC 9052 s4.4).
   This only proves self-consistency; the RAK is trusted through step 3.
3. ``cca.binding.rak_hash`` - the platform token's challenge (claim 10) equals
   ``H(RAK claim bytes)`` with ``H`` named by realm claim 44240 (``sha-256``/``sha-384``/
   ``sha-512``; RMM A.7.2.3.2 "Realm public key hash algorithm identifier"). The hash is over
   the exact claim bstr content, as RMM and veraison/ccatoken compute it. Compared in
   constant time.
4. ``cca.platform.key`` / ``cca.platform.signature`` - the platform COSE_Sign1 verifies with
   the verifier-supplied CPAK (the IAK of the platform; provisioning is the verifier's job).

Not done here: realm challenge vs. the relying party's nonce, measurements, lifecycle (policy:
:mod:`veritee.policy.arm`); CPAK certificate chains (none are published for the samples).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from veritee.errors import VerificationError
from veritee.findings import Finding, passed
from veritee.formats.cca import CcaToken, RealmPublicKey
from veritee.trust.psa import check_key_for_alg, verify_sign1

__all__ = ["RAK_HASH_ALGORITHMS", "VerifiedCcaToken", "realm_public_key", "verify_cca_token"]

RAK_HASH_ALGORITHMS = {"sha-256": "sha256", "sha-384": "sha384", "sha-512": "sha512"}
"""IANA Named Information hash names (RMM A.7.2.3.2) -> hashlib names."""

_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}


@dataclass(frozen=True)
class VerifiedCcaToken:
    """A CCA token whose realm and platform signatures and RAK binding verified."""

    token: CcaToken
    rak: ec.EllipticCurvePublicKey
    checks: tuple[Finding, ...]

    @property
    def tee(self) -> str:
        """Always ``"cca"``."""
        return "cca"


def realm_public_key(rak: RealmPublicKey) -> ec.EllipticCurvePublicKey:
    """The RAK as a :mod:`cryptography` key, or ``VerificationError("cca.realm.key")``."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[rak.curve](), rak.sec1)
    except ValueError as exc:
        raise VerificationError("cca.realm.key", f"RAK is not a valid {rak.curve} point") from exc


def verify_cca_token(token: CcaToken | bytes, *, cpak_public_key: Any) -> VerifiedCcaToken:
    """Verify a CCA token (steps in the module docstring); raise on any failure."""
    if not isinstance(token, CcaToken):
        token = CcaToken.from_bytes(token)
    checks: list[Finding] = []
    realm = token.realm_claims
    # 1. RAK
    rak = realm_public_key(realm.public_key)
    check_key_for_alg(rak, token.realm.alg, "cca.realm.key")
    checks.append(passed("cca.realm.key", "RAK",
                          got=f"{realm.public_key.curve} ({realm.public_key.form})"))
    # 2. realm signature
    verify_sign1(token.realm, rak, "cca.realm.signature")
    checks.append(passed("cca.realm.signature", "realm COSE_Sign1",
                          got=token.realm.alg.name))
    # 3. binding: platform challenge == H(RAK)
    name = RAK_HASH_ALGORITHMS.get(realm.public_key_hash_algo_id)
    if name is None:
        raise VerificationError("cca.binding.rak_hash",
                                f"unsupported RAK hash algorithm "
                                f"{realm.public_key_hash_algo_id!r}, want one of "
                                f"{sorted(RAK_HASH_ALGORITHMS)}")
    digest = hashlib.new(name, realm.public_key.raw).digest()
    if not hmac.compare_digest(digest, token.platform_claims.challenge):
        raise VerificationError("cca.binding.rak_hash",
                                f"platform challenge {token.platform_claims.challenge.hex()} "
                                f"!= {realm.public_key_hash_algo_id}(RAK) {digest.hex()}")
    checks.append(passed("cca.binding.rak_hash", "platform challenge",
                          got=f"{realm.public_key_hash_algo_id}(RAK)"))
    # 4. platform signature with the CPAK
    check_key_for_alg(cpak_public_key, token.platform.alg, "cca.platform.key")
    checks.append(passed("cca.platform.key", "CPAK",
                          got=token.platform.alg.name))
    verify_sign1(token.platform, cpak_public_key, "cca.platform.signature")
    checks.append(passed("cca.platform.signature", "platform COSE_Sign1",
                          got=token.platform.alg.name))
    return VerifiedCcaToken(token, rak, tuple(checks))
