"""The real TDX guest's configfs-tsm protocol, against a directory laid out as the kernel's.

The fake entry holds what the kernel would show after ``mkdir``: ``provider``, ``generation``
and (after ``inblob``) ``outblob``; the quote in it is an emulated one, so the result can be
verified by ``trust.intel``. The device itself is tested only where it exists (``hardware``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from veritee.errors import PlatformError
from veritee.platform.adapters import TdxGuestPlatform
from veritee.platform.tdx import TdxGuestDevice, tdx_guest_available
from veritee.testing.intel import FakeIntel
from veritee.trust.intel import verify_quote

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _entry(tsm: Path, *, provider: str = "tdx_guest", outblob: bytes = b"q") -> Path:
    entry = tsm / "e"
    entry.mkdir(parents=True)
    (entry / "provider").write_text(provider + "\n")
    (entry / "generation").write_text("1\n")
    (entry / "outblob").write_bytes(outblob)
    return entry


def test_quote_through_configfs_tsm_verifies(tmp_path: Path) -> None:
    intel = FakeIntel.generate(NOW)
    entry = _entry(tmp_path, outblob=intel.td_quote(report_data=bytes(range(64))))
    platform = TdxGuestPlatform(TdxGuestDevice(tmp_path, entry_name="e"))
    ev = platform.evidence(bytes(range(64)))
    assert (entry / "inblob").read_bytes() == bytes(range(64))
    v = verify_quote(ev.data, intel.collateral("TDX"), now=NOW, trusted_roots=intel.roots)
    assert v.quote.body.report_data == bytes(range(64))
    assert platform.counters is None and len(platform.random(8)) == 8


def test_a_real_td_has_no_sealing_key(tmp_path: Path) -> None:
    platform = TdxGuestPlatform(TdxGuestDevice(tmp_path, entry_name="e"))
    with pytest.raises(PlatformError, match="key broker"):
        platform.derive_key("mrtd")


def test_another_provider_is_refused(tmp_path: Path) -> None:
    _entry(tmp_path, provider="sev_guest")
    with pytest.raises(PlatformError, match="not a TD"):
        TdxGuestDevice(tmp_path, entry_name="e").quote(bytes(64))


def test_concurrent_writer_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process writes the entry's inblob between our write and our read."""
    entry = _entry(tmp_path)
    real_read = Path.read_bytes

    def racing_read(self: Path) -> bytes:
        if self.name == "outblob":
            (entry / "generation").write_text("2\n")
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", racing_read)
    with pytest.raises(PlatformError, match="concurrently"):
        TdxGuestDevice(tmp_path, entry_name="e").quote(bytes(64))


def test_absent_configfs_and_bad_report_data(tmp_path: Path) -> None:
    assert not tdx_guest_available(tmp_path / "none", tmp_path / "none")
    with pytest.raises(PlatformError, match="not found"):
        TdxGuestDevice(tmp_path / "none")
    with pytest.raises(PlatformError, match="64 bytes"):
        TdxGuestDevice(tmp_path).quote(b"short")


@pytest.mark.hardware
@pytest.mark.skipif(not tdx_guest_available(), reason="not inside a TDX guest")
def test_real_td_quote() -> None:  # pragma: no cover - hardware only
    from veritee.formats.intel import Quote

    quote = TdxGuestDevice().quote(bytes(64))
    assert Quote.from_bytes(quote, allow_nonzero_trailer=True).is_tdx
