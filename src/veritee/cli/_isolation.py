"""``veritee isolation``: run the attacks x modes matrix and print it with the TCB table.

Every cell is computed by running the attack on a fresh emulated machine
(:func:`veritee.platform.emulated.isolation.run_matrix`), never looked up.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from veritee.errors import ConfigError

__all__ = ["register", "run_isolation"]

AddCommand = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]


def run_isolation(*, fmt: str = "text", pages: int = 64) -> int:
    """Run the matrix, print it and the TCB table; return 0."""
    from veritee.platform.emulated.isolation.matrix import (
        run_matrix,
        tcb_table_dict,
        tcb_table_text,
    )

    if not 2 <= pages <= 65536:
        raise ConfigError(f"--pages: got {pages}, want 2..65536")
    matrix = run_matrix(pages=pages)
    if fmt == "json":
        print(json.dumps({"pages": pages, "matrix": matrix.to_dict(),
                          "tcb": tcb_table_dict()}, indent=2))
        return 0
    print(f"Attacks x protection modes (each cell run on a fresh emulated machine, "
          f"{pages}-page guest keeping a P-384 private key)\n")
    print(matrix.to_text())
    print("\nTrusted computing base per technology\n")
    print(tcb_table_text())
    return 0


def _cmd(args: argparse.Namespace) -> int:
    return run_isolation(fmt=args.format, pages=args.pages)


def register(add: AddCommand) -> None:
    """Add the ``isolation`` command."""
    p = add("isolation", "run hypervisor and physical attacks on emulated plain, SEV, "
            "SEV-SNP and SGX memory and print the outcomes and each technology's TCB", _cmd)
    p.add_argument("--pages", type=int, default=64, help="guest size in 4 KiB pages "
                   "(default 64)")
    p.add_argument("--format", choices=("text", "json"), default="text")
