"""CLI commands for the verifier / key-broker service.

* ``veritee serve`` - run the service (uvicorn, ``--workers N``)
* ``veritee audit verify`` - check the audit log's hash chain
* ``veritee kbs get RESOURCE --url ... --out FILE`` - the whole exchange from an emulated guest
* ``veritee kbs measurement`` - the launch digest of that guest (for resource policies)
* ``veritee admin token-create`` - bootstrap an admin token directly in the database
* ``veritee admin master-key-new --out FILE`` - a fresh 32-byte key file (0600) for
  ``key_source = "file"``
* ``veritee admin rotate-master-key --settings OLD --new-settings NEW`` - re-wrap the data key

The database tools need the service's master key (``--settings``): the rows they write are
authenticated with a key derived from it, and the audit chain is keyed. ``--format json``
prints each outcome as JSON on stdout (on failure too, with an ``error`` member).
"""

from __future__ import annotations

import argparse
import sys

from veritee.errors import ConfigError

__all__: list[str] = []

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any


def _json(obj: object) -> None:
    import json

    print(json.dumps(obj, indent=2))


def _settings(args: argparse.Namespace) -> Any:
    import dataclasses
    from pathlib import Path

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
    from pathlib import Path

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
    doc: dict[str, object] = {"ok": report.ok, "entries": report.entries, "head": report.head,
                              "bad_seq": report.bad_seq, "problem": report.problem}
    if report.ok:
        if args.format == "json":
            _json(doc)
        else:
            print(f"audit log OK: {report.entries} entries, head {report.head}")
        return 0
    where = f" at seq {report.bad_seq}" if report.bad_seq is not None else ""
    message = (f"audit log BROKEN{where}: {report.problem} ({report.entries} entries verified "
               "before it)")
    if args.format == "json":
        _json({**doc, "error": {"code": "audit.chain", "message": message, "exit_code": 4}})
    print(message if args.format == "text" else f"veritee: {message}", file=sys.stderr)
    return 4  # EXIT_VERIFICATION_FAILED


def _cmd_kbs_measurement(args: argparse.Namespace) -> int:
    from veritee.cli._platform import open_workload
    from veritee.formats.sevsnp import AttestationReport

    source = open_workload(args).snp_guest()
    measurement = AttestationReport.from_bytes(source.attestation_report(bytes(64))).measurement
    if args.format == "json":
        _json({"measurement": measurement.hex()})
    else:
        print(measurement.hex())
    return 0


def _cmd_kbs_get(args: argparse.Namespace) -> int:
    from pathlib import Path

    from veritee._fs import atomic_write
    from veritee.cli._platform import open_platform, open_workload
    from veritee.client import AttesterClient

    if args.out == "-" and args.format == "json":
        raise ConfigError("--out -: the secret would go to stdout with the JSON; give --out "
                          "FILE with --format json")
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
        return 0
    atomic_write(Path(args.out), secret, mode=0o600)
    if args.format == "json":
        _json({"resource": args.resource, "out": args.out, "bytes": len(secret),
               "sealed": bool(args.seal), "protocol": args.protocol})
        return 0
    what = "sealed secret" if args.seal else "secret"
    print(f"wrote {what} for {args.resource} to {args.out}", file=sys.stderr)
    if args.seal:  # the resource path is the associated data: unseal must give it
        print(f"open it with: veritee unseal {args.out} OUT --aad {args.resource}",
              file=sys.stderr)
    return 0


# -- local tools of ``veritee admin`` (registered in veritee.cli._admin) ----------------------
def _cmd_master_key_new(args: argparse.Namespace) -> int:
    from pathlib import Path

    from veritee.service.keys import create_master_key_file

    key = create_master_key_file(Path(args.out))
    if args.format == "json":
        _json({"key_id": key.key_id, "out": args.out})
    else:
        print(f"master key {key.key_id} written to {args.out} (mode 0600)", file=sys.stderr)
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from veritee.service.app import service_master_key
    from veritee.service.keys import rotate_master_key
    from veritee.service.settings import load_settings
    from veritee.service.storage import open_store

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
    if args.format == "json":
        _json({"old_key_id": old.key_id, "new_key_id": key_id,
               "new_settings": args.new_settings})
    else:
        print(f"data key re-wrapped: master key {old.key_id} -> {key_id}; start the service "
              f"with {args.new_settings}", file=sys.stderr)
    return 0


def _cmd_token_create(args: argparse.Namespace) -> int:
    from veritee.service.core import create_admin_token

    store = _open_state(args, create=True)
    try:
        token_id, token = create_admin_token(store, args.name, args.role)
    finally:
        store.close()
    if args.format == "json":
        _json({"token_id": token_id, "name": args.name, "role": args.role, "token": token})
    else:
        print(f"token_id: {token_id}", file=sys.stderr)
        print(token)
    return 0


def _cmd_group_help(args: argparse.Namespace) -> int:  # pragma: no cover - ACTION required
    raise ConfigError(f"{args.command}: an action is required")
