"""The verifier's half of TPM credential activation: TPM2_MakeCredential done in software.

A verifier that trusts an EK (its certificate chains to a TPM vendor's root) learns that an AK
lives in the *same* TPM by encrypting a random challenge to the EK, bound to the AK's Name; only
that TPM can run TPM2_ActivateCredential and return the challenge, and it does so only when an
object with that Name is loaded in it (TPM 2.0 Part 1, "Credential Protection"; Part 3,
TPM2_MakeCredential / TPM2_ActivateCredential). Steps, with an RSA EK (Part 1, "Credential
Protection", and its annex on RSA secret sharing):

1. ``seed``: random, the size of the EK's nameAlg digest.
2. ``secret`` (TPM2B_ENCRYPTED_SECRET) = RSA-OAEP(EK, seed), hash = nameAlg, label
   ``"IDENTITY\\0"`` (the label's terminating zero is part of it).
3. ``symKey`` = KDFa(nameAlg, seed, "STORAGE", Name(AK), "", EK's symmetric key bits);
   ``encIdentity`` = AES-CFB(symKey, IV = 0, TPM2B_DIGEST(challenge)).
4. ``HMACkey`` = KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits);
   ``outerHMAC`` = HMAC(nameAlg, HMACkey, encIdentity || Name(AK)).
5. ``credentialBlob`` (TPM2B_ID_OBJECT) = TPM2B(TPM2B_DIGEST(outerHMAC) || encIdentity).

KDFa is SP 800-108 counter-mode HMAC with a 32-bit counter before the fixed input and a 32-bit
length in bits after it (Part 1, 11.4.10.2): ``cryptography``'s KBKDFHMAC computes exactly that.
Only RSA EKs are handled (the ECC path needs an ephemeral ECDH and KDFe); swtpm's RSA EK at
0x81010001 is the one used.
"""

from __future__ import annotations

import hmac
import os
import struct

from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode

from veritee.errors import FormatError
from veritee.formats.tpm import HashAlg, ObjectType, TpmtPublic
from veritee.trust.tpm import public_key

__all__ = ["Credential", "kdfa", "make_credential"]

_ALG_AES = 0x0006  # TPM_ALG_AES (Part 2, Table 9)
_HASHES: dict[HashAlg, type[hashes.HashAlgorithm]] = {
    HashAlg.SHA1: hashes.SHA1, HashAlg.SHA256: hashes.SHA256,
    HashAlg.SHA384: hashes.SHA384, HashAlg.SHA512: hashes.SHA512,
}


def kdfa(hash_alg: HashAlg, key: bytes, label: bytes, *, context_u: bytes = b"",
         context_v: bytes = b"", bits: int) -> bytes:
    """KDFa (TPM 2.0 Part 1, 11.4.10.2) for a whole number of bytes."""
    if bits % 8:
        raise ValueError("KDFa: only whole bytes are used here")
    kdf = KBKDFHMAC(algorithm=_HASHES[hash_alg](), mode=Mode.CounterMode, length=bits // 8,
                    rlen=4, llen=4, location=CounterLocation.BeforeFixed, label=label,
                    context=context_u + context_v, fixed=None)
    return kdf.derive(key)


class Credential:
    """A challenge for TPM2_ActivateCredential and the secret it hides."""

    def __init__(self, credential_blob: bytes, encrypted_secret: bytes, secret: bytes) -> None:
        self.credential_blob = credential_blob
        """TPM2B_ID_OBJECT (with its size prefix)."""
        self.encrypted_secret = encrypted_secret
        """TPM2B_ENCRYPTED_SECRET (with its size prefix)."""
        self._secret = secret

    def check(self, answer: bytes) -> bool:
        """True when the TPM's answer is the hidden secret (constant-time compare)."""
        return hmac.compare_digest(bytes(answer), self._secret)


def _tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def make_credential(ek: TpmtPublic, ak_name: bytes, secret: bytes | None = None) -> Credential:
    """Encrypt ``secret`` (default: 32 random bytes) to ``ek`` for the object named ``ak_name``."""
    if ek.type is not ObjectType.RSA:
        raise FormatError("TPMT_PUBLIC", "type", got=ek.type.name, want="RSA (an RSA EK)")
    if ek.symmetric != _ALG_AES or len(ek.symmetric_detail) < 2:
        raise FormatError("TPMT_PUBLIC", "parameters.symmetric", got=f"0x{ek.symmetric:04x}",
                          want="AES (a storage key's inner wrapper)")
    key = public_key(ek)
    assert isinstance(key, rsa.RSAPublicKey)
    name_alg = ek.name_alg
    challenge = os.urandom(32) if secret is None else bytes(secret)
    if len(challenge) > name_alg.digest_size:
        raise ValueError(f"secret: at most {name_alg.digest_size} bytes (a TPM2B_DIGEST)")
    seed = os.urandom(name_alg.digest_size)
    h = _HASHES[name_alg]()
    encrypted = key.encrypt(seed, padding.OAEP(mgf=padding.MGF1(h), algorithm=h,
                                               label=b"IDENTITY\x00"))
    sym_bits = int.from_bytes(ek.symmetric_detail[:2], "big")
    sym_key = kdfa(name_alg, seed, b"STORAGE", context_u=ak_name, bits=sym_bits)
    # AES-CFB is what the TPM uses here (Part 1, "Credential Protection"): hence the decrepit
    # module of cryptography.
    enc = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).encryptor()
    enc_identity = enc.update(_tpm2b(challenge)) + enc.finalize()
    hmac_key = kdfa(name_alg, seed, b"INTEGRITY", bits=name_alg.digest_size * 8)
    outer = hmac.new(hmac_key, enc_identity + ak_name, name_alg.hashlib_name).digest()
    blob = _tpm2b(_tpm2b(outer) + enc_identity)
    return Credential(blob, _tpm2b(encrypted), challenge)
