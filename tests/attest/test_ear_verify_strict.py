"""verify_ear reads compact JWS itself (with ``cryptography``): every altered token is refused.

The EAR at release is checked on every exchange, so it no longer goes through joserfc's generic
JWT path; these tests hold the hand-written reader to the RFC 7515/7519 rules: tokens joserfc
writes verify, and every tampered byte, wrong key, wrong algorithm, unknown kid, critical
header, non-canonical encoding, expired or future token and malformed ``cnf`` is refused.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from veritee.errors import VerificationError
from veritee.results import EAR_PROFILE, EarKeys, public_jwk, sign_ear, verify_ear

NOW = 1_800_000_000


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**over: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "eat_profile": EAR_PROFILE, "iss": "veritee-test", "iat": NOW - 10, "exp": NOW + 300,
        "jti": "j1", "submods": {"sevsnp": {"ear.status": "affirming",
                                            "veritee.verified-claims": {"tee": "sevsnp"}}}}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(header: dict[str, Any], claims: dict[str, Any], key: ec.EllipticCurvePrivateKey,
          *, alg: str = "ES256") -> str:
    """A compact JWS with exactly this header (for headers joserfc would not write)."""
    size = (key.curve.key_size + 7) // 8
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    digest = hashes.SHA256() if alg == "ES256" else hashes.SHA384()
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(digest)))
    return signing_input + "." + _b64(r.to_bytes(size, "big") + s.to_bytes(size, "big"))


@pytest.fixture(scope="module")
def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def jwks(p256: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    return {"keys": [public_jwk(p256, kid="k1", alg="ES256")]}


def _verify(token: str, jwks: Any, **kw: Any) -> Any:
    return verify_ear(token, jwks, now=NOW, issuer="veritee-test", **kw)


def test_joserfc_tokens_verify_with_every_key_form(p256: ec.EllipticCurvePrivateKey,
                                                   jwks: dict[str, Any]) -> None:
    token = sign_ear(_claims(), p256, kid="k1")
    key_set = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    for keys in (jwks, key_set, EarKeys.from_jwks(jwks), EarKeys.from_jwks(key_set)):
        result = _verify(token, keys)
        assert result.claims == _claims()
        assert result.header == {"alg": "ES256", "kid": "k1", "typ": "JWT"}
    # And joserfc agrees on what this module would accept.
    assert jwt.decode(token, key_set).claims == _claims()


def test_es384_tokens_verify() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    token = sign_ear(_claims(), key, kid="k384")
    assert _verify(token, {"keys": [public_jwk(key, kid="k384")]}).claims["jti"] == "j1"


def test_every_changed_character_is_refused(p256: ec.EllipticCurvePrivateKey,
                                            jwks: dict[str, Any]) -> None:
    token = sign_ear(_claims(), p256, kid="k1")
    keys = EarKeys.from_jwks(jwks)
    for i, ch in enumerate(token):
        if ch == ".":
            continue
        # Two replacements per position: one that changes the decoded bytes, one that may
        # only change a padding bit of the last character (non-canonical: refused too).
        for other in {"A" if ch != "A" else "B", chr(ord(ch) ^ 1)}:
            if other == ch or not (other.isalnum() or other in "-_"):
                continue
            with pytest.raises(VerificationError):
                _verify(token[:i] + other + token[i + 1:], keys)


@pytest.mark.parametrize("mangle", [
    lambda t: t + "=",
    lambda t: t.replace(".", "=.", 1),
    lambda t: t + ".",
    lambda t: t.rsplit(".", 1)[0],
    lambda t: " " + t,
    lambda t: t.replace("-", "+").replace("_", "/"),
    lambda t: t.split(".")[0] + ".." + t.split(".")[2],
    lambda t: "",
])
def test_malformed_compact_forms_are_refused(p256: ec.EllipticCurvePrivateKey,
                                             jwks: dict[str, Any], mangle: Any) -> None:
    token = sign_ear(_claims(), p256, kid="k1")
    changed = mangle(token)
    if changed == token:
        pytest.skip("token has no character this mangling changes")
    with pytest.raises(VerificationError):
        _verify(changed, jwks)


def test_wrong_key_unknown_kid_and_missing_kid_are_refused(jwks: dict[str, Any]) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(VerificationError, match="bad signature"):
        _verify(sign_ear(_claims(), other, kid="k1"), jwks)
    with pytest.raises(VerificationError, match="kid"):
        _verify(sign_ear(_claims(), other, kid="k2"), jwks)
    with pytest.raises(VerificationError, match="kid"):
        _verify(_sign({"alg": "ES256"}, _claims(), other), jwks)


def test_algorithm_confusion_is_refused(p256: ec.EllipticCurvePrivateKey,
                                        jwks: dict[str, Any]) -> None:
    body = _b64(json.dumps(_claims()).encode())
    # alg none, an empty signature.
    none = _b64(b'{"alg":"none","kid":"k1"}') + "." + body + "."
    with pytest.raises(VerificationError, match="alg"):
        _verify(none, jwks)
    # HS256 keyed with the public key's JWK text (the classic confusion).
    head = _b64(b'{"alg":"HS256","kid":"k1"}')
    mac = hmac.HMAC(json.dumps(jwks["keys"][0]).encode(), hashes.SHA256())
    mac.update(f"{head}.{body}".encode())
    with pytest.raises(VerificationError, match="alg"):
        _verify(f"{head}.{body}.{_b64(mac.finalize())}", jwks)
    # ES384 named over a P-256 key: the curve must be the algorithm's.
    with pytest.raises(VerificationError, match="does not fit"):
        _verify(_sign({"alg": "ES384", "kid": "k1"}, _claims(), p256, alg="ES384"), jwks)
    # A DER signature instead of R || S.
    signing_input = _b64(b'{"alg":"ES256","kid":"k1"}') + "." + body
    der = p256.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    with pytest.raises(VerificationError, match="does not fit"):
        _verify(signing_input + "." + _b64(der), jwks)


def test_critical_and_malformed_headers_are_refused(p256: ec.EllipticCurvePrivateKey,
                                                    jwks: dict[str, Any]) -> None:
    with pytest.raises(VerificationError, match="crit"):
        _verify(_sign({"alg": "ES256", "kid": "k1", "crit": ["b64"], "b64": False},
                      _claims(), p256), jwks)
    for header in (b"[]", b"not json", b'"ES256"'):
        token = _b64(header) + "." + _b64(json.dumps(_claims()).encode()) + ".AAAA"
        with pytest.raises(VerificationError, match=r"ear\.format"):
            _verify(token, jwks)


def test_payload_must_be_a_json_object(p256: ec.EllipticCurvePrivateKey,
                                       jwks: dict[str, Any]) -> None:
    size = 32
    for payload in (b"[1]", b"nope", b"\xff"):
        signing_input = _b64(b'{"alg":"ES256","kid":"k1"}') + "." + _b64(payload)
        r, s = decode_dss_signature(p256.sign(signing_input.encode(),
                                              ec.ECDSA(hashes.SHA256())))
        token = signing_input + "." + _b64(r.to_bytes(size, "big") + s.to_bytes(size, "big"))
        with pytest.raises(VerificationError, match=r"ear\.format"):
            _verify(token, jwks)


def test_time_issuer_profile_and_status(p256: ec.EllipticCurvePrivateKey,
                                        jwks: dict[str, Any]) -> None:
    cases = {
        "expired": _claims(exp=NOW - 1),
        "not_yet_valid": _claims(iat=NOW + 60),
        "issuer": _claims(iss="someone-else"),
        "profile": _claims(eat_profile="tag:example.com,2023:other"),
        "status": _claims(submods={"sevsnp": {"ear.status": "warning"}}),
    }
    for code, claims in cases.items():
        with pytest.raises(VerificationError, match=rf"ear\.{code}"):
            _verify(sign_ear(claims, p256, kid="k1"), jwks)
    # A warning passes only where the caller accepts it; leeway covers small clock skew.
    warn = sign_ear(cases["status"], p256, kid="k1")
    assert _verify(warn, jwks, accept=("affirming", "warning")).status == "warning"
    late = sign_ear(_claims(exp=NOW - 5), p256, kid="k1")
    assert _verify(late, jwks, leeway=10).claims["exp"] == NOW - 5


def test_cnf_must_be_a_public_key_on_its_curve(p256: ec.EllipticCurvePrivateKey,
                                               jwks: dict[str, Any]) -> None:
    tee = ec.generate_private_key(ec.SECP384R1())
    good = dict(ECKey.import_key(tee.public_key()).as_dict(private=False))
    assert _verify(sign_ear(_claims(cnf={"jwk": good}), p256, kid="k1"), jwks).cnf_jwk == good
    rsa_jwk = dict(RSAKey.import_key(rsa.generate_private_key(65537, 2048).public_key())
                   .as_dict(private=False))
    assert _verify(sign_ear(_claims(cnf={"jwk": rsa_jwk}), p256, kid="k1"), jwks).cnf_jwk
    off_curve = {**good, "y": _b64((int.from_bytes(base64.urlsafe_b64decode(
        good["y"] + "=="), "big") ^ 1).to_bytes(48, "big"))}
    bad = [off_curve, {**good, "crv": "P-192"}, {**good, "x": good["x"][:-2]},
           {**good, "d": good["x"]}, {"kty": "oct", "k": "AAAA"}, {**rsa_jwk, "n": "!!"}]
    for jwk in bad:
        with pytest.raises(VerificationError, match=r"ear\.format"):
            _verify(sign_ear(_claims(cnf={"jwk": jwk}), p256, kid="k1"), jwks)


def test_jwks_forms(p256: ec.EllipticCurvePrivateKey) -> None:
    token = sign_ear(_claims(), p256, kid="k1")
    mine = public_jwk(p256, kid="k1")
    # Keys that cannot sign an EAR are ignored; the right one is still found.
    rsa_key = dict(RSAKey.import_key(rsa.generate_private_key(65537, 2048).public_key())
                   .as_dict(private=False), kid="r1")
    assert _verify(token, {"keys": [rsa_key, mine]}).claims["jti"] == "j1"
    # A malformed EC key, an alg that contradicts the curve, or no key list: refused.
    for keys in ({"keys": [{**mine, "x": "AAAA"}]}, {"keys": [{**mine, "alg": "ES384"}]},
                 {"keys": "nope"}, {}):
        with pytest.raises(VerificationError, match=r"ear\.format"):
            _verify(token, keys)
    # An empty set verifies nothing.
    with pytest.raises(VerificationError, match="kid"):
        _verify(token, {"keys": []})


def test_overlong_token_is_refused_before_parsing(jwks: dict[str, Any]) -> None:
    with pytest.raises(VerificationError, match="compact JWS"):
        verify_ear("a" * 300_000 + ".b.c", jwks, now=time.time())


def test_nonzero_trailing_bits_are_refused(p256: ec.EllipticCurvePrivateKey,
                                           jwks: dict[str, Any]) -> None:
    """base64url of 64 signature bytes has 4 spare bits in its last character: setting one
    decodes to the same bytes in a lenient decoder, and must still be refused (one token,
    one encoding)."""
    token = sign_ear(_claims(), p256, kid="k1")
    head, body, sig = token.split(".")
    assert len(sig) % 4 == 2
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet[alphabet.index(sig[-1]) | 1]
    assert base64.urlsafe_b64decode(sig[:-1] + last + "==") == base64.urlsafe_b64decode(
        sig + "==")
    with pytest.raises(VerificationError, match="base64url"):
        _verify(f"{head}.{body}.{sig[:-1]}{last}", jwks)
