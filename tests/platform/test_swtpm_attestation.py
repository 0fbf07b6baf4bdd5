"""The swtpm platform's evidence through the verifier's existing TPM code.

A real TPM 2.0 (swtpm/libtpms) produces the EK certificate, the AK, quotes and the boot's event
log; ``veritee.trust.tpm_ek`` / ``veritee.trust.tpm`` / ``veritee.formats.eventlog`` check them
exactly as they check the real samples in ../shared/evidence, with the swtpm CA root passed as
the one anchor. Each tampered field is refused by the check that refuses it in real evidence.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee.cli import main
from veritee.crypto.random import PlatformTrngSource, ctr_drbg
from veritee.errors import FormatError, PlatformError, VerificationError
from veritee.formats.eventlog import EventLog, EventType
from veritee.formats.tpm import (
    HashAlg,
    ObjectAttr,
    TpmsAttest,
    TpmtPublic,
    TpmtSignature,
    parse_tpm2tools_pcrs,
)
from veritee.platform._swtpm_credential import make_credential
from veritee.platform.tpm import (
    InsecureSwtpmPlatform,
    TpmPlatform,
    TpmQuote,
    default_boot_chain,
    encode_event_log,
    encode_tpm2tools_pcrs,
    register_ak,
    swtpm_unavailable_reason,
)
from veritee.policy.tpm import EventRule, TpmPolicy, appraise
from veritee.trust.tpm import verify_certify, verify_quote
from veritee.trust.tpm_ek import verify_ek_chain

REASON = swtpm_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

NONCE = bytes(range(32))


@pytest.fixture(scope="module")
def tpm() -> Iterator[InsecureSwtpmPlatform]:
    """One manufactured and booted swtpm for this module's read-only checks."""
    state = Path(tempfile.mkdtemp(prefix="veritee-swtpm-test-"))
    platform = InsecureSwtpmPlatform.open(state)
    try:
        yield platform
    finally:
        platform.close()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def quote(tpm: InsecureSwtpmPlatform) -> TpmQuote:
    return tpm.quote(NONCE)


def _verify(q: TpmQuote, *, attest: bytes | None = None, signature: TpmtSignature | None = None,
            ak: TpmtPublic | None = None, nonce: bytes = NONCE,
            pcrs: dict[HashAlg, dict[int, bytes]] | None = None, log: bytes | None = None):
    return verify_quote(q.attest if attest is None else attest,
                        q.signature if signature is None else signature,
                        q.ak_public if ak is None else ak, nonce=nonce,
                        pcrs=q.pcrs if pcrs is None else pcrs,
                        event_log=EventLog.from_bytes(q.event_log if log is None else log))


# -- EK certificate -------------------------------------------------------------------------
def test_ek_certificate_chains_to_the_swtpm_ca_passed_explicitly(tpm: InsecureSwtpmPlatform
                                                                 ) -> None:
    chain = verify_ek_chain(tpm.ek_certificate(), tpm.ca_intermediates(), roots=[tpm.ca_root()],
                            now=datetime.now(UTC), ek_public=tpm.ek_public())
    assert [(f.code, f.outcome.value) for f in chain.checks] == [
        ("tpm.ek.chain", "pass"), ("tpm.ek.signature", "pass"), ("tpm.ek.validity", "pass"),
        ("tpm.ek.profile", "pass"), ("tpm.ek.public_key", "pass")]
    assert chain.manufacturer == "id:00001014" and chain.model == "swtpm"
    assert len(chain.path) == 3  # EK <- swtpm-localca <- swtpm-localca-rootca


def test_swtpm_setup_ek_is_the_tcg_template_ek(tpm: InsecureSwtpmPlatform) -> None:
    # A TPM without a persistent EK gets it from the TCG EK Credential Profile template; on
    # swtpm both exist, and they must be the same key for the EK certificate to fit.
    handle = tpm._ek_from_template()
    try:
        from_template = tpm._public_of(handle)
    finally:
        tpm.esys.flush_context(handle)
    assert from_template.name() == tpm.ek_public().name()


def test_device_tpm_absent_is_a_platform_error() -> None:
    with pytest.raises(PlatformError):
        TpmPlatform.device("/nonexistent/tpmrm0")


def test_ek_certificate_without_an_anchor_is_refused(tpm: InsecureSwtpmPlatform) -> None:
    with pytest.raises(VerificationError) as err:
        verify_ek_chain(tpm.ek_certificate(), tpm.ca_intermediates(), roots=[],
                        now=datetime.now(UTC))
    assert err.value.code == "tpm.ek.chain"


def _self_signed_root(subject: x509.Name) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def test_ek_certificate_under_an_impostor_root_with_the_same_name_is_refused(
        tpm: InsecureSwtpmPlatform) -> None:
    real_root = x509.load_pem_x509_certificate(tpm.ca_root())
    with pytest.raises(VerificationError) as err:
        verify_ek_chain(tpm.ek_certificate(), tpm.ca_intermediates(),
                        roots=[_self_signed_root(real_root.subject)], now=datetime.now(UTC))
    assert err.value.code in ("tpm.ek.chain", "tpm.ek.signature")


def test_ek_certificate_presented_for_another_key_is_refused(tpm: InsecureSwtpmPlatform
                                                             ) -> None:
    # An attacker shows a genuine EK certificate but answers with another TPM key.
    with pytest.raises(VerificationError) as err:
        verify_ek_chain(tpm.ek_certificate(), tpm.ca_intermediates(), roots=[tpm.ca_root()],
                        now=datetime.now(UTC), ek_public=tpm.ak_public())
    assert err.value.code == "tpm.ek.public_key"


# -- AK: credential activation against the EK ------------------------------------------------
def test_credential_activation_proves_the_ak_lives_in_the_ek_tpm(tpm: InsecureSwtpmPlatform
                                                                ) -> None:
    ak = tpm.ak_public()
    assert ak.attributes & (ObjectAttr.RESTRICTED | ObjectAttr.SIGN_ENCRYPT) == (
        ObjectAttr.RESTRICTED | ObjectAttr.SIGN_ENCRYPT)
    assert ak.attributes & ObjectAttr.FIXED_TPM
    challenge = make_credential(tpm.ek_public(), ak.name())
    assert challenge.check(tpm.activate_credential(challenge.credential_blob,
                                                   challenge.encrypted_secret))


def test_credential_bound_to_another_key_name_is_refused_by_the_tpm(
        tpm: InsecureSwtpmPlatform) -> None:
    # The verifier asked about a key the TPM does not hold under that Name (a software key
    # passed off as the AK): the TPM's integrity check over the Name fails.
    fake = replace(tpm.ak_public(), x=bytes(32), raw=b"")
    challenge = make_credential(tpm.ek_public(), fake.name())
    with pytest.raises(PlatformError):
        tpm.activate_credential(challenge.credential_blob, challenge.encrypted_secret)


def test_credential_encrypted_to_another_ek_is_refused_by_the_tpm(tpm: InsecureSwtpmPlatform
                                                                 ) -> None:
    # An attacker's EK (its own key, claimed to be this TPM's) cannot be answered for.
    other = rsa.generate_private_key(65537, 2048).public_key().public_numbers()
    ek = replace(tpm.ek_public(), modulus=other.n.to_bytes(256, "big"), raw=b"")
    challenge = make_credential(ek, tpm.ak_public().name())
    with pytest.raises(PlatformError):
        tpm.activate_credential(challenge.credential_blob, challenge.encrypted_secret)


def test_credential_with_a_flipped_blob_byte_is_refused(tpm: InsecureSwtpmPlatform) -> None:
    challenge = make_credential(tpm.ek_public(), tpm.ak_public().name())
    blob = bytearray(challenge.credential_blob)
    blob[-1] ^= 1
    with pytest.raises(PlatformError):
        tpm.activate_credential(bytes(blob), challenge.encrypted_secret)


def test_make_credential_refuses_an_ecc_ek(tpm: InsecureSwtpmPlatform) -> None:
    with pytest.raises(FormatError):
        make_credential(tpm.ak_public(), tpm.ak_public().name())


# -- quotes and the event log ----------------------------------------------------------------
def test_quote_verifies_and_replays_the_measured_boot(quote: TpmQuote) -> None:
    verified = _verify(quote)
    assert all(f.outcome.value == "pass" for f in verified.checks), verified.checks
    assert verified.nonce == NONCE
    assert sorted(i for _, i in verified.replayed) == list(range(10))
    assert verified.unquoted_log_pcrs == frozenset()


def test_quote_over_chosen_pcrs_in_two_banks(tpm: InsecureSwtpmPlatform) -> None:
    chosen = {HashAlg.SHA1: (0, 7), HashAlg.SHA256: (4, 16, 23)}
    q = tpm.quote(NONCE, chosen)
    assert {b: sorted(v) for b, v in q.pcrs.items()} == {b: list(v) for b, v in chosen.items()}
    verified = _verify(q)
    # PCRs the log extends are replayed in each bank; 16 and 23 (never extended) are not.
    assert set(verified.replayed) == {(HashAlg.SHA1, 0), (HashAlg.SHA1, 7),
                                      (HashAlg.SHA256, 4)}
    assert q.pcrs[HashAlg.SHA256][16] == bytes(32)


def test_event_log_is_crypto_agile_and_replays_to_the_tpm_pcrs_in_both_banks(
        tpm: InsecureSwtpmPlatform) -> None:
    log = EventLog.from_bytes(tpm.event_log())
    assert log.crypto_agile and set(log.banks) == {HashAlg.SHA1, HashAlg.SHA256}
    for bank, replayed in log.replay_all().items():
        assert tpm.pcr_values({bank: sorted(replayed)})[bank] == replayed
    secure_boot = [e for e in log.events if e.type is EventType.EV_EFI_VARIABLE_DRIVER_CONFIG]
    assert secure_boot[0].efi_variable().name == "SecureBoot"
    assert secure_boot[0].efi_variable().data == b"\x01"


def test_encoded_log_is_what_the_tpm_extended() -> None:
    # The encoder alone: replaying it gives H(H(0 || d1) || d2)... per PCR.
    events = default_boot_chain()
    log = EventLog.from_bytes(encode_event_log([HashAlg.SHA256], events))
    pcr4 = bytes(32)
    for e in events:
        if e.pcr == 4:
            pcr4 = HashAlg.SHA256.digest(pcr4 + e.digest(HashAlg.SHA256))
    assert log.replay(HashAlg.SHA256)[4] == pcr4


def test_quote_appraised_against_a_policy_pinning_the_kernel(quote: TpmQuote) -> None:
    kernel = HashAlg.SHA256.digest(b"veritee demo kernel")
    verified = _verify(quote)
    # The AK is pinned: since issue 18 an AK must be bound (register_ak) or pinned.
    from veritee.policy.tpm import ak_pin

    good = TpmPolicy(pcrs={HashAlg.SHA256: {4: quote.pcrs[HashAlg.SHA256][4]}},
                     require_event_log=True, ak_pins=frozenset({ak_pin(quote.ak_public)}),
                     required_events=frozenset({EventRule(
                         4, HashAlg.SHA256, kernel, EventType.EV_EFI_BOOT_SERVICES_APPLICATION)}))
    assert appraise(verified, good).accepted
    other = TpmPolicy(pcrs={HashAlg.SHA256: {4: bytes(32)}})
    assert not appraise(verified, other).accepted


def test_quotes_are_fresh_per_nonce(tpm: InsecureSwtpmPlatform, quote: TpmQuote) -> None:
    again = tpm.quote(NONCE)
    assert again.attest != quote.attest  # the clock moves; the signature is fresh
    with pytest.raises(VerificationError) as err:
        _verify(quote, nonce=bytes(32))  # replaying an old quote to a new challenge
    assert err.value.code == "tpm.quote.nonce"


def test_evidence_binds_report_data(tpm: InsecureSwtpmPlatform) -> None:
    ev = tpm.evidence(b"\xaa" * 64)
    assert TpmsAttest.from_bytes(ev.attest).extra_data == b"\xaa" * 64
    with pytest.raises(PlatformError):
        tpm.evidence(bytes(65))


def _field_offsets(attest: bytes) -> dict[str, int]:
    """Offsets of each TPMS_ATTEST field (Part 2, 10.12.12) in a quote."""
    qs = struct.unpack_from(">H", attest, 6)[0]
    ed_at = 8 + qs
    ed = struct.unpack_from(">H", attest, ed_at)[0]
    clock_at = ed_at + 2 + ed
    fw_at = clock_at + 17
    sel_at = fw_at + 8
    digest_at = len(attest) - 32
    return {"magic": 0, "type": 4, "qualifiedSigner": 8, "extraData": ed_at + 2,
            "clockInfo.clock": clock_at, "clockInfo.resetCount": clock_at + 8,
            "clockInfo.safe": clock_at + 16, "firmwareVersion": fw_at,
            "pcrSelect": sel_at + 7, "pcrDigest": digest_at}


@pytest.mark.parametrize("field", ["magic", "type", "qualifiedSigner", "extraData",
                                   "clockInfo.clock", "clockInfo.resetCount", "clockInfo.safe",
                                   "firmwareVersion", "pcrSelect", "pcrDigest"])
def test_quote_with_a_tampered_attest_field_is_refused(quote: TpmQuote, field: str) -> None:
    attest = bytearray(quote.attest)
    attest[_field_offsets(quote.attest)[field]] ^= 0x01
    with pytest.raises(VerificationError) as err:
        _verify(quote, attest=bytes(attest))
    assert err.value.code == "tpm.quote.signature"


@pytest.mark.parametrize("part", ["r", "s"])
def test_quote_with_a_tampered_signature_is_refused(quote: TpmQuote, part: str) -> None:
    value = bytearray(getattr(quote.signature, part))
    value[-1] ^= 0x01
    with pytest.raises(VerificationError) as err:
        _verify(quote, signature=replace(quote.signature, **{part: bytes(value)}))
    assert err.value.code == "tpm.quote.signature"


def test_quote_with_the_signature_hash_swapped_is_refused(quote: TpmQuote) -> None:
    with pytest.raises(VerificationError) as err:
        _verify(quote, signature=replace(quote.signature, hash_alg=HashAlg.SHA384))
    assert err.value.code in ("tpm.quote.signature", "tpm.ak.scheme")


def test_quote_checked_with_another_ak_is_refused(quote: TpmQuote) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    other = replace(quote.ak_public, x=key.x.to_bytes(32, "big"), y=key.y.to_bytes(32, "big"),
                    raw=b"")
    with pytest.raises(VerificationError) as err:
        _verify(quote, ak=other)
    assert err.value.code == "tpm.quote.signature"


def test_quote_from_an_unrestricted_key_is_refused(quote: TpmQuote) -> None:
    # The same key material declared unrestricted: it could sign forged TPMS_ATTEST bytes.
    loose = replace(quote.ak_public, raw=b"",
                    object_attributes=quote.ak_public.object_attributes & ~ObjectAttr.RESTRICTED)
    with pytest.raises(VerificationError) as err:
        _verify(quote, ak=loose)
    assert err.value.code == "tpm.ak.attributes"


def test_quote_with_a_tampered_pcr_value_is_refused(quote: TpmQuote) -> None:
    pcrs = {b: dict(v) for b, v in quote.pcrs.items()}
    pcrs[HashAlg.SHA256][4] = HashAlg.SHA256.digest(b"the kernel I wish I had booted")
    with pytest.raises(VerificationError) as err:
        _verify(quote, pcrs=pcrs)
    assert err.value.code == "tpm.quote.pcr_digest"


def test_quote_with_a_pcr_value_withheld_is_refused(quote: TpmQuote) -> None:
    pcrs = {b: dict(v) for b, v in quote.pcrs.items()}
    del pcrs[HashAlg.SHA256][7]
    with pytest.raises(VerificationError) as err:
        _verify(quote, pcrs=pcrs)
    assert err.value.code == "tpm.quote.pcr_values"


def _log_with(events: list[tuple[int, int, bytes, bytes]]) -> bytes:
    """Re-encode a log from (pcr, type, data, sha256 digest) tuples (SHA-256 bank only)."""
    head = encode_event_log([HashAlg.SHA256], [])
    body = b"".join(struct.pack("<III", pcr, etype, 1) + struct.pack("<H", HashAlg.SHA256)
                    + digest + struct.pack("<I", len(data)) + data
                    for pcr, etype, data, digest in events)
    return head + body


def _events(q: TpmQuote) -> list[tuple[int, int, bytes, bytes]]:
    log = EventLog.from_bytes(q.event_log)
    return [(e.pcr, int(e.type), e.data, e.digests[int(HashAlg.SHA256)]) for e in log.events]


def test_event_log_reencoded_unchanged_still_verifies(quote: TpmQuote) -> None:
    # The control for the log tamper tests below: the re-encoding itself is faithful.
    assert _verify(quote, log=_log_with(_events(quote))).replayed


@pytest.mark.parametrize("attack", ["digest_changed", "event_removed", "event_inserted",
                                    "events_reordered", "pcr_index_changed",
                                    "all_pcr4_events_removed"])
def test_event_log_tampered_is_refused_by_replay(quote: TpmQuote, attack: str) -> None:
    events = _events(quote)
    kernel_at = [i for i, e in enumerate(events) if e[0] == 4][-1]
    if attack == "digest_changed":
        pcr, t, d, _ = events[kernel_at]
        events[kernel_at] = (pcr, t, d, HashAlg.SHA256.digest(b"a clean-looking kernel"))
    elif attack == "event_removed":
        del events[kernel_at]
    elif attack == "event_inserted":
        events.insert(kernel_at, (4, int(EventType.EV_EFI_BOOT_SERVICES_APPLICATION), b"",
                                  HashAlg.SHA256.digest(b"extra")))
    elif attack == "events_reordered":
        first = next(i for i, e in enumerate(events) if e[0] == 4)
        events[first], events[kernel_at] = events[kernel_at], events[first]
    elif attack == "pcr_index_changed":
        pcr, t, d, g = events[kernel_at]
        events[kernel_at] = (5, t, d, g)
    else:
        events = [e for e in events if e[0] != 4]
    with pytest.raises(VerificationError) as err:
        _verify(quote, log=_log_with(events))
    assert err.value.code == "tpm.eventlog.replay_mismatch"


# -- TPM2_Certify: a TPM key certified by the AK -----------------------------------------------
def test_storage_key_certified_by_the_ak_verifies_and_names_only_itself(
        tpm: InsecureSwtpmPlatform) -> None:
    ak = tpm.ak_public()
    srk, attest, sig = tpm.certify_storage_key(NONCE)
    verified = verify_certify(attest, sig, ak, nonce=NONCE, certified=srk)
    assert verified.certified.name() == srk.name()
    with pytest.raises(VerificationError) as err:  # passing off another key as certified
        verify_certify(attest, sig, ak, nonce=NONCE, certified=tpm.ek_public())
    assert err.value.code == "tpm.certify.name"
    with pytest.raises(VerificationError) as err:
        verify_certify(attest, sig, ak, nonce=bytes(32), certified=srk)
    assert err.value.code == "tpm.certify.nonce"


# -- randomness ------------------------------------------------------------------------------
def test_tpm_getrandom_feeds_the_drbg(tpm: InsecureSwtpmPlatform) -> None:
    a, b = tpm.trng(100), tpm.trng(100)
    assert len(a) == 100 and a != b
    drbg = ctr_drbg(PlatformTrngSource(tpm, name="tpm2-getrandom"))
    assert len(drbg.random_bytes(64)) == 64


# -- the verifier's enrolment of the AK ---------------------------------------------------------
def test_register_ak_with_the_swtpm_root(tpm: InsecureSwtpmPlatform) -> None:
    registered = register_ak(tpm, roots=[tpm.ca_root()], intermediates=tpm.ca_intermediates(),
                             now=datetime.now(UTC))
    assert registered.ak_public.name() == tpm.ak_public().name()
    assert registered.ek_chain.model == "swtpm"


def test_register_ak_refused_under_a_root_not_passed(tpm: InsecureSwtpmPlatform) -> None:
    # The emulated CA is never trusted implicitly: without it the EK does not chain.
    other = _self_signed_root(x509.Name.from_rfc4514_string("CN=Some TPM Vendor Root"))
    with pytest.raises(VerificationError) as err:
        register_ak(tpm, roots=[other], intermediates=tpm.ca_intermediates(),
                    now=datetime.now(UTC))
    assert err.value.code == "tpm.ek.chain"


def test_register_ak_refused_when_the_tpm_cannot_activate(tpm: InsecureSwtpmPlatform,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    # A relay that shows a genuine EK certificate but holds another AK: the TPM with the EK
    # refuses the challenge bound to the impostor's Name.
    key = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    impostor = replace(tpm.ak_public(), x=key.x.to_bytes(32, "big"), y=key.y.to_bytes(32, "big"),
                       raw=b"")
    monkeypatch.setattr(tpm, "ak_public", lambda: impostor)
    with pytest.raises(VerificationError) as err:
        register_ak(tpm, roots=[tpm.ca_root()], intermediates=tpm.ca_intermediates(),
                    now=datetime.now(UTC))
    assert err.value.code == "tpm.ak.credential"


# -- interop: the files tpm2-tools writes, through `veritee tpm` -----------------------------
def test_tpm2tools_pcr_file_roundtrips(quote: TpmQuote) -> None:
    assert parse_tpm2tools_pcrs(encode_tpm2tools_pcrs(quote.pcrs)) == quote.pcrs


def test_exported_quote_verifies_with_the_cli(quote: TpmQuote, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    files = quote.export(tmp_path)
    argv = ["tpm", "quote", "--quote", str(files["quote"]), "--signature",
            str(files["signature"]), "--ak", str(files["ak"]), "--nonce", NONCE.hex(),
            "--pcrs", str(files["pcrs"]), "--eventlog", str(files["eventlog"])]
    assert main(argv) == 0
    assert "VERIFIED" in capsys.readouterr().out
    assert main([*argv[:9], bytes(32).hex(), *argv[10:]]) == 4  # another nonce: refused


def test_exported_ek_chain_verifies_with_the_cli(tpm: InsecureSwtpmPlatform, tmp_path: Path
                                                ) -> None:
    (tmp_path / "ek.der").write_bytes(tpm.ek_certificate())
    (tmp_path / "ca.pem").write_bytes(tpm.ca_intermediates()[0])
    (tmp_path / "root.pem").write_bytes(tpm.ca_root())
    assert main(["tpm", "ek", "--ek-cert", str(tmp_path / "ek.der"), "--intermediate",
                 str(tmp_path / "ca.pem"), "--root", str(tmp_path / "root.pem")]) == 0
