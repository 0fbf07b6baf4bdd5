"""A Confidential Containers KBS protocol client (Trustee RCAR, protocol 0.4.0).

It does what attestation-agent's ``kbs_protocol`` client does, from inside an emulated or a
real SEV-SNP guest, so veritee's ``/kbs/v0`` front (and any Trustee KBS) can be tested
against the guest side of the protocol::

    with CocoKbsClient("https://kbs.example", guest) as kbs:
        secret = kbs.get_resource("default/key/1")     # auth -> attest -> resource -> JWE

1. ``POST /kbs/v0/auth`` ``{version: "0.4.0", tee: "snp", extra-params:
   {supported-hash-algorithms}}`` -> ``{nonce, extra-params: {selected-hash-algorithm}}``
   and the ``kbs-session-id`` cookie;
2. an ephemeral EC P-256 key (``alg: ECDH-ES+A256KW``, attestation-agent's default), report
   data ``H(runtime-data)`` (:func:`veritee.formats.coco.runtime_data_digest`) and the
   evidence as attestation-agent's SNP attester shapes it (``{attestation_report,
   cert_chain}``), posted to ``/kbs/v0/attest`` -> ``{token}``;
3. ``GET /kbs/v0/resource/<repository>/<type>/<tag>`` with the cookie -> a flattened JWE,
   decrypted with the ephemeral key (:func:`veritee.crypto.kbs_jwe.decrypt_response`).

Like CoCo's client it authenticates the service only through TLS (``https://``; plain HTTP
only to loopback with ``dev_mode``): the protocol's response is not signed.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.client import EvidenceSource, ServiceRefused, check_service_url
from veritee.crypto.kbs_jwe import ALG, decrypt_response
from veritee.errors import FormatError, VerificationError
from veritee.formats.coco import (
    KBS_PROTOCOL_VERSION,
    canonical_json,
    runtime_data_digest,
    snp_report_to_object,
)
from veritee.formats.sevsnp import CertTable

__all__ = ["CocoKbsClient", "snp_evidence", "tdx_evidence"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def snp_evidence(report: bytes, cert_table: bytes | None) -> dict[str, Any]:
    """attestation-agent's ``SnpEvidence`` JSON for a report and its certificate table."""
    chain = None
    if cert_table:
        chain = [{"cert_type": e.kind, "data": list(e.data)}
                 for e in CertTable.from_bytes(cert_table).entries if e.kind is not None]
    return {"attestation_report": snp_report_to_object(report), "cert_chain": chain}


def tdx_evidence(quote: bytes) -> dict[str, Any]:
    """attestation-agent's ``TdxEvidence`` JSON for a quote (no event logs)."""
    return {"cc_eventlog": None, "quote": base64.b64encode(quote).decode(),
            "aa_eventlog": None}


def _check(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:200]}
    if response.status_code >= 400:
        problem = dict(body) if isinstance(body, dict) else {}
        problem.setdefault("code", str(problem.get("type", "")).rsplit("/", 1)[-1])
        raise ServiceRefused(response.status_code, problem)
    if not isinstance(body, dict):
        raise VerificationError("client.response", "the service answered with a non-object")
    return body


class CocoKbsClient:
    """The guest side of the KBS protocol over HTTP (keeps the session cookie)."""

    def __init__(self, url: str, source: EvidenceSource, *, timeout: float = 10.0,
                 http: httpx.Client | None = None, dev_mode: bool = False,
                 hash_algorithms: tuple[str, ...] = ("sha256", "sha384", "sha512"),
                 version: str = KBS_PROTOCOL_VERSION, tee: str = "snp") -> None:
        self.url = check_service_url(url, dev_mode=dev_mode)
        self.tee = tee  # kbs-types name: "snp", "tdx" (the service refuses others by name)
        self.source = source
        self.hash_algorithms = hash_algorithms
        self.version = version
        self._http = http or httpx.Client(timeout=timeout)
        self._own = http is None
        self._key: ec.EllipticCurvePrivateKey | None = None
        self.token: str | None = None

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._own:
            self._http.close()

    def __enter__(self) -> CocoKbsClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def auth(self) -> dict[str, Any]:
        """POST /kbs/v0/auth; the Challenge (the session cookie is kept)."""
        return _check(self._http.post(f"{self.url}/kbs/v0/auth", json={
            "version": self.version, "tee": self.tee,
            "extra-params": {"supported-hash-algorithms": list(self.hash_algorithms)}}))

    def attestation(self, challenge: dict[str, Any], *,
                    init_data: dict[str, str] | None = None) -> dict[str, Any]:
        """The Attestation message for ``challenge``, with a fresh ephemeral key."""
        nonce = challenge.get("nonce")
        if not isinstance(nonce, str):
            raise FormatError("Challenge", "nonce", got=type(nonce).__name__, want="a string")
        extra = challenge.get("extra-params")
        alg = extra.get("selected-hash-algorithm", "sha384") if isinstance(extra,
                                                                           dict) else "sha384"
        self._key = ec.generate_private_key(ec.SECP256R1())
        nums = self._key.public_key().public_numbers()
        pubkey = {"alg": ALG, "crv": "P-256", "kty": "EC", "x": _b64url(nums.x.to_bytes(32, "big")),
                  "y": _b64url(nums.y.to_bytes(32, "big"))}
        report, table = self.source.extended_report(
            runtime_data_digest(nonce, pubkey, "", str(alg).lower()))
        body: dict[str, Any] = {
            "runtime-data": {"nonce": nonce, "tee-pubkey": pubkey},
            "tee-evidence": {"primary_evidence": snp_evidence(report, table)
                             if self.tee == "snp" else tdx_evidence(report),
                             "additional_evidence": ""}}
        if init_data is not None:
            body["init-data"] = init_data
        return body

    def attest(self, *, init_data: dict[str, str] | None = None) -> str:
        """auth + attest; the attestation token (an EAR)."""
        message = self.attestation(self.auth(), init_data=init_data)
        body = _check(self._http.post(f"{self.url}/kbs/v0/attest",
                                      content=canonical_json(message),
                                      headers={"Content-Type": "application/json"}))
        token = body.get("token")
        if not isinstance(token, str):
            raise VerificationError("client.response", "attest: no token in the answer")
        self.token = token
        return token

    def resource(self, path: str, *, bearer: bool = False) -> bytes:
        """GET one resource with the session cookie (or the token) and decrypt it."""
        if self._key is None:
            raise VerificationError("client.state", "attest first")
        headers = {"Authorization": f"Bearer {self.token}"} if bearer and self.token else {}
        body = _check(self._http.get(f"{self.url}/kbs/v0/resource/{path}", headers=headers))
        plaintext, _header = decrypt_response(body, self._key)
        return plaintext

    def get_resource(self, path: str) -> bytes:
        """The whole exchange for ``repository/type/tag`` (attesting once per client)."""
        if self.token is None:
            self.attest()
        return self.resource(path)
