"""``veritee admin``: operate a running key broker over its admin HTTP API (never its database).

::

    veritee admin resource put PATH --secret-file FILE|- --policy FILE
    veritee admin resource get-meta PATH | list | delete PATH
    veritee admin policy list | get ID | put ID --file FILE | delete ID
    veritee admin reference-value list | put NAME --value HEX [--kind measurement] | delete NAME
    veritee admin token create --name N [--role admin|reader] | list | revoke TOKEN_ID
    veritee admin audit list [--after SEQ] [--limit N] | verify
    veritee admin token-create --settings FILE --name N   (bootstrap: writes the database)
    veritee admin master-key-new --out FILE | rotate-master-key --settings F --new-settings G

``--url URL`` (default ``$VERITEE_URL`` or http://127.0.0.1:8080); the bearer token comes from
``$VERITEE_ADMIN_TOKEN`` or ``--token-file FILE``, never from an argument (arguments show in
``ps`` and shell history). A secret comes from a file or stdin, never from an argument. A
refusal prints the problem's ``code`` and ``detail`` (RFC 9457) and exits 3 (bad request), 4
(authentication or authorisation refused) or 5 (service unreachable or failing).

``token-create`` is the one command that writes the database directly: it bootstraps the
first admin token before there is any token to call the API with. ``master-key-new`` and
``rotate-master-key`` are local key tools (issue 9's key sources). The URL must be https, or
http to a loopback address: the token never crosses a network in clear.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from veritee.cli import AddCommand
from veritee.errors import ConfigError, VerificationError, VeriteeError

__all__ = ["AdminClient", "AdminRefusedError", "register"]

_DEFAULT_URL = "http://127.0.0.1:8080"
_MAX_SECRET = 1 << 20  # the service bounds bodies too; refuse early with a clear message


class AdminRefusedError(VeriteeError):
    """The service refused an admin request; carries the HTTP status and problem code."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"HTTP {status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class AdminClient:
    """A thin client of ``/v1/admin``: one method per route, JSON in and out."""

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        import httpx

        from veritee.client import check_service_url

        # The bearer token never crosses a network in clear: https, or http to loopback only.
        url = check_service_url(url, dev_mode=True)
        self._http = httpx.Client(base_url=url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"})

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def request(self, method: str, path: str, body: object = None,
                params: dict[str, Any] | None = None) -> Any:
        """Call ``/v1/admin`` + ``path``; the JSON answer, None for 204; raise AdminRefusedError."""
        import httpx

        try:
            r = self._http.request(method, "/v1/admin" + path, json=body, params=params)
        except httpx.HTTPError as exc:
            raise AdminRefusedError(0, "service.unreachable",
                               f"{self._http.base_url}: {type(exc).__name__}: {exc}") from None
        if r.status_code >= 400:
            try:
                problem = r.json()
                code, detail = str(problem["code"]), str(problem["detail"])
            except (ValueError, KeyError, TypeError):
                code, detail = f"http.{r.status_code}", r.text[:200] or r.reason_phrase
            raise AdminRefusedError(r.status_code, code, detail)
        if r.status_code == 204 or not r.content:
            return None
        return r.json()


def _token(args: argparse.Namespace) -> str:
    if args.token is not None:
        raise ConfigError("--token: refused (a token on the command line shows in ps and shell "
                          "history): set VERITEE_ADMIN_TOKEN or give --token-file FILE")
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {args.token_file}: cannot read "
                              f"({exc.strerror})") from None
    else:
        token = os.environ.get("VERITEE_ADMIN_TOKEN", "").strip()
    if not token:
        raise ConfigError("no admin token: set VERITEE_ADMIN_TOKEN or give --token-file FILE "
                          "(never on the command line)")
    return token


def _load_doc(path: str, what: str) -> Any:
    data = sys.stdin.buffer.read() if path == "-" else _read_bytes(path, what)
    try:
        if path.endswith(".toml"):
            return tomllib.loads(data.decode())
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "TOML" if path.endswith(".toml") else "JSON"
        raise ConfigError(f"{what} {path}: not valid {kind} ({exc})") from None


def _read_bytes(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc.strerror})") from None


def _p(segment: str) -> str:
    return quote(segment, safe="/")


def _out(args: argparse.Namespace, obj: Any, text: Callable[[Any], str]) -> None:
    if args.format == "json":
        print(json.dumps(obj, indent=2))
    else:
        rendered = text(obj)
        if rendered:
            print(rendered)


def _table(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> str:
    if not rows:
        return "(none)"
    return "\n".join("  ".join(f"{k}={row.get(k)}" for k in cols) for row in rows)


# -- commands ---------------------------------------------------------------------------------
def _resource(c: AdminClient, args: argparse.Namespace) -> None:
    if args.action == "list":
        doc = c.request("GET", "/resources")
        _out(args, doc, lambda d: _table(d["resources"], ("path", "version", "policy")))
        return
    if not args.name:
        raise ConfigError(f"admin resource {args.action}: PATH is required")
    if args.action == "get-meta":
        # The API lists metadata (never secrets); one resource is picked from that list.
        doc = c.request("GET", "/resources")
        found = [r for r in doc["resources"] if r["path"] == args.name]
        if not found:
            raise AdminRefusedError(404, "resource.not_found", f"no resource {args.name!r}")
        _out(args, found[0], lambda r: "\n".join(f"{k}: {json.dumps(v)}"
                                                 for k, v in r.items()))
    elif args.action == "put":
        if not args.policy:
            raise ConfigError("admin resource put: --policy FILE is required")
        body: dict[str, Any] = {"policy": _load_doc(args.policy, "--policy")}
        if args.secret_file:
            source: str = args.secret_file
            secret = (sys.stdin.buffer.read() if source == "-" else
                      _read_bytes(source, "--secret-file"))
            if len(secret) > _MAX_SECRET:
                raise ConfigError(f"--secret-file: got {len(secret)} bytes, want at most "
                                  f"{_MAX_SECRET}")
            body["secret"] = base64.b64encode(secret).decode()
        doc = c.request("PUT", f"/resources/{_p(args.name)}", body)
        _out(args, doc, lambda d: f"stored {d['path']} version {d['version']}")
    elif args.action == "delete":
        c.request("DELETE", f"/resources/{_p(args.name)}")
        _out(args, {"deleted": args.name}, lambda d: f"deleted {d['deleted']}")


def _policy(c: AdminClient, args: argparse.Namespace) -> None:
    if args.action == "list":
        doc = c.request("GET", "/policies")
        _out(args, doc, lambda d: "\n".join(
            f"{p}{'  (active)' if p == d.get('active') else ''}" for p in d["policies"])
            or "(none)")
        return
    if not args.name:
        raise ConfigError(f"admin policy {args.action}: ID is required")
    if args.action == "get":
        doc = c.request("GET", f"/policies/{_p(args.name)}")
        _out(args, doc, lambda d: json.dumps(d, indent=2))
    elif args.action == "put":
        if not args.file:
            raise ConfigError("admin policy put: --file FILE (JSON or TOML) is required")
        doc = c.request("PUT", f"/policies/{_p(args.name)}", _load_doc(args.file, "--file"))
        _out(args, doc, lambda d: f"stored policy {args.name}")
    elif args.action == "delete":
        c.request("DELETE", f"/policies/{_p(args.name)}")
        _out(args, {"deleted": args.name}, lambda d: f"deleted policy {d['deleted']}")


def _reference(c: AdminClient, args: argparse.Namespace) -> None:
    if args.action == "list":
        doc = c.request("GET", "/reference-values")
        _out(args, doc, lambda d: _table(d["reference_values"], ("name", "kind", "value")))
        return
    if not args.name:
        raise ConfigError(f"admin reference-value {args.action}: NAME is required")
    if args.action == "put":
        if not args.value:
            raise ConfigError("admin reference-value put: --value HEX is required")
        doc = c.request("PUT", f"/reference-values/{_p(args.name)}",
                        {"kind": args.kind, "value": args.value})
        _out(args, doc, lambda d: f"stored reference value {d['name']}")
    elif args.action == "delete":
        c.request("DELETE", f"/reference-values/{_p(args.name)}")
        _out(args, {"deleted": args.name}, lambda d: f"deleted reference value {d['deleted']}")


def _token_cmd(c: AdminClient, args: argparse.Namespace) -> None:
    if args.action == "list":
        doc = c.request("GET", "/tokens")
        _out(args, doc, lambda d: _table(d["tokens"], ("token_id", "name", "role",
                                                       "revoked")))
    elif args.action == "create":
        if not args.token_name:
            raise ConfigError("admin token create: --name is required")
        doc = c.request("POST", "/tokens", {"name": args.token_name, "role": args.role})
        # The token alone on the last line, for `| tail -n 1`; it is shown only this once.
        _out(args, doc, lambda d: f"token_id: {d['token_id']}\n{d['token']}")
    elif args.action == "revoke":
        if not args.name:
            raise ConfigError("admin token revoke: TOKEN_ID is required")
        c.request("DELETE", f"/tokens/{_p(args.name)}")
        _out(args, {"revoked": args.name}, lambda d: f"revoked {d['revoked']}")


def _audit(c: AdminClient, args: argparse.Namespace) -> int:
    if args.action == "list":
        doc = c.request("GET", "/audit", params={"after": args.after, "limit": args.limit})
        _out(args, doc, lambda d: "\n".join(
            f"{e['seq']} {e['at']} {e['event']} {e['outcome']} {e['subject']}"
            for e in d["entries"]) or "(none)")
        return 0
    doc = c.request("GET", "/audit/verify")
    _out(args, doc, lambda d: (f"audit log OK: {d['entries']} entries, head {d['head']}"
                               if d["ok"] else
                               f"audit log BROKEN at seq {d.get('bad_seq')}: {d['problem']}"))
    if not doc["ok"]:
        raise VerificationError("audit.chain", f"the service reports a broken chain: "
                                f"{doc['problem']}")
    return 0


def _keys(c: AdminClient, args: argparse.Namespace) -> None:
    # The service rotates (retire + new key + audit entry in one transaction); the CLI
    # only asks: it never writes the database behind the API's back.
    doc = c.request("POST", "/signing-keys/rotate")
    _out(args, doc, lambda d: f"signing key rotated: current {d['kid']}" + (
        f"; {d['retired']} retired, published until {d['retired_until']}"
        if d.get("retired") else ""))


_GROUPS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "resource": (("put", "get-meta", "list", "delete"), "PATH",
                 "secrets released to attested workloads (metadata only is ever shown)"),
    "policy": (("list", "get", "put", "delete"), "ID", "appraisal policies"),
    "reference-value": (("list", "put", "delete"), "NAME",
                        "reference values (accepted launch measurements)"),
    "token": (("create", "list", "revoke"), "TOKEN_ID", "API bearer tokens"),
    "audit": (("list", "verify"), "", "the hash-chained audit log"),
    "keys": (("rotate",), "", "the EAR signing key"),
}


def _run(args: argparse.Namespace) -> int:
    client = AdminClient(args.url or os.environ.get("VERITEE_URL") or _DEFAULT_URL,
                         _token(args), timeout=args.timeout)
    try:
        if args.group == "resource":
            _resource(client, args)
        elif args.group == "policy":
            _policy(client, args)
        elif args.group == "reference-value":
            _reference(client, args)
        elif args.group == "token":
            _token_cmd(client, args)
        elif args.group == "audit":
            return _audit(client, args)
        else:
            _keys(client, args)
    except AdminRefusedError as refused:
        print(f"veritee: admin {args.group} {args.action}: refused: {refused.code}: "
              f"{refused.detail} (HTTP {refused.status})" if refused.status else
              f"veritee: admin: {refused.code}: {refused.detail}", file=sys.stderr)
        if refused.status in (401, 403):
            return 4
        return 5 if refused.status == 0 or refused.status >= 500 else 3
    finally:
        client.close()
    return 0


def _local(args: argparse.Namespace) -> int:
    # The local tools (database and key files, not the API): token-create, master-key-new,
    # rotate-master-key, implemented with the service commands.
    from veritee.cli._service import _cmd_admin

    args.action = args.group
    return _cmd_admin(args)


def register(add: AddCommand) -> None:
    """Add ``veritee admin``."""
    admin = add("admin", "operate a running service over its admin API (resources, policies, "
                "reference values, tokens, audit); 'token-create' bootstraps the first token",
                _run)
    parser_class = type(admin)
    groups = admin.add_subparsers(dest="group", metavar="GROUP", parser_class=parser_class)
    groups.required = True
    for group, (actions, operand, help_) in _GROUPS.items():
        # No abbreviations: "--token" must never be taken as "--token-file" (and echoed).
        p = groups.add_parser(group, help=help_, description=help_, allow_abbrev=False)
        p.add_argument("action", choices=actions)
        if operand:
            p.add_argument("name", nargs="?", metavar=operand)
        g = p.add_argument_group("connection")
        g.add_argument("--url", help="service URL (default: $VERITEE_URL or "
                       f"{_DEFAULT_URL})")
        g.add_argument("--token-file", metavar="FILE", help="file holding the bearer token "
                       "(default: $VERITEE_ADMIN_TOKEN)")
        g.add_argument("--timeout", type=float, default=30.0)
        g.add_argument("--token", help=argparse.SUPPRESS)  # refused in _token, never echoed
        p.add_argument("--format", choices=("text", "json"), default="text")
        if group == "resource":
            p.add_argument("--secret-file", metavar="FILE", help="put: the secret ('-': "
                           "stdin); without it only the policy is updated")
            p.add_argument("--policy", metavar="FILE", help="put: the resource policy "
                           "(JSON or .toml; '-': JSON on stdin)")
        elif group == "policy":
            p.add_argument("--file", metavar="FILE", help="put: the policy (JSON or .toml)")
        elif group == "reference-value":
            p.add_argument("--value", metavar="HEX", help="put: the measurement, hex")
            p.add_argument("--kind", default="measurement")
        elif group == "token":
            p.add_argument("--name", dest="token_name", help="create: a name for the token")
            p.add_argument("--role", choices=("admin", "reader"), default="reader",
                           help="create: admin (change) or reader (see); default reader")
        elif group == "audit":
            p.add_argument("--after", type=int, default=0, metavar="SEQ")
            p.add_argument("--limit", type=int, default=100, metavar="N")
        p.set_defaults(fn=_run)

    local = (("token-create", "bootstrap: create a token directly in the database (before "
              "any token exists)"),
             ("master-key-new", "write a new master key file (key_source = \"file\")"),
             ("rotate-master-key", "re-wrap the data key under the master key that "
              "--new-settings names"))
    for name, help_ in local:
        p = groups.add_parser(name, help=help_, description=help_, allow_abbrev=False)
        p.add_argument("--settings", metavar="FILE", help="settings file (TOML or JSON); "
                       "VERITEE_* environment variables apply on top")
        p.add_argument("--database-url", dest="database_url", metavar="URL",
                       help="sqlite:///path or postgresql://... (overrides the settings)")
        if name == "token-create":
            p.add_argument("--name", required=True)
            p.add_argument("--role", choices=("admin", "reader"), default="admin")
        elif name == "master-key-new":
            p.add_argument("--out", required=True, metavar="FILE", help="the key file to create")
        else:
            p.add_argument("--new-settings", dest="new_settings", required=True,
                           metavar="FILE", help="settings naming the new master key source")
        p.set_defaults(fn=_local)
