"""A Confidential Containers KBS protocol client (Trustee RCAR, protocol 0.1.0 to 0.4.0).

It does what attestation-agent's ``kbs_protocol`` client does, from inside an emulated or a
real SEV-SNP guest, TDX TD or SGX enclave, so veritee's ``/kbs/v0`` front (and any Trustee
KBS) can be tested against the guest side of the protocol::

    with CocoKbsClient("https://kbs.example", guest) as kbs:
        secret = kbs.get_resource("default/key/1")     # auth -> attest -> resource -> JWE

1. ``POST /kbs/v0/auth`` ``{version, tee, extra-params: {supported-hash-algorithms}}`` ->
   ``{nonce, extra-params: {selected-hash-algorithm}}`` and the ``kbs-session-id`` cookie
   (0.1.x: ``extra-params`` are strings and SHA-384 is fixed);
2. an ephemeral TEE key (EC P-256 ``ECDH-ES+A256KW``, attestation-agent's default; or RSA
   ``RSA-OAEP-256``/``RSA1_5``), report data ``H(runtime-data)``
   (:func:`veritee.formats.coco.runtime_data`) and the evidence as attestation-agent's
   attester shapes it (SNP ``{attestation_report, cert_chain}``, TDX ``{quote, cc_eventlog,
   aa_eventlog}``, SGX ``{quote}``), in the ``Attestation`` shape of the chosen protocol
   version, posted to ``/kbs/v0/attest`` -> ``{token}``;
3. ``GET /kbs/v0/resource/<repository>/<type>/<tag>`` with the cookie -> a flattened JWE,
   decrypted with the ephemeral key (:func:`veritee.crypto.kbs_jwe.decrypt_response`).

Like CoCo's client it authenticates the service only through TLS (``https://``; plain HTTP
only to loopback with ``dev_mode``): the protocol's response is not signed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee._decode import b64url
from veritee.client import EvidenceSource, ServiceRefused, check_service_url
from veritee.crypto.kbs_jwe import ALG, RSA1_5, RSA_OAEP_256, decrypt_response
from veritee.errors import ConfigError, FormatError, VerificationError
from veritee.formats.coco import (
    HASH_ALGORITHMS,
    KBS_PROTOCOL_VERSION,
    PROTOCOL_VERSIONS,
    canonical_json,
    regularize,
    runtime_data,
    snp_report_to_object,
)
from veritee.formats.sevsnp import CertTable

__all__ = ["CocoKbsClient", "sgx_evidence", "snp_evidence", "tdx_evidence"]


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


def sgx_evidence(quote: bytes) -> dict[str, Any]:
    """attestation-agent's ``SgxEvidence`` JSON (DCAP attester) for a quote."""
    return {"quote": base64.b64encode(quote).decode()}


_EVIDENCE: dict[str, Callable[[bytes, bytes | None], dict[str, Any]]] = {
    "snp": snp_evidence, "tdx": lambda r, _t: tdx_evidence(r),
    "sgx": lambda r, _t: sgx_evidence(r)}
_KEY_ALGORITHMS = (ALG, RSA_OAEP_256, RSA1_5)


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
                 version: str = KBS_PROTOCOL_VERSION, tee: str = "snp",
                 key_algorithm: str | None = None, rsa_bits: int = 2048) -> None:
        self.url = check_service_url(url, dev_mode=dev_mode)
        if tee not in _EVIDENCE:
            raise ConfigError(f"tee: got {tee!r}, want one of {', '.join(_EVIDENCE)} (the "
                              "attesters this client has)")
        if version not in PROTOCOL_VERSIONS:
            raise ConfigError(f"version: got {version!r}, want one of "
                              f"{', '.join(PROTOCOL_VERSIONS)}")
        self.protocol = PROTOCOL_VERSIONS[version]
        # The key a guest of that version sends: EC from 0.2.0, RSA1_5 before.
        self.key_algorithm = key_algorithm or self.protocol.key_algorithms[0]
        if self.key_algorithm not in _KEY_ALGORITHMS:
            raise ConfigError(f"key_algorithm: got {self.key_algorithm!r}, want one of "
                              f"{', '.join(_KEY_ALGORITHMS)}")
        self.rsa_bits = rsa_bits  # attestation-agent's RSA keys are 2048 bits
        self.tee = tee
        self.source = source
        self.hash_algorithms = hash_algorithms
        self.version = version
        self._http = http or httpx.Client(timeout=timeout)
        self._own = http is None
        self._key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None
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
        extra: object = "" if self.protocol.challenge_extra_string else {
            "supported-hash-algorithms": list(self.hash_algorithms)}
        return _check(self._http.post(f"{self.url}/kbs/v0/auth", json={
            "version": self.version, "tee": self.tee, "extra-params": extra}))

    def _new_key(self) -> dict[str, str]:
        if self.key_algorithm == ALG:
            key = ec.generate_private_key(ec.SECP256R1())
            nums = key.public_key().public_numbers()
            self._key = key
            return {"alg": ALG, "crv": "P-256", "kty": "EC",
                    "x": b64url(nums.x.to_bytes(32, "big")),
                    "y": b64url(nums.y.to_bytes(32, "big"))}
        rsa_key = rsa.generate_private_key(65537, self.rsa_bits)
        pub = rsa_key.public_key().public_numbers()
        self._key = rsa_key
        return {"alg": self.key_algorithm, "e": b64url(pub.e.to_bytes(3, "big")),
                "kty": "RSA", "n": b64url(pub.n.to_bytes(self.rsa_bits // 8, "big"))}

    def attestation(self, challenge: dict[str, Any], *,
                    init_data: dict[str, str] | None = None,
                    additional_evidence: Callable[[bytes], str] | None = None
                    ) -> dict[str, Any]:
        """The Attestation message for ``challenge``, with a fresh ephemeral key.

        ``additional_evidence`` (protocol 0.3.0+) makes the devices' evidence: it gets the
        devices' binding digest ``H({nonce, tee-pubkey})`` (Trustee's backend.rs: runtime data
        without the additional-evidence member; each device truncates it to its own field)
        and returns the ``{tee: evidence}`` JSON string, which the primary's runtime data
        then names."""
        nonce = challenge.get("nonce")
        if not isinstance(nonce, str):
            raise FormatError("Challenge", "nonce", got=type(nonce).__name__, want="a string")
        extra = challenge.get("extra-params")
        alg = str(extra.get("selected-hash-algorithm", "sha384")).lower() if isinstance(
            extra, dict) else "sha384"
        if alg not in HASH_ALGORITHMS:
            raise FormatError("Challenge", "extra-params.selected-hash-algorithm", got=alg[:20],
                              want=", ".join(HASH_ALGORITHMS))
        pubkey = self._new_key()
        additional = "" if self.protocol.composite else None
        if additional_evidence is not None:
            if not self.protocol.composite:
                raise ConfigError(f"additional_evidence: protocol {self.version} has no "
                                  "composite evidence (0.3.0+)")
            additional = additional_evidence(
                HASH_ALGORITHMS[alg](canonical_json(runtime_data(nonce, pubkey))))
        digest = HASH_ALGORITHMS[alg](canonical_json(runtime_data(nonce, pubkey, additional)))
        report, table = self.source.extended_report(regularize(digest, 64))
        evidence = _EVIDENCE[self.tee](report, table)
        tee_evidence: object = evidence
        if self.protocol.composite:
            tee_evidence = {"primary_evidence": evidence, "additional_evidence": additional}
        elif self.protocol.evidence_as_string:
            tee_evidence = json.dumps(evidence)
        if self.protocol.runtime_data_member:
            body: dict[str, Any] = {"runtime-data": {"nonce": nonce, "tee-pubkey": pubkey},
                                    "tee-evidence": tee_evidence}
            if init_data is not None:
                body["init-data"] = init_data
            return body
        if init_data is not None:
            raise ConfigError(f"init_data: protocol {self.version} has no init-data")
        return {"tee-pubkey": pubkey, "tee-evidence": tee_evidence}

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
