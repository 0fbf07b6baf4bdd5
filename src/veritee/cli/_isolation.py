"""``veritee isolation``: run the attacks x modes x guests matrix and print it with the
TCB tables, the memory encryption per processor generation and what is not modelled.

Every cell is computed by running the attack on a fresh emulated machine
(:func:`veritee.platform.emulated.isolation.run_matrix`), never looked up; the JSON output
carries each cell's outcome, the rule that produced it, the rule's source and the trace.
"""

from __future__ import annotations

import argparse

from veritee.cli import AddCommand, add_format_arg
from veritee.errors import ConfigError

__all__ = ["register", "render_isolation", "run_isolation"]


def render_isolation(*, fmt: str = "text", pages: int = 64,
                     ciphertext_hiding: bool = False, generation: str | None = None) -> str:
    """Run the matrix and render it with the TCB tables (the text docs/isolation.md and
    the README embed is this function's output)."""
    from veritee.platform.emulated.isolation.matrix import (
        generations_text,
        not_modelled_text,
        run_matrix,
        tcb_table_dict,
        tcb_table_text,
    )
    from veritee.platform.emulated.isolation.memory import CpuGeneration
    from veritee.platform.emulated.isolation.scope import NOT_MODELLED

    if not 2 <= pages <= 65536:
        raise ConfigError(f"--pages: got {pages}, want 2..65536")
    # SEV-SNP (a column of the matrix) needs Zen 3 or later.
    amd = {g.name.lower(): g for g in CpuGeneration
           if g.amd and g not in (CpuGeneration.NAPLES, CpuGeneration.ROME)}
    gen = None
    if generation is not None:
        if generation not in amd:
            raise ConfigError(f"--generation: got {generation!r}, want one of "
                              f"{', '.join(amd)}")
        gen = amd[generation]
    if ciphertext_hiding and gen is not None and not gen.ciphertext_hiding:
        raise ConfigError(f"--ciphertext-hiding needs --generation turin, not {generation}")
    matrix = run_matrix(pages=pages, generation=gen, ciphertext_hiding=ciphertext_hiding)
    if fmt == "json":
        import json

        return json.dumps({"pages": pages, "matrix": matrix.to_dict(),
                           "tcb": tcb_table_dict(),
                           "memory_encryption": {g.value: {"cipher": g.cipher,
                                                           "key_bits": g.key_bits}
                                                 for g in CpuGeneration},
                           "not_modelled": [{"name": n, "what": w, "why": y}
                                            for n, w, y in NOT_MODELLED]}, indent=2)
    return "\n".join([
        f"Attacks x protection modes x guest code (each cell run on a fresh emulated machine, "
        f"{pages}-page guest keeping a P-384 private key)", "",
        matrix.to_text(), "", tcb_table_text(), "",
        "Memory encryption per processor generation", "", generations_text(), "",
        "Not modelled (known attacks outside this matrix)", "", not_modelled_text()])


def run_isolation(*, fmt: str = "text", pages: int = 64, ciphertext_hiding: bool = False,
                  generation: str | None = None) -> int:
    """Run the matrix, print it and the TCB tables; return 0."""
    print(render_isolation(fmt=fmt, pages=pages, ciphertext_hiding=ciphertext_hiding,
                           generation=generation))
    return 0


def _cmd(args: argparse.Namespace) -> int:
    return run_isolation(fmt=args.format, pages=args.pages,
                         ciphertext_hiding=args.ciphertext_hiding, generation=args.generation)


def register(add: AddCommand) -> None:
    """Add the ``isolation`` command."""
    p = add("isolation", "run hypervisor and physical attacks on emulated plain, SEV, "
            "SEV-SNP and SGX (client, scalable) memory, with a careful and a naive guest, "
            "and print the outcomes and each technology's TCBs", _cmd)
    p.add_argument("--pages", type=int, default=64, help="guest size in 4 KiB pages "
                   "(default 64)")
    add_format_arg(p, what="the matrix and the tables")
    p.add_argument("--ciphertext-hiding", action="store_true",
                   help="run SEV-SNP on Zen 5 (EPYC 9005) with ciphertext hiding on")
    p.add_argument("--generation", choices=("milan", "genoa", "turin"),
                   help="AMD processor generation for plain/sev/sev-snp (default milan; "
                   "SEV-SNP needs Zen 3 or later)")
