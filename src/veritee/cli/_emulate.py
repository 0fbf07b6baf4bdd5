"""``veritee emulate``: write an emulated guest's report and its certificates to a directory.

The output is laid out as a user of real hardware would have it (``report.bin`` plus a
``certs/`` directory with ``ark.pem``, ``ask.pem`` and ``vcek.pem``), so that
``veritee verify``/``appraise`` run on it unchanged, with ``--trust-root certs/ark.pem``.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from veritee._fs import atomic_write
from veritee.cli._demo import demo_image
from veritee.errors import ConfigError
from veritee.formats.sevsnp import GuestPolicy, Product
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine

__all__ = ["run_emulate"]


def run_emulate(*, out: Path, product: str, report_data: str, key_size: int,
                debug: bool) -> int:
    """Launch an emulated guest, write report.bin and certs/; return 0."""
    try:
        data = bytes.fromhex(report_data.removeprefix("0x"))
    except ValueError:
        raise ConfigError(f"--report-data: got {report_data!r}, want hex") from None
    if len(data) > 64:
        raise ConfigError(f"--report-data: got {len(data)} bytes, want at most 64")
    machine = InsecureEmulatedSnpMachine.create(Product(product), key_size=key_size)
    guest = machine.launch(simple_guest_image(demo_image()),
                           policy=GuestPolicy(smt=True, debug=debug))
    report = guest.attestation_report(data.ljust(64, b"\0"))
    atomic_write(out / "report.bin", report, 0o644)
    certs = machine.certificates()
    for name, cert in (("ark", certs.ark), ("ask", certs.ask), ("vcek", certs.vek)):
        assert cert is not None
        atomic_write(out / "certs" / f"{name}.pem", cert.public_bytes(Encoding.PEM), 0o644)
    assert certs.crl is not None  # the ARK's CRL: the default policy refuses without it
    atomic_write(out / "certs" / "crl.pem", certs.crl.public_bytes(Encoding.PEM), 0o644)
    print(f"wrote {out / 'report.bin'} and {out / 'certs'}/{{ark,ask,vcek,crl}}.pem")
    print(f"measurement: {guest.measurement.hex()}")
    print(f"verify with: veritee verify {out / 'report.bin'} --certs {out / 'certs'} "
          f"--trust-root {out / 'certs' / 'ark.pem'}")
    return 0
