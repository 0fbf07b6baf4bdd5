"""Registration of ``serve``, ``audit verify`` and ``kbs get|measurement`` (the commands are
in ``veritee.cli._service``, imported when one runs: registering imports argparse only)."""

from __future__ import annotations

from veritee.cli import AddCommand, CommandFn, _Parser, add_format_arg, lazy
from veritee.cli._options import add_platform_args, add_settings_args

__all__ = ["register"]


def _impl(name: str) -> CommandFn:
    """``name`` in ``veritee.cli._service``, imported when the command runs."""
    return lazy(f"veritee.cli._service:{name}")


def register(add: AddCommand) -> None:
    """Add ``serve``, ``audit verify`` and ``kbs get|measurement``."""
    p = add("serve", "run the verifier and key-broker service (uvicorn)", _impl("_cmd_serve"))
    add_settings_args(p)
    p.add_argument("--host", help="address to listen on (overrides the settings)")
    p.add_argument("--port", type=int, help="port to listen on (overrides the settings)")
    p.add_argument("--workers", type=int, help="worker processes (default: settings, 1)")

    audit = add("audit", "audit-log tools on the service's database", _impl("_cmd_group_help"))
    actions = audit.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    p = actions.add_parser("verify", help="check the audit log's hash chain in the database "
                           "(exit 4 if broken)", description="check the audit log's hash "
                           "chain in the database (exit 4 if broken)")
    p.set_defaults(fn=_impl("_cmd_audit_verify"))
    add_settings_args(p)
    p.add_argument("--expect-head", metavar="HASH",
                   help="a head hash seen earlier that must still be in the log")
    add_format_arg(p, what="the outcome")

    kbs = add("kbs", "key-broker client run in the TEE (a real SEV-SNP guest, or the emulated "
              "one): 'get' a resource, or print the guest's 'measurement'",
              _impl("_cmd_group_help"))
    actions = kbs.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    help_ = ("attest to the service and fetch a resource's secret (released only to a "
             "workload its policy admits)")
    p = actions.add_parser("get", help=help_, description=help_)
    p.set_defaults(fn=_impl("_cmd_kbs_get"))
    p.add_argument("resource", metavar="RESOURCE", help="resource path (coco: "
                   "repository/type/tag)")
    p.add_argument("--url", required=True, help="service URL, e.g. https://kbs.example:8443")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="where to write the secret ('-': stdout), mode 0600")
    p.add_argument("--seal", action="store_true", help="seal the secret to this guest's "
                   "measurement before writing it")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="give up on the service after this long (default 30)")
    p.add_argument("--protocol", choices=("veritee", "coco"), default="veritee",
                   help="veritee: /v1; coco: the Confidential Containers KBS protocol "
                   "(/kbs/v0, RESOURCE is repository/type/tag)")
    p.add_argument("--dev-mode", dest="dev_mode", action="store_true",
                   help="allow a plain http:// URL to a loopback address (development)")
    add_format_arg(p, what="what was written")
    add_platform_args(p)
    help_ = "print this guest's launch measurement (for resource policies)"
    p = actions.add_parser("measurement", help=help_, description=help_)
    p.set_defaults(fn=_impl("_cmd_kbs_measurement"))
    add_format_arg(p, what="the measurement")
    add_platform_args(p)

    # ``admin`` (the API client, and the local tools token-create, master-key-new and
    # rotate-master-key) is registered by veritee.cli._admin.
