"""TPM appraisal: a :class:`VerifiedTpmQuote` + a :class:`TpmPolicy` -> an :class:`Appraisal`.

The quote has already been *verified* (``veritee.trust.tpm``): AK signature, TPM_GENERATED,
nonce, PCR digest and, when a log was given, event-log replay. This module decides whether the
measured state is *acceptable*. Every check runs on every call, in this order, and yields at
least one :class:`Finding` (one per PCR or event rule where it has several subjects):

====  ================================  ===================================================
 #    code                              what
====  ================================  ===================================================
 1    tpm.hash.weak                     no signature uses SHA-1, the policy relies on no
                                        SHA-1 bank, and some quoted bank is stronger than
                                        SHA-1 (unless ``allow_sha1``); a SHA-1 bank quoted
                                        beside a SHA-256 one (GCE) is carried, not relied on
 2    tpm.nonce.mismatch                TPMS_ATTEST.extraData == ``nonce`` (skip if None)
 3    tpm.pcr.not_quoted                every expected PCR is covered by the quote
 4    tpm.pcr.mismatch                  every expected PCR has its expected value (skipped
                                        when ``pcrs`` is empty: the default policy has no
                                        reference values, like every scheme's default)
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
14    tpm.ak.unbound                    the AK is tied to a genuine TPM (``trust.tpm.bind_ak``:
                                        an AK certificate chained to a ``tpm`` root, an AK
                                        enrolled by credential activation, or an Azure HCL
                                        report verified with its hardware report) or pinned
                                        by ``ak_pins`` (``require_ak_binding``, default on)
15    tpm.eventlog.exit_boot_services_missing  the event log replayed without go-attestation's
                                        ExitBootServices workaround (refused by default:
                                        ``allow_missing_exit_boot_services``)
16    tpm.eventlog.bank_not_replayable  informational (skip): banks the log carries that this
                                        verifier cannot hash (SM3 without SM3 in OpenSSL)
====  ================================  ===================================================

Issue 18, the AK: without a binding, a valid quote only proves that *some* key signed it. The
default therefore refuses an AK that is neither bound (above) nor pinned (``ak_pins``: SHA-256
of the AK's SubjectPublicKeyInfo DER, a relying party's statement that it knows this AK; pins
are a trust source beside the bindings, not an allow-list). A pinned bare public key has no
attributes to check: ``tpm.ak.properties`` is then skipped, since the pin is the relying
party's word for the key; an unpinned bare key fails it.

Why ``allow_missing_exit_boot_services`` is off by default: the workaround explains PCR 5 with
events the log does not contain. The appended events are the fixed strings the PFP defines, so
nothing unknown hides behind them, but the log is then not what the firmware measured, and a
relying party that reads PCR 5's events (GPT, boot actions) should decide knowingly; fleets with
such firmware (GCE Debian 10 images) set it. The finding is in the trace either way.

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

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from veritee.errors import ConfigError, FormatError
from veritee.formats.eventlog import EventType
from veritee.formats.tpm import HashAlg, ObjectAttr
from veritee.policy import Appraisal, Finding, Outcome
from veritee.policy._checks import contains
from veritee.policy._checks import finding as _ok
from veritee.policy._checks import skipped as _skip
from veritee.policy._load import (
    check_keys,
    read_bool,
    read_hex,
    read_hex_set,
    read_int,
    read_list,
    read_str,
    read_table,
)
from veritee.trust.tpm import VerifiedTpmQuote, ak_spki

__all__ = ["AK_REQUIRED_ATTRIBUTES", "FINDING_CODES", "EventRule", "TpmPolicy", "ak_pin",
           "appraise", "claims", "policy_from_mapping", "policy_to_mapping"]

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
    "tpm.ak.unbound",
    "tpm.eventlog.exit_boot_services_missing",
    "tpm.eventlog.bank_not_replayable",
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

    ``pcrs`` maps bank -> PCR index -> expected value; empty (the default policy) means no
    reference values were given, so ``tpm.pcr.mismatch`` is skipped and the AR4SI
    ``executables`` claim stays "no claim", exactly as for every scheme's default policy.
    """

    pcrs: Mapping[HashAlg, Mapping[int, bytes]] = field(default_factory=dict)
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
    require_ak_binding: bool = True
    ak_pins: frozenset[bytes] = frozenset()  # SHA-256 of AK SubjectPublicKeyInfo DER
    allow_missing_exit_boot_services: bool = False

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
        object.__setattr__(self, "pcrs", MappingProxyType(frozen))
        for name in ("required_events", "forbidden_events"):
            rules: frozenset[object] = frozenset(getattr(self, name))
            if not all(isinstance(r, EventRule) for r in rules):
                raise ConfigError(f"TpmPolicy.{name}: want EventRule items")
            object.__setattr__(self, name, rules)
        if self.nonce is not None and not isinstance(self.nonce, bytes):
            raise ConfigError("TpmPolicy.nonce: want bytes or None")
        for name in ("allow_sha1", "require_ak_properties", "require_clock_safe",
                     "require_ak_certificate", "require_ak_binding",
                     "allow_missing_exit_boot_services"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"TpmPolicy.{name}: want true or false")
        if self.qualified_signers is not None:
            signers = self.qualified_signers
            if isinstance(signers, bytes) or not signers or not all(
                    isinstance(x, bytes) and x for x in signers):
                raise ConfigError("TpmPolicy.qualified_signers: want a non-empty set of Names")
            object.__setattr__(self, "qualified_signers", frozenset(signers))
        pins = self.ak_pins
        if isinstance(pins, bytes) or not all(isinstance(x, bytes) and len(x) == 32
                                              for x in pins):
            raise ConfigError("TpmPolicy.ak_pins: want SHA-256 digests (32 bytes) of AK "
                              "SubjectPublicKeyInfo DER")
        object.__setattr__(self, "ak_pins", frozenset(pins))
        fw = self.min_firmware_version
        if fw is not None and (isinstance(fw, bool) or not isinstance(fw, int)
                               or not 0 <= fw < 1 << 64):
            raise ConfigError("TpmPolicy.min_firmware_version: want an integer 0..2**64-1")






def _quotes(v: VerifiedTpmQuote) -> tuple[VerifiedTpmQuote, ...]:
    return (v, *v.extra_quotes)


def _check_hash(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code = "tpm.hash.weak"
    if p.allow_sha1:
        yield _skip(code, "hash algorithms", "allow_sha1 is set")
        return
    signatures = {q.signature.hash_alg for q in _quotes(v)}
    banks = {s.hash_alg for q in _quotes(v) for s in q.quote.pcr_select}
    relied = set(p.pcrs) | {r.hash_alg for r in p.required_events | p.forbidden_events}
    weak = sorted({f"signature {h.name}" for h in signatures if h is HashAlg.SHA1}
                  | {f"policy bank {h.name}" for h in relied if h is HashAlg.SHA1})
    if banks and banks <= {HashAlg.SHA1}:
        weak.append("only SHA1 banks quoted")
    used = sorted({h.name for h in signatures | banks})
    yield _ok(code, "signature hash and PCR banks", used, "no SHA1 relied on", not weak,
              f"SHA-1 is not collision resistant: {', '.join(weak)}")


def _check_nonce(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code = "tpm.nonce.mismatch"
    if p.nonce is None:
        yield _skip(code, "TPMS_ATTEST.extraData", "policy has no nonce")
        return
    yield _ok(code, "TPMS_ATTEST.extraData", v.nonce, p.nonce,
              hmac.compare_digest(v.nonce, p.nonce))


def _check_pcrs(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    if not any(p.pcrs.values()):
        yield _skip("tpm.pcr.not_quoted", "PCRs", "the policy has no reference PCR values")
        yield _skip("tpm.pcr.mismatch", "PCRs", "the policy has no reference PCR values")
        return
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
        if _pinned(v, p):
            yield _skip(code, fld, "a bare public key the policy pins (ak_pins): the relying"
                                   " party vouches for it")
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


def ak_pin(key: Any) -> bytes:
    """The pin of an AK for ``TpmPolicy.ak_pins``: SHA-256 of its SubjectPublicKeyInfo DER
    (``key``: a ``cryptography`` public key or a TPMT_PUBLIC)."""
    return hashlib.sha256(ak_spki(key)).digest()


def _pinned(v: VerifiedTpmQuote, p: TpmPolicy) -> bool:
    return bool(p.ak_pins) and contains(ak_pin(v.ak_public), p.ak_pins)


def _check_ak_bound(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code, fld = "tpm.ak.unbound", "AK binding"
    if not p.require_ak_binding:
        yield _skip(code, fld, "require_ak_binding is false")
        return
    pinned = _pinned(v, p)
    got = v.ak_binding or ("pinned by the policy" if pinned else "unbound")
    yield _ok(code, fld, got, "bound to a genuine TPM, or pinned", bool(v.ak_binding) or pinned,
              "nothing ties this AK to a genuine TPM: give tpm anchors (EK/AK CA roots, an "
              "enrolled AK) or pin it (ak_pins)")


def _check_ebs(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code, fld = "tpm.eventlog.exit_boot_services_missing", "PCR 5 ExitBootServices events"
    if v.event_log is None:
        yield _skip(code, fld, "no event log")
        return
    got = v.eventlog_workaround
    if got is None:
        yield _ok(code, fld, "logged or not needed", "logged", True)
        return
    yield _ok(code, fld, f"missing; PCR 5 matched with the workaround {got!r}", "logged",
              p.allow_missing_exit_boot_services,
              "the firmware omits the ExitBootServices EV_EFI_ACTION events (go-attestation's "
              "workaround); allow_missing_exit_boot_services accepts it")


def _check_banks(v: VerifiedTpmQuote, p: TpmPolicy) -> Iterable[Finding]:
    code, fld = "tpm.eventlog.bank_not_replayable", "event log banks"
    missing = sorted({b for q in _quotes(v) for b in q.unreplayable_banks})
    if missing:
        yield Finding(code, Outcome.SKIP, fld, got=missing,
                      message="not replayable here (no such hash in this OpenSSL build): "
                      + ", ".join(missing))
    else:
        yield _skip(code, fld, "every bank the log carries was replayable")


_CHECKS = (_check_hash, _check_nonce, _check_pcrs, _check_log_present, _check_log_quoted,
           _check_required, _check_forbidden, _check_ak, _check_signer, _check_clock,
           _check_firmware, _check_ak_certificate, _check_ak_bound, _check_ebs, _check_banks)


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
        "ak_binding": verified.ak_binding,
        "ak_pin": ak_pin(verified.ak_public).hex(),
        "eventlog_workaround": verified.eventlog_workaround,
        "eventlog_unreplayable_banks": sorted({b for q in _quotes(verified)
                                               for b in q.unreplayable_banks}),
    }


def appraise(verified: VerifiedTpmQuote, policy: TpmPolicy) -> Appraisal:
    """Run every check; the appraisal carries the verification trace and the claims."""
    findings = [f for check in _CHECKS for f in check(verified, policy)]
    return Appraisal(tee="tpm", policy_id=policy.policy_id, findings=tuple(findings),
                     verification=verified.checks, claims=claims(verified))


# -- the JSON/TOML form --------------------------------------------------------------------
_BOOLS = ("require_event_log", "allow_sha1", "require_ak_properties", "require_clock_safe",
          "require_ak_certificate", "require_ak_binding", "allow_missing_exit_boot_services")
_KEYS = ("policy_id", "pcrs", "nonce", "required_events", "forbidden_events",
         "qualified_signers", "min_firmware_version", "ak_pins", *_BOOLS)


def _rules_from(value: object, path: str) -> frozenset[EventRule]:
    out: set[EventRule] = set()
    for n, item in enumerate(read_list(value, path, "a non-empty list of event rules")):
        at = f"{path}[{n}]"
        table = read_table(item, at)
        check_keys(table, ("pcr", "hash", "digest", "event_type"), at + ".")
        bank = _bank(table.get("hash", "sha256"), at + ".hash")
        kind = table.get("event_type")
        event_type: EventType | int | None = None
        if isinstance(kind, str):
            try:
                event_type = EventType[kind]
            except KeyError:
                raise ConfigError(f"{at}.event_type: got {kind!r}, want an EV_* name or "
                                  "an integer") from None
        elif kind is not None:
            event_type = read_int(kind, at + ".event_type", 0, 0xFFFFFFFF)
        out.add(EventRule(read_int(table.get("pcr"), at + ".pcr", 0, 31), bank,
                          read_hex(table.get("digest"), at + ".digest", bank.digest_size),
                          event_type))
    return frozenset(out)


def _bank(value: object, path: str) -> HashAlg:
    try:
        return HashAlg.from_name(read_str(value, path))
    except FormatError:  # the formats layer's error; in a policy it is a config mistake
        raise ConfigError(f"{path}: got {value!r}, want sha1, sha256, sha384, sha512 or "
                          "sm3_256") from None


def policy_from_mapping(data: Mapping[str, Any]) -> TpmPolicy:
    """A :class:`TpmPolicy` from its JSON/TOML form (:func:`policy_to_mapping`'s output);
    :class:`ConfigError` naming the bad key. ``pcrs`` is ``{bank: {"index": hex}}``, event
    rules ``{pcr, hash, digest, event_type}``, pins and Names hex strings."""
    table = read_table(data, "tpm policy")
    check_keys(table, _KEYS, "tpm.")
    kw: dict[str, Any] = {}
    if "policy_id" in table:
        kw["policy_id"] = read_str(table["policy_id"], "tpm.policy_id")
    if "pcrs" in table:
        pcrs: dict[HashAlg, dict[int, bytes]] = {}
        for bank_name, values in read_table(table["pcrs"], "tpm.pcrs").items():
            bank = _bank(bank_name, f"tpm.pcrs.{bank_name}")
            pcrs[bank] = {
                read_int(int(i) if i.isdigit() else i, f"tpm.pcrs.{bank_name}.{i}", 0, 31):
                read_hex(v, f"tpm.pcrs.{bank_name}.{i}", bank.digest_size)
                for i, v in read_table(values, f"tpm.pcrs.{bank_name}").items()}
        kw["pcrs"] = pcrs
    if "nonce" in table:
        text = read_str(table["nonce"], "tpm.nonce")
        kw["nonce"] = read_hex(text, "tpm.nonce", len(text.removeprefix("0x")) // 2)
    for name in ("required_events", "forbidden_events"):
        if name in table:
            kw[name] = _rules_from(table[name], f"tpm.{name}")
    if "qualified_signers" in table:
        names = read_list(table["qualified_signers"], "tpm.qualified_signers",
                          "a non-empty list of hex Names")
        kw["qualified_signers"] = frozenset(
            read_hex(v, f"tpm.qualified_signers[{n}]", len(read_str(v, "tpm.qualified_signers"))
                     // 2) for n, v in enumerate(names))
    if "min_firmware_version" in table:
        kw["min_firmware_version"] = read_int(table["min_firmware_version"],
                                              "tpm.min_firmware_version", 0, (1 << 64) - 1)
    if "ak_pins" in table:
        kw["ak_pins"] = read_hex_set(table["ak_pins"], "tpm.ak_pins", 32)
    for name in _BOOLS:
        if name in table:
            kw[name] = read_bool(table[name], f"tpm.{name}")
    return TpmPolicy(**kw)


def _rules_to(rules: frozenset[EventRule]) -> list[dict[str, Any]]:
    out = []
    for rule in sorted(rules, key=str):
        item: dict[str, Any] = {"pcr": rule.pcr, "hash": rule.hash_alg.name.lower(),
                                "digest": rule.digest.hex()}
        if rule.event_type is not None:
            item["event_type"] = (rule.event_type.name if isinstance(rule.event_type, EventType)
                                  else int(rule.event_type))
        out.append(item)
    return out


def policy_to_mapping(policy: TpmPolicy) -> dict[str, Any]:
    """The JSON-ready form of ``policy``; :func:`policy_from_mapping` inverts it exactly."""
    out: dict[str, Any] = {
        "policy_id": policy.policy_id,
        "pcrs": {bank.name.lower(): {str(i): v.hex() for i, v in sorted(values.items())}
                 for bank, values in sorted(policy.pcrs.items())},
        **{name: getattr(policy, name) for name in _BOOLS},
    }
    if policy.nonce is not None:
        out["nonce"] = policy.nonce.hex()
    if policy.required_events:
        out["required_events"] = _rules_to(policy.required_events)
    if policy.forbidden_events:
        out["forbidden_events"] = _rules_to(policy.forbidden_events)
    if policy.qualified_signers is not None:
        out["qualified_signers"] = sorted(n.hex() for n in policy.qualified_signers)
    if policy.min_firmware_version is not None:
        out["min_firmware_version"] = policy.min_firmware_version
    if policy.ak_pins:
        out["ak_pins"] = sorted(p.hex() for p in policy.ak_pins)
    return out
