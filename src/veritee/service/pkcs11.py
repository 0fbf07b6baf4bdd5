"""``key_source = "pkcs11"``: the master key is an AES-256 key inside a PKCS#11 token.

The key is generated in the token on first start (``CKA_SENSITIVE``, not
``CKA_EXTRACTABLE``, ``CKA_TOKEN``: PKCS#11 v2.40 section 4.9), so it never leaves the HSM.
The service's data key is wrapped and unwrapped *inside* the token with ``CKM_AES_GCM``
(PKCS#11 v2.40 Current Mechanisms section 2.12.3, ``CK_GCM_PARAMS`` with a fresh random
96-bit IV per wrap and the purpose as AAD); only the wrapped data key is stored, in the
database. The same ciphertext format as :class:`~veritee.service.keys.MasterKey` is used
(``b"v1" || IV || ciphertext+tag``), so rotation between sources is one re-wrap.

Tested against SoftHSM2 (Debian's ``softhsm2``) through ``python-pkcs11``. The PIN comes from
``pkcs11_pin_file`` (owner-only, like every other secret file), never from the settings.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

from veritee.errors import ConfigError, SealingError
from veritee.service.keys import check_private_file
from veritee.service.settings import Settings

__all__ = ["Pkcs11MasterKey", "pkcs11_master_key"]

_VERSION = b"v1"
_NONCE = 12


class Pkcs11MasterKey:
    """A master key held by a PKCS#11 token; ``encrypt``/``decrypt`` run in the token."""

    def __init__(self, module: str, token_label: str, pin: str, key_label: str) -> None:
        try:
            import pkcs11
            from pkcs11 import Attribute, KeyType, ObjectClass
        except ImportError:
            raise ConfigError("key_source = 'pkcs11' needs the python-pkcs11 package") from None
        self._lock = threading.Lock()
        self._session: Any = None
        try:
            lib = pkcs11.lib(module)
            token = lib.get_token(token_label=token_label)
            self._session = token.open(user_pin=pin, rw=True)
        except Exception as exc:  # the library raises many types
            raise ConfigError(f"pkcs11: cannot open token {token_label!r} with {module} "
                              f"({type(exc).__name__})") from None
        try:
            self._key: Any = self._session.get_key(object_class=ObjectClass.SECRET_KEY,
                                                   key_type=KeyType.AES, label=key_label)
        except pkcs11.NoSuchKey:
            self._key = self._session.generate_key(
                KeyType.AES, 256, label=key_label, store=True,
                template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
        except pkcs11.MultipleObjectsReturned:
            raise ConfigError(f"pkcs11: several keys labelled {key_label!r} in the token"
                              ) from None
        # A key check value: the GCM tag of the empty message under a fixed IV and a fixed
        # label. The fixed IV is only ever used for this one constant input.
        kcv = self._gcm(True, b"", bytes(_NONCE), b"veritee-master-key-check")
        self.key_id = hashlib.sha256(b"veritee-pkcs11" + kcv).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"Pkcs11MasterKey(key_id={self.key_id!r})"

    def close(self) -> None:
        """Close the session (the last one closed logs the token out, PKCS#11 C_CloseSession).

        The service needs the HSM only to unwrap the data key at start (and to rotate), so
        it closes the session right after.
        """
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None
                self._key = None

    def __enter__(self) -> Pkcs11MasterKey:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _gcm(self, encrypt: bool, data: bytes, nonce: bytes, aad: bytes) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11.mechanisms import GCMParams

        param = GCMParams(nonce, aad, 128)
        with self._lock:
            if self._key is None:
                raise SealingError()
            if encrypt:
                return bytes(self._key.encrypt(data, mechanism=Mechanism.AES_GCM,
                                               mechanism_param=param))
            return bytes(self._key.decrypt(data, mechanism=Mechanism.AES_GCM,
                                           mechanism_param=param))

    def encrypt(self, plaintext: bytes, aad: bytes) -> str:
        """AES-256-GCM in the token; base64 text of version || IV || ciphertext+tag."""
        nonce = os.urandom(_NONCE)
        return base64.b64encode(_VERSION + nonce + self._gcm(True, plaintext, nonce,
                                                             _VERSION + aad)).decode()

    def decrypt(self, text: str, aad: bytes) -> bytes:
        """Inverse of :meth:`encrypt`; :class:`SealingError` (one message) on any failure."""
        try:
            raw = base64.b64decode(text, validate=True)
        except ValueError:
            raise SealingError() from None
        if raw[:2] != _VERSION or len(raw) < 2 + _NONCE + 16:
            raise SealingError()
        try:
            return self._gcm(False, raw[2 + _NONCE:], raw[2:2 + _NONCE], _VERSION + aad)
        except Exception:  # CKR_ENCRYPTED_DATA_INVALID and friends
            raise SealingError() from None


def pkcs11_master_key(settings: Settings) -> Pkcs11MasterKey:
    """Open the token named by ``settings`` and the master key in it (created on first use)."""
    assert settings.pkcs11_module is not None and settings.pkcs11_pin_file is not None
    pin_file = Path(settings.pkcs11_pin_file)
    check_private_file(pin_file, what="pkcs11_pin_file", dev_mode=settings.dev_mode)
    pin = pin_file.read_text().strip()
    if not pin:
        raise ConfigError(f"pkcs11_pin_file: {pin_file}: empty")
    return Pkcs11MasterKey(settings.pkcs11_module, settings.pkcs11_token, pin,
                           settings.pkcs11_key_label)
