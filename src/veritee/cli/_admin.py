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
refusal prints the problem's ``code`` and ``detail`` (RFC 9457) and exits 3 (bad request, or
not found), 4 (authentication or authorisation refused) or 5 (service unreachable or failing).
Every action takes ``--format json`` (JSON on stdout, also on failure: ``{"error": {...}}``).

``token-create`` is the one command that writes the database directly: it bootstraps the
first admin token before there is any token to call the API with. ``master-key-new`` and
``rotate-master-key`` are local key tools (issue 9's key sources). The URL must be https, or
http to a loopback address: the token never crosses a network in clear.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from veritee.cli import ServiceError, clip
from veritee.cli._admin_commands import DEFAULT_URL as _DEFAULT_URL
from veritee.errors import ConfigError

__all__ = ["AdminClient", "AdminRefusedError"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any

_MAX_SECRET = 1 << 20  # the service bounds bodies too; refuse early with a clear message


class AdminRefusedError(ServiceError):
    """The service refused an admin request (or did not answer: status 0); carries the HTTP
    status and problem code. The exit code follows the status (``veritee.cli.service_exit``)."""


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
            raise AdminRefusedError(0, "service.unreachable", f"cannot reach "
                                    f"{self._http.base_url}: {exc or 'no answer'}") from None
        if r.status_code >= 400:
            try:
                problem = r.json()
                code, detail = str(problem["code"]), str(problem["detail"])
            except (ValueError, KeyError, TypeError):
                code, detail = f"http.{r.status_code}", clip(r.text) or r.reason_phrase
            raise AdminRefusedError(r.status_code, code, detail)
        if r.status_code == 204 or not r.content:
            return None
        return r.json()


def _token(args: argparse.Namespace) -> str:
    if args.token is not None:
        raise ConfigError("--token: refused (a token on the command line shows in ps and shell "
                          "history): set VERITEE_ADMIN_TOKEN or give --token-file FILE")
    if args.token_file:
        token = _read_bytes(args.token_file, "--token-file").decode(errors="replace").strip()
    else:
        token = os.environ.get("VERITEE_ADMIN_TOKEN", "").strip()
    if not token:
        raise ConfigError("no admin token: set VERITEE_ADMIN_TOKEN or give --token-file FILE "
                          "(never on the command line)")
    return token


def _load_doc(path: str, what: str) -> Any:
    import json
    import tomllib

    data = sys.stdin.buffer.read() if path == "-" else _read_bytes(path, what)
    try:
        if path.endswith(".toml"):
            return tomllib.loads(data.decode())
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "TOML" if path.endswith(".toml") else "JSON"
        raise ConfigError(f"{what} {path}: not valid {kind} ({exc})") from None


def _read_bytes(path: str, what: str) -> bytes:
    from pathlib import Path

    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc.strerror})") from None


def _p(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="/")


def _out(args: argparse.Namespace, obj: Any, text: Callable[[Any], str]) -> None:
    if args.format == "json":
        import json

        print(json.dumps(obj, indent=2))
    else:
        rendered = text(obj)
        if rendered:
            print(rendered)


def _table(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> str:
    if not rows:
        return "(none)"
    return "\n".join("  ".join(f"{k}={row.get(k)}" for k in cols) for row in rows)


def _with_client(action: Callable[[AdminClient, argparse.Namespace], int | None]
                 ) -> Callable[[argparse.Namespace], int]:
    """An admin action run with a client of ``--url`` (closed after)."""

    def run(args: argparse.Namespace) -> int:
        client = AdminClient(args.url or os.environ.get("VERITEE_URL") or _DEFAULT_URL,
                             _token(args), timeout=args.timeout)
        try:
            return action(client, args) or 0
        finally:
            client.close()

    run.__doc__ = action.__doc__
    return run


# -- resources --------------------------------------------------------------------------------
@_with_client
def _resource_list(c: AdminClient, args: argparse.Namespace) -> None:
    doc = c.request("GET", "/resources")
    _out(args, doc, lambda d: _table(d["resources"], ("path", "version", "policy")))


@_with_client
def _resource_get_meta(c: AdminClient, args: argparse.Namespace) -> None:
    # The API lists metadata (never secrets); one resource is picked from that list.
    doc = c.request("GET", "/resources")
    found = [r for r in doc["resources"] if r["path"] == args.name]
    if not found:
        raise AdminRefusedError(404, "resource.not_found", f"no resource {args.name!r}")
    import json

    _out(args, found[0], lambda r: "\n".join(f"{k}: {json.dumps(v)}" for k, v in r.items()))


@_with_client
def _resource_put(c: AdminClient, args: argparse.Namespace) -> None:
    import base64

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


@_with_client
def _resource_delete(c: AdminClient, args: argparse.Namespace) -> None:
    c.request("DELETE", f"/resources/{_p(args.name)}")
    _out(args, {"deleted": args.name}, lambda d: f"deleted {d['deleted']}")


# -- appraisal policies -----------------------------------------------------------------------
@_with_client
def _policy_list(c: AdminClient, args: argparse.Namespace) -> None:
    doc = c.request("GET", "/policies")
    _out(args, doc, lambda d: "\n".join(
        f"{p}{'  (active)' if p == d.get('active') else ''}" for p in d["policies"])
        or "(none)")


@_with_client
def _policy_get(c: AdminClient, args: argparse.Namespace) -> None:
    import json

    doc = c.request("GET", f"/policies/{_p(args.name)}")
    _out(args, doc, lambda d: json.dumps(d, indent=2))


# The service's scheme for documents that name none (they were all SEV-SNP before schemes).
LEGACY_SCHEME = "sevsnp"


def _scheme(args: argparse.Namespace, named: object = None) -> str:
    """The scheme a policy/reference value is for: ``--scheme``, else the one the file names,
    else :data:`LEGACY_SCHEME`; checked against the registry here (imported only now, to keep
    start-up light), so a typo is refused before the service is asked. A ``--scheme`` that
    contradicts the file's is refused rather than silently applied to another TEE."""
    from veritee.schemes import names

    given = getattr(args, "scheme", None)
    if given is not None and named is not None and named != given:
        raise ConfigError(f"--scheme: got {given!r}, but the file names scheme {named!r}")
    name = given if given is not None else named if named is not None else LEGACY_SCHEME
    known = names()
    if not isinstance(name, str) or name not in known:
        source = "--scheme" if given is not None else "scheme (in the file)"
        raise ConfigError(f"{source}: got {clip(str(name), 40)!r}, want one of "
                          f"{', '.join(known)}")
    return name


@_with_client
def _policy_put(c: AdminClient, args: argparse.Namespace) -> None:
    body = _load_doc(args.file, "--file")
    if not isinstance(body, dict):
        raise ConfigError(f"--file {args.file}: want a policy object, got "
                          f"{type(body).__name__}")
    body = {**body, "scheme": _scheme(args, body.get("scheme"))}
    doc = c.request("PUT", f"/policies/{_p(args.name)}", body)
    _out(args, doc if isinstance(doc, dict) else {"stored": args.name, "scheme": body["scheme"]},
         lambda d: f"stored {body['scheme']} policy {args.name}")


@_with_client
def _policy_delete(c: AdminClient, args: argparse.Namespace) -> None:
    c.request("DELETE", f"/policies/{_p(args.name)}")
    _out(args, {"deleted": args.name}, lambda d: f"deleted policy {d['deleted']}")


# -- reference values -------------------------------------------------------------------------
@_with_client
def _reference_list(c: AdminClient, args: argparse.Namespace) -> None:
    doc = c.request("GET", "/reference-values")
    _out(args, doc, lambda d: _table(d["reference_values"], ("name", "scheme", "kind", "value")))


@_with_client
def _reference_put(c: AdminClient, args: argparse.Namespace) -> None:
    scheme = _scheme(args)
    doc = c.request("PUT", f"/reference-values/{_p(args.name)}",
                    {"kind": args.kind, "value": args.value, "scheme": scheme})
    _out(args, doc, lambda d: f"stored {scheme} reference value {d['name']}")


@_with_client
def _reference_delete(c: AdminClient, args: argparse.Namespace) -> None:
    c.request("DELETE", f"/reference-values/{_p(args.name)}")
    _out(args, {"deleted": args.name}, lambda d: f"deleted reference value {d['deleted']}")


# -- API tokens -------------------------------------------------------------------------------
@_with_client
def _token_list(c: AdminClient, args: argparse.Namespace) -> None:
    doc = c.request("GET", "/tokens")
    _out(args, doc, lambda d: _table(d["tokens"], ("token_id", "name", "role", "revoked")))


@_with_client
def _token_create(c: AdminClient, args: argparse.Namespace) -> None:
    doc = c.request("POST", "/tokens", {"name": args.token_name, "role": args.role})
    # The token alone on the last line, for `| tail -n 1`; it is shown only this once.
    _out(args, doc, lambda d: f"token_id: {d['token_id']}\n{d['token']}")


@_with_client
def _token_revoke(c: AdminClient, args: argparse.Namespace) -> None:
    c.request("DELETE", f"/tokens/{_p(args.name)}")
    _out(args, {"revoked": args.name}, lambda d: f"revoked {d['revoked']}")


# -- audit log, signing keys ------------------------------------------------------------------
@_with_client
def _audit_list(c: AdminClient, args: argparse.Namespace) -> None:
    doc = c.request("GET", "/audit", params={"after": args.after, "limit": args.limit})
    _out(args, doc, lambda d: "\n".join(
        f"{e['seq']} {e['at']} {e['event']} {e['outcome']} {e['subject']}"
        for e in d["entries"]) or "(none)")


@_with_client
def _audit_verify(c: AdminClient, args: argparse.Namespace) -> int:
    doc = c.request("GET", "/audit/verify")
    if doc["ok"]:
        _out(args, doc, lambda d: f"audit log OK: {d['entries']} entries, head {d['head']}")
        return 0
    message = (f"audit.chain: the service reports a broken chain at seq {doc.get('bad_seq')}: "
               f"{doc['problem']}")
    _out(args, {**doc, "error": {"code": "audit.chain", "message": message, "exit_code": 4}},
         lambda d: f"audit log BROKEN at seq {d.get('bad_seq')}: {d['problem']}")
    print(f"veritee: {message}", file=sys.stderr)
    return 4  # EXIT_VERIFICATION_FAILED


@_with_client
def _keys_rotate(c: AdminClient, args: argparse.Namespace) -> None:
    # The service rotates (retire + new key + audit entry in one transaction); the CLI
    # only asks: it never writes the database behind the API's back.
    doc = c.request("POST", "/signing-keys/rotate")
    _out(args, doc, lambda d: f"signing key rotated: current {d['kid']}" + (
        f"; {d['retired']} retired, published until {d['retired_until']}"
        if d.get("retired") else ""))


def _cmd_admin_help(args: argparse.Namespace) -> int:  # pragma: no cover - GROUP is required
    raise ConfigError("admin: a group is required (see veritee admin --help)")
