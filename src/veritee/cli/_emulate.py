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
                debug: bool, tee: str = "snp") -> int:
    """Launch an emulated guest, write report.bin and certs/; return 0.

    ``tee`` ``tdx``/``sgx``: write ``quote.dat`` and ``collateral/`` (TCB Info, QE identity,
    CRLs, TCB Signing certificate, and ``root_ca.pem``, the emulated root to pass to
    ``verify --trust-root``) instead. ``tpm``: a swtpm quote in tpm2-tools' files and the EK
    chain (``veritee tpm quote`` / ``veritee tpm ek`` verify them).
    """
    try:
        data = bytes.fromhex(report_data.removeprefix("0x"))
    except ValueError:
        raise ConfigError(f"--report-data: got {report_data!r}, want hex") from None
    if len(data) > 64:
        raise ConfigError(f"--report-data: got {len(data)} bytes, want at most 64")
    if tee in ("tdx", "sgx"):
        return _emulate_intel(out, tee, data.ljust(64, b"\0"), debug)
    if tee == "tpm":
        return _emulate_tpm(out, data)
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


def _emulate_intel(out: Path, tee: str, report_data: bytes, debug: bool) -> int:
    from datetime import UTC, datetime

    from cryptography.hazmat.primitives.asymmetric import rsa

    from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor

    now = datetime.now(UTC)
    vendor = EmulatedIntelVendor.generate(now=now)
    cpu = EmulatedIntelCpu(vendor, now=now)
    if tee == "tdx":
        from veritee.platform.emulated.tdx import InsecureEmulatedTdxMachine

        td = InsecureEmulatedTdxMachine(vendor, cpu=cpu).launch(demo_image(), debug=debug)
        quote, what = td.quote(report_data), f"MRTD: {td.mr_td.hex()}"
    else:
        from veritee.platform.emulated.sgx import InsecureEmulatedSgxMachine

        author = rsa.generate_private_key(public_exponent=3, key_size=3072)
        enclave = InsecureEmulatedSgxMachine(vendor, cpu=cpu).load(demo_image(), author,
                                                                   debug=debug)
        quote = enclave.quote(report_data)
        what = f"MRENCLAVE: {enclave.mr_enclave.hex()}  MRSIGNER: {enclave.mr_signer.hex()}"
    atomic_write(out / "quote.dat", quote, 0o644)
    vendor.write_collateral(out / "collateral", tee.upper(), now)
    print(f"wrote {out / 'quote.dat'} and {out / 'collateral'}/")
    print(what)
    print(f"verify with: veritee verify {out / 'quote.dat'} --certs {out / 'collateral'} "
          f"--trust-root {out / 'collateral' / 'root_ca.pem'}")
    return 0


def _emulate_tpm(out: Path, report_data: bytes) -> int:
    import os
    import shutil
    import tempfile

    from veritee.platform.tpm import InsecureSwtpmPlatform

    nonce = report_data or os.urandom(32)
    state = Path(tempfile.mkdtemp(prefix="veritee-emulate-swtpm-"))
    try:
        with InsecureSwtpmPlatform.open(state) as tpm:
            files = tpm.quote(nonce).export(out)
            atomic_write(out / "ek.der", tpm.ek_certificate(), 0o644)
            atomic_write(out / "ca.pem", b"".join(tpm.ca_intermediates()), 0o644)
            atomic_write(out / "root.pem", tpm.ca_root(), 0o644)
    finally:
        shutil.rmtree(state, ignore_errors=True)
    print(f"wrote a swtpm quote and its EK chain to {out}/")
    print(f"verify with: veritee tpm quote --quote {files['quote']} --signature "
          f"{files['signature']} --ak {files['ak']} --nonce {nonce.hex()} --pcrs "
          f"{files['pcrs']} --eventlog {files['eventlog']}")
    print(f"       and: veritee tpm ek --ek-cert {out / 'ek.der'} --intermediate "
          f"{out / 'ca.pem'} --root {out / 'root.pem'}")
    return 0
