"""Run every attack against every mode and collect the outcomes: nothing here is declared.

Each cell gets a fresh :class:`.Machine` with one guest running a
:class:`.SecretKeepingWorkload`; the attack runs through the hardware rules and the outcome
is whatever happened. Change a rule and the matrix changes.
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
from veritee.platform.emulated.isolation.stack import TCB_TABLE, Component, Machine
from veritee.platform.emulated.isolation.workload import (
    SecretKeepingWorkload,
    p384_private_key_secret,
    scan_physical_memory,
)

__all__ = [
    "ATTACKS",
    "MODES",
    "OutcomeMatrix",
    "run_attack",
    "run_matrix",
    "secret_scan",
    "tcb_table_dict",
    "tcb_table_text",
]

MODES: tuple[Mode, ...] = (Mode.PLAIN, Mode.SEV, Mode.SEV_SNP, Mode.SGX)
ATTACKS: tuple[Attack, ...] = tuple(Attack)
DEFAULT_PAGES = 64


def _setup(mode: Mode, pages: int, secret: bytes | None,
           rng: Callable[[int], bytes]) -> tuple[Machine, SecretKeepingWorkload]:
    machine = Machine.for_guest(mode, pages, rng=rng)
    guest = machine.launch(pages)
    return machine, SecretKeepingWorkload(machine, guest, secret or p384_private_key_secret())


def run_attack(attack: Attack, mode: Mode, *, pages: int = DEFAULT_PAGES,
               secret: bytes | None = None,
               rng: Callable[[int], bytes] = os.urandom) -> AttackResult:
    """Launch a guest under ``mode``, keep a secret in it, run ``attack``, return the result."""
    machine, victim = _setup(mode, pages, secret, rng)
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
    """Attacks x modes, each cell an :class:`.AttackResult` that was actually run."""

    attacks: tuple[Attack, ...]
    modes: tuple[Mode, ...]
    results: Mapping[tuple[Attack, Mode], AttackResult]
    scan: Mapping[Mode, int]  # how many times the secret was found in DRAM

    def outcome(self, attack: Attack, mode: Mode) -> Outcome:
        """The outcome of one cell."""
        return self.results[attack, mode].outcome

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: outcome names per attack and mode, plus each cell's trace."""
        return {
            "modes": [m.value for m in self.modes],
            "attacks": [{"name": a.value, "attacker": "physical" if a.physical else
                         "hypervisor", "description": a.description} for a in self.attacks],
            "outcomes": {a.value: {m.value: self.outcome(a, m).name for m in self.modes}
                         for a in self.attacks},
            "traces": {a.value: {m.value: list(self.results[a, m].trace) for m in self.modes}
                       for a in self.attacks},
            "secret_scan": {m.value: self.scan[m] for m in self.modes},
        }

    def to_text(self) -> str:
        """The matrix as a table, with the secret-scan row and a legend."""
        width = max(len(o.name) for o in Outcome) + 2
        head = f"{'attack':<13}" + "".join(f"{m.value:<{width}}" for m in self.modes)
        lines = [head.rstrip(), "-" * len(head.rstrip())]
        for attack in self.attacks:
            row = f"{attack.value:<13}" + "".join(
                f"{self.outcome(attack, m).name:<{width}}" for m in self.modes)
            lines.append(row.rstrip())
        lines.append("-" * len(head.rstrip()))
        scan = f"{'secret scan':<13}" + "".join(
            f"{(f'found x{self.scan[m]}' if self.scan[m] else 'not found'):<{width}}"
            for m in self.modes)
        lines.append(scan.rstrip())
        lines.append("")
        lines += [f"  {a.value:<12} {a.description}" for a in self.attacks]
        return "\n".join(lines)


def run_matrix(modes: Iterable[Mode] = MODES, attacks: Iterable[Attack] = ATTACKS, *,
               pages: int = DEFAULT_PAGES, secret: bytes | None = None,
               rng: Callable[[int], bytes] = os.urandom) -> OutcomeMatrix:
    """Run every attack on every mode (a fresh machine per cell) and scan for the secret."""
    modes, attacks = tuple(modes), tuple(attacks)
    secret = secret or p384_private_key_secret()
    results = {(a, m): run_attack(a, m, pages=pages, secret=secret, rng=rng)
               for a in attacks for m in modes}
    scan = {m: len(secret_scan(m, pages=pages, secret=secret, rng=rng)) for m in modes}
    return OutcomeMatrix(attacks, modes, results, scan)


def tcb_table_dict() -> list[dict[str, object]]:
    """The TCB table, JSON-ready."""
    return [{"technology": row.technology.value,
             "emulated_mode": row.mode.value if row.mode else None,
             "tcb": {c.value: row.trust[c].value for c in Component},
             "inside_tcb": [c.value for c in row.inside()],
             "notes": list(row.notes)} for row in TCB_TABLE]


def tcb_table_text() -> str:
    """The TCB table: a column per component, ``yes`` when inside the TCB."""
    widths = [max(len(c.value), 7) + 2 for c in Component]
    head = f"{'technology':<11}" + "".join(f"{c.value:<{w}}" for c, w in zip(Component, widths,
                                                                              strict=True))
    lines = [head.rstrip(), "-" * len(head.rstrip())]
    for row in TCB_TABLE:
        lines.append((f"{row.technology.value:<11}" + "".join(
            f"{row.trust[c].value:<{w}}" for c, w in zip(Component, widths, strict=True))).rstrip())
    lines.append("")
    lines.append("  yes: inside the TCB; partial: trusted for some properties; no: outside; "
                 "-: not involved")
    for row in TCB_TABLE:
        for note in row.notes:
            lines += textwrap.wrap(f"{row.technology.value}: {note}", width=98,
                                   initial_indent="  ", subsequent_indent="    ")
    return "\n".join(lines)
