"""Sealing key sources for SGX, TDX and the TPM: one :class:`SealingKeySource` per TEE.

Each one fills the TEE's fields of the sealed header (:mod:`veritee.formats.sealed`) from a
:class:`~veritee.sealing.SealingPolicy`, and on the reader's side refuses a header weaker than
the policy the reader states before the platform derives the key (the header is written by
whoever sealed: it never vouches for itself). The tables in docs/sealing.md say what each
policy binds on each TEE; in short:

====  ===============================================  ========================================
TEE   ``measurement``                                  ``signer``
====  ===============================================  ========================================
SGX   EGETKEY(SEAL) KEYPOLICY.MRENCLAVE                KEYPOLICY.MRSIGNER (+ ISVPRODID), ISVSVN
                                                       = ``min_svn``: newer releases open, older
                                                       ones cannot
TDX   key-service TD over MRTD (+ RTMR0-2 with         key-service TD over MROWNER and
      ``bind_rtmrs``) and the TD ATTRIBUTES            MRCONFIGID (host-chosen: see the docs)
TPM   HMAC primary key whose template carries the      refused: a TPM has no signer identity
      PolicyPCR digest of ``pcrs`` (SHA-256 bank)
====  ===============================================  ========================================

Every SGX key also mixes in a CPUSVN (``bind_tcb``: the CPU's current one, else all zero):
EGETKEY refuses a CPUSVN above the CPU's, so data sealed after a microcode update does not open
after a downgrade, and the reader's ``min_cpu_svn`` refuses data sealed under an older TCB.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from veritee.errors import PlatformError, SealingError
from veritee.formats.sealed import (
    SealedHeader,
    SealPolicyKind,
    SealTee,
    SgxKeyParams,
    TdxKeyParams,
    TpmKeyParams,
)
from veritee.sealing._core import SealingKeySource, SealingPolicy, SnpSealing

if TYPE_CHECKING:
    from veritee.platform.emulated.sgx import EmulatedEnclave
    from veritee.platform.emulated.tdx import EmulatedTd
    from veritee.platform.tpm import TpmPlatform

__all__ = ["SgxSealing", "TdxSealing", "TpmSealing", "for_platform"]


def _params(header: SealedHeader, tee: SealTee, policy: SealingPolicy) -> Any:
    """The typed key parameters of ``header``, if it is ``tee``'s and of ``policy``'s kind."""
    if header.tee is not tee or header.policy is not policy.kind:
        raise SealingError()  # another TEE's blob, or another kind of policy
    return header.key_params()


class SgxSealing:
    """EGETKEY(SEAL) in an enclave (emulated: :class:`EmulatedEnclave`). KEYID = the header's
    per-seal SALT (random, as ``sgx_seal_data`` makes it)."""

    tee = SealTee.SGX

    def __init__(self, enclave: EmulatedEnclave) -> None:
        self.enclave = enclave

    def _policy_bits(self, policy: SealingPolicy) -> int:
        from veritee.platform.emulated.sgx import KeyPolicy

        return int(KeyPolicy.MRENCLAVE if policy.kind is SealPolicyKind.MEASUREMENT
                   else KeyPolicy.MRSIGNER)

    def _key(self, params: SgxKeyParams, key_id: bytes) -> bytes:
        from veritee.platform.emulated.sgx import KeyPolicy

        request = self.enclave.seal_key_request(KeyPolicy(params.key_policy),
                                                isv_svn=params.isv_svn, cpu_svn=params.cpu_svn,
                                                key_id=key_id)
        return self.enclave.egetkey(request)

    def new_seal(self, policy: SealingPolicy, header: SealedHeader
                 ) -> tuple[SealedHeader, bytes]:
        """A SEAL KEYREQUEST at this enclave's ISVSVN (signer: ``min_svn``) and CPUSVN."""
        own = self.enclave
        svn = own.isv_svn
        if policy.kind is SealPolicyKind.SIGNER and policy.min_svn is not None:
            svn = policy.min_svn
            if svn > own.isv_svn:
                raise PlatformError(f"min_svn {svn} is above this enclave's ISVSVN "
                                    f"{own.isv_svn}: it could not unseal its own data")
        cpu_svn = own.machine.cpu.cpusvn if policy.bind_tcb else bytes(16)
        params = SgxKeyParams(key_policy=self._policy_bits(policy), isv_svn=svn,
                              config_svn=own.config_svn, cpu_svn=cpu_svn)
        filled = replace(header, tee=SealTee.SGX, tee_params=params.to_bytes(),
                         policy=policy.kind)
        return filled, self._key(params, header.salt)

    def derive(self, policy: SealingPolicy, header: SealedHeader) -> bytes:
        """Refuse a KEYREQUEST weaker than ``policy`` expects, then EGETKEY (which refuses an
        ISVSVN or CPUSVN above this enclave's / this CPU's)."""
        params: SgxKeyParams = _params(header, SealTee.SGX, policy)
        own = self.enclave
        if params.key_policy != self._policy_bits(policy):
            raise SealingError()  # e.g. MRSIGNER|NOISVPRODID: any product of the signer
        floor = own.isv_svn if policy.min_svn is None else policy.min_svn
        if params.isv_svn < floor:
            raise SealingError()  # an older (vulnerable) release wrote it
        if params.config_svn != own.config_svn:
            raise SealingError()
        if policy.bind_tcb and not any(params.cpu_svn):
            raise SealingError()  # sealed without binding the CPU's TCB
        if policy.min_cpu_svn is not None and any(
                got < want for got, want in zip(params.cpu_svn, policy.min_cpu_svn,
                                                strict=True)):
            raise SealingError()  # sealed under microcode below the reader's floor
        return self._key(params, header.salt)

    def identity(self, policy: SealingPolicy) -> bytes:
        """MRENCLAVE, or MRSIGNER and ISVPRODID."""
        own = self.enclave
        if policy.kind is SealPolicyKind.MEASUREMENT:
            return b"sgx-mrenclave:" + own.mr_enclave
        return b"sgx-mrsigner:" + own.mr_signer + own.isv_prod_id.to_bytes(2, "little")


class TdxSealing:
    """The key-service TD of the emulated TDX machine (TDX 1.x has no sealing key: see
    :mod:`veritee.platform.emulated.tdx`). A TD has no SVN, so ``min_svn`` is refused."""

    tee = SealTee.TDX
    _CONTEXT = b"veritee sealing v1"

    def __init__(self, td: EmulatedTd) -> None:
        self.td = td

    @staticmethod
    def _selection(policy: SealingPolicy) -> str:
        if policy.kind is SealPolicyKind.SIGNER:
            if policy.min_svn is not None:
                raise PlatformError("a TD has no SVN: min_svn does not apply to TDX sealing "
                                    "(the signer policy binds MROWNER and MRCONFIGID)")
            return "mrowner"
        return "mrtd+rtmr" if policy.bind_rtmrs else "mrtd"

    def new_seal(self, policy: SealingPolicy, header: SealedHeader
                 ) -> tuple[SealedHeader, bytes]:
        """The key-service TD's key for the selection ``policy`` names."""
        selection = self._selection(policy)
        filled = replace(header, tee=SealTee.TDX, policy=policy.kind,
                         tee_params=TdxKeyParams(selection).to_bytes())
        return filled, self.td.derived_key(selection, self._CONTEXT)

    def derive(self, policy: SealingPolicy, header: SealedHeader) -> bytes:
        """Refuse a selection weaker than ``policy`` (an ``mrtd+rtmr`` header satisfies an
        ``mrtd`` reader: it binds more), then ask the key service."""
        params: TdxKeyParams = _params(header, SealTee.TDX, policy)
        want = self._selection(policy)
        accepted = {"mrtd": ("mrtd", "mrtd+rtmr")}.get(want, (want,))
        if params.selection not in accepted:
            raise SealingError()
        return self.td.derived_key(params.selection, self._CONTEXT)

    def identity(self, policy: SealingPolicy) -> bytes:
        """MRTD (and RTMR0-2), or MROWNER and MRCONFIGID."""
        td = self.td
        if policy.kind is SealPolicyKind.SIGNER:
            return b"tdx-mrowner:" + td.mr_owner + td.mr_config_id
        rtmrs = b"".join(td.rtmrs[:3]) if policy.bind_rtmrs else b""
        return b"tdx-mrtd:" + td.mr_td + rtmrs


class TpmSealing:
    """A TPM 2.0 (swtpm or ``/dev/tpmrm0``): TPM2_HMAC under an owner-hierarchy primary key
    whose template carries the PolicyPCR digest of the PCRs' current values
    (:meth:`~veritee.platform.tpm.TpmPlatform.derive_key`): a change to any bound PCR gives
    another key, and the key never leaves this TPM."""

    tee = SealTee.TPM
    _CONTEXT = b"veritee sealing v1"

    def __init__(self, tpm: TpmPlatform) -> None:
        self.tpm = tpm

    def _key(self, params: TpmKeyParams) -> bytes:
        from veritee.formats.tpm import HashAlg

        return self.tpm.derive_key(self._CONTEXT, pcrs={HashAlg(params.hash_alg):
                                                        list(params.pcrs)})

    def new_seal(self, policy: SealingPolicy, header: SealedHeader
                 ) -> tuple[SealedHeader, bytes]:
        """A key bound to ``policy.pcrs`` (SHA-256 bank) as they are now."""
        from veritee.formats.tpm import HashAlg

        if policy.kind is not SealPolicyKind.MEASUREMENT:
            raise PlatformError("a TPM has no signer identity: seal to PCR values (the "
                                "measurement policy)")
        params = TpmKeyParams(int(HashAlg.SHA256), policy.pcrs)
        filled = replace(header, tee=SealTee.TPM, policy=policy.kind,
                         tee_params=params.to_bytes())
        return filled, self._key(params)

    def derive(self, policy: SealingPolicy, header: SealedHeader) -> bytes:
        """Refuse a header that binds fewer PCRs than ``policy`` (or another bank), then let
        the TPM derive with the PCRs' current values."""
        from veritee.formats.tpm import HashAlg

        params: TpmKeyParams = _params(header, SealTee.TPM, policy)
        if params.hash_alg != int(HashAlg.SHA256) or not set(policy.pcrs) <= set(params.pcrs):
            raise SealingError()
        return self._key(params)

    def identity(self, policy: SealingPolicy) -> bytes:
        """The PolicyPCR digest of the bound PCRs' current values."""
        from veritee.formats.tpm import HashAlg
        from veritee.platform.tpm import policy_pcr_digest

        values = self.tpm.pcr_values({HashAlg.SHA256: list(policy.pcrs)})
        return b"tpm-pcrs:" + policy_pcr_digest(values)


def for_platform(source: object) -> SealingKeySource | None:
    """The sealing key source of a platform object (an adapter of
    :mod:`veritee.platform.adapters`, an emulated enclave or TD, a TPM), ``None`` for anything
    else (an SEV-SNP ``KeySource`` is handled by the caller). A real TD has no sealing key:
    :class:`PlatformError`."""
    from veritee.platform.adapters import (
        SgxPlatform,
        SnpPlatform,
        TdxGuestPlatform,
        TdxPlatform,
        TpmAdapter,
    )
    from veritee.platform.emulated.sgx import EmulatedEnclave
    from veritee.platform.emulated.tdx import EmulatedTd

    if isinstance(source, SnpPlatform):
        return SnpSealing(source.guest)
    if isinstance(source, SgxPlatform):
        return SgxSealing(source.enclave)
    if isinstance(source, EmulatedEnclave):
        return SgxSealing(source)
    if isinstance(source, TdxPlatform):
        return TdxSealing(source.td)
    if isinstance(source, EmulatedTd):
        return TdxSealing(source)
    if isinstance(source, TpmAdapter):
        return TpmSealing(source.tpm)
    if isinstance(source, TdxGuestPlatform):
        raise PlatformError("a TDX 1.x TD has no hardware sealing key: fetch keys from a key "
                            "broker after attestation (veritee kbs get --tee tdx) or a vTPM")
    from veritee.platform.tpm import TpmPlatform  # tpm2-pytss itself loads on first use

    if isinstance(source, TpmPlatform):
        return TpmSealing(source)
    return None
