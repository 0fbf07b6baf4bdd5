"""``veritee keys``: manage and use keys in the sealed key store.

Lifecycle: ``create``, ``list``, ``rotate``, ``destroy``. Use (the key never leaves the TEE):
``sign``/``verify`` (ECDSA with SHA-256/384 by curve, Ed25519, RSA-PSS), ``encrypt``/``decrypt``
(AES-256-GCM or RSA-OAEP; output prefixed by the key version), ``wrap``/``unwrap`` (RFC 5649
or RSA-OAEP), ``export-public`` (SubjectPublicKeyInfo PEM). Data comes from ``--in FILE`` (or
stdin) and goes to ``--out FILE`` (or stdout); secrets are written with mode 0600.
"""

from __future__ import annotations

import argparse
import os
import sys

from veritee.cli._options import add_store_args
from veritee.errors import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (start-up)
if TYPE_CHECKING:
    from veritee.crypto.keys import KeyInfo, KeyStore

__all__ = ["add_store_args", "store_from_args"]


def store_from_args(args: argparse.Namespace) -> KeyStore:
    """The key store the ``--store`` and platform options describe."""
    from pathlib import Path

    from veritee.cli._platform import open_workload
    from veritee.crypto.keys import KeyStore
    from veritee.sealing import Sealer, SealingPolicy

    work = open_workload(args)
    env = os.environ.get("VERITEE_KEYSTORE_DIR")
    directory = args.store or (Path(env) if env else
                               Path.home() / ".local" / "share" / "veritee" / "keys")
    return KeyStore(directory, Sealer(work.source, SealingPolicy.measurement(),
                                      counters=work.counters), rng=work.drbg().random_bytes,
                    unsafe_allow_no_rollback_protection=args.unsafe_no_rollback_protection)


def _show(args: argparse.Namespace, infos: list[KeyInfo]) -> None:
    if args.format == "json":
        import json

        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return
    for i in infos:
        state = "destroyed" if i.destroyed else f"v{i.latest} (versions {list(i.versions)})"
        print(f"{i.name}: {i.key_type.value} usages={','.join(sorted(i.usages))} "
              f"exportable={i.exportable} {state}")


def _read_file(path: str, flag: str) -> bytes:
    from pathlib import Path

    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot read ({exc.strerror})") from None


def _input(args: argparse.Namespace) -> bytes:
    if args.input in (None, "-"):
        return sys.stdin.buffer.read()
    return _read_file(args.input, "--in")


def _output(args: argparse.Namespace, data: bytes, *, secret: bool) -> None:
    from pathlib import Path

    from veritee._fs import atomic_write

    if args.output in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    out = Path(args.output)
    if (out.exists() or out.is_symlink()) and not args.force:
        raise ConfigError(f"--out {out} exists: give --force to overwrite it")
    atomic_write(out, data, 0o600 if secret else 0o644)
    print(f"wrote {out}", file=sys.stderr)


# -- lifecycle --------------------------------------------------------------------------------
def _cmd_create(args: argparse.Namespace) -> int:
    from veritee.crypto.keys import KeyType, Usage

    kt = KeyType(args.type)
    default = "decrypt" if kt is KeyType.AES_256 else "sign"
    try:
        usages = [Usage(u.strip()) for u in (args.usage or default).split(",")]
    except ValueError:
        raise ConfigError(f"--usage: got {args.usage!r}, want a comma-separated subset "
                          "of sign, decrypt, wrap") from None
    _show(args, [store_from_args(args).create(args.name, kt, usages,
                                              exportable=args.exportable)])
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    _show(args, store_from_args(args).entries())
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    _show(args, [store_from_args(args).rotate(args.name)])
    return 0


def _cmd_destroy(args: argparse.Namespace) -> int:
    store_from_args(args).destroy(args.name)
    if args.format == "json":
        import json

        print(json.dumps({"destroyed": args.name}, indent=2))
    else:
        print(f"destroyed {args.name}")
    return 0


# -- use (the key never leaves the store) -----------------------------------------------------
def _cmd_export_public(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pem = store_from_args(args).public_key(args.name, args.key_version).public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    _output(args, pem, secret=False)
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    version, signature = store_from_args(args).sign(args.name, _input(args))
    _output(args, signature, secret=False)
    print(f"signed with {args.name} v{version} (verify with --key-version {version})",
          file=sys.stderr)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    signature = _read_file(args.signature, "--signature")
    store = store_from_args(args)
    version = args.key_version or store.info(args.name).latest
    store.verify(args.name, version, _input(args), signature)  # VerificationError -> exit 4
    print(f"signature OK: {args.name} v{version}")
    return 0


def _cmd_encrypt(args: argparse.Namespace) -> int:
    aad = args.aad.encode() if args.aad else b""
    _output(args, store_from_args(args).encrypt(args.name, _input(args), aad=aad),
            secret=False)
    return 0


def _cmd_decrypt(args: argparse.Namespace) -> int:
    aad = args.aad.encode() if args.aad else b""
    _output(args, store_from_args(args).decrypt(args.name, _input(args), aad=aad),
            secret=True)
    return 0


def _cmd_wrap(args: argparse.Namespace) -> int:
    _output(args, store_from_args(args).wrap(args.name, _input(args)), secret=False)
    return 0


def _cmd_unwrap(args: argparse.Namespace) -> int:
    _output(args, store_from_args(args).unwrap(args.name, _input(args)), secret=True)
    return 0


def _cmd_keys_help(args: argparse.Namespace) -> int:  # pragma: no cover - ACTION is required
    raise ConfigError("keys: an action is required")
