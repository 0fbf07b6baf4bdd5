"""The emulated SEV-SNP machine produces evidence the production verifier accepts."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from veritee.attest import verify_evidence, verify_only
from veritee.errors import PlatformError, PolicyRejected, VerificationError
from veritee.formats.sevsnp import (
    AttestationReport,
    CertTable,
    FirmwareVersion,
    GuestPolicy,
    Product,
    TcbVersion,
)
from veritee.platform.emulated.measurement import measure, simple_guest_image
from veritee.platform.emulated.snp import (
    EmulatedAmdVendor,
    IdBlock,
    InsecureEmulatedSnpMachine,
    ecdsa_p384_public_key_digest,
    sign_id_block,
    vmsa_page,
)
from veritee.policy.sevsnp import SevSnpPolicy

NOW = datetime(2026, 6, 1, tzinfo=UTC)  # the vendor fixtures' certificates cover it

FIRMWARE = bytes(range(256)) * 16 * 4  # 4 pages


def _machine(vendor: EmulatedAmdVendor, **kw: object) -> InsecureEmulatedSnpMachine:
    return InsecureEmulatedSnpMachine(vendor, clock=NOW, **kw)  # type: ignore[arg-type]


def test_report_verifies_with_explicit_emulated_root(milan_vendor: EmulatedAmdVendor) -> None:
    m = _machine(milan_vendor)
    guest = m.launch(simple_guest_image(FIRMWARE))
    data = bytes(range(64))
    raw = guest.attestation_report(data)
    report = AttestationReport.from_bytes(raw)
    assert report.report_data == data
    assert report.measurement == guest.measurement
    assert report.chip_id == m.chip_id
    assert report.vmpl == 0 and report.version == 3
    assert report.cpuid is not None and report.cpuid.product is Product.MILAN
    verified = verify_only(raw, collateral=m.certificates(), anchors=m.anchors(), now=NOW)
    assert verified.product is Product.MILAN
    assert verified.report == report


def test_emulated_root_is_not_trusted_by_default(milan_vendor: EmulatedAmdVendor) -> None:
    m = _machine(milan_vendor)
    raw = m.launch(simple_guest_image(FIRMWARE)).attestation_report(bytes(64))
    with pytest.raises(VerificationError):
        verify_only(raw, collateral=m.certificates(), now=NOW)


def test_measurement_matches_independent_implementation(milan_vendor: EmulatedAmdVendor) -> None:
    """Launch digest equals sev-snp-measure's for the same pages (an independent oracle)."""
    gctx_mod = pytest.importorskip("sevsnpmeasure.gctx")
    image = simple_guest_image(FIRMWARE)
    guest = _machine(milan_vendor).launch(image, vcpus=3)
    oracle = gctx_mod.GCTX()
    from veritee.platform.emulated.measurement import PageType

    for region in image.regions:
        if region.page_type is PageType.NORMAL:
            assert region.data is not None
            oracle.update_normal_pages(region.gpa, region.data)
        elif region.page_type is PageType.ZERO:
            oracle.update_zero_pages(region.gpa, region.length)
        elif region.page_type is PageType.SECRETS:
            oracle.update_secrets_page(region.gpa)
        elif region.page_type is PageType.CPUID:
            oracle.update_cpuid_page(region.gpa)
        elif region.page_type is PageType.UNMEASURED:
            oracle.update_unmeasured_pages(region.gpa, region.length)
        else:  # pragma: no cover - simple_guest_image has no other types
            raise AssertionError(region.page_type)
    for vcpu in range(3):
        oracle.update_vmsa_page(vmsa_page(vcpu))
    assert guest.measurement == oracle.ld()


def test_same_image_same_measurement_on_another_chip(milan_vendor: EmulatedAmdVendor) -> None:
    a = _machine(milan_vendor).launch(simple_guest_image(FIRMWARE))
    b = _machine(milan_vendor).launch(simple_guest_image(FIRMWARE))
    assert a.measurement == b.measurement
    assert a.machine.chip_id != b.machine.chip_id


def test_measurement_depends_on_every_page_and_vcpu_count(
        milan_vendor: EmulatedAmdVendor) -> None:
    m = _machine(milan_vendor)
    base = m.launch(simple_guest_image(FIRMWARE)).measurement
    flipped = bytearray(FIRMWARE)
    flipped[-1] ^= 1
    assert m.launch(simple_guest_image(bytes(flipped))).measurement != base
    assert m.launch(simple_guest_image(FIRMWARE), vcpus=2).measurement != base
    assert base == measure(simple_guest_image(FIRMWARE), vmsas=[vmsa_page(0)])


def test_vcek_is_deterministic_in_chip_secret_and_tcb(milan_vendor: EmulatedAmdVendor) -> None:
    secret = bytes(32)
    a = _machine(milan_vendor, chip_secret=secret)
    b = _machine(milan_vendor, chip_secret=secret)
    c = _machine(milan_vendor, chip_secret=b"\x01" * 32)
    pub = lambda m: m.vcek_certificate().public_key().public_bytes(  # noqa: E731
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert pub(a) == pub(b)
    assert a.chip_id == b.chip_id
    assert pub(a) != pub(c) and a.chip_id != c.chip_id
    before = pub(a)
    a.update_firmware(replace(a.tcb, snp=a.tcb.snp + 1), FirmwareVersion(1, 55, 41))
    assert pub(a) != before, "a TCB change must yield a different VCEK"


def test_firmware_update_old_vcek_no_longer_verifies(milan_vendor: EmulatedAmdVendor) -> None:
    m = _machine(milan_vendor)
    old_certs = m.certificates()
    guest = m.launch(simple_guest_image(FIRMWARE))
    m.update_firmware(replace(m.tcb, microcode=m.tcb.microcode + 1))
    raw = guest.attestation_report(bytes(64))
    with pytest.raises(VerificationError):
        verify_only(raw, collateral=old_certs, anchors=m.anchors(), now=NOW)
    verified = verify_only(raw, collateral=m.certificates(), anchors=m.anchors(), now=NOW)
    assert verified.report.launch_tcb != verified.report.reported_tcb


def test_provisional_firmware_keeps_committed_tcb(milan_vendor: EmulatedAmdVendor) -> None:
    m = _machine(milan_vendor)
    old = m.tcb
    m.update_firmware(replace(old, snp=old.snp + 1), commit=False)
    report = AttestationReport.from_bytes(
        m.launch(simple_guest_image(FIRMWARE)).attestation_report(bytes(64)))
    assert report.committed_tcb == old and report.current_tcb != old


def test_turin_layout_and_hwid(turin_vendor: EmulatedAmdVendor) -> None:
    m = _machine(turin_vendor)
    raw = m.launch(simple_guest_image(FIRMWARE)).attestation_report(bytes(64))
    report = AttestationReport.from_bytes(raw)
    assert report.reported_tcb.fmc is not None
    assert report.chip_id[8:] == bytes(56)
    verified = verify_only(raw, collateral=m.certificates(), anchors=m.anchors(), now=NOW)
    assert verified.product is Product.TURIN


@pytest.mark.parametrize("version", [2, 3, 5])
def test_every_report_version_verifies(milan_vendor: EmulatedAmdVendor, version: int) -> None:
    m = _machine(milan_vendor, report_version=version)
    raw = m.launch(simple_guest_image(FIRMWARE)).attestation_report(bytes(64))
    assert AttestationReport.from_bytes(raw).version == version
    verify_only(raw, collateral=m.certificates(), anchors=m.anchors(), now=NOW)


def test_guest_cannot_request_more_privileged_vmpl(milan_vendor: EmulatedAmdVendor) -> None:
    guest = _machine(milan_vendor).launch(simple_guest_image(FIRMWARE))
    guest.vmpl = 2
    with pytest.raises(PlatformError, match="VMPL"):
        guest.attestation_report(bytes(64), vmpl=0)
    assert AttestationReport.from_bytes(guest.attestation_report(bytes(64), vmpl=3)).vmpl == 3


def test_extended_report_cert_table_is_enough_collateral(
        milan_vendor: EmulatedAmdVendor) -> None:
    m = _machine(milan_vendor)
    report, table = m.launch(simple_guest_image(FIRMWARE)).extended_report(bytes(64))
    assert {e.kind for e in CertTable.from_bytes(table).entries} == {"VCEK", "ASK", "ARK"}
    verify_only(report, cert_table=table, anchors=m.anchors(), now=NOW)


def test_id_block_sets_identity_fields(milan_vendor: EmulatedAmdVendor) -> None:
    m = _machine(milan_vendor)
    image = simple_guest_image(FIRMWARE)
    ld = measure(image, vmsas=[vmsa_page(0)])
    policy = GuestPolicy(smt=True)
    block = IdBlock(ld=ld, family_id=b"F" * 16, image_id=b"I" * 16, guest_svn=7, policy=policy)
    id_key = ec.generate_private_key(ec.SECP384R1())
    author = ec.generate_private_key(ec.SECP384R1())
    guest = m.launch(image, policy=policy, id_block=block,
                     id_auth=sign_id_block(block, id_key, author))
    report = AttestationReport.from_bytes(guest.attestation_report(bytes(64)))
    assert report.guest_svn == 7
    assert report.family_id == b"F" * 16 and report.image_id == b"I" * 16
    assert report.id_key_digest == ecdsa_p384_public_key_digest(id_key.public_key())
    assert report.author_key_digest == ecdsa_p384_public_key_digest(author.public_key())
    assert report.signer_info.author_key_en


def test_id_block_with_wrong_digest_refuses_launch(milan_vendor: EmulatedAmdVendor) -> None:
    m = _machine(milan_vendor)
    block = IdBlock(ld=hashlib.sha384(b"other image").digest(), policy=GuestPolicy(smt=True))
    auth = sign_id_block(block, ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(PlatformError, match="digest"):
        m.launch(simple_guest_image(FIRMWARE), policy=GuestPolicy(smt=True), id_block=block,
                 id_auth=auth)


def test_id_block_with_forged_signature_refuses_launch(milan_vendor: EmulatedAmdVendor) -> None:
    m = _machine(milan_vendor)
    image = simple_guest_image(FIRMWARE)
    policy = GuestPolicy(smt=True)
    block = IdBlock(ld=measure(image, vmsas=[vmsa_page(0)]), policy=policy)
    auth = sign_id_block(block, ec.generate_private_key(ec.SECP384R1()))
    forged = replace(auth, id_key=ec.generate_private_key(ec.SECP384R1()).public_key())
    with pytest.raises(PlatformError, match="authentication"):
        m.launch(image, policy=policy, id_block=block, id_auth=forged)


def test_debug_guest_rejected_by_default_policy(milan_vendor: EmulatedAmdVendor) -> None:
    m = _machine(milan_vendor)
    guest = m.launch(simple_guest_image(FIRMWARE), policy=GuestPolicy(smt=True, debug=True))
    raw = guest.attestation_report(bytes(64))
    with pytest.raises(PolicyRejected) as exc:
        verify_evidence(raw, policy=SevSnpPolicy(), collateral=m.certificates(),
                        anchors=m.anchors(), now=NOW)
    assert "sevsnp.policy.debug" in exc.value.appraisal.codes()


def test_tcb_layout_must_fit_product(milan_vendor: EmulatedAmdVendor) -> None:
    with pytest.raises(PlatformError):
        _machine(milan_vendor, tcb=TcbVersion(fmc=1, bootloader=1, tee=1, snp=1, microcode=1))
