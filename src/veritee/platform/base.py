"""One attester interface for every platform: evidence, derived keys, counters, randomness.

Every platform - the emulated SEV-SNP guest, the emulated TDX TD, the emulated SGX enclave,
a real SEV-SNP guest (``/dev/sev-guest``), a real TD (configfs-tsm; no sealing key, so its
``derive_key`` refuses and points to the key broker) - answers the same four calls through
:class:`Platform`; the adapters in :mod:`veritee.platform.adapters` wrap each one. What each
call means on each TEE:

=========  ==========================  ============================  ===========================
call       SEV-SNP                     TDX                           SGX
=========  ==========================  ============================  ===========================
evidence   ATTESTATION_REPORT + the    TD quote v4 (TD QE); the      SGX quote v3 (QE); the
           certificate table           quote carries its PCK chain   quote carries its PCK chain
derive_key MSG_KEY_REQ (VCEK root):    key-service TD over the       EGETKEY SEAL:
           ``measurement``/``signer``  TDREPORT: ``mrtd``,           ``mrenclave``/``mrsigner``
                                       ``mrtd+rtmr``, ``mrowner``
counters   secure-processor NV         none in TDX 1.x (``None``)    none (PSE counters are
           counters (emulated)                                       gone) (``None``)
random     the SP TRNG (emulated:      RDSEED in the TD (emulated:   RDSEED in the enclave
           host CSPRNG)                host CSPRNG)                  (emulated: host CSPRNG)
=========  ==========================  ============================  ===========================

A TPM platform (swtpm or ``/dev/tpmrm0``, :class:`~veritee.platform.adapters.TpmAdapter`)
answers the same calls: a TPM2_Quote, keys from an owner-hierarchy HMAC primary (bound to PCR
values for ``pcr``), NV counters, TPM2_GetRandom.

Sealing (:mod:`veritee.sealing`) runs on every one of them through one
``SealingKeySource`` (:mod:`veritee.sealing.platforms`): MSG_KEY_REQ, the TD key service,
EGETKEY with a KEYID per seal, a PCR-bound TPM key; ``derive_key`` here is the simpler
deterministic key for other purposes (HKDF-expanded over a context).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Evidence", "Platform"]


@dataclass(frozen=True)
class Evidence:
    """Evidence bound to 64 bytes of report data, in the TEE's real byte format.

    ``tee`` is the scheme name the verifier registry uses (``sevsnp``, ``tdx``, ``sgx``);
    ``endorsements`` is what the platform hands out with it (the SEV-SNP certificate table;
    empty for Intel quotes, which carry their PCK chain).
    """

    tee: str
    data: bytes
    endorsements: bytes = b""


@runtime_checkable
class Platform(Protocol):
    """What a workload asks of the TEE it runs in."""

    name: str
    """``sevsnp``, ``tdx``, ``sgx`` (or ``tpm``)."""

    description: str
    """For humans: what this is (and ``INSECURE`` when emulated)."""

    def evidence(self, report_data: bytes) -> Evidence:
        """Evidence carrying exactly these 64 bytes of report data."""
        ...

    def derive_key(self, policy: str, context: bytes = b"") -> bytes:
        """A 32-byte key that only a workload matching ``policy`` gets again.

        ``policy`` names are per TEE (see the module table); an unknown name raises
        :class:`~veritee.errors.PlatformError`.
        """
        ...

    def random(self, n: int) -> bytes:
        """``n`` bytes from the platform's hardware RNG."""
        ...

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]:
        """Evidence and endorsements as the attester client wants them."""
        ...

    @property
    def counters(self) -> object | None:
        """Monotonic counters (:class:`veritee.sealing.MonotonicCounters`), or ``None``."""
        ...
