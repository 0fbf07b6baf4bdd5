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

import base64
import dataclasses
import hashlib
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwe, jws
from joserfc.jwk import ECKey, RSAKey

from veritee import __version__
from veritee.attest import bind_report_data, is_intel_quote, parse_evidence, verify_only
from veritee.errors import (
    CollateralError,
    ConfigError,
    FormatError,
    VerificationError,
    VeriteeError,
)
from veritee.findings import Outcome
from veritee.policy import Appraisal
from veritee.policy.intel import TdxPolicy
from veritee.policy.intel import appraise as appraise_intel
from veritee.policy.sevsnp import SevSnpPolicy, appraise, policy_from_mapping, policy_to_mapping
from veritee.results import EarResult, ear_claims, sign_ear, verify_ear
from veritee.service._reqlog import current_request_id
from veritee.service.integrity import IntegrityViolation
from veritee.service.keys import MasterKey, SigningKey, rotate_signing_key
from veritee.service.observability import Metrics, fingerprint, log_event
from veritee.service.problems import Problem
from veritee.service.resource_policy import ResourcePolicy
from veritee.service.settings import Settings
from veritee.service.storage import NonceState, Store, Tx
from veritee.trust.intel import (
    INTEL_SGX_ROOT_CA_SHA256,
    IntelCollateral,
    load_certificates,
    verify_quote,
)
from veritee.trust.roots import TrustAnchors
from veritee.trust.sevsnp import AmdCertificates, ChainCache

__all__ = ["MAX_NAME", "MAX_PATH", "RELEASE_TYP", "AttestOutcome", "Broker", "Challenge",
           "checked_text", "create_admin_token", "hash_token"]

NONCE_BYTES = 32
RELEASE_TYP = "veritee-release+jws"
# The veritee.* protected-header members are private names (RFC 7516 section 4.3); joserfc
# checks headers against its registry unless told not to. They are still authenticated AAD.
_JWE_REGISTRY = jwe.JWERegistry(algorithms=["ECDH-ES", "A256GCM"], strict_check_header=False)
_ROLES = ("admin", "reader")
_EC_CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: object, field: str, *, url: bool = False) -> bytes:
    if not isinstance(text, str):
        raise Problem(400, "request.invalid", f"{field}: got {type(text).__name__}, want a "
                      "base64 string")
    try:
        if url:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise Problem(400, "request.invalid", f"{field}: not valid base64") from None


MAX_PATH = 1024  # resource paths
MAX_NAME = 128  # policy ids, reference-value names, token ids and names


def checked_text(value: object, field: str, max_len: int = MAX_NAME) -> str:
    """``value`` as a bounded, printable string, or a 400 Problem naming ``field``.

    NUL, other control characters and lone surrogates are refused here: PostgreSQL cannot
    store NUL and no encoder takes a lone surrogate, so they would surface as a 500.
    """
    if not isinstance(value, str):
        raise Problem(400, "request.invalid", f"{field}: got {type(value).__name__}, want a "
                      "string")
    if not 1 <= len(value) <= max_len:
        raise Problem(400, "request.invalid", f"{field}: want 1..{max_len} characters, got "
                      f"{len(value)}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF for c in value):
        raise Problem(400, "request.invalid", f"{field}: control characters, NUL and lone "
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


def public_key_from_jwk(jwk: object, *, rsa_keys: bool = False
                        ) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The TEE's ephemeral key from its JWK: EC P-256/P-384/P-521 public keys (and, for the
    KBS front's ``rsa_keys``, RSA keys of 2048 to 8192 bits)."""
    if not isinstance(jwk, dict):
        raise Problem(400, "request.invalid", "runtime_data.key: want a JWK object")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if rsa_keys and kty == "RSA":
        from veritee.crypto.kbs_jwe import rsa_public_key

        try:
            return rsa_public_key(jwk)
        except FormatError as exc:
            raise Problem(400, "request.invalid", f"tee-pubkey: {exc}") from None
    if kty != "EC" or not isinstance(crv, str) or crv not in _EC_CURVES:
        raise Problem(400, "request.invalid", f"runtime_data.key: got kty={str(kty)[:20]!r} "
                      f"crv={str(crv)[:20]!r}, want an EC key on P-256, P-384 or P-521 "
                      "(ECDH-ES needs one)")
    if "d" in jwk:
        raise Problem(400, "request.invalid", "runtime_data.key: contains a private key (d); "
                      "send only the public key")
    try:
        key = ECKey.import_key({k: jwk[k] for k in ("kty", "crv", "x", "y")})
    except Exception:
        raise Problem(400, "request.invalid",
                      "runtime_data.key: not a valid EC public key") from None
    pub = key.public_key
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    return pub


@dataclass(frozen=True)
class Challenge:
    """A single-use nonce and when it expires (epoch seconds)."""

    nonce: bytes
    expires_at: float


@dataclass(frozen=True)
class AttestOutcome:
    """An accepted attestation: the signed EAR and its decoded form."""

    token: str
    result: EarResult


class Broker:
    """Verifier and key broker over a :class:`Store`. Thread-safe."""

    def __init__(self, *, settings: Settings, store: Store, master: MasterKey,
                 signing_key: SigningKey, anchors: TrustAnchors,
                 clock: Callable[[], float] = time.time, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.store = store
        self.master = master
        self.signing_key = signing_key
        self.anchors = anchors
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.chain_cache = ChainCache()
        # Parsed certificate tables by SHA-256: every guest on a chip sends the same table,
        # and parsing its three certificates costs more than verifying the report.
        self._collateral: OrderedDict[bytes, AmdCertificates] = OrderedDict()
        self._collateral_lock = threading.Lock()
        self._jwks_lock = threading.Lock()
        self._jwks_loaded = 0.0
        self._jwks_due = 0.0
        self._jwks: dict[str, Any] = self._load_jwks()
        # Intel DCAP collateral, read once (ConfigError at start if the directory is bad).
        # Without it a TDX quote's TCB status is unknown and the TDX appraisal refuses.
        self.intel_collateral: IntelCollateral | None = None
        if settings.intel_collateral_dir is not None:
            from veritee.collateral.intel import load_directory

            self.intel_collateral = load_directory(settings.intel_collateral_dir)
        # Extra Intel roots (an emulated vendor's, dev_mode only) beside the production pin.
        self.intel_roots: list[str | x509.Certificate] | None = None
        if settings.intel_trust_roots:
            self.intel_roots = [INTEL_SGX_ROOT_CA_SHA256]
            for path in settings.intel_trust_roots:
                try:
                    self.intel_roots += load_certificates(Path(path).read_bytes())
                except (OSError, FormatError) as exc:
                    raise ConfigError(f"intel_trust_roots: {path}: {exc}") from None

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
                self._jwks = self._load_jwks()
            return {"keys": list(self._jwks["keys"])}

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
            self._jwks = self._load_jwks()
        log_event("admin.signing_key.rotate", actor=actor, kid=new.kid, retired=old)
        return {"kid": new.kid, "retired": old,
                "retired_until": _iso(now + self.settings.token_ttl) if old else None}

    def integrity_violation(self, exc: IntegrityViolation) -> None:
        """Raise the alarm for a refused row: metric, error log, and (if it can) an audit entry.

        The audit append may itself fail (a forged audit head); the metric and the log
        still record it.
        """
        self.metrics.integrity.labels(exc.table).inc()
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
        """Issue a fresh single-use nonce (stored by hash; expires after ``nonce_ttl``)."""
        now = self.clock()
        nonce = os.urandom(NONCE_BYTES)
        expires = now + self.settings.nonce_ttl
        with self.store.transaction() as tx:
            tx.nonce_create(hashlib.sha256(nonce).hexdigest(), now, expires)
            # Housekeeping, ~1% of the time: expired nonces would be refused anyway.
            if secrets.randbelow(100) == 0:
                tx.nonce_purge(now - 3600)
        self.metrics.challenges.inc()
        return Challenge(nonce=nonce, expires_at=expires)

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
                       tx: Tx | None = None) -> Problem:
        self._audit("attestation", "refused", subject, {**detail, "code": problem.code}, tx)
        self.metrics.attestations.labels("refused").inc()
        log_event("attestation.refused", code=problem.code, subject=subject)
        return problem

    def _appraisal_policy(self, tx: Tx) -> SevSnpPolicy:
        pid = self.settings.appraisal_policy_id
        body = tx.policy_get(pid)
        policy = policy_from_mapping(body) if body is not None else SevSnpPolicy(policy_id=pid)
        refs = {bytes.fromhex(v) for _, kind, v in tx.reference_list() if kind == "measurement"}
        if refs:
            # Reference values extend the policy's own allow-list of launch digests.
            policy = dataclasses.replace(policy, measurements=frozenset(
                refs | set(policy.measurements or ())))
        return policy

    def _appraise_tdx(self, evidence: bytes, report_data: bytes,
                      mrconfigid: bytes | None = None) -> Appraisal:
        """Verify an Intel TDX quote at the service clock and appraise it (raises like SNP).

        The chain is pinned to the production Intel SGX Root CA; TCB status comes from
        ``intel_collateral_dir`` (unknown without it, which the policy refuses).
        """
        verified = verify_quote(evidence, self.intel_collateral,
                                now=datetime.fromtimestamp(self.clock(), UTC),
                                trusted_roots=self.intel_roots)
        if verified.tee != "tdx":
            raise Problem(400, "evidence.unsupported", f"evidence: an Intel {verified.tee} "
                          "quote; this service accepts Intel TDX and AMD SEV-SNP evidence only")
        policy = TdxPolicy(policy_id=f"tdx-{self.settings.appraisal_policy_id}",
                           allowed_tcb_statuses=frozenset(
                               self.settings.tdx_allowed_tcb_statuses),
                           report_data=report_data,
                           allow_unchecked_revocation=not self.settings.require_crl,
                           mrconfigid=frozenset({mrconfigid}) if mrconfigid else None)
        return appraise_intel(verified, policy)

    def _parse_collateral(self, cert_table: bytes | None) -> AmdCertificates | None:
        if cert_table is None:
            return None
        key = hashlib.sha256(cert_table).digest()
        with self._collateral_lock:
            if key in self._collateral:
                self._collateral.move_to_end(key)
                return self._collateral[key]
        from veritee.collateral.amd import from_cert_table
        from veritee.formats.sevsnp import CertTable

        certs = from_cert_table(CertTable.from_bytes(cert_table))
        with self._collateral_lock:
            self._collateral[key] = certs
            while len(self._collateral) > 256:
                self._collateral.popitem(last=False)
        return certs

    def attest(self, evidence_b64: object, cert_table_b64: object, nonce_b64: object,
               key_jwk: object, *, binding: bytes | None = None,
               host_data: bytes | None = None, mrconfigid: bytes | None = None,
               front: str = "v1", rsa_keys: bool = False) -> AttestOutcome:
        """Verify evidence bound to a nonce and a TEE key; return a signed EAR or raise.

        ``binding`` replaces the /v1 REPORT_DATA rule with another front's (the KBS
        protocol's, :mod:`veritee.service.kbs_protocol`); ``host_data`` (SEV-SNP) and
        ``mrconfigid`` (TDX) are init-data digests the evidence must carry; ``front`` names
        the protocol in the audit entries (omitted for /v1); ``rsa_keys`` accepts an RSA TEE
        key (the KBS protocol's RSA-OAEP-256/RSA1_5 keys; /v1 takes EC keys only).
        """
        evidence = _unb64(evidence_b64, "evidence")
        cert_table = _unb64(cert_table_b64, "cert_table") if cert_table_b64 is not None else None
        nonce = _unb64(nonce_b64, "runtime_data.nonce", url=True)
        key = public_key_from_jwk(key_jwk, rsa_keys=rsa_keys)
        jwk = RSAKey.import_key(key) if isinstance(key, rsa.RSAPublicKey) else ECKey.import_key(
            key)
        # An RSA key keeps the JWE algorithm it was sent for (RSA-OAEP-256 or RSA1_5).
        cnf = jwk.as_dict(private=False) | ({"alg": key_jwk["alg"]} if isinstance(
            key, rsa.RSAPublicKey) and isinstance(key_jwk, dict) and isinstance(
            key_jwk.get("alg"), str) else {})
        thumb = jwk.thumbprint()
        nonce_id = fingerprint(nonce)
        subject = f"key:{thumb[:16]}"
        base = {"nonce": nonce_id, "key_thumbprint": thumb,
                **({"front": front} if front != "v1" else {})}

        # 1. Burn the nonce first, even if verification then fails: a nonce never serves
        #    two attempts, so a rejected guest cannot retry with the same challenge.
        with self.store.transaction() as tx:
            state = tx.nonce_consume(hashlib.sha256(nonce).hexdigest(), self.clock())
            if state != NonceState.OK:
                # Recorded in this transaction (which changed nothing else), raised after.
                refusal = self._refuse_attest(Problem(
                    403, f"nonce.{state}", f"runtime_data.nonce: {state} (request a fresh "
                    "challenge from POST /v1/challenge)"), subject, base, tx)
        if state != NonceState.OK:
            raise refusal

        # 2. Verify and appraise. report_data must equal SHA-512(nonce || SPKI(key)).
        #    Intel TDX: REPORTDATA must equal the same 64 bytes.
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            if is_intel_quote(evidence):
                if cert_table is not None:
                    raise Problem(400, "request.invalid", "cert_table: not used with Intel "
                                  "quotes (the quote carries its PCK chain)")
                appraisal = self._appraise_tdx(
                    evidence, binding or bind_report_data(nonce, key), mrconfigid)
            else:
                with self.store.transaction(write=False) as tx:
                    policy = self._appraisal_policy(tx)
                # The service has no SEV-SNP CRL source besides what require_crl demands, so
                # with require_crl off it waives the policy's revocation check (the EAR trace
                # still records sevsnp.revocation.unchecked as skipped).
                policy = dataclasses.replace(
                    policy, report_data=binding or bind_report_data(nonce, key),
                    host_data=host_data or policy.host_data,
                    allow_unchecked_revocation=(policy.allow_unchecked_revocation
                                                or not self.settings.require_crl))
                ev = parse_evidence(evidence)
                verified = verify_only(ev, anchors=self.anchors,
                                       collateral=self._parse_collateral(cert_table),
                                       now=datetime.fromtimestamp(self.clock(), UTC),
                                       require_crl=self.settings.require_crl,
                                       cache=self.chain_cache)
                appraisal = appraise(verified, policy)
        except Problem as problem:
            raise self._refuse_attest(problem, subject, base) from None
        except FormatError as exc:
            raise self._refuse_attest(Problem(400, "evidence.malformed", str(exc)), subject,
                                      base) from None
        except CollateralError as exc:
            raise self._refuse_attest(Problem(422, "evidence.collateral", str(exc)), subject,
                                      base) from None
        except VerificationError as exc:
            raise self._refuse_attest(Problem(403, exc.code, str(exc)), subject, base) from None
        finally:
            self.metrics.verification.observe(time.perf_counter() - t0)
            # CPU of this thread only: under load wall time also counts waiting for the GIL.
            self.metrics.verification_cpu.inc(time.thread_time() - c0)

        # 3. Encode the result as an EAR bound to the TEE key, sign it, record it.
        claims = ear_claims(appraisal, issuer=self.settings.issuer, now=self.clock(),
                            ttl=self.settings.token_ttl, nonce=nonce,
                            cnf_jwk=cnf,
                            build=f"veritee {__version__}")
        token = sign_ear(claims, self.signing_key.private_key, kid=self.signing_key.kid)
        result = EarResult(header={"kid": self.signing_key.kid}, claims=claims)
        detail = {**base, "jti": claims["jti"], "status": result.status,
                  "tee": appraisal.tee, "policy_id": appraisal.policy_id,
                  "measurement": appraisal.claims.get("measurement"),
                  **({"mrtd": appraisal.claims.get("mrtd")} if appraisal.tee == "tdx" else {}),
                  "vector": result.submod["ear.trustworthiness-vector"],
                  "failures": appraisal.codes()}
        self.metrics.verdicts.labels(result.status).inc()
        if not appraisal.accepted:
            hint = ""
            if appraisal.tee == "tdx" and self.intel_collateral is None:
                hint = (" (no intel_collateral_dir is configured: the TDX TCB status is unknown,"
                        " so no TDX quote can be accepted)")
            raise self._refuse_attest(Problem(
                403, "attestation.rejected",
                f"{len(appraisal.failures)} check(s) failed: {', '.join(appraisal.codes())}"
                + hint,
                failures=[f.to_dict() for f in appraisal.failures], ear=token),
                subject, detail)
        self._audit("attestation", "accepted", subject, detail)
        self.metrics.attestations.labels("accepted").inc()
        log_event("attestation.accepted", jti=claims["jti"], status=result.status,
                  policy_id=appraisal.policy_id, key_thumbprint=thumb)
        return AttestOutcome(token=token, result=result)

    # -- release ----------------------------------------------------------------------------
    def verify_token(self, token: str) -> EarResult:
        """Verify an EAR issued by this service (signature, issuer, expiry, profile)."""
        try:
            # Contraindicated (and "none") results never open anything; whether a warning
            # is enough is the resource policy's call.
            return verify_ear(token, self.jwks(), now=self.clock(), issuer=self.settings.issuer,
                              accept=("affirming", "warning"))
        except VerificationError as exc:
            code = "token.expired" if exc.code == "ear.expired" else "token.invalid"
            raise Problem(401, code, str(exc),
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None

    def release(self, path: str, token: str | None, *,
                seal: Callable[..., str] | None = None) -> tuple[str, int]:
        """The secret at ``path`` as a signed release (see the module docstring); or raise.

        Returns ``(release, version)``: ``release`` is a compact JWS (RFC 7515) signed with
        the EAR signing key whose payload is the compact JWE (RFC 7516, ECDH-ES + A256GCM to
        the EAR's ``cnf`` key) and whose JWE protected header names the resource, its version
        and the ``jti`` of the EAR it answers. ``seal`` replaces that encoding with another
        front's, called like :meth:`_seal_release` (the KBS protocol's JWE).
        """
        try:
            checked_text(path, "path", MAX_PATH)
            subject = f"resource:{path}"
        except Problem:
            subject = f"resource-invalid:{fingerprint(path.encode('utf-8', 'surrogatepass'))}"

        def refuse(problem: Problem, detail: dict[str, Any]) -> Problem:
            self._audit("release", "refused", subject, {**detail, "code": problem.code})
            self.metrics.releases.labels("refused").inc()
            log_event("release.refused", code=problem.code, resource=subject)
            return problem

        try:
            checked_text(path, "path", MAX_PATH)
        except Problem as problem:
            raise refuse(problem, {}) from None
        if not token:
            raise refuse(Problem(401, "token.missing", "Authorization: want 'Bearer <EAR>'",
                                 headers={"WWW-Authenticate": "Bearer"}), {})
        try:
            result = self.verify_token(token)
        except Problem as problem:
            raise refuse(problem, {"token": fingerprint(token)}) from None
        jti = str(result.claims.get("jti"))[:64]
        base: dict[str, Any] = {"jti": jti, "token": fingerprint(token)}
        cnf = result.cnf_jwk
        if cnf is None:
            raise refuse(Problem(401, "token.invalid", "token has no cnf.jwk to encrypt to"),
                         base)
        refusal: Problem | None = None
        with self.store.transaction() as tx:
            found = tx.resource_get(path)
            if found is None:
                refusal = Problem(404, "resource.not_found", f"no resource {path!r}")
            else:
                policy_doc, ciphertext, version = found
                try:
                    findings = ResourcePolicy.from_mapping(policy_doc).evaluate(result)
                except (TypeError, ValueError, KeyError, AttributeError, VeriteeError):
                    # A correctly signed token whose claims have the wrong shapes: refused
                    # as a bad token, never a 500.
                    findings = None
                if findings is None:
                    refusal = Problem(401, "token.invalid", "token claims are malformed",
                                      headers={"WWW-Authenticate":
                                               'Bearer error="invalid_token"'})
                else:
                    codes = [f.code for f in findings if f.outcome is Outcome.FAIL]
                    if codes:
                        refusal = Problem(403, "resource.policy", "resource policy refused: "
                                          f"{', '.join(codes)}", failures=[
                                              f.to_dict() for f in findings
                                              if f.outcome is Outcome.FAIL])
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
            self.metrics.releases.labels("refused").inc()
            log_event("release.refused", code=refusal.code, resource=subject)
            raise refusal
        self.metrics.releases.labels("granted").inc()
        log_event("release.granted", resource=path, version=version, jti=jti)
        return sealed, version

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
            recipient = ECKey.import_key(cnf)
            header = {"alg": "ECDH-ES", "enc": "A256GCM", "kid": recipient.thumbprint(),
                      "veritee.resource": path, "veritee.version": version,
                      "veritee.jti": jti}
            inner = jwe.encrypt_compact(header, secret, recipient, registry=_JWE_REGISTRY)
        except Exception:
            raise Problem(401, "token.invalid", "token cnf.jwk cannot be encrypted to",
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
                          ) from None
        key = self.signing_key
        signed = jws.serialize_compact(
            {"alg": key.alg, "kid": key.kid, "typ": RELEASE_TYP, "cty": "JWE"},
            inner.encode(), ECKey.import_key(key.private_key), algorithms=[key.alg])
        return str(signed)

    # -- admin ------------------------------------------------------------------------------
    def authenticate(self, token: str | None, *, need: str) -> str:
        """The token id of a live admin token with role ``need`` (or admin); else raise."""
        if not token:
            raise Problem(401, "admin.unauthenticated", "Authorization: want 'Bearer <token>'",
                          headers={"WWW-Authenticate": "Bearer"})
        with self.store.transaction(write=False) as tx:
            found = tx.token_lookup(hash_token(token))
        if found is None:
            raise Problem(401, "admin.unauthenticated", "unknown or revoked admin token",
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        token_id, _, role = found
        if need == "admin" and role != "admin":
            raise Problem(403, "admin.forbidden", f"role {role!r} may only read; this needs "
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
        """Create or replace an appraisal policy; return its normalised form and 'created'."""
        checked_text(policy_id, "policy_id")
        if not isinstance(body, dict):
            raise Problem(400, "request.invalid", "body: want a policy object")
        body = {**body, "policy_id": body.get("policy_id", policy_id)}
        if body["policy_id"] != policy_id:
            raise Problem(400, "request.invalid", f"policy_id: got {body['policy_id']!r} in the "
                          f"body, want {policy_id!r} (the path)")
        policy = policy_from_mapping(body)  # ConfigError names the bad key -> 400
        doc = policy_to_mapping(policy)
        created = self._change(actor, "admin.policy.put", f"policy:{policy_id}", {},
                               lambda tx: tx.policy_put(policy_id, doc, self.clock()))
        return doc, bool(created)

    def put_reference(self, actor: str, name: str, body: object) -> bool:
        """Create or replace a reference value (a launch measurement)."""
        checked_text(name, "name")
        if not isinstance(body, dict) or set(body) - {"kind", "value"}:
            raise Problem(400, "request.invalid", "body: want {kind, value}")
        kind = body.get("kind", "measurement")
        if kind != "measurement":
            raise Problem(400, "request.invalid", f"kind: got {kind!r}, want 'measurement'")
        value = body.get("value")
        try:
            raw = bytes.fromhex(str(value).removeprefix("0x"))
        except ValueError:
            raw = b""
        if not isinstance(value, str) or len(raw) != 48:
            raise Problem(400, "request.invalid", f"value: got {value!r}, want 48 bytes of hex "
                          "(an SEV-SNP launch measurement)")
        return bool(self._change(actor, "admin.reference.put", f"reference:{name}",
                                 {"value": raw.hex()},
                                 lambda tx: tx.reference_put(name, kind, raw.hex(),
                                                             self.clock())))

    def put_resource(self, actor: str, path: str, body: object) -> int:
        """Create or update a resource: its policy and (optionally) its secret."""
        checked_text(path, "path", MAX_PATH)
        if not isinstance(body, dict) or set(body) - {"secret", "policy"}:
            raise Problem(400, "request.invalid", "body: want {secret (base64), policy}")
        if "policy" not in body:
            raise Problem(400, "request.invalid", "policy: required")
        policy = ResourcePolicy.from_mapping(body["policy"])
        secret = _unb64(body["secret"], "secret") if body.get("secret") is not None else None
        if secret is not None and not 1 <= len(secret) <= 1 << 20:
            raise Problem(400, "request.invalid", "secret: want 1 byte .. 1 MiB")
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
                raise Problem(404, f"{kind}.not_found", f"no {kind} {key!r}")

        self._change(actor, f"admin.{kind}.delete", f"{kind}:{key}", {}, run)

    def create_token(self, actor: str, body: object) -> tuple[str, str]:
        """A new admin token (returned once)."""
        if not isinstance(body, dict) or set(body) - {"name", "role"}:
            raise Problem(400, "request.invalid", "body: want {name, role}")
        name = checked_text(body.get("name"), "name", 100)
        role = body.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise Problem(400, "request.invalid", "role: want 'admin' or 'reader'")
        return create_admin_token(self.store, name, role, actor=actor, now=self.clock())

    def revoke_token(self, actor: str, token_id: str) -> None:
        """Revoke a token; 404 if unknown or already revoked."""
        checked_text(token_id, "token_id")

        def run(tx: Tx) -> None:
            if not tx.token_revoke(token_id, self.clock()):
                raise Problem(404, "token.not_found", f"no live token {token_id!r}")

        self._change(actor, "admin.token.revoke", f"token:{token_id}", {}, run)

