"""PSA attestation token verification (RFC 9783 s5 + RFC 9052 s4.4), and the COSE_Sign1 check.

Steps, in order (each a passed :class:`~veritee.findings.Finding` in ``VerifiedPsaToken.checks``;
the first failure raises :class:`~veritee.errors.VerificationError` with the code shown):

1. ``psa.key`` - the verifier-supplied IAK public key suits the protected ``alg`` (ES256 needs
   a P-256 key, ES384 P-384, ES512 P-521, EdDSA Ed25519, PS256 RSA >= 2048 bits). RFC 9783 s5
   leaves IAK provisioning to the verifier: nothing here fetches or guesses a key.
2. ``psa.signature`` - the COSE_Sign1 signature over ``Sig_structure = ["Signature1",
   protected, h'', payload]`` (RFC 9052 s4.4, empty external AAD). ECDSA signatures are the
   fixed-size ``r || s`` of RFC 9053 s2.1, converted to DER for :mod:`cryptography`.

Deliberately not done here: the nonce, lifecycle, implementation id and software components
(policy: :mod:`veritee.policy.arm`); instance-id == 0x01 || H(IAK) (the hash function is not
named in the token; a policy can pin instance ids); COSE_Mac0 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.errors import VerificationError
from veritee.findings import Finding, passed
from veritee.formats.cose import CoseAlg, CoseSign1
from veritee.formats.psa import PsaToken

__all__ = ["VerifiedPsaToken", "check_key_for_alg", "verify_psa_token", "verify_sign1"]

_EC = {
    CoseAlg.ES256: (ec.SECP256R1, hashes.SHA256, 32),
    CoseAlg.ES384: (ec.SECP384R1, hashes.SHA384, 48),
    CoseAlg.ES512: (ec.SECP521R1, hashes.SHA512, 66),
}


@dataclass(frozen=True)
class VerifiedPsaToken:
    """A PSA token whose signature verified under the given IAK."""

    token: PsaToken
    checks: tuple[Finding, ...]

    @property
    def tee(self) -> str:
        """Always ``"psa"``."""
        return "psa"


def check_key_for_alg(key: Any, alg: CoseAlg, code: str) -> None:
    """Raise ``VerificationError(code)`` unless ``key`` is a public key suited to ``alg``."""
    if alg in _EC:
        curve, _, _ = _EC[alg]
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, curve):
            raise VerificationError(code, f"{alg.name} needs an EC {curve.name} public key, "
                                    f"got {type(key).__name__}")
    elif alg is CoseAlg.EDDSA:
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise VerificationError(code, f"EdDSA needs an Ed25519 key, got {type(key).__name__}")
    elif not isinstance(key, rsa.RSAPublicKey) or key.key_size < 2048:
        raise VerificationError(code, "PS256 needs an RSA public key of >= 2048 bits")


def verify_sign1(msg: CoseSign1, key: Any, code: str, *, external_aad: bytes = b"") -> None:
    """Verify a COSE_Sign1 signature (RFC 9052 s4.4) or raise ``VerificationError(code)``."""
    check_key_for_alg(key, msg.alg, f"{code.rsplit('.', 1)[0]}.key")
    data = msg.sig_structure(external_aad)
    try:
        if msg.alg in _EC:
            _, hash_cls, size = _EC[msg.alg]
            if len(msg.signature) != 2 * size:
                raise VerificationError(code, f"{msg.alg.name} signature is "
                                        f"{len(msg.signature)} bytes, want {2 * size} (r||s)")
            r = int.from_bytes(msg.signature[:size], "big")
            s = int.from_bytes(msg.signature[size:], "big")
            key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hash_cls()))
        elif msg.alg is CoseAlg.EDDSA:
            key.verify(msg.signature, data)
        else:  # PS256: RFC 8230 s2, salt length = hash length
            key.verify(msg.signature, data,
                       padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                       hashes.SHA256())
    except InvalidSignature as exc:
        raise VerificationError(code, f"COSE_Sign1 {msg.alg.name} signature does not verify "
                                "under the given key") from exc


def verify_psa_token(token: PsaToken | bytes, *, iak_public_key: Any) -> VerifiedPsaToken:
    """Verify a PSA token's signature with the IAK public key; raise on any failure.

    ``token`` is a parsed :class:`PsaToken` or its bytes (parse errors raise
    :class:`~veritee.errors.FormatError`).
    """
    if not isinstance(token, PsaToken):
        token = PsaToken.from_bytes(token)
    checks: list[Finding] = []
    check_key_for_alg(iak_public_key, token.message.alg, "psa.key")
    checks.append(passed("psa.key", "IAK", got=token.message.alg.name))
    verify_sign1(token.message, iak_public_key, "psa.signature")
    checks.append(passed("psa.signature", "COSE_Sign1",
                          got=token.message.alg.name))
    return VerifiedPsaToken(token, tuple(checks))
