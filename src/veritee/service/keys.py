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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pybase64
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import ConfigError, SealingError
from veritee.results import SIGNING_ALGORITHMS, public_jwk

if TYPE_CHECKING:
    from veritee.sealing import KeySource, MonotonicCounters, SealingPolicy
    from veritee.service.storage import Store, Tx

__all__ = [
    "KeyEncryptionKey",
    "MasterKey",
    "SigningKey",
    "check_private_file",
    "create_master_key_file",
    "load_data_key",
    "load_master_key",
    "load_master_key_file",
    "load_signing_key",
    "rotate_master_key",
    "rotate_signing_key",
    "startup_lock",
]

_VERSION = b"v1"
_NONCE = 12


@dataclass(frozen=True)
class MasterKey:
    """The service's 32-byte key-encryption key. Its repr never shows the key."""

    key: bytes = field(repr=False)
    _aead: AESGCM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise ConfigError(f"master key: got {len(self.key)} bytes, want 32")
        # Built once: every release decrypts its secret with it.
        object.__setattr__(self, "_aead", AESGCM(self.key))

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
        ct = self._aead.encrypt(nonce, plaintext, _VERSION + aad)
        return base64.b64encode(_VERSION + nonce + ct).decode()

    def decrypt(self, text: str, aad: bytes) -> bytes:
        """Inverse of :meth:`encrypt`; :class:`SealingError` (one message) on any failure."""
        try:
            raw = pybase64.b64decode(text, validate=True)
            if raw[:2] != _VERSION:
                raise SealingError()
            return self._aead.decrypt(raw[2:2 + _NONCE], raw[2 + _NONCE:], _VERSION + aad)
        except (InvalidTag, ValueError):
            raise SealingError() from None


KeyEncryptionKey = MasterKey
"""Alias: the master key's role is a key-encryption key (KEK)."""


class KeyWrapper(Protocol):
    """What a master key must do: wrap and unwrap (AEAD), and name itself.

    :class:`MasterKey` does it in memory; :class:`veritee.service.pkcs11.Pkcs11MasterKey`
    does it inside an HSM, where the key never leaves.
    """

    @property
    def key_id(self) -> str:
        """A non-secret identifier of the key."""
        ...

    def encrypt(self, plaintext: bytes, aad: bytes) -> str:
        """AEAD-encrypt ``plaintext`` bound to ``aad``; base64 text."""
        ...

    def decrypt(self, text: str, aad: bytes) -> bytes:
        """Inverse of :meth:`encrypt`; :class:`SealingError` on any failure."""
        ...


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
            return _new_signing_key(tx, master, alg, now)
    kid, stored_alg, ciphertext, stored_jwk = row
    try:
        der = master.decrypt(ciphertext, f"signing-key:{kid}".encode())
    except SealingError:
        raise ConfigError("the EAR signing key in the database does not decrypt under this "
                          "master key (wrong sealed key file or another service's database)"
                          ) from None
    priv_any = serialization.load_der_private_key(der, None)
    if not isinstance(priv_any, ec.EllipticCurvePrivateKey) or stored_alg not in \
            SIGNING_ALGORITHMS:
        raise ConfigError("stored EAR signing key is not an EC key of a known algorithm")
    key = SigningKey(kid=kid, alg=stored_alg, private_key=priv_any)
    # The published half must be this key's (the row MAC covers both; this is belt and braces).
    if json.loads(stored_jwk) != key.public_jwk():
        raise ConfigError("stored EAR signing key: public JWK does not match the private key")
    return key


def _new_signing_key(tx: Tx, master: MasterKey, alg: str, now: float) -> SigningKey:
    """Mint a key, store its private half encrypted (AAD ``signing-key:<kid>``), return it."""
    from joserfc.jwk import ECKey

    priv = ec.generate_private_key(SIGNING_ALGORITHMS[alg]())
    jwk = public_jwk(priv, alg=alg)
    kid = ECKey.import_key(priv.public_key()).thumbprint()  # RFC 7638
    der = priv.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    jwk.update(kid=kid)
    tx.signing_key_add(kid, alg, master.encrypt(der, f"signing-key:{kid}".encode()),
                       json.dumps(jwk), now)
    return SigningKey(kid=kid, alg=alg, private_key=priv)


def rotate_signing_key(store: Store, master: MasterKey, *, alg: str, now: float,
                       actor: str = "cli", request_id: str | None = None
                       ) -> tuple[SigningKey, str | None]:
    """Retire the live EAR signing key and make a fresh one current; ``(new, old kid)``.

    One transaction under the key lock: retire, add, audit entry, so a crash leaves the
    old key live or the new one, never none. The retired key stays in the JWKS until
    ``retired_at + token_ttl`` (:meth:`Tx.signing_keys_public`), so tokens it signed keep
    verifying until they expire.
    """
    from datetime import UTC, datetime

    if alg not in SIGNING_ALGORITHMS:
        raise ConfigError(f"ear_alg: got {alg!r}, want one of {', '.join(SIGNING_ALGORITHMS)}")
    with store.transaction() as tx:
        row = tx.signing_key_active()
        old = None if row is None else row[0]
        if old is not None:
            tx.signing_key_retire(old, now)
        new = _new_signing_key(tx, master, alg, now)
        detail: dict[str, Any] = {"actor": actor, "retired": old, "current": new.kid}
        if request_id:
            detail["request_id"] = request_id
        tx.audit_append("admin.signing_key.rotate", "ok", f"signing-key:{new.kid}", detail,
                        datetime.fromtimestamp(now, UTC).isoformat(timespec="microseconds"))
    return new, old


_DATA_KEY_AAD = b"veritee-service-data-key"


def load_data_key(store: Store, master: KeyWrapper, *, now: float,
                  create: bool = True) -> MasterKey:
    """The service's data key: unwrapped from the database, created on first start.

    Secrets, the EAR signing key, the row MACs and the audit chain are all under this
    32-byte key; only it is wrapped (AES-256-GCM, AAD ``veritee-service-data-key``) by the
    master key, so rotating the master key rewrites one row (:func:`rotate_master_key`).
    Creation runs under the key lock in one transaction: concurrent first starts agree.
    """
    from veritee.service.storage import _LOCK_KEYS

    with store.transaction() as tx:
        tx.lock(_LOCK_KEYS)
        row = tx.service_key_get("data")
        if row is None and not create:
            raise ConfigError("this database has no data key yet (start the service once)")
        if row is None:
            data = MasterKey.generate()
            tx.service_key_put("data", master.encrypt(data.key, _DATA_KEY_AAD), master.key_id,
                               now)
            return data
    wrapped, key_id = row
    try:
        return MasterKey(master.decrypt(wrapped, _DATA_KEY_AAD))
    except SealingError:
        raise ConfigError(f"the data key in the database is wrapped by master key {key_id}, "
                          f"not by this one ({master.key_id}): wrong key source or another "
                          "service's database") from None


def rotate_master_key(store: Store, old: KeyWrapper, new: KeyWrapper, *, now: float) -> str:
    """Re-wrap the data key from ``old`` to ``new`` in one transaction; return new key id.

    Everything else is under the data key, so this one row is all that changes: a crash
    leaves either the old or the new wrapping, never a mix. Recorded in the audit log.
    """
    from veritee.service.integrity import StateIntegrity
    from veritee.service.storage import _LOCK_KEYS

    with store.transaction() as tx:
        tx.lock(_LOCK_KEYS)
        row = tx.service_key_get("data")
        if row is None:
            raise ConfigError("no data key in this database yet (start the service once)")
        try:
            data = old.decrypt(row[0], _DATA_KEY_AAD)
        except SealingError:
            raise ConfigError("rotate: the current master key does not unwrap the data key "
                              f"(it is wrapped by {row[1]})") from None
        tx.service_key_put("data", new.encrypt(data, _DATA_KEY_AAD), new.key_id, now)
        if store.integrity is None:
            store.integrity = StateIntegrity(data)
        from datetime import UTC, datetime

        tx.audit_append("admin.master_key.rotate", "ok", f"master-key:{new.key_id}",
                        {"from": old.key_id, "to": new.key_id},
                        datetime.fromtimestamp(now, UTC).isoformat(timespec="microseconds"))
    return new.key_id


def check_private_file(path: Path, *, what: str, dev_mode: bool) -> None:
    """Refuse (outside dev mode) a key or state file others can read or that we do not own.

    Mode must grant nothing to group and others (0600 files, 0700 directories) and the owner
    must be the effective user of this process.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"{what}: {path}: cannot stat ({exc.strerror})") from None
    problems = []
    if st.st_mode & 0o077:
        problems.append(f"mode {st.st_mode & 0o777:04o}, want 0600 (0700 for a directory)")
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        problems.append(f"owned by uid {st.st_uid}, not by this service's uid")
    if problems and not dev_mode:
        raise ConfigError(f"{what}: {path}: " + "; ".join(problems) + " (refused outside "
                          "dev_mode)")


def load_master_key_file(path: Path, *, dev_mode: bool) -> MasterKey:
    """``key_source = "file"``: a 32-byte raw key file, owner-only (0600) and ours."""
    path = Path(path)
    check_private_file(path, what="master_key_file", dev_mode=dev_mode)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(33)
    if len(data) != 32:
        raise ConfigError(f"master_key_file: {path}: got {len(data)}{'+' if len(data) > 32 else ''}"
                          " bytes, want exactly 32 (create one with 'veritee admin "
                          "master-key-new --out FILE')")
    return MasterKey(data)


def create_master_key_file(path: Path) -> MasterKey:
    """Create a fresh 32-byte key file, 0600, failing if it exists (never overwrites)."""
    path = Path(path)
    key = MasterKey.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path}: exists; refusing to overwrite a master key") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.key)
        fh.flush()
        os.fsync(fh.fileno())
    return key


@contextlib.contextmanager
def startup_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``<path>.lock`` for the whole first-start sequence.

    Every worker and every replica on this host opens the key source under it, so exactly
    one creates the emulated machine, the sealed file or the HSM key, and the others then
    open that same key (issue 9 finding 3: two workers each made their own). The lock dies
    with its holder, so a crashed start never blocks the next one.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


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
