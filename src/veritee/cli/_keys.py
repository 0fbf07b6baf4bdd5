"""``veritee keys``: create, list, rotate and destroy keys in the sealed key store."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from veritee.cli import AddCommand
from veritee.crypto.keys import KeyInfo, KeyStore, KeyType, Usage

__all__ = ["register"]


def _store(args: argparse.Namespace) -> KeyStore:
    from veritee.cli._platform import open_workload
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
        print(json.dumps([i.to_dict() for i in infos], indent=2))
        return
    for i in infos:
        state = "destroyed" if i.destroyed else f"v{i.latest} (versions {list(i.versions)})"
        print(f"{i.name}: {i.key_type.value} usages={','.join(sorted(i.usages))} "
              f"exportable={i.exportable} {state}")


def _cmd_keys(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.action != "list" and not args.name:
        from veritee.errors import ConfigError

        raise ConfigError(f"keys {args.action}: a key NAME is required")
    if args.action == "create":
        kt = KeyType(args.type)
        default = "decrypt" if kt is KeyType.AES_256 else "sign"
        try:
            usages = [Usage(u.strip()) for u in (args.usage or default).split(",")]
        except ValueError:
            from veritee.errors import ConfigError

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
    from veritee.cli._platform import add_platform_args

    p = add("keys", "manage keys generated in the TEE and kept sealed at rest", _cmd_keys)
    p.add_argument("action", choices=("create", "list", "rotate", "destroy"))
    p.add_argument("name", nargs="?", help="key name (create, rotate, destroy)")
    p.add_argument("--type", choices=[t.value for t in KeyType], default=KeyType.EC_P384.value)
    p.add_argument("--usage", help="comma-separated: sign, decrypt, wrap (default: sign for "
                   "asymmetric keys)", default=None)
    p.add_argument("--exportable", action="store_true")
    p.add_argument("--store", type=Path, metavar="DIR", help="key store directory "
                   "(default: $VERITEE_KEYSTORE_DIR or ~/.local/share/veritee/keys)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--unsafe-no-rollback-protection", action="store_true",
                   help="UNSAFE: run without monotonic counters (a real SEV-SNP guest has "
                   "none); restoring old files can then revive destroyed keys")
    add_platform_args(p)
