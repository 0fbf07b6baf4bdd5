"""The front door: parse -> verify -> appraise, for real and emulated evidence alike.

:func:`verify` (and :class:`Verifier`, which keeps anchors, collateral, caches and fetchers for
a relying party) is the one entry for every evidence family: it looks the scheme up in the
registry (:mod:`veritee.schemes`) and runs the same steps for all, including composite evidence
(a CPU plus devices, each bound to the same challenge). It returns the
:class:`~veritee.policy.Appraisal` on acceptance and raises
:class:`~veritee.errors.PolicyRejected` (carrying the full appraisal) on rejection.

The older per-TEE functions below (:func:`parse_evidence`, :func:`verify_only`,
:func:`verify_evidence` for SEV-SNP; :func:`verify_intel_evidence` for TDX/SGX) stay for one
release as thin wrappers over the ``sevsnp``, ``tdx`` and ``sgx`` schemes: same arguments,
same results, no logic of their own.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from veritee.errors import ConfigError
from veritee.policy import Appraisal, Finding, Outcome
from veritee.schemes import Anchors, Collateral, Context, Scheme, Verified

if TYPE_CHECKING:  # the wrappers' types; at run time the schemes are reached through the registry
    from veritee.collateral.kds import KdsClient
    from veritee.formats.intel import Quote
    from veritee.policy.intel import SgxPolicy, TdxPolicy
    from veritee.policy.sevsnp import SevSnpPolicy
    from veritee.schemes.sevsnp import SevSnpEvidence as Evidence
    from veritee.trust.intel import IntelCollateral
    from veritee.trust.roots import TrustAnchors
    from veritee.trust.sevsnp import AmdCertificates, ChainCache, VerifiedReport

__all__ = [
    "UNSAFE_DEFAULT_POLICIES",
    "Challenge",
    "CompositeAppraisal",
    "Evidence",
    "EvidencePart",
    "Verifier",
    "bind_report_data",
    "is_intel_quote",
    "parse_evidence",
    "verify",
    "verify_evidence",
    "verify_intel_evidence",
    "verify_only",
]


def __getattr__(name: str) -> Any:
    # ``Evidence`` (the parsed SEV-SNP evidence) is the sevsnp scheme's type; looked up on
    # first use so that importing the front door loads no TEE module.
    if name == "Evidence":
        evidence_type: type = getattr(_scheme("sevsnp"), "evidence_type")  # noqa: B009
        return evidence_type
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _scheme(name: str) -> Scheme:
    from veritee.schemes import get

    return get(name)


def bind_report_data(nonce: bytes, public_key: PublicKeyTypes) -> bytes:
    """REPORT_DATA binding a verifier's nonce to a TEE public key: SHA-512(nonce || SPKI DER).

    64 bytes, exactly the size of SEV-SNP REPORT_DATA. The SPKI DER encoding names the key
    type, so keys of different types can never collide.
    """
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha512(nonce + spki).digest()


def _aware(now: datetime | None) -> datetime:
    """``now`` (default: the clock), refusing a naive time with one typed error."""
    when = now or datetime.now(UTC)
    _naive(when)
    return when


def parse_evidence(data: bytes, *, cert_table: bytes | None = None) -> Evidence:
    """Recognise and parse SEV-SNP evidence (bare, Azure HCL, configfs-tsm); raise
    :class:`~veritee.errors.FormatError` if unrecognised. The ``sevsnp`` scheme's ``parse``."""
    parsed: Evidence = _scheme("sevsnp").parse(data, attached=cert_table)
    return parsed


def verify_only(evidence: bytes | Evidence, *, collateral: AmdCertificates | None = None,
                anchors: TrustAnchors | None = None, now: datetime | None = None,
                require_crl: bool = False, cache: ChainCache | None = None,
                cert_table: bytes | None = None,
                fetcher: KdsClient | None = None) -> VerifiedReport:
    """Parse and cryptographically verify SEV-SNP evidence; no policy. Raises on any failure.

    The ``sevsnp`` scheme's ``verify``: ``fetcher`` (a
    :class:`~veritee.collateral.kds.KdsClient`) fills in what the collateral and the
    evidence's certificate table lack; fetched certificates are verified like any.
    """
    native: VerifiedReport = _sevsnp_verify(
        evidence, collateral=collateral, anchors=anchors, now=now, require_crl=require_crl,
        cache=cache, cert_table=cert_table, fetcher=fetcher)[1].native
    return native


def _sevsnp_verify(evidence: bytes | Evidence, *, collateral: AmdCertificates | None,
                   anchors: TrustAnchors | None, now: datetime | None, require_crl: bool,
                   cache: ChainCache | None, cert_table: bytes | None,
                   fetcher: KdsClient | None) -> tuple[Scheme, Verified]:
    """The old SEV-SNP arguments as a context for the ``sevsnp`` scheme."""
    scheme = _scheme("sevsnp")
    parsed = (scheme.parse(bytes(evidence), attached=cert_table)
              if isinstance(evidence, bytes | bytearray | memoryview) else evidence)
    ctx = Context(collateral=Collateral({} if collateral is None else {"amd": collateral}),
                  anchors=Anchors({} if anchors is None else {"amd": anchors}),
                  now=_aware(now), require_revocation=require_crl,
                  fetchers={} if fetcher is None else {"amd": fetcher},
                  caches={} if cache is None else {scheme.name: cache})
    return scheme, scheme.verify(parsed, ctx)


def verify_evidence(evidence: bytes | Evidence, *, policy: SevSnpPolicy | None = None,
                    collateral: AmdCertificates | None = None,
                    anchors: TrustAnchors | None = None, now: datetime | None = None,
                    require_crl: bool = False, cache: ChainCache | None = None,
                    cert_table: bytes | None = None,
                    fetcher: KdsClient | None = None) -> Appraisal:
    """Parse, verify and appraise SEV-SNP evidence; return the appraisal or raise.

    Raises :class:`FormatError` for bad bytes, :class:`CollateralError` when certificates are
    missing, :class:`VerificationError` when a signature/chain/revocation/binding check fails,
    and :class:`~veritee.errors.PolicyRejected` (with every finding) when the policy rejects.
    ``anchors`` defaults to the genuine AMD roots; ``policy`` to the secure default policy.
    Prefer :func:`verify` (a required policy, challenge binding, every scheme).
    """
    from veritee.errors import PolicyRejected

    scheme, verified = _sevsnp_verify(evidence, collateral=collateral, anchors=anchors,
                                      now=now, require_crl=require_crl, cache=cache,
                                      cert_table=cert_table, fetcher=fetcher)
    chosen = scheme.default_policy() if policy is None else _policy_for(scheme, policy)
    appraisal = scheme.appraise(verified, chosen)
    if not appraisal.accepted:
        raise PolicyRejected(appraisal)
    return appraisal


def is_intel_quote(data: bytes) -> bool:
    """True when ``data`` is an Intel DCAP quote (SGX v3, TDX v4/v5): the ``tdx`` or ``sgx``
    scheme recognises it (by the quote header: u16 VERSION 3/4/5, u16 ATT_KEY_TYPE)."""
    return any(_scheme(name).recognise(data) for name in ("tdx", "sgx"))


def verify_intel_evidence(data: bytes | Quote, *, collateral: IntelCollateral | None = None,
                          policy: TdxPolicy | SgxPolicy | None = None,
                          now: datetime | None = None,
                          trusted_roots: Iterable[x509.Certificate] | None = None) -> Appraisal:
    """Parse, verify and appraise an Intel DCAP quote (TDX or SGX); raise on rejection.

    The ``tdx``/``sgx`` scheme: ``collateral`` (TCB Info, QE Identity, CRLs) makes the TCB
    status known; the default policies refuse a quote without TCB Info, without a verified QE
    Identity or without both CRLs checked (issue 18). ``trusted_roots`` replaces the pinned
    Intel SGX Root CA (e.g. for Intel's non-production sample root). A policy of the other
    Intel TEE is appraised as given (its ``<tee>.tee.type`` check fails).
    """
    from veritee.errors import PolicyRejected
    from veritee.schemes import recognise

    if isinstance(data, bytes | bytearray | memoryview):
        scheme = recognise(bytes(data))
        if scheme.name not in ("tdx", "sgx"):
            from veritee.errors import FormatError

            raise FormatError("Quote", "header", got=f"{scheme.name} evidence",
                              want="an Intel DCAP quote (TDX or SGX)")
        parsed: Any = scheme.parse(bytes(data))
    else:  # an already parsed Quote
        scheme, parsed = _scheme("tdx" if data.is_tdx else "sgx"), data
    roots = list(trusted_roots) if trusted_roots else None
    ctx = Context(collateral=Collateral({} if collateral is None else {"intel": collateral}),
                  anchors=Anchors({} if roots is None else {"intel": roots}), now=_aware(now))
    verified = scheme.verify(parsed, ctx)
    if policy is not None:  # the scheme of the policy's TEE appraises (tee.type says no)
        scheme = next(s for s in (_scheme("tdx"), _scheme("sgx"))
                      if isinstance(policy, s.policy_type))
    appraisal = scheme.appraise(verified, policy or scheme.default_policy())
    if not appraisal.accepted:
        raise PolicyRejected(appraisal)
    return appraisal


# -- the one front door ------------------------------------------------------------------------


class _UnsafeDefaults:
    """The sentinel type of :data:`UNSAFE_DEFAULT_POLICIES`."""

    def __repr__(self) -> str:
        return "UNSAFE_DEFAULT_POLICIES"


UNSAFE_DEFAULT_POLICIES: Any = _UnsafeDefaults()
"""Appraise each scheme under its default policy: a genuine, up-to-date platform passes
whatever workload it runs. Only for inspecting evidence; a relying party passes its own policy
with reference values (and a challenge for freshness)."""


@dataclass(frozen=True)
class Challenge:
    """The verifier's challenge: a nonce and the TEE key it must be bound to (SPKI DER).

    Each scheme derives the value its evidence must carry with
    :func:`veritee.schemes.expected_binding` (SHA-512(nonce || SPKI) for 64 bytes of report
    data, SHA-256 for 32), so one challenge binds a CPU and its devices alike.
    """

    nonce: bytes
    key_spki: bytes

    @classmethod
    def for_key(cls, nonce: bytes, public_key: PublicKeyTypes) -> Challenge:
        """The challenge binding ``nonce`` to ``public_key``."""
        return cls(nonce, public_key.public_bytes(Encoding.DER,
                                                  PublicFormat.SubjectPublicKeyInfo))


@dataclass(frozen=True)
class EvidencePart:
    """One attester's evidence in a composite: bytes, the scheme (a registered name, a scheme
    object configured with options such as ``TdxScheme.with_options(...)``, or ``None``:
    recognised from the bytes) and what the attester attached (a certificate table, a device
    chain)."""

    data: bytes
    scheme: str | Scheme | None = None
    attached: bytes | None = None


@dataclass(frozen=True)
class CompositeAppraisal:
    """The appraisals of several attesters bound to one challenge (CPU first, then devices).

    Accepted only when every part is; the EAR has one submodule per part.
    """

    parts: tuple[Appraisal, ...]

    @property
    def accepted(self) -> bool:
        """True when every part was accepted."""
        return all(p.accepted for p in self.parts)

    def codes(self) -> list[str]:
        """Codes of every failed check, part by part."""
        return [c for p in self.parts for c in p.codes()]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"accepted": self.accepted, "parts": [p.to_dict() for p in self.parts]}


def _naive(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ConfigError(f"now: got a naive datetime ({now.isoformat()}), want an aware one "
                          "(for example datetime.now(UTC))")


class _SchemeCaches(dict[str, Any]):
    """One cache per scheme, made on its first use: a verifier (one per attested certificate
    in RA-TLS) does not build every scheme's cache up front."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def __missing__(self, name: str) -> Any:
        from veritee.schemes import get

        with self._lock:
            if name not in self:
                super().__setitem__(name, get(name).new_cache())
            return super().__getitem__(name)

    def get(self, name: str, default: Any = None) -> Any:
        """The cache of scheme ``name`` (made now if need be); ``default`` for no scheme."""
        try:
            return self[name]
        except ConfigError:
            return default


class Verifier:
    """A relying party's verifier: anchors per vendor, default collateral, fetchers, caches,
    clock and revocation requirement, kept across verifications (go-sev-guest's Options,
    sigstore's Verifier). Thread-safe: caches lock internally.
    """

    def __init__(self, *, anchors: Anchors | None = None, collateral: Collateral | None = None,
                 fetchers: Mapping[str, Any] | None = None, require_revocation: bool = False,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.anchors = anchors or Anchors()
        self.collateral = collateral or Collateral()
        self.fetchers = dict(fetchers or {})
        self.require_revocation = require_revocation
        self.clock = clock or (lambda: datetime.now(UTC))
        self.caches = _SchemeCaches()

    def context(self, *, now: datetime | None = None,
                collateral: Collateral | None = None) -> Context:
        """The verification context at ``now`` (default: the clock, read once)."""
        when = now or self.clock()
        _naive(when)
        merged = self.collateral
        if collateral is not None:
            merged = Collateral({**self.collateral.by_vendor, **collateral.by_vendor})
        return Context(collateral=merged, anchors=self.anchors, now=when,
                       require_revocation=self.require_revocation, fetchers=self.fetchers,
                       caches=self.caches)

    def appraise(self, evidence: bytes | EvidencePart | Sequence[EvidencePart], *,
                 policy: Any, challenge: Challenge | None = None,
                 expected_binding: bytes | None = None, now: datetime | None = None,
                 collateral: Collateral | None = None
                 ) -> Appraisal | CompositeAppraisal:
        """Verify and appraise without raising on rejection (see :meth:`verify`)."""
        ctx = self.context(now=now, collateral=collateral)
        if isinstance(evidence, bytes | bytearray | memoryview):
            return self._one(EvidencePart(bytes(evidence)), ctx, policy, challenge,
                             expected_binding)
        if isinstance(evidence, EvidencePart):
            return self._one(evidence, ctx, policy, challenge, expected_binding)
        parts = tuple(evidence)
        if not parts:
            from veritee.errors import ConfigError

            raise ConfigError("evidence: got an empty list, want at least one part")
        if expected_binding is not None and len(parts) > 1:
            from veritee.errors import ConfigError

            raise ConfigError("expected_binding: a composite needs a challenge (each scheme "
                              "derives its own binding size from it)")
        return CompositeAppraisal(tuple(self._one(p, ctx, policy, challenge, expected_binding)
                                        for p in parts))

    def verify(self, evidence: bytes | EvidencePart | Sequence[EvidencePart], *,
               policy: Any, challenge: Challenge | None = None,
               expected_binding: bytes | None = None, now: datetime | None = None,
               collateral: Collateral | None = None) -> Appraisal | CompositeAppraisal:
        """Parse, verify and appraise; return the appraisal or raise.

        ``policy`` is required: one policy (for single evidence), a mapping from scheme name
        to policy (composite), or :data:`UNSAFE_DEFAULT_POLICIES`. ``challenge`` (or, for one
        part, the raw ``expected_binding``) is what the evidence must carry; without either
        the trace records that freshness was not checked. Raises
        :class:`~veritee.errors.FormatError`, :class:`~veritee.errors.CollateralError`,
        :class:`~veritee.errors.VerificationError` and, when a policy check fails,
        :class:`~veritee.errors.PolicyRejected` (for a composite, carrying the first rejected
        part; every part is in ``.composite``).
        """
        from veritee.errors import PolicyRejected

        result = self.appraise(evidence, policy=policy, challenge=challenge,
                               expected_binding=expected_binding, now=now,
                               collateral=collateral)
        if isinstance(result, CompositeAppraisal):
            if not result.accepted:
                rejected = PolicyRejected(next(p for p in result.parts if not p.accepted))
                rejected.composite = result  # type: ignore[attr-defined]
                raise rejected
            return result
        if not result.accepted:
            raise PolicyRejected(result)
        return result

    def verify_only(self, evidence: bytes | EvidencePart, *,
                    challenge: Challenge | None = None, expected_binding: bytes | None = None,
                    now: datetime | None = None, collateral: Collateral | None = None
                    ) -> tuple[Scheme, Any, Verified, Finding]:
        """Parse and verify one evidence, no policy: the scheme, the parsed evidence, the
        verified form and the binding check (``<scheme>.binding.mismatch``: pass, fail, or
        skip without a challenge). Raises like :meth:`verify`, except that a binding mismatch
        is returned as the failed finding for the caller to act on."""
        ctx = self.context(now=now, collateral=collateral)
        part = evidence if isinstance(evidence, EvidencePart) else EvidencePart(bytes(evidence))
        scheme = _resolve(part)
        parsed = scheme.parse(part.data, attached=part.attached)
        verified = scheme.verify(parsed, ctx)
        return scheme, parsed, verified, _binding_check(scheme, verified, challenge,
                                                        expected_binding)

    @staticmethod
    def check_binding(scheme: Scheme, verified: Verified, *, challenge: Challenge | None = None,
                      expected_binding: bytes | None = None) -> Finding:
        """The front door's binding check on verified evidence: ``<scheme>.binding.mismatch``
        passes when the evidence carries the challenge's binding (or ``expected_binding``),
        fails when it does not, is skipped when neither is given."""
        return _binding_check(scheme, verified, challenge, expected_binding)

    @staticmethod
    def appraise_verified(scheme: Scheme, verified: Verified, binding: Finding,
                          policy: Any) -> Appraisal:
        """The appraisal half of :meth:`appraise`, for one evidence that :meth:`verify_only`
        verified: ``verified`` under ``policy`` (as :meth:`appraise` takes it), with the
        binding check ``binding`` first among the findings and the ``instance-identity``
        it gives. A caller may verify first and read its policies later (the service does,
        in the transaction that records the result)."""
        return _appraised(scheme, verified, binding, _policy_for(scheme, policy))

    def _one(self, part: EvidencePart, ctx: Context, policy: Any,
             challenge: Challenge | None, expected: bytes | None) -> Appraisal:
        scheme = _resolve(part)
        chosen = _policy_for(scheme, policy)
        parsed = scheme.parse(part.data, attached=part.attached)
        verified = scheme.verify(parsed, ctx)
        return _appraised(scheme, verified, _binding_check(scheme, verified, challenge,
                                                           expected), chosen)


def _appraised(scheme: Scheme, verified: Verified, check: Finding, chosen: Any) -> Appraisal:
    appraisal = scheme.appraise(verified, chosen)
    findings = (check, *appraisal.findings)
    vector = appraisal.vector
    if vector is not None:
        from veritee.results import identity_from_findings

        vector = {**vector, "instance-identity": identity_from_findings(appraisal.tee,
                                                                        findings)}
    return appraisal.evolve(findings=findings, vector=vector)


def _resolve(part: EvidencePart) -> Scheme:
    from veritee.schemes import get, recognise

    if part.scheme is None:
        return recognise(part.data)
    return get(part.scheme) if isinstance(part.scheme, str) else part.scheme


def _binding_check(scheme: Scheme, verified: Verified, challenge: Challenge | None,
                   expected: bytes | None) -> Finding:
    """The front door's binding check: the evidence carries the verifier's challenge."""
    from veritee.schemes import expected_binding

    if challenge is not None:
        if expected is not None:
            raise ConfigError("give challenge or expected_binding, not both")
        expected = expected_binding(challenge.nonce, challenge.key_spki, scheme.binding_size)
    code = f"{scheme.name}.binding.mismatch"
    if expected is None:
        return Finding(code, Outcome.SKIP, "binding", message="no challenge given: "
                       "freshness and key binding not checked")
    got = scheme.binding(verified)
    ok = hmac.compare_digest(got, expected)
    return Finding(code, Outcome.PASS if ok else Outcome.FAIL, "binding", got=got,
                   want=expected, message="" if ok else "the evidence does not carry "
                   "the verifier's challenge")


def _policy_for(scheme: Scheme, policy: Any) -> Any:
    from veritee.errors import ConfigError

    if policy is UNSAFE_DEFAULT_POLICIES:
        return scheme.default_policy()
    if isinstance(policy, Mapping):
        if scheme.name not in policy:
            raise ConfigError(f"policy: no policy for scheme {scheme.name!r} (policies are "
                              f"given for {', '.join(sorted(map(str, policy)))})")
        policy = policy[scheme.name]
    if not isinstance(policy, scheme.policy_type):
        raise ConfigError(f"policy: got a {type(policy).__name__}, want a "
                          f"{scheme.policy_type.__name__} for {scheme.name} evidence")
    return policy


def verify(evidence: bytes | EvidencePart | Sequence[EvidencePart], *, policy: Any,
           collateral: Collateral | None = None, anchors: Anchors | None = None,
           now: datetime | None = None, challenge: Challenge | None = None,
           expected_binding: bytes | None = None, require_revocation: bool = False,
           fetchers: Mapping[str, Any] | None = None) -> Appraisal | CompositeAppraisal:
    """Verify and appraise evidence of any registered scheme; see :meth:`Verifier.verify`.

    A one-shot :class:`Verifier`: a relying party that verifies repeatedly keeps one, so
    verified chains and collateral are cached between calls.
    """
    verifier = Verifier(anchors=anchors, collateral=collateral, fetchers=fetchers,
                        require_revocation=require_revocation)
    return verifier.verify(evidence, policy=policy, challenge=challenge,
                           expected_binding=expected_binding, now=now)
