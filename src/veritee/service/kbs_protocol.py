"""The Confidential Containers KBS protocol (Trustee RCAR, versions 0.1.0-0.4.0): a second front.

Guests that run CoCo's guest components (attestation-agent, confidential-data-hub,
``kbs-client``) speak Trustee's "Request-Challenge-Attestation-Response" protocol
(``docs/kbs_attestation_protocol.md`` in github.com/confidential-containers/trustee). This
router serves it under ``/kbs/v0`` over the same :class:`~veritee.service.core.Broker` as
``/v1``: the same nonce store (single use across both fronts and all replicas), appraisal
policy and reference values, resource policies, audit log, EAR tokens and metrics; a
resource stored at ``repo/type/tag`` is ``/v1/resources/repo/type/tag`` and
``/kbs/v0/resource/repo/type/tag``.

* ``POST /kbs/v0/auth`` ``Request {version, tee, extra-params}`` -> ``Challenge {nonce,
  extra-params}`` and ``Set-Cookie: kbs-session-id``. The version is any of
  :data:`~veritee.formats.coco.PROTOCOL_VERSIONS` (the session remembers which); the TEE is
  refused by name unless veritee has its evidence shape *and* its scheme is registered
  (:func:`veritee.schemes.names`, read per request). The nonce is the broker's
  (:meth:`Broker.challenge`: 32 bytes, standard base64 as Trustee writes it).
* ``POST /kbs/v0/attest`` (with the cookie) ``Attestation`` in the session version's shape
  (:func:`veritee.formats.coco.parse_attestation`) -> ``{token}`` (the EAR, signed as /v1
  signs it) and an attested session cookie.
* ``GET /kbs/v0/resource/<repository>/<type>/<tag>`` with the attested cookie or
  ``Authorization: Bearer <token>`` -> ``Response``: a flattened JWE to ``tee-pubkey``
  (:mod:`veritee.crypto.kbs_jwe`: EC, RSA-OAEP-256; RSA1_5 only with ``kbs_allow_rsa1_5``).
* Errors are kbs-types ``ErrorInformation`` ``{type: https://github.com/
  confidential-containers/kbs/errors/<Name>, detail}`` with 401 (not authenticated or
  attestation failed), 403 (policy denies) or 404 (no such resource/path), plus veritee's
  ``code`` (and ``failures`` for an appraisal) so the per-check explanation is not lost.

Binding: the protocol's, not /v1's (see :mod:`veritee.formats.coco`): the TEE carries
``H(runtime-data JSON)`` regularized to its binding field; init-data's digest is in HOSTDATA
(SEV-SNP) / MRCONFIGID (TDX). It is handed to the broker as the raw expected binding.
Composite evidence (``additional_evidence``, 0.3.0+): each device (an NVIDIA GPU) is a part of
its own, bound as Trustee's backend.rs binds it: ``H({nonce, tee-pubkey})`` (the runtime data
without the additional-evidence member) regularized to its scheme's binding size (the SPDM
requester nonce: 32 bytes); one EAR results, a submodule per attester.

Sessions are stateless across replicas: the cookie is the session (protocol version, nonce,
TEE, hash algorithm, expiry and, once attested, the EAR) sealed with AES-256-GCM under a key
derived (HKDF) from the service's data key, so any replica can open it and nobody else can
forge or read it. A challenge session can be attested once (the nonce is burnt in the shared
store); an attested session is worth exactly its EAR (a bearer token bound to the TEE key:
everything released is encrypted to that key).
"""

from __future__ import annotations

import base64
import json
import os
import time
import zlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from veritee._decode import b64url, load_json
from veritee.crypto.kbs_jwe import RSA1_5, encrypt_response
from veritee.errors import FormatError
from veritee.formats.coco import (
    HASH_ALGORITHMS,
    KNOWN_TEES,
    PROTOCOL_VERSIONS,
    TEE_SHAPES,
    AttestationMessage,
    CocoEvidence,
    additional_evidence,
    canonical_json,
    device_evidence,
    init_data_digest,
    parse_attestation,
    primary_evidence,
    regularize,
    runtime_data,
    tee_shape,
)
from veritee.service.core import Broker
from veritee.service.observability import fingerprint, log_event
from veritee.service.problems import Problem

__all__ = ["ERROR_TYPE_PREFIX", "SESSION_COOKIE", "KbsError", "router"]

ERROR_TYPE_PREFIX = "https://github.com/confidential-containers/kbs/errors/"
SESSION_COOKIE = "kbs-session-id"
# The sealed session with its EAR is ~3.4 KiB (EC key), ~3.8 KiB with an RSA-2048 key and
# ~4.9 KiB with an RSA-8192 one: above browsers' 4 KiB, which CoCo's HTTP clients do not
# apply; the service's 8 KiB header bound still holds.
_MAX_COOKIE = 6144
_SESSION_INFO = b"veritee kbs-session-id v1"

router = APIRouter(prefix="/kbs/v0", tags=["kbs (Confidential Containers)"])


class KbsError(Exception):
    """A refusal in the protocol's shape: HTTP status, ErrorInformation type name, detail."""

    def __init__(self, status: int, name: str, detail: str, **extra: Any) -> None:
        super().__init__(f"{name}: {detail}")
        self.status = status
        self.name = name
        self.detail = detail
        self.extra = extra

    def response(self) -> JSONResponse:
        """The kbs-types ``ErrorInformation`` body (plus veritee's explanation members)."""
        body = {"type": ERROR_TYPE_PREFIX + self.name, "detail": self.detail,
                "status": self.status, **self.extra}
        # The protocol document names RFC 7807 problem details as the error format.
        return JSONResponse(body, status_code=self.status, media_type="application/problem+json",
                            headers={"Cache-Control": "no-store"})


def _from_problem(problem: Problem, *, where: str) -> KbsError:
    """A broker refusal in the protocol's terms (the status the protocol document gives)."""
    extra: dict[str, Any] = {"code": problem.code}
    if "failures" in problem.extra:
        extra["failures"] = problem.extra["failures"]
    if where == "resource":
        if problem.status == 404:
            return KbsError(404, "ResourceNotFound", problem.detail, **extra)
        if problem.status == 403:
            return KbsError(403, "PolicyDeny", problem.detail, **extra)
        if problem.code == "request.invalid":
            return KbsError(404, "InvalidRequestPath", problem.detail, **extra)
        return KbsError(401, "TokenVerifierError", problem.detail, **extra)
    return KbsError(401, "AttestationError", problem.detail, **extra)


# -- sessions -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Session:
    version: str  # the protocol version of the Request (a PROTOCOL_VERSIONS key)
    nonce: str  # as sent in the Challenge (standard base64)
    tee: str
    hash_alg: str
    expires: float
    token: str | None = None


def _session_key(broker: Broker) -> AESGCM:
    key = HKDF(hashes.SHA256(), 32, salt=None, info=_SESSION_INFO).derive(broker.master.key)
    return AESGCM(key)


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _pack_token(token: str) -> str:
    """The EAR, compressed to fit a cookie: its JSON segments deflate to about a quarter.

    An EAR with its per-check trace is ~5.5 KiB; as base64 it barely compresses, so the
    three segments are decoded, length-prefixed and deflated (~1.5 KiB).
    """
    raw = b"".join(len(seg).to_bytes(4, "big") + seg
                   for seg in (_unb64url(part) for part in token.split(".")))
    return b64url(zlib.compress(raw, 9))


def _unpack_token(text: str) -> str:
    inflate = zlib.decompressobj()
    raw = inflate.decompress(_unb64url(text), 64 << 10)
    if inflate.unconsumed_tail:
        raise ValueError("token too large")
    parts, at = [], 0
    while at < len(raw):
        size = int.from_bytes(raw[at:at + 4], "big")
        parts.append(b64url(raw[at + 4:at + 4 + size]))
        at += 4 + size
    return ".".join(parts)


def _seal_session(broker: Broker, session: _Session) -> str:
    body = json.dumps({"v": session.version, "n": session.nonce, "t": session.tee,
                       "h": session.hash_alg, "e": session.expires,
                       "k": None if session.token is None else _pack_token(session.token)
                       }).encode()
    iv = os.urandom(12)
    return b64url(iv + _session_key(broker).encrypt(iv, body, _SESSION_INFO))


def _open_session(broker: Broker, request: Request) -> _Session | None:
    """The session of the request's cookie; None without a cookie; KbsError if invalid."""
    text = request.cookies.get(SESSION_COOKIE)
    if text is None:
        return None
    try:
        if len(text) > _MAX_COOKIE:
            raise ValueError
        raw = _unb64url(text)
        body = json.loads(_session_key(broker).decrypt(raw[:12], raw[12:], _SESSION_INFO))
        session = _Session(version=str(body["v"]), nonce=str(body["n"]), tee=str(body["t"]),
                           hash_alg=str(body["h"]),
                           expires=float(body["e"]),
                           token=None if body["k"] is None else _unpack_token(body["k"]))
        if session.version not in PROTOCOL_VERSIONS:
            raise ValueError
    except (ValueError, KeyError, TypeError, InvalidTag, zlib.error):
        raise KbsError(401, "AttestationError", f"{SESSION_COOKIE}: not a session this "
                       "service issued (request a new challenge from /kbs/v0/auth)",
                       code="kbs.session.invalid") from None
    if session.expires <= broker.clock():
        raise KbsError(401, "AttestationError", f"{SESSION_COOKIE}: the session expired "
                       "(request a new challenge from /kbs/v0/auth)", code="kbs.session.expired")
    return session


def _set_cookie(response: Response, broker: Broker, request: Request,
                session: _Session) -> None:
    response.set_cookie(SESSION_COOKIE, _seal_session(broker, session),
                        max_age=max(1, int(session.expires - broker.clock())), path="/kbs",
                        httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


# -- request parsing ------------------------------------------------------------------------
def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    """A JSON object through the bounded decoder (size, depth, duplicate members, integers)."""
    try:
        value = load_json(raw, structure=what, max_size=64 << 10)
    except FormatError as exc:
        raise KbsError(401, "AttestationError", str(exc)[:300], code="request.invalid") from None
    if not isinstance(value, dict):
        raise KbsError(401, "AttestationError", f"{what}: want a JSON object",
                       code="request.invalid")
    return value


def _select_hash(extra: object) -> str:
    """SHA-384 (Trustee's default) unless the client lists algorithms without it."""
    offered = extra.get("supported-hash-algorithms") if isinstance(extra, dict) else None
    if not isinstance(offered, list) or not offered:
        return "sha384"
    names = [str(a).lower() for a in offered]
    for name in ("sha384", "sha512", "sha256"):
        if name in names:
            return name
    raise KbsError(401, "AttestationError", "extra-params.supported-hash-algorithms: none of "
                   f"{names[:8]} is supported (sha256, sha384, sha512)", code="kbs.hash")


def _unavailable(scheme: str, broker: Broker) -> str | None:
    """Why ``scheme`` evidence cannot be verified now, or None (registry read per call)."""
    from veritee.schemes import names

    # The broker verifies every registered scheme (attest.Verifier over the registry).
    if scheme not in names():
        return f"its evidence is {scheme!r} evidence, and no {scheme!r} scheme is registered"
    return None


def _check_tee(tee: str, broker: Broker, *, where: str = "tee") -> str:
    """The veritee scheme for kbs-types TEE ``tee``; KbsError naming it if not verifiable."""
    shape = tee_shape(tee)
    why = _unavailable(shape.scheme, broker) if shape is not None else (
        "a kbs-types TEE whose evidence veritee has no shape for" if tee in KNOWN_TEES
        else "not a kbs-types TEE name")
    if shape is not None and why is None:
        return shape.scheme
    ok = [s.names[0] for s in TEE_SHAPES if _unavailable(s.scheme, broker) is None]
    raise KbsError(401, "AttestationError", f"{where} {tee[:20]!r}: {why} (verifiable now: "
                   f"{', '.join(ok)})", code="kbs.tee.unsupported")


@router.post("/auth")
async def auth(request: Request) -> Response:
    """RCAR Request -> Challenge, with a new session cookie."""
    broker: Broker = request.app.state.broker
    try:
        body = _json_object(await request.body(), "Request")
        version, tee = body.get("version"), body.get("tee")
        if "extra-params" not in body or not isinstance(version, str) or not isinstance(tee,
                                                                                      str):
            raise KbsError(401, "AttestationError", "Request: want {version, tee, "
                           "extra-params}", code="request.invalid")
        if version not in PROTOCOL_VERSIONS:
            raise KbsError(401, "AttestationError", "KBS Client Protocol Version Mismatch: "
                           f"expect one of {', '.join(PROTOCOL_VERSIONS)} while the request "
                           f"is {version[:20]}", code="kbs.version")
        proto = PROTOCOL_VERSIONS[version]
        shape = tee_shape(tee)
        if shape is not None and shape.device:
            raise KbsError(401, "AttestationError", f"tee {tee[:20]!r}: a device, attested only as "
                           "additional evidence of a CPU TEE", code="kbs.tee.unsupported")
        _check_tee(tee, broker)
        # Before 0.2.0 the Challenge's extra-params is a string and SHA-384 is fixed.
        alg = "sha384" if proto.challenge_extra_string else _select_hash(body["extra-params"])
        challenge = await run_in_threadpool(broker.challenge)
    except KbsError as err:
        log_event("kbs.auth.refused", code=err.extra.get("code"))
        return err.response()
    nonce = base64.b64encode(challenge.nonce).decode()
    extra: object = "" if proto.challenge_extra_string else {"selected-hash-algorithm": alg}
    response = JSONResponse({"nonce": nonce, "extra-params": extra},
                            headers={"Cache-Control": "no-store"})
    _set_cookie(response, broker, request, _Session(
        version=version, nonce=nonce, tee=tee, hash_alg=alg, expires=challenge.expires_at))
    return response


def _refuse_early(broker: Broker, session: _Session, err: KbsError) -> KbsError:
    """Burn the session's nonce and audit a refusal made before verification started."""
    raw = base64.b64decode(session.nonce)
    problem = Problem(401, str(err.extra.get("code", "request.invalid")), err.detail)
    with broker.store.transaction() as tx:
        broker.consume_nonce(tx, raw, broker.clock())
        broker._refuse_attest(problem, f"kbs-session:{fingerprint(raw)}",
                              {"nonce": fingerprint(raw), "front": "kbs", "tee": session.tee},
                              tx)
    return err


@dataclass(frozen=True)
class _Prepared:
    """An Attestation checked against its session: what the broker verifies."""

    message: AttestationMessage
    primary: CocoEvidence
    binding: bytes  # the primary's expected binding (its scheme's binding_size bytes)
    devices: tuple[tuple[CocoEvidence, bytes], ...]  # (device part, its expected binding)
    host_data: bytes | None
    mrconfigid: bytes | None


def _binding_size(scheme: str) -> int:
    """Bytes of challenge ``scheme`` evidence carries (64 for report data until registered)."""
    from veritee.schemes import get, names

    return get(scheme).binding_size if scheme in names() else 64


def _digest(session: _Session, body: dict[str, object]) -> bytes:
    return HASH_ALGORITHMS[session.hash_alg](canonical_json(body))


def _prepare(broker: Broker, session: _Session, raw: bytes) -> _Prepared:
    """Parse and check the Attestation (FormatError/KbsError before any verification)."""
    msg = parse_attestation(raw, PROTOCOL_VERSIONS[session.version])
    if msg.nonce is not None and msg.nonce != session.nonce:
        raise KbsError(401, "AttestationError", "the nonce in the handshake session is "
                       "different from the client side in KBS protocol's Attestation "
                       "message", code="kbs.nonce.mismatch")
    if msg.pubkey["kty"] == "RSA" and msg.pubkey["alg"] == RSA1_5 and \
            not broker.settings.kbs_allow_rsa1_5:
        raise KbsError(401, "AttestationError", "tee-pubkey.alg RSA1_5 (PKCS #1 v1.5, "
                       "deprecated): refused unless the service sets kbs_allow_rsa1_5; "
                       "use RSA-OAEP-256 or ECDH-ES+A256KW", code="kbs.key.rsa1_5")
    primary = primary_evidence(session.tee, msg.primary)
    # Trustee backend.rs: the primary's runtime data names the additional-evidence string
    # (0.3.0+); each device's is {nonce, tee-pubkey} alone.
    binding = regularize(_digest(session, runtime_data(session.nonce, msg.pubkey,
                                                       msg.additional)),
                         _binding_size(primary.scheme))
    devices = []
    for tee, evidence in additional_evidence(msg.additional or ""):
        _check_tee(tee, broker, where="additional_evidence")
        part = device_evidence(tee, evidence)
        # Regularized to the field the device carries it in (an SPDM requester nonce: 32).
        devices.append((part, regularize(_digest(session, runtime_data(session.nonce,
                                                                       msg.pubkey)),
                                         _binding_size(part.scheme))))
    host_data = mrconfigid = None
    if msg.init_data is not None:
        digest = init_data_digest(msg.init_data)
        if primary.scheme == "sevsnp":
            host_data = regularize(digest, 32)  # HOSTDATA, ABI 56860 Table 23
            with broker.store.transaction(write=False) as tx:
                pinned = broker._appraisal_policy(tx).host_data
            if pinned is not None and pinned != host_data:
                # The appraisal policy's own HOSTDATA pin always holds.
                raise KbsError(401, "AttestationError", "init-data: its digest "
                               f"{host_data.hex()} is not the HOSTDATA the appraisal "
                               f"policy requires ({pinned.hex()})",
                               code="kbs.init_data.policy")
        elif primary.scheme == "tdx":
            mrconfigid = regularize(digest, 48)  # MRCONFIGID, TDX module ABI TDREPORT
        else:
            # Fail closed: a digest this service cannot compare is not silently dropped.
            raise KbsError(401, "AttestationError", f"init-data: not supported for tee "
                           f"{session.tee!r} (only snp HOSTDATA and tdx MRCONFIGID carry it)",
                           code="kbs.init_data.unsupported")
    return _Prepared(msg, primary, binding, tuple(devices), host_data, mrconfigid)


def _attest(broker: Broker, session: _Session, raw_body: bytes) -> str:
    try:
        prepared = _prepare(broker, session, raw_body)
    except FormatError as exc:
        raise _refuse_early(broker, session, KbsError(401, "AttestationError", str(exc),
                                                      code="evidence.malformed")) from None
    except KbsError as err:
        raise _refuse_early(broker, session, err) from None
    part, pubkey = prepared.primary, prepared.message.pubkey
    nonce = base64.b64decode(session.nonce)
    # The scheme by name (never recognised from the bytes: the session's TEE, checked
    # against the registry by _check_tee, decides what the evidence must be).
    from veritee.attest import EvidencePart

    # Init-data digests pinned per request, in each scheme's policy keys.
    overrides: dict[str, dict[str, Any]] = {}
    if prepared.host_data is not None:
        overrides["sevsnp"] = {"host_data": prepared.host_data.hex()}
    if prepared.mrconfigid is not None:
        overrides["tdx"] = {"mrconfigid": [prepared.mrconfigid.hex()]}
    try:
        # Composite evidence: the primary first, then each device, each with its own binding.
        parts = [EvidencePart(p.data, p.scheme, p.attached)
                 for p in (part, *(device for device, _ in prepared.devices))]
        bindings = [prepared.binding, *(bound for _, bound in prepared.devices)]
        out = broker.attest_parts(parts, nonce, pubkey, binding=bindings, front="kbs",
                                  policy_overrides=overrides or None,
                                  rsa_keys=pubkey["kty"] == "RSA")
    except Problem as problem:
        raise _from_problem(problem, where="attest") from None
    token: str = out.token
    return token


@router.post("/attest")
async def attest(request: Request) -> Response:
    """RCAR Attestation -> the attestation token (an EAR), and an attested session."""
    broker: Broker = request.app.state.broker
    try:
        session = _open_session(broker, request)
        if session is None:
            raise KbsError(401, "AttestationError", "cookie not found (POST /kbs/v0/auth "
                           "first)", code="kbs.session.missing")
        raw = await request.body()
        if session.token is not None:
            # As Trustee does: an attested session answers with its token again.
            token = session.token
        else:
            token = await run_in_threadpool(_attest, broker, session, raw)
    except KbsError as err:
        log_event("kbs.attest.refused", code=err.extra.get("code"))
        return err.response()
    claims = broker.verify_token(token).claims
    response = JSONResponse({"token": token}, headers={"Cache-Control": "no-store"})
    _set_cookie(response, broker, request, _Session(
        version=session.version, nonce=session.nonce, tee=session.tee,
        hash_alg=session.hash_alg,
        expires=float(claims.get("exp", time.time())), token=token))
    return response


def _kbs_sealer(*, allow_rsa1_5: bool, legacy_aad: bool) -> Any:
    """The release as the protocol's Response, to the EAR's ``cnf`` key (= tee-pubkey)."""
    def seal(secret: bytes, cnf: dict[str, Any], *, path: str, version: int, jti: str) -> str:
        # The veritee.* members name the resource, its version and the EAR's jti; they are in
        # the protected header, so authenticated as AAD, and ignored by CoCo clients.
        header = {"veritee.jti": jti, "veritee.resource": path, "veritee.version": version}
        return json.dumps(encrypt_response(secret, cnf, header, allow_rsa1_5=allow_rsa1_5,
                                           legacy_aad=legacy_aad))
    return seal


@router.get("/resource/{rest:path}")
async def resource(rest: str, request: Request) -> Response:
    """A resource as the protocol's Response (JWE to the TEE key), if its policy passes."""
    broker: Broker = request.app.state.broker
    try:
        parts = rest.split("/")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise KbsError(404, "InvalidRequestPath", f"Request path {rest[:100]!r} is "
                           "invalid: want <repository>/<type>/<tag>", code="request.invalid")
        path = "/".join([parts[0] or "default", parts[1], parts[2]])
        value = request.headers.get("authorization", "")
        scheme, _, cred = value.partition(" ")
        token = cred.strip() if scheme.lower() == "bearer" and cred.strip() else None
        session = None
        if token is None:
            session = _open_session(broker, request)
            token = session.token if session is not None else None
        if token is None:
            raise KbsError(401, "TokenNotFound", "Attestation Token not found: attest first "
                           "(cookie kbs-session-id) or send Authorization: Bearer <token>",
                           code="token.missing")
        # A 0.1.x session gets the Response form its client reads (an aad member); a bearer
        # token alone says no version, so it gets the RFC 7516 form.
        seal = _kbs_sealer(allow_rsa1_5=broker.settings.kbs_allow_rsa1_5,
                           legacy_aad=session is not None
                           and PROTOCOL_VERSIONS[session.version].legacy_aad)
        try:
            sealed, _version = await run_in_threadpool(
                lambda: broker.release(path, token, seal=seal))
        except Problem as problem:
            raise _from_problem(problem, where="resource") from None
    except KbsError as err:
        log_event("kbs.resource.refused", code=err.extra.get("code"))
        return err.response()
    return Response(sealed, media_type="application/json",
                    headers={"Cache-Control": "no-store"})
