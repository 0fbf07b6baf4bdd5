"""Run every attack against every mode and guest, and collect the outcomes: nothing here is
declared.

Each cell gets a fresh :class:`.Machine` with one guest running a
:class:`.SecretKeepingWorkload` under a guest policy (careful or naive); the attack runs
through the hardware rules and the guest's code, and the outcome, with the rule that
produced it and the rule's source, is whatever happened. Change a rule and the matrix
changes.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from veritee.platform.emulated.isolation.faults import Outcome
from veritee.platform.emulated.isolation.guest import Mode
from veritee.platform.emulated.isolation.hypervisor import (
    Attack,
    AttackResult,
    MaliciousHypervisor,
    PhysicalAttacker,
)
from veritee.platform.emulated.isolation.kernel import GUEST_POLICIES, policy_named
from veritee.platform.emulated.isolation.memory import CpuGeneration
from veritee.platform.emulated.isolation.scope import NOT_MODELLED
from veritee.platform.emulated.isolation.stack import (
    ATTESTATION_TCB,
    DEFAULT_GENERATION,
    ISOLATION_TCB,
    Component,
    Machine,
    TcbRow,
)
from veritee.platform.emulated.isolation.workload import (
    SecretKeepingWorkload,
    p384_private_key_secret,
    scan_physical_memory,
)

__all__ = [
    "ATTACKS",
    "GUESTS",
    "MODES",
    "OutcomeMatrix",
    "generations_text",
    "not_modelled_text",
    "run_attack",
    "run_matrix",
    "secret_scan",
    "tcb_table_dict",
    "tcb_table_text",
]

MODES: tuple[Mode, ...] = tuple(Mode)
ATTACKS: tuple[Attack, ...] = tuple(Attack)
GUESTS: tuple[str, ...] = tuple(GUEST_POLICIES)
DEFAULT_PAGES = 64


def _machine(mode: Mode, pages: int, rng: Callable[[int], bytes], *,
             generation: CpuGeneration | None, ciphertext_hiding: bool) -> Machine:
    hiding = ciphertext_hiding and mode is Mode.SEV_SNP
    if not mode.amd:
        generation = None
    elif hiding and generation is None:
        generation = CpuGeneration.TURIN
    return Machine.for_guest(mode, pages, generation=generation, ciphertext_hiding=hiding,
                             rng=rng)


def _setup(mode: Mode, pages: int, secret: bytes | None, rng: Callable[[int], bytes], *,
           guest: str = "careful", generation: CpuGeneration | None = None,
           ciphertext_hiding: bool = False) -> tuple[Machine, SecretKeepingWorkload]:
    machine = _machine(mode, pages, rng, generation=generation,
                       ciphertext_hiding=ciphertext_hiding)
    vm = machine.launch(pages)
    return machine, SecretKeepingWorkload(machine, vm, secret or p384_private_key_secret(),
                                          policy=policy_named(guest))


def run_attack(attack: Attack, mode: Mode, *, pages: int = DEFAULT_PAGES,
               guest: str = "careful", secret: bytes | None = None,
               generation: CpuGeneration | None = None, ciphertext_hiding: bool = False,
               rng: Callable[[int], bytes] = os.urandom) -> AttackResult:
    """Launch a guest under ``mode`` with the ``guest`` policy ("careful" or "naive"), keep
    a secret in it, run ``attack``, return the result."""
    machine, victim = _setup(mode, pages, secret, rng, guest=guest, generation=generation,
                             ciphertext_hiding=ciphertext_hiding)
    if attack.physical:
        return PhysicalAttacker(machine).run(attack, victim)
    return MaliciousHypervisor.take_over(machine).run(attack, victim)


def secret_scan(mode: Mode, *, pages: int = DEFAULT_PAGES, secret: bytes | None = None,
                rng: Callable[[int], bytes] = os.urandom) -> list[int]:
    """Launch a guest that keeps a secret; return where the secret's bytes are in DRAM."""
    machine, victim = _setup(mode, pages, secret, rng)
    return scan_physical_memory(machine, victim.secret)


@dataclass(frozen=True)
class OutcomeMatrix:
    """Attacks x modes x guest policies, each cell an :class:`.AttackResult` that was run."""

    attacks: tuple[Attack, ...]
    modes: tuple[Mode, ...]
    guests: tuple[str, ...]
    results: Mapping[tuple[Attack, Mode, str], AttackResult]
    scan: Mapping[Mode, int]  # how many times the secret was found in DRAM
    ciphertext_hiding: bool = False
    generation: CpuGeneration | None = None

    def outcome(self, attack: Attack, mode: Mode, guest: str = "careful") -> Outcome:
        """The outcome of one cell."""
        return self.results[attack, mode, guest].outcome

    def machine_of(self, mode: Mode) -> str:
        """The processor generation a mode's column ran on."""
        if not mode.amd:
            return DEFAULT_GENERATION[mode].value
        if self.ciphertext_hiding and mode is Mode.SEV_SNP and self.generation is None:
            return CpuGeneration.TURIN.value + ", ciphertext hiding"
        gen = (self.generation or DEFAULT_GENERATION[mode]).value
        return gen + (", ciphertext hiding" if self.ciphertext_hiding
                      and mode is Mode.SEV_SNP else "")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: every cell with its outcome, rule, source and trace."""
        return {
            "modes": [{"name": m.value, "machine": self.machine_of(m)} for m in self.modes],
            "guests": {g: GUEST_POLICIES[g].description for g in self.guests},
            "ciphertext_hiding": self.ciphertext_hiding,
            "attacks": [{"name": a.value, "attacker": "physical" if a.physical else
                         "hypervisor", "description": a.description} for a in self.attacks],
            "outcomes": {g: {a.value: {m.value: self.outcome(a, m, g).name
                                       for m in self.modes} for a in self.attacks}
                         for g in self.guests},
            "cells": [self.results[a, m, g].to_dict() for g in self.guests
                      for a in self.attacks for m in self.modes],
            "secret_scan": {m.value: self.scan[m] for m in self.modes},
        }

    def table(self, guest: str) -> str:
        """One guest policy's attacks x modes table."""
        widths = [max(len(m.value), *(len(self.outcome(a, m, guest).name)
                                      for a in self.attacks)) + 2 for m in self.modes]
        name_w = max(len(a.value) for a in self.attacks) + 2
        head = f"{'attack':<{name_w}}" + "".join(
            f"{m.value:<{w}}" for m, w in zip(self.modes, widths, strict=True))
        lines = [head.rstrip(), "-" * len(head.rstrip())]
        for attack in self.attacks:
            lines.append((f"{attack.value:<{name_w}}" + "".join(
                f"{self.outcome(attack, m, guest).name:<{w}}"
                for m, w in zip(self.modes, widths, strict=True))).rstrip())
        lines.append("-" * len(head.rstrip()))
        lines.append((f"{'secret scan':<{name_w}}" + "".join(
            f"{(f'found x{self.scan[m]}' if self.scan[m] else 'not found'):<{w}}"
            for m, w in zip(self.modes, widths, strict=True))).rstrip())
        return "\n".join(lines)

    def to_text(self) -> str:
        """A table per guest policy, the machines, and a legend of the attacks."""
        parts: list[str] = []
        for guest in self.guests:
            parts.append(f"Guest: {guest} ({GUEST_POLICIES[guest].description})\n")
            parts.append(self.table(guest))
            parts.append("")
        parts.append("Machines: " + "; ".join(f"{m.value} = {self.machine_of(m)}"
                                              for m in self.modes))
        parts.append("")
        name_w = max(len(a.value) for a in self.attacks) + 2
        for a in self.attacks:
            parts += textwrap.wrap(f"{a.value:<{name_w}}{a.description}", width=98,
                                   initial_indent="  ", subsequent_indent=" " * (name_w + 2))
        return "\n".join(parts)


def run_matrix(modes: Iterable[Mode] = MODES, attacks: Iterable[Attack] = ATTACKS, *,
               guests: Iterable[str] = GUESTS, pages: int = DEFAULT_PAGES,
               secret: bytes | None = None, generation: CpuGeneration | None = None,
               ciphertext_hiding: bool = False,
               rng: Callable[[int], bytes] = os.urandom) -> OutcomeMatrix:
    """Run every attack on every mode for every guest policy (a fresh machine per cell) and
    scan DRAM for the secret. ``generation`` applies to the AMD columns; with
    ``ciphertext_hiding`` the SEV-SNP column runs on Zen 5 with ciphertext hiding on."""
    modes, attacks, guests = tuple(modes), tuple(attacks), tuple(guests)
    secret = secret or p384_private_key_secret()
    results = {(a, m, g): run_attack(a, m, pages=pages, guest=g, secret=secret,
                                     generation=generation if m.amd else None,
                                     ciphertext_hiding=ciphertext_hiding, rng=rng)
               for g in guests for a in attacks for m in modes}
    scan = {m: len(secret_scan(m, pages=pages, secret=secret, rng=rng)) for m in modes}
    return OutcomeMatrix(attacks, modes, guests, results, scan, ciphertext_hiding, generation)


def _tcb_rows_dict(rows: tuple[TcbRow, ...]) -> list[dict[str, object]]:
    return [{"technology": row.technology.value,
             "emulated_mode": row.mode.value if row.mode else None,
             "tcb": {c.value: {"trust": row.cells[c].trust.value,
                               "source": row.cells[c].source} for c in Component},
             "inside_tcb": [c.value for c in row.inside()],
             "notes": list(row.notes)} for row in rows]


def tcb_table_dict() -> dict[str, list[dict[str, object]]]:
    """Both TCB tables, JSON-ready, with a source per cell."""
    return {"isolation": _tcb_rows_dict(ISOLATION_TCB),
            "attestation": _tcb_rows_dict(ATTESTATION_TCB)}


def _tcb_text(rows: tuple[TcbRow, ...]) -> list[str]:
    widths = [max(len(c.value), 7) + 2 for c in Component]
    name_w = max(len(t.technology.value) for t in rows) + 2
    head = f"{'technology':<{name_w}}" + "".join(
        f"{c.value:<{w}}" for c, w in zip(Component, widths, strict=True))
    lines = [head.rstrip(), "-" * len(head.rstrip())]
    for row in rows:
        lines.append((f"{row.technology.value:<{name_w}}" + "".join(
            f"{row.trust[c].value:<{w}}" for c, w in zip(Component, widths, strict=True)))
            .rstrip())
    lines.append("")
    for row in rows:
        for note in row.notes:
            lines += textwrap.wrap(f"{row.technology.value}: {note}", width=98,
                                   initial_indent="  ", subsequent_indent="    ")
    return lines


def tcb_table_text() -> str:
    """The isolation TCB and the attestation TCB (``yes`` when inside), then the sources."""
    lines = ["Isolation TCB (who can break the guest's memory and state)", ""]
    lines += _tcb_text(ISOLATION_TCB)
    lines += ["", "Attestation TCB (who can forge or taint the evidence)", ""]
    lines += _tcb_text(ATTESTATION_TCB)
    lines += ["", "  yes: inside the TCB; partial: trusted for some properties; no: outside; "
              "-: not involved", "", "Sources of the cells:"]
    seen: list[str] = []
    for rows in (ISOLATION_TCB, ATTESTATION_TCB):
        for row in rows:
            for c in Component:
                if row.cells[c].source not in seen:
                    seen.append(row.cells[c].source)
    for i, source in enumerate(seen, 1):
        lines += textwrap.wrap(f"[{i}] {source}", width=98, initial_indent="  ",
                               subsequent_indent="      ")
    return "\n".join(lines)


def generations_text() -> str:
    """Memory encryption per processor generation, as the engine runs it."""
    width = max(len(g.value) for g in CpuGeneration) + 2
    lines = [f"  {g.value:<{width}}{g.cipher}" + (" (ciphertext hiding available)"
                                                  if g.ciphertext_hiding else "")
             for g in CpuGeneration]
    return "\n".join(lines)


def not_modelled_text() -> str:
    """Known attacks outside the model, one line each."""
    lines: list[str] = []
    for name, what, why in NOT_MODELLED:
        lines += textwrap.wrap(f"{name}: {what}; {why}.", width=98, initial_indent="  * ",
                               subsequent_indent="    ")
    return "\n".join(lines)
