"""Option groups shared by several commands, kept light: registering them imports nothing but
argparse (the platform, key store and service modules are imported by the commands)."""

from __future__ import annotations

import argparse

__all__ = ["TEES", "add_connection_args", "add_platform_args", "add_settings_args",
           "add_store_args", "path_arg"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (start-up)
if TYPE_CHECKING:
    from typing import Any

TEES = ("snp", "tdx", "sgx", "tpm")


def path_arg(text: str) -> Any:
    """argparse ``type=`` for a path (pathlib imported only when one is given)."""
    from pathlib import Path

    return Path(text)


def add_platform_args(p: argparse.ArgumentParser) -> None:
    """The options that pick and describe the platform."""
    g = p.add_argument_group("platform")
    g.add_argument("--platform", choices=("auto", "emulated", "sev-snp"), default="auto",
                   help="auto: /dev/sev-guest when present, else the emulated machine")
    g.add_argument("--tee", choices=TEES, default=None,
                   help="which TEE: snp (default), the emulated Intel tdx / sgx, or tpm "
                   "(/dev/tpmrm0, else swtpm in --state)")
    g.add_argument("--state", metavar="DIR", type=path_arg, help="emulated machine state "
                   "directory (must hold a machine unless --create)")
    g.add_argument("--create", action="store_true", help="create a new emulated machine in "
                   "--state DIR if none is there (a new chip: nothing sealed before opens)")
    g.add_argument("--image", metavar="FILE", type=path_arg,
                   help="emulated guest image (default: the demo firmware)")
    g.add_argument("--id-key", metavar="PEM", type=path_arg,
                   help="P-384 ID key signing the emulated guest's ID block (signer identity)")
    g.add_argument("--svn", type=int, default=0, help="guest SVN in the ID block")
    g.add_argument("--family-id", metavar="HEX", default="00" * 16,
                   help="FAMILY_ID in the emulated guest's ID block (16 bytes, hex)")
    g.add_argument("--image-id", metavar="HEX", default="00" * 16,
                   help="IMAGE_ID in the emulated guest's ID block (16 bytes, hex)")
    g.add_argument("--debug-guest", action="store_true",
                   help="launch the emulated guest with the DEBUG policy bit")


def add_store_args(p: argparse.ArgumentParser) -> None:
    """``--store``, ``--unsafe-no-rollback-protection`` and the platform options."""
    p.add_argument("--store", type=path_arg, metavar="DIR", help="key store directory "
                   "(default: $VERITEE_KEYSTORE_DIR or ~/.local/share/veritee/keys)")
    p.add_argument("--unsafe-no-rollback-protection", action="store_true",
                   help="UNSAFE: run without monotonic counters (a real SEV-SNP guest has "
                   "none); restoring old files can then revive destroyed keys")
    add_platform_args(p)


def add_settings_args(p: argparse.ArgumentParser) -> None:
    """The service's settings file and database URL (commands that open its database)."""
    p.add_argument("--settings", metavar="FILE", help="settings file (TOML or JSON); "
                   "VERITEE_* environment variables apply on top")
    p.add_argument("--database-url", dest="database_url", metavar="URL",
                   help="sqlite:///path or postgresql://... (overrides the settings)")


def add_connection_args(p: argparse.ArgumentParser, default_url: str) -> None:
    """``--url``, ``--token-file`` and ``--timeout`` of the admin API client."""
    g = p.add_argument_group("connection")
    g.add_argument("--url", help=f"service URL (default: $VERITEE_URL or {default_url})")
    g.add_argument("--token-file", metavar="FILE", help="file holding the bearer token "
                   "(default: $VERITEE_ADMIN_TOKEN)")
    g.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="give up on the service after this long (default 30)")
    g.add_argument("--token", help=argparse.SUPPRESS)  # refused in _token, never echoed
