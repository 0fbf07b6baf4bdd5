"""The broker: challenge -> attest -> release, and the admin operations, without HTTP.

Routes (:mod:`veritee.service.app`) only parse requests and call these methods; everything a
test or another transport needs is here. Every refusal raises :class:`Problem` *after* it
is in the audit log; every state change and its audit entry share one transaction.

Secret release uses JWE (RFC 7516) in compact form with ``alg = ECDH-ES`` (direct key
agreement, RFC 7518 section 4.6) and ``enc = A256GCM`` (RFC 7518 section 5.3), to the TEE's
ephemeral public key that the EAR's ``cnf.jwk`` carries (RFC 7800) and that REPORT_DATA bound
to the verifier's nonce. A stolen token is therefore useless: only the holder of that private
key, inside the attested TEE, can decrypt what is released with it. The protected header
names the resource, its version and the ``jti`` of the EAR it answers, and is authenticated
as JWE AAD. The JWE is then signed (JWS, RFC 7515) with the EAR signing key, because anyone
can encrypt to the public ``cnf`` key: see :meth:`Broker._seal_release`.

Every read of the trust state (policies, reference values, resources, admin tokens, signing
keys) is authenticated by the store (:mod:`veritee.service.integrity`); a row that fails is
an :class:`~veritee.service.integrity.IntegrityViolation`, raised loudly and never used.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pybase64
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.jwk import RSAKey

from veritee import __version__
from veritee import schemes as registry
from veritee._decode import b64url, b64url_bytes, b64url_canonical
from veritee._memo import built, remember
from veritee.attest import Challenge as BindingChallenge
from veritee.attest import EvidencePart, Verifier
from veritee.crypto.kbs_jwe import ec_public_key, encrypt_compact_ecdh_es
from veritee.errors import (
    CollateralError,
    ConfigError,
    FormatError,
    VerificationError,
    VeriteeError,
)
from veritee.findings import Finding, Outcome
from veritee.policy import Appraisal
from veritee.results import (
    EarKeys,
    EarResult,
    composite_ear_claims,
    ear_claims,
    tier,
    verify_ear,
)
from veritee.schemes import Anchors, Collateral, Scheme, Verified
from veritee.service._reqlog import current_request_id
from veritee.service.integrity import IntegrityViolation, StateIntegrity
from veritee.service.keys import MasterKey, SigningKey, rotate_signing_key
from veritee.service.observability import Metrics, fingerprint, log_event
from veritee.service.problems import (
    AttestationRejected,
    Forbidden,
    InvalidRequest,
    NonceRejected,
    NotFound,
    Problem,
    ResourceRefused,
    Unauthenticated,
    problem_for,
)
from veritee.service.resource_policy import ResourcePolicy
from veritee.service.settings import Settings
from veritee.service.storage import NonceState, Store, Tx

__all__ = ["MAX_NAME", "MAX_PATH", "RELEASE_TYP", "AttestOutcome", "Broker", "Challenge",
           "checked_text", "create_admin_token", "hash_token"]

NONCE_BYTES = 32
_POLICY_CACHE = 256  # built appraisal policies kept (per scheme and document)
_ATTACHED_CACHE = 64  # decoded attachments kept (one certificate table per chip) ...
_ATTACHED_MAX = 16 * 1024  # ... of at most this many characters (a table is ~5 KB)
RELEASE_TYP = "veritee-release+jws"
_ROLES = ("admin", "reader")
_EC_CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}


_SPKI_PREFIX: dict[str, bytes] = {}


def _spki(key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey, cnf: Mapping[str, Any]) -> bytes:
    """SubjectPublicKeyInfo DER of ``key`` (whose JWK is ``cnf``). For EC keys (RFC 5480)
    everything before the uncompressed point is fixed per curve, learnt once per curve from
    ``cryptography``; the point is the JWK's coordinates (serialising it costs as much as
    validating it)."""
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    point = b"\x04" + b64url_canonical(str(cnf["x"])) + b64url_canonical(str(cnf["y"]))
    prefix = _SPKI_PREFIX.get(key.curve.name)
    if prefix is None:
        der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        prefix = _SPKI_PREFIX[key.curve.name] = der[:-len(point)]
    return prefix + point


def _ec_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 thumbprint of an EC public JWK: SHA-256 over its required members
    (crv, kty, x, y; section 3.2) in lexicographic order, no whitespace."""
    crv, kty, x, y = jwk["crv"], jwk["kty"], jwk["x"], jwk["y"]
    if kty != "EC" or not (isinstance(crv, str) and isinstance(x, str) and isinstance(y, str)):
        raise ValueError("not an EC public JWK")
    return _thumbprint_of(crv, "EC", x, y)


@functools.lru_cache(maxsize=256)
def _thumbprint_of(crv: str, kty: str, x: str, y: str) -> str:
    # By the exact member texts: attest and release compute the same key's thumbprint. The
    # members in sorted order, each value as json.dumps writes a string (ASCII escapes).
    text = (f'{{"crv":{encode_basestring_ascii(crv)},"kty":{encode_basestring_ascii(kty)},'
            f'"x":{encode_basestring_ascii(x)},"y":{encode_basestring_ascii(y)}}}')
    return b64url(hashlib.sha256(text.encode()).digest())


# alg -> (the ECDSA signature algorithm, the size of R and S): RFC 7518 section 3.4.
_JWS_ECDSA = {"ES256": (ec.ECDSA(hashes.SHA256()), 32), "ES384": (ec.ECDSA(hashes.SHA384()), 48)}


def _json_bytes(value: Any) -> bytes:
    """Compact JSON of ``value`` (orjson: the EAR is ~6 KB and encoded on every attestation);
    what orjson will not encode (an integer past 64 bits, a lone surrogate) goes through
    ``json``, whose output is the same JSON document."""
    try:
        return orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, separators=(",", ":")).encode()


def _jws_compact(key: SigningKey, header: Mapping[str, Any], payload: bytes) -> str:
    """A compact JWS (RFC 7515 section 7.1) signed with ``key``: ECDSA as RFC 7518 section
    3.4 has it (the signature is R || S, each the curve's size, not DER). Built here because
    joserfc's generic path cost more than the signature; joserfc verifies it (tests)."""
    algorithm, size = _JWS_ECDSA[key.alg]
    signing_input = b64url_bytes(orjson.dumps(dict(header))) + b"." + b64url_bytes(payload)
    r, s = decode_dss_signature(key.private_key.sign(signing_input, algorithm))
    return (signing_input + b"." + b64url_bytes(r.to_bytes(size, "big")
                                                  + s.to_bytes(size, "big"))).decode("ascii")


def _unb64(text: object, field: str, *, url: bool = False) -> bytes:
    if not isinstance(text, str):
        raise InvalidRequest(f"{field}: got {type(text).__name__}, want a "
                             "base64 string")
    try:
        if url:
            # base64url, padded or not (RFC 4648 section 5): any other character, padding
            # that does not end a quad, or non-zero trailing bits are refused, not skipped.
            body = text.rstrip("=")
            if body != text and (len(text) % 4 or len(text) - len(body) > 2):
                raise ValueError("misplaced padding")
            return b64url_canonical(body)
        return pybase64.b64decode(text, validate=True)
    except ValueError:
        want = "base64url" if url else "base64"
        raise InvalidRequest(f"{field}: not valid {want}") from None


MAX_PATH = 1024  # resource paths
MAX_NAME = 128  # policy ids, reference-value names, token ids and names


_CONTROL_OR_SURROGATE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def checked_text(value: object, field: str, max_len: int = MAX_NAME) -> str:
    """``value`` as a bounded, printable string, or a 400 Problem naming ``field``.

    NUL, other control characters and lone surrogates are refused here: PostgreSQL cannot
    store NUL and no encoder takes a lone surrogate, so they would surface as a 500.
    """
    if not isinstance(value, str):
        raise InvalidRequest(f"{field}: got {type(value).__name__}, want a "
                             "string")
    if not 1 <= len(value) <= max_len:
        raise InvalidRequest(f"{field}: want 1..{max_len} characters, got "
                             f"{len(value)}")
    if _CONTROL_OR_SURROGATE.search(value):
        raise InvalidRequest(f"{field}: control characters, NUL and lone "
                             "surrogates are not allowed")
    return value


def hash_token(token: str) -> str:
    """SHA-256 hex of an admin bearer token.

    A fast hash is enough: tokens are 256 random bits, so there is no dictionary to search;
    a slow password hash would only slow down every admin request.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def _traced(detail: dict[str, Any]) -> dict[str, Any]:
    """``detail`` plus the HTTP request id (when serving one), so an audit entry can be
    matched to its access-log line."""
    rid = current_request_id()
    return {**detail, "request_id": rid} if rid else detail


def create_admin_token(store: Store, name: str, role: str, *, actor: str = "cli",
                       now: float | None = None) -> tuple[str, str]:
    """Create an admin token; return ``(token_id, token)``. The token is shown only once."""
    if role not in _ROLES:
        raise ConfigError(f"role: got {role!r}, want admin or reader")
    try:
        name = checked_text(name, "name", 100)
    except Problem as problem:
        raise ConfigError(problem.detail) from None
    now = time.time() if now is None else now
    token_id = secrets.token_hex(8)
    token = "vt_" + secrets.token_urlsafe(32)
    with store.transaction() as tx:
        tx.token_add(token_id, name, hash_token(token), role, now)
        tx.audit_append("admin.token.create", "ok", token_id,
                        _traced({"actor": actor, "name": name, "role": role}), _iso(now))
    return token_id, token


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")


# -- schemes, per-scheme settings and documents ----------------------------------------------
LEGACY_SCHEME = "sevsnp"
"""The scheme of stored documents written before policies named one (policy documents without
``scheme``, reference values of kind ``measurement``, ``host_data=``): they were SEV-SNP's."""

MAX_ADDITIONAL = 15  # devices beside the primary attester (an EAR carries at most 16 submods)

# Settings that feed one vendor's anchors / collateral (read once at start).
_COLLATERAL_SETTINGS = {"amd": "amd_crl_dir", "intel": "intel_collateral_dir"}
# Settings that shape one scheme's default policy (a stored policy document says it all).
_SETTING_OVERRIDES: dict[str, dict[str, str]] = {
    "tdx": {"allowed_tcb_statuses": "tdx_allowed_tcb_statuses"}}


def scheme_named(name: str) -> Scheme:
    """The registered scheme ``name``; ConfigError listing the known ones otherwise."""
    return registry.get(name)


def known_schemes() -> list[str]:
    """Every scheme the service accepts evidence of: the registry's."""
    return list(registry.names())


def doc_scheme(doc: Mapping[str, Any]) -> str:
    """The scheme a stored appraisal-policy document is for."""
    return str(doc.get("scheme", LEGACY_SCHEME))


def ref_scheme(kind: str) -> str:
    """The scheme of a stored reference value (kind ``<scheme>:measurement``)."""
    scheme, sep, _ = kind.rpartition(":")
    return scheme if sep else LEGACY_SCHEME


# The policy key of the allowed ``measurement`` claim values, for schemes that do not (yet)
# declare it as ``reference_key`` (their policy classes name it after the TEE's field).
_REFERENCE_KEYS = {"tdx": "mrtd", "sgx": "mrenclave"}


def reference_key(scheme: Scheme) -> str:
    """The policy key holding the allowed values of the ``measurement`` claim: the scheme's
    ``reference_key`` when it names one, else the known one, else ``measurements``."""
    return str(getattr(scheme, "reference_key", None)
               or _REFERENCE_KEYS.get(scheme.name, "measurements"))


def found_vendors(appraisals: Sequence[Appraisal]) -> list[str]:
    """The vendors of the schemes ``appraisals`` came from."""
    return [str(scheme_named(a.tee).vendor) for a in appraisals]


def _unchecked_revocation(appraisal: Appraisal) -> Appraisal:
    """A skipped revocation check (``*.revocation*``, allowed only when ``require_crl`` is
    off) leaves the hardware claim unaffirmed: AR4SI "no claim" (issue 18)."""
    vector = appraisal.vector
    if vector is None or tier(vector.get("hardware", 0)) != "affirming":
        return appraisal
    skip = Outcome.SKIP
    for findings in (appraisal.verification, appraisal.findings):
        for f in findings:  # plain loops: this runs on every attestation
            if f.outcome is skip and ".revocation" in f.code:
                return appraisal.evolve(vector={**vector, "hardware": 0})
    return appraisal


def _anchors(settings: Settings, amd: Any) -> Anchors:
    """Anchors per vendor: ``amd`` (create_app's, from ``trust_roots``) and Intel's pin plus
    ``intel_trust_roots`` (dev_mode); ``None`` leaves a vendor on its production pins."""
    base = amd if isinstance(amd, Anchors) else Anchors({"amd": amd} if amd is not None else {})
    if settings.intel_trust_roots and base.get("intel") is None:
        paths = [Path(p) for p in settings.intel_trust_roots]
        intel: Any = scheme_named("tdx")  # load_anchors: an optional Scheme method
        try:
            roots = intel.load_anchors(paths, keep_production=True)
        except (ConfigError, FormatError) as exc:
            raise ConfigError(f"intel_trust_roots: {exc}") from None
        base = base.with_vendor("intel", roots)
    return base


def _collateral(settings: Settings, given: Collateral | None) -> Collateral:
    """Collateral per vendor from the directories the settings name, loaded by a scheme of
    that vendor (``Scheme.load_collateral``); ``given`` entries win."""
    by_vendor = dict(given.by_vendor) if given is not None else {}
    for vendor, setting in _COLLATERAL_SETTINGS.items():
        path = getattr(settings, setting)
        if path is None or vendor in by_vendor:
            continue
        loader = next((s for s in (scheme_named(n) for n in known_schemes())
                       if s.vendor == vendor), None)
        loaded = loader.load_collateral([Path(path)]) if loader is not None else None
        if loaded is None:
            raise ConfigError(f"{setting}: {path}: no {vendor} collateral there")
        by_vendor[vendor] = loaded
    return Collateral(by_vendor)


def _fetchers(settings: Settings, clock: Callable[[], float]) -> dict[str, Any]:
    """AMD's KDS (CRLs, and VCEKs a report arrives without), cached, when ``amd_kds``."""
    if not settings.amd_kds:
        return {}
    cache = Path(settings.amd_kds_cache_dir) if settings.amd_kds_cache_dir else None
    amd: Any = scheme_named("sevsnp")  # new_fetcher: an optional Scheme method
    return {"amd": amd.new_fetcher(
        url=settings.amd_kds_url, cache_dir=cache,
        clock=lambda: datetime.fromtimestamp(clock(), UTC))}


def public_key_from_jwk(jwk: object, *, rsa_keys: bool = False
                        ) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The TEE's ephemeral key from its JWK: EC P-256/P-384/P-521 public keys (and, for the
    KBS front's ``rsa_keys``, RSA keys of 2048 to 8192 bits)."""
    if not isinstance(jwk, dict):
        raise InvalidRequest("runtime_data.key: want a JWK object")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if rsa_keys and kty == "RSA":
        from veritee.crypto.kbs_jwe import rsa_public_key

        try:
            return rsa_public_key(jwk)
        except FormatError as exc:
            raise InvalidRequest(f"tee-pubkey: {exc}") from None
    if kty != "EC" or not isinstance(crv, str) or crv not in _EC_CURVES:
        raise InvalidRequest(f"runtime_data.key: got kty={str(kty)[:20]!r} "
                             f"crv={str(crv)[:20]!r}, want an EC key on P-256, P-384 or P-521 "
                             "(ECDH-ES needs one)")
    if "d" in jwk:
        raise InvalidRequest("runtime_data.key: contains a private key (d); "
                             "send only the public key")
    try:
        # RFC 7518 6.2.1: each coordinate the field's size, the point on the curve. Read
        # with the release's own reader, which keeps the key for the release to use.
        return ec_public_key(jwk)
    except FormatError:
        raise InvalidRequest("runtime_data.key: not a valid EC public key") from None


@dataclass(frozen=True)
class Challenge:
    """A single-use nonce and when it expires (epoch seconds)."""

    nonce: bytes
    expires_at: float


@dataclass(frozen=True)
class _VerifiedPart:
    """One evidence part verified (:meth:`Broker.verify_parts`), not appraised yet."""

    scheme: Scheme
    verified: Verified
    binding: Finding
    revocation_optional: bool


@dataclass(frozen=True)
class AttestOutcome:
    """An accepted attestation: the signed EAR and its decoded form."""

    token: str
    result: EarResult


_K = TypeVar("_K")
_V = TypeVar("_V")


def _built(table: dict[_K, _V], key: _K, build: Callable[[], _V]) -> _V:
    """``table[key]``, built on first use (bounded: :func:`veritee._memo.built`)."""
    return built(table, key, build, _POLICY_CACHE)


def _nonce_problem(state: str) -> NonceRejected:
    return NonceRejected(f"nonce.{state}", f"runtime_data.nonce: {state} (request a fresh "
                         "challenge from POST /v1/challenge)")


def _per_part_bindings(expected: bytes | Sequence[bytes] | None,
                       count: int) -> list[bytes | None]:
    """One raw expected binding per part: ``expected`` is None (the challenge binds every
    part), one value (one part only) or one value per part; InvalidRequest otherwise."""
    if expected is None:
        return [None] * count
    if isinstance(expected, bytes | bytearray | memoryview):
        if count != 1:
            raise InvalidRequest(f"binding: one raw value for {count} attesters; this front "
                                 "must give one per attester")
        return [bytes(expected)]
    values = list(expected)
    if len(values) != count or not all(isinstance(v, bytes) for v in values):
        raise InvalidRequest(f"binding: got {len(values)} raw values for {count} attesters, "
                             "want one (bytes) per attester")
    return list(values)


class Broker:
    """Verifier and key broker over a :class:`Store`. Thread-safe."""

    def __init__(self, *, settings: Settings, store: Store, master: MasterKey,
                 signing_key: SigningKey, anchors: Any = None,
                 clock: Callable[[], float] = time.time, metrics: Metrics | None = None,
                 collateral: Collateral | None = None) -> None:
        self.settings = settings
        self.store = store
        self.master = master
        self.signing_key = signing_key
        self.clock = clock
        self.metrics = metrics or Metrics()
        self._jwks_lock = threading.Lock()
        # Appraisal policies built from their documents (see _appraisal_policy).
        self._policies: dict[tuple[Any, ...], Any] = {}
        self._docs: dict[str, dict[str, Any]] = {}
        self._attached: dict[str, bytes] = {}
        self._resource_policies: dict[str, ResourcePolicy] = {}
        self._default_mappings: dict[str, dict[str, Any]] = {}
        # The policies built under the database's current appraisal generation, by (scheme,
        # pins): see _appraisal_policy.
        self._current_policies: tuple[int | None, dict[tuple[str, bytes], Any]] = (None, {})
        self._jwks_loaded = 0.0
        self._jwks_due = 0.0
        self._jwks: dict[str, Any] = self._load_jwks()
        # Imported once (joserfc key imports cost as much as the signatures they serve):
        # the JWKS imported for verify_ear, rebuilt when the JWKS is.
        self._key_set = EarKeys.from_jwks(self._jwks)
        # One verifier for every scheme: anchors and collateral per vendor from the settings
        # (read once: a bad directory is a ConfigError at start), caches, the KDS fetcher.
        self.verifier = Verifier(
            anchors=_anchors(settings, anchors),
            collateral=_collateral(settings, collateral),
            fetchers=_fetchers(settings, clock), require_revocation=settings.require_crl,
            clock=lambda: datetime.fromtimestamp(self.clock(), UTC))
        # The schemes whose revocation the settings make optional use a twin that does not
        # require it (same anchors, collateral, fetchers and caches).
        self._lenient = Verifier(anchors=self.verifier.anchors,
                                 collateral=self.verifier.collateral,
                                 fetchers=self.verifier.fetchers, require_revocation=False,
                                 clock=self.verifier.clock)
        self._lenient.caches = self.verifier.caches

    @property
    def anchors(self) -> Anchors:
        """The trust anchors per vendor."""
        return self.verifier.anchors

    # -- keys -------------------------------------------------------------------------------
    _JWKS_REFRESH = 60.0  # seconds: another replica's new key is published within a minute

    def _load_jwks(self) -> dict[str, Any]:
        """The JWKS from *authenticated* signing-key rows only; a refused row raises alarms."""
        now = self.clock()
        with self.store.transaction(write=False) as tx:
            # A retired key stays published for one EAR lifetime after retirement.
            due: list[float] = []
            keys, refused = tx.signing_keys_public(now=now, grace=self.settings.token_ttl,
                                                   until=due)
        for kid in refused:
            self.integrity_violation(IntegrityViolation("signing_keys", kid))
        self._jwks_loaded = time.monotonic()
        # Reload by the next refresh, or as soon as a retired key's grace is over.
        self._jwks_due = min([now + self._JWKS_REFRESH, *due])
        return {"keys": keys}

    def jwks(self) -> dict[str, Any]:
        """The JWK Set relying parties verify EAR tokens with (passport model).

        Refreshed on a timer, never because a token failed to verify: a failing token must
        not be able to make the service re-read (and trust) what the database holds now.
        """
        with self._jwks_lock:
            # Either clock: the service's (injectable) clock decides when a retired key's
            # grace is over, the monotonic one guards against wall-clock steps back.
            if (time.monotonic() - self._jwks_loaded > self._JWKS_REFRESH
                    or self.clock() > self._jwks_due):
                self._reload_jwks()
            return {"keys": list(self._jwks["keys"])}

    def _reload_jwks(self) -> None:
        """Reload the JWKS and its imported keys together (callers hold the lock)."""
        self._jwks = self._load_jwks()
        self._key_set = EarKeys.from_jwks(self._jwks)

    def _verification_keys(self) -> EarKeys:
        """:meth:`jwks` imported for :func:`verify_ear`, refreshed on the same timer."""
        with self._jwks_lock:
            if (time.monotonic() - self._jwks_loaded > self._JWKS_REFRESH
                    or self.clock() > self._jwks_due):
                self._reload_jwks()
            return self._key_set

    def rotate_signing_key(self, actor: str) -> dict[str, Any]:
        """Make a fresh EAR signing key current; the old one is retired (still published).

        Returns ``{kid, retired, retired_until}``: the old key leaves the JWKS once every
        token it signed has expired (``retired_at + token_ttl``). Other replicas pick the
        new key up only on restart (they keep signing with their key, which stays valid).
        """
        now = self.clock()
        new, old = rotate_signing_key(self.store, self.master, alg=self.signing_key.alg,
                                      now=now, actor=actor, request_id=current_request_id())
        with self._jwks_lock:
            self.signing_key = new
            self._reload_jwks()
        log_event("admin.signing_key.rotate", actor=actor, kid=new.kid, retired=old)
        return {"kid": new.kid, "retired": old,
                "retired_until": _iso(now + self.settings.token_ttl) if old else None}

    def integrity_violation(self, exc: IntegrityViolation) -> None:
        """Raise the alarm for a refused row: metric, error log, and (if it can) an audit entry.

        The audit append may itself fail (a forged audit head); the metric and the log
        still record it.
        """
        self.metrics.count(self.metrics.integrity, exc.table)
        log_event("state.integrity", logging.ERROR, table=exc.table, key=exc.key)
        if exc.table == "audit_log":
            return
        try:
            self._audit("integrity", "refused", f"{exc.table}:{exc.key}"[:200],
                        {"code": IntegrityViolation.code, "table": exc.table})
        except Exception as again:
            log_event("state.integrity.audit_failed", logging.ERROR,
                      error=type(again).__name__)

    # -- challenge --------------------------------------------------------------------------
    def challenge(self) -> Challenge:
        """Issue a fresh single-use nonce (valid for ``nonce_ttl``), without a database write.

        ``nonce = expiry (ms, 6 bytes) || random (10 bytes) || tag (16 bytes)``, the tag an
        HMAC under a key derived from the data key (:meth:`StateIntegrity.challenge_tag`):
        any replica can tell the service's own unexpired nonces from others, so only their
        *use* is recorded (:meth:`Tx.nonce_consume`, once per nonce, in the transaction that
        records the attempt's result).
        """
        now = self.clock()
        expires_ms = math.ceil((now + self.settings.nonce_ttl) * 1000)
        body = expires_ms.to_bytes(6, "big") + os.urandom(NONCE_BYTES - 22)
        nonce = body + self._integrity().challenge_tag(body)
        self.metrics.challenges.inc()
        return Challenge(nonce=nonce, expires_at=expires_ms / 1000)

    def _integrity(self) -> StateIntegrity:
        integrity = self.store.integrity
        if integrity is None:
            raise ConfigError("the broker's store has no data key (open it through create_app)")
        return integrity

    def nonce_state(self, nonce: bytes, when: float) -> tuple[str, float]:
        """``(state, expires_at)`` of ``nonce`` from its own bytes at ``when``: ``unknown``
        unless this service's tag authenticates it, ``expired`` once its expiry passed, else
        ``ok`` (whether it was used is the database's to say: :meth:`consume_nonce`)."""
        if len(nonce) != NONCE_BYTES:
            return NonceState.UNKNOWN, 0.0
        body, tag = nonce[:16], nonce[16:]
        if not hmac.compare_digest(tag, self._integrity().challenge_tag(body)):
            return NonceState.UNKNOWN, 0.0
        expires = int.from_bytes(body[:6], "big") / 1000
        return (NonceState.EXPIRED if when >= expires else NonceState.OK), expires

    def consume_nonce(self, tx: Tx, nonce: bytes, when: float,
                      expires: float | None = None) -> str:
        """Use ``nonce`` up in ``tx``: its :class:`NonceState` (``ok`` exactly once).
        ``expires``: the caller already found the nonce ``ok`` at ``when`` (its tag checked,
        this its expiry), so it is not checked again."""
        if expires is None:
            state, expires = self.nonce_state(nonce, when)
            if state != NonceState.OK:
                return state
        found = tx.nonce_consume(hashlib.sha256(nonce).hexdigest(), when, expires)
        # Housekeeping, ~1% of the time: a row is needed only until its nonce expires (the
        # hour's margin covers replicas whose clocks disagree).
        if secrets.randbelow(100) == 0:
            tx.nonce_purge(when - 3600)
        return found

    # -- attestation ------------------------------------------------------------------------
    def _audit(self, event: str, outcome: str, subject: str, detail: dict[str, Any],
               tx: Tx | None = None) -> None:
        at = _iso(self.clock())
        if tx is not None:
            tx.audit_append(event, outcome, subject, _traced(detail), at)
            return
        with self.store.transaction() as own:
            own.audit_append(event, outcome, subject, _traced(detail), at)

    def _refuse_attest(self, problem: Problem, subject: str, detail: dict[str, Any],
                       tx: Tx | None = None, *,
                       burn: tuple[bytes, float, float] | None = None) -> Problem:
        """Audit a refused attestation (in ``tx``, else in a transaction of its own) and
        return the problem to raise. ``burn = (nonce, when, expires)`` (a nonce found ``ok``)
        uses the nonce up in the same transaction; one that another attempt used first is
        the refusal then."""
        if tx is None:
            with self.store.transaction() as own:
                return self._refuse_attest(problem, subject, detail, own, burn=burn)
        if burn is not None and self.consume_nonce(tx, *burn) == NonceState.USED:
            problem = _nonce_problem(NonceState.USED)
        self._audit("attestation", "refused", subject, {**detail, "code": problem.code}, tx)
        self.metrics.count(self.metrics.attestations, "refused")
        log_event("attestation.refused", code=problem.code, subject=subject)
        return problem

    # -- per-scheme policies ----------------------------------------------------------------
    def _load_policies(self, tx: Tx, found: Sequence[Scheme],
                       overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """The appraisal policy of each scheme in ``found``, read in ``tx``."""
        return {s.name: self._appraisal_policy(tx, s.name, overrides.get(s.name))
                for s in found}

    def _policy_doc(self, tx: Tx, scheme: str) -> tuple[str, str | None, dict[str, Any] | None]:
        """The id of the appraisal policy for ``scheme``, its stored text and document (or
        None, None: the scheme's default policy under that id). See
        :mod:`veritee.service.settings`. Each stored text is parsed once."""
        configured = self.settings.appraisal_policies.get(scheme)
        pid = self.settings.appraisal_policy_id
        alt = f"{scheme}-{pid}"
        texts = tx.policy_texts((configured,) if configured is not None else (pid, alt))

        def read(pid: str) -> tuple[str | None, dict[str, Any] | None]:
            text = texts.get(pid)
            if text is None:
                return None, None
            return text, _built(self._docs, text, lambda: dict(json.loads(text)))

        if configured is not None:
            text, doc = read(configured)
            if doc is not None and doc_scheme(doc) != scheme:
                raise ConfigError(f"appraisal_policies.{scheme}: policy {configured!r} is for "
                                  f"{doc_scheme(doc)} evidence")
            return configured, text, doc
        text, doc = read(pid)
        if doc is not None and doc_scheme(doc) == scheme:
            return pid, text, doc
        text, doc = read(alt)
        if doc is not None and doc_scheme(doc) == scheme:
            return alt, text, doc
        return (pid if scheme == LEGACY_SCHEME else alt), None, None

    def _appraisal_policy(self, tx: Tx, scheme: str = LEGACY_SCHEME,
                          overrides: Mapping[str, Any] | None = None) -> Any:
        """The appraisal policy for ``scheme``: its stored (or default) policy, the settings
        that shape it, plus the scheme's stored reference values; ``overrides`` (a front's
        init-data pins) replace policy keys. Built once per distinct input (the stored
        policy's text, the reference values, the pins): a policy is immutable.

        The rows are read (and their MACs checked) only when the database's appraisal
        generation (:meth:`Tx.appraisal_generation`) differs from the one they were read
        under: every write to those rows moves it (database triggers), so one row per
        attestation tells whether they still stand, however many reference values there
        are. The generation is not authenticated and need not be: a writer without the key
        who changes rows but not the generation changes nothing this service uses (it keeps
        the policy built from authenticated rows), and one who moves it has the rows read
        and refused (:class:`IntegrityViolation`).
        """
        try:
            pins = orjson.dumps(overrides, option=orjson.OPT_SORT_KEYS) if overrides else b""
        except TypeError:  # not JSON-shaped: built every time, never kept
            return self._read_policy(tx, scheme, overrides, None)
        # Read before the rows: a change committed between the two reads is then seen again
        # at the next attestation, never kept under the generation it followed.
        generation = tx.appraisal_generation()
        current = self._current_policies
        if generation is not None and current[0] == generation:
            kept = current[1].get((scheme, pins))
            if kept is not None:
                return kept
        policy = self._read_policy(tx, scheme, overrides, pins)
        if generation is not None:
            if current[0] != generation:
                current = self._current_policies = (generation, {})
            remember(current[1], (scheme, pins), policy, _POLICY_CACHE)
        return policy

    def _read_policy(self, tx: Tx, scheme: str, overrides: Mapping[str, Any] | None,
                     pins: bytes | None) -> Any:
        """:meth:`_appraisal_policy` from the rows themselves (authenticated as read); built
        once per distinct input unless ``pins`` is None (overrides not JSON-shaped)."""
        found = scheme_named(scheme)
        pid, text, doc = self._policy_doc(tx, scheme)
        refs = tuple(sorted({v for _, kind, v in tx.reference_list()
                             if ref_scheme(kind) == scheme}))

        def build() -> Any:
            return found.policy_from_mapping(self._policy_mapping(found, pid, doc, refs,
                                                                  overrides))
        if pins is None:
            return build()
        return _built(self._policies, (scheme, pid, text, refs, pins), build)

    def _policy_mapping(self, found: Scheme, pid: str, doc: dict[str, Any] | None,
                        refs: tuple[str, ...], overrides: Mapping[str, Any] | None
                        ) -> dict[str, Any]:
        """The policy document :meth:`_appraisal_policy` builds from."""
        scheme = found.name
        if doc is None:
            default = self._default_mappings.get(scheme)
            if default is None:
                default = self._default_mappings[scheme] = found.policy_to_mapping(
                    found.default_policy())
            mapping = dict(default)
            mapping["policy_id"] = pid
            for key, setting in _SETTING_OVERRIDES.get(scheme, {}).items():
                value = getattr(self.settings, setting)
                mapping[key] = list(value) if isinstance(value, tuple) else value
        else:
            mapping = {k: v for k, v in doc.items() if k != "scheme"}
        if refs:
            # Reference values extend the policy's own allow-list of measurements.
            key = reference_key(found)
            mapping[key] = sorted(set(refs) | set(mapping.get(key) or ()))
        optional = scheme in self.settings.revocation_optional
        if (optional or not self.settings.require_crl) and \
                "allow_unchecked_revocation" in mapping:
            # No CRL source is required (dev_mode): the trace records revocation as skipped
            # and the vector makes no hardware claim (_unchecked_revocation).
            mapping["allow_unchecked_revocation"] = True
        mapping.update(overrides or {})
        return mapping

    # -- attestation ------------------------------------------------------------------------
    def _part(self, evidence_b64: object, attached_b64: object, scheme: object,
              field: str) -> EvidencePart:
        data = _unb64(evidence_b64, f"{field}.evidence" if field else "evidence")
        attached = None
        if attached_b64 is not None:
            # What an attester attaches (its chip's certificate table) is the same text on
            # every attestation: decoded once per text (a refused text is refused each time).
            name = f"{field}.attached" if field else "attached"
            attached = (self._attached.get(attached_b64) if isinstance(attached_b64, str)
                        else None)
            if attached is None:
                attached = _unb64(attached_b64, name)
                assert isinstance(attached_b64, str)  # _unb64 refused anything else
                if len(attached_b64) <= _ATTACHED_MAX:
                    remember(self._attached, attached_b64, attached, _ATTACHED_CACHE)
        if scheme is not None:
            scheme = checked_text(scheme, f"{field}.scheme" if field else "scheme")
        return EvidencePart(data, scheme if isinstance(scheme, str) else None, attached)

    def _scheme_of(self, part: EvidencePart) -> Scheme:
        """The scheme of ``part``: named (or given as a configured scheme object), or
        recognised from its bytes by the registry."""
        if isinstance(part.scheme, str):
            return registry.get(part.scheme)
        return part.scheme if part.scheme is not None else registry.recognise(part.data)

    def verify_parts(self, parts: Sequence[EvidencePart], *,
                     challenge: BindingChallenge | None = None,
                     expected_binding: bytes | Sequence[bytes] | None = None,
                     now: datetime) -> list[_VerifiedPart]:
        """Verify every part at ``now`` (signatures, chains, revocation), each bound to
        ``challenge`` or to another front's raw ``expected_binding``: one value (one part
        only) or a sequence with one value per part, in order (each part checked against its
        own: the KBS protocol binds a device to a different hash than its CPU TEE). Raise on
        what cannot be verified; no policy is read yet (:meth:`appraise_verified`)."""
        bindings = _per_part_bindings(expected_binding, len(parts))
        out = []
        for given, bound in zip(parts, bindings, strict=True):
            scheme = self._scheme_of(given)
            optional = scheme.name in self.settings.revocation_optional
            verifier = self._lenient if optional else self.verifier
            _, _, verified, check = verifier.verify_only(
                EvidencePart(given.data, scheme, given.attached), challenge=challenge,
                expected_binding=bound, now=now)
            out.append(_VerifiedPart(scheme, verified, check, optional))
        return out

    def appraise_verified(self, tx: Tx, verified: Sequence[_VerifiedPart],
                          overrides: Mapping[str, Mapping[str, Any]]) -> list[Appraisal]:
        """Appraise every verified part under its scheme's policy, read in ``tx``; return
        every appraisal (accepted or not)."""
        policies = self._load_policies(tx, [v.scheme for v in verified], overrides)
        out = []
        for part in verified:
            result = Verifier.appraise_verified(part.scheme, part.verified, part.binding,
                                                policies)
            # A revocation check the settings made optional leaves the vector as it is.
            out.append(result if part.revocation_optional else _unchecked_revocation(result))
        return out

    def attest(self, evidence_b64: object, cert_table_b64: object, nonce_b64: object,
               key_jwk: object, *, binding: bytes | None = None,
               host_data: bytes | None = None, mrconfigid: bytes | None = None,
               front: str = "v1", scheme: object = None,
               additional: Sequence[Mapping[str, Any]] | None = None,
               policy_overrides: Mapping[str, Mapping[str, Any]] | None = None,
               rsa_keys: bool = False) -> AttestOutcome:
        """Verify evidence bound to a nonce and a TEE key; return a signed EAR or raise.

        ``evidence_b64`` is evidence of any registered scheme (``scheme`` names it, else it
        is recognised), ``cert_table_b64`` what its attester attached (an SEV-SNP
        certificate table, ...); ``additional`` more attesters' ``{evidence, scheme?,
        attached?}`` (GPUs), all bound to the same challenge: SHA-512(nonce || SPKI(key))
        where the TEE carries 64 bytes, SHA-256 where 32 (:func:`veritee.schemes.expected_binding`).
        One EAR results, a submodule per attester. ``binding`` replaces that rule with
        another front's raw value (the KBS protocol's; one attester only);
        ``policy_overrides`` maps a scheme to policy keys a front pins per request (init-data
        digests); ``host_data`` and ``mrconfigid`` are the older spellings of those
        overrides for SEV-SNP and TDX. ``front`` names the protocol in the audit entries;
        ``rsa_keys`` accepts an RSA TEE key (the KBS protocol's RSA-OAEP-256/RSA1_5 keys; /v1
        takes EC keys only).
        """
        parts = [self._part(evidence_b64, cert_table_b64, scheme, "")]
        extra = list(additional or [])
        if len(extra) > MAX_ADDITIONAL:
            raise InvalidRequest(f"additional_evidence: got {len(extra)} parts, want at most "
                                 f"{MAX_ADDITIONAL}")
        for i, item in enumerate(extra):
            if not isinstance(item, Mapping) or set(item) - {"evidence", "scheme", "attached"}:
                raise InvalidRequest(f"additional_evidence[{i}]: want {{evidence, scheme?, "
                                     "attached?}")
            parts.append(self._part(item.get("evidence"), item.get("attached"),
                                    item.get("scheme"), f"additional_evidence[{i}]"))
        overrides = {k: dict(v) for k, v in (policy_overrides or {}).items()}
        if host_data is not None:
            overrides.setdefault(LEGACY_SCHEME, {})["host_data"] = host_data.hex()
        if mrconfigid is not None:
            overrides.setdefault("tdx", {})["mrconfigid"] = [mrconfigid.hex()]
        nonce = _unb64(nonce_b64, "runtime_data.nonce", url=True)
        return self.attest_parts(parts, nonce, key_jwk, binding=binding, front=front,
                                 policy_overrides=overrides, rsa_keys=rsa_keys)

    def attest_parts(self, parts: Sequence[EvidencePart], nonce: bytes, key_jwk: object, *,
                     binding: bytes | Sequence[bytes] | None = None, front: str = "v1",
                     policy_overrides: Mapping[str, Mapping[str, Any]] | None = None,
                     rsa_keys: bool = False) -> AttestOutcome:
        """:meth:`attest` for decoded input: evidence parts (bytes, scheme name or None,
        attached bytes or None; the primary attester first), the raw nonce and the TEE key's
        JWK. What another front (the KBS protocol) calls once it has turned its own evidence
        shapes into parts; ``binding`` is then its raw expected binding, one value (one part)
        or one per part (see :meth:`verify_parts`)."""
        when = self.clock()  # read once: nonce expiry, verification time and the EAR's iat
        now = datetime.fromtimestamp(when, UTC)
        parts = list(parts)
        if not 1 <= len(parts) <= MAX_ADDITIONAL + 1:
            raise InvalidRequest(f"evidence: got {len(parts)} parts, want 1.."
                                 f"{MAX_ADDITIONAL + 1}")
        overrides = {k: dict(v) for k, v in (policy_overrides or {}).items()}
        key = public_key_from_jwk(key_jwk, rsa_keys=rsa_keys)
        if isinstance(key, rsa.RSAPublicKey):
            jwk = RSAKey.import_key(key)
            # An RSA key keeps the JWE algorithm it was sent for (RSA-OAEP-256 or RSA1_5).
            cnf = jwk.as_dict(private=False) | ({"alg": key_jwk["alg"]} if isinstance(
                key_jwk, dict) and isinstance(key_jwk.get("alg"), str) else {})
            thumb = jwk.thumbprint()
        else:
            # The JWK as read: ec_public_key accepted only full-size canonical coordinates,
            # so this text is the key's one JWK (what joserfc's as_dict writes).
            assert isinstance(key_jwk, dict)
            cnf = {"crv": key_jwk["crv"], "x": key_jwk["x"], "y": key_jwk["y"], "kty": "EC"}
            thumb = _ec_thumbprint(cnf)
        nonce_id = fingerprint(nonce)
        subject = f"key:{thumb[:16]}"
        base = {"nonce": nonce_id, "key_thumbprint": thumb,
                **({"front": front} if front != "v1" else {})}

        # 1. The nonce: this service's and unexpired (its own bytes say). Whatever happens
        #    after this, the attempt uses the nonce up in the one write transaction that
        #    records its result, where a nonce another attempt used first is refused: a nonce
        #    never serves two attempts, so a rejected guest cannot retry with the same
        #    challenge.
        state, expires = self.nonce_state(nonce, when)
        if state != NonceState.OK:
            raise self._refuse_attest(_nonce_problem(state), subject, base)
        burn = (nonce, when, expires)

        # 2. Verify every part (signatures, chains, binding to the challenge): no database,
        #    so no lock is held meanwhile.
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            challenge = None if binding is not None else BindingChallenge(nonce, _spki(key, cnf))
            verified = self.verify_parts(parts, challenge=challenge, expected_binding=binding,
                                         now=now)
        except CollateralError as exc:
            problem = problem_for(exc)
            problem.detail += self._collateral_hint(self._vendors_of(parts), ("collateral",))
            raise self._refuse_attest(problem, subject, base, burn=burn) from None
        except VeriteeError as exc:
            raise self._refuse_attest(problem_for(exc), subject, base, burn=burn) from None
        finally:
            self.metrics.verification.observe(time.perf_counter() - t0)
            # CPU of this thread only: under load wall time also counts waiting for the GIL.
            self.metrics.verification_cpu.inc(time.thread_time() - c0)

        # 3. One write transaction: the nonce used up, the appraisal policies read, every part
        #    appraised, the result signed as an EAR bound to the TEE key and recorded.
        refusal: Problem | None = None
        violation: IntegrityViolation | None = None
        issued: tuple[AttestOutcome, Appraisal] | None = None
        with self.store.transaction() as tx:
            if self.consume_nonce(tx, *burn) == NonceState.USED:
                # Another attempt with this nonce recorded its result first.
                refusal = self._refuse_attest(_nonce_problem(NonceState.USED), subject, base,
                                              tx)
            else:
                try:
                    appraisals = self.appraise_verified(tx, verified, overrides)
                except IntegrityViolation as exc:
                    violation = exc  # raised as it is once the nonce's use is committed
                except VeriteeError as exc:  # unknown scheme policy, bad policy document
                    refusal = self._refuse_attest(problem_for(exc), subject, base, tx)
                else:
                    issued, refusal = self._issue(tx, appraisals, nonce=nonce, when=when,
                                                  cnf=cnf, subject=subject, base=base)
        if violation is not None:
            raise violation
        if issued is not None:  # a verdict was reached (accepted or rejected)
            self.metrics.count(self.metrics.verdicts, issued[0].result.status)
        if refusal is not None:
            raise refusal
        assert issued is not None
        outcome, primary = issued
        self.metrics.count(self.metrics.attestations, "accepted")
        log_event("attestation.accepted", jti=outcome.result.claims["jti"],
                  status=outcome.result.status, policy_id=primary.policy_id,
                  key_thumbprint=thumb)
        return outcome

    def _issue(self, tx: Tx, appraisals: Sequence[Appraisal], *, nonce: bytes, when: float,
               cnf: dict[str, Any], subject: str, base: dict[str, Any]
               ) -> tuple[tuple[AttestOutcome, Appraisal], Problem | None]:
        """Sign the appraisals' EAR and record the verdict in ``tx``: ``((the outcome, the
        primary appraisal), the refusal or None when every check passed)``."""
        make = ear_claims if len(appraisals) == 1 else composite_ear_claims
        claims = make(appraisals[0] if len(appraisals) == 1 else appraisals,  # type: ignore[arg-type]
                      issuer=self.settings.issuer, now=when, ttl=self.settings.token_ttl,
                      nonce=nonce, cnf_jwk=cnf,
                      build=f"veritee {__version__}")
        # A JWT (RFC 7519) as results.sign_ear writes it, signed directly (joserfc's encode
        # cost six times the signature); verify_ear reads it, as joserfc does (tests).
        signer = self.signing_key
        token = _jws_compact(signer, {"alg": signer.alg, "kid": signer.kid, "typ": "JWT"},
                             _json_bytes(claims))
        result = EarResult(header={"kid": signer.kid}, claims=claims)
        primary = appraisals[0]
        failures = [f for a in appraisals for f in a.failures]
        codes = [f.code for f in failures]
        detail = {**base, "jti": claims["jti"], "status": result.status,
                  "tee": primary.tee, "policy_id": primary.policy_id,
                  "measurement": primary.claims.get("measurement"),
                  "vector": result.submod["ear.trustworthiness-vector"], "failures": codes}
        if len(appraisals) > 1:
            detail["parts"] = [{"submod": name, "tee": a.tee, "policy_id": a.policy_id,
                                "measurement": a.claims.get("measurement"),
                                "status": result.submods[name]["ear.status"]}
                               for name, a in zip(result.submods, appraisals, strict=True)]
        issued = (AttestOutcome(token=token, result=result), primary)
        if failures:
            return issued, self._refuse_attest(AttestationRejected(
                "attestation.rejected",
                f"{len(failures)} check(s) failed: {', '.join(codes)}"
                + self._collateral_hint(found_vendors(appraisals), codes),
                failures=[f.to_dict() for f in failures], ear=token), subject, detail, tx)
        self._audit("attestation", "accepted", subject, detail, tx)
        return issued, None

    def _vendors_of(self, parts: Sequence[EvidencePart]) -> list[str]:
        """The vendors of the parts' schemes (those that can be told)."""
        out = []
        for part in parts:
            try:
                out.append(str(self._scheme_of(part).vendor))
            except VeriteeError:
                continue
        return out

    def _collateral_hint(self, vendors: Sequence[str], codes: Sequence[str]) -> str:
        """Why collateral-dependent checks failed, when the setting that feeds them is unset."""
        if not any(w in c for c in codes for w in (".tcb.", ".revocation.", ".qe_identity.",
                                                     "collateral")):
            return ""
        for vendor in vendors:
            setting = _COLLATERAL_SETTINGS.get(vendor)
            if (setting and self.verifier.collateral.get(vendor) is None
                    and vendor not in self.verifier.fetchers):
                return (f" (no {setting} is configured: without that collateral the TCB "
                        "status or revocation cannot be known, so such evidence is refused)")
        return ""

    # -- release ----------------------------------------------------------------------------
    def verify_token(self, token: str) -> EarResult:
        """Verify an EAR issued by this service (signature, issuer, expiry, profile)."""
        try:
            # Contraindicated (and "none") results never open anything; whether a warning
            # is enough is the resource policy's call.
            return verify_ear(token, self._verification_keys(), now=self.clock(),
                              issuer=self.settings.issuer,
                              accept=("affirming", "warning"))
        except VerificationError as exc:
            code = "token.expired" if exc.code == "ear.expired" else "token.invalid"
            raise Unauthenticated(code, str(exc), headers={
                "WWW-Authenticate": 'Bearer error="invalid_token"'}) from None

    def release(self, path: str, token: str | None, *,
                seal: Callable[..., str] | None = None) -> tuple[str, int]:
        """The secret at ``path`` as a signed release (see the module docstring); or raise.

        Returns ``(release, version)``: ``release`` is a compact JWS (RFC 7515) signed with
        the EAR signing key whose payload is the compact JWE (RFC 7516, ECDH-ES + A256GCM to
        the EAR's ``cnf`` key) and whose JWE protected header names the resource, its version
        and the ``jti`` of the EAR it answers. ``seal`` replaces that encoding with another
        front's, called like :meth:`_seal_release` (the KBS protocol's JWE).
        """
        def refuse(problem: Problem, detail: dict[str, Any]) -> Problem:
            self._audit("release", "refused", subject, {**detail, "code": problem.code})
            self.metrics.count(self.metrics.releases, "refused")
            log_event("release.refused", code=problem.code, resource=subject)
            return problem

        try:
            checked_text(path, "path", MAX_PATH)
        except Problem as problem:
            subject = f"resource-invalid:{fingerprint(path.encode('utf-8', 'surrogatepass'))}"
            raise refuse(problem, {}) from None
        subject = f"resource:{path}"
        if not token:
            raise refuse(Unauthenticated("token.missing", "Authorization: want 'Bearer <EAR>'",
                                         headers={"WWW-Authenticate": "Bearer"}), {})
        try:
            result = self.verify_token(token)
        except Problem as problem:
            raise refuse(problem, {"token": fingerprint(token)}) from None
        jti = str(result.claims.get("jti"))[:64]
        base: dict[str, Any] = {"jti": jti, "token": fingerprint(token)}
        cnf = result.cnf_jwk
        if cnf is None:
            raise refuse(Unauthenticated("token.invalid", "token has no cnf.jwk to encrypt to"),
                                         base)
        refusal: Problem | None = None
        with self.store.transaction() as tx:
            found = tx.resource_row(path)
            if found is None:
                refusal = NotFound("resource.not_found", f"no resource {path!r}")
            else:
                policy_text, ciphertext, version = found
                try:
                    findings = self._resource_policy(policy_text).evaluate(
                        result, failures_only=True)
                except (TypeError, ValueError, KeyError, AttributeError, VeriteeError):
                    # A correctly signed token whose claims have the wrong shapes: refused
                    # as a bad token, never a 500.
                    findings = None
                if findings is None:
                    refusal = Unauthenticated("token.invalid", "token claims are malformed",
                                              headers={"WWW-Authenticate":
                                                       'Bearer error="invalid_token"'})
                else:
                    codes = [f.code for f in findings]  # failures only
                    if codes:
                        refusal = ResourceRefused(
                            "resource.policy", f"resource policy refused: {', '.join(codes)}",
                            failures=[f.to_dict() for f in findings])
                        base = {**base, "failures": codes}
            if refusal is not None:
                # Recorded in this transaction (the only write), raised once it committed.
                tx.audit_append("release", "refused", subject,
                                _traced({**base, "code": refusal.code}), _iso(self.clock()))
            else:
                secret = self.master.decrypt(ciphertext, path.encode())
                sealed = (seal or self._seal_release)(secret, cnf, path=path, version=version,
                                                      jti=jti)
                tx.audit_append("release", "granted", subject,
                                _traced({**base, "version": version}), _iso(self.clock()))
        if refusal is not None:
            self.metrics.count(self.metrics.releases, "refused")
            log_event("release.refused", code=refusal.code, resource=subject)
            raise refusal
        self.metrics.count(self.metrics.releases, "granted")
        log_event("release.granted", resource=path, version=version, jti=jti)
        return sealed, version

    def _resource_policy(self, text: str) -> ResourcePolicy:
        """The resource policy of an (authenticated) stored document, built once per text."""
        return _built(self._resource_policies, text,
                      lambda: ResourcePolicy.from_mapping(dict(json.loads(text))))

    def _seal_release(self, secret: bytes, cnf: dict[str, Any], *, path: str, version: int,
                      jti: str) -> str:
        """Encrypt to the TEE key, then sign with the broker's key (encrypt-then-sign).

        ECDH-ES alone names no sender and the ``cnf`` key is public, so anyone could mint a
        JWE the client decrypts (issue 16 finding 6). The JWS over the whole JWE (its
        protected header included) authenticates the broker; the header binds the release to
        the EAR (``jti``) and the resource. A nested token in the RFC 7519 section 5.2 sense
        (``cty: JWE``). ECDH-1PU was not used: it needs the sender's static key on the
        recipient's curve, and the TEE's curve is the client's choice.
        """
        try:
            # Built with cryptography directly (kbs_jwe.encrypt_compact_ecdh_es): joserfc's
            # generic JWE path cost more than the ECDH itself; joserfc still decrypts it.
            inner = encrypt_compact_ecdh_es(secret, cnf, {
                "kid": _ec_thumbprint(cnf), "veritee.resource": path,
                "veritee.version": version, "veritee.jti": jti})
        except Exception:
            raise Unauthenticated("token.invalid", "token cnf.jwk cannot be encrypted to",
                                  headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
                          ) from None
        return _jws_compact(self.signing_key, {"alg": self.signing_key.alg,
                                               "kid": self.signing_key.kid,
                                               "typ": RELEASE_TYP, "cty": "JWE"},
                            inner.encode())

    # -- admin ------------------------------------------------------------------------------
    def authenticate(self, token: str | None, *, need: str) -> str:
        """The token id of a live admin token with role ``need`` (or admin); else raise."""
        if not token:
            raise Unauthenticated("admin.unauthenticated", "Authorization: want 'Bearer <token>'",
                                  headers={"WWW-Authenticate": "Bearer"})
        with self.store.transaction(write=False) as tx:
            found = tx.token_lookup(hash_token(token))
        if found is None:
            raise Unauthenticated("admin.unauthenticated", "unknown or revoked admin token",
                                  headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        token_id, _, role = found
        if need == "admin" and role != "admin":
            raise Forbidden("admin.forbidden", f"role {role!r} may only read; this needs "
                            "the admin role")
        return token_id

    def _change(self, actor: str, event: str, subject: str, detail: dict[str, Any],
                fn: Callable[[Tx], Any]) -> Any:
        with self.store.transaction() as tx:
            result = fn(tx)
            tx.audit_append(event, "ok", subject, _traced({"actor": actor, **detail}),
                            _iso(self.clock()))
        log_event(event, actor=actor, subject=subject)
        return result

    def put_policy(self, actor: str, policy_id: str, body: object) -> tuple[dict[str, Any], bool]:
        """Create or replace an appraisal policy; return its normalised form and 'created'.

        The body names its ``scheme`` (default ``sevsnp``, as documents did before schemes)
        and that scheme's policy fields; the scheme's ``policy_from_mapping`` checks them
        (a ConfigError naming the key becomes 400)."""
        checked_text(policy_id, "policy_id")
        if not isinstance(body, dict):
            raise InvalidRequest("body: want a policy object")
        body = {**body, "policy_id": body.get("policy_id", policy_id)}
        if body["policy_id"] != policy_id:
            raise InvalidRequest(f"policy_id: got {body['policy_id']!r} in the "
                                 f"body, want {policy_id!r} (the path)")
        name = body.pop("scheme", LEGACY_SCHEME)
        if not isinstance(name, str) or name not in known_schemes():
            raise InvalidRequest(f"scheme: got {str(name)[:40]!r}, want one of "
                                 f"{', '.join(known_schemes())}")
        scheme = scheme_named(name)
        policy = scheme.policy_from_mapping(body)  # ConfigError names the bad key -> 400
        doc = {"scheme": name, **scheme.policy_to_mapping(policy)}
        created = self._change(actor, "admin.policy.put", f"policy:{policy_id}",
                               {"scheme": name},
                               lambda tx: tx.policy_put(policy_id, doc, self.clock()))
        return doc, bool(created)

    def put_reference(self, actor: str, name: str, body: object) -> bool:
        """Create or replace a reference value: an accepted ``measurement`` of one scheme,
        whose size that scheme's policy checks."""
        checked_text(name, "name")
        if not isinstance(body, dict) or set(body) - {"kind", "value", "scheme"}:
            raise InvalidRequest("body: want {kind, value, scheme?}")
        kind = body.get("kind", "measurement")
        if kind != "measurement":
            raise InvalidRequest(f"kind: got {kind!r}, want 'measurement'")
        scheme_name = body.get("scheme", LEGACY_SCHEME)
        if not isinstance(scheme_name, str) or scheme_name not in known_schemes():
            raise InvalidRequest(f"scheme: got {str(scheme_name)[:40]!r}, want one of "
                                 f"{', '.join(known_schemes())}")
        value = body.get("value")
        try:
            raw = bytes.fromhex(str(value).lower().removeprefix("0x"))
        except ValueError:
            raw = b""
        if not isinstance(value, str) or not raw:
            raise InvalidRequest(f"value: got {str(value)[:100]!r}, want hex")
        scheme = scheme_named(scheme_name)
        key = reference_key(scheme)
        mapping = scheme.policy_to_mapping(scheme.default_policy())
        try:
            scheme.policy_from_mapping({**mapping, key: [raw.hex()]})
        except ConfigError as exc:
            raise InvalidRequest(f"value: not a {scheme_name} measurement ({exc})") from None
        return bool(self._change(actor, "admin.reference.put", f"reference:{name}",
                                 {"value": raw.hex(), "scheme": scheme_name},
                                 lambda tx: tx.reference_put(name, f"{scheme_name}:{kind}",
                                                             raw.hex(), self.clock())))

    # -- admin reads (routes never touch the store) ------------------------------------------
    def list_policies(self) -> dict[str, Any]:
        """Policy ids, the legacy active id and the id in force per scheme."""
        with self.store.transaction(write=False) as tx:
            ids = tx.policy_list()
            active = {s: self._policy_doc(tx, s)[0] for s in known_schemes()}
        return {"policies": ids, "active": self.settings.appraisal_policy_id,
                "active_by_scheme": active}

    def get_policy(self, policy_id: str) -> dict[str, Any]:
        """One stored appraisal policy (with its ``scheme``); 404 if absent."""
        checked_text(policy_id, "policy_id")
        with self.store.transaction(write=False) as tx:
            doc = tx.policy_get(policy_id)
        if doc is None:
            raise NotFound("policy.not_found", f"no policy {policy_id!r}")
        return {"scheme": doc_scheme(doc), **doc}

    def list_references(self) -> list[dict[str, Any]]:
        """Reference values with their scheme."""
        with self.store.transaction(write=False) as tx:
            rows = tx.reference_list()
        return [{"name": n, "kind": k.rpartition(":")[2], "scheme": ref_scheme(k), "value": v}
                for n, k, v in rows]

    def list_resources(self) -> list[dict[str, Any]]:
        """Resources with their policies and versions (never the secrets)."""
        with self.store.transaction(write=False) as tx:
            return [{"path": path, "policy": pol, "version": v}
                    for path, pol, v in tx.resource_list()]

    def list_tokens(self) -> list[Any]:
        """Admin tokens (metadata only)."""
        with self.store.transaction(write=False) as tx:
            tokens: list[Any] = tx.token_list()
        return tokens

    def audit_entries(self, after: int, limit: int) -> list[dict[str, Any]]:
        """Audit entries after ``after`` (at most ``limit``, 1..1000)."""
        if not 1 <= limit <= 1000 or not 0 <= after < 1 << 62:
            raise InvalidRequest("limit: want 1..1000; after: want 0..2^62")
        with self.store.transaction(write=False) as tx:
            rows = tx.audit_rows(after, limit)
        return [dict(r.__dict__) for r in rows]

    def audit_verify(self) -> dict[str, Any]:
        """Check the audit log's whole hash chain."""
        from veritee.service.audit import verify_chain

        assert self.store.integrity is not None
        with self.store.transaction(write=False) as tx:
            report = verify_chain(tx.audit_rows(), self.store.integrity)
        return dict(report.__dict__)

    def put_resource(self, actor: str, path: str, body: object) -> int:
        """Create or update a resource: its policy and (optionally) its secret."""
        checked_text(path, "path", MAX_PATH)
        if not isinstance(body, dict) or set(body) - {"secret", "policy"}:
            raise InvalidRequest("body: want {secret (base64), policy}")
        if "policy" not in body:
            raise InvalidRequest("policy: required")
        policy = ResourcePolicy.from_mapping(body["policy"])  # ConfigError names the key
        unknown = sorted(set(policy.workloads or {}) - set(known_schemes()))
        if unknown:
            raise InvalidRequest(f"policy.workloads.{unknown[0][:64]}: unknown scheme (known: "
                                 f"{', '.join(known_schemes())})")
        secret = _unb64(body["secret"], "secret") if body.get("secret") is not None else None
        if secret is not None and not 1 <= len(secret) <= 1 << 20:
            raise InvalidRequest("secret: want 1 byte .. 1 MiB")
        ciphertext = self.master.encrypt(secret, path.encode()) if secret is not None else None
        version: int = self._change(
            actor, "admin.resource.put", f"resource:{path}",
            {"secret_changed": secret is not None},
            lambda tx: tx.resource_put(path, policy.to_mapping(), ciphertext, self.clock()))
        return version

    def delete(self, actor: str, kind: str, key: str) -> None:
        """Delete a policy, reference value or resource; 404 if absent."""
        ops: dict[str, Callable[[Tx], bool]] = {
            "policy": lambda tx: tx.policy_delete(key),
            "reference": lambda tx: tx.reference_delete(key),
            "resource": lambda tx: tx.resource_delete(key),
        }

        checked_text(key, kind, MAX_PATH if kind == "resource" else MAX_NAME)

        def run(tx: Tx) -> None:
            if not ops[kind](tx):
                raise NotFound(f"{kind}.not_found", f"no {kind} {key!r}")

        self._change(actor, f"admin.{kind}.delete", f"{kind}:{key}", {}, run)

    def create_token(self, actor: str, body: object) -> tuple[str, str]:
        """A new admin token (returned once)."""
        if not isinstance(body, dict) or set(body) - {"name", "role"}:
            raise InvalidRequest("body: want {name, role}")
        name = checked_text(body.get("name"), "name", 100)
        role = body.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise InvalidRequest("role: want 'admin' or 'reader'")
        return create_admin_token(self.store, name, role, actor=actor, now=self.clock())

    def revoke_token(self, actor: str, token_id: str) -> None:
        """Revoke a token; 404 if unknown or already revoked."""
        checked_text(token_id, "token_id")

        def run(tx: Tx) -> None:
            if not tx.token_revoke(token_id, self.clock()):
                raise NotFound("token.not_found", f"no live token {token_id!r}")

        self._change(actor, "admin.token.revoke", f"token:{token_id}", {}, run)

