"""A real Intel TDX guest: TD quotes through configfs-tsm.

Linux (6.7+) exposes quote generation for TDs through configfs-tsm
(``Documentation/ABI/testing/configfs-tsm``): create a directory under
``/sys/kernel/config/tsm/report``, check ``provider`` (``tdx_guest``), write 64 bytes to
``inblob``, read the quote from ``outblob``. ``generation`` counts writes to the entry; it is
read before and after ``outblob`` so that a concurrent writer to the same entry is detected
rather than returning a quote for someone else's REPORTDATA.

A TD has no sealing key (TDX 1.x has no EGETKEY for TDs): persistent keys come from a key
broker after attestation (``veritee kbs get --tee tdx``) or a vTPM. Tests that need the
device are marked ``hardware`` and skipped where it is absent; the configfs protocol itself
is tested against a directory laid out as the kernel lays it out.
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path

from veritee.errors import PlatformError

__all__ = ["TSM_REPORT", "TdxGuestDevice", "tdx_guest_available"]

TSM_REPORT = Path("/sys/kernel/config/tsm/report")
TDX_GUEST_DEVICE = Path("/dev/tdx_guest")


def tdx_guest_available(tsm: Path = TSM_REPORT, device: Path = TDX_GUEST_DEVICE) -> bool:
    """True inside a TD whose kernel has the ``tdx_guest`` driver and configfs-tsm."""
    return device.exists() and tsm.is_dir()


class TdxGuestDevice:
    """The TD this process runs in, as a quote source."""

    PROVIDER = "tdx_guest"

    def __init__(self, tsm: Path = TSM_REPORT, *, entry_name: str | None = None) -> None:
        if not tsm.is_dir():
            raise PlatformError(f"{tsm} not found: not a TD, or configfs-tsm is not mounted")
        self.tsm = tsm
        self._entry_name = entry_name

    def quote(self, report_data: bytes) -> bytes:
        """A TD quote (v4 or v5, as the platform's quoting service makes it) for 64 bytes."""
        if len(report_data) != 64:
            raise PlatformError(f"REPORTDATA: want 64 bytes, got {len(report_data)}")
        entry = self.tsm / (self._entry_name or f"veritee-{secrets.token_hex(8)}")
        try:
            entry.mkdir(exist_ok=self._entry_name is not None)
            provider = (entry / "provider").read_text().strip()
            if provider != self.PROVIDER:
                raise PlatformError(f"configfs-tsm provider is {provider!r}, not "
                                    f"{self.PROVIDER!r}: not a TD")
            (entry / "inblob").write_bytes(report_data)
            before = (entry / "generation").read_text().strip()
            quote = (entry / "outblob").read_bytes()
            after = (entry / "generation").read_text().strip()
        except OSError as exc:
            raise PlatformError(f"configfs-tsm quote failed: {exc.strerror or exc}") from None
        finally:
            # Best effort: the kernel removes an entry with its attributes.
            with contextlib.suppress(OSError):
                entry.rmdir()
        if before != after:
            raise PlatformError("configfs-tsm entry written concurrently (generation "
                                f"{before} -> {after}): the quote may carry other REPORTDATA")
        return quote

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]:
        """The quote and an empty certificate table (the quote carries its PCK chain)."""
        if vmpl is not None:
            raise PlatformError("a TD has no VMPL")
        return self.quote(report_data), b""
