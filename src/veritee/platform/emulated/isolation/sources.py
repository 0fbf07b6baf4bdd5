"""The documents each rule of the model comes from: cited by every matrix cell and TCB cell.

One short string per source, so that ``veritee isolation --format json`` can say, for each
cell, which rule produced it and where that rule is written down.
"""

from __future__ import annotations

__all__ = [
    "APM_PVALIDATE",
    "APM_RMP",
    "APM_RMPADJUST",
    "APM_SEV",
    "CIPHERLEAKS",
    "COSTAN_SGX",
    "CTH",
    "GHCB_PSC",
    "KVM_SELFTEST_VC",
    "MEE",
    "PHYSICAL",
    "PLAIN",
    "SDM_SGX2",
    "SDM_SGX_EPCM",
    "SDM_SGX_PAGING",
    "SEVERED",
    "SEVURITY",
    "SNP_ABI_LAUNCH",
    "SNP_WHITEPAPER",
    "TDX_LI",
    "TDX_MODULE",
    "TDX_SEPT",
    "TME_MK",
    "UD",
]

PLAIN = "ordinary virtualisation: the hypervisor owns the guest's memory and page tables"
APM_SEV = ("AMD64 APM Vol. 2 (24593) 15.34 'Secure Encrypted Virtualization': "
           "encryption only, no integrity; the hypervisor owns the nested page table")
APM_RMP = ("AMD64 APM Vol. 2 (24593) 15.36 'Secure Nested Paging': RMP checks "
           "(ownership, GPA, Validated, VMPL permissions)")
APM_PVALIDATE = ("AMD64 APM Vol. 3 (24594) PVALIDATE: rFLAGS.CF=1 (FAIL_NOUPDATE) when "
                 "Validated already had the requested value; RMPUPDATE clears Validated")
APM_RMPADJUST = ("AMD64 APM Vol. 3 (24594) RMPADJUST: the target page must be assigned to "
                 "the guest at that GPA and validated")
SNP_WHITEPAPER = ("AMD, 'SEV-SNP: Strengthening VM Isolation with Integrity Protection and "
                  "More' (2020), 'Page Validation': a guest must validate each GPA only once")
SNP_ABI_LAUNCH = ("AMD SEV-SNP Firmware ABI (56860) SNP_LAUNCH_UPDATE: the firmware "
                  "encrypts, measures and validates each launch page")
GHCB_PSC = ("AMD GHCB spec (56421) 'Page State Change': rescind (PVALIDATE 0) before "
            "private->shared, PVALIDATE after shared->private")
KVM_SELFTEST_VC = ("Linux KVM SEV selftests' #VC handler: PVALIDATE on every "
                   "SVM_EXIT_NOT_VALIDATED (0x404), no bitmap")
SEVERED = ("Morbitzer et al., 'SEVered: Subverting AMD's Virtual Machine Encryption', "
           "EuroSec 2018: remap a page a guest service returns")
CIPHERLEAKS = ("Li et al., 'CipherLeaks: Breaking Constant-time Cryptography on AMD SEV "
               "via the Ciphertext Side Channel', USENIX Security 2021")
CTH = ("AMD SEV-SNP ciphertext hiding (Zen 5): host reads of SNP private memory return "
       "0xff (Linux 6.18 'kvm-amd.ciphertext_hiding_asids')")
SEVURITY = ("Wilke et al., 'SEVurity: No Security Without Integrity', IEEE S&P 2020: "
            "Zen 1's linear XEX tweak")
SDM_SGX_EPCM = ("Intel SDM Vol. 3D, SGX: EPCM checks on enclave access, abort-page "
                "semantics for non-enclave access to the PRM")
SDM_SGX_PAGING = "Intel SDM Vol. 3D, SGX: EWB/ELDU with Version Array slots and PCMD MAC"
SDM_SGX2 = ("Intel SDM Vol. 3D, SGX2: EAUG adds a PENDING page, EMODPR sets MODIFIED, "
            "EACCEPT by the enclave; access to a PENDING/MODIFIED page is #PF")
COSTAN_SGX = "Costan and Devadas, 'Intel SGX Explained', IACR ePrint 2016/086"
MEE = ("Gueron, 'A Memory Encryption Engine Suitable for General Purpose Processors', "
       "ePrint 2016/204: AES-CTR seeded by address and version, MACs, integrity tree, "
       "drop-and-lock on failure")
TME_MK = ("Intel 'Multi-Key Total Memory Encryption' spec; scalable SGX (3rd-gen Xeon "
          "Scalable) encrypts the EPC with TME-MK AES-XTS: no integrity tree, no replay "
          "protection")
TDX_SEPT = ("Intel TDX Module Base Architecture spec: the Secure EPT is written only by the "
            "TDX module (TDH.MEM.PAGE.AUG/REMOVE); PAMT lets a page belong to one TD at one "
            "GPA; TDG.MEM.PAGE.ACCEPT by the TD; a PENDING page raises #VE")
TDX_LI = ("Intel TDX whitepaper 'Memory Confidentiality and Integrity': MKTME AES-XTS-128 "
          "per TD key ID; logical integrity: non-TD reads of TD lines return zeros, non-TD "
          "writes clear the TD-owner bit and a TD read of such a line is a #MC; no replay "
          "protection against physical attacks")
TDX_MODULE = ("Intel TDX Module Base Architecture spec: the TDX module runs in SEAM mode; "
              "TD quotes come from the SGX-based TD Quoting Enclave")
PHYSICAL = ("a DRAM interposer or cold-boot attacker reads and writes DRAM directly, "
            "bypassing every CPU check")
UD = "the mode has no such instruction: #UD"
