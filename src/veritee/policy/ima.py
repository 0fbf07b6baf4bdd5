"""IMA appraisal: a :class:`VerifiedImaLog` + an :class:`ImaPolicy` -> an :class:`Appraisal`.

The log has already been *verified* (``veritee.trust.ima``): template hashes recomputed, PCR 10
replayed against a quoted value when one was given, signatures checked under the given keys.
This module decides whether what was measured is *acceptable*. Every check runs on every call,
in this order, and yields at least one :class:`Finding` (one per offending entry when several):

====  ==============================  =====================================================
 #    code                            what
====  ==============================  =====================================================
 1    ima.replay.unchecked            the log was replayed against a quoted PCR value
                                      (unless ``require_quoted_pcr=False``)
 2    ima.entry.unreplayed            every entry extends the replayed PCR (an entry of
                                      another PCR is not backed by the compared value)
 3    ima.violation                   no violation records (unless ``allow_violations``):
                                      a file was measured while open for write (ToMToU)
                                      or opened for write while measured
 4    ima.digest.weak                 file digests are not MD5/SHA-1 (unless
                                      ``allow_weak_digests``; the ``ima`` template is SHA-1)
 5    ima.allowlist.unknown_path      every measured path is in the allow-list
 6    ima.allowlist.digest_mismatch   every measured file digest is allowed for its path
 7    ima.signature.missing           with ``require_signatures``: every file entry (all but
                                      ``boot_aggregate``) carries a verified signature
====  ==============================  =====================================================

With ``accept_signed`` an entry whose signature verified under a trusted key passes checks 5
and 6 (keylime's "signature or allow-list" rule). Violation records are not matched against
the allow-list: their data is bound by no hash, so their path and digest prove nothing; check 3
judges them. Entries of other PCRs are judged by check 2 only.

Secure defaults: the allow-list has no default (an empty one rejects every entry: there is no
accept-all IMA policy), the log must have been compared with a quoted PCR, violations and weak
digests are rejected. Deliberately left out: path exclusion globs, ``ima-buf`` keyring rules,
and the boot aggregate's relation to PCRs 0-9 (put the expected ``boot_aggregate`` digest in
the allow-list).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from veritee.errors import ConfigError
from veritee.formats.ima import DIGEST_SIZES, ImaEntry
from veritee.policy import Appraisal, Finding
from veritee.policy._checks import contains
from veritee.policy._checks import finding as _check
from veritee.policy._checks import skipped as _skip
from veritee.trust.ima import VerifiedImaLog

__all__ = ["FINDING_CODES", "AllowedDigest", "ImaPolicy", "appraise", "claims"]

FINDING_CODES: frozenset[str] = frozenset({
    "ima.replay.unchecked",
    "ima.entry.unreplayed",
    "ima.violation",
    "ima.digest.weak",
    "ima.allowlist.unknown_path",
    "ima.allowlist.digest_mismatch",
    "ima.signature.missing",
})

BOOT_AGGREGATE = "boot_aggregate"
_WEAK = frozenset({"md5", "sha1"})
_HEXRE = re.compile(r"(?:[0-9a-fA-F]{2})+")


@dataclass(frozen=True)
class AllowedDigest:
    """One allowed file digest; ``alg`` ``None`` matches any algorithm of that digest size."""

    alg: str | None
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> AllowedDigest:
        """``hex`` or ``alg:hex`` (as keylime runtime policies and the ascii log write it)."""
        if not isinstance(text, str):
            raise ConfigError(f"ImaPolicy.allowlist: digest {text!r}, want a hex string")
        alg, sep, hexpart = text.rpartition(":")
        if not _HEXRE.fullmatch(hexpart):
            raise ConfigError(f"ImaPolicy.allowlist: digest {text!r}, want [alg:]hex")
        digest = bytes.fromhex(hexpart)
        name = alg.lower() if sep else None
        if name is not None and name in DIGEST_SIZES and DIGEST_SIZES[name] != len(digest):
            raise ConfigError(f"ImaPolicy.allowlist: {text!r} is {len(digest)} bytes, want "
                              f"{DIGEST_SIZES[name]} for {name}")
        return cls(name, digest)

    def __str__(self) -> str:
        return f"{self.alg}:{self.digest.hex()}" if self.alg else self.digest.hex()


@dataclass(frozen=True)
class ImaPolicy:
    """What an acceptable IMA log looks like. Frozen; the allow-list is copied read-only.

    ``allowlist`` maps a path (as IMA records it; ``boot_aggregate`` included) to the file
    digests allowed for it, each ``hex`` or ``alg:hex``.
    """

    allowlist: Mapping[str, Iterable[str]]
    policy_id: str = "ima"
    require_quoted_pcr: bool = True
    allow_violations: bool = False
    allow_weak_digests: bool = False
    accept_signed: bool = False
    require_signatures: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.allowlist, Mapping):
            raise ConfigError("ImaPolicy.allowlist: want a mapping path -> digests")
        frozen: dict[str, tuple[AllowedDigest, ...]] = {}
        for path, digests in self.allowlist.items():
            if not isinstance(path, str) or not path:
                raise ConfigError(f"ImaPolicy.allowlist: path {path!r}, want a non-empty str")
            if isinstance(digests, str | bytes):
                raise ConfigError(f"ImaPolicy.allowlist[{path!r}]: want a list of digests")
            frozen[path] = tuple(d if isinstance(d, AllowedDigest) else AllowedDigest.parse(d)
                                 for d in digests)
        object.__setattr__(self, "allowlist", MappingProxyType(frozen))

    def allowed(self, path: str) -> tuple[AllowedDigest, ...] | None:
        """The digests allowed for ``path`` (``None``: the path is not in the allow-list)."""
        value = self.allowlist.get(path)
        return None if value is None else tuple(value)  # type: ignore[arg-type]


def _matches(entry: ImaEntry, allowed: Iterable[AllowedDigest]) -> bool:
    digest = entry.digest or b""
    same_alg = [a.digest for a in allowed
                if (a.alg is None and len(a.digest) == len(digest)) or a.alg == entry.digest_alg]
    return contains(digest, same_alg)


def _judged(v: VerifiedImaLog) -> list[tuple[int, ImaEntry]]:
    """Entries the allow-list judges: replayed, not violations."""
    return [(i, e) for i, e in enumerate(v.entries) if e.pcr == v.pcr and not e.violation]


def _label(index: int, entry: ImaEntry) -> str:
    return f"entry[{index}] {entry.name}"


def _check_replay(v: VerifiedImaLog, p: ImaPolicy) -> Iterable[Finding]:
    code = "ima.replay.unchecked"
    if not p.require_quoted_pcr:
        yield _skip(code, f"PCR{v.pcr}", "require_quoted_pcr is False")
        return
    got = "compared" if v.pcr_value is not None else "not compared"
    yield _check(code, f"PCR{v.pcr}", got, "compared with a quoted value",
                 v.pcr_value is not None,
                 "an IMA log not replayed against a quoted PCR proves nothing")


def _check_unreplayed(v: VerifiedImaLog, p: ImaPolicy) -> Iterable[Finding]:
    code = "ima.entry.unreplayed"
    bad = [(i, v.entries[i]) for i in v.unreplayed]
    for i, e in bad:
        yield _check(code, _label(i, e), f"PCR{e.pcr}", f"PCR{v.pcr}", False,
                     "not covered by the replayed PCR")
    if not bad:
        yield _check(code, "entries", f"all PCR{v.pcr}", f"PCR{v.pcr}", True)


def _check_violations(v: VerifiedImaLog, p: ImaPolicy) -> Iterable[Finding]:
    code = "ima.violation"
    if p.allow_violations:
        yield _skip(code, "violations", "allow_violations is True")
        return
    for i in v.violations:
        yield _check(code, _label(i, v.entries[i]), "violation (zero template hash)",
                     "no violation", False, "measurement violation recorded by the kernel")
    if not v.violations:
        yield _check(code, "violations", 0, 0, True)


def _check_weak(v: VerifiedImaLog, p: ImaPolicy) -> Iterable[Finding]:
    code = "ima.digest.weak"
    if p.allow_weak_digests:
        yield _skip(code, "digest_alg", "allow_weak_digests is True")
        return
    weak = sorted({e.digest_alg or "?" for _, e in _judged(v)} & _WEAK)
    yield _check(code, "digest_alg", weak or "none weak", "no md5/sha1", not weak,
                 "file digests use a weak hash")


def _signed(v: VerifiedImaLog, p: ImaPolicy, index: int) -> bool:
    return p.accept_signed and index in v.signatures


def _check_allowlist(v: VerifiedImaLog, p: ImaPolicy) -> Iterable[Finding]:
    unknown, mismatch = "ima.allowlist.unknown_path", "ima.allowlist.digest_mismatch"
    n_unknown = n_mismatch = 0
    judged = _judged(v)
    for i, e in judged:
        if _signed(v, p, i):
            continue
        allowed = p.allowed(e.name) if e.name is not None else None
        if allowed is None:
            n_unknown += 1
            yield _check(unknown, _label(i, e), e.name, "a path in the allow-list", False,
                         "path not in the allow-list")
        elif not _matches(e, allowed):
            n_mismatch += 1
            yield _check(mismatch, _label(i, e), e.file_digest,
                         [str(a) for a in allowed], False, "digest not allowed for this path")
    if not n_unknown:
        yield _check(unknown, "paths", f"{len(judged)} known", "every path known", True)
    if not n_mismatch:
        yield _check(mismatch, "digests", f"{len(judged)} checked", "every digest allowed", True)


def _check_signatures(v: VerifiedImaLog, p: ImaPolicy) -> Iterable[Finding]:
    code = "ima.signature.missing"
    if not p.require_signatures:
        yield _skip(code, "sig", "require_signatures is False")
        return
    files = [(i, e) for i, e in _judged(v) if e.name != BOOT_AGGREGATE]
    missing = [(i, e) for i, e in files if i not in v.signatures]
    for i, e in missing:
        got = "signature by a key not given" if i in v.unverified_signatures else (
            "signature not checked" if e.sig else "no signature")
        yield _check(code, _label(i, e), got, "a verified signature", False,
                     "file not signed by a trusted key")
    if not missing:
        yield _check(code, "sig", f"{len(files)} verified", "every file signed", True)


_CHECKS = (_check_replay, _check_unreplayed, _check_violations, _check_weak,
           _check_allowlist, _check_signatures)


def claims(verified: VerifiedImaLog) -> dict[str, Any]:
    """Verified claims a relying party may use."""
    return {
        "pcr": verified.pcr,
        "bank": verified.bank.name.lower(),
        "replayed": verified.replayed.hex(),
        "quoted": verified.pcr_value is not None,
        "entries": len(verified.entries),
        "violations": len(verified.violations),
        "signed_entries": len(verified.signatures),
    }


def appraise(verified: VerifiedImaLog, policy: ImaPolicy) -> Appraisal:
    """Run every check; the appraisal carries the verification trace and the claims."""
    findings = [f for check in _CHECKS for f in check(verified, policy)]
    return Appraisal(tee="ima", policy_id=policy.policy_id, findings=tuple(findings),
                     verification=verified.checks, claims=claims(verified))
