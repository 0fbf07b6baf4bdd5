"""Keys generated inside the TEE, used by handle, and kept at rest only in sealed form.

A :class:`KeyStore` lives in a directory. Each key has a name, a type, a usage policy
(``sign`` / ``decrypt`` / ``wrap``, exportable or not) and numbered versions:

* ``rotate`` adds a version; new work (sign, encrypt, wrap) uses the newest, while every
  version still verifies, decrypts and unwraps (ciphertexts and signatures name the version);
* ``destroy`` removes a key's material for good: the metadata is rollback-protected by a
  monotonic counter, so an old copy of it cannot bring the key back. A store refuses to
  run without a counter source unless ``unsafe_allow_no_rollback_protection=True`` (then
  restoring old files can undo a destroy, a rotation or a usage change).

Nothing is written in the clear: key material and metadata go through a :class:`Sealer`
(``veritee.sealing.Sealer`` binds them to the workload and platform), and every write is
atomic. A store opened by another workload or on another chip fails with
``KeyStoreError("locked")``.
"""

from __future__ import annotations

import enum
import json
import os
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, keywrap, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import ConfigError, KeyStoreError, SealingError, VerificationError

__all__ = ["KeyInfo", "KeyStore", "KeyType", "Sealer", "Usage"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_P256_ORDER = int("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16)
_P384_ORDER = int("ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
                  "581a0db248b0a77aecec196accc52973", 16)


class Sealer(Protocol):
    """How the store keeps things at rest (``veritee.sealing.Sealer`` implements it).

    ``rollback=True`` must raise ConfigError when there is no counter source (``counters``
    is None), never silently write or read without one.
    """

    @property
    def counters(self) -> object | None:
        """The monotonic counter source, or None (then rollback protection is impossible)."""
        ...

    def seal_to_path(self, path: Path, data: bytes, *, aad: bytes = b"",
                     rollback: bool = False) -> None:
        """Seal ``data`` into ``path`` atomically."""
        ...

    def unseal_path(self, path: Path, *, aad: bytes = b"", rollback: bool = False) -> bytes:
        """Open what :meth:`seal_to_path` wrote; raise SealingError otherwise."""
        ...


class KeyType(enum.StrEnum):
    """Key types the store generates."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    ED25519 = "ed25519"
    RSA_3072 = "rsa-3072"
    RSA_4096 = "rsa-4096"
    AES_256 = "aes-256"


class Usage(enum.StrEnum):
    """What a key may be used for."""

    SIGN = "sign"  # sign / verify
    DECRYPT = "decrypt"  # encrypt / decrypt (AES-GCM, RSA-OAEP)
    WRAP = "wrap"  # wrap / unwrap other keys (AES key wrap RFC 3394, RSA-OAEP)


_ALLOWED: dict[KeyType, frozenset[Usage]] = {
    KeyType.EC_P256: frozenset({Usage.SIGN}),
    KeyType.EC_P384: frozenset({Usage.SIGN}),
    KeyType.ED25519: frozenset({Usage.SIGN}),
    KeyType.RSA_3072: frozenset({Usage.SIGN, Usage.DECRYPT, Usage.WRAP}),
    KeyType.RSA_4096: frozenset({Usage.SIGN, Usage.DECRYPT, Usage.WRAP}),
    KeyType.AES_256: frozenset({Usage.DECRYPT, Usage.WRAP}),
}


def _names(usages: Iterable[Usage]) -> str:
    """Usages as a person writes them (``sign, wrap``), not as enum reprs."""
    return ", ".join(sorted(u.value for u in usages))


@dataclass(frozen=True)
class KeyInfo:
    """A key's public description (never its material)."""

    name: str
    key_type: KeyType
    usages: frozenset[Usage]
    exportable: bool
    versions: tuple[int, ...]
    destroyed: bool = False

    @property
    def latest(self) -> int:
        """The version new work uses."""
        if self.destroyed or not self.versions:
            raise KeyStoreError("destroyed", f"key {self.name!r} was destroyed")
        return self.versions[-1]

    def to_dict(self) -> dict[str, object]:
        """JSON form (stored sealed, and printed by ``veritee keys list``)."""
        return {"name": self.name, "type": self.key_type.value,
                "usages": sorted(u.value for u in self.usages), "exportable": self.exportable,
                "versions": list(self.versions), "destroyed": self.destroyed}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> KeyInfo:
        """Inverse of :meth:`to_dict` (the data was authenticated by unsealing)."""
        versions = d["versions"]
        usages = d["usages"]
        assert isinstance(versions, list) and isinstance(usages, list)
        return cls(name=str(d["name"]), key_type=KeyType(str(d["type"])),
                   usages=frozenset(Usage(str(u)) for u in usages),
                   exportable=bool(d["exportable"]), versions=tuple(int(v) for v in versions),
                   destroyed=bool(d["destroyed"]))


def generate(key_type: KeyType, rng: Callable[[int], bytes]) -> bytes:
    """Generate a key and return its private material (PKCS#8 DER, or 32 raw AES bytes).

    EC, Ed25519 and AES keys come from ``rng`` (the platform's DRBG inside a TEE); RSA key
    generation has no injectable randomness in ``cryptography`` and uses OpenSSL's CSPRNG.
    """
    key: PrivateKeyTypes
    if key_type is KeyType.AES_256:
        return rng(32)
    if key_type in (KeyType.EC_P256, KeyType.EC_P384):
        curve, order, size = ((ec.SECP256R1(), _P256_ORDER, 32) if key_type is KeyType.EC_P256
                              else (ec.SECP384R1(), _P384_ORDER, 48))
        # 8 extra bytes make the reduction bias negligible (FIPS 186-5 A.2.1).
        d = int.from_bytes(rng(size + 8), "big") % (order - 1) + 1
        key = ec.derive_private_key(d, curve)
    elif key_type is KeyType.ED25519:
        key = ed25519.Ed25519PrivateKey.from_private_bytes(rng(32))
    else:
        key = rsa.generate_private_key(65537, 3072 if key_type is KeyType.RSA_3072 else 4096)
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class KeyStore:
    """A directory of sealed keys, used by name (see the module docstring)."""

    def __init__(self, directory: Path, sealer: Sealer, *,
                 rng: Callable[[int], bytes] = os.urandom,
                 unsafe_allow_no_rollback_protection: bool = False) -> None:
        if sealer.counters is None and not unsafe_allow_no_rollback_protection:
            raise ConfigError("the key store needs monotonic counters (rollback protection): "
                              "without them a restored copy of old metadata revives destroyed "
                              "keys. Give the sealer counters, or pass "
                              "unsafe_allow_no_rollback_protection=True to accept that")
        self.directory = Path(directory)
        self._sealer = sealer
        self._rng = rng
        self._rollback = sealer.counters is not None

    # -- metadata ------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        if not isinstance(name, str) or not _NAME.match(name):
            raise KeyStoreError("bad-request", f"key name {name!r}: want 1-128 of "
                                "[A-Za-z0-9._-], not starting with . _ or -")
        return self.directory / name

    def _aad(self, name: str, what: str) -> bytes:
        # Binds each sealed file to its key and role: files cannot be swapped between keys.
        return f"veritee-keystore-v1\0{name}\0{what}".encode()

    def info(self, name: str) -> KeyInfo:
        """A key's description; ``unknown-key`` if there is none."""
        meta = self._dir(name) / "meta.sealed"
        if not meta.exists():
            raise KeyStoreError("unknown-key", f"no key named {name!r} in {self.directory}")
        try:
            data = self._sealer.unseal_path(meta, aad=self._aad(name, "meta"),
                                            rollback=self._rollback)
        except SealingError:
            raise KeyStoreError("locked", f"key {name!r} in {self.directory} cannot be opened "
                                "by this workload on this platform (another measurement, "
                                "signer, chip, or a rolled-back copy)") from None
        return KeyInfo.from_dict(json.loads(data))

    def _write_info(self, info: KeyInfo) -> None:
        self._sealer.seal_to_path(self._dir(info.name) / "meta.sealed",
                                  json.dumps(info.to_dict()).encode(),
                                  aad=self._aad(info.name, "meta"), rollback=self._rollback)

    def entries(self) -> list[KeyInfo]:
        """Every key in the store (keys this workload cannot open are reported as locked)."""
        if not self.directory.is_dir():
            return []
        return [self.info(p.name) for p in sorted(self.directory.iterdir())
                if (p / "meta.sealed").exists()]

    # -- lifecycle -----------------------------------------------------------------------
    def create(self, name: str, key_type: KeyType | str,
               usages: Iterable[Usage | str], *, exportable: bool = False) -> KeyInfo:
        """Generate version 1 of a new key."""
        kt = KeyType(key_type)
        wanted = frozenset(Usage(u) for u in usages)
        if not wanted or not wanted <= _ALLOWED[kt]:
            raise KeyStoreError("bad-request", f"usages {_names(wanted) or '(none)'} for "
                                f"{kt.value}: want a non-empty subset of "
                                f"{_names(_ALLOWED[kt])}")
        if (self._dir(name) / "meta.sealed").exists():
            raise KeyStoreError("exists", f"key {name!r} already exists")
        self._write_version(name, 1, generate(kt, self._rng))
        info = KeyInfo(name, kt, wanted, exportable, (1,))
        self._write_info(info)
        return info

    def rotate(self, name: str) -> KeyInfo:
        """Add a new version; it becomes the one new work uses."""
        info = self.info(name)
        version = info.latest + 1
        self._write_version(name, version, generate(info.key_type, self._rng))
        new = KeyInfo(info.name, info.key_type, info.usages, info.exportable,
                      (*info.versions, version))
        self._write_info(new)
        return new

    def destroy(self, name: str) -> None:
        """Destroy every version: metadata first (so the key is gone even if we crash), then
        the material."""
        info = self.info(name)
        self._write_info(KeyInfo(info.name, info.key_type, info.usages, info.exportable, (),
                                 destroyed=True))
        for version in info.versions:
            self._version_path(name, version).unlink(missing_ok=True)

    def _version_path(self, name: str, version: int) -> Path:
        return self._dir(name) / f"v{version}.sealed"

    def _write_version(self, name: str, version: int, material: bytes) -> None:
        self._sealer.seal_to_path(self._version_path(name, version), material,
                                  aad=self._aad(name, f"v{version}"))

    def _material(self, info: KeyInfo, version: int | None, usage: Usage | None) -> bytes:
        if info.destroyed:
            raise KeyStoreError("destroyed", f"key {info.name!r} was destroyed")
        if usage is not None and usage not in info.usages:
            raise KeyStoreError("wrong-usage", f"key {info.name!r} allows "
                                f"{sorted(u.value for u in info.usages)}, not {usage.value}")
        v = info.latest if version is None else version
        if v not in info.versions:
            raise KeyStoreError("unknown-key", f"key {info.name!r} has no version {v} "
                                f"(has {list(info.versions)})")
        try:
            return self._sealer.unseal_path(self._version_path(info.name, v),
                                            aad=self._aad(info.name, f"v{v}"))
        except SealingError:
            raise KeyStoreError("locked", f"key {info.name!r} v{v} cannot be opened here"
                                ) from None

    def _private(self, info: KeyInfo, version: int | None, usage: Usage) -> PrivateKeyTypes:
        return serialization.load_der_private_key(self._material(info, version, usage), None)

    # -- operations ----------------------------------------------------------------------
    def public_key(self, name: str, version: int | None = None) -> PublicKeyTypes:
        """The public key of an asymmetric key's version (default: newest)."""
        info = self.info(name)
        if info.key_type is KeyType.AES_256:
            raise KeyStoreError("wrong-usage", f"key {name!r} is symmetric: no public key")
        return self._private(info, version, Usage.SIGN if Usage.SIGN in info.usages
                             else next(iter(info.usages))).public_key()

    def signing_key(self, name: str, version: int | None = None) -> PrivateKeyTypes:
        """The private key object of an asymmetric ``sign`` key's version (default: newest),
        for in-process signers that need a key object (``cryptography``'s certificate and CSR
        builders). Nothing is written, so ``exportable`` is not required."""
        info = self.info(name)
        if info.key_type is KeyType.AES_256:
            raise KeyStoreError("wrong-usage", f"key {name!r} is symmetric: it cannot sign")
        return self._private(info, version, Usage.SIGN)

    def sign(self, name: str, data: bytes) -> tuple[int, bytes]:
        """Sign with the newest version; return (version, signature)."""
        info = self.info(name)
        version = info.latest
        key = self._private(info, version, Usage.SIGN)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            algo = hashes.SHA256() if key.curve.key_size == 256 else hashes.SHA384()
            return version, key.sign(data, ec.ECDSA(algo))
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return version, key.sign(data)
        if isinstance(key, rsa.RSAPrivateKey):
            return version, key.sign(data, _pss(), hashes.SHA256())
        raise KeyStoreError("wrong-usage", f"key {name!r} cannot sign")

    def verify(self, name: str, version: int, data: bytes, signature: bytes) -> None:
        """Verify a signature by ``version`` (older versions still verify)."""
        info = self.info(name)
        pub = self._private(info, version, Usage.SIGN).public_key()
        try:
            if isinstance(pub, ec.EllipticCurvePublicKey):
                algo = hashes.SHA256() if pub.curve.key_size == 256 else hashes.SHA384()
                pub.verify(signature, data, ec.ECDSA(algo))
            elif isinstance(pub, ed25519.Ed25519PublicKey):
                pub.verify(signature, data)
            elif isinstance(pub, rsa.RSAPublicKey):
                pub.verify(signature, data, _pss(), hashes.SHA256())
        except InvalidSignature:
            raise VerificationError("keystore.signature", f"signature by {name!r} v{version} "
                                    "does not verify") from None

    def encrypt(self, name: str, plaintext: bytes, *, aad: bytes = b"") -> bytes:
        """Encrypt with the newest version. Output: version (u32 BE) || algorithm output."""
        info = self.info(name)
        version = info.latest
        material = self._material(info, version, Usage.DECRYPT)
        if info.key_type is KeyType.AES_256:
            nonce = self._rng(12)
            body = nonce + AESGCM(material).encrypt(nonce, plaintext, _ctx(name, version, aad))
        else:
            if aad:
                raise KeyStoreError("bad-request", "RSA-OAEP takes no associated data")
            key = serialization.load_der_private_key(material, None)
            assert isinstance(key, rsa.RSAPrivateKey)
            body = key.public_key().encrypt(plaintext, _oaep())
        return struct.pack(">I", version) + body

    def decrypt(self, name: str, ciphertext: bytes, *, aad: bytes = b"") -> bytes:
        """Decrypt with the version named in ``ciphertext`` (older versions still decrypt)."""
        info = self.info(name)
        if len(ciphertext) < 4:
            raise KeyStoreError("bad-request", f"ciphertext: got {len(ciphertext)} bytes, "
                                "want a 4-byte version prefix and a body")
        version = struct.unpack(">I", ciphertext[:4])[0]
        material = self._material(info, version, Usage.DECRYPT)
        body = ciphertext[4:]
        try:
            if info.key_type is KeyType.AES_256:
                return AESGCM(material).decrypt(body[:12], body[12:],
                                                _ctx(name, version, aad))
            key = serialization.load_der_private_key(material, None)
            assert isinstance(key, rsa.RSAPrivateKey)
            return key.decrypt(body, _oaep())
        except (InvalidTag, ValueError):
            raise VerificationError("keystore.decrypt", f"ciphertext for {name!r} "
                                    f"v{version} does not decrypt") from None

    def wrap(self, name: str, key_to_wrap: bytes) -> bytes:
        """Wrap a key with the newest version (AES key wrap with padding, RFC 5649; or
        RSA-OAEP). Output: version (u32 BE) || wrapped key."""
        info = self.info(name)
        version = info.latest
        material = self._material(info, version, Usage.WRAP)
        if info.key_type is KeyType.AES_256:
            body = keywrap.aes_key_wrap_with_padding(material, key_to_wrap)
        else:
            key = serialization.load_der_private_key(material, None)
            assert isinstance(key, rsa.RSAPrivateKey)
            body = key.public_key().encrypt(key_to_wrap, _oaep())
        return struct.pack(">I", version) + body

    def unwrap(self, name: str, wrapped: bytes) -> bytes:
        """Unwrap with the version named in ``wrapped``."""
        info = self.info(name)
        if len(wrapped) < 4:
            raise KeyStoreError("bad-request", "wrapped key: want a 4-byte version prefix")
        version = struct.unpack(">I", wrapped[:4])[0]
        material = self._material(info, version, Usage.WRAP)
        try:
            if info.key_type is KeyType.AES_256:
                return keywrap.aes_key_unwrap_with_padding(material, wrapped[4:])
            key = serialization.load_der_private_key(material, None)
            assert isinstance(key, rsa.RSAPrivateKey)
            return key.decrypt(wrapped[4:], _oaep())
        except (keywrap.InvalidUnwrap, ValueError):
            raise VerificationError("keystore.unwrap", f"wrapped key for {name!r} "
                                    f"v{version} does not unwrap") from None

    def export(self, name: str, version: int | None = None) -> bytes:
        """The private material of an exportable key (PKCS#8 DER, or raw AES bytes)."""
        info = self.info(name)
        if not info.exportable:
            raise KeyStoreError("not-exportable", f"key {name!r} was created non-exportable")
        return self._material(info, version, None)


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _ctx(name: str, version: int, aad: bytes) -> bytes:
    # The key name and version are authenticated with the caller's associated data.
    return name.encode() + b"\0" + struct.pack(">I", version) + aad
