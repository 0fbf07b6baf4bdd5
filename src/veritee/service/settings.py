"""Service settings: a TOML/JSON file, then ``VERITEE_*`` environment variables on top.

Every setting has a secure default. :func:`load_settings` validates types and ranges
(:class:`~veritee.errors.ConfigError` naming the key), then refuses insecure combinations
unless ``dev_mode`` is set explicitly:

* ``key_source = "emulated"``: the emulated TEE holds the sealing key in ordinary memory;
  (the production sources are ``sevsnp``, ``file`` and ``pkcs11``: see docs/service.md);
* ``trust_roots``: any root besides the pinned genuine AMD ARKs (an emulated vendor's);
* plain HTTP on a non-loopback address (no ``tls_certfile``/``tls_keyfile``);
* ``token_ttl`` above 1 hour or ``nonce_ttl`` above 10 minutes (results must be short-lived;
  challenges must be fresh).

Intel TDX quotes are verified against the pinned production Intel SGX Root CA;
``intel_trust_roots`` (PEM files, e.g. an emulated Intel vendor's root) adds roots to it and,
like ``trust_roots``, is refused outside ``dev_mode``.
``intel_collateral_dir`` names a directory of Intel DCAP collateral (TCB Info, QE
Identity, CRLs; read once at start with :func:`veritee.collateral.intel.load_directory`);
without it a quote's TCB status is unknown and the TDX appraisal refuses every quote.
``tdx_allowed_tcb_statuses`` lists the TCB statuses accepted (default ``UpToDate`` only).

Revocation (issue 18): ``require_crl`` is true by default, so a chain whose revocation was not
checked is refused. SEV-SNP CRLs come from ``amd_crl_dir`` (a directory holding the ARK's CRL,
as KDS serves it at ``/vcek/v1/<product>/crl``) and/or, with ``amd_kds = true``, from AMD's KDS
(``amd_kds_url``, cached in ``amd_kds_cache_dir`` until the CRL's nextUpdate). Turning
``require_crl`` off is refused outside ``dev_mode``; with it off the EAR trace records the
revocation check as skipped and the trust vector makes no ``hardware`` claim.
``revocation_optional`` names schemes whose certificates cannot be checked for revocation
offline (``nvidia``: NVIDIA publishes device-certificate status by OCSP only): their evidence is
verified without the requirement, and the trace records the check as skipped; the operator's
setting is the policy that says it may be, so their vector is not lowered for it.

Appraisal policies per scheme: ``appraisal_policies`` maps a scheme name to the id of a stored
policy document naming that scheme (``{sevsnp = "prod-snp", tdx = "prod-td"}``); a scheme not
listed uses ``appraisal_policy_id`` when the document stored under that id is for it (a
document without ``scheme`` is an SEV-SNP one, as before), else ``<scheme>-<appraisal_policy_id>``,
else the scheme's default policy; the scheme's stored reference values are added either way.

Environment variables are the upper-case names prefixed with ``VERITEE_``
(``VERITEE_DATABASE_URL``, ``VERITEE_DEV_MODE=1``, ``VERITEE_TRUST_ROOTS=a.pem,b.pem``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veritee.errors import ConfigError

__all__ = ["Settings", "load_settings", "settings_from_mapping"]

_MAX_TOKEN_TTL = 3600
_MAX_NONCE_TTL = 600


@dataclass(frozen=True)
class Settings:
    """Everything the service is configured with (see the module docstring for the rules)."""

    database_url: str = "sqlite:///veritee-service.db"
    dev_mode: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    issuer: str = "veritee"
    ear_alg: str = "ES256"
    token_ttl: int = 300
    nonce_ttl: int = 120
    appraisal_policy_id: str = "default"
    trust_roots: tuple[str, ...] = ()
    appraisal_policies: dict[str, str] = field(default_factory=dict, hash=False)
    require_crl: bool = True
    amd_crl_dir: str | None = None
    amd_kds: bool = False
    amd_kds_url: str = "https://kdsintf.amd.com"
    amd_kds_cache_dir: str | None = None
    revocation_optional: tuple[str, ...] = ()
    key_source: str = "emulated"
    emulated_machine_dir: str | None = None
    master_key_file: str = "veritee-master.key.sealed"
    log_level: str = "info"
    intel_collateral_dir: str | None = None
    tdx_allowed_tcb_statuses: tuple[str, ...] = ("UpToDate",)
    intel_trust_roots: tuple[str, ...] = ()
    pkcs11_module: str | None = None
    pkcs11_token: str = "veritee"  # noqa: S105 - a token *label*, not a secret
    pkcs11_pin_file: str | None = None
    pkcs11_key_label: str = "veritee-master-key"
    db_connect_timeout: int = 5
    db_statement_timeout_ms: int = 5000
    worker_threads: int = 40  # requests a worker runs at once in threads (anyio's default)
    kbs_allow_rsa1_5: bool = False  # /kbs/v0: release to RSA1_5 TEE keys (docs/coco.md)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def insecure_reasons(self) -> list[str]:
        """Why these settings are unsafe outside development (empty when they are safe)."""
        reasons: list[str] = []
        if self.key_source == "emulated":
            reasons.append("key_source: 'emulated' keeps the sealing key in ordinary memory")
        if self.trust_roots:
            reasons.append("trust_roots: roots other than the pinned AMD ARKs are trusted")
        if self.intel_trust_roots:
            reasons.append("intel_trust_roots: Intel roots besides the pinned one are trusted")
        if not self.require_crl:
            reasons.append("require_crl: false accepts chains whose revocation was not checked "
                           "(set amd_crl_dir or amd_kds = true)")
        if self.tls_certfile is None and not _is_loopback(self.host):
            reasons.append(f"host: plain HTTP on non-loopback address {self.host!r} "
                           "(set tls_certfile and tls_keyfile)")
        if self.token_ttl > _MAX_TOKEN_TTL:
            reasons.append(f"token_ttl: got {self.token_ttl} s, want <= {_MAX_TOKEN_TTL}")
        if self.nonce_ttl > _MAX_NONCE_TTL:
            reasons.append(f"nonce_ttl: got {self.nonce_ttl} s, want <= {_MAX_NONCE_TTL}")
        return reasons

    def public_view(self) -> dict[str, Any]:
        """The settings for logs and /readyz (the database password is masked)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "extra"}
        out["database_url"] = _mask_url(self.database_url)
        return out


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _mask_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


_BOOL_TEXT = {"1": True, "true": True, "yes": True, "on": True,
              "0": False, "false": False, "no": False, "off": False}


def _coerce(name: str, kind: Any, value: Any, *, from_env: bool) -> Any:
    want = {int: "an integer", bool: "a boolean", str: "a string"}
    if kind in (str, "str | None"):
        if value is None and kind == "str | None":
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{name}: got {value!r}, want a string")
        return value
    if kind is bool:
        if from_env and isinstance(value, str) and value.lower() in _BOOL_TEXT:
            return _BOOL_TEXT[value.lower()]
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: got {value!r}, want {want[bool]}")
        return value
    if kind is int:
        if from_env and isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                raise ConfigError(f"{name}: got {value!r}, want {want[int]}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: got {value!r}, want {want[int]}")
        return value
    if kind == "mapping":
        if from_env and isinstance(value, str):
            # VERITEE_APPRAISAL_POLICIES=sevsnp=prod-snp,tdx=prod-td
            pairs = [v.partition("=") for v in value.split(",") if v]
            if any(not k or not sep or not v for k, sep, v in pairs):
                raise ConfigError(f"{name}: got {value!r}, want scheme=id[,scheme=id...]")
            value = {k.strip(): v.strip() for k, _, v in pairs}
        if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and k and v
                for k, v in value.items()):
            raise ConfigError(f"{name}: got {value!r}, want a table of scheme = policy id")
        return dict(value)
    if kind == "tuple":
        if from_env and isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}: got {value!r}, want a list of strings")
        return tuple(value)
    raise AssertionError(kind)  # pragma: no cover


_KINDS: dict[str, Any] = {
    "database_url": str, "dev_mode": bool, "host": str, "port": int, "workers": int,
    "tls_certfile": "str | None", "tls_keyfile": "str | None", "issuer": str, "ear_alg": str,
    "token_ttl": int, "nonce_ttl": int, "appraisal_policy_id": str, "trust_roots": "tuple",
    "require_crl": bool, "amd_crl_dir": "str | None", "amd_kds": bool, "amd_kds_url": str,
    "amd_kds_cache_dir": "str | None", "appraisal_policies": "mapping",
    "revocation_optional": "tuple", "key_source": str,
    "emulated_machine_dir": "str | None",
    "master_key_file": str, "log_level": str, "intel_collateral_dir": "str | None",
    "tdx_allowed_tcb_statuses": "tuple", "intel_trust_roots": "tuple",
    "pkcs11_module": "str | None", "pkcs11_token": str,
    "pkcs11_pin_file": "str | None", "pkcs11_key_label": str, "db_connect_timeout": int,
    "db_statement_timeout_ms": int, "worker_threads": int, "kbs_allow_rsa1_5": bool,
}


def settings_from_mapping(data: Mapping[str, Any], env: Mapping[str, str] | None = None
                          ) -> Settings:
    """Build and validate settings from a mapping, then ``env`` (``VERITEE_*``) on top."""
    unknown = sorted(set(data) - set(_KINDS))
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown setting (known: {', '.join(sorted(_KINDS))})")
    values: dict[str, Any] = {k: _coerce(k, _KINDS[k], v, from_env=False)
                              for k, v in data.items()}
    for key, kind in _KINDS.items():
        env_name = f"VERITEE_{key.upper()}"
        if env is not None and env_name in env:
            values[key] = _coerce(env_name, kind, env[env_name], from_env=True)
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    if not 1 <= s.port <= 65535 and s.port != 0:
        raise ConfigError(f"port: got {s.port}, want 0..65535")
    if not 1 <= s.workers <= 64:
        raise ConfigError(f"workers: got {s.workers}, want 1..64")
    if s.ear_alg not in ("ES256", "ES384"):
        raise ConfigError(f"ear_alg: got {s.ear_alg!r}, want ES256 or ES384")
    if not 1 <= s.token_ttl <= 86400:
        raise ConfigError(f"token_ttl: got {s.token_ttl}, want 1..86400 seconds")
    if not 1 <= s.nonce_ttl <= 3600:
        raise ConfigError(f"nonce_ttl: got {s.nonce_ttl}, want 1..3600 seconds")
    if s.key_source not in ("emulated", "sevsnp", "file", "pkcs11"):
        raise ConfigError(f"key_source: got {s.key_source!r}, want 'sevsnp', 'file', 'pkcs11' "
                          "or 'emulated'")
    if s.key_source == "pkcs11" and (not s.pkcs11_module or not s.pkcs11_pin_file):
        raise ConfigError("pkcs11_module, pkcs11_pin_file: required with key_source = 'pkcs11'")
    if not 1 <= s.db_connect_timeout <= 60:
        raise ConfigError(f"db_connect_timeout: got {s.db_connect_timeout}, want 1..60 seconds")
    if not 100 <= s.db_statement_timeout_ms <= 60000:
        raise ConfigError(f"db_statement_timeout_ms: got {s.db_statement_timeout_ms}, want "
                          "100..60000")
    if not 1 <= s.worker_threads <= 256:
        raise ConfigError(f"worker_threads: got {s.worker_threads}, want 1..256")
    if s.key_source == "emulated" and not s.emulated_machine_dir:
        raise ConfigError("emulated_machine_dir: required with key_source = 'emulated'")
    if (s.tls_certfile is None) != (s.tls_keyfile is None):
        raise ConfigError("tls_certfile/tls_keyfile: set both or neither")
    if not s.amd_kds_url.startswith("https://") and not s.dev_mode:
        raise ConfigError(f"amd_kds_url: got {s.amd_kds_url!r}, want an https:// URL")
    if s.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log_level: got {s.log_level!r}, want debug/info/warning/error")
    if not s.tdx_allowed_tcb_statuses:
        raise ConfigError("tdx_allowed_tcb_statuses: want at least one TCB status")
    if "Revoked" in s.tdx_allowed_tcb_statuses:
        raise ConfigError("tdx_allowed_tcb_statuses: got 'Revoked', which is never acceptable")
    # The names are the tdx scheme's (its policy reads them): no TEE module imported here.
    from veritee.schemes import get

    try:
        get("tdx").policy_from_mapping({"allowed_tcb_statuses":
                                        list(s.tdx_allowed_tcb_statuses)})
    except ConfigError as exc:
        raise ConfigError(f"tdx_{exc}") from None
    if not s.dev_mode:
        reasons = s.insecure_reasons()
        if reasons:
            raise ConfigError("insecure settings refused outside dev_mode: "
                              + "; ".join(reasons) + " (set dev_mode = true for development)")


def load_settings(path: str | Path | None = None, *, env: Mapping[str, str] | None = None
                  ) -> Settings:
    """Settings from ``path`` (TOML or JSON; optional) and the environment (default os.environ).

    Relative paths inside the file are taken relative to the file's directory.
    """
    from veritee.policy._load import load_mapping

    data: dict[str, Any] = {}
    if path is not None:
        data = dict(load_mapping(path))
        base = Path(path).resolve().parent
        for key in ("emulated_machine_dir", "master_key_file", "tls_certfile", "tls_keyfile",
                    "intel_collateral_dir", "pkcs11_pin_file", "amd_crl_dir",
                    "amd_kds_cache_dir"):
            if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
                data[key] = str(base / data[key])
        for key in ("trust_roots", "intel_trust_roots"):
            if isinstance(data.get(key), list):
                data[key] = [str(base / p) if isinstance(p, str) and not Path(p).is_absolute()
                             else p for p in data[key]]
    try:
        return settings_from_mapping(data, os.environ if env is None else env)
    except ConfigError as exc:
        if path is not None:
            raise ConfigError(f"{path}: {exc}") from None
        raise
