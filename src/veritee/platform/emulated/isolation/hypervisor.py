"""The host: an honest hypervisor, the adversarial one, and a physical attacker.

:class:`Hypervisor` does what a host legitimately does: allocate frames, build the nested
page table, serve the guest's page-state-change requests. :class:`MaliciousHypervisor` adds
the attacks of the issue, each run against a live :class:`.SecretKeepingWorkload`, through
the same hardware rules (it never reaches DRAM except via ``rules.host_load``/``host_store``
and the host instructions the mode offers: RMPUPDATE under SEV-SNP, EWB/ELDU under SGX).
Each attempt ends in an :class:`.Outcome` and is appended to ``log``.

:class:`PhysicalAttacker` is not software: it is a DRAM interposer / cold-boot dump that
reads and writes the DRAM chips directly (data and hardware metadata). It bypasses every CPU
check by definition; only cryptography can stand in its way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING

from veritee.errors import PlatformError
from veritee.platform.emulated.isolation.epc import ABORT_PAGE, EpcPerm, SgxRules
from veritee.platform.emulated.isolation.faults import (
    GuestException,
    HypervisorFault,
    IntegrityViolation,
    Outcome,
)
from veritee.platform.emulated.isolation.guest import Guest, Mode
from veritee.platform.emulated.isolation.memory import PAGE_SIZE
from veritee.platform.emulated.isolation.rmp import SnpRules

if TYPE_CHECKING:  # pragma: no cover - typing only
    from veritee.platform.emulated.isolation.stack import Machine
    from veritee.platform.emulated.isolation.workload import SecretKeepingWorkload

__all__ = ["Attack", "AttackResult", "Hypervisor", "MaliciousHypervisor", "PhysicalAttacker"]

#: What the attacker writes when it gets to choose bytes.
ATTACKER_BYTES = (b"attacker-controlled page " * 200)[:PAGE_SIZE]


class Attack(Enum):
    """The attacks of the matrix: six by the hypervisor, two by a physical attacker."""

    READ = "read"
    WRITE = "write"
    REMAP = "remap"
    SWAP = "swap"
    REPLAY = "replay"
    PAGE_STATE = "page-state"
    DRAM_READ = "dram-read"
    DRAM_REPLAY = "dram-replay"

    @property
    def physical(self) -> bool:
        """Whether the attacker is physical (DRAM) rather than the hypervisor."""
        return self in (Attack.DRAM_READ, Attack.DRAM_REPLAY)

    @property
    def description(self) -> str:
        """One line on what the attacker does."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Attack.READ: "hypervisor reads the frame holding the secret",
    Attack.WRITE: "hypervisor writes its own bytes into that frame",
    Attack.REMAP: "hypervisor points the secret's guest page at a frame it filled",
    Attack.SWAP: "hypervisor swaps the frames behind two guest pages",
    Attack.REPLAY: "hypervisor puts back an older copy of the page after the guest wrote",
    Attack.PAGE_STATE: "hypervisor flips the page private->shared->private behind the guest",
    Attack.DRAM_READ: "physical attacker reads the DRAM chips (bus/cold boot)",
    Attack.DRAM_REPLAY: "physical attacker restores old DRAM contents, metadata included",
}


@dataclass(frozen=True)
class AttackResult:
    """One attempt: the attack, the mode, its outcome, and what happened step by step."""

    attack: Attack
    mode: Mode
    outcome: Outcome
    trace: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"attack": self.attack.value, "mode": self.mode.value,
                "outcome": self.outcome.name, "trace": list(self.trace)}


class Hypervisor:
    """The host's legitimate duties: frames, page tables, page-state requests."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        rules = machine.rules
        frames = range(machine.memory.frames)
        if isinstance(rules, SgxRules):
            self._free_protected = [f for f in frames if rules.in_epc(f)]
            self._free_host = [f for f in frames if not rules.in_epc(f)]
        else:
            self._free_protected = list(frames)
            self._free_host = self._free_protected

    def allocate(self, n: int, *, protected: bool) -> list[int]:
        """Take ``n`` free frames: EPC frames when ``protected`` under SGX, else any."""
        pool = self._free_protected if protected else self._free_host
        if len(pool) < n:
            raise PlatformError(f"out of {'protected' if protected else 'host'} frames: "
                                f"want {n}, have {len(pool)}")
        taken, pool[:] = pool[:n], pool[n:]
        return taken

    def page_state_change(self, guest: Guest, page: int, *, shared: bool) -> None:
        """Serve a guest's page-state-change request (GHCB PSC): RMPUPDATE under SEV-SNP."""
        rules = self.machine.rules
        if isinstance(rules, SnpRules):
            frame = rules.translate(guest, page)
            if shared:
                rules.rmpupdate(frame, asid=None)
            else:
                rules.rmpupdate(frame, asid=guest.guest_id, gpn=page)


class _Trace:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)


def _observed(data: bytes, secret: bytes, trace: _Trace) -> Outcome:
    if secret in data:
        trace(f"observed bytes contain the secret ({secret[:4].hex()}...)")
        return Outcome.OBSERVED_PLAINTEXT
    if data == ABORT_PAGE:
        trace("observed all ones (abort-page semantics): nothing learned")
        return Outcome.BLOCKED
    trace(f"observed {data[:8].hex()}...: no trace of the secret")
    return Outcome.OBSERVED_CIPHERTEXT_ONLY


def _consume(victim: SecretKeepingWorkload, page: int, trace: _Trace) -> Outcome:
    """The guest touches the page; classify what it got."""
    try:
        data = victim.read(page)
    except GuestException as exc:
        trace(f"guest access -> {exc}: the guest knows it validated this page, so it "
              "stops instead of using it")
        return Outcome.DETECTED_BY_GUEST
    except IntegrityViolation as exc:
        trace(f"guest access -> {exc}")
        return Outcome.DETECTED_BY_GUEST
    except HypervisorFault as exc:
        trace(f"guest access -> {exc}")
        return Outcome.FAULT_TO_HYPERVISOR
    if data == victim.expected(page):
        trace("guest read exactly what it last wrote: the attack had no effect")
        return Outcome.BLOCKED
    trace(f"guest read {data[:8].hex()}... instead of what it wrote, with no fault")
    return Outcome.UNDETECTED_CORRUPTION


class MaliciousHypervisor(Hypervisor):
    """The adversarial API: each method attacks a running workload and records the result."""

    def __init__(self, machine: Machine) -> None:
        super().__init__(machine)
        self.log: list[AttackResult] = []

    @classmethod
    def take_over(cls, machine: Machine) -> MaliciousHypervisor:
        """Turn a machine's hypervisor malicious (it keeps the same frame pools)."""
        evil = cls(machine)
        evil._free_protected = machine.hypervisor._free_protected
        evil._free_host = machine.hypervisor._free_host
        machine.hypervisor = evil
        return evil

    def _record(self, attack: Attack, outcome: Outcome, trace: _Trace) -> AttackResult:
        result = AttackResult(attack, self.machine.mode, outcome, tuple(trace.lines))
        self.log.append(result)
        return result

    def run(self, attack: Attack, victim: SecretKeepingWorkload) -> AttackResult:
        """Run one hypervisor attack by name."""
        if attack.physical:
            raise PlatformError(f"{attack.value} is a physical attack, not a hypervisor one")
        method = getattr(self, attack.value.replace("-", "_"))
        result: AttackResult = method(victim)
        return result

    # -- the attacks -----------------------------------------------------------------------
    def read(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Read the frame that holds the secret."""
        trace = _Trace()
        frame = victim.secret_frame()
        trace(f"host load of frame {frame:#x}")
        try:
            outcome = _observed(self.machine.rules.host_load(frame), victim.secret, trace)
        except HypervisorFault as exc:
            trace(str(exc))
            outcome = Outcome.FAULT_TO_HYPERVISOR
        return self._record(Attack.READ, outcome, trace)

    def write(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Overwrite the secret's frame with attacker bytes, then let the guest use it."""
        trace = _Trace()
        frame = victim.secret_frame()
        trace(f"host store of attacker bytes to frame {frame:#x}")
        try:
            self.machine.rules.host_store(frame, ATTACKER_BYTES)
        except HypervisorFault as exc:
            trace(str(exc))
            return self._record(Attack.WRITE, Outcome.FAULT_TO_HYPERVISOR, trace)
        return self._record(Attack.WRITE, _consume(victim, victim.secret_page, trace), trace)

    def remap(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Point the secret's guest page at a host frame filled with attacker bytes.

        Under SEV-SNP the first guest access faults (#NPF: the frame is hypervisor-owned in
        the RMP); the hypervisor then does what the SNP whitepaper's remapping scenario
        describes: RMPUPDATE assigns the frame to the guest at that GPA, which clears
        Validated, and the guest's next access takes a #VC.
        """
        trace = _Trace()
        guest, page = victim.guest, victim.secret_page
        (frame,) = self.allocate(1, protected=False)
        self.machine.rules.host_store(frame, ATTACKER_BYTES)
        trace(f"NPT: guest page {page:#x} -> host frame {frame:#x} (attacker bytes)")
        guest.table[page] = frame
        return self._record(Attack.REMAP, self._consume_or_fix(victim, {page: frame}, trace),
                            trace)

    def swap(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Exchange the frames behind the secret's page and another guest page."""
        trace = _Trace()
        guest, a, b = victim.guest, victim.secret_page, victim.other_page
        fa, fb = guest.table[a], guest.table[b]
        assert fa is not None and fb is not None
        guest.table[a], guest.table[b] = fb, fa
        trace(f"NPT: guest page {a:#x} -> frame {fb:#x}, page {b:#x} -> frame {fa:#x}")
        return self._record(Attack.SWAP, self._consume_or_fix(victim, {a: fb, b: fa}, trace),
                            trace)

    def _consume_or_fix(self, victim: SecretKeepingWorkload, mapping: dict[int, int],
                        trace: _Trace) -> Outcome:
        outcome = _consume(victim, victim.secret_page, trace)
        rules = self.machine.rules
        if outcome is Outcome.FAULT_TO_HYPERVISOR and isinstance(rules, SnpRules):
            for page, frame in mapping.items():
                trace(f"RMPUPDATE frame {frame:#x} -> ASID {victim.guest.guest_id} GPA page "
                      f"{page:#x} (clears Validated)")
                rules.rmpupdate(frame, asid=victim.guest.guest_id, gpn=page)
            outcome = _consume(victim, victim.secret_page, trace)
        return outcome

    def replay(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Keep an old copy of the page, let the guest write, put the old copy back.

        Under SGX the OS has no software path to EPC bytes (abort-page semantics); its
        channel is EPC paging, so it replays an old EWB blob through ELDU.
        """
        trace = _Trace()
        rules, page, frame = self.machine.rules, victim.secret_page, victim.secret_frame()
        if isinstance(rules, SgxRules):
            old = rules.ewb(frame)
            trace(f"EWB frame {frame:#x}: blob v{old.version}; ELDU it back")
            rules.eldu(old, frame)
            victim.update(page)
            trace("enclave writes the page")
            new = rules.ewb(frame)
            trace(f"EWB again: blob v{new.version}; ELDU the old blob v{old.version}")
            try:
                rules.eldu(old, frame)
            except HypervisorFault as exc:
                trace(str(exc))
                return self._record(Attack.REPLAY, Outcome.FAULT_TO_HYPERVISOR, trace)
            return self._record(Attack.REPLAY, _consume(victim, page, trace), trace)
        snapshot = rules.host_load(frame)
        trace(f"host load of frame {frame:#x} (snapshot)")
        victim.update(page)
        trace("guest writes the page")
        try:
            rules.host_store(frame, snapshot)
            trace(f"host store of the snapshot back to frame {frame:#x}")
        except HypervisorFault as exc:
            trace(str(exc))
            return self._record(Attack.REPLAY, Outcome.FAULT_TO_HYPERVISOR, trace)
        return self._record(Attack.REPLAY, _consume(victim, page, trace), trace)

    def page_state(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Change the page's hardware state without the guest asking.

        SEV-SNP: RMPUPDATE the private page to hypervisor-owned (shared), write it, RMPUPDATE
        it back to the guest: legal instructions, but Validated is now clear. SGX: EWB the
        page and ELDU it back with altered PCMD (now executable). plain/SEV keep no page
        state the hypervisor could flip: not applicable.
        """
        trace = _Trace()
        rules, guest = self.machine.rules, victim.guest
        page, frame = victim.secret_page, victim.secret_frame()
        if isinstance(rules, SnpRules):
            rules.rmpupdate(frame, asid=None)
            trace(f"RMPUPDATE frame {frame:#x} -> hypervisor-owned (private -> shared)")
            rules.host_store(frame, ATTACKER_BYTES)
            trace("host store of attacker bytes (allowed: the frame is the host's now)")
            rules.rmpupdate(frame, asid=guest.guest_id, gpn=page)
            trace(f"RMPUPDATE frame {frame:#x} -> ASID {guest.guest_id} (shared -> private; "
                  "Validated cleared)")
            return self._record(Attack.PAGE_STATE, _consume(victim, page, trace), trace)
        if isinstance(rules, SgxRules):
            evicted = rules.ewb(frame)
            trace(f"EWB frame {frame:#x}; ELDU it back with PCMD permissions R|W|X")
            try:
                rules.eldu(replace(evicted, perms=EpcPerm.R | EpcPerm.W | EpcPerm.X), frame)
            except HypervisorFault as exc:
                trace(str(exc))
                return self._record(Attack.PAGE_STATE, Outcome.FAULT_TO_HYPERVISOR, trace)
            return self._record(Attack.PAGE_STATE, _consume(victim, page, trace), trace)
        trace(f"{self.machine.mode.value}: the hardware keeps no page state the hypervisor "
              "could flip (it can still remap or write: see those attacks)")
        return self._record(Attack.PAGE_STATE, Outcome.NOT_APPLICABLE, trace)


class PhysicalAttacker:
    """Direct DRAM access (interposer, cold boot): no CPU rule applies."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.log: list[AttackResult] = []

    def run(self, attack: Attack, victim: SecretKeepingWorkload) -> AttackResult:
        """Run one physical attack by name."""
        if attack is Attack.DRAM_READ:
            return self.dram_read(victim)
        if attack is Attack.DRAM_REPLAY:
            return self.dram_replay(victim)
        raise PlatformError(f"{attack.value} is a hypervisor attack, not a physical one")

    def _record(self, attack: Attack, outcome: Outcome, trace: _Trace) -> AttackResult:
        result = AttackResult(attack, self.machine.mode, outcome, tuple(trace.lines))
        self.log.append(result)
        return result

    def dram_read(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Read the secret's frame straight off the DRAM chips."""
        trace = _Trace()
        frame = victim.secret_frame()
        trace(f"DRAM read of frame {frame:#x}")
        outcome = _observed(self.machine.memory.load(frame), victim.secret, trace)
        return self._record(Attack.DRAM_READ, outcome, trace)

    def dram_replay(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Snapshot the frame and all metadata DRAM, let the guest write, restore both."""
        trace = _Trace()
        memory, frame, page = self.machine.memory, victim.secret_frame(), victim.secret_page
        data, meta = memory.load(frame), memory.meta_load(0, memory.metadata_size)
        trace(f"DRAM snapshot of frame {frame:#x} and {len(meta)} bytes of metadata "
              "(MACs, integrity-tree nodes)")
        victim.update(page)
        trace("guest writes the page")
        memory.store(frame, data)
        memory.meta_store(0, meta)
        trace("DRAM restore of the snapshot")
        return self._record(Attack.DRAM_REPLAY, _consume(victim, page, trace), trace)
