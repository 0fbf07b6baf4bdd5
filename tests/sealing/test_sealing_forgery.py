"""Issue 16, finding 1: unseal enforces the policy the *reader* expects, not the header's.

Each attacker here can derive a key the firmware really gives it (so the forged blob
authenticates perfectly); only the reader's policy check can refuse it.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veritee.errors import SealingError
from veritee.formats.sealed import SealKind, SealPolicyKind
from veritee.formats.sevsnp import AttestationReport, GuestFieldSelect, GuestPolicy, MsgKeyReq
from veritee.platform.emulated.measurement import measure, simple_guest_image
from veritee.platform.emulated.snp import (
    EmulatedAmdVendor,
    EmulatedSnpGuest,
    IdBlock,
    InsecureEmulatedSnpMachine,
    sign_id_block,
    vmsa_page,
)
from veritee.sealing import SealingPolicy, seal, unseal
from veritee.sealing._core import KeySource, data_key, header_for

VICTIM_IMAGE = simple_guest_image(b"V" * 4096 * 2)
ATTACKER_IMAGE = simple_guest_image(b"A" * 4096 * 2)
ID_KEY = ec.derive_private_key(7, ec.SECP384R1())
EVIL = b"attacker-chosen state"
BLOB_LABEL = b"veritee-seal-blob-v1"


def forge_blob(attacker: KeySource, data: bytes, request: MsgKeyReq, *,
               kind: SealPolicyKind = SealPolicyKind.MEASUREMENT, aad: bytes = b"",
               counter_id: bytes = bytes(16), counter_value: int = 0) -> bytes:
    """A blob sealed with ``attacker``'s key for ``request``, labelled policy ``kind``."""
    header = header_for(request, kind, SealKind.BLOB, salt=os.urandom(32),
                        nonce=os.urandom(12), counter_id=counter_id,
                        counter_value=counter_value)
    key = data_key(attacker.derived_key(request), header, BLOB_LABEL)
    raw = header.to_bytes()
    return raw + AESGCM(key).encrypt(header.nonce, data, raw + aad)


def open_as(victim: EmulatedSnpGuest, blob: bytes, expected: SealingPolicy) -> bytes:
    """The victim opens ``blob``, stating the policy it expects."""
    return unseal(victim, blob, expected)


def refused(victim: EmulatedSnpGuest, blob: bytes, expected: SealingPolicy) -> None:
    with pytest.raises(SealingError) as exc:
        open_as(victim, blob, expected)
    assert str(exc.value) == SealingError.MESSAGE  # one message: no oracle


def signed(machine: InsecureEmulatedSnpMachine, svn: int) -> EmulatedSnpGuest:
    policy = GuestPolicy(smt=True)
    block = IdBlock(ld=measure(VICTIM_IMAGE, vmsas=[vmsa_page(0)]), family_id=b"F" * 16,
                    image_id=b"I" * 16, guest_svn=svn, policy=policy)
    return machine.launch(VICTIM_IMAGE, policy=policy, id_block=block,
                          id_auth=sign_id_block(block, ID_KEY))


@pytest.fixture
def machine(vendor: EmulatedAmdVendor) -> InsecureEmulatedSnpMachine:
    return InsecureEmulatedSnpMachine(vendor)


def test_unsigned_guest_cannot_forge_measurement_sealed_blob(
        machine: InsecureEmulatedSnpMachine) -> None:
    victim = machine.launch(VICTIM_IMAGE)
    attacker = machine.launch(ATTACKER_IMAGE)  # any other guest the host launches
    genuine = seal(victim, b"victim state", SealingPolicy.measurement())
    assert open_as(victim, genuine, SealingPolicy.measurement()) == b"victim state"
    # Labelled "measurement", but selecting no field: every unsigned guest derives this key.
    weak = MsgKeyReq(guest_field_select=GuestFieldSelect(0), vmpl=0)
    refused(victim, forge_blob(attacker, EVIL, weak), SealingPolicy.measurement())
    # Only the policy bit dropped, the TCB kept: still the attacker's key.
    tcb_only = MsgKeyReq(guest_field_select=GuestFieldSelect.TCB_VERSION, vmpl=0,
                         tcb_version=machine.tcb.to_u64())
    refused(victim, forge_blob(attacker, EVIL, tcb_only), SealingPolicy.measurement())


def test_older_svn_release_cannot_forge_signer_sealed_state(
        machine: InsecureEmulatedSnpMachine) -> None:
    release3, release1 = signed(machine, 3), signed(machine, 1)
    genuine = seal(release3, b"state v3", SealingPolicy.signer())
    assert open_as(release3, genuine, SealingPolicy.signer(min_svn=3)) == b"state v3"
    # The old, vulnerable release seals to its own SVN (the firmware allows it).
    forged = seal(release1, EVIL, SealingPolicy.signer())
    refused(release3, forged, SealingPolicy.signer(min_svn=3))
    refused(release3, forged, SealingPolicy.signer())  # default floor: the reader's own SVN


def test_downgraded_firmware_cannot_forge_tcb_bound_blob(
        machine: InsecureEmulatedSnpMachine) -> None:
    victim = machine.launch(VICTIM_IMAGE)
    good = machine.tcb
    # The host installs old firmware (not committed) whose flaws leak keys at its TCB ...
    machine.update_firmware(replace(good, snp=good.snp - 1), commit=False)
    forged = seal(victim, EVIL, SealingPolicy.measurement())
    machine.update_firmware(good)  # ... and restores the good firmware
    refused(victim, forged, SealingPolicy.measurement())


def test_higher_vmpl_cannot_forge_vmpl0_sealed_blob(machine: InsecureEmulatedSnpMachine) -> None:
    victim = machine.launch(VICTIM_IMAGE)
    # Less privileged code in the same VM (VMPL3) derives keys for VMPL3.
    request = SealingPolicy.measurement().key_request(
        replace(_own(victim), vmpl=3))  # the same fields, at VMPL3
    refused(victim, forge_blob(victim, EVIL, request), SealingPolicy.measurement())


def test_signer_blob_refused_where_measurement_expected(
        machine: InsecureEmulatedSnpMachine) -> None:
    victim = signed(machine, 3)
    blob = seal(victim, EVIL, SealingPolicy.signer())
    refused(victim, blob, SealingPolicy.measurement())


def test_unsigned_reader_refuses_signer_blobs(machine: InsecureEmulatedSnpMachine) -> None:
    victim, attacker = machine.launch(VICTIM_IMAGE), machine.launch(ATTACKER_IMAGE)
    # Every unsigned guest shares the all-zero "signer": such a blob proves nothing.
    sel = (GuestFieldSelect.FAMILY_ID | GuestFieldSelect.IMAGE_ID | GuestFieldSelect.GUEST_SVN
           | GuestFieldSelect.GUEST_POLICY | GuestFieldSelect.TCB_VERSION)
    request = MsgKeyReq(guest_field_select=sel, vmpl=0, tcb_version=machine.tcb.to_u64())
    blob = forge_blob(attacker, EVIL, request, kind=SealPolicyKind.SIGNER)
    refused(victim, blob, SealingPolicy.signer(min_svn=0))


def _own(guest: EmulatedSnpGuest) -> AttestationReport:
    return AttestationReport.from_bytes(guest.attestation_report(bytes(64)))
