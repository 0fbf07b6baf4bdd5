"""``veritee emulate``: write an emulated guest's report and its certificates to a directory.

The output is laid out as a user of real hardware would have it (``report.bin`` plus a
``certs/`` directory with ``ark.pem``, ``ask.pem`` and ``vcek.pem``), so that
``veritee verify``/``appraise`` run on it unchanged, with ``--trust-root certs/ark.pem``.

``veritee emulate export-roots --state DIR --out DIR`` writes the ARK and ASK (and the current
VCEK) of the emulated machine kept in ``--state`` (the one ``seal``, ``keys`` and ``kbs`` use),
for a service's ``trust_roots`` or ``verify --trust-root``.
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

__all__ = ["export_roots", "run_emulate"]


def _say(fmt: str, doc: dict[str, object], lines: list[str]) -> None:
    """What was written: ``lines`` for a person, or ``doc`` as JSON (paths as strings)."""
    if fmt == "json":
        import json

        print(json.dumps(doc, indent=2))
    else:
        print("\n".join(lines))


def export_roots(*, state: Path | None, out: Path, fmt: str = "text") -> int:
    """Write ark.pem, ask.pem and vcek.pem of an existing emulated machine, and its vendor's
    CRL as ``crl/ark.crl`` (the service requires a checked CRL, as AMD's KDS serves it);
    return 0."""
    from veritee.cli._platform import default_state_dir

    directory = state or default_state_dir()
    if not (directory / InsecureEmulatedSnpMachine.STATE_FILE).exists():
        raise ConfigError(f"--state {directory}: no emulated machine there (seal, keys or kbs "
                          "with --create make one)")
    machine = InsecureEmulatedSnpMachine.load(directory)
    certs = machine.certificates()
    for name, cert in (("ark", certs.ark), ("ask", certs.ask), ("vcek", certs.vek)):
        assert cert is not None
        atomic_write(out / f"{name}.pem", cert.public_bytes(Encoding.PEM), 0o644)
    (out / "crl").mkdir(parents=True, exist_ok=True)
    atomic_write(out / "crl" / "ark.crl",
                 machine.vendor.crl(machine.now()).public_bytes(Encoding.DER), 0o644)
    _say(fmt, {"state": str(directory), "written": [str(out / f"{n}.pem")
                                                     for n in ("ark", "ask", "vcek")]
               + [str(out / "crl" / "ark.crl")],
               "trust_roots": [str(out / "ark.pem")], "amd_crl_dir": str(out / "crl")},
         [f"wrote {out}/{{ark,ask,vcek}}.pem and {out}/crl/ark.crl of the emulated machine in "
          f"{directory} (INSECURE: trust ark.pem only for development)",
          f'service settings: trust_roots = ["{out / "ark.pem"}"]',
          f'                  amd_crl_dir = "{out / "crl"}"'])
    return 0


def run_emulate(*, out: Path, product: str, report_data: str, key_size: int,
                debug: bool, tee: str = "snp", fmt: str = "text") -> int:
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
        return _emulate_intel(out, tee, data.ljust(64, b"\0"), debug, fmt)
    if tee == "tpm":
        return _emulate_tpm(out, data, fmt)
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
    verify = (f"veritee verify {out / 'report.bin'} --certs {out / 'certs'} "
              f"--trust-root {out / 'certs' / 'ark.pem'}")
    _say(fmt, {"tee": "snp", "product": product, "report": str(out / "report.bin"),
               "certs": [str(out / "certs" / f"{n}.pem") for n in ("ark", "ask", "vcek", "crl")],
               "measurement": guest.measurement.hex(), "debug": debug, "verify": verify},
         [f"wrote {out / 'report.bin'} and {out / 'certs'}/{{ark,ask,vcek,crl}}.pem",
          f"measurement: {guest.measurement.hex()}", f"verify with: {verify}"])
    return 0


def _emulate_intel(out: Path, tee: str, report_data: bytes, debug: bool, fmt: str) -> int:
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
        values = {"mr_td": td.mr_td.hex()}
    else:
        from veritee.platform.emulated.sgx import InsecureEmulatedSgxMachine

        author = rsa.generate_private_key(public_exponent=3, key_size=3072)
        enclave = InsecureEmulatedSgxMachine(vendor, cpu=cpu).load(demo_image(), author,
                                                                   debug=debug)
        quote = enclave.quote(report_data)
        what = f"MRENCLAVE: {enclave.mr_enclave.hex()}  MRSIGNER: {enclave.mr_signer.hex()}"
        values = {"mr_enclave": enclave.mr_enclave.hex(), "mr_signer": enclave.mr_signer.hex()}
    atomic_write(out / "quote.dat", quote, 0o644)
    vendor.write_collateral(out / "collateral", tee.upper(), now)
    verify = (f"veritee verify {out / 'quote.dat'} --certs {out / 'collateral'} "
              f"--trust-root {out / 'collateral' / 'root_ca.pem'}")
    _say(fmt, {"tee": tee, "quote": str(out / "quote.dat"),
               "collateral": str(out / "collateral"), **values, "debug": debug,
               "verify": verify},
         [f"wrote {out / 'quote.dat'} and {out / 'collateral'}/", what,
          f"verify with: {verify}"])
    return 0


def _emulate_tpm(out: Path, report_data: bytes, fmt: str) -> int:
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
    quote = (f"veritee tpm quote --quote {files['quote']} --signature "
             f"{files['signature']} --ak {files['ak']} --nonce {nonce.hex()} --pcrs "
             f"{files['pcrs']} --eventlog {files['eventlog']}")
    ek = (f"veritee tpm ek --ek-cert {out / 'ek.der'} --intermediate "
          f"{out / 'ca.pem'} --root {out / 'root.pem'}")
    _say(fmt, {"tee": "tpm", "files": {k: str(v) for k, v in files.items()},
               "ek_certificate": str(out / "ek.der"), "intermediates": str(out / "ca.pem"),
               "root": str(out / "root.pem"), "nonce": nonce.hex(), "verify": [quote, ek]},
         [f"wrote a swtpm quote and its EK chain to {out}/", f"verify with: {quote}",
          f"       and: {ek}"])
    return 0
