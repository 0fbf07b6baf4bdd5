"""Keys at rest: the sealed master key, secrets encrypted under it, and the EAR signing key.

The service holds one 32-byte :class:`MasterKey` (a key-encryption key). It never touches the
disk in plaintext: :func:`load_master_key` unseals it from a file sealed with
:mod:`veritee.sealing` to this workload's measurement (so only the same service image on the
same chip can open it), creating and sealing a fresh one on first start. Everything secret in
the database is AES-256-GCM under it:

* resource secrets, with the resource path as associated data (a ciphertext moved to another
  path does not decrypt);
* the EAR signing key's private half, with ``signing-key:<kid>`` as associated data.

Format of a ciphertext (base64 text in the database): ``b"v1" || 12-byte nonce || AES-GCM
ciphertext+tag``. Random 96-bit nonces are fine here: far fewer than 2^32 encryptions happen
under one key (NIST SP 800-38D section 8.3).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import ConfigError, SealingError
from veritee.results import SIGNING_ALGORITHMS, public_jwk

if TYPE_CHECKING:
    from veritee.sealing import KeySource, MonotonicCounters, SealingPolicy
    from veritee.service.storage import Store

__all__ = ["KeyEncryptionKey", "MasterKey", "SigningKey", "load_master_key",
           "load_signing_key"]

_VERSION = b"v1"
_NONCE = 12


@dataclass(frozen=True)
class MasterKey:
    """The service's 32-byte key-encryption key. Its repr never shows the key."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise ConfigError(f"master key: got {len(self.key)} bytes, want 32")

    @classmethod
    def generate(cls) -> MasterKey:
        """A fresh random key (from the OS CSPRNG)."""
        return cls(os.urandom(32))

    @property
    def key_id(self) -> str:
        """A non-secret identifier: the first 16 hex digits of SHA-256("kid" || key)."""
        return hashlib.sha256(b"veritee-master-key-id" + self.key).hexdigest()[:16]

    def encrypt(self, plaintext: bytes, aad: bytes) -> str:
        """AES-256-GCM; base64 text of version || nonce || ciphertext."""
        nonce = os.urandom(_NONCE)
        ct = AESGCM(self.key).encrypt(nonce, plaintext, _VERSION + aad)
        return base64.b64encode(_VERSION + nonce + ct).decode()

    def decrypt(self, text: str, aad: bytes) -> bytes:
        """Inverse of :meth:`encrypt`; :class:`SealingError` (one message) on any failure."""
        try:
            raw = base64.b64decode(text, validate=True)
            if raw[:2] != _VERSION:
                raise SealingError()
            return AESGCM(self.key).decrypt(raw[2:2 + _NONCE], raw[2 + _NONCE:], _VERSION + aad)
        except (InvalidTag, ValueError):
            raise SealingError() from None


KeyEncryptionKey = MasterKey
"""Alias: the master key's role is a key-encryption key (KEK)."""


@dataclass(frozen=True)
class SigningKey:
    """The EAR signing key: ``kid``, ``alg`` (ES256/ES384) and the private key."""

    kid: str
    alg: str
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK for the JWKS endpoint."""
        return public_jwk(self.private_key, kid=self.kid, alg=self.alg)


def load_signing_key(store: Store, master: MasterKey, *, alg: str, now: float) -> SigningKey:
    """The active EAR signing key, created (and stored encrypted) on first start.

    Creation happens under the key lock inside one transaction, so two processes starting
    together agree on one key instead of each minting their own.
    """
    if alg not in SIGNING_ALGORITHMS:
        raise ConfigError(f"ear_alg: got {alg!r}, want one of {', '.join(SIGNING_ALGORITHMS)}")
    with store.transaction() as tx:
        row = tx.signing_key_active()
        if row is None:
            priv = ec.generate_private_key(SIGNING_ALGORITHMS[alg]())
            jwk = public_jwk(priv, alg=alg)
            from joserfc.jwk import ECKey

            kid = ECKey.import_key(priv.public_key()).thumbprint()  # RFC 7638
            der = priv.private_bytes(serialization.Encoding.DER,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
            jwk.update(kid=kid)
            tx.signing_key_add(kid, alg, master.encrypt(der, f"signing-key:{kid}".encode()),
                               json.dumps(jwk), now)
            return SigningKey(kid=kid, alg=alg, private_key=priv)
    kid, stored_alg, ciphertext, _ = row
    try:
        der = master.decrypt(ciphertext, f"signing-key:{kid}".encode())
    except SealingError:
        raise ConfigError("the EAR signing key in the database does not decrypt under this "
                          "master key (wrong sealed key file or another service's database)"
                          ) from None
    priv_any = serialization.load_der_private_key(der, None)
    if not isinstance(priv_any, ec.EllipticCurvePrivateKey):
        raise ConfigError("stored EAR signing key is not an EC key")
    return SigningKey(kid=kid, alg=stored_alg, private_key=priv_any)


def load_master_key(path: Path, source: KeySource, *, policy: SealingPolicy | None = None,
                    counters: MonotonicCounters | None = None) -> MasterKey:
    """Unseal the master key from ``path``; on first start create, seal and store one.

    ``source`` is the TEE this service runs in (anything with ``derived_key`` and
    ``attestation_report``: an :class:`~veritee.platform.emulated.snp.EmulatedSnpGuest` in
    development). The default policy binds the key to this workload's launch measurement
    and the TCB (:meth:`SealingPolicy.measurement`). With ``counters`` (the platform's
    monotonic counters) the sealed file is rollback-protected.

    Two processes starting at once on an empty directory: the file is written with
    ``os.link`` semantics (create-if-absent), the loser discards its key and unseals the
    winner's, so both end up with the same key.
    """
    from veritee.sealing import SealingPolicy as _Policy
    from veritee.sealing import seal, unseal_path

    path = Path(path)
    aad = b"veritee-service-master-key"
    if not path.exists():
        fresh = MasterKey.generate()
        blob = seal(source, fresh.key, policy or _Policy.measurement(), aad=aad,
                    counters=counters)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            # Create-if-absent: if another process won the race, keep (and unseal) its key.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return MasterKey(unseal_path(source, path, policy or _Policy.measurement(), aad=aad,
                                 counters=counters))
