"""Key derivation: thin, typed wrappers over ``cryptography``'s HKDF and SP 800-108 KBKDF.

Nothing here implements a primitive: every function calls ``cryptography``
(``HKDF``/``HKDFExpand``, ``KBKDFHMAC``, ``KBKDFCMAC``) and only fixes the argument shapes,
names the hash by string and checks lengths.

* :func:`hkdf`, :func:`hkdf_extract`, :func:`hkdf_expand`: RFC 5869 HKDF, which is the SP 800-56C
  Rev.2 section 5 two-step KDF (extract with HMAC, expand with SP 800-108 feedback-style HMAC).
* :func:`kbkdf_hmac`, :func:`kbkdf_cmac`: SP 800-108 Rev.1 section 4.1 KDF in **counter mode**
  only. ``cryptography`` 50 offers ``Mode.CounterMode`` alone, so feedback mode (section 4.2)
  and double-pipeline mode (section 4.3) are deliberately not provided. The counter may be
  placed before, after or in the middle of the fixed data, but only at a *byte* boundary
  (``break_location`` is in bytes). CMAC uses AES only (no TDES).
* :func:`derive_key`: the project's own labelled derivation, KBKDF-HMAC-SHA-256 in counter mode
  with fixed data ``"veritee/" || label || 0x00 || context || [L]_32`` (SP 800-108 Rev.1
  section 4, with a 32-bit counter before the fixed data). Use it for every key veritee derives,
  with a distinct label per purpose.
"""

from __future__ import annotations

import enum
from typing import Literal, NamedTuple

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.kdf import kbkdf as _kbkdf
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

__all__ = [
    "HASH_NAMES",
    "CounterLocation",
    "HashName",
    "derive_key",
    "hash_algorithm",
    "hkdf",
    "hkdf_expand",
    "hkdf_extract",
    "kbkdf_cmac",
    "kbkdf_hmac",
]

HashName = Literal[
    "SHA-1",
    "SHA-224",
    "SHA-256",
    "SHA-384",
    "SHA-512",
    "SHA-512/224",
    "SHA-512/256",
    "SHA3-224",
    "SHA3-256",
    "SHA3-384",
    "SHA3-512",
]

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA-1": hashes.SHA1,
    "SHA-224": hashes.SHA224,
    "SHA-256": hashes.SHA256,
    "SHA-384": hashes.SHA384,
    "SHA-512": hashes.SHA512,
    "SHA-512/224": hashes.SHA512_224,
    "SHA-512/256": hashes.SHA512_256,
    "SHA3-224": hashes.SHA3_224,
    "SHA3-256": hashes.SHA3_256,
    "SHA3-384": hashes.SHA3_384,
    "SHA3-512": hashes.SHA3_512,
}

#: Every hash name accepted by this module and by :mod:`veritee.crypto.random`.
HASH_NAMES: tuple[str, ...] = tuple(_HASHES)

# The label namespace for derive_key, so veritee's derivations never collide with another
# application's use of the same secret.
_DERIVE_KEY_NAMESPACE = b"veritee/"


def hash_algorithm(name: str) -> hashes.HashAlgorithm:
    """A fresh ``cryptography`` hash object for ``name`` (one of :data:`HASH_NAMES`).

    ``SHA2-256`` style (ACVP) spellings are accepted too.
    """
    key = name.replace("SHA2-", "SHA-")
    try:
        return _HASHES[key]()
    except KeyError:
        raise ValueError(f"unsupported hash {name!r}; use one of {', '.join(_HASHES)}") from None


def _hash(alg: HashName | hashes.HashAlgorithm) -> hashes.HashAlgorithm:
    return hash_algorithm(alg) if isinstance(alg, str) else alg


def hkdf(
    secret: bytes,
    *,
    length: int,
    salt: bytes | None = None,
    info: bytes = b"",
    hash_name: HashName | hashes.HashAlgorithm = "SHA-256",
) -> bytes:
    """RFC 5869 HKDF (extract then expand); SP 800-56C Rev.2 section 5.1 with HMAC.

    ``salt=None`` is the all-zero salt of ``hash_len`` bytes (RFC 5869 section 2.2; the ACVP
    ``saltMethod: default``). ``length`` is in bytes, at most ``255 * hash_len``.
    """
    return HKDF(algorithm=_hash(hash_name), length=length, salt=salt, info=info).derive(secret)


def hkdf_extract(
    secret: bytes,
    *,
    salt: bytes | None = None,
    hash_name: HashName | hashes.HashAlgorithm = "SHA-256",
) -> bytes:
    """RFC 5869 section 2.2 HKDF-Extract: ``PRK = HMAC-Hash(salt, IKM)``.

    Exposed for SP 800-56C Rev.2 multi-expansion (one extract, several expands). HMAC comes from
    ``cryptography``; an absent salt is ``hash_len`` zero bytes.
    """
    alg = _hash(hash_name)
    key = salt if salt else bytes(alg.digest_size)
    mac = _hmac.HMAC(key, alg)
    mac.update(secret)
    return mac.finalize()


def hkdf_expand(
    prk: bytes,
    *,
    length: int,
    info: bytes = b"",
    hash_name: HashName | hashes.HashAlgorithm = "SHA-256",
) -> bytes:
    """RFC 5869 section 2.3 HKDF-Expand of a pseudorandom key to ``length`` bytes."""
    return HKDFExpand(algorithm=_hash(hash_name), length=length, info=info).derive(prk)


class CounterLocation(enum.Enum):
    """Where the counter ``[i]_r`` goes relative to the fixed data (SP 800-108 Rev.1 section 4)."""

    BEFORE_FIXED = "before fixed data"
    AFTER_FIXED = "after fixed data"
    MIDDLE_FIXED = "middle fixed data"


_LOCATIONS = {
    CounterLocation.BEFORE_FIXED: _kbkdf.CounterLocation.BeforeFixed,
    CounterLocation.AFTER_FIXED: _kbkdf.CounterLocation.AfterFixed,
    CounterLocation.MIDDLE_FIXED: _kbkdf.CounterLocation.MiddleFixed,
}


class _KbkdfParams(NamedTuple):
    llen: int | None
    location: _kbkdf.CounterLocation
    label: bytes | None
    context: bytes | None
    fixed: bytes | None


def _kbkdf_params(
    *,
    length: int,
    label: bytes | None,
    context: bytes | None,
    fixed_data: bytes | None,
    counter_bytes: int,
    length_bytes: int,
    location: CounterLocation,
    break_location: int | None,
) -> _KbkdfParams:
    if length <= 0:
        raise ValueError("length must be a positive number of bytes")
    if not 1 <= counter_bytes <= 4:
        raise ValueError("counter_bytes (r/8) must be 1..4 (SP 800-108 Rev.1 section 4)")
    if (location is CounterLocation.MIDDLE_FIXED) != (break_location is not None):
        raise ValueError("break_location is required with, and only with, MIDDLE_FIXED")
    if fixed_data is not None:
        if label is not None or context is not None:
            raise ValueError("give either fixed_data or label/context, not both")
        return _KbkdfParams(None, _LOCATIONS[location], None, None, fixed_data)
    return _KbkdfParams(length_bytes, _LOCATIONS[location], label or b"", context or b"", None)


def kbkdf_hmac(
    key: bytes,
    *,
    length: int,
    hash_name: HashName | hashes.HashAlgorithm = "SHA-256",
    label: bytes | None = None,
    context: bytes | None = None,
    fixed_data: bytes | None = None,
    counter_bytes: int = 4,
    length_bytes: int = 4,
    location: CounterLocation = CounterLocation.BEFORE_FIXED,
    break_location: int | None = None,
) -> bytes:
    """SP 800-108 Rev.1 section 4.1 counter-mode KDF with HMAC as the PRF.

    Fixed data is either given whole (``fixed_data``) or built by ``cryptography`` as
    ``label || 0x00 || context || [L]_{8*length_bytes}``. ``counter_bytes`` is r/8;
    ``break_location`` (bytes) places the counter inside the fixed data for ``MIDDLE_FIXED``.
    ``length`` is in bytes.
    """
    p = _kbkdf_params(
        length=length,
        label=label,
        context=context,
        fixed_data=fixed_data,
        counter_bytes=counter_bytes,
        length_bytes=length_bytes,
        location=location,
        break_location=break_location,
    )
    kdf = _kbkdf.KBKDFHMAC(
        _hash(hash_name),
        _kbkdf.Mode.CounterMode,
        length,
        counter_bytes,
        p.llen,
        p.location,
        p.label,
        p.context,
        p.fixed,
        break_location=break_location,
    )
    return kdf.derive(key)


def kbkdf_cmac(
    key: bytes,
    *,
    length: int,
    label: bytes | None = None,
    context: bytes | None = None,
    fixed_data: bytes | None = None,
    counter_bytes: int = 4,
    length_bytes: int = 4,
    location: CounterLocation = CounterLocation.BEFORE_FIXED,
    break_location: int | None = None,
) -> bytes:
    """SP 800-108 Rev.1 section 4.1 counter-mode KDF with CMAC-AES as the PRF.

    ``key`` is an AES-128/192/256 key (16, 24 or 32 bytes). Arguments as :func:`kbkdf_hmac`.
    """
    if len(key) not in (16, 24, 32):
        raise ValueError("CMAC-AES key must be 16, 24 or 32 bytes")
    p = _kbkdf_params(
        length=length,
        label=label,
        context=context,
        fixed_data=fixed_data,
        counter_bytes=counter_bytes,
        length_bytes=length_bytes,
        location=location,
        break_location=break_location,
    )
    kdf = _kbkdf.KBKDFCMAC(
        algorithms.AES,
        _kbkdf.Mode.CounterMode,
        length,
        counter_bytes,
        p.llen,
        p.location,
        p.label,
        p.context,
        p.fixed,
        break_location=break_location,
    )
    return kdf.derive(key)


def derive_key(secret: bytes, label: str, context: bytes = b"", length: int = 32) -> bytes:
    """Derive a ``length``-byte key for one purpose from ``secret``: veritee's labelled KDF.

    KBKDF-HMAC-SHA-256, counter mode (SP 800-108 Rev.1 section 4.1), 32-bit counter before the
    fixed data ``b"veritee/" + label || 0x00 || context || [8*length]_32``. Different ``label``
    or ``context`` values give independent keys; ``label`` names the purpose
    (``"sealing/aes-256-gcm"``), ``context`` binds the use (a measurement, a key version).

    ``secret`` must hold at least 16 bytes (112-bit security floor, SP 800-108 Rev.1 section 4
    with SP 800-131A); ``label`` must be non-empty ASCII without NUL (it precedes the 0x00
    separator).
    """
    if len(secret) < 16:
        raise ValueError("secret must be at least 16 bytes")
    if not label or not label.isascii() or "\x00" in label:
        raise ValueError("label must be a non-empty ASCII string without NUL")
    if not 1 <= length <= 1024:
        raise ValueError("length must be 1..1024 bytes")
    return kbkdf_hmac(
        secret,
        length=length,
        hash_name="SHA-256",
        label=_DERIVE_KEY_NAMESPACE + label.encode("ascii"),
        context=context,
    )
