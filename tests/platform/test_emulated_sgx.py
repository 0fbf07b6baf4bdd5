"""The emulated SGX machine: MRENCLAVE, SIGSTRUCT/EINIT, local attestation, EGETKEY, quotes.

MRENCLAVE oracle: an independent replay written here with ``struct`` from the record layouts
of SDM Vol. 3D "Enclave Measurement" as Gramine's ``sgx_sign`` packs them
(``'<8sLQ44s'`` ECREATE, ``'<8sQQ40s'`` EADD, ``'<8sQ48s'`` EEXTEND + 256 bytes). No published
SIGSTRUCT/layout pair small enough to rebuild here was found, so this checks the algorithm
against that independent implementation's description, not a published digest. MRSIGNER is
checked against a published value: the SGX SDK sample signing key's ``83d719e7...``.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from veritee.attest import verify_intel_evidence
from veritee.errors import (
    FormatError,
    PlatformError,
    PolicyRejected,
    SealingError,
    VerificationError,
)
from veritee.formats.intel import SgxReportBody, TcbStatus
from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor
from veritee.platform.emulated.sgx import (
    PAGE_SIZE,
    EmulatedEnclave,
    InsecureEmulatedSgxMachine,
    KeyName,
    KeyPolicy,
    KeyRequest,
    SecInfo,
    Sigstruct,
    sgx_seal,
    sgx_unseal,
    sign_enclave,
)
from veritee.policy.intel import SgxPolicy
from veritee.trust.intel import verify_quote

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CODE = bytes(range(256)) * 16 * 2


@pytest.fixture(scope="module")
def vendor() -> EmulatedIntelVendor:
    return EmulatedIntelVendor.generate(now=NOW)


@pytest.fixture(scope="module")
def signer() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=3, key_size=3072)


@pytest.fixture(scope="module")
def other_signer() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=3, key_size=3072)


@pytest.fixture
def machine(vendor: EmulatedIntelVendor) -> InsecureEmulatedSgxMachine:
    return InsecureEmulatedSgxMachine(vendor, cpu=EmulatedIntelCpu(vendor, now=NOW))


def _oracle(size: int, ssa: int, pages: list[tuple[int, int, bytes, bool]]) -> bytes:
    h = hashlib.sha256(struct.pack("<8sLQ44s", b"ECREATE", ssa, size, b""))
    for off, flags, page, measured in pages:
        h.update(struct.pack("<8sQQ40s", b"EADD", off, flags, b""))
        if measured:
            for c in range(0, PAGE_SIZE, 256):
                h.update(struct.pack("<8sQ48s", b"EEXTEND", off + c, b""))
                h.update(page[c:c + 256])
    return h.digest()


# -- MRENCLAVE and EINIT --------------------------------------------------------------------


def test_mrenclave_equals_the_independent_replay(machine: InsecureEmulatedSgxMachine) -> None:
    b = machine.build(size=1 << 16, ssa_frame_pages=2)
    tcs = bytes(range(256)) * 16
    b.add_pages(0, tcs, SecInfo.PT_TCS)
    b.add_pages(0x1000, CODE, SecInfo.PT_REG | SecInfo.R | SecInfo.X)
    b.add_pages(0x3000, bytes(PAGE_SIZE), SecInfo.PT_REG | SecInfo.R | SecInfo.W, measure=False)
    rx, rw = 0x205, 0x203
    want = _oracle(1 << 16, 2, [(0, 0x100, tcs, True), (0x1000, rx, CODE[:4096], True),
                                (0x2000, rx, CODE[4096:], True), (0x3000, rw, bytes(4096),
                                                                  False)])
    assert b.mrenclave == want


def test_page_permissions_and_layout_enter_mrenclave(machine: InsecureEmulatedSgxMachine) -> None:
    def build(flags: SecInfo, at: int = 0x1000) -> bytes:
        b = machine.build(size=1 << 16)
        b.add_pages(at, CODE, flags)
        return b.mrenclave
    rx = SecInfo.PT_REG | SecInfo.R | SecInfo.X
    assert len({build(rx), build(rx | SecInfo.W), build(rx, 0x4000)}) == 3


def test_sigstruct_round_trips_and_mrsigner_is_the_modulus_hash(
        machine: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey) -> None:
    raw = sign_enclave(signer, bytes(32), isv_prod_id=7, isv_svn=3)
    s = Sigstruct.from_bytes(raw)
    assert s.to_bytes() == raw and len(raw) == 1808
    n = signer.public_key().public_numbers().n
    assert s.mrsigner == hashlib.sha256(n.to_bytes(384, "little")).digest()
    assert s.signature_valid() and s.isv_prod_id == 7 and s.isv_svn == 3


def test_signing_key_must_be_rsa3072_e3() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(PlatformError, match="e = 3"):
        sign_enclave(key, bytes(32))


def _builder(machine: InsecureEmulatedSgxMachine, debug: bool = False) -> object:
    b = machine.build(size=1 << 16, debug=debug)
    b.add_pages(0, CODE, SecInfo.PT_REG | SecInfo.R | SecInfo.X)
    return b


def test_einit_refuses_a_sigstruct_for_another_enclave(
        machine: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey) -> None:
    b = _builder(machine)
    with pytest.raises(PlatformError, match="INVALID_MEASUREMENT"):
        b.einit(sign_enclave(signer, bytes(32)))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("offset", "what"), [(1026, "ISVSVN raised"), (1024, "ISVPRODID"),
                                              (928, "ATTRIBUTES"), (600, "signature byte"),
                                              (200, "modulus byte"), (1100, "Q1")])
def test_einit_refuses_a_tampered_sigstruct(machine: InsecureEmulatedSgxMachine,
                                            signer: rsa.RSAPrivateKey, offset: int,
                                            what: str) -> None:
    b = _builder(machine)
    raw = bytearray(sign_enclave(signer, b.mrenclave))  # type: ignore[attr-defined]
    raw[offset] ^= 0x01
    with pytest.raises(PlatformError, match="INVALID_SIGNATURE"):
        b.einit(bytes(raw))  # type: ignore[attr-defined]


def test_einit_refuses_attributes_outside_the_sigstruct(
        machine: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey) -> None:
    """A loader sets MODE64BIT off under a SIGSTRUCT that pins it."""
    b = machine.build(size=1 << 16, flags=0)
    b.add_pages(0, CODE, SecInfo.PT_REG | SecInfo.R | SecInfo.X)
    with pytest.raises(PlatformError, match="INVALID_ATTRIBUTE"):
        b.einit(sign_enclave(signer, b.mrenclave))


def test_einit_gives_the_enclave_its_identity(machine: InsecureEmulatedSgxMachine,
                                              signer: rsa.RSAPrivateKey) -> None:
    e = machine.load(CODE, signer, isv_prod_id=9, isv_svn=4)
    assert e.isv_prod_id == 9 and e.isv_svn == 4 and not e.debug
    assert e.mr_signer == Sigstruct.from_bytes(sign_enclave(signer, bytes(32))).mrsigner


# -- local attestation ------------------------------------------------------------------------


@pytest.fixture
def pair(machine: InsecureEmulatedSgxMachine,
         signer: rsa.RSAPrivateKey) -> tuple[EmulatedEnclave, EmulatedEnclave]:
    return (machine.load(CODE, signer, isv_prod_id=1),
            machine.load(CODE[::-1], signer, isv_prod_id=2))


def test_local_attestation_between_two_enclaves(
        pair: tuple[EmulatedEnclave, EmulatedEnclave]) -> None:
    a, b = pair
    report = a.ereport(b.target_info(), bytes(range(64)))
    body = b.verify_report(report)
    assert body.mr_enclave == a.mr_enclave and body.report_data == bytes(range(64))
    assert body.isv_prod_id == 1


def test_report_for_another_target_is_refused(
        pair: tuple[EmulatedEnclave, EmulatedEnclave]) -> None:
    a, b = pair
    report = a.ereport(a.target_info(), bytes(64))
    with pytest.raises(PlatformError, match="MAC"):
        b.verify_report(report)


@pytest.mark.parametrize("offset", [64, 128, 256, 320, 383, 384, 416, 431])
def test_tampered_report_is_refused(pair: tuple[EmulatedEnclave, EmulatedEnclave],
                                    offset: int) -> None:
    a, b = pair
    report = bytearray(a.ereport(b.target_info(), bytes(64)))
    report[offset] ^= 0x01
    with pytest.raises(PlatformError):
        b.verify_report(bytes(report))


def test_report_keyid_changes_at_reboot(
        machine: InsecureEmulatedSgxMachine,
        pair: tuple[EmulatedEnclave, EmulatedEnclave]) -> None:
    """REPORT.KEYID (CR_REPORT_KEYID) is new at every power cycle; a forged KEYID is refused
    by the MAC (see ``test_tampered_report_is_refused`` at offset 384)."""
    a, b = pair
    report = a.ereport(b.target_info(), bytes(64))
    machine.reboot()
    fresh = a.ereport(b.target_info(), bytes(64))
    assert fresh[384:416] != report[384:416]
    b.verify_report(fresh)


def test_report_from_another_cpu_is_refused(
        vendor: EmulatedIntelVendor, signer: rsa.RSAPrivateKey,
        pair: tuple[EmulatedEnclave, EmulatedEnclave]) -> None:
    other = InsecureEmulatedSgxMachine(vendor, cpu=EmulatedIntelCpu(vendor, now=NOW))
    stranger = other.load(CODE, signer, isv_prod_id=1)
    _, b = pair
    with pytest.raises(PlatformError, match="MAC"):
        b.verify_report(stranger.ereport(b.target_info(), bytes(64)))


# -- quotes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [3, 5])
def test_sgx_quote_verifies_with_the_explicit_emulated_root(
        vendor: EmulatedIntelVendor, machine: InsecureEmulatedSgxMachine,
        signer: rsa.RSAPrivateKey, version: int) -> None:
    e = machine.load(CODE, signer, isv_prod_id=3, isv_svn=2)
    raw = e.quote(bytes(range(64)), version=version)
    v = verify_quote(raw, vendor.collateral("SGX", NOW), now=NOW, trusted_roots=[vendor.root])
    body = v.quote.body
    assert isinstance(body, SgxReportBody)
    assert v.tee == "sgx" and body.mr_enclave == e.mr_enclave and body.mr_signer == e.mr_signer
    assert v.quote.signature_data.qe.certification_data.cert_type == 5
    assert v.tcb is not None and v.tcb.status is TcbStatus.UP_TO_DATE
    assert v.qe_identity is not None and v.qe_identity.id == "QE"


_SGX_FIELDS = {"cpu_svn": 0, "misc_select": 16, "isv_ext_prod_id": 32, "attributes": 48,
               "mr_enclave": 64, "mr_signer": 128, "config_id": 192, "isv_prod_id": 256,
               "isv_svn": 258, "config_svn": 260, "isv_family_id": 304, "report_data": 320}


@pytest.mark.parametrize("fld", sorted(_SGX_FIELDS))
def test_tampered_enclave_report_field_breaks_the_quote_signature(
        vendor: EmulatedIntelVendor, machine: InsecureEmulatedSgxMachine,
        signer: rsa.RSAPrivateKey, fld: str) -> None:
    raw = bytearray(machine.load(CODE, signer).quote(bytes(64)))
    raw[48 + _SGX_FIELDS[fld]] ^= 0x01
    with pytest.raises(VerificationError) as e:
        verify_quote(bytes(raw), vendor.collateral("SGX", NOW), now=NOW,
                     trusted_roots=[vendor.root])
    assert e.value.code == "intel.quote.signature"


def test_quote_refused_by_the_production_pin(machine: InsecureEmulatedSgxMachine,
                                              signer: rsa.RSAPrivateKey,
                                              vendor: EmulatedIntelVendor) -> None:
    raw = machine.load(CODE, signer).quote(bytes(64))
    with pytest.raises(VerificationError, match="root"):
        verify_quote(raw, vendor.collateral("SGX", NOW), now=NOW)


def test_qe_refuses_a_report_not_made_for_it(
        machine: InsecureEmulatedSgxMachine,
        pair: tuple[EmulatedEnclave, EmulatedEnclave]) -> None:
    a, b = pair
    with pytest.raises(PlatformError, match="MAC"):
        machine.quoting_enclave.quote_report(a.ereport(b.target_info(), bytes(64)))


def test_sgx_policy_refuses_debug_wrong_mrenclave_and_low_svn(
        vendor: EmulatedIntelVendor, machine: InsecureEmulatedSgxMachine,
        signer: rsa.RSAPrivateKey, other_signer: rsa.RSAPrivateKey) -> None:
    col = vendor.collateral("SGX", NOW)
    good = machine.load(CODE, signer, isv_prod_id=5, isv_svn=2)
    policy = SgxPolicy(mrenclave={good.mr_enclave}, mrsigner={good.mr_signer}, isv_prod_id=5,
                       min_isv_svn=2)
    ok = verify_intel_evidence(good.quote(bytes(64)), collateral=col, now=NOW,
                               trusted_roots=[vendor.root], policy=policy)
    assert ok.accepted
    cases = {"sgx.debug": machine.load(CODE, signer, isv_prod_id=5, isv_svn=2, debug=True),
             "sgx.mrenclave": machine.load(CODE + b"x", signer, isv_prod_id=5, isv_svn=2),
             "sgx.mrsigner": machine.load(CODE, other_signer, isv_prod_id=5, isv_svn=2),
             "sgx.isvsvn": machine.load(CODE, signer, isv_prod_id=5, isv_svn=1)}
    for code, enclave in cases.items():
        with pytest.raises(PolicyRejected) as e:
            verify_intel_evidence(enclave.quote(bytes(64)), collateral=col, now=NOW,
                                  trusted_roots=[vendor.root], policy=policy)
        assert any(f.code.startswith(code) for f in e.value.appraisal.failures), code


def test_revoked_microcode_is_refused_by_the_default_policy(
        vendor: EmulatedIntelVendor, machine: InsecureEmulatedSgxMachine,
        signer: rsa.RSAPrivateKey) -> None:
    e = machine.load(CODE, signer)
    machine.cpu.update_microcode(1)
    with pytest.raises(PolicyRejected) as exc:
        verify_intel_evidence(e.quote(bytes(64)), collateral=vendor.collateral("SGX", NOW),
                              now=NOW, trusted_roots=[vendor.root])
    assert exc.value.appraisal.claims["tcb_status"] == "Revoked"


# -- EGETKEY ------------------------------------------------------------------------------------


def test_egetkey_seal_key_table(machine: InsecureEmulatedSgxMachine, vendor: EmulatedIntelVendor,
                                signer: rsa.RSAPrivateKey,
                                other_signer: rsa.RSAPrivateKey) -> None:
    a = machine.load(CODE, signer, isv_prod_id=1, isv_svn=2)
    a_again = machine.load(CODE, signer, isv_prod_id=1, isv_svn=2)
    v3 = machine.load(CODE + b"v3", signer, isv_prod_id=1, isv_svn=3)
    other_product = machine.load(CODE + b"p", signer, isv_prod_id=2, isv_svn=2)
    other_sig = machine.load(CODE, other_signer, isv_prod_id=1, isv_svn=2)
    debug = machine.load(CODE, signer, isv_prod_id=1, isv_svn=2, debug=True)
    elsewhere = InsecureEmulatedSgxMachine(vendor, cpu=EmulatedIntelCpu(vendor, now=NOW)).load(
        CODE, signer, isv_prod_id=1, isv_svn=2)
    kid = bytes(range(32))

    def key(e: EmulatedEnclave, policy: KeyPolicy, svn: int = 2) -> bytes:
        return e.egetkey(e.seal_key_request(policy, isv_svn=svn, key_id=kid))

    mre, mrs = KeyPolicy.MRENCLAVE, KeyPolicy.MRSIGNER
    # MRENCLAVE-policy keys leave MRSIGNER out (SDM EGETKEY: a policy bit selects each), so
    # the same code signed by another key derives the same key.
    table = [  # (policy, enclave, same key as A's?)
        (mre, a_again, True), (mre, v3, False), (mre, other_sig, True),
        (mrs, v3, True), (mrs, other_product, False), (mrs, other_sig, False),
        (mrs, debug, False), (mre, debug, False), (mrs, elsewhere, False)]
    for policy, enclave, same in table:
        assert (key(enclave, policy) == key(a, policy)) is same, (policy, enclave.isv_svn)
    assert key(a, mre) != a.egetkey(a.seal_key_request(mre, isv_svn=2, key_id=bytes(32)))
    assert len(key(a, mre)) == 16


def test_egetkey_svn_goes_down_not_up(machine: InsecureEmulatedSgxMachine,
                                      signer: rsa.RSAPrivateKey) -> None:
    a = machine.load(CODE, signer, isv_svn=2)
    with pytest.raises(PlatformError, match="INVALID_ISVSVN"):
        a.egetkey(a.seal_key_request(KeyPolicy.MRSIGNER, isv_svn=3))
    newer_cpu = bytes([4, 4]) + machine.cpu.cpusvn[2:]
    with pytest.raises(PlatformError, match="INVALID_CPUSVN"):
        a.egetkey(a.seal_key_request(KeyPolicy.MRSIGNER, cpu_svn=newer_cpu))
    a.egetkey(a.seal_key_request(KeyPolicy.MRSIGNER, isv_svn=0))


def test_old_cpusvn_key_survives_a_microcode_update(machine: InsecureEmulatedSgxMachine,
                                                    signer: rsa.RSAPrivateKey) -> None:
    a = machine.load(CODE, signer)
    req = a.seal_key_request(KeyPolicy.MRENCLAVE)
    before = a.egetkey(req)
    machine.cpu.update_microcode(4)
    assert a.egetkey(req) == before
    assert a.egetkey(a.seal_key_request(KeyPolicy.MRENCLAVE, key_id=req.key_id)) != before


def test_keyrequest_round_trips_and_rejects_bad_bytes() -> None:
    req = KeyRequest(KeyName.SEAL, KeyPolicy.MRSIGNER, isv_svn=3, key_id=bytes(range(32)))
    assert KeyRequest.from_bytes(req.to_bytes()) == req
    bad = bytearray(req.to_bytes())
    bad[0] = 9
    with pytest.raises(FormatError):
        KeyRequest.from_bytes(bytes(bad))


def test_provision_key_needs_the_provisionkey_attribute(machine: InsecureEmulatedSgxMachine,
                                                        signer: rsa.RSAPrivateKey) -> None:
    a = machine.load(CODE, signer)
    with pytest.raises(PlatformError, match="PROVISIONKEY"):
        a.egetkey(KeyRequest(KeyName.PROVISION))


# -- sealing ------------------------------------------------------------------------------------


def test_sgx_sealing_table(machine: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey,
                           other_signer: rsa.RSAPrivateKey) -> None:
    a = machine.load(CODE, signer, isv_svn=2)
    upgraded = machine.load(CODE + b"v3", signer, isv_svn=3)
    older = machine.load(CODE + b"v1", signer, isv_svn=1)
    stranger = machine.load(CODE, other_signer, isv_svn=2)
    debug = machine.load(CODE, signer, isv_svn=2, debug=True)
    mre, mrs = KeyPolicy.MRENCLAVE, KeyPolicy.MRSIGNER
    table = [  # (policy, who unseals A's blob, the reader's ISVSVN floor, opens?)
        (mre, a, None, True), (mre, upgraded, 2, False), (mrs, upgraded, 2, True),
        (mrs, upgraded, None, False), (mrs, older, 0, False), (mrs, stranger, 2, False),
        (mrs, debug, 2, False), (mre, debug, 2, False)]
    for policy, who, floor, opens in table:
        blob = sgx_seal(a, b"db key", policy)
        if opens:
            assert sgx_unseal(who, blob, policy=policy, min_isv_svn=floor) == b"db key"
        else:
            with pytest.raises(SealingError):
                sgx_unseal(who, blob, policy=policy, min_isv_svn=floor)


def test_older_release_cannot_forge_state_for_a_newer_one(
        machine: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey) -> None:
    """An SVN-1 release (a known-vulnerable one) writes state under MRSIGNER; the SVN-3
    release could derive that key, but its floor (its own SVN by default) refuses it."""
    old = machine.load(CODE + b"v1", signer, isv_svn=1)
    new = machine.load(CODE + b"v3", signer, isv_svn=3)
    forged = sgx_seal(old, b"attacker state", KeyPolicy.MRSIGNER)
    with pytest.raises(SealingError):
        sgx_unseal(new, forged, policy=KeyPolicy.MRSIGNER)
    assert sgx_unseal(new, forged, policy=KeyPolicy.MRSIGNER, min_isv_svn=1) == \
        b"attacker state"  # only when the reader says it accepts SVN 1


def test_signer_blob_is_refused_by_an_mrenclave_reader(
        machine: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey) -> None:
    """Another enclave of the same signer writes an MRSIGNER blob for a reader that expects
    its own MRENCLAVE-sealed data (the key would derive: the header must not decide)."""
    victim = machine.load(CODE, signer, isv_svn=2)
    sibling = machine.load(CODE + b"sibling", signer, isv_svn=2)
    forged = sgx_seal(sibling, b"attacker state", KeyPolicy.MRSIGNER)
    with pytest.raises(SealingError):
        sgx_unseal(victim, forged, policy=KeyPolicy.MRENCLAVE)


def test_weakened_key_request_is_refused(machine: InsecureEmulatedSgxMachine,
                                         signer: rsa.RSAPrivateKey) -> None:
    """A writer that drops ISVPRODID or the attribute mask from the key request."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    victim = machine.load(CODE, signer, isv_prod_id=1, isv_svn=2)
    other_product = machine.load(CODE + b"p", signer, isv_prod_id=9, isv_svn=2)
    for weak in (replace(other_product.seal_key_request(KeyPolicy.MRSIGNER),
                         key_policy=KeyPolicy.MRSIGNER | KeyPolicy.NOISVPRODID),
                 replace(other_product.seal_key_request(KeyPolicy.MRSIGNER),
                         attribute_mask=bytes(16))):
        head = b"VTSGXSL1" + weak.to_bytes()
        nonce = bytes(12)
        blob = head + nonce + AESGCM(other_product.egetkey(weak)).encrypt(nonce, b"x", head)
        with pytest.raises(SealingError):
            sgx_unseal(victim, blob, policy=KeyPolicy.MRSIGNER)


def test_cpusvn_floor_refuses_data_sealed_under_old_microcode(
        machine: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey) -> None:
    a = machine.load(CODE, signer, isv_svn=2)
    machine.cpu.update_microcode(2)
    old = sgx_seal(a, b"sealed on revoked microcode")
    machine.cpu.update_microcode(3)
    assert sgx_unseal(a, old) == b"sealed on revoked microcode"
    with pytest.raises(SealingError):
        sgx_unseal(a, old, min_cpu_svn=machine.cpu.cpusvn)


def test_tampered_sealed_blob_is_one_error(machine: InsecureEmulatedSgxMachine,
                                           signer: rsa.RSAPrivateKey) -> None:
    a = machine.load(CODE, signer, isv_svn=2)
    blob = sgx_seal(a, b"secret")
    messages = set()
    for offset in (0, 8, 12, 8 + 40, 8 + 512 + 3, len(blob) - 1):
        bad = bytearray(blob)
        bad[offset] ^= 1
        with pytest.raises(SealingError) as e:
            sgx_unseal(a, bytes(bad))
        messages.add(str(e.value))
    with pytest.raises(SealingError):
        sgx_unseal(a, blob[:100])
    raised = bytearray(blob)
    raised[8 + 4] = 9  # KEYREQUEST.ISVSVN above the enclave's: EGETKEY refuses
    with pytest.raises(SealingError):
        sgx_unseal(a, bytes(raised))
    assert len(messages) == 1


def test_enclave_identity_fields_are_what_the_quote_reports(
        machine: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey) -> None:
    e = machine.load(CODE, signer, isv_prod_id=4, isv_svn=6)
    body = e.body(bytes(64))
    assert replace(body, report_data=bytes(64)) == body
    assert body.isv_svn == 6 and body.attributes[0] & 0x05 == 0x05  # INIT | MODE64BIT


# The public modulus of the Intel SGX SDK's sample enclave signing key (RSA-3072, e = 3;
# SampleCode/*/Enclave_private_test.pem, public half only), big endian. Its MRSIGNER,
# 83d719e7...c7ce9e, is published independently: Project Oak's ``kDebugMrSigner`` ("derived
# from the SGX test key"), Intel Trust Authority's SGX policy examples and hushmesh's
# ``test_sgx_mr_signer``.
SDK_TEST_MODULUS = int(
    "ae83a882fb23fdf643658f1715d925e9d266932d2546f9d6326a5e1f8d4195ae"
    "94d6a2d902666ec8817e9900bf720a2322cac13330716f590aab3013178f97c0"
    "fc202b3edf9a275d987c98cf658325f02322f78966374c8cce3e132b46964909"
    "e764fc57c76cd3f2f6a8a7b127e3412f191e40b7d5f27d66224ef35fb8e0bb06"
    "c21b53eb9c431d27749ec36d2f9e37be46c9e003374f0a1a09a55b168bf2bb71"
    "eb6d5ffb5b9eb7b50cbd36197739a89a10624edbdf3926873df54e016b77d555"
    "b66506c855c0cacb9201bdc437ee559c71abd312a47a0f2eb44ade6b614db4d2"
    "20b9af0738d7e6f448b269abf54952b33c7972a8bb5c7711f723c5a0ef2a8cb1"
    "aa6b6759f9035bff95ebf19cbf3e22dd362ac783e47a95e2b7ff708992942b77"
    "969460f14e44d69c85436215102fd74c332223773e011fb0da34910770709fdc"
    "c9b459562871b79b5c46238724f8b722d49bd658b5d06a04123ed653b2e6f14d"
    "0371d60b2066182fd491d564c75b56501b6d1302d674ae24d97b28f012fd57f3", 16)
SDK_TEST_MRSIGNER = "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e"


def test_mrsigner_matches_the_published_value_for_the_sdk_test_key() -> None:
    s = Sigstruct(vendor=0, date=0, sw_defined=0,
                  modulus=SDK_TEST_MODULUS.to_bytes(384, "little"), exponent=3,
                  signature=bytes(384), misc_select=0, misc_mask=0,
                  isv_family_id=bytes(16), attributes=bytes(16), attribute_mask=bytes(16),
                  enclave_hash=bytes(32), isv_ext_prod_id=bytes(16), isv_prod_id=0, isv_svn=0)
    assert s.mrsigner.hex() == SDK_TEST_MRSIGNER
    assert Sigstruct.from_bytes(s.to_bytes()).mrsigner.hex() == SDK_TEST_MRSIGNER
