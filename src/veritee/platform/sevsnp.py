"""A real AMD SEV-SNP guest: reports and derived keys from the secure processor.

Two kernel interfaces, detected at run time:

* ``/dev/sev-guest`` (Linux ``sev-guest`` driver, ``include/uapi/linux/sev-guest.h``):
  ``SNP_GET_REPORT`` and ``SNP_GET_DERIVED_KEY`` ioctls carrying the firmware's
  MSG_REPORT_REQ / MSG_KEY_REQ structures (AMD 56860) and returning MSG_REPORT_RSP /
  MSG_KEY_RSP: a status word, then the report (1184 bytes at 0x20) or the key (32 bytes at
  0x20).
* configfs-tsm (``/sys/kernel/config/tsm/report``, Linux 6.7+) for reports: write 64 bytes
  to ``inblob``, read the report from ``outblob`` and the certificate table from ``auxblob``.

Tests that need the device are marked ``hardware`` and skipped where it is absent.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import secrets
from pathlib import Path

from veritee.errors import PlatformError
from veritee.formats.sevsnp import REPORT_SIZE, CertTable, MsgKeyReq, MsgReportReq

__all__ = [
    "SNP_GET_DERIVED_KEY",
    "SNP_GET_REPORT",
    "SevGuestDevice",
    "sev_guest_available",
]

DEVICE = Path("/dev/sev-guest")
TSM_REPORT = Path("/sys/kernel/config/tsm/report")


class _GuestRequestIoctl(ctypes.Structure):
    """``struct snp_guest_request_ioctl``: u8 msg_version; u64 req_data, resp_data, exitinfo2."""

    _fields_ = (("msg_version", ctypes.c_uint8), ("req_data", ctypes.c_uint64),
                ("resp_data", ctypes.c_uint64), ("exitinfo2", ctypes.c_uint64))


def _iowr(nr: int, size: int) -> int:
    # _IOWR('S', nr, size) from asm-generic/ioctl.h: dir=3 (read|write) in bits 30-31.
    return (3 << 30) | (size << 16) | (ord("S") << 8) | nr


SNP_GET_REPORT = _iowr(0x0, ctypes.sizeof(_GuestRequestIoctl))
SNP_GET_DERIVED_KEY = _iowr(0x1, ctypes.sizeof(_GuestRequestIoctl))


def sev_guest_available() -> bool:
    """True inside an SEV-SNP guest whose kernel exposes ``/dev/sev-guest``."""
    return DEVICE.exists()


class SevGuestDevice:
    """The secure processor of the SEV-SNP guest this process runs in."""

    def __init__(self, device: Path = DEVICE, vmpl: int = 0) -> None:
        if not device.exists():
            raise PlatformError(f"{device} not found: not an SEV-SNP guest, or the sev-guest "
                                "driver is not loaded")
        self.device = device
        self.vmpl = vmpl

    def _request(self, code: int, request: bytes, response_size: int) -> bytes:
        req = ctypes.create_string_buffer(request, len(request))
        resp = ctypes.create_string_buffer(response_size)
        arg = _GuestRequestIoctl(msg_version=1, req_data=ctypes.addressof(req),
                                 resp_data=ctypes.addressof(resp), exitinfo2=0)
        fd = os.open(self.device, os.O_RDWR)
        try:
            fcntl.ioctl(fd, code, arg)
        except OSError as exc:
            raise PlatformError(f"{self.device}: request refused ({exc.strerror}; firmware "
                                f"status 0x{arg.exitinfo2:x})") from None
        finally:
            os.close(fd)
        raw = resp.raw
        status = int.from_bytes(raw[0:4], "little")
        if status:
            raise PlatformError(f"secure processor returned status 0x{status:x}")
        return raw

    def attestation_report(self, report_data: bytes, vmpl: int | None = None) -> bytes:
        """A signed ATTESTATION_REPORT (via configfs-tsm when available, else the ioctl)."""
        req = MsgReportReq(report_data=report_data, vmpl=self.vmpl if vmpl is None else vmpl)
        if TSM_REPORT.is_dir():
            return _tsm_report(req)[0]
        raw = self._request(SNP_GET_REPORT, req.to_bytes(), 4000)
        size = int.from_bytes(raw[4:8], "little")
        if size != REPORT_SIZE:
            raise PlatformError(f"MSG_REPORT_RSP.REPORT_SIZE: got {size}, want {REPORT_SIZE}")
        return raw[0x20:0x20 + REPORT_SIZE]

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]:
        """A report and the host's certificate table (configfs-tsm ``auxblob``).

        Without configfs-tsm, or when the host supplies no certificates, the table is empty
        (just its terminator) and the verifier needs the VCEK from its own collateral.
        """
        req = MsgReportReq(report_data=report_data, vmpl=self.vmpl if vmpl is None else vmpl)
        if TSM_REPORT.is_dir():
            report, aux = _tsm_report(req, with_aux=True)
            if aux:
                return report, aux
            return report, CertTable(()).to_bytes()
        return self.attestation_report(report_data, vmpl), CertTable(()).to_bytes()

    def derived_key(self, request: MsgKeyReq) -> bytes:
        """SNP_GET_DERIVED_KEY: the 32-byte key of MSG_KEY_RSP."""
        raw = self._request(SNP_GET_DERIVED_KEY, request.to_bytes(), 64)
        return raw[0x20:0x40]


def _tsm_report(req: MsgReportReq, *, with_aux: bool = False) -> tuple[bytes, bytes]:
    entry = TSM_REPORT / f"veritee-{secrets.token_hex(8)}"
    try:
        entry.mkdir()
        (entry / "privlevel").write_text(str(req.vmpl))
        (entry / "inblob").write_bytes(req.report_data)
        out = (entry / "outblob").read_bytes()
        aux = (entry / "auxblob").read_bytes() if with_aux else b""
    except OSError as exc:
        raise PlatformError(f"configfs-tsm report failed: {exc.strerror}") from None
    finally:
        if entry.exists():
            entry.rmdir()
    return out, aux
