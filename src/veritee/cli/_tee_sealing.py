"""``veritee seal`` / ``unseal`` with ``--tee sgx|tdx|tpm``: each TEE's own sealing.

``veritee.sealing`` (headers, streaming, rollback counters) is built on the SEV-SNP key
request; the other TEEs seal with their own mechanism, whole files at a time:

====  =====================================  ==========================================
TEE   ``--policy measurement``               ``--policy signer``
====  =====================================  ==========================================
sgx   EGETKEY KEYPOLICY.MRENCLAVE            KEYPOLICY.MRSIGNER, ISVSVN >= ``--min-svn``
tdx   key-service TD, ``mrtd``               key-service TD, ``mrowner``
tpm   PolicyPCR over SHA-256 PCRs 0-7        (no signer identity in a TPM: refused)
====  =====================================  ==========================================

As with ``veritee.sealing``, the reader states what it expects and the blob's header is
never trusted to say it (SGX: the KEYREQUEST must be the reader's policy, ISVSVN at least
``--min-svn`` (default: the enclave's own), CPUSVN at least ``--min-tcb`` when given).
``--rollback`` needs monotonic counters, which SGX and TDX do not have; on the TPM, use the
Python API (``veritee.sealing`` rollback over ``TpmPlatform`` NV counters).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from veritee._fs import atomic_write
from veritee.errors import ConfigError
from veritee.platform.base import Platform

__all__ = ["seal_on_tee", "unseal_on_tee"]

_MAX_FILE = 256 << 20  # whole-file sealing: keep it bounded


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_size > _MAX_FILE:
            raise ConfigError(f"{path}: larger than {_MAX_FILE >> 20} MiB (--tee sealing is "
                              "whole-file; stream large data on SEV-SNP)")
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None


def _check(args: argparse.Namespace) -> None:
    if getattr(args, "rollback", False):
        raise ConfigError(f"--rollback: --tee {args.tee} has no monotonic counters the CLI "
                          "can bind (SGX and TDX have none; TPM: use the Python API)")
    if args.tee == "tpm" and args.policy == "signer":
        raise ConfigError("--policy signer: a TPM has no signer identity; seal to PCRs "
                          "(--policy measurement)")


def _min_cpu_svn(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        value = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        value = b""
    if len(value) != 16:
        raise ConfigError(f"--min-tcb: got {text!r}, want the 16-byte CPUSVN in hex")
    return value


def seal_on_tee(args: argparse.Namespace) -> int:
    """Seal IN to OUT on the TEE ``--tee`` names."""
    _check(args)
    data = _read(Path(args.input))
    blob, what = _with_platform(args, lambda p: _seal(args, p, data))
    atomic_write(Path(args.output), blob, 0o600)
    print(f"sealed {args.input} -> {args.output} on {what}")
    return 0


def unseal_on_tee(args: argparse.Namespace) -> int:
    """Unseal IN to OUT on the TEE ``--tee`` names, under the reader's expected policy."""
    _check(args)
    blob = _read(Path(args.input))
    data, _ = _with_platform(args, lambda p: _unseal(args, p, blob))
    atomic_write(Path(args.output), data, 0o600)
    print(f"unsealed {args.input} -> {args.output}")
    return 0


def _with_platform(args: argparse.Namespace,
                   fn: Callable[[Platform], bytes]) -> tuple[bytes, str]:
    from veritee.cli._platform import open_platform

    platform = open_platform(args)
    try:
        return fn(platform), platform.description
    finally:
        close = getattr(getattr(platform, "tpm", None), "close", None)
        if callable(close):
            close()


def _seal(args: argparse.Namespace, platform: Platform, data: bytes) -> bytes:
    from veritee.platform.adapters import SgxPlatform, TdxPlatform, TpmAdapter

    if isinstance(platform, SgxPlatform):
        from veritee.platform.emulated.sgx import KeyPolicy, sgx_seal

        pol = KeyPolicy.MRENCLAVE if args.policy == "measurement" else KeyPolicy.MRSIGNER
        return sgx_seal(platform.enclave, data, pol)
    if isinstance(platform, TdxPlatform):
        from veritee.platform.emulated.tdx import td_seal

        return td_seal(platform.td, data, "mrtd" if args.policy == "measurement" else "mrowner")
    if isinstance(platform, TpmAdapter):
        from veritee.formats.tpm import HashAlg

        return platform.tpm.seal(data, {HashAlg.SHA256: list(range(8))})
    from veritee.errors import PlatformError

    raise PlatformError(f"--tee {args.tee}: this platform has no sealing key (a real TD: "
                        "fetch keys with 'veritee kbs get')")


def _unseal(args: argparse.Namespace, platform: Platform, blob: bytes) -> bytes:
    from veritee.platform.adapters import SgxPlatform, TdxPlatform, TpmAdapter

    if isinstance(platform, SgxPlatform):
        from veritee.platform.emulated.sgx import KeyPolicy, sgx_unseal

        pol = KeyPolicy.MRENCLAVE if args.policy == "measurement" else KeyPolicy.MRSIGNER
        return sgx_unseal(platform.enclave, blob, policy=pol, min_isv_svn=args.min_svn,
                          min_cpu_svn=_min_cpu_svn(getattr(args, "min_tcb", None)))
    if isinstance(platform, TdxPlatform):
        from veritee.platform.emulated.tdx import td_unseal

        return td_unseal(platform.td, blob,
                         policy="mrtd" if args.policy == "measurement" else "mrowner")
    if isinstance(platform, TpmAdapter):
        return platform.tpm.unseal(blob)
    from veritee.errors import PlatformError

    raise PlatformError(f"--tee {args.tee}: this platform has no sealing key")
