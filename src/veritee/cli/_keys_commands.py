"""Registration of ``veritee keys ACTION`` (the actions are in ``veritee.cli._keys``,
imported when one runs: registering imports argparse only)."""

from __future__ import annotations

import argparse

from veritee.cli import KEY_TYPES, AddCommand, CommandFn, add_format_arg, key_type_arg, lazy
from veritee.cli._options import add_store_args

__all__ = ["STORE_KEY_TYPES", "register"]


def _impl(name: str) -> CommandFn:
    """``name`` in ``veritee.cli._keys``, imported when the command runs."""
    return lazy(f"veritee.cli._keys:{name}")


# The store's key types: the one spelling of every command, plus the symmetric key.
STORE_KEY_TYPES = (*KEY_TYPES, "aes-256")


def register(add: AddCommand) -> None:
    """Add ``veritee keys ACTION``: each action its own subcommand, options and help."""
    from veritee.cli import _Parser

    keys = add("keys", "manage and use keys generated in the TEE and kept sealed at rest",
               _impl("_cmd_keys_help"))
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
               "--exportable)", _impl("_cmd_create"), aliases=("generate",))
    p.add_argument("--type", choices=STORE_KEY_TYPES, default="ec-p384", type=key_type_arg,
                   help="key type (default ec-p384)")
    p.add_argument("--usage", default=None, metavar="LIST", help="comma-separated: sign, "
                   "decrypt, wrap (default: sign for asymmetric keys, decrypt for aes-256)")
    p.add_argument("--exportable", action="store_true",
                   help="allow the private key to be exported later")
    add_format_arg(p, what="the new key")
    p = action("list", "list the keys (names, types, usages, versions; never key material)",
               _impl("_cmd_list"), named=False)
    add_format_arg(p, what="the keys")
    p = action("rotate", "add a new version of a key (old versions still verify and decrypt)",
               _impl("_cmd_rotate"))
    add_format_arg(p, what="the rotated key")
    p = action("destroy", "destroy every version of a key", _impl("_cmd_destroy"))
    add_format_arg(p, what="the outcome")

    def data_args(p: argparse.ArgumentParser, *, writes: bool = True) -> None:
        p.add_argument("--in", dest="input", metavar="FILE",
                       help="input data (default: stdin)")
        if writes:
            p.add_argument("--out", dest="output", metavar="FILE",
                           help="output (default: stdout)")
            p.add_argument("--force", action="store_true", help="overwrite --out if it exists")

    data_args(action("sign", "sign data (ECDSA with SHA-256/384 by curve, Ed25519, RSA-PSS)",
                     _impl("_cmd_sign")))
    p = action("verify", "verify a signature made by sign (exit 4 if it does not verify)",
               _impl("_cmd_verify"))
    data_args(p, writes=False)
    p.add_argument("--signature", metavar="FILE", required=True, help="the signature to check")
    p.add_argument("--key-version", type=int, metavar="N",
                   help="the version that signed (default: the newest)")
    for name, help_, fn in (
            ("encrypt", "encrypt data (AES-256-GCM or RSA-OAEP; output prefixed by the key "
             "version)", _impl("_cmd_encrypt")),
            ("decrypt", "decrypt what encrypt wrote (the output is written with mode 0600)",
             _impl("_cmd_decrypt"))):
        p = action(name, help_, fn)
        data_args(p)
        p.add_argument("--aad", metavar="TEXT", help="associated data (AES only): the same "
                       "for encrypt and decrypt")
    data_args(action("wrap", "wrap a key (RFC 5649 AES key wrap with padding, or RSA-OAEP)",
                     _impl("_cmd_wrap")))
    data_args(action("unwrap", "unwrap what wrap wrote (the output is written with mode 0600)",
                     _impl("_cmd_unwrap")))
    p = action("export-public", "write the public key (SubjectPublicKeyInfo PEM)",
               _impl("_cmd_export_public"))
    p.add_argument("--out", dest="output", metavar="FILE", help="output (default: stdout)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--key-version", type=int, metavar="N",
                   help="which version (default: the newest)")
