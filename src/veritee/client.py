"""Clients of the verifier / key-broker service, for both RATS models (RFC 9334).

Attester side (inside the TEE), passport model::

    client = AttesterClient("https://kbs.example", guest)   # guest: an evidence source
    passport = client.attest()                              # challenge -> evidence -> EAR
    secret = client.get_resource("db/password", passport)   # JWE decrypted with the TEE key

Relying party, passport model: the attester hands over ``passport.token``;
:func:`verify_passport` checks it offline against the service's published JWKS (fetched once
with :func:`fetch_jwks`): signature, issuer (required), expiry, status, and that it is bound
to the key the attester proves it holds (required: without it a passport is a bearer token).

Releases are authenticated (issue 16 finding 6): the service answers a resource request with
a JWS signed by its EAR key over the JWE, and the JWE's protected header names the resource
and the ``jti`` of the EAR it answers; :func:`decrypt_release` checks all three before it
decrypts. The service's URL must be ``https://``: plain HTTP only to a loopback address and
only with ``dev_mode=True``.

Relying party, background-check model: :class:`RelyingParty` gets a challenge from the
verifier, the attester answers it with evidence, and the relying party posts that evidence
to the verifier itself (:meth:`RelyingParty.appraise`) and checks the result.

Every key the TEE uses here is ephemeral: generated per exchange and never written out.
"""

from __future__ import annotations

import base64
import ipaddress
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc import jwe, jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from veritee._decode import b64url
from veritee.errors import ConfigError, VerificationError
from veritee.results import SIGNING_ALGORITHMS, EarResult, verify_ear

RELEASE_TYP = "veritee-release+jws"  # the service's release JWS "typ" (service.core)

__all__ = [
    "AttesterClient",
    "EvidenceSource",
    "Passport",
    "RelyingParty",
    "ServiceRefused",
    "check_service_url",
    "decrypt_release",
    "fetch_jwks",
    "verify_passport",
]


class EvidenceSource(Protocol):
    """Anything that returns evidence bound to ``report_data`` and what it attaches (an
    SEV-SNP certificate table, a device chain; empty when nothing).

    A source may also carry ``scheme`` (its scheme name, sent so the service need not
    recognise the bytes) and ``binding_size`` (bytes of challenge its evidence carries: 64
    for REPORT_DATA, 32 for a TPM's qualifying data or an NVIDIA nonce; default 64).
    """

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]: ...


def _bound(source: EvidenceSource, nonce: bytes, key: ec.EllipticCurvePrivateKey
           ) -> dict[str, Any]:
    """``{evidence, scheme?, attached?}`` of ``source`` for this challenge: the binding is
    :func:`veritee.schemes.expected_binding` at the source's ``binding_size``."""
    from veritee.schemes import expected_binding

    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    size = int(getattr(source, "binding_size", 64))
    report, attached = source.extended_report(expected_binding(nonce, spki, size))
    scheme = getattr(source, "scheme", None)
    return {"evidence": base64.b64encode(report).decode(),
            **({"scheme": scheme} if isinstance(scheme, str) else {}),
            **({"attached": base64.b64encode(attached).decode()} if attached else {})}


class ServiceRefused(VerificationError):  # noqa: N818 - a refusal, named as callers see it
    """The service answered with a problem+json refusal; ``problem`` is its body."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        super().__init__(str(problem.get("code", f"http.{status}")),
                         f"HTTP {status}: {problem.get('detail', '')}")


def check_service_url(url: str, *, dev_mode: bool = False) -> str:
    """``url`` if it is https, or http to a loopback address with ``dev_mode``; else raise.

    The secret's confidentiality rests on the TEE key, but which service answered (its JWKS,
    its refusals) rests on TLS: plain HTTP would let anyone on the path play the service.
    """
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url.rstrip("/")
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if loopback and dev_mode:
            return url.rstrip("/")
        why = "only to a loopback address with dev_mode=True" if loopback or not dev_mode \
            else "only to a loopback address"
        raise ConfigError(f"service url {url!r}: plain http is allowed {why}; use https://")
    raise ConfigError(f"service url {url!r}: want an https:// URL")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _check(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:200]}
    if response.status_code >= 400:
        raise ServiceRefused(response.status_code, body if isinstance(body, dict) else {})
    if not isinstance(body, dict):
        raise VerificationError("client.response", "the service answered with a non-object")
    return body


@dataclass(frozen=True)
class Passport:
    """An EAR token and the ephemeral TEE key it is bound to (``cnf``)."""

    token: str
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    status: str = "affirming"
    jti: str = ""


def evidence_for(source: EvidenceSource, nonce: bytes, key: ec.EllipticCurvePrivateKey, *,
                 devices: Sequence[EvidenceSource] = ()) -> dict[str, Any]:
    """The /v1/attest body: the source's evidence bound to the challenge (REPORT_DATA =
    SHA-512(nonce || SPKI(key)) for 64 bytes, SHA-256 for 32), and each of ``devices``
    (GPUs beside the CPU) bound to the same challenge as ``additional_evidence``."""
    body: dict[str, Any] = {
        **_bound(source, nonce, key),
        "runtime_data": {"nonce": b64url(nonce),
                         "key": ECKey.import_key(key.public_key()).as_dict(private=False)}}
    if devices:
        body["additional_evidence"] = [_bound(d, nonce, key) for d in devices]
    return body


class AttesterClient:
    """The attester's side of challenge -> attest -> resource over HTTP."""

    def __init__(self, url: str, source: EvidenceSource, *, timeout: float = 10.0,
                 http: httpx.Client | None = None, dev_mode: bool = False,
                 jwks: Mapping[str, Any] | None = None, issuer: str = "veritee",
                 devices: Sequence[EvidenceSource] = ()) -> None:
        self.url = check_service_url(url, dev_mode=dev_mode)
        self.source = source
        self.devices = tuple(devices)
        self.issuer = issuer
        self._jwks = dict(jwks) if jwks is not None else None
        self._http = http or httpx.Client(timeout=timeout)
        self._own = http is None

    def jwks(self) -> dict[str, Any]:
        """The service's EAR keys: as pinned by the caller, or fetched once over TLS."""
        if self._jwks is None:
            self._jwks = _check(self._http.get(f"{self.url}/v1/jwks"))
        return self._jwks

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._own:
            self._http.close()

    def __enter__(self) -> AttesterClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def challenge(self) -> bytes:
        """A fresh nonce from the service."""
        body = _check(self._http.post(f"{self.url}/v1/challenge"))
        return _unb64url(str(body["nonce"]))

    def attest(self, *, curve: ec.EllipticCurve | None = None) -> Passport:
        """Challenge, make an ephemeral key, produce bound evidence, get an EAR."""
        nonce = self.challenge()
        key = ec.generate_private_key(curve or ec.SECP384R1())
        body = _check(self._http.post(f"{self.url}/v1/attest",
                                      json=evidence_for(self.source, nonce, key,
                                                        devices=self.devices)))
        token = str(body.get("token"))
        # The EAR must be the service's (its key, its issuer) and bound to our key.
        result = verify_ear(token, self.jwks(), issuer=self.issuer,
                            accept=("affirming", "warning"))
        cnf = result.cnf_jwk
        if cnf is None or ECKey.import_key(cnf).thumbprint() != \
                ECKey.import_key(key.public_key()).thumbprint():
            raise VerificationError("client.ear", "the EAR is not bound to this attester's key")
        return Passport(token=token, key=key, status=result.status,
                        jti=str(result.claims.get("jti", "")))

    def get_resource(self, path: str, passport: Passport) -> bytes:
        """Fetch a resource with the passport and decrypt it with the passport's key."""
        response = self._http.get(f"{self.url}/v1/resources/{quote(path)}",
                                  headers={"Authorization": f"Bearer {passport.token}"})
        body = _check(response)
        jti = passport.jti or str(verify_ear(passport.token, self.jwks(), issuer=self.issuer,
                                             accept=("affirming", "warning")).claims["jti"])
        return decrypt_release(str(body.get("release")), passport.key, jwks=self.jwks(),
                               path=path, jti=jti)

    def fetch(self, path: str) -> bytes:
        """The whole exchange for one resource."""
        return self.get_resource(path, self.attest())


def decrypt_release(release: str, key: ec.EllipticCurvePrivateKey, *,
                    jwks: Mapping[str, Any], path: str, jti: str) -> bytes:
    """Check and decrypt a released secret; raise :class:`VerificationError` on any doubt.

    In order: the JWS (RFC 7515) is signed by a key in the service's ``jwks`` with the
    release ``typ``; its payload is a compact JWE (ECDH-ES + A256GCM) that decrypts with the
    TEE key ``key``; the JWE protected header (authenticated as GCM AAD) names ``path`` and
    the ``jti`` of the EAR this release answers. Anyone can encrypt to the EAR's public
    ``cnf`` key, so decryption alone proves nothing about who sent the secret.
    """
    if not isinstance(release, str) or release.count(".") != 2:
        raise VerificationError("client.release", "the release is not a compact JWS")
    try:
        keys = KeySet.import_key_set(dict(jwks))  # type: ignore[arg-type]
        signed = jws.deserialize_compact(release, keys, algorithms=list(SIGNING_ALGORITHMS))
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise VerificationError("client.release", "the release is not signed by the "
                                f"service's key ({type(exc).__name__})") from None
    if signed.protected.get("typ") != RELEASE_TYP:
        raise VerificationError("client.release", "the signed object is not a release")
    try:
        obj = jwe.decrypt_compact(bytes(signed.payload).decode("ascii"),
                                  ECKey.import_key(key), registry=jwe.JWERegistry(
                                      algorithms=["ECDH-ES", "A256GCM"],
                                      strict_check_header=False))
    except (JoseError, ValueError) as exc:
        raise VerificationError("client.jwe", f"released secret does not decrypt "
                                f"({type(exc).__name__})") from None
    if obj.protected.get("veritee.resource") != path:
        raise VerificationError("client.jwe", "the released secret is for another resource")
    if obj.protected.get("veritee.jti") != jti:
        raise VerificationError("client.jwe", "the release answers another EAR (jti)")
    if obj.plaintext is None:
        raise VerificationError("client.jwe", "empty JWE")
    return bytes(obj.plaintext)


def fetch_jwks(url: str, *, timeout: float = 10.0, dev_mode: bool = False) -> dict[str, Any]:
    """The service's published EAR keys (fetch once over TLS, then verify offline)."""
    url = check_service_url(url, dev_mode=dev_mode)
    with httpx.Client(timeout=timeout) as http:
        return _check(http.get(f"{url}/v1/jwks"))


def verify_passport(token: str, jwks: Mapping[str, Any], *, issuer: str,
                    holder_key: ec.EllipticCurvePublicKey, now: float | None = None,
                    require_status: str = "affirming") -> EarResult:
    """Relying party, passport model: verify an EAR without contacting the verifier.

    Signature against ``jwks``, ``iss`` (required), ``exp``; the status must be
    ``require_status``; the token must be bound (``cnf.jwk``) to ``holder_key`` (required),
    which the attester proves it holds in the relying party's own protocol (e.g. a TLS
    handshake): a passport without that proof would be a bearer token anyone could replay.
    """
    if not issuer or not isinstance(holder_key, ec.EllipticCurvePublicKey):
        raise ConfigError("verify_passport: issuer and holder_key are required")
    result = verify_ear(token, jwks, now=time.time() if now is None else now, issuer=issuer,
                        accept=(require_status,))
    cnf = result.cnf_jwk
    want = ECKey.import_key(holder_key).thumbprint()
    if cnf is None or ECKey.import_key(cnf).thumbprint() != want:
        raise VerificationError("ear.cnf", "the token is not bound to the presenter's key")
    return result


class RelyingParty:
    """Background-check model: the relying party sends the attester's evidence itself."""

    def __init__(self, url: str, *, issuer: str, jwks: Mapping[str, Any] | None = None,
                 timeout: float = 10.0, dev_mode: bool = False) -> None:
        self.url = check_service_url(url, dev_mode=dev_mode)
        self.dev_mode = dev_mode
        self.timeout = timeout
        self.issuer = issuer
        self._jwks = dict(jwks) if jwks is not None else None

    def challenge(self) -> bytes:
        """A nonce from the verifier, to hand to the attester."""
        with httpx.Client(timeout=self.timeout) as http:
            return _unb64url(str(_check(http.post(f"{self.url}/v1/challenge"))["nonce"]))

    def appraise(self, evidence: bytes, cert_table: bytes | None, nonce: bytes,
                 key: ec.EllipticCurvePublicKey, *, scheme: str | None = None,
                 additional: Sequence[tuple[bytes, str | None, bytes | None]] = ()
                 ) -> EarResult:
        """Post the attester's evidence to the verifier; verify and return the result.

        ``cert_table`` is what the attester attached (any scheme's); ``additional`` its
        devices' ``(evidence, scheme, attached)``, bound to the same challenge."""
        body: dict[str, Any] = {
            "evidence": base64.b64encode(evidence).decode(),
            "attached": base64.b64encode(cert_table).decode() if cert_table else None,
            "scheme": scheme,
            "runtime_data": {"nonce": b64url(nonce),
                             "key": ECKey.import_key(key).as_dict(private=False)}}
        if additional:
            body["additional_evidence"] = [
                {"evidence": base64.b64encode(e).decode(), "scheme": s,
                 "attached": base64.b64encode(a).decode() if a else None}
                for e, s, a in additional]
        with httpx.Client(timeout=self.timeout) as http:
            answer = _check(http.post(f"{self.url}/v1/attest", json=body))
        if self._jwks is None:
            self._jwks = fetch_jwks(self.url, timeout=self.timeout, dev_mode=self.dev_mode)
        return verify_passport(str(answer["token"]), self._jwks, issuer=self.issuer,
                               holder_key=key)
