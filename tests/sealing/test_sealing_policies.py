"""Who can unseal: the table the issue asks for, one test per row, on the emulated SP."""

from __future__ import annotations

from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.errors import PlatformError, SealingError
from veritee.formats.sevsnp import FirmwareVersion, GuestPolicy, MsgKeyReq, RootKeySelect
from veritee.platform.emulated.measurement import measure, simple_guest_image
from veritee.platform.emulated.snp import (
    EmulatedAmdVendor,
    EmulatedSnpGuest,
    IdBlock,
    InsecureEmulatedSnpMachine,
    sign_id_block,
    vmsa_page,
)
from veritee.sealing import SealingPolicy, inspect, reseal, seal, unseal

IMAGE_A = simple_guest_image(b"A" * 4096 * 2)
IMAGE_B = simple_guest_image(b"B" * 4096 * 2)
SECRET = b"the model decryption key"
ID_KEY = ec.derive_private_key(7, ec.SECP384R1())
OTHER_ID_KEY = ec.derive_private_key(8, ec.SECP384R1())
M = SealingPolicy.measurement()
S5 = SealingPolicy.signer(min_svn=5)


def launch(machine: InsecureEmulatedSnpMachine, image: object = IMAGE_A, *,
           svn: int | None = None, id_key: ec.EllipticCurvePrivateKey = ID_KEY,
           family: bytes = b"F" * 16, image_id: bytes = b"I" * 16) -> EmulatedSnpGuest:
    """Launch ``image``; with ``svn`` an ID block signed by ``id_key`` sets the identity."""
    policy = GuestPolicy(smt=True)
    if svn is None:
        return machine.launch(image, policy=policy)  # type: ignore[arg-type]
    block = IdBlock(ld=measure(image, vmsas=[vmsa_page(0)]),  # type: ignore[arg-type]
                    family_id=family, image_id=image_id, guest_svn=svn, policy=policy)
    return machine.launch(image, policy=policy, id_block=block,  # type: ignore[arg-type]
                          id_auth=sign_id_block(block, id_key))


@pytest.fixture
def machine(vendor: EmulatedAmdVendor) -> InsecureEmulatedSnpMachine:
    return InsecureEmulatedSnpMachine(vendor)


def refused(guest: EmulatedSnpGuest, blob: bytes, expected: SealingPolicy | None = None,
            **kw: object) -> None:
    with pytest.raises(SealingError) as exc:
        unseal(guest, blob, expected or M, **kw)  # type: ignore[arg-type]
    assert str(exc.value) == SealingError.MESSAGE  # one message: no oracle


def test_same_workload_unseals_after_relaunch(machine: InsecureEmulatedSnpMachine) -> None:
    blob = seal(launch(machine), SECRET, SealingPolicy.measurement())
    assert unseal(launch(machine), blob, M) == SECRET


def test_different_measurement_cannot_unseal(machine: InsecureEmulatedSnpMachine) -> None:
    blob = seal(launch(machine), SECRET, SealingPolicy.measurement())
    refused(launch(machine, IMAGE_B), blob)


def test_different_guest_policy_cannot_unseal(machine: InsecureEmulatedSnpMachine) -> None:
    blob = seal(launch(machine), SECRET, SealingPolicy.measurement())
    debug = machine.launch(IMAGE_A, policy=GuestPolicy(smt=True, debug=True))
    refused(debug, blob)


def test_another_chip_cannot_unseal(vendor: EmulatedAmdVendor,
                                    machine: InsecureEmulatedSnpMachine) -> None:
    blob = seal(launch(machine), SECRET, SealingPolicy.measurement())
    refused(launch(InsecureEmulatedSnpMachine(vendor)), blob)


def test_signer_policy_newer_svn_can_unseal(machine: InsecureEmulatedSnpMachine) -> None:
    blob = seal(launch(machine, svn=5), SECRET, SealingPolicy.signer())
    assert inspect(blob).guest_svn == 5
    assert unseal(launch(machine, IMAGE_B, svn=6), blob, S5) == SECRET  # new image, same signer


def test_signer_policy_older_svn_cannot_unseal(machine: InsecureEmulatedSnpMachine) -> None:
    blob = seal(launch(machine, svn=5), SECRET, SealingPolicy.signer())
    refused(launch(machine, svn=4), blob, S5)


def test_signer_policy_other_signer_cannot_unseal(machine: InsecureEmulatedSnpMachine) -> None:
    blob = seal(launch(machine, svn=5), SECRET, SealingPolicy.signer())
    refused(launch(machine, svn=9, id_key=OTHER_ID_KEY), blob, S5)


def test_signer_policy_other_family_cannot_unseal(machine: InsecureEmulatedSnpMachine) -> None:
    blob = seal(launch(machine, svn=5), SECRET, SealingPolicy.signer())
    refused(launch(machine, svn=5, family=b"G" * 16), blob, S5)


def test_signer_policy_needs_an_id_key(machine: InsecureEmulatedSnpMachine) -> None:
    with pytest.raises(PlatformError, match="ID block"):
        seal(launch(machine), SECRET, SealingPolicy.signer())


def test_signer_cannot_seal_above_its_own_svn(machine: InsecureEmulatedSnpMachine) -> None:
    with pytest.raises(PlatformError, match="min_svn"):
        seal(launch(machine, svn=2), SECRET, SealingPolicy.signer(min_svn=3))


def test_signer_min_svn_floor_below_own(machine: InsecureEmulatedSnpMachine) -> None:
    blob = seal(launch(machine, svn=5), SECRET, SealingPolicy.signer(min_svn=3))
    s3 = SealingPolicy.signer(min_svn=3)
    assert unseal(launch(machine, svn=3), blob, s3) == SECRET
    refused(launch(machine, svn=2), blob, s3)


def test_firmware_downgrade_cannot_unseal(machine: InsecureEmulatedSnpMachine) -> None:
    blob = seal(launch(machine), SECRET, SealingPolicy.measurement())
    old = machine.tcb
    machine.update_firmware(replace(old, snp=old.snp - 1), FirmwareVersion(1, 55, 1))
    refused(launch(machine), blob)


def test_firmware_upgrade_can_unseal(machine: InsecureEmulatedSnpMachine) -> None:
    blob = seal(launch(machine), SECRET, SealingPolicy.measurement())
    old = machine.tcb
    machine.update_firmware(replace(old, microcode=old.microcode + 1), commit=False)
    assert unseal(launch(machine), blob, M) == SECRET  # provisional: COMMITTED_TCB is old
    machine.update_firmware(machine.tcb)  # SNP_COMMIT: the default floor is now the new TCB
    refused(launch(machine), blob)
    assert unseal(launch(machine), blob, SealingPolicy.measurement(tcb_floor=old)) == SECRET


def test_without_tcb_binding_key_survives_any_firmware(
        machine: InsecureEmulatedSnpMachine) -> None:
    blob = seal(launch(machine), SECRET, SealingPolicy.measurement(bind_tcb=False))
    old = machine.tcb
    machine.update_firmware(replace(old, snp=old.snp - 1))
    assert unseal(launch(machine), blob, SealingPolicy.measurement(bind_tcb=False)) == SECRET


def test_vm_root_key_does_not_survive_relaunch(machine: InsecureEmulatedSnpMachine) -> None:
    guest = launch(machine)
    policy = replace(SealingPolicy.measurement(), root=RootKeySelect.VMRK)
    blob = seal(guest, SECRET, policy)
    assert unseal(guest, blob, policy) == SECRET
    refused(launch(machine), blob, policy)


def test_reseal_raises_the_svn_floor(machine: InsecureEmulatedSnpMachine) -> None:
    blob = seal(launch(machine, svn=3), SECRET, SealingPolicy.signer())
    upgraded = launch(machine, svn=4)
    blob2 = reseal(upgraded, blob, SealingPolicy.signer(),
                   expected=SealingPolicy.signer(min_svn=3))
    assert inspect(blob2).guest_svn == 4
    assert unseal(upgraded, blob2, SealingPolicy.signer()) == SECRET
    refused(launch(machine, svn=3), blob2, SealingPolicy.signer(min_svn=3))


def test_aad_is_bound(machine: InsecureEmulatedSnpMachine) -> None:
    guest = launch(machine)
    blob = seal(guest, SECRET, SealingPolicy.measurement(), aad=b"db/users")
    assert unseal(guest, blob, M, aad=b"db/users") == SECRET
    refused(guest, blob, aad=b"db/admins")


def test_lower_vmpl_key_not_derivable(machine: InsecureEmulatedSnpMachine) -> None:
    guest = launch(machine)
    guest.vmpl = 1
    with pytest.raises(PlatformError, match="VMPL"):
        guest.derived_key(MsgKeyReq(vmpl=0))
