"""Choosing the platform a command runs on: a real SEV-SNP guest, or the emulated one.

The emulated machine keeps its state (chip secret, firmware, NV counters) in a directory,
``--state`` or ``$VERITEE_STATE_DIR`` (default ``~/.local/share/veritee/emulated-snp``), so
that sealing in one command and unsealing in the next happen on "the same chip". The guest
is launched from ``--image`` (default: the demo firmware); ``--id-key`` with ``--svn`` adds an
ID block, which gives the workload a signer identity for signer sealing policies.

``--tee tdx|sgx`` selects an emulated Intel TD or enclave instead (:func:`open_platform`),
whose CPU and vendor live in ``--state`` (default ``~/.local/share/veritee/emulated-intel``);
``--tee tpm`` a TPM 2.0 (``/dev/tpmrm0``, or swtpm kept in ``--state``). Sealing, the key
store and attested certificates run on each of them through the same APIs
(:func:`open_workload`: the platform is the sealing key source, ``veritee.sealing`` finds
its TEE's keys).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from veritee.cli._options import add_platform_args  # re-exported; registration uses _options
from veritee.client import EvidenceSource
from veritee.crypto.random import (
    Drbg,
    EntropySource,
    HealthTestedSource,
    OsEntropySource,
    PlatformTrngSource,
    ctr_drbg,
)
from veritee.errors import ConfigError, PlatformError
from veritee.formats.sevsnp import GuestPolicy
from veritee.platform.base import Platform

if TYPE_CHECKING:
    from veritee.platform.tpm import TpmPlatform
from veritee.platform.emulated.measurement import PAGE_SIZE, measure, simple_guest_image
from veritee.platform.emulated.snp import (
    IdBlock,
    InsecureEmulatedSnpMachine,
    sign_id_block,
    vmsa_page,
)
from veritee.platform.sevsnp import SevGuestDevice, sev_guest_available
from veritee.sealing import KeySource, MonotonicCounters

__all__ = ["Workload", "add_platform_args", "open_platform", "open_workload"]

def default_state_dir() -> Path:
    """Where the emulated machine lives unless ``--state`` says otherwise."""
    env = os.environ.get("VERITEE_STATE_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "veritee" / "emulated-snp"


class Attester(KeySource, EvidenceSource, Protocol):
    """A TEE workload: reports (plain and extended) and firmware-derived keys."""


@dataclass
class Workload:
    """The platform a command got: a key source, NV counters where the platform has them, and
    its entropy source.

    ``source`` is an SEV-SNP guest (:class:`Attester`) on ``--tee snp``, else the
    :class:`~veritee.platform.base.Platform` of the TEE: both seal
    (:func:`veritee.sealing.sealing_source`) and give evidence (``extended_report``).
    """

    source: Attester | Platform
    counters: MonotonicCounters | None
    description: str
    entropy: EntropySource

    @property
    def tee(self) -> str:
        """``snp``, ``sgx``, ``tdx`` or ``tpm``."""
        name = getattr(self.source, "name", "sevsnp")
        return "snp" if name == "sevsnp" else str(name)

    def snp_guest(self) -> Attester:
        """The SEV-SNP guest, for commands that only SEV-SNP has (PlatformError otherwise)."""
        if isinstance(self.source, Platform):
            raise PlatformError(f"--tee {self.tee}: this command needs an SEV-SNP guest "
                                "(--tee snp)")
        return self.source

    def drbg(self) -> Drbg:
        """A CTR_DRBG (AES-256, with df, prediction resistance) on the platform's entropy,
        behind SP 800-90B health tests: what keys are generated from."""
        return ctr_drbg(HealthTestedSource(self.entropy), prediction_resistance=True,
                        personalization=b"veritee workload DRBG")


def _hex16(text: str, name: str) -> bytes:
    try:
        value = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise ConfigError(f"--{name}: got {text!r}, want 16 bytes of hex") from None
    if len(value) != 16:
        raise ConfigError(f"--{name}: got {len(value)} bytes, want 16")
    return value


def intel_state_dir(args: argparse.Namespace) -> Path:
    """Where the emulated Intel vendor and CPU live (``--state`` or beside the SNP one)."""
    return args.state or default_state_dir().parent / "emulated-intel"


def _firmware(args: argparse.Namespace) -> bytes:
    from veritee.cli._demo import demo_image

    if args.image is None:
        return demo_image()
    try:
        return bytes(args.image.read_bytes())
    except OSError as exc:
        raise ConfigError(f"--image {args.image}: cannot read ({exc.strerror})") from None


def _sgx_signing_key(state: Path) -> rsa.RSAPrivateKey:
    """The workload author's enclave signing key kept in the state directory."""
    from veritee._fs import atomic_write

    path = state / "sgx-enclave-signing-key.pem"
    if path.exists():
        key = load_pem_private_key(path.read_bytes(), None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(f"{path}: not an RSA key")
        return key
    key = rsa.generate_private_key(public_exponent=3, key_size=3072)
    atomic_write(path, key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
                 0o600)
    return key


def open_tpm(args: argparse.Namespace) -> TpmPlatform:
    """The TPM ``--tee tpm`` selects: ``/dev/tpmrm0`` with ``--platform auto`` when present,
    else the software TPM (swtpm) kept in ``--state`` (default ``$VERITEE_SWTPM_STATE`` or
    ``~/.local/share/veritee/swtpm``). The caller closes it."""
    from veritee.platform.tpm import InsecureSwtpmPlatform, TpmPlatform, default_swtpm_state_dir

    if args.platform == "auto" and Path("/dev/tpmrm0").exists():
        return TpmPlatform.device()
    return InsecureSwtpmPlatform.open(args.state or default_swtpm_state_dir())


def open_platform(args: argparse.Namespace) -> Platform:
    """The :class:`~veritee.platform.base.Platform` that ``--tee`` (and ``--platform``)
    select: SEV-SNP (real or emulated), or an emulated Intel TDX TD / SGX enclave whose CPU
    and vendor are kept in the state directory."""
    from veritee.platform.adapters import SgxPlatform, SnpPlatform, TdxPlatform, TpmAdapter

    tee = getattr(args, "tee", None) or "snp"
    if tee == "tpm":
        return TpmAdapter(open_tpm(args))
    if tee == "snp":
        work = open_workload(args)
        return SnpPlatform(work.snp_guest(), counters=work.counters, description=work.description,
                           trng=work.counters)
    if tee == "tdx" and args.platform == "auto":
        from veritee.platform.tdx import TdxGuestDevice, tdx_guest_available

        if tdx_guest_available():
            from veritee.platform.adapters import TdxGuestPlatform

            return TdxGuestPlatform(TdxGuestDevice())
    from veritee.platform.emulated.intel import EmulatedIntelCpu

    state = intel_state_dir(args)
    cpu = EmulatedIntelCpu.open(state)
    debug = bool(getattr(args, "debug_guest", False))
    if tee == "tdx":
        from veritee.platform.emulated.tdx import InsecureEmulatedTdxMachine

        td = InsecureEmulatedTdxMachine(cpu.vendor, cpu=cpu).launch(_firmware(args),
                                                                    debug=debug)
        return TdxPlatform(td, description=f"emulated TDX TD (state {state}, INSECURE)")
    from veritee.platform.emulated.sgx import InsecureEmulatedSgxMachine

    enclave = InsecureEmulatedSgxMachine(cpu.vendor, cpu=cpu).load(
        _firmware(args), _sgx_signing_key(state), isv_svn=args.svn, debug=debug)
    return SgxPlatform(enclave, description=f"emulated SGX enclave (state {state}, INSECURE)")


def open_workload(args: argparse.Namespace) -> Workload:
    """The workload the platform options describe: what sealing and the key store run on.

    ``--tee sgx|tdx|tpm``: the TEE's platform (:func:`open_platform`), with the TPM's NV
    counters (SGX and TDX have none) and its TRNG."""
    tee = getattr(args, "tee", None) or "snp"
    if tee != "snp":
        platform = open_platform(args)
        counters = platform.counters
        entropy: EntropySource = OsEntropySource()
        if tee == "tpm":
            entropy = PlatformTrngSource(platform.random, name="tpm2-getrandom")
        return Workload(platform, counters if isinstance(counters, MonotonicCounters)
                        else None, platform.description, entropy)
    if args.platform == "sev-snp" or (args.platform == "auto" and sev_guest_available()):
        # In an SNP guest the kernel RNG is fed by RDSEED, inside the TEE.
        return Workload(SevGuestDevice(), None, "SEV-SNP guest (/dev/sev-guest)",
                        OsEntropySource())
    from veritee.cli._demo import demo_image

    state = args.state or default_state_dir()
    if not (state / InsecureEmulatedSnpMachine.STATE_FILE).exists():
        # A mistyped --state must not silently become a new chip (whose keys open nothing).
        # Only the default directory is created on first use.
        explicit = args.state is not None or bool(os.environ.get("VERITEE_STATE_DIR"))
        if explicit and not getattr(args, "create", False):
            raise ConfigError(f"--state {state}: no emulated machine there (add --create to "
                              "make a new one)")
        print(f"veritee: created a new emulated SEV-SNP machine in {state}", file=sys.stderr)
    machine = InsecureEmulatedSnpMachine.open(state)
    if args.image is not None:
        try:
            firmware = args.image.read_bytes()
        except OSError as exc:
            raise ConfigError(f"--image {args.image}: cannot read ({exc.strerror})") from None
        firmware = firmware.ljust(-(-max(len(firmware), 1) // PAGE_SIZE) * PAGE_SIZE, b"\0")
    else:
        firmware = demo_image()
    image = simple_guest_image(firmware)
    policy = GuestPolicy(smt=True, debug=getattr(args, "debug_guest", False))
    if args.id_key is None:
        guest = machine.launch(image, policy=policy)
    else:
        try:
            key = load_pem_private_key(args.id_key.read_bytes(), None)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"--id-key {args.id_key}: not a readable PEM private key "
                              f"({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp384r1":
            raise ConfigError(f"--id-key {args.id_key}: want an EC P-384 key")
        block = IdBlock(ld=measure(image, vmsas=[vmsa_page(0)]),
                        family_id=_hex16(args.family_id, "family-id"),
                        image_id=_hex16(args.image_id, "image-id"), guest_svn=args.svn,
                        policy=policy)
        guest = machine.launch(image, policy=policy, id_block=block,
                               id_auth=sign_id_block(block, key))
    return Workload(guest, machine, f"emulated SEV-SNP guest (state {state}, INSECURE)",
                    PlatformTrngSource(machine))
