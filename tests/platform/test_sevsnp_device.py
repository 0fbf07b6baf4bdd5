"""The real /dev/sev-guest key source: ioctl encoding always; the device only where present."""

from __future__ import annotations

import pytest

from veritee.errors import PlatformError
from veritee.formats.sevsnp import AttestationReport, MsgKeyReq
from veritee.platform.sevsnp import (
    SNP_GET_DERIVED_KEY,
    SNP_GET_REPORT,
    SevGuestDevice,
    sev_guest_available,
)


def test_ioctl_numbers_match_linux_uapi() -> None:
    """_IOWR('S', 0/1, struct snp_guest_request_ioctl) as in include/uapi/linux/sev-guest.h."""
    assert SNP_GET_REPORT == 0xC0205300
    assert SNP_GET_DERIVED_KEY == 0xC0205301


def test_absent_device_is_a_platform_error(tmp_path: object) -> None:
    from pathlib import Path

    with pytest.raises(PlatformError, match="not found"):
        SevGuestDevice(Path("/nonexistent/sev-guest"))


@pytest.mark.hardware
@pytest.mark.skipif(not sev_guest_available(), reason="not inside an SEV-SNP guest")
def test_real_device_report_and_derived_key() -> None:  # pragma: no cover - hardware only
    dev = SevGuestDevice()
    report = AttestationReport.from_bytes(dev.attestation_report(bytes(64)))
    assert report.report_data == bytes(64)
    k1 = dev.derived_key(MsgKeyReq())
    assert len(k1) == 32 and k1 == dev.derived_key(MsgKeyReq())
