"""A fake Intel: the emulated vendor and CPU signing quotes with any body field chosen.

The fake signs for real (PCK chain, QE report, attestation key, TCB Info, QE identity, CRLs), so
tests run ``veritee.trust.intel`` unchanged; only the trust anchor differs
(:attr:`FakeIntel.roots`, never trusted unless passed). Any body field can be overridden to
build one-change cases without building a TD or an enclave::

    intel = FakeIntel.generate()
    quote = intel.td_quote(mr_td=b"\\x01" * 48, td_attributes=bytes([1]) + bytes(7))
    verify_quote(quote, intel.collateral("TDX"), now=intel.now, trusted_roots=intel.roots)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from veritee.formats.intel import SgxReportBody, TdReportBody
from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor
from veritee.trust.intel import IntelCollateral

__all__ = ["FakeIntel"]


@dataclass
class FakeIntel:
    """An emulated Intel vendor and one CPU, with quote builders for any body."""

    vendor: EmulatedIntelVendor
    cpu: EmulatedIntelCpu
    now: datetime

    @classmethod
    def generate(cls, now: datetime | None = None, *, release: int = 3) -> FakeIntel:
        """A fresh vendor and a CPU on microcode ``release`` (3: UpToDate by default)."""
        now = now or datetime.now(UTC)
        vendor = EmulatedIntelVendor.generate(now=now)
        return cls(vendor, EmulatedIntelCpu(vendor, release=release, now=now), now)

    @property
    def roots(self) -> list[x509.Certificate]:
        """The emulated root, for ``trusted_roots=`` (explicit opt-in)."""
        return [self.vendor.root]

    def collateral(self, tee: str = "TDX") -> IntelCollateral:
        """TCB Info, QE identity and both CRLs for ``TDX`` or ``SGX`` at :attr:`now`."""
        return self.vendor.collateral(tee, self.now)

    def td_body(self, **fields: Any) -> TdReportBody:
        """A TD 1.0 body on this CPU's TDX module (SVN 5, ``TDX_03``) with ``fields``."""
        body = TdReportBody(
            tee_tcb_svn=bytes([5, 3]) + bytes(14), mr_seam=bytes(range(48)),
            mr_signer_seam=bytes(48), seam_attributes=bytes(8),
            td_attributes=(1 << 28).to_bytes(8, "little"),
            xfam=(0x0618E7).to_bytes(8, "little"), mr_td=bytes(48), mr_config_id=bytes(48),
            mr_owner=bytes(48), mr_owner_config=bytes(48),
            rtmrs=(bytes(48), bytes(48), bytes(48), bytes(48)), report_data=bytes(64))
        return replace(body, **fields)

    def sgx_body(self, **fields: Any) -> SgxReportBody:
        """An enclave report body (INIT | MODE64BIT, this CPU's CPUSVN) with ``fields``."""
        body = SgxReportBody(
            cpu_svn=self.cpu.cpusvn, misc_select=0, isv_ext_prod_id=bytes(16),
            attributes=bytes([0x05]) + bytes(7) + bytes([0x03]) + bytes(7),
            mr_enclave=bytes(32), mr_signer=bytes(32), config_id=bytes(64), isv_prod_id=0,
            isv_svn=0, config_svn=0, isv_family_id=bytes(16), report_data=bytes(64))
        return replace(body, **fields)

    def td_quote(self, *, version: int = 4, **fields: Any) -> bytes:
        """A TD quote signed by this CPU's TD QE over :meth:`td_body` with ``fields``."""
        return self.cpu.td_qe.quote(self.td_body(**fields), version=version)

    def sgx_quote(self, *, version: int = 3, **fields: Any) -> bytes:
        """An SGX quote signed by this CPU's QE over :meth:`sgx_body` with ``fields``."""
        return self.cpu.qe.quote(self.sgx_body(**fields), version=version)
