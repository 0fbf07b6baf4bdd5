"""``veritee emulate``: write an emulated guest's report and its certificates to a directory.

The output is laid out as a user of real hardware would have it (``report.bin`` plus a
``certs/`` directory with ``ark.pem``, ``ask.pem`` and ``vcek.pem``), so that
``veritee verify``/``appraise`` run on it unchanged, with ``--trust-root certs/ark.pem``.

``veritee emulate export-roots --state DIR --out DIR`` writes the ARK and ASK (and the current
VCEK) of the emulated machine kept in ``--state`` (the one ``seal``, ``keys`` and ``kbs`` use),
for a service's ``trust_roots`` or ``verify --trust-root``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from veritee._fs import atomic_write
from veritee.cli._demo import demo_image
from veritee.errors import ConfigError
from veritee.formats.sevsnp import GuestPolicy, Product
from veritee.platform.emulated.measurement import simple_guest_image
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine

__all__ = ["add_export_roots_args", "export_roots", "run_emulate"]


def add_export_roots_args(p: argparse.ArgumentParser) -> None:
    """``emulate [export-roots] --state DIR``: the optional action and its state directory."""
    p.add_argument("action", nargs="?", choices=("export-roots",), help="export-roots: write "
                   "the ARK/ASK/VCEK of the machine in --state to --out (no guest launched)")
    p.add_argument("--state", metavar="DIR", type=Path, help="export-roots: the emulated "
                   "machine's state directory (default: $VERITEE_STATE_DIR or "
                   "~/.local/share/veritee/emulated-snp)")


def export_roots(*, state: Path | None, out: Path) -> int:
    """Write ark.pem, ask.pem and vcek.pem of an existing emulated machine; return 0."""
    from veritee.cli._platform import default_state_dir

    directory = state or default_state_dir()
    if not (directory / InsecureEmulatedSnpMachine.STATE_FILE).exists():
        raise ConfigError(f"--state {directory}: no emulated machine there (seal, keys or kbs "
                          "with --create make one)")
    certs = InsecureEmulatedSnpMachine.load(directory).certificates()
    for name, cert in (("ark", certs.ark), ("ask", certs.ask), ("vcek", certs.vek)):
        assert cert is not None
        atomic_write(out / f"{name}.pem", cert.public_bytes(Encoding.PEM), 0o644)
    print(f"wrote {out}/{{ark,ask,vcek}}.pem of the emulated machine in {directory} "
          "(INSECURE: trust ark.pem only for development)")
    print(f'service settings: trust_roots = ["{out / "ark.pem"}"]')
    return 0


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
    print(f"wrote {out / 'report.bin'} and {out / 'certs'}/{{ark,ask,vcek}}.pem")
    print(f"measurement: {guest.measurement.hex()}")
    print(f"verify with: veritee verify {out / 'report.bin'} --certs {out / 'certs'} "
          f"--trust-root {out / 'certs' / 'ark.pem'}")
    return 0
