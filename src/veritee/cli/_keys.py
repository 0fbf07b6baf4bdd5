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

from veritee.cli import KEY_TYPES, AddCommand, add_format_arg, key_type_arg
from veritee.cli._options import add_store_args
from veritee.errors import ConfigError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (start-up)
if TYPE_CHECKING:
    from veritee.crypto.keys import KeyInfo, KeyStore

__all__ = ["add_store_args", "register", "store_from_args"]


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


# The store's key types: the one spelling of every command, plus the symmetric key.
STORE_KEY_TYPES = (*KEY_TYPES, "aes-256")


def register(add: AddCommand) -> None:
    """Add ``veritee keys ACTION``: each action its own subcommand, options and help."""
    from veritee.cli import _Parser

    keys = add("keys", "manage and use keys generated in the TEE and kept sealed at rest",
               _cmd_keys_help)
    actions = keys.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True

    def action(name: str, help_: str, fn: object, *, aliases: tuple[str, ...] = (),
               named: bool = True) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_, description=help_, aliases=list(aliases))
        p.set_defaults(fn=fn)
        if named:
            p.add_argument("name", metavar="NAME", help="the key's name in the store")
        add_store_args(p)
        return p

    p = action("create", "generate a key in the TEE (sealed at rest; never exported unless "
               "--exportable)", _cmd_create, aliases=("generate",))
    p.add_argument("--type", choices=STORE_KEY_TYPES, default="ec-p384", type=key_type_arg,
                   help="key type (default ec-p384)")
    p.add_argument("--usage", default=None, metavar="LIST", help="comma-separated: sign, "
                   "decrypt, wrap (default: sign for asymmetric keys, decrypt for aes-256)")
    p.add_argument("--exportable", action="store_true",
                   help="allow the private key to be exported later")
    add_format_arg(p, what="the new key")
    p = action("list", "list the keys (names, types, usages, versions; never key material)",
               _cmd_list, named=False)
    add_format_arg(p, what="the keys")
    p = action("rotate", "add a new version of a key (old versions still verify and decrypt)",
               _cmd_rotate)
    add_format_arg(p, what="the rotated key")
    p = action("destroy", "destroy every version of a key", _cmd_destroy)
    add_format_arg(p, what="the outcome")

    def data_args(p: argparse.ArgumentParser, *, writes: bool = True) -> None:
        p.add_argument("--in", dest="input", metavar="FILE",
                       help="input data (default: stdin)")
        if writes:
            p.add_argument("--out", dest="output", metavar="FILE",
                           help="output (default: stdout)")
            p.add_argument("--force", action="store_true", help="overwrite --out if it exists")

    data_args(action("sign", "sign data (ECDSA with SHA-256/384 by curve, Ed25519, RSA-PSS)",
                     _cmd_sign))
    p = action("verify", "verify a signature made by sign (exit 4 if it does not verify)",
               _cmd_verify)
    data_args(p, writes=False)
    p.add_argument("--signature", metavar="FILE", required=True, help="the signature to check")
    p.add_argument("--key-version", type=int, metavar="N",
                   help="the version that signed (default: the newest)")
    for name, help_, fn in (
            ("encrypt", "encrypt data (AES-256-GCM or RSA-OAEP; output prefixed by the key "
             "version)", _cmd_encrypt),
            ("decrypt", "decrypt what encrypt wrote (the output is written with mode 0600)",
             _cmd_decrypt)):
        p = action(name, help_, fn)
        data_args(p)
        p.add_argument("--aad", metavar="TEXT", help="associated data (AES only): the same "
                       "for encrypt and decrypt")
    data_args(action("wrap", "wrap a key (RFC 5649 AES key wrap with padding, or RSA-OAEP)",
                     _cmd_wrap))
    data_args(action("unwrap", "unwrap what wrap wrote (the output is written with mode 0600)",
                     _cmd_unwrap))
    p = action("export-public", "write the public key (SubjectPublicKeyInfo PEM)",
               _cmd_export_public)
    p.add_argument("--out", dest="output", metavar="FILE", help="output (default: stdout)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--key-version", type=int, metavar="N",
                   help="which version (default: the newest)")
