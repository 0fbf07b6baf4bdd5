"""Clients of the verifier / key-broker service, for both RATS models (RFC 9334).

Attester side (inside the TEE), passport model::

    client = AttesterClient("https://kbs.example", guest)   # guest: an evidence source
    passport = client.attest()                              # challenge -> evidence -> EAR
    secret = client.get_resource("db/password", passport)   # JWE decrypted with the TEE key

Relying party, passport model: the attester hands over ``passport.token``;
:func:`verify_passport` checks it offline against the service's published JWKS (fetched once
with :func:`fetch_jwks`): signature, issuer, expiry, status, and that it is bound to the key
the attester proves it holds.

Relying party, background-check model: :class:`RelyingParty` gets a challenge from the
verifier, the attester answers it with evidence, and the relying party posts that evidence
to the verifier itself (:meth:`RelyingParty.appraise`) and checks the result.

Every key the TEE uses here is ephemeral: generated per exchange and never written out.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from veritee.attest import bind_report_data
from veritee.errors import VerificationError
from veritee.results import EarResult, verify_ear

__all__ = [
    "AttesterClient",
    "EvidenceSource",
    "Passport",
    "RelyingParty",
    "ServiceRefused",
    "fetch_jwks",
    "verify_passport",
]


class EvidenceSource(Protocol):
    """Anything that returns a signed report and its certificate table for REPORT_DATA."""

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]: ...


class ServiceRefused(VerificationError):  # noqa: N818 - a refusal, named as callers see it
    """The service answered with a problem+json refusal; ``problem`` is its body."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status = status
        self.problem = dict(problem)
        super().__init__(str(problem.get("code", f"http.{status}")),
                         f"HTTP {status}: {problem.get('detail', '')}")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


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


def evidence_for(source: EvidenceSource, nonce: bytes, key: ec.EllipticCurvePrivateKey
                 ) -> dict[str, Any]:
    """The /v1/attest body: evidence with REPORT_DATA = SHA-512(nonce || SPKI(key))."""
    report, table = source.extended_report(bind_report_data(nonce, key.public_key()))
    return {"evidence": base64.b64encode(report).decode(),
            # An empty table (Intel quotes carry their PCK chain) is left out.
            **({"cert_table": base64.b64encode(table).decode()} if table else {}),
            "runtime_data": {"nonce": _b64url(nonce),
                             "key": ECKey.import_key(key.public_key()).as_dict(private=False)}}


class AttesterClient:
    """The attester's side of challenge -> attest -> resource over HTTP."""

    def __init__(self, url: str, source: EvidenceSource, *, timeout: float = 10.0,
                 http: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self.source = source
        self._http = http or httpx.Client(timeout=timeout)
        self._own = http is None

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
                                      json=evidence_for(self.source, nonce, key)))
        return Passport(token=str(body["token"]), key=key, status=str(body["status"]))

    def get_resource(self, path: str, passport: Passport) -> bytes:
        """Fetch a resource with the passport and decrypt it with the passport's key."""
        response = self._http.get(f"{self.url}/v1/resources/{quote(path)}",
                                  headers={"Authorization": f"Bearer {passport.token}"})
        body = _check(response)
        return decrypt_release(str(body["jwe"]), passport.key, path=path)

    def fetch(self, path: str) -> bytes:
        """The whole exchange for one resource."""
        return self.get_resource(path, self.attest())


def decrypt_release(token: str, key: ec.EllipticCurvePrivateKey, *, path: str | None = None
                    ) -> bytes:
    """Decrypt a released secret (compact JWE, ECDH-ES + A256GCM) with the TEE key."""
    try:
        obj = jwe.decrypt_compact(token, ECKey.import_key(key), registry=jwe.JWERegistry(
            algorithms=["ECDH-ES", "A256GCM"], strict_check_header=False))
    except (JoseError, ValueError) as exc:
        raise VerificationError("client.jwe", f"released secret does not decrypt "
                                f"({type(exc).__name__})") from None
    if path is not None and obj.protected.get("veritee.resource") != path:
        raise VerificationError("client.jwe", "the released secret is for another resource")
    if obj.plaintext is None:
        raise VerificationError("client.jwe", "empty JWE")
    return bytes(obj.plaintext)


def fetch_jwks(url: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """The service's published EAR keys (fetch once, then verify passports offline)."""
    with httpx.Client(timeout=timeout) as http:
        return _check(http.get(f"{url.rstrip('/')}/v1/jwks"))


def verify_passport(token: str, jwks: Mapping[str, Any], *, issuer: str | None = None,
                    now: float | None = None, holder_key: ec.EllipticCurvePublicKey | None = None,
                    require_status: str = "affirming") -> EarResult:
    """Relying party, passport model: verify an EAR without contacting the verifier.

    Signature against ``jwks``, ``iss``, ``exp``; the status must be ``require_status``;
    with ``holder_key`` the token must be bound (``cnf.jwk``) to that key, which the
    attester proves it holds in the relying party's own protocol (e.g. a TLS handshake).
    """
    result = verify_ear(token, jwks, now=time.time() if now is None else now, issuer=issuer)
    if result.status != require_status:
        raise VerificationError("ear.status", f"ear.status: got {result.status!r}, want "
                                f"{require_status!r}")
    if holder_key is not None:
        cnf = result.cnf_jwk
        want = ECKey.import_key(holder_key).thumbprint()
        if cnf is None or ECKey.import_key(cnf).thumbprint() != want:
            raise VerificationError("ear.cnf", "the token is not bound to the presenter's key")
    return result


class RelyingParty:
    """Background-check model: the relying party sends the attester's evidence itself."""

    def __init__(self, url: str, *, jwks: Mapping[str, Any] | None = None,
                 timeout: float = 10.0, issuer: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.issuer = issuer
        self._jwks = dict(jwks) if jwks is not None else None

    def challenge(self) -> bytes:
        """A nonce from the verifier, to hand to the attester."""
        with httpx.Client(timeout=self.timeout) as http:
            return _unb64url(str(_check(http.post(f"{self.url}/v1/challenge"))["nonce"]))

    def appraise(self, evidence: bytes, cert_table: bytes | None, nonce: bytes,
                 key: ec.EllipticCurvePublicKey) -> EarResult:
        """Post the attester's evidence to the verifier; verify and return the result."""
        body: dict[str, Any] = {
            "evidence": base64.b64encode(evidence).decode(),
            "cert_table": base64.b64encode(cert_table).decode() if cert_table else None,
            "runtime_data": {"nonce": _b64url(nonce),
                             "key": ECKey.import_key(key).as_dict(private=False)}}
        with httpx.Client(timeout=self.timeout) as http:
            answer = _check(http.post(f"{self.url}/v1/attest", json=body))
        if self._jwks is None:
            self._jwks = fetch_jwks(self.url, timeout=self.timeout)
        return verify_passport(str(answer["token"]), self._jwks, issuer=self.issuer,
                               holder_key=key)
