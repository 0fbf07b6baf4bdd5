"""The emulated TDX machine: MRTD, RTMRs, TDREPORT, TD quotes verified by ``trust.intel``.

MRTD oracle: an independent replay written here from the TDX Module ABI text of the
TDH.MEM.PAGE.ADD / TDH.MR.EXTEND leaves (as Project Oak's ``stage0`` ``mr_td_measurement``,
aleph's ``tdx_measurement.mrtd`` and Phala's ``dstack-mr`` implement it: 128-byte buffers,
the operation name at 0, the GPA little endian at 16, the chunk as two more buffers). None
of those publishes an MRTD vector for a firmware small enough to rebuild here, so the check
is of the algorithm against that independent description, not against a published digest.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from veritee.attest import verify_intel_evidence
from veritee.collateral.intel import load_directory
from veritee.errors import PlatformError, PolicyRejected, VerificationError
from veritee.formats.intel import Quote, TcbStatus, TdReportBody
from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor, IntelTcbLevel
from veritee.platform.emulated.tdx import (
    PAGE_SIZE,
    InsecureEmulatedTdxMachine,
    TdReport,
)
from veritee.policy.intel import TdxPolicy
from veritee.trust.intel import verify_quote

NOW = datetime(2026, 6, 1, tzinfo=UTC)
FIRMWARE = bytes(range(256)) * 16 * 3  # 3 pages


@pytest.fixture(scope="module")
def vendor() -> EmulatedIntelVendor:
    return EmulatedIntelVendor.generate(now=NOW)


@pytest.fixture
def machine(vendor: EmulatedIntelVendor) -> InsecureEmulatedTdxMachine:
    return InsecureEmulatedTdxMachine(vendor, cpu=EmulatedIntelCpu(vendor, now=NOW))


def _oracle_mrtd(pages: list[tuple[int, bytes, bool]]) -> bytes:
    h = hashlib.sha384()
    for gpa, page, measured in pages:
        h.update(struct.pack("<12s4xQ104x", b"MEM.PAGE.ADD", gpa))
        if measured:
            for c in range(0, PAGE_SIZE, 256):
                h.update(struct.pack("<9s7xQ104x", b"MR.EXTEND", gpa + c))
                h.update(page[c:c + 256])
    return h.digest()


def _verify(vendor: EmulatedIntelVendor, quote: bytes, at: datetime = NOW) -> object:
    return verify_quote(quote, vendor.collateral("TDX", at), now=at, trusted_roots=[vendor.root])


# -- MRTD, RTMRs ---------------------------------------------------------------------------


def test_mrtd_equals_the_independent_replay(machine: InsecureEmulatedTdxMachine) -> None:
    td = machine.launch(FIRMWARE, hob_pages=2)
    top = (1 << 32) - len(FIRMWARE)
    pages = [(top + i, FIRMWARE[i:i + PAGE_SIZE], True) for i in range(0, len(FIRMWARE),
                                                                         PAGE_SIZE)]
    pages += [(0x800000 + i * PAGE_SIZE, bytes(PAGE_SIZE), False) for i in range(2)]
    assert td.mr_td == _oracle_mrtd(pages)


def test_one_firmware_byte_changes_mrtd(machine: InsecureEmulatedTdxMachine) -> None:
    a = machine.launch(FIRMWARE).mr_td
    b = machine.launch(FIRMWARE[:-1] + b"\x00").mr_td
    c = machine.launch(FIRMWARE, firmware_gpa=0xFFE00000).mr_td
    assert len({a, b, c}) == 3


def test_unmeasured_page_content_does_not_enter_mrtd(
        machine: InsecureEmulatedTdxMachine) -> None:
    def build(content: bytes) -> bytes:
        b = machine.build()
        b.add_region(0x1000, content, measure=False)
        return b.finalize().mr_td
    assert build(b"a" * 10) == build(b"b" * 10)


def test_host_cannot_add_a_page_twice_or_after_finalize(
        machine: InsecureEmulatedTdxMachine) -> None:
    b = machine.build()
    b.page_add(0x1000, bytes(PAGE_SIZE))
    with pytest.raises(PlatformError, match="already added"):
        b.page_add(0x1000, bytes(PAGE_SIZE))
    with pytest.raises(PlatformError, match="not added"):
        b.mr_extend(0x5000)
    b.finalize()
    with pytest.raises(PlatformError, match="finalized"):
        b.page_add(0x2000, bytes(PAGE_SIZE))


def test_rtmr_extend_is_a_sha384_chain(machine: InsecureEmulatedTdxMachine) -> None:
    td = machine.launch(FIRMWARE)
    e1, e2 = hashlib.sha384(b"kernel").digest(), hashlib.sha384(b"initrd").digest()
    td.rtmr_extend(1, e1)
    td.rtmr_extend(1, e2)
    want = hashlib.sha384(hashlib.sha384(bytes(48) + e1).digest() + e2).digest()
    assert td.rtmrs[1] == want and td.rtmrs[0] == bytes(48)
    with pytest.raises(PlatformError):
        td.rtmr_extend(4, e1)


# -- TDREPORT -------------------------------------------------------------------------------


def test_tdreport_round_trips_and_carries_the_td(machine: InsecureEmulatedTdxMachine) -> None:
    td = machine.launch(FIRMWARE)
    raw = td.tdreport(bytes(range(64)))
    r = TdReport.from_bytes(raw)
    assert r.to_bytes() == raw and len(raw) == 1024
    body = r.body()
    assert body.mr_td == td.mr_td and body.report_data == bytes(range(64))
    assert body.tee_tcb_svn[:2] == bytes([5, 3]) and not body.is_td15


def test_forged_tdreport_is_refused_by_the_td_qe(machine: InsecureEmulatedTdxMachine) -> None:
    """The host edits MRTD in a TDREPORT before handing it to the TD QE."""
    td = machine.launch(FIRMWARE)
    raw = bytearray(td.tdreport(bytes(64)))
    raw[512 + 16] ^= 1  # TDINFO.MRTD
    with pytest.raises(PlatformError, match="hashes"):
        machine.quote(bytes(raw))
    raw = bytearray(td.tdreport(bytes(64)))
    raw[128] ^= 1  # REPORTDATA, under the MAC
    with pytest.raises(PlatformError, match="MAC"):
        machine.quote(bytes(raw))


def test_tdreport_from_another_cpu_is_refused(vendor: EmulatedIntelVendor,
                                              machine: InsecureEmulatedTdxMachine) -> None:
    other = InsecureEmulatedTdxMachine(vendor, cpu=EmulatedIntelCpu(vendor, now=NOW))
    report = other.launch(FIRMWARE).tdreport(bytes(64))
    with pytest.raises(PlatformError, match="MAC"):
        machine.quote(report)


# -- quotes through trust.intel ---------------------------------------------------------------


@pytest.mark.parametrize("version", [4, 5])
def test_td_quote_verifies_with_the_explicit_emulated_root(
        vendor: EmulatedIntelVendor, machine: InsecureEmulatedTdxMachine, version: int) -> None:
    td = machine.launch(FIRMWARE)
    td.measure_event(3, b"app config")
    raw = td.quote(bytes(range(64)), version=version)
    v = _verify(vendor, raw)
    assert v.tee == "tdx" and v.quote.header.version == version  # type: ignore[attr-defined]
    body = v.quote.body  # type: ignore[attr-defined]
    assert isinstance(body, TdReportBody)
    assert body.mr_td == td.mr_td and body.rtmrs[3] == td.rtmrs[3]
    assert v.tcb.status is TcbStatus.UP_TO_DATE  # type: ignore[attr-defined]
    assert v.tcb.tdx_module_id == "TDX_03"  # type: ignore[attr-defined]
    assert v.crl_checked and v.qe_identity is not None  # type: ignore[attr-defined]


def test_td15_body_with_a_service_td_needs_v5(vendor: EmulatedIntelVendor,
                                              machine: InsecureEmulatedTdxMachine) -> None:
    td = machine.launch(FIRMWARE)
    td.servtd_hash = hashlib.sha384(b"bound vTPM service TD").digest()
    with pytest.raises(PlatformError, match="v5"):
        td.quote(bytes(64), version=4)
    v = _verify(vendor, td.quote(bytes(64), version=5))
    body = v.quote.body  # type: ignore[attr-defined]
    assert body.is_td15 and body.mr_servicetd == td.servtd_hash


def test_emulated_td_quote_is_refused_by_the_production_pin(
        vendor: EmulatedIntelVendor, machine: InsecureEmulatedTdxMachine) -> None:
    raw = machine.launch(FIRMWARE).quote(bytes(64))
    with pytest.raises(VerificationError) as e:
        verify_quote(raw, vendor.collateral("TDX", NOW), now=NOW)
    assert e.value.code == "intel.chain.root_untrusted"


# Every field of the TD quote body (offset in the body, TDX QL API "TD Quote Body").
_BODY_FIELDS = {"tee_tcb_svn": 0, "mr_seam": 16, "mr_signer_seam": 64, "seam_attributes": 112,
                "td_attributes": 120, "xfam": 128, "mr_td": 136, "mr_config_id": 184,
                "mr_owner": 232, "mr_owner_config": 280, "rtmr0": 328, "rtmr1": 376,
                "rtmr2": 424, "rtmr3": 472, "report_data": 520}


@pytest.mark.parametrize("fld", sorted(_BODY_FIELDS))
def test_tampered_td_body_field_breaks_the_quote_signature(
        vendor: EmulatedIntelVendor, machine: InsecureEmulatedTdxMachine, fld: str) -> None:
    raw = bytearray(machine.launch(FIRMWARE).quote(bytes(64)))
    raw[48 + _BODY_FIELDS[fld]] ^= 0x01
    with pytest.raises(VerificationError) as e:
        _verify(vendor, bytes(raw))
    assert e.value.code == "intel.quote.signature"


def test_tampered_header_and_qe_report_are_refused(vendor: EmulatedIntelVendor,
                                                   machine: InsecureEmulatedTdxMachine) -> None:
    good = machine.launch(FIRMWARE).quote(bytes(64))
    raw = bytearray(good)
    raw[28] ^= 1  # header user_data
    with pytest.raises(VerificationError, match="quote signature"):
        _verify(vendor, bytes(raw))
    q = Quote.from_bytes(good)
    qe = q.signature_data.qe
    for tampered, code in (
            (replace(qe, qe_report=replace(qe.qe_report, isv_svn=99)),
             "intel.qe_report.signature"),
            (replace(qe, qe_auth_data=bytes(32)), "intel.qe_report.binding")):
        forged = replace(q, signature_data=replace(q.signature_data, qe=tampered))
        with pytest.raises(VerificationError) as e:
            _verify(vendor, forged.to_bytes())
        assert e.value.code == code
    swapped = replace(q, signature_data=replace(q.signature_data,
                                                attestation_key=bytes(63) + b"\x01"))
    with pytest.raises(VerificationError):
        _verify(vendor, swapped.to_bytes())


# -- TCB status from the emulated collateral ---------------------------------------------------


@pytest.mark.parametrize(("release", "status"), [(3, TcbStatus.UP_TO_DATE),
                                                 (2, TcbStatus.OUT_OF_DATE),
                                                 (1, TcbStatus.REVOKED)])
def test_microcode_release_decides_the_tcb_status(
        vendor: EmulatedIntelVendor, machine: InsecureEmulatedTdxMachine, release: int,
        status: TcbStatus) -> None:
    td = machine.launch(FIRMWARE)
    machine.cpu.update_microcode(release)
    v = _verify(vendor, td.quote(bytes(64)))
    assert v.tcb.status is status  # type: ignore[attr-defined]
    assert v.pck.cpusvn == machine.cpu.cpusvn  # type: ignore[attr-defined]


def test_microcode_update_gives_a_new_pck_key(machine: InsecureEmulatedTdxMachine) -> None:
    machine.cpu.update_microcode(2)
    old = machine.cpu.pck_certificate()
    machine.cpu.update_microcode(3)
    new = machine.cpu.pck_certificate()
    assert old.public_key() != new.public_key()


def test_out_of_date_tdx_module_makes_the_platform_out_of_date(
        vendor: EmulatedIntelVendor, machine: InsecureEmulatedTdxMachine) -> None:
    machine.update_module(3)
    v = _verify(vendor, machine.launch(FIRMWARE).quote(bytes(64)))
    assert v.tcb.tdx_module_status is TcbStatus.OUT_OF_DATE  # type: ignore[attr-defined]
    assert v.tcb.status is TcbStatus.OUT_OF_DATE  # type: ignore[attr-defined]


def test_tcb_recovery_turns_an_up_to_date_platform_out_of_date(
        vendor: EmulatedIntelVendor) -> None:
    recovered = replace(vendor, tcb_levels=(
        IntelTcbLevel(4, 14, TcbStatus.UP_TO_DATE, NOW - timedelta(days=2)),
        *(replace(lv, status=TcbStatus.OUT_OF_DATE) if lv.release == 3 else lv
          for lv in vendor.tcb_levels)))
    m = InsecureEmulatedTdxMachine(recovered, cpu=EmulatedIntelCpu(recovered, now=NOW))
    td = m.launch(FIRMWARE)
    assert _verify(recovered, td.quote(bytes(64))).tcb.status is TcbStatus.OUT_OF_DATE  # type: ignore[attr-defined]
    m.cpu.update_microcode(4)
    assert _verify(recovered, td.quote(bytes(64))).tcb.status is TcbStatus.UP_TO_DATE  # type: ignore[attr-defined]


def test_revoked_pck_is_refused_through_the_crl(vendor: EmulatedIntelVendor) -> None:
    v2 = replace(vendor, revoked_pck_serials=set())
    m = InsecureEmulatedTdxMachine(v2, cpu=EmulatedIntelCpu(v2, now=NOW))
    raw = m.launch(FIRMWARE).quote(bytes(64))
    v2.revoke_pck(m.cpu.pck_certificate())
    with pytest.raises(VerificationError) as e:
        _verify(v2, raw)
    assert e.value.code == "intel.chain.revoked"


def test_stale_collateral_is_refused(vendor: EmulatedIntelVendor,
                                     machine: InsecureEmulatedTdxMachine) -> None:
    raw = machine.launch(FIRMWARE).quote(bytes(64))
    later = NOW + timedelta(days=60)
    with pytest.raises(VerificationError):
        verify_quote(raw, vendor.collateral("TDX", NOW), now=later, trusted_roots=[vendor.root])


def test_sgx_collateral_is_refused_for_a_td_quote(vendor: EmulatedIntelVendor,
                                                  machine: InsecureEmulatedTdxMachine) -> None:
    raw = machine.launch(FIRMWARE).quote(bytes(64))
    with pytest.raises(VerificationError) as e:
        verify_quote(raw, vendor.collateral("SGX", NOW), now=NOW, trusted_roots=[vendor.root])
    assert e.value.code in ("intel.tcb_info.type", "intel.qe_identity.mismatch")


def test_collateral_directory_loads_with_the_production_loader(
        vendor: EmulatedIntelVendor, machine: InsecureEmulatedTdxMachine,
        tmp_path: Path) -> None:
    vendor.write_collateral(tmp_path, "TDX", NOW)
    col = load_directory(tmp_path)
    assert col.pck_crl is not None and col.root_ca_crl is not None and col.qe_identity
    raw = machine.launch(FIRMWARE).quote(bytes(64))
    v = verify_quote(raw, col, now=NOW, trusted_roots=[vendor.root])
    assert v.tcb is not None and v.tcb.status is TcbStatus.UP_TO_DATE


# -- policy -------------------------------------------------------------------------------------


def test_debug_td_is_rejected_by_the_default_policy(
        vendor: EmulatedIntelVendor, machine: InsecureEmulatedTdxMachine) -> None:
    td = machine.launch(FIRMWARE, debug=True)
    assert td.debug
    with pytest.raises(PolicyRejected) as e:
        verify_intel_evidence(td.quote(bytes(64)), collateral=vendor.collateral("TDX", NOW),
                              now=NOW, trusted_roots=[vendor.root])
    assert "tdx.debug" in [f.code for f in e.value.appraisal.failures]


def test_wrong_mrtd_is_rejected_and_the_right_one_accepted(
        vendor: EmulatedIntelVendor, machine: InsecureEmulatedTdxMachine) -> None:
    td = machine.launch(FIRMWARE)
    raw = td.quote(bytes(64))
    col = vendor.collateral("TDX", NOW)
    ok = verify_intel_evidence(raw, collateral=col, now=NOW, trusted_roots=[vendor.root],
                               policy=TdxPolicy(mrtd={td.mr_td}))
    assert ok.accepted
    with pytest.raises(PolicyRejected):
        verify_intel_evidence(raw, collateral=col, now=NOW, trusted_roots=[vendor.root],
                              policy=TdxPolicy(mrtd={bytes(48)}))


# -- derived keys (the emulated key-service TD) -------------------------------------------------


def test_td_derived_key_table(machine: InsecureEmulatedTdxMachine) -> None:
    owner = hashlib.sha384(b"owner").digest()
    a = machine.launch(FIRMWARE, mr_owner=owner)
    a_again = machine.launch(FIRMWARE, mr_owner=owner)
    new_fw = machine.launch(FIRMWARE[:-1] + b"\x01", mr_owner=owner)
    debug = machine.launch(FIRMWARE, mr_owner=owner, debug=True)
    other_owner = machine.launch(FIRMWARE, mr_owner=hashlib.sha384(b"x").digest())
    # policy, TD, same key as A's?
    table = [("mrtd", a_again, True), ("mrtd", new_fw, False), ("mrtd", debug, False),
             ("mrowner", new_fw, True), ("mrowner", other_owner, False),
             ("mrowner", debug, False)]
    for policy, td, same in table:
        assert (td.derived_key(policy) == a.derived_key(policy)) is same, (policy, td.mr_td)
    before = a.derived_key("mrtd+rtmr")
    a.measure_event(1, b"another kernel")
    assert a.derived_key("mrtd+rtmr") != before
    assert a.derived_key("mrtd", b"ctx1") != a.derived_key("mrtd", b"ctx2")


def test_td_key_service_refuses_a_forged_tdreport(machine: InsecureEmulatedTdxMachine) -> None:
    td = machine.launch(FIRMWARE)
    raw = bytearray(td.tdreport(bytes(64)))
    raw[224] ^= 1
    with pytest.raises(PlatformError):
        machine.key_service.derive(bytes(raw), "mrtd")
    with pytest.raises(PlatformError):
        td.derived_key("sealing-by-magic")


# -- tampered collateral and certification data --------------------------------------------


def test_tampered_emulated_collateral_is_refused(vendor: EmulatedIntelVendor,
                                                 machine: InsecureEmulatedTdxMachine) -> None:
    raw = machine.launch(FIRMWARE).quote(bytes(64))
    col = vendor.collateral("TDX", NOW)
    assert col.tcb_info is not None and col.qe_identity is not None
    other = EmulatedIntelVendor.generate(now=NOW)
    cases = [  # (attack, collateral, code)
        ("OutOfDate level relabelled UpToDate", replace(col, tcb_info=col.tcb_info.replace(
            b'"tcbStatus":"OutOfDate"', b'"tcbStatus":"UpToDate"', 1)),
         "intel.tcb_info.signature"),
        ("QE identity edited", replace(col, qe_identity=col.qe_identity.replace(
            b'"isvprodid":2', b'"isvprodid":3')), "intel.qe_identity.signature"),
        ("TCB Info claimed signed by the PCK CA", replace(
            col, tcb_info_issuer_chain=(vendor.ca,)), "intel.tcb_info.signature"),
        ("TCB Info signed by another vendor", replace(
            col, **{k: getattr(other.collateral("TDX", NOW), k) for k in (
                "tcb_info", "tcb_info_signature", "tcb_info_issuer_chain")}),
         "intel.tcb_info.chain"),
    ]
    for attack, bad, code in cases:
        with pytest.raises(VerificationError) as e:
            verify_quote(raw, bad, now=NOW, trusted_roots=[vendor.root])
        assert e.value.code == code, attack


def test_pck_chain_of_another_cpu_breaks_the_qe_report_signature(
        vendor: EmulatedIntelVendor, machine: InsecureEmulatedTdxMachine) -> None:
    """A host swaps in another platform's PCK chain (e.g. one with a better TCB)."""
    other = EmulatedIntelCpu(vendor, now=NOW)
    q = Quote.from_bytes(machine.launch(FIRMWARE).quote(bytes(64)))
    qe = q.signature_data.qe
    swapped = replace(qe, certification_data=replace(qe.certification_data,
                                                     data=other.pck_chain_pem()))
    forged = replace(q, signature_data=replace(q.signature_data, qe=swapped))
    with pytest.raises(VerificationError) as e:
        _verify(vendor, forged.to_bytes())
    assert e.value.code == "intel.qe_report.signature"


def test_revoked_processor_ca_is_refused(vendor: EmulatedIntelVendor) -> None:
    v2 = replace(vendor, revoked_ca=True)
    m = InsecureEmulatedTdxMachine(v2, cpu=EmulatedIntelCpu(v2, now=NOW))
    with pytest.raises(VerificationError) as e:
        _verify(v2, m.launch(FIRMWARE).quote(bytes(64)))
    assert e.value.code == "intel.chain.revoked"


def test_td_sealing_table(machine: InsecureEmulatedTdxMachine) -> None:
    from veritee.errors import SealingError
    from veritee.platform.emulated.tdx import td_seal, td_unseal

    owner = hashlib.sha384(b"owner").digest()
    a = machine.launch(FIRMWARE, mr_owner=owner)
    new_fw = machine.launch(FIRMWARE[:-1] + b"\x01", mr_owner=owner)
    debug = machine.launch(FIRMWARE, mr_owner=owner, debug=True)
    table = [("mrtd", a, "mrtd", True), ("mrtd", new_fw, "mrtd", False),
             ("mrowner", new_fw, "mrowner", True), ("mrowner", debug, "mrowner", False),
             # a blob sealed under a weaker policy is refused by a reader expecting mrtd
             ("mrowner", new_fw, "mrtd", False)]
    for sealed_as, reader, expects, opens in table:
        blob = td_seal(a, b"TD state", sealed_as)
        if opens:
            assert td_unseal(reader, blob, policy=expects) == b"TD state"
        else:
            with pytest.raises(SealingError):
                td_unseal(reader, blob, policy=expects)
    bad = bytearray(td_seal(a, b"x"))
    bad[-1] ^= 1
    with pytest.raises(SealingError):
        td_unseal(a, bytes(bad))
