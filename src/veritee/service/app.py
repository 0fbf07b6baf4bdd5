"""The HTTP application: ``create_app(settings, ...)`` and thin routes over the broker.

Protocol (see docs/service.md for the sequence diagram):

* ``POST /v1/challenge`` -> ``{nonce, expires_at, expires_in}``: a single-use nonce.
* ``POST /v1/attest`` ``{evidence, scheme?, attached? (alias cert_table), runtime_data: {nonce,
  key}, additional_evidence?: [{evidence, scheme?, attached?}]}`` -> ``{token, ...}``: evidence
  of any registered scheme (and devices beside it), one EAR JWT with a submodule per attester;
  403 problem+json (with the failures and a contraindicated EAR) on rejection.
* ``GET /v1/resources/{path}`` with ``Authorization: Bearer <EAR>`` -> ``{release, version}``:
  the secret as a compact JWE (ECDH-ES + A256GCM) to the key in the EAR's ``cnf``, inside a
  JWS signed with the EAR key (the JWE header names the resource and the EAR's ``jti``).
* ``GET /v1/jwks`` (and ``/.well-known/jwks.json``): the EAR signing keys, for passports.
* ``/v1/admin/...``: policies, reference values, resources, tokens, audit (bearer tokens,
  roles admin/reader).
* ``/healthz``, ``/readyz``, ``/metrics``, ``/openapi.json``, ``/docs``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from veritee import __version__
from veritee.errors import ConfigError, VeriteeError
from veritee.schemes import Anchors, Collateral
from veritee.service.core import Broker, _json_bytes
from veritee.service.deps import AdminActor, BrokerDep, ReaderActor, bearer, get_broker
from veritee.service.integrity import IntegrityViolation, StateIntegrity
from veritee.service.kbs_protocol import router as kbs_router
from veritee.service.keys import KeyWrapper, load_data_key, load_signing_key
from veritee.service.limits import MAX_BODY, BoundedRequest, ThreadBudget
from veritee.service.observability import Metrics, log_event
from veritee.service.problems import InvalidRequest, Problem, problem_body, problem_for
from veritee.service.settings import Settings
from veritee.service.storage import DatabaseUnavailable, Store, open_store
from veritee.trust.roots import TrustAnchors

__all__ = ["create_app"]

_MAX_BODY = MAX_BODY
_PROBLEM = "application/problem+json"


class RuntimeData(BaseModel):
    """Runtime data the evidence is bound to: the verifier's nonce and the TEE's public key."""

    nonce: str = Field(description="the nonce from POST /v1/challenge (base64url)")
    key: dict[str, Any] = Field(description="the TEE's ephemeral public key as a JWK "
                                "(EC P-256/P-384/P-521)")


class EvidenceItem(BaseModel):
    """One more attester's evidence (a GPU beside the CPU), bound to the same challenge."""

    evidence: str = Field(description="evidence of any registered scheme, base64")
    scheme: str | None = Field(default=None, description="the scheme name (default: "
                               "recognised from the bytes)")
    attached: str | None = Field(default=None, description="what the attester attached "
                                 "(a device certificate chain ...), base64")


class AttestRequest(BaseModel):
    """Evidence and runtime data. Each scheme's binding field must carry
    SHA-512(nonce || SPKI DER of key) where it holds 64 bytes (SEV-SNP, TDX, SGX, CCA),
    SHA-256(nonce || SPKI) where it holds 32 (TPM qualifying data, NVIDIA nonce): see
    docs/service.md, "Binding per scheme"."""

    evidence: str = Field(description="evidence of any registered scheme, base64 (an SEV-SNP "
                          "report, Azure HCL report, configfs-tsm report, Intel TDX quote ...)")
    scheme: str | None = Field(default=None, description="the scheme name (default: "
                               "recognised from the bytes)")
    attached: str | None = Field(default=None, description="what the attester attached: an "
                                 "SEV-SNP extended report's certificate table, ..., base64")
    cert_table: str | None = Field(default=None, description="the older name of attached")
    runtime_data: RuntimeData
    additional_evidence: list[EvidenceItem] | None = Field(
        default=None, max_length=15, description="devices attested together with this "
        "evidence (composite: one EAR, a submodule per attester)")


def _problem_response(request: Request, status: int, code: str, title: str, detail: str, *,
                      headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(problem_body(status, code, title, detail, request.url.path, **extra),
                        status_code=status, media_type=_PROBLEM, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return _problem_response(request, exc.status, exc.code, exc.title, exc.detail,
                                 headers=exc.headers, **exc.extra)

    async def on_veritee(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, VeriteeError)
        problem = problem_for(exc)  # the one table (service.problems.ERROR_STATUS)
        return _problem_response(request, problem.status, problem.code, problem.title,
                                 problem.detail, headers=problem.headers, **problem.extra)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")}
                  for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return _problem_response(request, 422, "request.invalid", "invalid request", detail,
                                 errors=errors)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return _problem_response(request, exc.status_code, f"http.{exc.status_code}",
                                 str(exc.detail), str(exc.detail))

    async def on_integrity(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, IntegrityViolation)
        request.app.state.broker.integrity_violation(exc)
        # Which row failed is in the log and the audit entry, not in the answer.
        return _problem_response(request, 500, IntegrityViolation.code,
                                 "stored state failed its integrity check",
                                 "the service refused to use tampered state")

    async def on_unavailable(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DatabaseUnavailable)
        request.app.state.broker.metrics.unavailable.inc()
        log_event("database.unavailable", logging.ERROR, error=exc.reason)
        return _problem_response(request, 503, "service.unavailable", "service unavailable",
                                 "the service cannot reach its database; retry later",
                                 headers={"Retry-After": "2"})

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        from veritee.service._reqlog import route_name

        log_event("http.unexpected", logging.ERROR, error=type(exc).__name__,
                  route=route_name(request.scope))
        return _problem_response(request, 500, "internal", "internal error", "internal error")

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(IntegrityViolation, on_integrity)
    app.add_exception_handler(DatabaseUnavailable, on_unavailable)
    app.add_exception_handler(VeriteeError, on_veritee)
    app.add_exception_handler(Exception, on_unexpected)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def _install_middleware(app: FastAPI, metrics: Metrics, settings: Settings) -> None:
    from veritee.service._reqlog import AccessLog

    app.add_middleware(AccessLog, histogram=metrics.latency)
    # Outside it: bodies, headers and paths are bounded before routing or authentication.
    app.add_middleware(BoundedRequest, max_body=_MAX_BODY)
    app.add_middleware(ThreadBudget, threads=settings.worker_threads)


def _default_anchors(settings: Settings) -> TrustAnchors:
    if not settings.trust_roots:
        return TrustAnchors.amd()
    from veritee.crypto.amd_certs import load_certificates

    roots = []
    for path in settings.trust_roots:
        try:
            roots += load_certificates(Path(path).read_bytes(), source=path)
        except OSError as exc:
            raise ConfigError(f"trust_roots: {path}: cannot read ({exc.strerror})") from None
    return TrustAnchors.from_certificates(*roots, name="configured")


SERVICE_IMAGE_LABEL = b"veritee verifier and key broker service"


def service_master_key(settings: Settings) -> KeyWrapper:
    """Open (or on first start create) the master key with the configured key source.

    ``sevsnp``: sealed with the SEV-SNP guest's derived key (``/dev/sev-guest``).
    ``file``: a 32-byte key file, owner-only and owned by the service user
    (``veritee admin master-key-new --out FILE`` makes one); never created implicitly.
    ``pkcs11``: the master key is an AES key inside an HSM token and never leaves it
    (:mod:`veritee.service.pkcs11`).
    ``emulated`` (dev_mode only): a guest of the emulated SEV-SNP machine kept in
    ``emulated_machine_dir``, launched from a fixed image, so its measurement (and the
    sealing key) is the same at every start and in every worker.

    The whole sequence runs under :func:`~veritee.service.keys.startup_lock`, so workers and
    replicas starting together create one key and all open that one.
    """
    from veritee.service.keys import (
        check_private_file,
        load_master_key,
        load_master_key_file,
        startup_lock,
    )

    key_file = Path(settings.master_key_file)
    if settings.key_source == "file":
        return load_master_key_file(key_file, dev_mode=settings.dev_mode)
    if settings.key_source == "pkcs11":
        from veritee.service.pkcs11 import pkcs11_master_key

        with startup_lock(key_file):
            return pkcs11_master_key(settings)
    with startup_lock(key_file):
        if key_file.exists():
            check_private_file(key_file, what="master_key_file", dev_mode=settings.dev_mode)
        if settings.key_source == "sevsnp":
            # The service itself runs in an SEV-SNP guest: its firmware derives the key.
            from veritee.platform.sevsnp import SevGuestDevice

            return load_master_key(key_file, SevGuestDevice())
        from veritee.formats.sevsnp import GuestPolicy
        from veritee.platform.emulated.measurement import simple_guest_image
        from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine

        assert settings.emulated_machine_dir is not None
        machine_dir = Path(settings.emulated_machine_dir)
        machine_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        machine = InsecureEmulatedSnpMachine.open(machine_dir)
        image = simple_guest_image(SERVICE_IMAGE_LABEL.ljust(4096, b"\0"))
        guest = machine.launch(image, policy=GuestPolicy(smt=True))
        return load_master_key(key_file, guest)


def create_app(settings: Settings, *, master_key: KeyWrapper | None = None,
               anchors: TrustAnchors | Anchors | None = None, store: Store | None = None,
               clock: Callable[[], float] = time.time,
               collateral: Collateral | None = None) -> FastAPI:
    """Build the application: open and migrate the database, load keys, wire routes.

    ``master_key``, ``anchors``, ``store`` and ``clock`` default to what ``settings`` says
    (pass them to embed the service or to test it). ``anchors`` is the AMD anchors (a
    :class:`~veritee.trust.roots.TrustAnchors`) or anchors per vendor; ``collateral``
    (per vendor) is used beside what the settings' directories hold.
    """
    store = store or open_store(settings.database_url,
                                connect_timeout=settings.db_connect_timeout,
                                statement_timeout_ms=settings.db_statement_timeout_ms)
    master = master_key or service_master_key(settings)
    # Everything stored is under the data key (wrapped by the master key); the row MACs and
    # the audit chain are keyed from it, and every read of the trust state is checked.
    try:
        data = load_data_key(store, master, now=clock())
    finally:
        if master_key is None and hasattr(master, "close"):
            master.close()  # an HSM session is needed only for this unwrap
    store.integrity = StateIntegrity(data.key)
    signing = load_signing_key(store, data, alg=settings.ear_alg, now=clock())
    metrics = Metrics()
    broker = Broker(settings=settings, store=store, master=data, signing_key=signing,
                    anchors=anchors or _default_anchors(settings), clock=clock,
                    metrics=metrics, collateral=collateral)
    app = FastAPI(title="veritee verifier and key broker", version=__version__,
                  description="Attestation-gated secret release (RFC 9334 roles): challenge, "
                  "attest (EAR results), resources (JWE to the TEE key), admin.")
    app.state.broker = broker
    app.state.settings = settings
    _install_error_handlers(app)
    _install_middleware(app, metrics, settings)
    from veritee.service._reqlog import RequestContext

    app.add_middleware(RequestContext)  # outermost: the request id spans the whole request
    from veritee.service._ui import router as console

    app.include_router(console)  # the web console at /ui (docs/operations.md)
    _routes(app)
    _admin_routes(app)
    app.include_router(kbs_router)  # /kbs/v0: the CoCo KBS protocol (issue 13)
    log_event("service.start", settings=settings.public_view(), kid=signing.kid,
              master_key_id=master.key_id)
    return app


def _json(body: dict[str, Any], *, headers: dict[str, str] | None = None) -> Response:
    """``body`` as a JSON response, encoded once (the broker's ``_json_bytes``: orjson, with
    ``json`` for what orjson refuses). A route that returns a dict goes through FastAPI's
    response model instead: the dict validated (for a plain ``def`` route in a second
    worker-thread hop) and serialised twice, which cost an exchange 0.2-0.3 ms of server CPU
    (issue 14)."""
    return Response(_json_bytes(body), media_type="application/json", headers=headers)


# What the OpenAPI document said of these routes when they returned dicts.
_OBJECT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": {"type": "object"}}}}}


def _routes(app: FastAPI) -> None:
    @app.post("/v1/challenge", tags=["attestation"], responses=_OBJECT)
    async def challenge(broker: BrokerDep) -> Response:
        """Issue a single-use nonce; it expires after ``nonce_ttl`` seconds."""
        from veritee._decode import b64url
        from veritee.service.core import _iso

        # On the event loop, no worker thread: a challenge is an HMAC-tagged nonce with no
        # database access (Broker.challenge). Were it to block, this must become a plain def.
        c = broker.challenge()
        return _json({"nonce": b64url(c.nonce), "expires_at": _iso(c.expires_at),
                      "expires_in": broker.settings.nonce_ttl})

    @app.post("/v1/attest", tags=["attestation"], responses=_OBJECT)
    def attest(body: AttestRequest, broker: BrokerDep) -> Response:
        """Verify evidence bound to a nonce and a TEE key; return an EAR (JWT)."""
        if body.attached is not None and body.cert_table is not None:
            raise InvalidRequest("attached, cert_table: give one (cert_table is the older name)")
        out = broker.attest(body.evidence, body.attached if body.attached is not None
                            else body.cert_table, body.runtime_data.nonce,
                            body.runtime_data.key, scheme=body.scheme,
                            additional=[item.model_dump() for item in
                                        body.additional_evidence or ()])
        return _json({"token": out.token, "status": out.result.status,
                      "expires_at": out.result.claims["exp"],
                      "trustworthiness_vector": out.result.submod["ear.trustworthiness-vector"],
                      "appraisal_policy_id": out.result.submod["ear.appraisal-policy-id"],
                      "submods": {name: {"status": sub["ear.status"],
                                         "appraisal_policy_id": sub["ear.appraisal-policy-id"]}
                                  for name, sub in out.result.submods.items()}})

    @app.get("/v1/resources/{path:path}", tags=["attestation"], responses=_OBJECT)
    def resource(path: str, request: Request) -> Response:
        """Release a secret, encrypted to the TEE key, if this resource's policy passes."""
        release, version = get_broker(request).release(path, bearer(request))
        return _json({"resource": path, "version": version, "release": release,
                      "enc": "JWS compact (EAR signing key, RFC 7515) over a JWE compact "
                             "(ECDH-ES + A256GCM, RFC 7516, RFC 7518 4.6)"},
                     headers={"Cache-Control": "no-store"})

    @app.get("/v1/jwks", tags=["attestation"], responses=_OBJECT)
    @app.get("/.well-known/jwks.json", tags=["attestation"], include_in_schema=False)
    def jwks(broker: BrokerDep) -> Response:
        """The public keys EAR tokens are signed with (RFC 7517 JWK Set)."""
        return _json(broker.jwks())

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz(broker: BrokerDep) -> Response:
        """Readiness: the database answers and the schema is current."""
        try:
            version = broker.store.schema_version()
        except Exception as exc:
            log_event("readyz.unavailable", logging.WARNING, error=type(exc).__name__)
            raise DatabaseUnavailable("readyz: " + type(exc).__name__) from None
        return JSONResponse({"status": "ready", "schema_version": version,
                             "database": broker.store.dialect, "kid": broker.signing_key.kid})

    @app.get("/metrics", tags=["operations"])
    def metrics(broker: BrokerDep) -> Response:
        """Prometheus metrics: attestations, verdicts, releases, latency."""
        return Response(broker.metrics.exposition(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")


def _admin_routes(app: FastAPI) -> None:
    p = "/v1/admin"

    @app.get(f"{p}/policies", tags=["admin"])
    def list_policies(_: ReaderActor, broker: BrokerDep) -> dict[str, Any]:
        """Appraisal policy ids."""
        return broker.list_policies()

    @app.get(f"{p}/policies/{{policy_id}}", tags=["admin"])
    def get_policy(policy_id: str, _: ReaderActor, broker: BrokerDep) -> dict[str, Any]:
        """One appraisal policy (with the scheme it is for)."""
        return broker.get_policy(policy_id)

    @app.put(f"{p}/policies/{{policy_id}}", tags=["admin"])
    def put_policy(policy_id: str, body: dict[str, Any], actor: AdminActor,
                   broker: BrokerDep, response: Response) -> dict[str, Any]:
        """Create or replace an appraisal policy ``{scheme?, ...that scheme's policy
        fields}`` (scheme default ``sevsnp``); a bad key is a 400 naming it."""
        doc, created = broker.put_policy(actor, policy_id, body)
        response.status_code = 201 if created else 200
        return doc

    @app.delete(f"{p}/policies/{{policy_id}}", tags=["admin"], status_code=204)
    def delete_policy(policy_id: str, actor: AdminActor, broker: BrokerDep) -> None:
        """Delete an appraisal policy."""
        broker.delete(actor, "policy", policy_id)

    @app.get(f"{p}/reference-values", tags=["admin"])
    def list_refs(_: ReaderActor, broker: BrokerDep) -> dict[str, Any]:
        """Reference values (accepted measurements, per scheme)."""
        return {"reference_values": broker.list_references()}

    @app.put(f"{p}/reference-values/{{name}}", tags=["admin"])
    def put_ref(name: str, body: dict[str, Any], actor: AdminActor, broker: BrokerDep,
                response: Response) -> dict[str, Any]:
        """Create or replace a reference value ``{kind: "measurement", value: hex,
        scheme?}`` (scheme default ``sevsnp``; the value's size is that scheme's)."""
        created = broker.put_reference(actor, name, body)
        response.status_code = 201 if created else 200
        return {"name": name}

    @app.delete(f"{p}/reference-values/{{name}}", tags=["admin"], status_code=204)
    def delete_ref(name: str, actor: AdminActor, broker: BrokerDep) -> None:
        """Delete a reference value."""
        broker.delete(actor, "reference", name)

    @app.get(f"{p}/resources", tags=["admin"])
    def list_resources(_: ReaderActor, broker: BrokerDep) -> dict[str, Any]:
        """Resources with their policies and versions (never the secrets)."""
        return {"resources": broker.list_resources()}

    @app.put(f"{p}/resources/{{path:path}}", tags=["admin"])
    def put_resource(path: str, body: dict[str, Any], actor: AdminActor,
                     broker: BrokerDep) -> dict[str, Any]:
        """Create or update a resource ``{secret: base64, policy: {...}}``."""
        return {"path": path, "version": broker.put_resource(actor, path, body)}

    @app.delete(f"{p}/resources/{{path:path}}", tags=["admin"], status_code=204)
    def delete_resource(path: str, actor: AdminActor, broker: BrokerDep) -> None:
        """Delete a resource."""
        broker.delete(actor, "resource", path)

    @app.get(f"{p}/tokens", tags=["admin"])
    def list_tokens(_: AdminActor, broker: BrokerDep) -> dict[str, Any]:
        """Admin tokens (metadata only)."""
        return {"tokens": broker.list_tokens()}

    @app.post(f"{p}/tokens", tags=["admin"], status_code=201)
    def create_token(body: dict[str, Any], actor: AdminActor,
                     broker: BrokerDep) -> dict[str, str]:
        """Create a token ``{name, role}``; the token is returned only this once."""
        token_id, token = broker.create_token(actor, body)
        return {"token_id": token_id, "token": token}

    @app.delete(f"{p}/tokens/{{token_id}}", tags=["admin"], status_code=204)
    def revoke_token(token_id: str, actor: AdminActor, broker: BrokerDep) -> None:
        """Revoke a token."""
        broker.revoke_token(actor, token_id)

    @app.post(f"{p}/signing-keys/rotate", tags=["admin"])
    def rotate_signing_key(actor: AdminActor, broker: BrokerDep) -> dict[str, Any]:
        """Make a fresh EAR signing key current; the old one stays in the JWKS until
        ``retired_at + token_ttl`` (its tokens' lifetime), then leaves it. Audited."""
        return broker.rotate_signing_key(actor)

    @app.get(f"{p}/audit", tags=["admin"])
    def audit(_: ReaderActor, broker: BrokerDep, after: int = 0,
              limit: int = 100) -> dict[str, Any]:
        """Audit entries after ``after`` (at most ``limit``, max 1000)."""
        return {"entries": broker.audit_entries(after, limit)}

    @app.get(f"{p}/audit/verify", tags=["admin"])
    def audit_verify(_: ReaderActor, broker: BrokerDep) -> dict[str, Any]:
        """Check the whole hash chain."""
        return broker.audit_verify()
