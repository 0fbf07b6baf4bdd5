"""CLI commands for the verifier / key-broker service.

* ``veritee serve`` - run the service (uvicorn, ``--workers N``)
* ``veritee audit verify`` - check the audit log's hash chain
* ``veritee kbs get RESOURCE --url ...`` - the whole exchange from an emulated guest
* ``veritee kbs measurement`` - the launch digest of that guest (for resource policies)
* ``veritee admin token-create`` - bootstrap an admin token directly in the database
* ``veritee admin master-key-new --out FILE`` - a fresh 32-byte key file (0600) for
  ``key_source = "file"``
* ``veritee admin rotate-master-key --settings OLD --new-settings NEW`` - re-wrap the data key

The database tools need the service's master key (``--settings``): the rows they write are
authenticated with a key derived from it, and the audit chain is keyed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["register"]

def _settings(args: argparse.Namespace) -> Any:
    from veritee.service.settings import load_settings

    settings = load_settings(Path(args.settings) if args.settings else None)
    overrides = {k: getattr(args, k) for k in ("host", "port", "workers", "database_url")
                 if getattr(args, k, None) is not None}
    return dataclasses.replace(settings, **overrides) if overrides else settings


def _open_state(args: argparse.Namespace, *, create: bool = False) -> Any:
    """The store, with its integrity keys (unwrapped with the configured master key)."""
    import time

    from veritee.service.app import service_master_key
    from veritee.service.integrity import StateIntegrity
    from veritee.service.keys import load_data_key
    from veritee.service.storage import open_store

    settings = _settings(args)
    store = open_store(settings.database_url)
    master: Any = None
    try:
        master = service_master_key(settings)
        data = load_data_key(store, master, now=time.time(), create=create)
    except BaseException:
        store.close()
        raise
    finally:
        if master is not None and hasattr(master, "close"):
            master.close()
    store.integrity = StateIntegrity(data.key)
    return store


def _cmd_serve(args: argparse.Namespace) -> int:
    from veritee.service.server import serve

    settings = _settings(args)
    serve(settings, Path(args.settings) if args.settings else None)
    return 0


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from veritee.service.audit import verify_chain

    store = _open_state(args)
    try:
        with store.transaction(write=False) as tx:
            report = verify_chain(tx.audit_rows(), store.integrity,
                                  expect_head=args.expect_head)
    finally:
        store.close()
    if report.ok:
        print(f"audit log OK: {report.entries} entries, head {report.head}")
        return 0
    where = f" at seq {report.bad_seq}" if report.bad_seq is not None else ""
    print(f"audit log BROKEN{where}: {report.problem} ({report.entries} entries verified "
          "before it)", file=sys.stderr)
    return 4  # EXIT_VERIFICATION_FAILED


def _cmd_kbs_measurement(args: argparse.Namespace) -> int:
    from veritee.cli._platform import open_workload
    from veritee.formats.sevsnp import AttestationReport

    source = open_workload(args).snp_guest()
    print(AttestationReport.from_bytes(source.attestation_report(bytes(64))).measurement.hex())
    return 0


def _cmd_kbs_get(args: argparse.Namespace) -> int:
    from veritee._fs import atomic_write
    from veritee.cli._platform import open_platform, open_workload
    from veritee.client import AttesterClient

    # --seal needs the SEV-SNP sealing path (open_workload says "not yet" for other TEEs).
    guest = open_workload(args).source if args.seal else None
    source = guest or open_platform(args)
    if args.protocol == "coco":  # the Confidential Containers KBS protocol (/kbs/v0)
        from veritee.client_coco import CocoKbsClient

        with CocoKbsClient(args.url, source, timeout=args.timeout, dev_mode=args.dev_mode,
                           tee=getattr(args, "tee", None) or "snp") as kbs:
            secret = kbs.get_resource(args.resource)
    else:
        with AttesterClient(args.url, source, timeout=args.timeout,
                            dev_mode=args.dev_mode) as client:
            secret = client.fetch(args.resource)
    if guest is not None:
        from veritee.sealing import SealingPolicy, seal

        secret = seal(guest, secret, SealingPolicy.measurement(),
                      aad=args.resource.encode())
    if args.out == "-":
        sys.stdout.buffer.write(secret)
        sys.stdout.flush()
    else:
        atomic_write(Path(args.out), secret, mode=0o600)
        what = "sealed secret" if args.seal else "secret"
        print(f"wrote {what} for {args.resource} to {args.out}", file=sys.stderr)
        if args.seal:  # the resource path is the associated data: unseal must give it
            print(f"open it with: veritee unseal {args.out} OUT --aad {args.resource}",
                  file=sys.stderr)
    return 0


def _cmd_admin(args: argparse.Namespace) -> int:
    if args.action == "master-key-new":
        from veritee.errors import ConfigError
        from veritee.service.keys import create_master_key_file

        if not args.out:
            raise ConfigError("admin master-key-new: needs --out FILE")
        key = create_master_key_file(Path(args.out))
        print(f"master key {key.key_id} written to {args.out} (mode 0600)", file=sys.stderr)
        return 0
    if args.action == "rotate-master-key":
        return _cmd_rotate(args)
    return _cmd_token_create(args)


def _cmd_rotate(args: argparse.Namespace) -> int:
    import time

    from veritee.errors import ConfigError
    from veritee.service.app import service_master_key
    from veritee.service.keys import rotate_master_key
    from veritee.service.settings import load_settings
    from veritee.service.storage import open_store

    if not args.new_settings:
        raise ConfigError("admin rotate-master-key: needs --new-settings FILE (the settings "
                          "naming the new key source)")
    old_settings = _settings(args)
    new_settings = load_settings(Path(args.new_settings))
    store = open_store(old_settings.database_url)
    keys: list[Any] = []
    try:
        old = service_master_key(old_settings)
        keys.append(old)
        new = service_master_key(new_settings)
        keys.append(new)
        key_id = rotate_master_key(store, old, new, now=time.time())
    finally:
        store.close()
        for key in keys:
            if hasattr(key, "close"):
                key.close()
    print(f"data key re-wrapped: master key {old.key_id} -> {key_id}; start the service with "
          f"{args.new_settings}", file=sys.stderr)
    return 0


def _cmd_token_create(args: argparse.Namespace) -> int:
    from veritee.errors import ConfigError
    from veritee.service.core import create_admin_token

    if not args.name:
        raise ConfigError("admin token-create: needs --name")
    store = _open_state(args, create=True)
    try:
        token_id, token = create_admin_token(store, args.name, args.role)
    finally:
        store.close()
    print(f"token_id: {token_id}", file=sys.stderr)
    print(token)
    return 0


Add = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]


def _settings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--settings", metavar="FILE", help="settings file (TOML or JSON); "
                   "VERITEE_* environment variables apply on top")
    p.add_argument("--database-url", dest="database_url", metavar="URL",
                   help="sqlite:///path or postgresql://... (overrides the settings)")


def register(add: Add) -> None:
    """Add ``serve``, ``audit`` and ``kbs`` to the ``veritee`` command."""
    p = add("serve", "run the verifier and key-broker service (uvicorn)", _cmd_serve)
    _settings_args(p)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, help="worker processes (default: settings, 1)")

    p = add("audit", "audit-log tools: 'veritee audit verify' checks the hash chain",
            _cmd_audit_verify)
    p.add_argument("action", choices=("verify",))
    _settings_args(p)
    p.add_argument("--expect-head", metavar="HASH",
                   help="a head hash seen earlier that must still be in the log")

    p = add("kbs", "key-broker client run in the TEE (a real SEV-SNP guest, or the emulated "
            "one): 'get' a resource, or print the guest's 'measurement'", _dispatch_kbs)
    p.add_argument("action", choices=("get", "measurement"))
    p.add_argument("resource", nargs="?", help="resource path (for get)")
    p.add_argument("--url", help="service URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--out", metavar="FILE", help="where to write the secret ('-': stdout)")
    p.add_argument("--seal", action="store_true", help="seal the secret to this guest's "
                   "measurement before writing it")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--protocol", choices=("veritee", "coco"), default="veritee",
                   help="veritee: /v1; coco: the Confidential Containers KBS protocol "
                   "(/kbs/v0, RESOURCE is repository/type/tag)")
    p.add_argument("--dev-mode", dest="dev_mode", action="store_true",
                   help="allow a plain http:// URL to a loopback address (development)")
    from veritee.cli._platform import add_platform_args

    add_platform_args(p)

    # ``admin`` (the API client, and the local tools token-create, master-key-new and
    # rotate-master-key) is registered by veritee.cli._admin.


def _dispatch_kbs(args: argparse.Namespace) -> int:
    if args.action == "measurement":
        return _cmd_kbs_measurement(args)
    if not args.resource or not args.url or not args.out:
        from veritee.errors import ConfigError

        raise ConfigError("kbs get: needs RESOURCE, --url and --out")
    return _cmd_kbs_get(args)
