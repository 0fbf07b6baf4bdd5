"""PCR-policy sealing, NV counters and reboots on the swtpm platform (a real TPM 2.0).

Each TPM here is copied from one manufactured state, so every test gets its own TPM (own NV,
own seeds: the same seeds as its siblings, which is why "another TPM" below is a second,
separately manufactured one).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.errors import PlatformError, SealingError
from veritee.formats.eventlog import EventLog, EventType
from veritee.formats.tpm import HashAlg
from veritee.platform.tpm import (
    BootEvent,
    InsecureSwtpmPlatform,
    default_boot_chain,
    encode_event_log,
    policy_pcr_digest,
    swtpm_unavailable_reason,
)
from veritee.sealing import MonotonicCounters

REASON = swtpm_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

SEALED_PCRS = {HashAlg.SHA256: (0, 4, 7, 8, 9)}


@pytest.fixture(scope="module")
def template() -> Iterator[Path]:
    """One manufactured swtpm state (EKs, EK certificates, CA), copied per test."""
    root = Path(tempfile.mkdtemp(prefix="veritee-swtpm-tpl-"))
    InsecureSwtpmPlatform.open(root / "state").close()
    yield root / "state"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def tpm(template: Path, tmp_path: Path) -> Iterator[InsecureSwtpmPlatform]:
    state = tmp_path / "tpm"
    shutil.copytree(template, state)
    platform = InsecureSwtpmPlatform.open(state)
    yield platform
    platform.close()


# -- the sealing table (docs/tpm.md): what may change and still unseal ----------------------
def test_unseal_on_the_same_boot(tpm: InsecureSwtpmPlatform) -> None:
    blob = tpm.seal(b"db password", SEALED_PCRS)
    assert tpm.unseal(blob) == b"db password"


def test_unseal_after_a_reboot_into_the_same_chain(tpm: InsecureSwtpmPlatform) -> None:
    blob = tpm.seal(b"db password", SEALED_PCRS)
    tpm.reboot()
    assert tpm.unseal(blob) == b"db password"


def test_unseal_refused_after_a_pcr_is_extended(tpm: InsecureSwtpmPlatform) -> None:
    blob = tpm.seal(b"db password", SEALED_PCRS)
    tpm.extend(BootEvent(9, EventType.EV_IPL, b"/boot/initrd-of-an-attacker\0"))
    with pytest.raises(SealingError):
        tpm.unseal(blob)


def test_unseal_refused_after_booting_another_kernel(tpm: InsecureSwtpmPlatform) -> None:
    blob = tpm.seal(b"db password", SEALED_PCRS)
    tpm.reboot(default_boot_chain(kernel=b"a kernel with a backdoor"))
    with pytest.raises(SealingError):
        tpm.unseal(blob)


def test_unseal_refused_with_secure_boot_off(tpm: InsecureSwtpmPlatform) -> None:
    blob = tpm.seal(b"db password", SEALED_PCRS)
    tpm.reboot(default_boot_chain(secure_boot=False))
    with pytest.raises(SealingError):
        tpm.unseal(blob)


def test_unseal_allowed_when_only_an_unsealed_pcr_changes(tpm: InsecureSwtpmPlatform) -> None:
    blob = tpm.seal(b"db password", {HashAlg.SHA256: (0, 7)})
    tpm.reboot(default_boot_chain(cmdline=b"console=ttyS0 ro quiet"))  # PCR 8 only
    assert tpm.unseal(blob) == b"db password"


def test_sealed_data_of_any_size_roundtrips(tpm: InsecureSwtpmPlatform) -> None:
    data = bytes(range(256)) * 4096
    assert tpm.unseal(tpm.seal(data, SEALED_PCRS)) == data


def test_software_policy_digest_equals_the_tpm_trial_session(tpm: InsecureSwtpmPlatform
                                                            ) -> None:
    import tpm2_pytss as tss

    t, c = tss.types, tss.constants
    values = tpm.pcr_values(SEALED_PCRS)
    esys = tpm.esys
    session = esys.start_auth_session(tss.ESYS_TR.NONE, tss.ESYS_TR.NONE, c.TPM2_SE.TRIAL,
                                      t.TPMT_SYM_DEF(algorithm=c.TPM2_ALG.NULL),
                                      c.TPM2_ALG.SHA256)
    try:
        esys.policy_pcr(session, t.TPM2B_DIGEST(),
                        t.TPML_PCR_SELECTION.parse("sha256:0,4,7,8,9"))
        trial = bytes(esys.policy_get_digest(session))
    finally:
        esys.flush_context(session)
    assert policy_pcr_digest(values) == trial


def test_seal_to_a_predicted_boot_opens_only_after_the_update(tpm: InsecureSwtpmPlatform
                                                             ) -> None:
    # An update seals its secret to the PCRs the *next* boot will have, replayed from the
    # event log that boot will write; the current boot cannot open it, the updated one can.
    new_chain = default_boot_chain(kernel=b"veritee demo kernel 2")
    predicted = EventLog.from_bytes(encode_event_log([HashAlg.SHA256], new_chain))
    replayed = predicted.replay(HashAlg.SHA256)
    expected = {HashAlg.SHA256: {i: replayed[i] for i in (0, 4, 7)}}
    blob = tpm.seal(b"next release key", expected=expected)
    with pytest.raises(SealingError):
        tpm.unseal(blob)
    tpm.reboot(new_chain)
    assert tpm.unseal(blob) == b"next release key"


def test_sealed_blob_with_other_associated_data_is_refused(tpm: InsecureSwtpmPlatform) -> None:
    blob = tpm.seal(b"x", SEALED_PCRS, aad=b"volume 1")
    assert tpm.unseal(blob, aad=b"volume 1") == b"x"
    with pytest.raises(SealingError):
        tpm.unseal(blob, aad=b"volume 2")


@pytest.mark.parametrize("where", ["magic", "selection", "public", "private", "nonce",
                                   "ciphertext", "tag", "truncated", "empty"])
def test_tampered_sealed_blob_is_refused_with_one_error(tpm: InsecureSwtpmPlatform,
                                                        where: str) -> None:
    blob = bytearray(tpm.seal(b"db password", SEALED_PCRS))
    sel_len = int.from_bytes(blob[8:10], "big")
    pub_at = 10 + sel_len
    pub_len = int.from_bytes(blob[pub_at:pub_at + 2], "big")
    priv_at = pub_at + 2 + pub_len
    priv_len = int.from_bytes(blob[priv_at:priv_at + 2], "big")
    nonce_at = priv_at + 2 + priv_len
    at = {"magic": 0, "selection": 10 + 1 + 4 + 2, "public": pub_at + 2 + 8,
          "private": priv_at + 2 + 40, "nonce": nonce_at, "ciphertext": nonce_at + 12,
          "tag": len(blob) - 1}
    if where == "truncated":
        blob = blob[:nonce_at + 12]
    elif where == "empty":
        blob = bytearray()
    else:
        blob[at[where]] ^= 0x01
    with pytest.raises(SealingError) as err:
        tpm.unseal(bytes(blob))
    assert str(err.value) == str(SealingError())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_the_magic_only_ever_raise_sealing_error(
        tpm: InsecureSwtpmPlatform, tail: bytes) -> None:
    with pytest.raises(SealingError):
        tpm.unseal(b"VTPMSEAL" + tail)


def test_sealed_blob_from_another_tpm_is_refused(tpm: InsecureSwtpmPlatform,
                                                 tmp_path: Path) -> None:
    blob = tpm.seal(b"db password", SEALED_PCRS)
    other = InsecureSwtpmPlatform.open(tmp_path / "another-tpm")  # its own seeds
    try:
        assert other.pcr_values(SEALED_PCRS) == tpm.pcr_values(SEALED_PCRS)  # same boot
        with pytest.raises(SealingError):
            other.unseal(blob)
    finally:
        other.close()


# -- derived keys ------------------------------------------------------------------------------
def test_derived_key_is_stable_across_reboots_and_separated_by_context(
        tpm: InsecureSwtpmPlatform) -> None:
    a = tpm.derive_key(b"disk encryption")
    assert len(a) == 32 and tpm.derive_key(b"disk encryption") == a
    assert tpm.derive_key(b"tls identity") != a
    tpm.reboot()
    assert tpm.derive_key(b"disk encryption") == a


def test_pcr_bound_derived_key_is_another_key_in_another_boot_state(
        tpm: InsecureSwtpmPlatform) -> None:
    bound = tpm.derive_key(b"disk encryption", pcrs=SEALED_PCRS)
    assert bound != tpm.derive_key(b"disk encryption")
    assert tpm.derive_key(b"disk encryption", pcrs=SEALED_PCRS) == bound
    tpm.reboot(default_boot_chain(kernel=b"a kernel with a backdoor"))
    # Another boot state: another template, so another key - never the sealed-state one.
    assert tpm.derive_key(b"disk encryption", pcrs=SEALED_PCRS) != bound
    tpm.reboot()
    assert tpm.derive_key(b"disk encryption", pcrs=SEALED_PCRS) == bound


def test_derived_key_from_another_tpm_differs(tpm: InsecureSwtpmPlatform, tmp_path: Path
                                             ) -> None:
    other = InsecureSwtpmPlatform.open(tmp_path / "another-tpm")
    try:
        assert other.derive_key(b"disk encryption") != tpm.derive_key(b"disk encryption")
    finally:
        other.close()


# -- NV counters: rollback protection ----------------------------------------------------------
def test_tpm_is_a_monotonic_counter_store(tpm: InsecureSwtpmPlatform) -> None:
    assert isinstance(tpm, MonotonicCounters)
    cid = tpm.counter_create()
    assert len(cid) == 16 and tpm.counter_read(cid) == 0
    assert tpm.counter_advance(cid, 3) == 3
    assert tpm.counter_advance(cid, 1) == 3  # never lowered
    second = tpm.counter_create()  # the TPM starts it at the highest count: shown as 0
    assert tpm.counter_read(second) == 0 and tpm.counter_read(cid) == 3


def test_counter_survives_a_reboot_and_cannot_be_rolled_back(tpm: InsecureSwtpmPlatform
                                                            ) -> None:
    cid = tpm.counter_create()
    tpm.counter_advance(cid, 5)
    tpm.reboot()
    assert tpm.counter_read(cid) == 5


def _pair_id(hi_off: int, lo_off: int, hi_base: int = 0, lo_base: int = 0) -> bytes:
    """A counter-pair id: "V2", two u24 offsets from NV index 0x01500000, two u32 bases."""
    return (b"V2" + hi_off.to_bytes(3, "big") + lo_off.to_bytes(3, "big")
            + hi_base.to_bytes(4, "big") + lo_base.to_bytes(4, "big"))


def test_counter_id_that_is_not_a_tpm_counter_is_refused(tpm: InsecureSwtpmPlatform) -> None:
    with pytest.raises(PlatformError):
        tpm.counter_read(bytes(16))
    with pytest.raises(PlatformError):  # the single-counter id format of before: refused
        tpm.counter_read(b"VTPM" + (0x01C00002).to_bytes(4, "big") + bytes(8))
    with pytest.raises(PlatformError):  # an offset one past the owner range 0x015xxxxx
        tpm.counter_read(_pair_id(0x100000, 1))
    with pytest.raises(PlatformError):  # both halves on one index: not two counters
        tpm.counter_read(_pair_id(7, 7))


def test_counter_that_does_not_exist_is_a_platform_error(tpm: InsecureSwtpmPlatform) -> None:
    with pytest.raises(PlatformError):
        tpm.counter_read(_pair_id(0xFFFFE, 0xFFFFD))


def test_tpm_counters_protect_veritee_sealed_blobs_from_rollback(
        tpm: InsecureSwtpmPlatform) -> None:
    # The TPM's NV counters behind veritee.sealing's rollback check (key source: an emulated
    # SNP guest; the counter store: this TPM).
    from veritee.platform.emulated.measurement import simple_guest_image
    from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine
    from veritee.sealing import SealingPolicy, inspect, seal, unseal

    machine = InsecureEmulatedSnpMachine.create(key_size=2048)
    guest = machine.launch(simple_guest_image(b"K" * 4096))
    v1 = seal(guest, b"balance=100", SealingPolicy.measurement(), counters=tpm)
    cid = inspect(v1).counter_id
    v2 = seal(guest, b"balance=0", SealingPolicy.measurement(), counters=tpm, counter_id=cid)
    policy = SealingPolicy.measurement()
    assert unseal(guest, v2, policy, counters=tpm) == b"balance=0"
    with pytest.raises(SealingError):
        unseal(guest, v1, policy, counters=tpm)


class _CountingIncrements:
    """Wraps the TPM's TPM2_NV_Increment: counts the calls and can fail the n-th one (a
    crash between two increments). More than ``limit`` calls fail at once, so a counter
    that increments once per unit of a 2**32 jump fails here instead of hanging."""

    def __init__(self, tpm: InsecureSwtpmPlatform, monkeypatch: pytest.MonkeyPatch,
                 limit: int = 16) -> None:
        self.calls = 0
        self.fail_at: int | None = None
        self.limit = limit
        real = tpm.esys.nv_increment

        def counted(*args: object, **kwargs: object) -> object:
            self.calls += 1
            if self.calls > self.limit:
                raise AssertionError(f"more than {self.limit} NV increments")
            if self.fail_at is not None and self.calls == self.fail_at:
                raise PlatformError("power lost between two increments")
            return real(*args, **kwargs)

        monkeypatch.setattr(tpm.esys, "nv_increment", counted)


def _guest() -> tuple[object, object]:
    from veritee.platform.emulated.measurement import simple_guest_image
    from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine
    from veritee.sealing import SealingPolicy

    machine = InsecureEmulatedSnpMachine.create(key_size=2048)
    return machine.launch(simple_guest_image(b"K" * 4096)), SealingPolicy.measurement()


def test_a_rollback_protected_seal_costs_two_nv_increments_not_a_2_to_32_jump(
        tpm: InsecureSwtpmPlatform, monkeypatch: pytest.MonkeyPatch) -> None:
    # Sealing packs (reserved, committed) into one 64-bit value: reserving jumps it by
    # 2**32. One TPM counter incremented per unit hung here; a pair moves one step each.
    from veritee.sealing import inspect, seal, unseal

    guest, policy = _guest()
    cid = tpm.counter_create()
    counting = _CountingIncrements(tpm, monkeypatch)
    blob = seal(guest, b"v1", policy, counters=tpm, counter_id=cid)  # type: ignore[arg-type]
    assert counting.calls == 2  # reserve: the high counter; commit: the low one
    assert inspect(blob).counter_value == 1 and tpm.counter_read(cid) == 1 << 32 | 1
    for n in range(2, 5):
        seal(guest, b"v%d" % n, policy, counters=tpm, counter_id=cid)  # type: ignore[arg-type]
    assert counting.calls == 8
    with pytest.raises(SealingError):
        unseal(guest, blob, policy, counters=tpm)  # type: ignore[arg-type]


def test_counter_halves_only_grow_and_the_result_says_where_it_is(
        tpm: InsecureSwtpmPlatform) -> None:
    cid = tpm.counter_create()
    assert tpm.counter_advance(cid, 2 << 32 | 1) == 2 << 32 | 1
    # Asking to lower the high half (and raise the low one) raises the low one only: the
    # result is above the request, never below the previous value.
    assert tpm.counter_advance(cid, 1 << 32 | 2) == 2 << 32 | 2
    assert tpm.counter_read(cid) == 2 << 32 | 2
    with pytest.raises(PlatformError):
        tpm.counter_advance(cid, 1 << 64)


def test_reserve_commit_burn_on_the_tpm_follow_sealing_s_protocol(
        tpm: InsecureSwtpmPlatform) -> None:
    from veritee.sealing._core import RollbackSlot, committed_version

    cid = tpm.counter_create()
    slot = RollbackSlot.next_for(tpm, cid)
    assert slot.value == 1 and committed_version(tpm, cid) == 0  # reserved, not current
    slot.commit()
    assert committed_version(tpm, cid) == 1
    slot.burn()
    assert committed_version(tpm, cid) == 2  # a version nobody was given: nothing opens
    assert RollbackSlot.next_for(tpm, cid).value == 3  # the burned number is never reused


def test_crash_between_the_halves_of_a_burn_opens_neither_version(
        tpm: InsecureSwtpmPlatform, monkeypatch: pytest.MonkeyPatch) -> None:
    # A publish whose rename failed burns its committed version; power lost between the
    # two increments must not leave that (burned) version current, nor the older one.
    from veritee.sealing import seal, unseal
    from veritee.sealing._core import RollbackSlot

    guest, policy = _guest()
    cid = tpm.counter_create()
    v1 = seal(guest, b"balance=100", policy, counters=tpm, counter_id=cid)  # type: ignore[arg-type]
    v2 = seal(guest, b"balance=0", policy, counters=tpm, counter_id=cid)  # type: ignore[arg-type]
    counting = _CountingIncrements(tpm, monkeypatch)
    counting.fail_at = 2  # the burn's first increment lands, the second never happens
    with pytest.raises(PlatformError):
        RollbackSlot(tpm, cid, 2).burn()
    assert counting.calls == 2
    for old in (v1, v2):
        with pytest.raises(SealingError):
            unseal(guest, old, policy, counters=tpm)  # type: ignore[arg-type]
    assert RollbackSlot.next_for(tpm, cid).value == 4  # 3 was half-burned: never handed out


def test_declared_counter_id_names_a_deterministic_pair(tpm: InsecureSwtpmPlatform) -> None:
    from veritee.sealing import counter_id_for

    cid = tpm.counter_create()
    tpm.counter_advance(cid, 1 << 32)
    assert tpm.counter_create(cid) == cid and tpm.counter_read(cid) == 1 << 32  # kept
    with pytest.raises(PlatformError):  # well-formed, but no such counters on this TPM
        tpm.counter_create(_pair_id(0xFFFFE, 0xFFFFD))
    declared = counter_id_for(b"workload", "/var/lib/app/state.sealed")
    with pytest.raises(PlatformError):  # not created yet: reading does not create it
        tpm.counter_read(declared)
    assert tpm.counter_create(declared) == declared
    start = tpm.counter_read(declared)
    tpm.counter_advance(declared, start + (1 << 32) + 1)
    assert tpm.counter_create(declared) == declared  # found again, not reset
    assert tpm.counter_read(declared) == start + (1 << 32) + 1


def test_declared_counter_deleted_by_the_host_never_goes_down(
        tpm: InsecureSwtpmPlatform) -> None:
    """The owner may delete a declared pair; redefined, it starts at the highest count the TPM
    ever had, so its value (absolute: base 0) does not go back."""
    import tpm2_pytss as tss

    from veritee.platform.tpm import _decode_counter_id
    from veritee.sealing import counter_id_for

    declared = counter_id_for(b"workload", "/data/db.key")
    tpm.counter_create(declared)
    tpm.counter_advance(declared, 5 << 32 | 5)
    before = tpm.counter_read(declared)
    hi, lo, _, _ = _decode_counter_id(declared)
    for off in (hi, lo):
        nv = tpm.esys.tr_from_tpmpublic(0x01500000 + off)
        tpm.esys.nv_undefine_space(nv, auth_handle=tss.ESYS_TR.OWNER)
    tpm.counter_create(declared)
    after = tpm.counter_read(declared)
    assert after >> 32 >= before >> 32 and after & 0xFFFFFFFF >= before & 0xFFFFFFFF


def test_counter_swapped_for_a_writable_nv_index_is_refused(tpm: InsecureSwtpmPlatform
                                                           ) -> None:
    # The host (owner) deletes the low counter and defines an ordinary index at the same
    # handle, whose contents it can lower at will: the id still names it, the TPM refuses.
    import tpm2_pytss as tss

    t, c = tss.types, tss.constants
    cid = tpm.counter_create()
    tpm.counter_advance(cid, 3 << 32 | 3)
    index = 0x01500000 + int.from_bytes(cid[5:8], "big")
    esys = tpm.esys
    esys.nv_undefine_space(esys.tr_from_tpmpublic(index), auth_handle=tss.ESYS_TR.OWNER)
    attrs = c.TPMA_NV.AUTHREAD | c.TPMA_NV.AUTHWRITE | c.TPMA_NV.NO_DA
    nv = esys.nv_define_space(t.TPM2B_AUTH(), t.TPM2B_NV_PUBLIC(nvPublic=t.TPMS_NV_PUBLIC(
        nvIndex=index, nameAlg=c.TPM2_ALG.SHA256, attributes=attrs, dataSize=8)),
        auth_handle=tss.ESYS_TR.OWNER)
    esys.nv_write(nv, t.TPM2B_MAX_NV_BUFFER(int.from_bytes(cid[12:], "big").to_bytes(8, "big")),
                  0, auth_handle=nv)
    with pytest.raises(PlatformError, match="not an NV counter"):
        tpm.counter_read(cid)


def test_host_that_deletes_and_recreates_the_counters_cannot_lower_them(
        tpm: InsecureSwtpmPlatform) -> None:
    # The owner (empty authValue) may undefine both NV counters and define new ones at the
    # same handles; a new TPM counter starts at the highest count the TPM ever had, so the
    # id's bases still give values at least as high: an old version stays refused.
    import tpm2_pytss as tss

    t, c = tss.types, tss.constants
    cid = tpm.counter_create()
    tpm.counter_advance(cid, 5 << 32 | 5)
    esys = tpm.esys
    attrs = (c.TPMA_NV.AUTHREAD | c.TPMA_NV.AUTHWRITE | c.TPMA_NV.NO_DA
             | (c.TPM2_NT.COUNTER << c.TPMA_NV.TPM2_NT_SHIFT))
    for off in (cid[2:5], cid[5:8]):
        index = 0x01500000 + int.from_bytes(off, "big")
        esys.nv_undefine_space(esys.tr_from_tpmpublic(index), auth_handle=tss.ESYS_TR.OWNER)
        nv = esys.nv_define_space(t.TPM2B_AUTH(), t.TPM2B_NV_PUBLIC(nvPublic=t.TPMS_NV_PUBLIC(
            nvIndex=index, nameAlg=c.TPM2_ALG.SHA256, attributes=attrs, dataSize=8)),
            auth_handle=tss.ESYS_TR.OWNER)
        esys.nv_increment(nv, auth_handle=nv)
    value = tpm.counter_read(cid)
    assert value >> 32 >= 5 and value & 0xFFFFFFFF >= 5


# -- the platform itself ----------------------------------------------------------------------
def test_reboot_resets_the_pcrs_and_the_log(tpm: InsecureSwtpmPlatform) -> None:
    before = tpm.pcr_values({HashAlg.SHA256: (4, 10)})
    tpm.extend(BootEvent(4, EventType.EV_EFI_ACTION, b"late measurement"))
    tpm.reboot()
    assert tpm.pcr_values({HashAlg.SHA256: (4, 10)}) == before
    assert before[HashAlg.SHA256][10] == bytes(32)  # untouched PCRs at their reset value
    assert len(EventLog.from_bytes(tpm.event_log()).events) == len(default_boot_chain())


def test_swtpm_process_is_gone_after_close(template: Path, tmp_path: Path) -> None:
    state = tmp_path / "tpm"
    shutil.copytree(template, state)
    platform = InsecureSwtpmPlatform.open(state)
    process = platform._process
    assert process.running and process.socket.exists()
    platform.close()
    assert not process.running and not process.socket.exists()
    with pytest.raises(PlatformError):
        platform.trng(1)


class _ExitedSwtpm:
    """A process stand-in: its socket never answers and it has exited with a lock error."""

    def __init__(self, run_dir: Path) -> None:
        self.tcti = ("swtpm", f"path={run_dir / 'tpm.sock'}")
        self.cleaned = False

    def exit_message(self) -> str:
        return "swtpm: Could not lock access to lockfile /state/.lock"

    def cleanup(self) -> None:
        self.cleaned = True


def test_swtpm_that_exits_after_binding_is_reported_with_its_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # swtpm binds its sockets before it takes the state's lock: a second one on the same
    # state can exit after start() saw its sockets, and the client then sees only the
    # TCTI's "IO failure". The error names swtpm's own reason, and nothing is left running.
    monkeypatch.setattr(InsecureSwtpmPlatform, "_CONNECT_ATTEMPTS", 1)
    process = _ExitedSwtpm(tmp_path)
    with pytest.raises(PlatformError, match=r"swtpm exited at start: .*lock"):
        InsecureSwtpmPlatform(process, description="test")  # type: ignore[arg-type]
    assert process.cleaned


def test_second_swtpm_on_the_same_state_is_refused(tpm: InsecureSwtpmPlatform) -> None:
    # Two TPMs on one NV file would fork its counters: swtpm's lock refuses the second.
    run_dirs = set(Path(tempfile.gettempdir()).glob("veritee-swtpm-*"))
    with pytest.raises(PlatformError) as err:
        InsecureSwtpmPlatform.open(tpm.layout.root)
    assert "lock" in str(err.value)
    # ... and the refused start leaves no private socket directory behind.
    assert set(Path(tempfile.gettempdir()).glob("veritee-swtpm-*")) == run_dirs
    assert tpm.trng(4)  # the first one is unaffected
