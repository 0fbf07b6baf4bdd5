"""What the isolation model does not model: known attacks outside it, one line each.

``veritee isolation`` prints this list under the matrix, and docs/isolation.md carries it;
a cell of the matrix says nothing about these.
"""

from __future__ import annotations

__all__ = ["NOT_MODELLED"]

#: (name, what it does, why the model does not show it, source)
NOT_MODELLED: tuple[tuple[str, str, str], ...] = (
    ("CacheWarp", "software replay on SEV-ES/SEV-SNP: the hypervisor drops dirty cache lines "
     "with INVD, reverting guest memory to stale values", "the model has no caches "
     "(Zhang et al., USENIX Security 2024; AMD-SB-3005)"),
    ("BadRAM", "a rogue SPD chip makes DRAM alias two physical addresses, so the RMP "
     "protects one and the attacker writes the other", "the model's DRAM decodes addresses "
     "faithfully (De Meulemeester et al., IEEE S&P 2025; AMD-SB-3015)"),
    ("Heckler / WeSee", "the hypervisor injects interrupts or a #VC (vector 29) into the "
     "guest to run its handlers at the wrong time", "the model has no interrupt delivery "
     "(Schlüter et al., USENIX Security 2024; IEEE S&P 2024)"),
    ("SEV-Step and controlled channels", "every FAULT_TO_HYPERVISOR tells the hypervisor "
     "which page was touched; single-stepping with APIC timers sharpens it",
     "the model reports the fault, not the information it leaks (Wilke et al., TCHES 2024; "
     "Xu et al., IEEE S&P 2015)"),
    ("DMA / IOMMU", "devices write guest memory; SNP checks DMA against the RMP through the "
     "IOMMU, SGX blocks DMA to the PRM", "the model has no devices"),
    ("SEV-ES register state", "without SEV-ES the hypervisor reads and writes the guest's "
     "registers at every exit", "the model has memory only (AMD SEV-ES whitepaper, 2017)"),
    ("2 MiB pages", "PVALIDATE/RMPUPDATE on 2 MiB pages, PSMASH, size mismatches "
     "(FAIL_SIZEMISMATCH)", "the model works per 4 KiB page"),
    ("Zen 1 block moves", "SEVurity moved ciphertext blocks under Zen 1's linear tweak to "
     "inject code", "the engine models Zen 1's tweak (CpuGeneration.NAPLES) but no matrix "
     "row moves blocks (Wilke et al., IEEE S&P 2020)"),
    ("TDX beyond private memory", "shared memory (MapGPA, the shared EPT), cryptographic "
     "integrity (Ci), SEPT_VE_DISABLE, TD partitioning", "the tdx column models private "
     "memory with logical integrity only"),
)
