"""Property (issue 16): for any key request weaker than the reader's expected policy in any
field, unseal refuses -- even though the reader's own firmware derives that weaker key, so
the blob authenticates perfectly.

Weakenings: a required GUEST_FIELD_SELECT bit dropped, GUEST_SVN below the floor, a TCB
component below the floor, another VMPL, another root key, another policy-kind label.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.errors import SealingError
from veritee.formats.sealed import SealKind, SealPolicyKind
from veritee.formats.sevsnp import (
    AttestationReport,
    GuestFieldSelect,
    GuestPolicy,
    MsgKeyReq,
    RootKeySelect,
    TcbVersion,
)
from veritee.platform.emulated.measurement import measure, simple_guest_image
from veritee.platform.emulated.snp import (
    EmulatedAmdVendor,
    EmulatedSnpGuest,
    IdBlock,
    InsecureEmulatedSnpMachine,
    sign_id_block,
    vmsa_page,
)
from veritee.sealing import SealingPolicy, unseal
from veritee.sealing._core import data_key, header_for

IMAGE = simple_guest_image(b"P" * 4096 * 2)
SVN = 5
EVIL = b"attacker-chosen"


@pytest.fixture(scope="module")
def victim(vendor: EmulatedAmdVendor) -> tuple[EmulatedSnpGuest, AttestationReport]:
    machine = InsecureEmulatedSnpMachine(vendor)
    policy = GuestPolicy(smt=True)
    block = IdBlock(ld=measure(IMAGE, vmsas=[vmsa_page(0)]), family_id=b"F" * 16,
                    image_id=b"I" * 16, guest_svn=SVN, policy=policy)
    guest = machine.launch(IMAGE, policy=policy, id_block=block,
                           id_auth=sign_id_block(block, ec.derive_private_key(7, ec.SECP384R1())))
    return guest, AttestationReport.from_bytes(guest.attestation_report(bytes(64)))


def blob_for(guest: EmulatedSnpGuest, request: MsgKeyReq, kind: SealPolicyKind) -> bytes:
    header = header_for(request, kind, SealKind.BLOB, salt=os.urandom(32),
                        nonce=os.urandom(12))
    raw = header.to_bytes()
    key = data_key(guest.derived_key(request), header, b"veritee-seal-blob-v1")
    return raw + AESGCM(key).encrypt(header.nonce, EVIL, raw)


policies = st.one_of(
    st.builds(SealingPolicy.measurement, bind_tcb=st.booleans(),
              bind_guest_policy=st.booleans()),
    st.builds(SealingPolicy.signer, min_svn=st.integers(1, SVN), bind_tcb=st.booleans(),
              bind_image_id=st.booleans()),
)
WEAKENINGS = ("drop_field", "svn", "tcb", "vmpl", "root", "kind")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expected=policies, data=st.data())
def test_any_weaker_key_request_is_refused(
        victim: tuple[EmulatedSnpGuest, AttestationReport], expected: SealingPolicy,
        data: st.DataObject) -> None:
    guest, own = victim
    strong = expected.key_request(own)
    kind = expected.kind
    # The strong request itself is accepted: the refusals below are the weakening's doing.
    assert unseal(guest, blob_for(guest, strong, kind), expected) == EVIL

    applicable = [w for w in WEAKENINGS
                  if (w != "svn" or (expected.kind is SealPolicyKind.SIGNER
                                     and strong.guest_svn > 0))
                  and (w != "tcb" or expected.bind_tcb)]
    chosen = data.draw(st.sets(st.sampled_from(applicable), min_size=1), label="weakenings")
    weak = strong
    if "drop_field" in chosen:
        required = [b for b in GuestFieldSelect if b & expected.required_fields()]
        bit = data.draw(st.sampled_from(required), label="dropped")
        weak = replace(weak, guest_field_select=weak.guest_field_select & ~bit)
    if "svn" in chosen:
        weak = replace(weak, guest_svn=data.draw(st.integers(0, strong.guest_svn - 1),
                                                 label="svn"))
    if "tcb" in chosen:
        tcb = TcbVersion.from_u64(strong.tcb_version, own.tcb_layout)
        lowerable = [k for k, v in tcb.components().items() if v > 0]
        name = data.draw(st.sampled_from(lowerable), label="component")
        lower = data.draw(st.integers(0, getattr(tcb, name) - 1), label="to")
        weak = replace(weak, tcb_version=replace(tcb, **{name: lower}).to_u64())
    if "vmpl" in chosen:
        weak = replace(weak, vmpl=data.draw(st.integers(1, 3), label="vmpl"))
    if "root" in chosen:
        weak = replace(weak, root_key_select=RootKeySelect.VMRK)
    if "kind" in chosen:
        kind = (SealPolicyKind.SIGNER if kind is SealPolicyKind.MEASUREMENT
                else SealPolicyKind.MEASUREMENT)
    forged = blob_for(guest, weak, kind)  # the victim's own firmware derives this key
    with pytest.raises(SealingError) as exc:
        unseal(guest, forged, expected)
    assert str(exc.value) == SealingError.MESSAGE
