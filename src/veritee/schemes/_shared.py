"""Helpers the schemes share: readers of an appraisal's findings (for each scheme's own AR4SI
mapping) and the reading of root anchors (pins or certificates).

Each scheme decides what its findings mean for the AR4SI trustworthiness vector
(draft-ietf-rats-ar4si section 2.3); the tier values are the constants of
:mod:`veritee.results`. ``instance-identity`` comes from the front door's generic binding check
(:func:`veritee.results.binding_identity`, which :mod:`veritee.attest` applies) and, for an
appraisal made without it, from the policy's own nonce check (:func:`identity`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cryptography import x509

from veritee.crypto._x509 import load_certificate_chain
from veritee.errors import ConfigError
from veritee.findings import Finding, Outcome, jsonable
from veritee.results import AFFIRMING, CRYPTO_FAILED, NO_CLAIM, binding_identity, failed

if TYPE_CHECKING:
    from veritee.policy import Appraisal
    from veritee.schemes import Verified

__all__ = ["PolicyRouted", "identity", "plain", "ran_and_passed", "read_anchor_files",
           "root_anchors"]


def ran_and_passed(findings: Iterable[Finding], prefixes: tuple[str, ...]) -> bool:
    """True when a finding whose code starts with one of ``prefixes`` ran and passed (the
    counterpart of :func:`veritee.results.failed`)."""
    return any(f.outcome is Outcome.PASS and f.code.startswith(prefixes) for f in findings)


def identity(appraisal: Any, nonce_code: str) -> int:
    """AR4SI ``instance-identity``: the front door's binding check when it ran, else the
    policy's own nonce check ``nonce_code`` (99 failed, 2 passed, 0 not checked)."""
    found = binding_identity(appraisal)
    if found != NO_CLAIM:
        return found
    if failed(appraisal.findings, (nonce_code,)):
        return CRYPTO_FAILED
    return AFFIRMING if ran_and_passed(appraisal.findings, (nonce_code,)) else NO_CLAIM


def plain(value: object) -> Any:
    """A parsed structure as JSON-ready values for ``veritee show``: dataclass fields (not
    ``raw``/unrepresented ones), bytes as hex, enums by name, mappings with string keys,
    certificates by subject."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if f.repr and f.name != "raw"}
    if isinstance(value, x509.Certificate):
        return value.subject.rfc4514_string()
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return jsonable(value)


def read_anchor_files(paths: Sequence[Path]) -> list[bytes]:
    """The bytes of each anchor file (``--trust-root``/``--key``), stat'ed and bounded;
    :class:`ConfigError` when one cannot be read."""
    from veritee._decode import limit_for, read_bounded

    out: list[bytes] = []
    for path in paths:
        try:
            out.append(read_bounded(path, limit=limit_for("certificate"), what="trust anchor"))
        except OSError as exc:
            raise ConfigError(f"trust anchor {path}: cannot read "
                              f"({exc.strerror or exc})") from None
    return out


def root_anchors(value: Any, vendor: str, default: str) -> list[str | x509.Certificate] | None:
    """A vendor's anchors as ``trusted_roots``: ``None`` (the production pin, ``default``
    names it in errors), or one or several of: SHA-256 hex pins (``str``), root certificates,
    PEM/DER bytes of root certificates (``--trust-root FILE``)."""
    if value is None:
        return None
    items = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
    roots: list[str | x509.Certificate] = []
    for item in items:
        if isinstance(item, str | x509.Certificate):
            roots.append(item)
        elif isinstance(item, bytes | bytearray):
            roots += load_certificate_chain(bytes(item), structure=f"anchors[{vendor!r}]")
        else:
            raise ConfigError(f"anchors[{vendor!r}]: want SHA-256 hex pins or root "
                              f"certificates (or None for {default}), got "
                              f"{type(item).__name__}")
    if not roots:
        raise ConfigError(f"anchors[{vendor!r}]: an empty collection trusts nothing; give "
                          f"None for {default}")
    return roots


class PolicyRouted:
    """The :class:`~veritee.schemes.Scheme` methods that are the same for every scheme that
    appraises with one policy module, keeps no cache and takes no collateral files.

    A subclass names its policy module's ``appraise`` (``_policy_appraise``) and its AR4SI
    mapping (``_vector``), both as ``staticmethod``, and defines ``claims``.
    """

    _policy_appraise: ClassVar[Callable[..., Appraisal]]
    _vector: ClassVar[Callable[..., dict[str, int]]]

    def claims(self, verified: Verified) -> dict[str, Any]:
        """The scheme's claims (every subclass defines them)."""
        raise NotImplementedError

    def appraise(self, verified: Verified, policy: Any) -> Appraisal:
        """The policy module's appraisal, with the scheme's claims and AR4SI vector."""
        result = replace(type(self)._policy_appraise(verified.native, policy),
                         claims=self.claims(verified))
        return replace(result, vector=self.trust_vector(result))

    def trust_vector(self, appraisal: Appraisal) -> dict[str, int]:
        """The scheme's AR4SI vector of ``appraisal`` (also for one a policy module made
        without the front door: it reads only the appraisal)."""
        return type(self)._vector(appraisal)

    def new_cache(self) -> None:
        """No cache: nothing verified here outlives one piece of evidence."""
        return None

    def load_collateral(self, paths: Sequence[Path]) -> Any:
        """No collateral files (``None``): what verification needs comes with the evidence or
        the anchors."""
        return None
