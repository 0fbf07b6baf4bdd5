"""One verifier contract: a :class:`Scheme` per evidence family, listed in one registry.

Every TEE's evidence goes through the same steps (docs/schemes.md, ARCHITECTURE "One
verifier contract"), in the spirit of Veraison's scheme plug-ins and Trustee's verifier trait:

1. ``recognise(data)``: the bytes (or their container: CMW, configfs-tsm, a Trustee evidence
   JSON, a go-tpm-tools protobuf) look like this scheme's evidence;
2. ``parse(data, attached=...)``: the formats layer turns them into a typed object (``attached``
   is collateral the attester sent beside the evidence: an SEV-SNP certificate table, an
   NVIDIA device chain);
3. ``verify(parsed, ctx)``: the trust layer checks signatures, chains, revocation and collateral
   against ``ctx.anchors`` at ``ctx.now``; raises :class:`~veritee.errors.VerificationError`
   (or :class:`~veritee.errors.CollateralError`) or returns a :class:`Verified`;
4. ``binding(v)``: the bytes where this TEE carries the verifier's challenge (REPORT_DATA,
   TPM qualifying data, the Nitro nonce, the CCA challenge, the NVIDIA request nonce), compared
   by :mod:`veritee.attest` with the expected value (:func:`expected_binding`);
5. ``claims(v)``: the verified fields under one naming convention (:data:`COMMON_CLAIMS`) plus
   the TEE's own;
6. ``appraise(v, policy)``: the policy layer; every finding, an
   :class:`~veritee.policy.Appraisal` whose ``vector`` is this scheme's AR4SI mapping.

Optional methods a scheme may add (callers fall back to a generic behaviour without them):
``describe(parsed) -> dict`` (every field for ``veritee show``), ``load_anchors(paths)``
(``--trust-root`` files as this vendor's anchors), ``revocation(verified) -> dict``
(``{"checked": bool, "detail": str}``), ``new_fetcher(...)`` (a collateral fetcher for
``--fetch``), ``with_options(**options)`` (a copy with parser options, e.g. TDX's
``allow_nonzero_trailer``), ``trust_vector(appraisal)`` (its AR4SI mapping).

Adding a TEE is one module with a ``SCHEME`` object and one line in :data:`_REGISTERED`;
nothing above this package names a TEE. Scheme modules are imported on first use, so the CLI
does not pay for every TEE's parsers at start-up.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from veritee.errors import ConfigError, FormatError
from veritee.findings import Finding
from veritee.policy import Appraisal

__all__ = [
    "COMMON_CLAIMS",
    "Anchors",
    "Collateral",
    "Context",
    "Scheme",
    "Verified",
    "all_schemes",
    "expected_binding",
    "get",
    "names",
    "recognise",
]

# -- the registry: one line per scheme ("module:attribute"), in recognition order ---------------
# Order matters only where two formats could claim the same bytes: the more specific first
# (an Azure vTPM evidence JSON before a plain Trustee TPM JSON; Nitro before PSA, both COSE).
# Schemes recognised by magic bytes come before SEV-SNP, which recognises a bare report by its
# size alone (no SNP report starts with a CBOR array/tag, SPDM 0x11 0xE0 or JSON).
_REGISTERED: tuple[str, ...] = (
    "veritee.schemes.nitro:SCHEME",
    "veritee.schemes.psa:SCHEME",
    "veritee.schemes.cca:SCHEME",
    "veritee.schemes.nvidia:SCHEME",
    "veritee.schemes.sevsnp:SCHEME",
    "veritee.schemes.azure_vtpm:SNP_SCHEME",
    "veritee.schemes.azure_vtpm:TDX_SCHEME",
    "veritee.schemes.intel:TDX",
    "veritee.schemes.intel:SGX",
    "veritee.schemes.tpm:SCHEME",
)

COMMON_CLAIMS: Mapping[str, str] = MappingProxyType({
    "tee": "the scheme name (str)",
    "measurement": "the launch/boot measurement a reference value is compared with (lowercase "
                   "hex) or None where the TEE has several (then see the TEE's own claims)",
    "debug": "True when the TEE's memory is readable by a debugger/host (bool) or None",
    "tcb_status": "the vendor's TCB status string (UpToDate, OutOfDate, ...) or None",
    "advisory_ids": "security advisories that apply to this TCB (list of str)",
    "binding": "the bytes carrying the verifier's challenge (lowercase hex)",
})
"""Claims every scheme provides under the same name (``None`` when the TEE has no such value).
Claims are JSON-ready: bytes as lowercase hex, numbers as numbers."""


@dataclass(frozen=True)
class Anchors:
    """Trust anchors per vendor. ``None`` means the vendor's production pins (genuine roots).

    Emulated or test roots are trusted only when a caller puts them here explicitly. Each
    entry holds whatever that vendor's trust module accepts (SHA-256 hex pins, certificates,
    public keys, :class:`~veritee.trust.roots.TrustAnchors` for AMD); keys are vendor names
    that schemes declare (``Scheme.vendor``): ``amd``, ``intel``, ``aws``, ``nvidia``, ``arm``,
    ``tpm`` ...
    """

    by_vendor: Mapping[str, Any] = field(default_factory=dict)

    def get(self, vendor: str) -> Any:
        """The anchors for ``vendor``, or ``None`` for its production pins."""
        return self.by_vendor.get(vendor)

    def with_vendor(self, vendor: str, value: Any) -> Anchors:
        """A copy with ``vendor``'s anchors replaced by ``value``."""
        return Anchors({**self.by_vendor, vendor: value})


@dataclass(frozen=True)
class Collateral:
    """Verification collateral per vendor (AMD certificates and CRL, Intel TCB Info / QE
    Identity / CRLs, ...), each entry the type its scheme documents. Absent: the scheme uses
    what the evidence carries, then (if the context has one) its fetcher."""

    by_vendor: Mapping[str, Any] = field(default_factory=dict)

    def get(self, vendor: str) -> Any:
        """The collateral for ``vendor``, or ``None``."""
        return self.by_vendor.get(vendor)

    def with_vendor(self, vendor: str, value: Any) -> Collateral:
        """A copy with ``vendor``'s collateral replaced by ``value``."""
        return Collateral({**self.by_vendor, vendor: value})


@dataclass(frozen=True)
class Context:
    """Everything ``Scheme.verify`` may use besides the evidence: no other input, no I/O
    except through ``fetchers``.

    ``now`` is read once per verification (the service reads its clock once per request);
    ``require_revocation`` makes a chain whose revocation could not be checked fail
    verification rather than only be reported; ``caches`` holds one cache object per scheme
    (created by ``Scheme.new_cache``, owned by the verifier that made the context).
    """

    collateral: Collateral
    anchors: Anchors
    now: datetime
    require_revocation: bool = False
    fetchers: Mapping[str, Any] = field(default_factory=dict)
    caches: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verified:
    """Evidence whose signatures and chain a scheme checked at ``checked_at``.

    ``native`` is the scheme's own verified object (``VerifiedReport``, ``VerifiedQuote``,
    ...); ``checks`` the verification trace, every step a :class:`Finding`.
    """

    scheme: str
    native: Any
    checks: tuple[Finding, ...]
    checked_at: datetime


@runtime_checkable
class Scheme(Protocol):
    """One evidence family, end to end (formats -> trust -> policy)."""

    name: str
    """Stable scheme name (the EAR submodule and the ``tee`` claim): ``sevsnp``, ``tdx`` ..."""
    vendor: str
    """Which :class:`Anchors`/:class:`Collateral` entry this scheme reads."""
    binding_size: int
    """Bytes of challenge the evidence carries (64 for REPORT_DATA; 32 where the field is
    shorter); :func:`expected_binding` derives a value of this size."""
    policy_type: type
    """The policy class :meth:`appraise` takes."""

    def recognise(self, data: bytes) -> bool:
        """True when ``data`` is (or contains) this scheme's evidence. Cheap; never raises."""
        ...

    def parse(self, data: bytes, *, attached: bytes | None = None) -> Any:
        """The typed evidence; :class:`~veritee.errors.FormatError` on bad bytes."""
        ...

    def verify(self, evidence: Any, ctx: Context) -> Verified:
        """Signatures, chain, revocation, collateral; raise or return the verified form."""
        ...

    def binding(self, verified: Verified) -> bytes:
        """Where this TEE carries the verifier's challenge (``binding_size`` bytes)."""
        ...

    def claims(self, verified: Verified) -> dict[str, Any]:
        """Verified claims: every key of :data:`COMMON_CLAIMS` plus the TEE's own."""
        ...

    def default_policy(self) -> Any:
        """The secure default policy (no reference values: it accepts any workload on a
        genuine, up-to-date platform, so relying parties must add theirs)."""
        ...

    def policy_from_mapping(self, data: Mapping[str, Any]) -> Any:
        """A policy from its JSON/TOML form; :class:`~veritee.errors.ConfigError` naming the
        bad key."""
        ...

    def policy_to_mapping(self, policy: Any) -> dict[str, Any]:
        """The JSON form of ``policy`` (round-trips through :meth:`policy_from_mapping`)."""
        ...

    def appraise(self, verified: Verified, policy: Any) -> Appraisal:
        """Every finding under ``policy``; the appraisal carries this scheme's AR4SI vector
        (``Appraisal.vector``) and its verification trace."""
        ...

    def new_cache(self) -> Any:
        """A fresh cache for verified collateral (chains, TCB Info ...), or ``None``."""
        ...

    def load_collateral(self, paths: Sequence[Path]) -> Any:
        """Collateral for this scheme from files a user names (``--certs``), or ``None``
        when none of them is this scheme's."""
        ...


def expected_binding(nonce: bytes, spki_der: bytes, size: int) -> bytes:
    """The value a TEE must carry for ``nonce`` and a TEE key (SubjectPublicKeyInfo DER).

    SHA-512(nonce || SPKI) for 64 bytes of report data (SEV-SNP, TDX, SGX, CCA), SHA-384 for
    48, SHA-256 for 32 (TPM qualifying data, the NVIDIA request nonce). The SPKI names the key
    type, so keys of different types never collide.
    """
    algorithms: dict[int, Callable[[bytes], Any]] = {
        64: hashlib.sha512, 48: hashlib.sha384, 32: hashlib.sha256}
    if size not in algorithms:
        raise ConfigError(f"binding size: got {size}, want 32, 48 or 64")
    digest: bytes = algorithms[size](nonce + spki_der).digest()
    return digest


# -- lookup -----------------------------------------------------------------------------------
_loaded: dict[str, Scheme] = {}


def _load(entry: str) -> Scheme:
    found = _loaded.get(entry)
    if found is None:
        module, _, attr = entry.partition(":")
        found = getattr(importlib.import_module(module), attr)
        if not isinstance(found, Scheme):
            raise TypeError(f"{entry} does not implement the Scheme protocol")
        _loaded[entry] = found
    return found


def all_schemes() -> Iterator[Scheme]:
    """Every registered scheme, in recognition order."""
    for entry in _REGISTERED:
        yield _load(entry)


def names() -> tuple[str, ...]:
    """The registered scheme names."""
    return tuple(s.name for s in all_schemes())


_by_name: dict[str, Scheme] = {}


def get(name: str) -> Scheme:
    """The scheme called ``name``; :class:`ConfigError` listing the known ones otherwise."""
    found = _by_name.get(name)
    if found is not None:
        return found
    for scheme in all_schemes():
        if scheme.name == name:
            _by_name[name] = scheme  # the registry is fixed: looked up once per name
            return scheme
    raise ConfigError(f"scheme: got {name!r}, want one of {', '.join(names())}")


_every: list[Scheme] = []


def recognise(data: bytes) -> Scheme:
    """The first scheme that recognises ``data``; :class:`FormatError` if none does."""
    if not _every:
        _every[:] = all_schemes()  # the registry is fixed: loaded once
    for scheme in _every:
        if scheme.recognise(data):
            return scheme
    # The list goes in ``detail``, which is never cut short (``want`` is, at 80 characters).
    raise FormatError("evidence", "<format>",
                      got=f"{len(data)} bytes starting {bytes(data[:8]).hex()}",
                      want="evidence of a registered scheme",
                      detail=f"registered: {', '.join(names())}")
