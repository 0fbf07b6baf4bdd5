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

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from veritee.errors import PlatformError
from veritee.platform.emulated.isolation import sources
from veritee.platform.emulated.isolation.epc import ABORT_PAGE, SgxRules
from veritee.platform.emulated.isolation.faults import (
    GuestException,
    GuestTerminated,
    HypervisorFault,
    IntegrityViolation,
    MachineCheck,
    Outcome,
    PlatformLocked,
    UndefinedInstruction,
)
from veritee.platform.emulated.isolation.guest import Guest, Mode
from veritee.platform.emulated.isolation.memory import PAGE_SIZE
from veritee.platform.emulated.isolation.rmp import SnpRules
from veritee.platform.emulated.isolation.tdx import TdxRules
from veritee.platform.emulated.isolation.workload import SLOT_OFFSET

if TYPE_CHECKING:  # pragma: no cover - typing only
    from veritee.platform.emulated.isolation.stack import Machine
    from veritee.platform.emulated.isolation.workload import SecretKeepingWorkload

#: How many secret bits the ciphertext-compare attacks try to recover.
LEAK_BITS = 32

__all__ = ["Attack", "AttackResult", "Hypervisor", "MaliciousHypervisor", "PhysicalAttacker"]

#: What the attacker writes when it gets to choose bytes.
ATTACKER_BYTES = (b"attacker-controlled page " * 200)[:PAGE_SIZE]


class Attack(Enum):
    """The attacks of the matrix: ten by the hypervisor, three by a physical attacker."""

    READ = "read"
    WRITE = "write"
    REMAP = "remap"
    SWAP = "swap"
    REPLAY = "replay"
    ALIAS = "alias"
    PAGE_STATE = "page-state"
    PSC_SUBSTITUTION = "psc-substitution"
    SERVICE_LEAK = "service-leak"
    CIPHERTEXT_COMPARE = "ciphertext-compare"
    DRAM_READ = "dram-read"
    DRAM_CIPHERTEXT_COMPARE = "dram-ciphertext-compare"
    DRAM_REPLAY = "dram-replay"

    @property
    def physical(self) -> bool:
        """Whether the attacker is physical (DRAM) rather than the hypervisor."""
        return self.value.startswith("dram-")

    @property
    def description(self) -> str:
        """One line on what the attacker does."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Attack.READ: "hypervisor reads the frame holding the secret",
    Attack.WRITE: "hypervisor writes its own bytes into that frame",
    Attack.REMAP: "hypervisor substitutes a frame it filled for the secret's page",
    Attack.SWAP: "hypervisor swaps the frames behind two guest pages",
    Attack.REPLAY: "hypervisor puts back an older copy of the page after the guest wrote",
    Attack.ALIAS: "hypervisor gets a second frame validated at the same GPA, lets the "
                  "guest write there, then maps the old frame back (double validation)",
    Attack.PAGE_STATE: "hypervisor changes the page's state behind the guest (SNP: "
                       "RMPUPDATE private->shared->private; SGX2: EREMOVE + EAUG)",
    Attack.PSC_SUBSTITUTION: "during a guest-requested private->shared->private change, "
                             "the hypervisor substitutes the frame the guest rescinds",
    Attack.SERVICE_LEAK: "hypervisor maps a guest service's reply page onto the secret's "
                         "frame (SEVered)",
    Attack.CIPHERTEXT_COMPARE: "hypervisor snapshots the ciphertext of a variable a "
                               "constant-time loop sets per secret bit (CipherLeaks)",
    Attack.DRAM_READ: "physical attacker reads the DRAM chips (bus/cold boot)",
    Attack.DRAM_CIPHERTEXT_COMPARE: "physical attacker compares DRAM ciphertext across "
                                    "the same constant-time loop",
    Attack.DRAM_REPLAY: "physical attacker restores old DRAM contents, metadata included",
}


@dataclass(frozen=True)
class AttackResult:
    """One attempt: the attack, the mode, the guest's policy, the outcome, the rule that
    produced it and that rule's source, and what happened step by step."""

    attack: Attack
    mode: Mode
    outcome: Outcome
    trace: tuple[str, ...]
    rule: str = ""
    source: str = ""
    guest: str = "careful"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {"attack": self.attack.value, "mode": self.mode.value, "guest": self.guest,
                "outcome": self.outcome.name, "rule": self.rule, "source": self.source,
                "trace": list(self.trace)}


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
    """The steps of one attempt, and the rule (with its source) that decided it."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.rule = ""
        self.source = ""

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def decide(self, outcome: Outcome, rule: str, source: str) -> Outcome:
        self.rule, self.source = rule, source
        return outcome


#: The document holding each mode's access rules.
_RULES_OF = {Mode.PLAIN: sources.PLAIN, Mode.SEV: sources.APM_SEV, Mode.SEV_SNP: sources.APM_RMP,
             Mode.SGX_CLIENT: sources.SDM_SGX_EPCM, Mode.SGX_SCALABLE: sources.SDM_SGX_EPCM,
             Mode.TDX: sources.TDX_SEPT}


def _weakness(mode: Mode, victim: SecretKeepingWorkload, start: int) -> tuple[str, str]:
    """Why nothing stopped the guest from consuming other bytes."""
    if any(line.startswith("naive guest") for line in victim.kernel.log[start:]):
        return ("guest policy: re-validate / EACCEPT on every fault, no bitmap: the "
                "substitute was accepted", sources.KVM_SELFTEST_VC)
    if any("FAIL_NOUPDATE" in line for line in victim.kernel.log[start:]):
        return ("guest policy: PVALIDATE no-update ignored: the old frame stayed validated",
                sources.APM_PVALIDATE)
    return {
        Mode.PLAIN: ("no protection: the hypervisor owns guest memory", sources.PLAIN),
        Mode.SEV: ("SEV: encryption without integrity; the NPT is the hypervisor's",
                   sources.APM_SEV),
        Mode.SEV_SNP: ("the RMP checks CPU accesses only: DRAM written directly is not "
                       "checked", sources.PHYSICAL),
        Mode.SGX_CLIENT: ("no check fired", sources.MEE),
        Mode.SGX_SCALABLE: ("TME-MK: AES-XTS without MAC or integrity tree",
                            sources.TME_MK),
        Mode.TDX: ("logical integrity has no replay protection: ciphertext and TD-owner "
                   "bits restored together read as valid", sources.TDX_LI),
    }[mode]


def _consume(victim: SecretKeepingWorkload, page: int, trace: _Trace, mode: Mode,
             start: int) -> Outcome:
    """The guest touches the page through its own code; classify what it got.

    Exceptions (the guest terminating, faults, a platform lock) propagate to
    :meth:`MaliciousHypervisor._attempt`, which classifies them."""
    data = victim.read(page)
    if data == victim.expected(page):
        trace("guest read exactly what it last wrote: the attack had no effect")
        return trace.decide(Outcome.BLOCKED, "the guest read back what it wrote",
                            _RULES_OF[mode])
    trace(f"guest read {data[:8].hex()}... instead of what it wrote, with no fault")
    return trace.decide(Outcome.UNDETECTED_CORRUPTION, *_weakness(mode, victim, start))


def _observed(data: bytes, secret: bytes, trace: _Trace, mode: Mode) -> Outcome:
    if secret in data:
        trace(f"observed bytes contain the secret ({secret[:4].hex()}...)")
        return trace.decide(Outcome.OBSERVED_PLAINTEXT, "reads return plaintext",
                            sources.PLAIN)
    if mode is Mode.TDX and data == bytes(len(data)):
        trace("observed all zeros: nothing learned")
        return trace.decide(Outcome.BLOCKED, "logical integrity: non-TD reads of TD-owned "
                            "lines return zeros", sources.TDX_LI)
    if data == ABORT_PAGE:
        trace("observed all ones: nothing learned")
        if mode.sgx:
            return trace.decide(Outcome.BLOCKED, "abort-page semantics on the PRM",
                                sources.SDM_SGX_EPCM)
        return trace.decide(Outcome.BLOCKED, "ciphertext hiding: host reads of SNP private "
                            "memory return 0xff", sources.CTH)
    trace(f"observed {data[:8].hex()}...: no trace of the secret")
    source = {Mode.SGX_CLIENT: sources.MEE, Mode.SGX_SCALABLE: sources.TME_MK,
              Mode.TDX: sources.TDX_LI}.get(mode, sources.APM_SEV)
    return trace.decide(Outcome.OBSERVED_CIPHERTEXT_ONLY,
                        "memory is encrypted under a key the attacker lacks", source)


def _compare(victim: SecretKeepingWorkload, snapshot: Callable[[], bytes], trace: _Trace,
             mode: Mode) -> Outcome:
    """Run the constant-time loop over secret bits, snapshotting after every iteration;
    try to read the bits off ciphertext equality (the CipherLeaks primitive)."""
    bits = victim.secret_bits(LEAK_BITS)
    pages: list[bytes] = []
    for bit in bits:
        victim.constant_time_step(bit)
        pages.append(snapshot())
    trace(f"guest ran {len(bits)} iterations of a constant-time loop over secret bits; "
          "attacker snapshotted the page after each")
    first = _observed(pages[0], victim.secret, trace, mode)
    if first in (Outcome.OBSERVED_PLAINTEXT, Outcome.BLOCKED):
        return first
    slots = [p[SLOT_OFFSET:SLOT_OFFSET + 16] for p in pages]
    guess = [0 if slot == slots[0] else 1 for slot in slots]
    distinct = len(set(slots))
    trace(f"{distinct} distinct ciphertexts of the 16-byte variable over {len(slots)} writes")
    if distinct == 2 and (guess == bits or guess == [1 - b for b in bits]):
        trace(f"equal plaintext at one address gave equal ciphertext: recovered all "
              f"{len(bits)} secret bits (up to complement) without the key")
        return trace.decide(Outcome.CIPHERTEXT_PATTERN_LEAKED,
                            "deterministic encryption: same plaintext, same address, same "
                            "ciphertext", sources.CIPHERLEAKS)
    trace("the ciphertext changed on every write: no pattern to read")
    return trace.decide(Outcome.OBSERVED_CIPHERTEXT_ONLY,
                        "encryption seeded by address and version: every write changes "
                        "the ciphertext", sources.MEE)


class MaliciousHypervisor(Hypervisor):
    """The adversarial API: each method attacks a running workload and records the result.

    Every attack runs through the hardware rules and the guest's own code; the outcome is
    computed from what happened (an exception the hardware or the guest raised, or what the
    guest or the attacker ended up seeing)."""

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

    def run(self, attack: Attack, victim: SecretKeepingWorkload) -> AttackResult:
        """Run one hypervisor attack by name."""
        if attack.physical:
            raise PlatformError(f"{attack.value} is a physical attack, not a hypervisor one")
        method = getattr(self, attack.value.replace("-", "_"))
        result: AttackResult = method(victim)
        return result

    def _attempt(self, attack: Attack, victim: SecretKeepingWorkload,
                 body: Callable[[_Trace], Outcome]) -> AttackResult:
        result = _attempt(self.machine.mode, attack, victim, body)
        self.log.append(result)
        return result

    # -- the attacks -----------------------------------------------------------------------
    def read(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Read the frame that holds the secret."""
        def body(trace: _Trace) -> Outcome:
            frame = victim.secret_frame()
            trace(f"host load of frame {frame:#x}")
            return _observed(self.machine.rules.host_load(frame), victim.secret, trace,
                             self.machine.mode)
        return self._attempt(Attack.READ, victim, body)

    def write(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Overwrite the secret's frame with attacker bytes, then let the guest use it."""
        def body(trace: _Trace) -> Outcome:
            frame, start = victim.secret_frame(), len(victim.kernel.log)
            trace(f"host store of attacker bytes to frame {frame:#x}")
            self.machine.rules.host_store(frame, ATTACKER_BYTES)
            return _consume(victim, victim.secret_page, trace, self.machine.mode, start)
        return self._attempt(Attack.WRITE, victim, body)

    def remap(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Frame substitution: point the secret's page at a host frame of attacker bytes.

        Under SEV-SNP the first guest access faults (#NPF: the frame is hypervisor-owned);
        the hypervisor then RMPUPDATEs the frame to the guest at that GPA (Validated clear)
        and the guest takes a #VC: its code decides what happens next.
        """
        def body(trace: _Trace) -> Outcome:
            guest, page, start = victim.guest, victim.secret_page, len(victim.kernel.log)
            (frame,) = self.allocate(1, protected=False)
            self.machine.rules.host_store(frame, ATTACKER_BYTES)
            trace(f"NPT: guest page {page:#x} -> host frame {frame:#x} (attacker bytes)")
            self._map(guest, page, frame)
            return self._consume_or_fix(victim, victim.secret_page, {page: frame}, trace,
                                        start)
        return self._attempt(Attack.REMAP, victim, body)

    def swap(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Exchange the frames behind the secret's page and another guest page."""
        def body(trace: _Trace) -> Outcome:
            guest, a, b = victim.guest, victim.secret_page, victim.other_page
            start = len(victim.kernel.log)
            fa, fb = guest.table[a], guest.table[b]
            assert fa is not None and fb is not None
            self._map(guest, a, fb)
            self._map(guest, b, fa)
            trace(f"NPT: guest page {a:#x} -> frame {fb:#x}, page {b:#x} -> frame {fa:#x}")
            return self._consume_or_fix(victim, a, {a: fb, b: fa}, trace, start)
        return self._attempt(Attack.SWAP, victim, body)

    def _map(self, guest: Guest, page: int, frame: int | None) -> None:
        """Point a guest page at a frame through whatever the mode lets the host use."""
        self.machine.rules.host_map(guest, page, frame)

    def _fix_rmp(self, victim: SecretKeepingWorkload, mapping: dict[int, int],
                 trace: _Trace) -> None:
        rules = self.machine.rules
        assert isinstance(rules, SnpRules)
        for page, frame in mapping.items():
            trace(f"RMPUPDATE frame {frame:#x} -> ASID {victim.guest.guest_id} GPA page "
                  f"{page:#x} (clears Validated; the old frame stays as it was)")
            rules.rmpupdate(frame, asid=victim.guest.guest_id, gpn=page)

    def _consume_or_fix(self, victim: SecretKeepingWorkload, page: int,
                        mapping: dict[int, int], trace: _Trace, start: int) -> Outcome:
        mode = self.machine.mode
        try:
            return _consume(victim, page, trace, mode, start)
        except HypervisorFault as exc:
            if not isinstance(self.machine.rules, SnpRules):
                raise
            trace(f"guest access -> {exc}")
        self._fix_rmp(victim, mapping, trace)
        return _consume(victim, page, trace, mode, start)

    def replay(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Keep an old copy of the page, let the guest write, put the old copy back.

        Under SGX the OS has no software path to EPC bytes (abort-page semantics); its
        channel is EPC paging, so it replays an old EWB blob through ELDU.
        """
        def body(trace: _Trace) -> Outcome:
            rules, page, frame = self.machine.rules, victim.secret_page, victim.secret_frame()
            start = len(victim.kernel.log)
            if isinstance(rules, SgxRules):
                old = rules.ewb(frame)
                trace(f"EWB frame {frame:#x}: blob v{old.version}; ELDU it back")
                rules.eldu(old, frame)
                victim.update(page)
                trace("enclave writes the page")
                new = rules.ewb(frame)
                trace(f"EWB again: blob v{new.version}; ELDU the old blob v{old.version}")
                rules.eldu(old, frame)
                return _consume(victim, page, trace, self.machine.mode, start)
            snapshot = rules.host_load(frame)
            trace(f"host load of frame {frame:#x} (snapshot)")
            victim.update(page)
            trace("guest writes the page")
            rules.host_store(frame, snapshot)
            trace(f"host store of the snapshot back to frame {frame:#x}")
            return _consume(victim, page, trace, self.machine.mode, start)
        return self._attempt(Attack.REPLAY, victim, body)

    def alias(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Double-validation aliasing: get a second frame accepted at the secret's GPA, let
        the guest write through it, then map the old (still valid) frame back.

        SEV-SNP: RMPUPDATE a host frame to the guest at that GPA, NPT to it; the guest's
        write takes a #VC. SGX2: EAUG a free EPC frame at the same linear page; the
        enclave's write takes a #PF on a PENDING page. Plain/SEV: just the NPT.
        """
        def body(trace: _Trace) -> Outcome:
            rules, guest, page = self.machine.rules, victim.guest, victim.secret_page
            old, start = victim.secret_frame(), len(victim.kernel.log)
            if isinstance(rules, SgxRules):
                (new,) = self.allocate(1, protected=True)
                rules.eaug(guest, new, page)
                trace(f"EAUG EPC frame {new:#x} at linear page {page:#x} (PENDING)")
            elif isinstance(rules, TdxRules):
                (new,) = self.allocate(1, protected=False)
                trace(f"TDH.MEM.PAGE.AUG frame {new:#x} at GPA page {page:#x}")
                rules.page_aug(guest, page, new)
            else:
                (new,) = self.allocate(1, protected=False)
                if isinstance(rules, SnpRules):
                    rules.rmpupdate(new, asid=guest.guest_id, gpn=page)
                    trace(f"RMPUPDATE frame {new:#x} -> ASID {guest.guest_id} GPA page "
                          f"{page:#x}; frame {old:#x} stays assigned and validated there")
            self._map(guest, page, new)
            trace(f"NPT: page {page:#x} -> frame {new:#x}")
            victim.update(page)
            trace(f"guest wrote the page (through frame {new:#x})")
            self._map(guest, page, old)
            trace(f"NPT: page {page:#x} -> frame {old:#x} again (the older copy)")
            return _consume(victim, page, trace, self.machine.mode, start)
        return self._attempt(Attack.ALIAS, victim, body)

    def page_state(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Change the page's hardware state without the guest asking.

        SEV-SNP: RMPUPDATE the private page to hypervisor-owned (shared), write it, RMPUPDATE
        it back to the guest: legal instructions, but Validated is now clear. SGX2 (the
        analogue): EREMOVE the page (no thread in the enclave) and EAUG a fresh one at the
        same linear address: it is PENDING. Plain/SEV: RMPUPDATE is #UD.
        """
        def body(trace: _Trace) -> Outcome:
            rules, guest = self.machine.rules, victim.guest
            page, frame, start = victim.secret_page, victim.secret_frame(), len(victim.kernel.log)
            if isinstance(rules, TdxRules):
                rules.page_remove(guest, page)
                trace(f"TDH.MEM.RANGE.BLOCK/TRACK/PAGE.REMOVE GPA page {page:#x}")
                rules.page_aug(guest, page, frame)
                trace(f"TDH.MEM.PAGE.AUG frame {frame:#x} at GPA page {page:#x}: a zero page, "
                      "PENDING")
                return _consume(victim, page, trace, self.machine.mode, start)
            if isinstance(rules, SgxRules):
                rules.eremove(frame)
                trace(f"EREMOVE EPC frame {frame:#x} (no thread inside the enclave)")
                rules.eaug(guest, frame, page)
                trace(f"EAUG frame {frame:#x} at linear page {page:#x}: a zero page, PENDING")
                return _consume(victim, page, trace, self.machine.mode, start)
            trace(f"RMPUPDATE frame {frame:#x} -> hypervisor-owned (private -> shared)")
            rules.rmpupdate(frame, asid=None)
            rules.host_store(frame, ATTACKER_BYTES)
            trace("host store of attacker bytes (allowed: the frame is the host's now)")
            rules.rmpupdate(frame, asid=guest.guest_id, gpn=page)
            trace(f"RMPUPDATE frame {frame:#x} -> ASID {guest.guest_id} (shared -> private; "
                  "Validated cleared)")
            return _consume(victim, page, trace, self.machine.mode, start)
        return self._attempt(Attack.PAGE_STATE, victim, body)

    def psc_substitution(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Substitute the frame while the guest converts its page private -> shared ->
        private (GHCB Page State Change), keeping the original frame valid at that GPA.

        Before the guest rescinds validation, the NPT points the page at a substitute
        (assigned to the guest at that GPA, not validated): the rescind hits the substitute
        and reports no update, and the original stays Guest-Valid. After the conversion
        back, the guest writes the page; the hypervisor maps the original back.
        """
        def body(trace: _Trace) -> Outcome:
            rules, guest, kernel = self.machine.rules, victim.guest, victim.kernel
            page, old, start = victim.secret_page, victim.secret_frame(), len(kernel.log)
            (sub,) = self.allocate(1, protected=False)
            if isinstance(rules, SnpRules):
                rules.rmpupdate(sub, asid=guest.guest_id, gpn=page)
            self._map(guest, page, sub)
            trace(f"NPT: page {page:#x} -> substitute frame {sub:#x} before the guest "
                  "rescinds it")
            kernel.set_shared(page, True)
            trace("guest converted the page to shared (rescind, then Page State Change)")
            kernel.store(page, b"\0" * PAGE_SIZE)
            trace("guest used the shared page as a bounce buffer")
            kernel.set_shared(page, False)
            trace("guest converted it back to private and validated it")
            victim.update(page)
            trace(f"guest wrote the page (through frame {sub:#x})")
            self._map(guest, page, old)
            trace(f"NPT: page {page:#x} -> original frame {old:#x} (still valid there)")
            return _consume(victim, page, trace, self.machine.mode, start)
        return self._attempt(Attack.PSC_SUBSTITUTION, victim, body)

    def service_leak(self, victim: SecretKeepingWorkload) -> AttackResult:
        """SEVered: map the page a guest service returns onto the secret's frame, then ask
        the service for it. Under SEV-SNP the hypervisor fixes the RMP after the #NPF."""
        def body(trace: _Trace) -> Outcome:
            guest, page, frame = victim.guest, victim.other_page, victim.secret_frame()
            self._map(guest, page, frame)
            trace(f"NPT: service page {page:#x} -> the secret's frame {frame:#x}")
            try:
                reply = victim.serve()
            except HypervisorFault as exc:
                if not isinstance(self.machine.rules, SnpRules):
                    raise
                trace(f"guest access -> {exc}")
                self._fix_rmp(victim, {page: frame}, trace)
                reply = victim.serve()
            trace("the guest service replied; the reply leaves the VM through the host")
            outcome = _observed(reply, victim.secret, trace, self.machine.mode)
            if outcome is Outcome.OBSERVED_PLAINTEXT:
                naive = any(line.startswith("naive guest") for line in victim.kernel.log)
                rule = ("guest policy accepted the remapped frame and the service decrypted "
                        "it" if naive else "remapping through a guest service decrypts "
                        "the secret")
                return trace.decide(outcome, rule, sources.SEVERED)
            return outcome
        return self._attempt(Attack.SERVICE_LEAK, victim, body)

    def ciphertext_compare(self, victim: SecretKeepingWorkload) -> AttackResult:
        """CipherLeaks: snapshot the secret page's ciphertext across a constant-time loop."""
        def body(trace: _Trace) -> Outcome:
            frame = victim.secret_frame()
            return _compare(victim, lambda: self.machine.rules.host_load(frame), trace,
                            self.machine.mode)
        return self._attempt(Attack.CIPHERTEXT_COMPARE, victim, body)


def _attempt(mode: Mode, attack: Attack, victim: SecretKeepingWorkload,
             body: Callable[[_Trace], Outcome]) -> AttackResult:
    """Run an attack's steps; an exception raised on the way (by the hardware or by the
    guest's code) decides the outcome."""
    trace = _Trace()
    victim.kernel.sink = trace
    try:
        outcome = body(trace)
    except GuestTerminated as exc:
        trace(f"guest: {exc}")
        outcome = trace.decide(Outcome.DETECTED_BY_GUEST, exc.rule, exc.source)
    except MachineCheck as exc:
        trace(str(exc))
        outcome = trace.decide(Outcome.MACHINE_CHECK, exc.rule, exc.source)
    except PlatformLocked as exc:
        trace(str(exc))
        outcome = trace.decide(Outcome.PLATFORM_LOCKED, exc.rule, exc.source)
    except UndefinedInstruction as exc:
        trace(str(exc))
        outcome = trace.decide(Outcome.NOT_APPLICABLE, exc.rule, exc.source)
    except (GuestException, IntegrityViolation) as exc:
        trace(f"{exc}: the guest crashes on it")
        outcome = trace.decide(Outcome.DETECTED_BY_GUEST, exc.rule, exc.source)
    except HypervisorFault as exc:
        trace(str(exc))
        outcome = trace.decide(Outcome.FAULT_TO_HYPERVISOR, exc.rule, exc.source)
    finally:
        victim.kernel.sink = None
    return AttackResult(attack, mode, outcome, tuple(trace.lines), trace.rule,
                        trace.source, victim.kernel.policy.name)


class PhysicalAttacker:
    """Direct DRAM access (interposer, cold boot): no CPU rule applies."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.log: list[AttackResult] = []

    def run(self, attack: Attack, victim: SecretKeepingWorkload) -> AttackResult:
        """Run one physical attack by name."""
        bodies = {Attack.DRAM_READ: self._read, Attack.DRAM_REPLAY: self._replay,
                  Attack.DRAM_CIPHERTEXT_COMPARE: self._compare}
        if attack not in bodies:
            raise PlatformError(f"{attack.value} is a hypervisor attack, not a physical one")
        result = _attempt(self.machine.mode, attack, victim,
                          lambda trace: bodies[attack](victim, trace))
        self.log.append(result)
        return result

    def dram_read(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Read the secret's frame straight off the DRAM chips."""
        return self.run(Attack.DRAM_READ, victim)

    def dram_replay(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Snapshot the frame and all metadata DRAM, let the guest write, restore both."""
        return self.run(Attack.DRAM_REPLAY, victim)

    def dram_ciphertext_compare(self, victim: SecretKeepingWorkload) -> AttackResult:
        """Compare DRAM ciphertext across the guest's constant-time loop."""
        return self.run(Attack.DRAM_CIPHERTEXT_COMPARE, victim)

    def _read(self, victim: SecretKeepingWorkload, trace: _Trace) -> Outcome:
        frame = victim.secret_frame()
        trace(f"DRAM read of frame {frame:#x}")
        return _observed(self.machine.memory.load(frame), victim.secret, trace,
                         self.machine.mode)

    def _compare(self, victim: SecretKeepingWorkload, trace: _Trace) -> Outcome:
        frame = victim.secret_frame()
        return _compare(victim, lambda: self.machine.memory.load(frame), trace,
                        self.machine.mode)

    def _replay(self, victim: SecretKeepingWorkload, trace: _Trace) -> Outcome:
        memory, frame, page = self.machine.memory, victim.secret_frame(), victim.secret_page
        start = len(victim.kernel.log)
        data, meta = memory.load(frame), memory.meta_load(0, memory.metadata_size)
        trace(f"DRAM snapshot of frame {frame:#x} and {len(meta)} bytes of metadata "
              "(MACs, integrity-tree nodes)")
        victim.update(page)
        trace("guest writes the page")
        memory.store(frame, data)
        memory.meta_store(0, meta)
        trace("DRAM restore of the snapshot")
        return _consume(victim, page, trace, self.machine.mode, start)
