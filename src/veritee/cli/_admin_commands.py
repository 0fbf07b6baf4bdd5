"""Registration of ``veritee admin GROUP ACTION`` (the actions are in
``veritee.cli._admin``, imported when one runs: registering imports argparse only)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from veritee.cli import AddCommand, CommandFn, _Parser, add_format_arg, lazy
from veritee.cli._options import add_connection_args, add_settings_args

__all__ = ["DEFAULT_URL", "register"]

DEFAULT_URL = "http://127.0.0.1:8080"  # also veritee.cli._admin's default


def _impl(name: str) -> CommandFn:
    """``name`` in ``veritee.cli._admin``, imported when the command runs."""
    return lazy(f"veritee.cli._admin:{name}")


def _scheme_arg(p: argparse.ArgumentParser, what: str) -> None:
    # Checked against veritee.schemes.names() when the command runs (not here: listing the
    # schemes imports every one, and `veritee --help` must stay light).
    p.add_argument("--scheme", metavar="NAME", default=None,
                   help=f"the scheme (TEE) the {what} is for, e.g. sevsnp, tdx, nvidia "
                   "(default: the one the file names, else sevsnp)" if what == "policy" else
                   f"the scheme (TEE) the {what} is for, e.g. sevsnp, tdx, nvidia (default "
                   "sevsnp; the value's size is that scheme's measurement's)")


def register(add: AddCommand) -> None:
    """Add ``veritee admin GROUP ACTION``: each action its own subcommand, options and help."""
    admin = add("admin", "operate a running service over its admin API (resources, policies, "
                "reference values, tokens, audit, signing keys); 'token-create' bootstraps "
                "the first token", _impl("_cmd_admin_help"))
    groups = admin.add_subparsers(dest="group", metavar="GROUP", parser_class=_Parser)
    groups.required = True

    def group(name: str, help_: str, *, aliases: tuple[str, ...] = ()
              ) -> Callable[..., argparse.ArgumentParser]:
        g = groups.add_parser(name, help=help_, description=help_, aliases=list(aliases))
        actions = g.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
        actions.required = True

        def action(verb: str, help_: str, fn: Callable[[argparse.Namespace], int], *,
                   operand: tuple[str, str] | None = None) -> argparse.ArgumentParser:
            # No abbreviations: "--token" must never be taken as "--token-file" (and echoed).
            p = actions.add_parser(verb, help=help_, description=help_, allow_abbrev=False)
            p.set_defaults(fn=fn)
            if operand is not None:
                p.add_argument("name", metavar=operand[0], help=operand[1])
            add_connection_args(p, DEFAULT_URL)
            add_format_arg(p, what="the answer")
            return p

        return action

    action = group("resource", "secrets released to attested workloads (metadata only is "
                   "ever shown)", aliases=("resources",))
    path = ("PATH", "the resource path, e.g. db/password")
    p = action("put", "store a secret (a new version) and its release policy",
               _impl("_resource_put"), operand=path)
    p.add_argument("--secret-file", metavar="FILE", help="the secret ('-': stdin); without "
                   "it only the policy is updated")
    p.add_argument("--policy", metavar="FILE", required=True, help="the resource policy "
                   "(JSON or .toml; '-': JSON on stdin)")
    action("get-meta", "show a resource's path, version and policy (never the secret)",
           _impl("_resource_get_meta"), operand=path)
    action("list", "list the resources (metadata only)", _impl("_resource_list"))
    action("delete", "delete a resource and every version of its secret", _impl("_resource_delete"),
           operand=path)

    action = group("policy", "appraisal policies", aliases=("policies",))
    pid = ("ID", "the policy's id")
    action("list", "list the policies (and the active one)", _impl("_policy_list"))
    action("get", "show a policy", _impl("_policy_get"), operand=pid)
    p = action("put", "store a policy", _impl("_policy_put"), operand=pid)
    p.add_argument("--file", metavar="FILE", required=True,
                   help="the policy (JSON or .toml)")
    _scheme_arg(p, "policy")
    action("delete", "delete a policy", _impl("_policy_delete"), operand=pid)

    action = group("reference-value", "reference values (accepted launch measurements)",
                   aliases=("reference-values",))
    rname = ("NAME", "the reference value's name")
    action("list", "list the reference values", _impl("_reference_list"))
    p = action("put", "store a reference value", _impl("_reference_put"), operand=rname)
    p.add_argument("--value", metavar="HEX", required=True, help="the measurement, hex")
    p.add_argument("--kind", default="measurement", help="what the value is (default "
                   "measurement)")
    _scheme_arg(p, "value")
    action("delete", "delete a reference value", _impl("_reference_delete"), operand=rname)

    action = group("token", "API bearer tokens", aliases=("tokens",))
    p = action("create", "create a token (printed once, alone on the last line)",
               _impl("_token_create"))
    p.add_argument("--name", dest="token_name", required=True, help="a name for the token")
    p.add_argument("--role", choices=("admin", "reader"), default="reader",
                   help="admin (change) or reader (see); default reader")
    action("list", "list the tokens (never their values)", _impl("_token_list"))
    action("revoke", "revoke a token", _impl("_token_revoke"),
           operand=("TOKEN_ID", "the token's id (token list shows it)"))

    action = group("audit", "the hash-chained audit log")
    p = action("list", "list audit entries", _impl("_audit_list"))
    p.add_argument("--after", type=int, default=0, metavar="SEQ",
                   help="only entries after this sequence number (default 0)")
    p.add_argument("--limit", type=int, default=100, metavar="N",
                   help="at most this many entries (default 100)")
    action("verify", "have the service check its hash chain (exit 4 if broken)",
           _impl("_audit_verify"))

    action = group("keys", "the EAR signing key", aliases=("signing-keys",))
    action("rotate", "a new EAR signing key; the old one stays published for one token "
           "lifetime", _impl("_keys_rotate"))

    # The local tools (database and key files, not the API), implemented with the service
    # commands.
    local = (("token-create", "bootstrap: create a token directly in the database (before "
              "any token exists)", "veritee.cli._service:_cmd_token_create"),
             ("master-key-new", "write a new master key file (key_source = \"file\")",
              "veritee.cli._service:_cmd_master_key_new"),
             ("rotate-master-key", "re-wrap the data key under the master key that "
              "--new-settings names", "veritee.cli._service:_cmd_rotate"))
    for name, help_, target in local:
        p = groups.add_parser(name, help=help_, description=help_, allow_abbrev=False)
        p.set_defaults(fn=lazy(target))
        add_settings_args(p)
        if name == "token-create":
            p.add_argument("--name", required=True, help="a name for the token")
            p.add_argument("--role", choices=("admin", "reader"), default="admin",
                           help="admin (change) or reader (see); default admin")
        elif name == "master-key-new":
            p.add_argument("--out", required=True, metavar="FILE", help="the key file to create")
        else:
            p.add_argument("--new-settings", dest="new_settings", required=True,
                           metavar="FILE", help="settings naming the new master key source")
        add_format_arg(p, what="the outcome")
