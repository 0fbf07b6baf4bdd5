"""``veritee keys``: manage and use keys in the sealed key store.

Lifecycle: ``create``, ``list``, ``rotate``, ``destroy``. Use (the key never leaves the TEE):
``sign``/``verify`` (ECDSA with SHA-256/384 by curve, Ed25519, RSA-PSS), ``encrypt``/``decrypt``
(AES-256-GCM or RSA-OAEP; output prefixed by the key version), ``wrap``/``unwrap`` (RFC 5649
or RSA-OAEP), ``export-public`` (SubjectPublicKeyInfo PEM). Data comes from ``--in FILE`` (or
stdin) and goes to ``--out FILE`` (or stdout); secrets are written with mode 0600.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from veritee._fs import atomic_write
from veritee.cli import AddCommand
from veritee.crypto.keys import KeyInfo, KeyStore, KeyType, Usage
from veritee.errors import ConfigError

__all__ = ["add_store_args", "register", "store_from_args"]

_USE = ("sign", "verify", "encrypt", "decrypt", "wrap", "unwrap", "export-public")


def store_from_args(args: argparse.Namespace) -> KeyStore:
    """The key store the ``--store`` and platform options describe."""
    from veritee.cli._platform import open_workload
    from veritee.sealing import Sealer, SealingPolicy

    work = open_workload(args)
    env = os.environ.get("VERITEE_KEYSTORE_DIR")
    directory = args.store or (Path(env) if env else
                               Path.home() / ".local" / "share" / "veritee" / "keys")
    return KeyStore(directory, Sealer(work.source, SealingPolicy.measurement(),
                                      counters=work.counters), rng=work.drbg().random_bytes,
                    unsafe_allow_no_rollback_protection=args.unsafe_no_rollback_protection)


def add_store_args(p: argparse.ArgumentParser) -> None:
    """``--store``, ``--unsafe-no-rollback-protection`` and the platform options."""
    from veritee.cli._platform import add_platform_args

    p.add_argument("--store", type=Path, metavar="DIR", help="key store directory "
                   "(default: $VERITEE_KEYSTORE_DIR or ~/.local/share/veritee/keys)")
    p.add_argument("--unsafe-no-rollback-protection", action="store_true",
                   help="UNSAFE: run without monotonic counters (a real SEV-SNP guest has "
                   "none); restoring old files can then revive destroyed keys")
    add_platform_args(p)


def _show(args: argparse.Namespace, infos: list[KeyInfo]) -> None:
    if args.format == "json":
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return
    for i in infos:
        state = "destroyed" if i.destroyed else f"v{i.latest} (versions {list(i.versions)})"
        print(f"{i.name}: {i.key_type.value} usages={','.join(sorted(i.usages))} "
              f"exportable={i.exportable} {state}")


def _input(args: argparse.Namespace) -> bytes:
    if args.input in (None, "-"):
        return sys.stdin.buffer.read()
    try:
        return Path(args.input).read_bytes()
    except OSError as exc:
        raise ConfigError(f"--in {args.input}: cannot read ({exc.strerror})") from None


def _output(args: argparse.Namespace, data: bytes, *, secret: bool) -> None:
    if args.output in (None, "-"):
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    out = Path(args.output)
    if (out.exists() or out.is_symlink()) and not args.force:
        raise ConfigError(f"--out {out} exists: give --force to overwrite it")
    atomic_write(out, data, 0o600 if secret else 0o644)
    print(f"wrote {out}", file=sys.stderr)


def _use(args: argparse.Namespace, store: KeyStore) -> int:
    name: str = args.name
    action: str = args.action
    aad = args.aad.encode() if args.aad else b""
    if action == "export-public":
        pem = store.public_key(name, args.key_version).public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        _output(args, pem, secret=False)
    elif action == "sign":
        version, signature = store.sign(name, _input(args))
        _output(args, signature, secret=False)
        print(f"signed with {name} v{version} (verify with --key-version {version})",
              file=sys.stderr)
    elif action == "verify":
        if not args.signature:
            raise ConfigError("keys verify: --signature FILE is required")
        try:
            signature = Path(args.signature).read_bytes()
        except OSError as exc:
            raise ConfigError(f"--signature {args.signature}: cannot read "
                              f"({exc.strerror})") from None
        version = args.key_version or store.info(name).latest
        store.verify(name, version, _input(args), signature)  # VerificationError -> exit 4
        print(f"signature OK: {name} v{version}")
    elif action == "encrypt":
        _output(args, store.encrypt(name, _input(args), aad=aad), secret=False)
    elif action == "decrypt":
        _output(args, store.decrypt(name, _input(args), aad=aad), secret=True)
    elif action == "wrap":
        _output(args, store.wrap(name, _input(args)), secret=False)
    else:  # unwrap
        _output(args, store.unwrap(name, _input(args)), secret=True)
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    if args.action != "list" and not args.name:
        raise ConfigError(f"keys {args.action}: a key NAME is required")
    store = store_from_args(args)
    if args.action in _USE:
        return _use(args, store)
    if args.action == "create":
        kt = KeyType(args.type)
        default = "decrypt" if kt is KeyType.AES_256 else "sign"
        try:
            usages = [Usage(u.strip()) for u in (args.usage or default).split(",")]
        except ValueError:
            raise ConfigError(f"--usage: got {args.usage!r}, want a comma-separated subset "
                              "of sign, decrypt, wrap") from None
        _show(args, [store.create(args.name, kt, usages,
                                  exportable=args.exportable)])
    elif args.action == "list":
        _show(args, store.entries())
    elif args.action == "rotate":
        _show(args, [store.rotate(args.name)])
    elif args.action == "destroy":
        store.destroy(args.name)
        print(f"destroyed {args.name}")
    return 0


def register(add: AddCommand) -> None:
    """Add ``veritee keys``."""
    p = add("keys", "manage and use keys generated in the TEE and kept sealed at rest",
            _cmd_keys)
    p.add_argument("action", choices=("create", "list", "rotate", "destroy", *_USE))
    p.add_argument("name", nargs="?", help="key name (every action but list)")
    p.add_argument("--type", choices=[t.value for t in KeyType], default=KeyType.EC_P384.value)
    p.add_argument("--usage", help="comma-separated: sign, decrypt, wrap (default: sign for "
                   "asymmetric keys)", default=None)
    p.add_argument("--exportable", action="store_true")
    p.add_argument("--format", choices=("text", "json"), default="text")
    g = p.add_argument_group("using a key")
    g.add_argument("--in", dest="input", metavar="FILE", help="input data (default: stdin)")
    g.add_argument("--out", dest="output", metavar="FILE", help="output (default: stdout)")
    g.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    g.add_argument("--signature", metavar="FILE", help="verify: the signature to check")
    g.add_argument("--key-version", type=int, metavar="N", help="verify, export-public: "
                   "which version (default: the newest)")
    g.add_argument("--aad", metavar="TEXT", help="encrypt/decrypt (AES): associated data")
    add_store_args(p)
