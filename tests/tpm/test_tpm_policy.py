"""TPM appraisal: every finding code, secure defaults, and the pinned code set."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from veritee.errors import ConfigError
from veritee.findings import Outcome
from veritee.formats.eventlog import EventType
from veritee.formats.tpm import HashAlg, ObjectAttr, TpmtPublic
from veritee.policy.tpm import (
    AK_REQUIRED_ATTRIBUTES,
    FINDING_CODES,
    EventRule,
    TpmPolicy,
    ak_pin,
    appraise,
    policy_from_mapping,
    policy_to_mapping,
)
from veritee.trust.tpm import VerifiedTpmQuote, verify_quote

from _tpm_support import QuoteCase, make_attest, pcr_values, quote_cases, samples, sign

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PCRS = {HashAlg.SHA256: pcr_values(HashAlg.SHA256, [0, 4, 7])}


def _verified(nonce: bytes = b"n", pcrs: dict[HashAlg, dict[int, bytes]] | None = None
              ) -> VerifiedTpmQuote:
    values = pcrs or PCRS
    attest = make_attest(values, nonce, HashAlg.SHA256).to_bytes()
    v = verify_quote(attest, sign(KEY, attest), KEY.public_key(), nonce=nonce, pcrs=values)
    # As if the AK had come as a TPMT_PUBLIC with an attestation key's attributes, enrolled
    # by credential activation (trust.tpm.bind_ak).
    return replace(v, ak_attributes=int(AK_REQUIRED_ATTRIBUTES),
                   ak_binding="credential-activation")


def _policy(**kw: object) -> TpmPolicy:
    return TpmPolicy(pcrs=kw.pop("pcrs", PCRS), **kw)  # type: ignore[arg-type]


def test_finding_codes_are_pinned() -> None:
    assert frozenset({
        "tpm.hash.weak", "tpm.nonce.mismatch", "tpm.pcr.not_quoted", "tpm.pcr.mismatch",
        "tpm.eventlog.missing", "tpm.eventlog.unquoted",
        "tpm.eventlog.required_event_missing", "tpm.eventlog.forbidden_event",
        "tpm.ak.properties", "tpm.qualified_signer.mismatch", "tpm.clock.unsafe",
        "tpm.firmware.below_minimum", "tpm.ak.uncertified", "tpm.ak.unbound",
        "tpm.eventlog.exit_boot_services_missing", "tpm.eventlog.bank_not_replayable",
    }) == FINDING_CODES


def test_matching_quote_is_accepted_and_every_check_reports() -> None:
    appraisal = appraise(_verified(), _policy(nonce=b"n"))
    assert appraisal.accepted, appraisal.to_text()
    assert {f.code for f in appraisal.findings} == FINDING_CODES
    assert appraisal.claims["pcrs"]["sha256"]["7"] == PCRS[HashAlg.SHA256][7].hex()
    assert appraisal.verification  # the trust trace travels with the appraisal


def test_default_policy_has_no_reference_values_but_refuses_an_unbound_ak() -> None:
    """The default policy (every scheme has one) names no PCR values, so the PCR checks are
    skipped and say why; what it does refuse is an AK nothing ties to a genuine TPM."""
    bound = appraise(_verified(), TpmPolicy())
    assert bound.accepted, bound.to_text()
    skipped = {f.code for f in bound.findings if f.outcome is Outcome.SKIP}
    assert {"tpm.pcr.mismatch", "tpm.pcr.not_quoted"} <= skipped
    unbound = appraise(replace(_verified(), ak_binding=None), TpmPolicy())
    assert unbound.codes() == ["tpm.ak.unbound"]
    with pytest.raises(ConfigError):
        TpmPolicy(pcrs={HashAlg.SHA256: {0: b"short"}})


def test_pcr_changed_from_reference_is_a_mismatch() -> None:
    want = {HashAlg.SHA256: {**PCRS[HashAlg.SHA256], 7: bytes(32)}}
    appraisal = appraise(_verified(), _policy(pcrs=want))
    assert appraisal.codes() == ["tpm.pcr.mismatch"]


def test_expected_pcr_outside_the_quote_is_not_quoted() -> None:
    want = {HashAlg.SHA256: {**PCRS[HashAlg.SHA256], 9: bytes(32)}}
    assert appraise(_verified(), _policy(pcrs=want)).codes() == ["tpm.pcr.not_quoted"]


def test_other_bank_only_is_rejected() -> None:
    want = {HashAlg.SHA384: {0: bytes(48)}}
    codes = appraise(_verified(), _policy(pcrs=want)).codes()
    assert codes == ["tpm.pcr.not_quoted", "tpm.pcr.mismatch"]


def test_stale_nonce_is_a_mismatch() -> None:
    assert appraise(_verified(b"old"), _policy(nonce=b"new")).codes() == ["tpm.nonce.mismatch"]


def test_sha1_bank_is_weak_by_default() -> None:
    pcrs = {HashAlg.SHA1: pcr_values(HashAlg.SHA1, [0])}
    verified = _verified(pcrs=pcrs)
    assert appraise(verified, _policy(pcrs=pcrs)).codes() == ["tpm.hash.weak"]
    assert appraise(verified, _policy(pcrs=pcrs, allow_sha1=True)).accepted


def test_event_rules_need_a_replayed_log() -> None:
    rule = EventRule(4, HashAlg.SHA256, bytes(32))
    codes = appraise(_verified(), _policy(required_events=frozenset({rule}))).codes()
    assert codes == ["tpm.eventlog.missing", "tpm.eventlog.unquoted",
                     "tpm.eventlog.required_event_missing"]
    assert appraise(_verified(), _policy(require_event_log=True)).codes() == [
        "tpm.eventlog.missing"]


# -- on a real quote with its event log ------------------------------------------------------
def _cos_sha256() -> VerifiedTpmQuote:
    s = next((s for s in samples("gcp-vtpm") if s["id"] == "gce-cos-85-no-nonce"), None)
    if s is None:
        pytest.skip("no evidence")
    case = next(c for c in quote_cases(s) if c.pcrs and HashAlg.SHA256 in c.pcrs)
    assert case.ak is not None and case.pcrs is not None
    return verify_quote(case.attest, case.signature, case.ak, nonce=case.nonce, pcrs=case.pcrs,
                        event_log=case.event_log)


@pytest.mark.evidence
def test_real_quote_with_reference_pcrs_and_events() -> None:
    v = _cos_sha256()
    assert v.event_log is not None
    app = next(e for e in v.event_log.measured()
               if e.type == EventType.EV_EFI_BOOT_SERVICES_APPLICATION)
    digest = app.digest(HashAlg.SHA256)
    assert digest is not None
    rule = EventRule(app.pcr, HashAlg.SHA256, digest, EventType.EV_EFI_BOOT_SERVICES_APPLICATION)
    reference = {HashAlg.SHA256: {i: v.pcrs[HashAlg.SHA256][i] for i in range(8)}}
    policy = TpmPolicy(pcrs=reference, nonce=b"", required_events=frozenset({rule}),
                       require_event_log=True, ak_pins=frozenset({ak_pin(v.ak_public)}))
    appraisal = appraise(v, policy)
    assert appraisal.accepted, appraisal.to_text()
    forbid = replace(policy, required_events=frozenset(), forbidden_events=frozenset({rule}))
    assert appraise(v, forbid).codes() == ["tpm.eventlog.forbidden_event"]


@pytest.mark.evidence
def test_rule_on_a_pcr_not_replayed_is_flagged() -> None:
    v = _cos_sha256()
    rule = EventRule(15, HashAlg.SHA256, bytes(32))
    policy = TpmPolicy(pcrs={HashAlg.SHA256: {0: v.pcrs[HashAlg.SHA256][0]}},
                       forbidden_events=frozenset({rule}), ak_pins=frozenset({ak_pin(v.ak_public)}))
    appraisal = appraise(v, policy)
    assert appraisal.codes() == ["tpm.eventlog.unquoted"]
    assert next(f for f in appraisal.findings if f.code == "tpm.eventlog.forbidden_event") \
        .outcome is Outcome.PASS


# -- issue 18: the AK must be an attestation key this TPM holds ----------------------------------
def _keylime(sid: str) -> tuple[QuoteCase, VerifiedTpmQuote]:
    s = next((s for s in samples("tpm") if s["id"] == sid), None)
    if s is None:
        pytest.skip("no evidence")
    case = quote_cases(s)[0]
    assert case.ak is not None
    return case, verify_quote(case.attest, case.signature, case.ak, nonce=case.nonce,
                              pcrs=case.pcrs)


def _quoted_policy(v: VerifiedTpmQuote, *, pin: bool = True, **kw: object) -> TpmPolicy:
    """The quote's own PCRs as reference values; ``pin``: the relying party pins the AK
    (these samples carry no AK certificate or enrolment)."""
    kw.setdefault("ak_pins", frozenset({ak_pin(v.ak_public)}) if pin else frozenset())
    return TpmPolicy(pcrs=v.pcrs, nonce=v.nonce, **kw)  # type: ignore[arg-type]


@pytest.mark.evidence
def test_bare_public_key_ak_is_refused_by_default() -> None:
    """keylime's checkquote sample gives the AK as a PEM key: nothing says it is restricted,
    fixedTPM or even a TPM key (old code skipped the attribute checks and accepted)."""
    _, v = _keylime("keylime-checkquote-rsa2048-sha256")
    a = appraise(v, _quoted_policy(v, pin=False))
    assert a.codes() == ["tpm.ak.properties", "tpm.ak.unbound"]
    assert "bare public key" in str(a.failures[0].got)
    # A relying party that pins this very key vouches for it (the attribute check is skipped,
    # saying why); another key's pin does not.
    assert appraise(v, _quoted_policy(v)).accepted
    other = ak_pin(rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())
    assert appraise(v, _quoted_policy(v, pin=False, ak_pins=frozenset({other}))).codes() == [
        "tpm.ak.properties", "tpm.ak.unbound"]


@pytest.mark.evidence
def test_duplicable_ak_is_refused() -> None:
    """keylime's tpm2-tools AK (0x50072) with fixedTPM and fixedParent cleared: the key could
    have been duplicated to another TPM, yet verification (restricted|sign) still passes."""
    case, v = _keylime("keylime-tpm2tools-quote-files")
    assert appraise(v, _quoted_policy(v)).accepted  # the genuine attributes pass
    assert isinstance(case.ak, TpmtPublic)
    raw = bytearray(case.ak.raw)
    # TPMT_PUBLIC: type (2) || nameAlg (2) || objectAttributes (4, big endian) (Part 2, 12.2.4).
    attrs = int.from_bytes(raw[4:8], "big") & ~int(ObjectAttr.FIXED_TPM | ObjectAttr.FIXED_PARENT)
    raw[4:8] = attrs.to_bytes(4, "big")
    duplicable = TpmtPublic.from_bytes(bytes(raw))
    dv = verify_quote(case.attest, case.signature, duplicable, nonce=case.nonce, pcrs=case.pcrs)
    a = appraise(dv, _quoted_policy(dv))
    assert a.codes() == ["tpm.ak.properties"]
    assert "FIXED_TPM" in a.failures[0].message and "FIXED_PARENT" in a.failures[0].message


@pytest.mark.evidence
def test_qualified_signer_clock_and_firmware_can_be_pinned() -> None:
    _, v = _keylime("keylime-tpm2tools-quote-files")
    a = v.attest
    ok = _quoted_policy(v, qualified_signers=frozenset({a.qualified_signer}),
                        min_firmware_version=a.firmware_version,
                        require_clock_safe=bool(a.clock_info.safe))
    assert appraise(v, ok).accepted
    bad = _quoted_policy(v, qualified_signers=frozenset({b"\x00\x0b" + bytes(32)}),
                         min_firmware_version=a.firmware_version + 1)
    assert appraise(v, bad).codes() == ["tpm.qualified_signer.mismatch",
                                        "tpm.firmware.below_minimum"]


@pytest.mark.parametrize("kw", [{"qualified_signers": frozenset()}, {"min_firmware_version": -1},
                                {"require_ak_properties": 1}])
def test_bad_tpm_policy_values_are_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        _policy(**kw)


# -- issue 18: an AK-to-EK binding by certificate ------------------------------------------------
@pytest.mark.evidence
@pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")  # Google's long CNs
def test_ak_certified_by_the_ek_ca_binds_and_another_key_is_refused() -> None:
    """GCE's COS quote carries an AK certificate issued by the CA that issues GCE's EK
    certificates (tpm_ek_intermediate_2 -> tpm_ek_root_1). Required by policy, a quote whose
    AK was not bound to it is refused; a certificate for another key is a verification error."""
    from datetime import UTC, datetime

    from cryptography import x509

    from veritee.collateral.tpm import load_go_tpm_tools_attestation
    from veritee.errors import VerificationError
    from veritee.trust.tpm import verify_ak_certificate

    from _tpm_support import file_of

    cos = next((s for s in samples("gcp-vtpm") if s["id"] == "gce-cos-85-no-nonce"), None)
    cas = next((s for s in samples("gcp-vtpm") if s["id"] == "gce-vtpm-ek-ak-certs"), None)
    if cos is None or cas is None:
        pytest.skip("no evidence")
    ev = load_go_tpm_tools_attestation(file_of(cos, "attestation_protobuf").read_bytes())[0]
    assert ev.ak_cert is not None and ev.ak is not None
    case = next(c for c in quote_cases(cos) if c.pcrs and HashAlg.SHA256 in c.pcrs)
    assert case.ak is not None
    v = verify_quote(case.attest, case.signature, case.ak, nonce=case.nonce, pcrs=case.pcrs)
    policy = _quoted_policy(v, require_ak_certificate=True)
    assert appraise(v, policy).codes() == ["tpm.ak.uncertified"]
    root = file_of(cas, "ca_tpm_ek_root_1").read_bytes()
    inter = file_of(cas, "ca_tpm_ek_intermediate_2").read_bytes()
    at = datetime(2025, 1, 1, tzinfo=UTC)
    bound = verify_ak_certificate(v, ev.ak_cert, [inter], roots=[root], now=at)
    a = appraise(bound, policy)
    assert a.accepted, a.to_text()
    assert bound.ak_certificate_path[-1].subject == x509.load_der_x509_certificate(
        root).subject
    _, other = _keylime("keylime-tpm2tools-quote-files")
    with pytest.raises(VerificationError) as exc:
        verify_ak_certificate(other, ev.ak_cert, [inter], roots=[root], now=at)
    assert exc.value.code == "tpm.ak.certificate"


def test_decrypt_capable_ak_is_refused() -> None:
    """A restricted signing key that can also decrypt is not an attestation key (Part 1,
    "Object Attributes"): refused even when bound."""
    v = replace(_verified(), ak_attributes=int(AK_REQUIRED_ATTRIBUTES | ObjectAttr.DECRYPT))
    a = appraise(v, _policy())
    assert a.codes() == ["tpm.ak.properties"]
    assert "DECRYPT" in a.failures[0].message


def test_an_unbound_ak_is_refused_even_with_matching_pcrs() -> None:
    v = replace(_verified(), ak_binding=None)
    assert appraise(v, _policy()).codes() == ["tpm.ak.unbound"]
    assert appraise(v, _policy(ak_pins=frozenset({ak_pin(KEY.public_key())}))).accepted
    assert appraise(v, _policy(require_ak_binding=False)).accepted


def test_missing_exit_boot_services_is_refused_unless_allowed() -> None:
    from veritee.formats.eventlog import EventLog

    from _tpm_support import build_log

    v = replace(_verified(), event_log=EventLog.from_bytes(build_log([(5, b"x")])),
                eventlog_workaround="EBS Invocation + Success")
    a = appraise(v, _policy())
    assert a.codes() == ["tpm.eventlog.exit_boot_services_missing"]
    assert appraise(v, _policy(allow_missing_exit_boot_services=True)).accepted
    plain = replace(v, eventlog_workaround=None)
    assert appraise(plain, _policy()).accepted


def test_policy_mapping_round_trips() -> None:
    rule = EventRule(4, HashAlg.SHA256, bytes(32), EventType.EV_EFI_BOOT_SERVICES_APPLICATION)
    policy = TpmPolicy(pcrs=PCRS, nonce=b"n", required_events=frozenset({rule}),
                       forbidden_events=frozenset({EventRule(7, HashAlg.SHA256, bytes(32), 5)}),
                       qualified_signers=frozenset({b"\x00\x0b" + bytes(32)}),
                       min_firmware_version=7, ak_pins=frozenset({bytes(32)}),
                       allow_missing_exit_boot_services=True, policy_id="fleet")
    mapping = policy_to_mapping(policy)
    assert policy_from_mapping(mapping) == policy
    assert policy_from_mapping({}) == TpmPolicy()
    import json

    assert policy_from_mapping(json.loads(json.dumps(mapping))) == policy


@pytest.mark.parametrize(("mapping", "key"), [
    ({"pcr": {}}, "pcr"),
    ({"pcrs": {"md5": {}}}, "md5"),
    ({"pcrs": {"sha256": {"0": "00"}}}, "sha256.0"),
    ({"ak_pins": ["00"]}, "ak_pins"),
    ({"require_ak_binding": 0}, "require_ak_binding"),
    ({"required_events": [{"pcr": 4, "digest": "00" * 32, "event_type": "EV_NOPE"}]},
     "event_type"),
])
def test_bad_policy_mapping_names_the_key(mapping: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        policy_from_mapping(mapping)
    assert key in str(info.value)
