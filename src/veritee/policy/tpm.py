"""TPM appraisal: a :class:`VerifiedTpmQuote` + a :class:`TpmPolicy` -> an :class:`Appraisal`.

The quote has already been *verified* (``veritee.trust.tpm``): AK signature, TPM_GENERATED,
nonce, PCR digest and, when a log was given, event-log replay. This module decides whether the
measured state is *acceptable*. Every check runs on every call, in this order, and yields at
least one :class:`Finding` (one per PCR or event rule where it has several subjects):

====  ================================  ===================================================
 #    code                              what
====  ================================  ===================================================
 1    tpm.hash.weak                     signature hash and quoted banks are not SHA-1
                                        (unless ``allow_sha1``)
 2    tpm.nonce.mismatch                TPMS_ATTEST.extraData == ``nonce`` (skip if None)
 3    tpm.pcr.not_quoted                every expected PCR is covered by the quote
 4    tpm.pcr.mismatch                  every expected PCR has its expected value
 5    tpm.eventlog.missing              a replayed event log is present when the policy
                                        needs one (``require_event_log`` or event rules)
 6    tpm.eventlog.unquoted             every event rule's PCR was replayed against the
                                        quote (an event in an unquoted PCR proves nothing)
 7    tpm.eventlog.required_event_missing  each required event is in the replayed log
 8    tpm.eventlog.forbidden_event      no forbidden event is in the replayed log
 9    tpm.ak.properties                 the AK is a TPMT_PUBLIC with fixedTPM, fixedParent,
                                        sensitiveDataOrigin, restricted, sign and not
                                        decrypt (``require_ak_properties``)
10    tpm.qualified_signer.mismatch     TPMS_ATTEST.qualifiedSigner in ``qualified_signers``
11    tpm.clock.unsafe                  TPMS_CLOCK_INFO.safe (``require_clock_safe``)
12    tpm.firmware.below_minimum        TPMS_ATTEST.firmwareVersion >= ``min_firmware_version``
13    tpm.ak.uncertified                the AK was bound to a certificate chain
                                        (``trust.tpm.verify_ak_certificate``) when
                                        ``require_ak_certificate``
====  ================================  ===================================================

Why the AK properties are required by default (TPM 2.0 Part 1, "Object Attributes" and
"Restricted signing keys"): ``restricted|sign`` is what makes TPM_GENERATED meaningful, and
``fixedTPM|fixedParent`` with ``sensitiveDataOrigin`` is what makes the key *this* TPM's: a key
without fixedTPM can be duplicated to another TPM (or to software, if it has no
encryptedDuplication), and one whose sensitive part was imported may be known outside the TPM.
A bare public key carries no attributes, so it fails the check unless the policy waives it
(``require_ak_properties=False``) or the AK is vouched for by an Azure HCL report (skipped).
go-tpm-tools' server refuses AKs that are not fixedTPM|fixedParent|sensitiveDataOrigin|
restricted|sign the same way. ``require_ak_certificate`` (off by default: most TPMs have no
AK certificate) demands that the AK was bound to a certificate chain by
``veritee.trust.tpm.verify_ak_certificate``, e.g. GCE's AK certificate from the CA that also
issues its EK certificates; credential activation is not implemented.

Replay mismatches are not a policy matter: ``veritee.trust.tpm`` raises
``tpm.eventlog.replay_mismatch`` for them, so a log that disagrees with the quote never reaches
appraisal.

Secure defaults: ``pcrs`` has no default and must name at least one PCR (no accept-all policy);
SHA-1 is rejected unless ``allow_sha1=True``; the AK must be a non-duplicable restricted
signing key (above). Deliberately left out: AK provenance (EK/AK certificates), reset-count
checks, and interpreting events (Secure Boot state, kernel command lines): rules match event
digests, which is what the TPM vouches for.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from veritee.errors import ConfigError
from veritee.formats.eventlog import EventType
from veritee.formats.tpm import HashAlg, ObjectAttr
from veritee.policy import Appraisal, Finding, Outcome
from veritee.policy._checks import finding as _ok
from veritee.policy._checks import skipped as _skip
from veritee.trust.tpm import VerifiedTpmQuote

__all__ = ["AK_REQUIRED_ATTRIBUTES", "FINDING_CODES", "EventRule", "TpmPolicy", "appraise",
           "claims"]

AK_REQUIRED_ATTRIBUTES = (ObjectAttr.FIXED_TPM | ObjectAttr.FIXED_PARENT
                          | ObjectAttr.SENSITIVE_DATA_ORIGIN | ObjectAttr.RESTRICTED
                          | ObjectAttr.SIGN_ENCRYPT)
"""TPMA_OBJECT bits an attestation key must have (and ``decrypt`` it must not)."""

FINDING_CODES: frozenset[str] = frozenset({
    "tpm.hash.weak",
    "tpm.nonce.mismatch",
    "tpm.pcr.not_quoted",
    "tpm.pcr.mismatch",
    "tpm.eventlog.missing",
    "tpm.eventlog.unquoted",
    "tpm.eventlog.required_event_missing",
    "tpm.eventlog.forbidden_event",
    "tpm.ak.properties",
    "tpm.qualified_signer.mismatch",
    "tpm.clock.unsafe",
    "tpm.firmware.below_minimum",
    "tpm.ak.uncertified",
})


@dataclass(frozen=True)
class EventRule:
    """An event identified by the PCR it extends and its digest in one bank.

    ``event_type`` optionally narrows the match (e.g. EV_EFI_BOOT_SERVICES_APPLICATION for a
    kernel/bootloader hash, EV_EFI_VARIABLE_DRIVER_CONFIG for a Secure Boot variable).
    """

    pcr: int
    hash_alg: HashAlg
    digest: bytes
    event_type: EventType | int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.pcr < 32:
            raise ConfigError(f"EventRule.pcr: got {self.pcr}, want 0..31")
        if len(self.digest) != self.hash_alg.digest_size:
            raise ConfigError(f"EventRule.digest: got {len(self.digest)} bytes, want "
                              f"{self.hash_alg.digest_size} for {self.hash_alg.name}")

    def __str__(self) -> str:
        kind = "" if self.event_type is None else f" {self.event_type!s}"
        return f"PCR{self.pcr} {self.hash_alg.name}:{self.digest.hex()}{kind}"


@dataclass(frozen=True)
class TpmPolicy:
    """What an acceptable TPM quote looks like. Frozen; mappings are copied read-only.

    ``pcrs`` maps bank -> PCR index -> expected value and must name at least one PCR.
    """

    pcrs: Mapping[HashAlg, Mapping[int, bytes]]
    policy_id: str = "tpm"
    nonce: bytes | None = None
    require_event_log: bool = False
    required_events: frozenset[EventRule] = frozenset()
    forbidden_events: frozenset[EventRule] = frozenset()
    allow_sha1: bool = False
    require_ak_properties: bool = True
    qualified_signers: frozenset[bytes] | None = None  # TPM2B_NAME values of known signers
    require_clock_safe: bool = False
    min_firmware_version: int | None = None
    require_ak_certificate: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.pcrs, Mapping):
            raise ConfigError("TpmPolicy.pcrs: want a mapping bank -> index -> value")
        frozen: dict[HashAlg, Mapping[int, bytes]] = {}
        for bank, values in self.pcrs.items():
            if not isinstance(bank, HashAlg):
                raise ConfigError(f"TpmPolicy.pcrs: bank {bank!r} is not a HashAlg")
            checked: dict[int, bytes] = {}
            for index, value in values.items():
                if not isinstance(index, int) or not 0 <= index < 32:
                    raise ConfigError(f"TpmPolicy.pcrs[{bank.name}]: index {index!r}, want 0..31")
                if not isinstance(value, bytes) or len(value) != bank.digest_size:
                    raise ConfigError(f"TpmPolicy.pcrs[{bank.name}][{index}]: want "
                                      f"{bank.digest_size} bytes")
                checked[index] = value
            frozen[bank] = MappingProxyType(checked)
        if not any(frozen.values()):
            raise ConfigError("TpmPolicy.pcrs: name at least one expected PCR value "
                              "(there is no accept-all TPM policy)")
        object.__setattr__(self, "pcrs", MappingProxyType(frozen))
        for name in ("required_events", "forbidden_events"):
            rules: frozenset[object] = frozenset(getattr(self, name))
            if not all(isinstance(r, EventRule) for r in rules):
                raise ConfigError(f"TpmPolicy.{name}: want EventRule items")
            object.__setattr__(self, name, rules)
        if self.nonce is not None and not isinstance(self.nonce, bytes):
            raise ConfigError("TpmPolicy.nonce: want bytes or None")
        for name in ("allow_sha1", "require_ak_properties", "require_clock_safe",
                     "require_ak_certificate"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"TpmPolicy.{name}: want true or false")
        if self.qualified_signers is not None:
            signers = self.qualified_signers
            if isinstance(signers, bytes) or not signers or not all(
                    isinstance(x, bytes) and x for x in signers):
                raise ConfigError("TpmPolicy.qualified_signers: want a non-empty set of Names")
            object.__setattr__(self, "qualified_signers", frozenset(signers))
        fw = self.min_firmware_version
        if fw is not None and (isinstance(fw, bool) or not isinstance(fw, int)
                               or not 0 <= fw < 1 << 64):
            raise ConfigError("TpmPolicy.min_firmware_version: want an integer 0..2**64-1")






def _check_hash(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code = "tpm.hash.weak"
    used = sorted({v.signature.hash_alg.name,
                   *(s.hash_alg.name for s in v.quote.pcr_select)})
    if p.allow_sha1:
        yield _skip(code, "hash algorithms", "allow_sha1 is set")
        return
    yield _ok(code, "signature hash and PCR banks", used, "no SHA1", "SHA1" not in used,
              "SHA-1 is not collision resistant")


def _check_nonce(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code = "tpm.nonce.mismatch"
    if p.nonce is None:
        yield _skip(code, "TPMS_ATTEST.extraData", "policy has no nonce")
        return
    yield _ok(code, "TPMS_ATTEST.extraData", v.nonce, p.nonce,
              hmac.compare_digest(v.nonce, p.nonce))


def _check_pcrs(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    quoted_any = False
    for bank, values in sorted(p.pcrs.items()):
        for index, want in sorted(values.items()):
            fld = f"PCR {bank.name}:{index}"
            got = v.pcrs.get(bank, {}).get(index)
            quoted = got is not None
            yield _ok("tpm.pcr.not_quoted", fld, "quoted" if quoted else "not quoted",
                      "quoted", quoted)
            if got is None:
                continue
            quoted_any = True
            yield _ok("tpm.pcr.mismatch", fld, got, want, hmac.compare_digest(got, want))
    if not quoted_any:
        yield Finding("tpm.pcr.mismatch", Outcome.FAIL, "PCRs", None, "quoted PCR values",
                      "no expected PCR is in the quote")


def _needs_log(p: TpmPolicy) -> bool:
    return p.require_event_log or bool(p.required_events) or bool(p.forbidden_events)


def _check_log_present(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code = "tpm.eventlog.missing"
    if not _needs_log(p):
        yield _skip(code, "event log", "policy needs no event log")
        return
    present = v.event_log is not None and bool(v.replayed)
    yield _ok(code, "event log", "replayed" if present else "absent", "replayed", present)


def _rules(p: TpmPolicy) -> list[EventRule]:
    return sorted(p.required_events | p.forbidden_events, key=str)


def _check_log_quoted(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code = "tpm.eventlog.unquoted"
    rules = _rules(p)
    if not rules:
        yield _skip(code, "event rules", "policy has no event rules")
        return
    replayed = set(v.replayed)
    for rule in rules:
        ok = (rule.hash_alg, rule.pcr) in replayed
        yield _ok(code, f"PCR {rule.hash_alg.name}:{rule.pcr}",
                  "replayed" if ok else "not replayed against the quote", "replayed", ok)


def _matches(v: VerifiedTpmQuote, rule: EventRule) -> bool:
    if v.event_log is None or (rule.hash_alg, rule.pcr) not in set(v.replayed):
        return False
    for ev in v.event_log.measured():
        if ev.pcr != rule.pcr:
            continue
        if rule.event_type is not None and int(ev.type) != int(rule.event_type):
            continue
        digest = ev.digest(rule.hash_alg)
        if digest is not None and hmac.compare_digest(digest, rule.digest):
            return True
    return False


def _check_required(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code = "tpm.eventlog.required_event_missing"
    if not p.required_events:
        yield _skip(code, "required events", "policy requires no events")
        return
    for rule in sorted(p.required_events, key=str):
        found = _matches(v, rule)
        yield _ok(code, str(rule), "present" if found else "absent", "present", found)


def _check_forbidden(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code = "tpm.eventlog.forbidden_event"
    if not p.forbidden_events:
        yield _skip(code, "forbidden events", "policy forbids no events")
        return
    for rule in sorted(p.forbidden_events, key=str):
        found = _matches(v, rule)
        yield _ok(code, str(rule), "present" if found else "absent", "absent", not found)


def _check_ak(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code, fld = "tpm.ak.properties", "AK TPMA_OBJECT"
    want = "fixedTPM|fixedParent|sensitiveDataOrigin|restricted|sign, not decrypt"
    if not p.require_ak_properties:
        yield _skip(code, fld, "require_ak_properties is false")
        return
    if v.ak_attributes is None:
        if v.hcl_report is not None:
            yield _skip(code, fld, "the AK is vouched for by the Azure HCL report, which"
                                   " carries no attributes")
            return
        yield _ok(code, fld, "unknown (a bare public key)", want, False,
                  "pass the AK as a TPMT_PUBLIC so its attributes can be checked")
        return
    attrs = ObjectAttr(v.ak_attributes)
    missing = AK_REQUIRED_ATTRIBUTES & ~attrs
    bad = [m.name or "" for m in ObjectAttr if m in missing]
    if attrs & ObjectAttr.DECRYPT:
        bad.append("DECRYPT set")
    yield _ok(code, fld, f"0x{v.ak_attributes:08x}", want, not bad,
              f"not an attestation key this TPM holds: {', '.join(bad)}")


def _check_signer(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code, fld = "tpm.qualified_signer.mismatch", "TPMS_ATTEST.qualifiedSigner"
    if p.qualified_signers is None:
        yield _skip(code, fld, "qualified_signers is unset")
        return
    got = v.attest.qualified_signer
    yield _ok(code, fld, got, sorted(p.qualified_signers), got in p.qualified_signers,
              "the quote was signed under an unknown hierarchy/key Name")


def _check_clock(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code, fld = "tpm.clock.unsafe", "TPMS_CLOCK_INFO.safe"
    if not p.require_clock_safe:
        yield _skip(code, fld, "require_clock_safe is false")
        return
    got = bool(v.attest.clock_info.safe)
    yield _ok(code, fld, got, True, got, "the TPM clock may have been rolled back")


def _check_firmware(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code, fld = "tpm.firmware.below_minimum", "TPMS_ATTEST.firmwareVersion"
    if p.min_firmware_version is None:
        yield _skip(code, fld, "min_firmware_version is unset")
        return
    got = v.attest.firmware_version
    yield _ok(code, fld, f"0x{got:016x}", f">= 0x{p.min_firmware_version:016x}",
              got >= p.min_firmware_version, "TPM firmware older than the minimum")


def _check_ak_certificate(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code, fld = "tpm.ak.uncertified", "AK certificate"
    if not p.require_ak_certificate:
        yield _skip(code, fld, "require_ak_certificate is false")
        return
    path = v.ak_certificate_path
    got = path[-1].subject.rfc4514_string() if path else None
    yield _ok(code, fld, got, "a verified chain to a trusted root", bool(path),
              "no AK certificate was verified (trust.tpm.verify_ak_certificate)")


_CHECKS = (_check_hash, _check_nonce, _check_pcrs, _check_log_present, _check_log_quoted,
           _check_required, _check_forbidden, _check_ak, _check_signer, _check_clock,
           _check_firmware, _check_ak_certificate)


def claims(verified: VerifiedTpmQuote) -> dict[str, Any]:
    """The verified claims a relying party may use (hex strings, JSON-friendly)."""
    a = verified.attest
    return {
        "nonce": a.extra_data.hex(),
        "pcrs": {bank.name.lower(): {str(i): v.hex() for i, v in sorted(values.items())}
                 for bank, values in verified.pcrs.items()},
        "clock": a.clock_info.clock,
        "reset_count": a.clock_info.reset_count,
        "restart_count": a.clock_info.restart_count,
        "firmware_version": f"0x{a.firmware_version:016x}",
        "ak_name": verified.ak_name.hex() if verified.ak_name else None,
        "ak_attributes": (None if verified.ak_attributes is None
                          else f"0x{verified.ak_attributes:08x}"),
        "qualified_signer": a.qualified_signer.hex(),
        "clock_safe": bool(a.clock_info.safe),
        "event_log_replayed": [f"{b.name.lower()}:{i}" for b, i in verified.replayed],
    }


def appraise(verified: VerifiedTpmQuote, policy: TpmPolicy) -> Appraisal:
    """Run every check; the appraisal carries the verification trace and the claims."""
    findings = [f for check in _CHECKS for f in check(verified, policy)]
    return Appraisal(tee="tpm", policy_id=policy.policy_id, findings=tuple(findings),
                     verification=verified.checks, claims=claims(verified))
