"""IMA measurement-log verification: template hashes, PCR 10 replay, appraisal signatures.

Steps, in the order :func:`verify_ima_log` runs them (each a stable code; the first failure
raises :class:`~veritee.errors.VerificationError` with it, each success or skip is a
:class:`~veritee.findings.Finding` in :attr:`VerifiedImaLog.checks`):

1. ``ima.template_hash``   every entry's template hash equals SHA-1 over its template data
                           (IMA-templates.rst; for ``ima``: digest || name padded to 256 bytes).
                           Violation records (all-zero hash) cannot be recomputed: their data is
                           not bound by any hash, and they are listed in
                           :attr:`VerifiedImaLog.violations` for the policy to judge.
2. ``ima.replay_mismatch`` the entries of PCR 10 replay, in ``bank``, to the caller's value
                           (normally taken from a *verified* TPM quote's PCRs):
                           ``PCR := H(PCR || template digest)`` from all-zero, a violation
                           extending all-0xff (kernel ``ima_add_violation`` /
                           ``ima_pcr_extend``). Skipped when no value is given; the log then
                           proves nothing about the platform, and ``veritee.policy.ima`` rejects
                           it by default.
3. ``ima.signature``       with ``keys``: every non-violation entry carrying an ``ima-sig``
                           signature is parsed (IMA signature v2) and, when a key with its key
                           id is given, verified over the file digest (RSA PKCS#1 v1.5 or ECDSA,
                           prehashed with the header's hash, which must be the d-ng algorithm).
                           A malformed signature, or one that fails under its key, raises;
                           a signature whose key id matches no given key is recorded in
                           :attr:`VerifiedImaLog.unverified_signatures` (a policy matter).

Template digests for banks other than SHA-1: kernels before 5.8 extend every bank with the SHA-1
template hash zero-padded to the bank size (``per_bank_template_hash=False``, the default);
5.8 and later extend each bank with that bank's hash over the template data
(``per_bank_template_hash=True``). A violation extends all-0xff of the bank size either way.

References read, nothing copied: Linux ``Documentation/security/IMA-templates.rst``,
``security/integrity/ima/ima_queue.c`` and ``ima_api.c``; keylime ``keylime/ima/ima.py``
(replay and key-id matching, ``keylime/ima/file_signatures.py``); tpm2-tss
``src/tss2-fapi/ifapi_ima_eventlog.c``. ima-evm-utils ``calc_keyid_v2``: the key id is the last
four bytes of SHA-1 over the subjectPublicKey (PKCS#1 RSAPublicKey / X9.62 point).

Deliberately not checked here: whether PCR 10's value is authentic (the caller passes a value
from a verified quote: ``veritee.trust.tpm.verify_quote``), whether files are acceptable
(``veritee.policy.ima``), and ``ima-buf`` contents (a key loaded onto a keyring is not used to
trust signatures here: the caller supplies trusted keys).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from veritee.errors import FormatError, VerificationError
from veritee.findings import Finding, skipped
from veritee.findings import passed as _ok
from veritee.formats.ima import IMA_PCR, ImaEntry, ImaLog, ImaSignature
from veritee.formats.tpm import HashAlg

__all__ = [
    "ImaPublicKey",
    "VerifiedImaLog",
    "ima_key_id",
    "replay_ima",
    "verify_ima_log",
]

ImaPublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_SIG_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class VerifiedImaLog:
    """An IMA log whose template hashes were recomputed and whose PCR replay was compared.

    ``replayed`` is PCR ``pcr`` in ``bank`` after replaying the log; ``pcr_value`` the value
    it was compared with (``None``: not compared). ``violations`` lists violation entries,
    ``unreplayed`` entries of other PCRs (not backed by the compared value), ``signatures``
    entry index -> key id of each verified signature, ``unverified_signatures`` entries whose
    signature names a key that was not given (``signatures_checked`` is False without keys).
    """

    log: ImaLog
    bank: HashAlg
    pcr: int
    replayed: bytes
    pcr_value: bytes | None
    checks: tuple[Finding, ...]
    violations: tuple[int, ...] = ()
    unreplayed: tuple[int, ...] = ()
    signatures: Mapping[int, bytes] = field(default_factory=lambda: MappingProxyType({}))
    unverified_signatures: tuple[int, ...] = ()
    signatures_checked: bool = False

    @property
    def entries(self) -> tuple[ImaEntry, ...]:
        """The log's entries."""
        return self.log.entries


def ima_key_id(key: ImaPublicKey) -> bytes:
    """The IMA v2 key id: the last 4 bytes of SHA-1 over the raw public key.

    RSA: the PKCS#1 ``RSAPublicKey`` DER; EC: the uncompressed X9.62 point (the subjectPublicKey
    BIT STRING contents in both cases, as ima-evm-utils ``calc_keyid_v2`` and the kernel's
    asymmetric key id).
    """
    if isinstance(key, rsa.RSAPublicKey):
        raw = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        raw = key.public_bytes(serialization.Encoding.X962,
                               serialization.PublicFormat.UncompressedPoint)
    else:
        raise TypeError(f"want an RSA or EC public key, got {type(key).__name__}")
    return hashlib.sha1(raw).digest()[-4:]  # noqa: S324 - the key-id rule, not a security hash


def _template_digest(entry: ImaEntry, bank: HashAlg, per_bank: bool) -> bytes:
    size = bank.digest_size
    if entry.violation:
        return b"\xff" * size
    if bank is HashAlg.SHA1:
        return entry.template_hash
    if per_bank:
        return bank.digest(entry.template_data)
    return entry.template_hash + bytes(size - len(entry.template_hash))


def replay_ima(log: ImaLog, bank: HashAlg = HashAlg.SHA1, *, pcr: int = IMA_PCR,
               per_bank_template_hash: bool = False) -> bytes:
    """Replay the entries of ``pcr`` into ``bank`` from all-zero and return the value."""
    value = bytes(bank.digest_size)
    for entry in log.entries:
        if entry.pcr == pcr:
            value = bank.digest(value + _template_digest(entry, bank, per_bank_template_hash))
    return value


def _check_template_hashes(log: ImaLog) -> Finding:
    code = "ima.template_hash"
    checked = 0
    for index, entry in enumerate(log.entries):
        if entry.violation:
            continue
        got = hashlib.sha1(entry.template_data).digest()  # noqa: S324 - IMA's template hash
        if not hmac.compare_digest(got, entry.template_hash):
            raise VerificationError(
                code, f"entry {index} ({entry.name!r}): template hash got {got.hex()}, "
                      f"want {entry.template_hash.hex()} (logged)")
        checked += 1
    return _ok(code, "template_hash", f"{checked} recomputed",
               f"{len(log.violations)} violation record(s) not recomputable")


def _verify_entry_signature(index: int, entry: ImaEntry,
                            keys: Mapping[bytes, list[ImaPublicKey]]) -> bytes | None:
    """The key id that verified ``entry``'s signature, or None when no key has its id."""
    code = "ima.signature"
    try:
        sig = ImaSignature.from_bytes(entry.sig)
    except FormatError as exc:
        raise VerificationError(code, f"entry {index} ({entry.name!r}): {exc}") from None
    name = sig.hash_name
    if name is None or name not in _SIG_HASHES:
        raise VerificationError(code, f"entry {index}: signature hash_algo got {sig.hash_algo}, "
                                      "want sha1/sha224/sha256/sha384/sha512")
    if name != entry.digest_alg or entry.digest is None:
        raise VerificationError(code, f"entry {index}: signature hash got {name}, want "
                                      f"{entry.digest_alg} (the measured digest's algorithm)")
    candidates = keys.get(sig.key_id)
    if not candidates:
        return None
    algo = Prehashed(_SIG_HASHES[name]())
    for key in candidates:
        try:
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(sig.signature, entry.digest, padding.PKCS1v15(), algo)
            else:
                key.verify(sig.signature, entry.digest, ec.ECDSA(algo))
        except (InvalidSignature, ValueError):
            continue
        return sig.key_id
    raise VerificationError(code, f"entry {index} ({entry.name!r}): signature does not verify "
                                  f"under key id {sig.key_id.hex()}")


def verify_ima_log(log: ImaLog, *, pcr10: bytes | None = None, bank: HashAlg = HashAlg.SHA1,
                   keys: Iterable[ImaPublicKey] = (), pcr: int = IMA_PCR,
                   per_bank_template_hash: bool = False) -> VerifiedImaLog:
    """Verify ``log`` (steps in the module docstring); raise on the first failure.

    ``pcr10`` is the value of PCR ``pcr`` (10 unless the kernel was built otherwise) in
    ``bank``, from a verified quote. ``keys`` are the trusted IMA appraisal public keys.
    """
    if not isinstance(log, ImaLog):
        raise TypeError(f"want an ImaLog, got {type(log).__name__}")
    checks = [_check_template_hashes(log)]

    # 2. replay
    code = "ima.replay_mismatch"
    replayed = replay_ima(log, bank, pcr=pcr, per_bank_template_hash=per_bank_template_hash)
    if pcr10 is None:
        checks.append(skipped("ima.replay", f"PCR{pcr}", "no quoted PCR value given"))
    else:
        if not isinstance(pcr10, bytes) or len(pcr10) != bank.digest_size:
            raise VerificationError(code, f"PCR{pcr}: want {bank.digest_size} bytes for "
                                          f"{bank.name}")
        if not hmac.compare_digest(replayed, pcr10):
            raise VerificationError(code, f"PCR{pcr} {bank.name}: replayed {replayed.hex()}, "
                                          f"want {pcr10.hex()} (quoted)")
        checks.append(_ok("ima.replay", f"PCR{pcr}", replayed.hex(),
                          f"{bank.name} replay matches"))

    # 3. signatures
    code = "ima.signature"
    by_id: dict[bytes, list[ImaPublicKey]] = {}
    for key in keys:
        by_id.setdefault(ima_key_id(key), []).append(key)
    verified: dict[int, bytes] = {}
    unverified: list[int] = []
    if by_id:
        for index, entry in enumerate(log.entries):
            if entry.violation or not entry.sig:
                continue
            key_id = _verify_entry_signature(index, entry, by_id)
            if key_id is None:
                unverified.append(index)
            else:
                verified[index] = key_id
        checks.append(_ok(code, "sig", f"{len(verified)} verified",
                          f"{len(unverified)} signed by keys not given"))
    else:
        checks.append(skipped(code, "sig", "no keys given"))

    return VerifiedImaLog(
        log=log, bank=bank, pcr=pcr, replayed=replayed, pcr_value=pcr10,
        checks=tuple(checks), violations=log.violations,
        unreplayed=tuple(i for i, e in enumerate(log.entries) if e.pcr != pcr),
        signatures=MappingProxyType(verified), unverified_signatures=tuple(unverified),
        signatures_checked=bool(by_id))
