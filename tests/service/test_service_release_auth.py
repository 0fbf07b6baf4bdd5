"""Issue 16 finding 6: releases are authenticated to the client, results are not bearer tokens.

Anyone can encrypt to the EAR's ``cnf`` key (it is public, in the token), so a release that
merely decrypts proves nothing. The client now demands the broker's signature over the JWE,
the resource and the EAR's ``jti`` in the JWE protected header, and an https URL.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwe, jws
from joserfc.jwk import ECKey

from veritee.client import (
    AttesterClient,
    Passport,
    check_service_url,
    decrypt_release,
    fetch_jwks,
)
from veritee.errors import ConfigError, VerificationError
from veritee.results import TIERS, sign_ear, verify_ear
from veritee.service.core import RELEASE_TYP

from _service_support import SECRET_A, Guests, Service

_REG = jwe.JWERegistry(algorithms=["ECDH-ES", "A256GCM"], strict_check_header=False)


def _genuine(service: Service, guests: Guests) -> tuple[Passport, dict[str, Any], str]:
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        passport = client.attest()
    r = service.http.get(f"{service.url}/v1/resources/apps/a/key",
                         headers={"Authorization": f"Bearer {passport.token}"})
    return passport, fetch_jwks(service.url, dev_mode=True), r.json()["release"]


def _mint_jwe(passport: Passport, secret: bytes, path: str = "apps/a/key") -> str:
    """What anyone can do with the public cnf key from the EAR."""
    cnf = ECKey.import_key(passport.key.public_key())
    header = {"alg": "ECDH-ES", "enc": "A256GCM", "veritee.resource": path,
              "veritee.jti": passport.jti, "veritee.version": 1}
    return str(jwe.encrypt_compact(header, secret, cnf, registry=_REG))


def test_release_minted_from_public_cnf_refused(service: Service, guests: Guests) -> None:
    passport, jwks, _ = _genuine(service, guests)
    minted = _mint_jwe(passport, b"attacker-chosen key")
    # A bare JWE (what the service used to send) ...
    with pytest.raises(VerificationError, match="not a compact JWS"):
        decrypt_release(minted, passport.key, jwks=jwks, path="apps/a/key", jti=passport.jti)
    # ... or one signed by a key of the attacker's (even claiming the service's kid).
    attacker = ec.generate_private_key(ec.SECP256R1())
    signed = jws.serialize_compact({"alg": "ES256", "kid": jwks["keys"][0]["kid"],
                                    "typ": RELEASE_TYP, "cty": "JWE"}, minted.encode(),
                                   ECKey.import_key(attacker), algorithms=["ES256"])
    with pytest.raises(VerificationError, match="not signed by the service"):
        decrypt_release(signed, passport.key, jwks=jwks, path="apps/a/key", jti=passport.jti)


def test_release_for_another_ear_refused(service: Service, guests: Guests) -> None:
    """A genuine, signed release answering another EAR (replayed to this client)."""
    passport, jwks, release = _genuine(service, guests)
    assert decrypt_release(release, passport.key, jwks=jwks, path="apps/a/key",
                           jti=passport.jti) == SECRET_A
    with pytest.raises(VerificationError, match="another EAR"):
        decrypt_release(release, passport.key, jwks=jwks, path="apps/a/key", jti="other-jti")
    with pytest.raises(VerificationError, match="another resource"):
        decrypt_release(release, passport.key, jwks=jwks, path="apps/b/password",
                        jti=passport.jti)


def test_signed_object_of_another_kind_refused_as_release(service: Service,
                                                          guests: Guests) -> None:
    """The broker's signature on something else (an EAR) is not a release."""
    passport, jwks, _ = _genuine(service, guests)
    with pytest.raises(VerificationError):
        decrypt_release(passport.token, passport.key, jwks=jwks, path="apps/a/key",
                        jti=passport.jti)


@pytest.mark.parametrize("url", ["http://kbs.example", "http://10.0.0.1:8080", "ftp://x",
                                 "kbs.example"])
def test_plain_http_service_url_refused(url: str, guests: Guests) -> None:
    with pytest.raises(ConfigError):
        AttesterClient(url, guests.a, dev_mode=True)


def test_loopback_http_needs_dev_mode(guests: Guests) -> None:
    with pytest.raises(ConfigError, match="dev_mode"):
        AttesterClient("http://127.0.0.1:8080", guests.a)
    with pytest.raises(ConfigError):
        fetch_jwks("http://127.0.0.1:1")
    assert check_service_url("https://kbs.example/") == "https://kbs.example"
    assert check_service_url("http://[::1]:80", dev_mode=True) == "http://[::1]:80"


def test_contraindicated_ear_fails_verify_ear(service: Service, guests: Guests) -> None:
    """The service signs EARs for rejected evidence too; verify_ear refuses them by default."""
    passport, jwks, _ = _genuine(service, guests)
    claims = verify_ear(passport.token, jwks).claims
    sub = next(iter(claims["submods"].values()))
    for status in ("contraindicated", "none", "warning"):
        sub["ear.status"] = status
        key = service.app.state.broker.signing_key
        token = sign_ear(claims, key.private_key, kid=key.kid)
        with pytest.raises(VerificationError, match=r"ear\.status"):
            verify_ear(token, jwks)
        assert verify_ear(token, jwks, accept=TIERS).status == status


def test_passport_for_another_holder_refused_offline(service: Service, guests: Guests) -> None:
    from veritee.client import verify_passport

    passport, jwks, _ = _genuine(service, guests)
    thief = ec.generate_private_key(ec.SECP384R1()).public_key()
    with pytest.raises(VerificationError, match=r"ear\.cnf"):
        verify_passport(passport.token, jwks, issuer="veritee", holder_key=thief)

