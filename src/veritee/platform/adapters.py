"""The :class:`~veritee.platform.base.Platform` interface over each attester.

``SnpPlatform`` wraps an emulated SEV-SNP guest or the real ``/dev/sev-guest`` device,
``TdxPlatform`` an emulated TD, ``SgxPlatform`` an emulated enclave. Keys from
``derive_key`` are the platform's key (MSG_KEY_REQ, the TD key service, EGETKEY) expanded
with HKDF-SHA-256 over ``context``, so one platform key serves many purposes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from veritee.errors import PlatformError
from veritee.formats.sevsnp import AttestationReport, GuestFieldSelect, MsgKeyReq
from veritee.platform.base import Evidence
from veritee.platform.emulated.sgx import EmulatedEnclave, KeyPolicy
from veritee.platform.emulated.tdx import EmulatedTd
from veritee.platform.tdx import TdxGuestDevice

if TYPE_CHECKING:  # the TPM binding (tpm2-pytss) is imported only when a TPM is used
    from veritee.platform.tpm import TpmPlatform

__all__ = ["SgxPlatform", "SnpPlatform", "TdxGuestPlatform", "TdxPlatform", "TpmAdapter"]


def _expand(key: bytes, name: str, policy: str, context: bytes) -> bytes:
    info = b"veritee platform key|" + f"{name}|{policy}|".encode() + context
    return HKDF(hashes.SHA256(), 32, salt=None, info=info).derive(key)


def _report_data(report_data: bytes) -> bytes:
    if len(report_data) != 64:
        raise PlatformError(f"report data: want 64 bytes, got {len(report_data)}")
    return report_data


class _SnpGuest(Protocol):
    def attestation_report(self, report_data: bytes, vmpl: int | None = None) -> bytes: ...

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]: ...

    def derived_key(self, request: MsgKeyReq) -> bytes: ...


class SnpPlatform:
    """An SEV-SNP guest (emulated or ``/dev/sev-guest``) as a :class:`Platform`."""

    name = "sevsnp"
    POLICIES = ("measurement", "signer")

    def __init__(self, guest: _SnpGuest, *, counters: object | None = None,
                 description: str = "SEV-SNP guest", trng: object | None = None) -> None:
        self.guest = guest
        self.description = description
        self._counters = counters
        self._trng = trng

    @property
    def counters(self) -> object | None:
        """The secure processor's NV counters (emulated machine), else ``None``."""
        return self._counters

    def evidence(self, report_data: bytes) -> Evidence:
        """ATTESTATION_REPORT and the certificate table."""
        report, table = self.guest.extended_report(_report_data(report_data))
        return Evidence("sevsnp", report, table)

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]:
        """Pass-through to the guest."""
        return self.guest.extended_report(report_data, vmpl)

    def derive_key(self, policy: str, context: bytes = b"") -> bytes:
        """MSG_KEY_REQ with the fields ``measurement`` or ``signer`` selects."""
        if policy == "measurement":
            sel = GuestFieldSelect.MEASUREMENT | GuestFieldSelect.GUEST_POLICY
            svn = 0
        elif policy == "signer":
            sel = (GuestFieldSelect.FAMILY_ID | GuestFieldSelect.IMAGE_ID
                   | GuestFieldSelect.GUEST_SVN | GuestFieldSelect.GUEST_POLICY)
            svn = AttestationReport.from_bytes(self.guest.attestation_report(bytes(64))
                                               ).guest_svn
        else:
            raise PlatformError(f"SEV-SNP key policy {policy!r}: want one of {self.POLICIES}")
        key = self.guest.derived_key(MsgKeyReq(guest_field_select=sel, guest_svn=svn))
        return _expand(key, self.name, policy, context)

    def random(self, n: int) -> bytes:
        """The secure processor's TRNG when the caller gave one, else the kernel RNG (in a
        real guest fed by RDSEED inside the TEE)."""
        trng = getattr(self._trng, "trng", None)
        return bytes(trng(n)) if callable(trng) else os.urandom(n)


class TdxPlatform:
    """An emulated TD as a :class:`Platform` (INSECURE: emulated)."""

    name = "tdx"
    POLICIES = ("mrtd", "mrtd+rtmr", "mrowner")

    def __init__(self, td: EmulatedTd, *, quote_version: int = 4,
                 description: str = "emulated TDX TD (INSECURE)") -> None:
        self.td = td
        self.quote_version = quote_version
        self.description = description

    @property
    def counters(self) -> object | None:
        """TDX 1.x has no monotonic counters: ``None``."""
        return None

    def evidence(self, report_data: bytes) -> Evidence:
        """A TD quote from the TD QE."""
        return Evidence("tdx", self.td.quote(_report_data(report_data),
                                             version=self.quote_version))

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]:
        """The quote and an empty certificate table."""
        return self.td.extended_report(report_data, vmpl)

    def derive_key(self, policy: str, context: bytes = b"") -> bytes:
        """From the key-service TD (see ``platform.emulated.tdx``)."""
        return _expand(self.td.derived_key(policy), self.name, policy, context)

    def random(self, n: int) -> bytes:
        """RDSEED inside the TD, emulated by the host CSPRNG."""
        return os.urandom(n)


class TdxGuestPlatform:
    """The real TD this process runs in (configfs-tsm) as a :class:`Platform`."""

    name = "tdx"

    def __init__(self, device: TdxGuestDevice,
                 description: str = "Intel TDX guest (configfs-tsm)") -> None:
        self.device = device
        self.description = description

    @property
    def counters(self) -> object | None:
        """TDX 1.x has no monotonic counters: ``None``."""
        return None

    def evidence(self, report_data: bytes) -> Evidence:
        """A TD quote from the platform's quoting service."""
        return Evidence("tdx", self.device.quote(_report_data(report_data)))

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]:
        """The quote and an empty certificate table."""
        return self.device.extended_report(report_data, vmpl)

    def derive_key(self, policy: str, context: bytes = b"") -> bytes:
        """A real TD has no sealing key: refused with what to use instead."""
        raise PlatformError("a TDX 1.x TD has no hardware sealing key: fetch keys from a key "
                            "broker after attestation (veritee kbs get --tee tdx) or a vTPM")

    def random(self, n: int) -> bytes:
        """The kernel RNG, fed by RDSEED inside the TD."""
        return os.urandom(n)


class SgxPlatform:
    """An emulated enclave as a :class:`Platform` (INSECURE: emulated)."""

    name = "sgx"
    POLICIES = ("mrenclave", "mrsigner")

    def __init__(self, enclave: EmulatedEnclave, *,
                 description: str = "emulated SGX enclave (INSECURE)") -> None:
        self.enclave = enclave
        self.description = description

    @property
    def counters(self) -> object | None:
        """SGX has no monotonic counters any more (the PSE ones were withdrawn): ``None``."""
        return None

    def evidence(self, report_data: bytes) -> Evidence:
        """An SGX quote v3 from the QE."""
        return Evidence("sgx", self.enclave.quote(_report_data(report_data)))

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]:
        """The quote and an empty certificate table."""
        return self.enclave.extended_report(report_data, vmpl)

    def derive_key(self, policy: str, context: bytes = b"") -> bytes:
        """EGETKEY(SEAL) at this enclave's ISVSVN and the CPU's CPUSVN, KEYID fixed to zero
        (a deterministic key: the context, not a random KEYID, tells keys apart)."""
        pol = {"mrenclave": KeyPolicy.MRENCLAVE, "mrsigner": KeyPolicy.MRSIGNER}.get(policy)
        if pol is None:
            raise PlatformError(f"SGX key policy {policy!r}: want one of {self.POLICIES}")
        key = self.enclave.egetkey(self.enclave.seal_key_request(pol, key_id=bytes(32)))
        return _expand(key, self.name, policy, context)

    def random(self, n: int) -> bytes:
        """RDSEED inside the enclave, emulated by the host CSPRNG."""
        return os.urandom(n)


class TpmAdapter:
    """A TPM 2.0 (swtpm or ``/dev/tpmrm0``, :mod:`veritee.platform.tpm`) as a
    :class:`Platform`.

    Evidence is a TPM2_Quote of the SHA-256 PCRs 0-9 whose qualifyingData is the report data,
    in one container the ``tpm`` scheme reads (:mod:`veritee.schemes.tpm`): Trustee's ``tpm``
    evidence JSON (the AK as SPKI, the quote, the PCR values) with the AK's TPMT_PUBLIC (its
    attributes) and the boot's event log. The verifier still needs a reason to trust the AK
    (credential activation, ``platform.tpm.register_ak``, or a pin).
    """

    name = "tpm"
    POLICIES = ("tpm", "pcr")

    def __init__(self, tpm: TpmPlatform) -> None:
        self.tpm = tpm
        self.description = tpm.description

    @property
    def counters(self) -> object | None:
        """NV counters (TPM_NT_COUNTER): the TPM is a ``MonotonicCounters``."""
        return self.tpm

    def evidence(self, report_data: bytes) -> Evidence:
        """TPM2_Quote with ``report_data`` as qualifyingData (the ``tpm`` scheme binds 32
        bytes, SHA-256(nonce || SPKI); a TPM takes at most 64), as Trustee's ``tpm`` JSON."""
        from veritee.formats.tpm import encode_tpm_evidence_json
        from veritee.trust.tpm import ak_spki

        if not 0 < len(report_data) <= 64:
            raise PlatformError(f"report data: got {len(report_data)} bytes, want 1..64")
        q = self.tpm.evidence(bytes(report_data))
        data = encode_tpm_evidence_json(ak_spki_der=ak_spki(q.ak_public), attest=q.attest,
                                        signature=q.signature, pcrs=q.pcrs,
                                        ak_public=q.ak_public, event_log=q.event_log)
        return Evidence("tpm", data)

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]:
        """Not for the key broker: the service does not accept TPM evidence yet."""
        raise PlatformError("the verifier service does not accept TPM evidence yet; verify "
                            "TPM quotes with 'veritee tpm quote'")

    def derive_key(self, policy: str, context: bytes = b"") -> bytes:
        """TPM2_HMAC under an owner-hierarchy primary: ``tpm`` (this TPM) or ``pcr`` (this
        TPM while SHA-256 PCRs 0-7 hold their current values)."""
        from veritee.formats.tpm import HashAlg

        if policy not in self.POLICIES:
            raise PlatformError(f"TPM key policy {policy!r}: want one of {self.POLICIES}")
        pcrs = {HashAlg.SHA256: list(range(8))} if policy == "pcr" else None
        key = self.tpm.derive_key(b"veritee platform key|" + context, pcrs=pcrs)
        return _expand(key, self.name, policy, context)

    def random(self, n: int) -> bytes:
        """TPM2_GetRandom."""
        return self.tpm.trng(n)
