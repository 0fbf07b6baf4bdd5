"""The KBS Response JWE to RSA TEE keys (and EC), checked against an independent JOSE library.

joserfc (RFC 7516/7518) decrypts what :func:`veritee.crypto.kbs_jwe.encrypt_response` writes,
so the byte form (protected header, AAD, key management per ``alg``) is the standard one that
Trustee's own tests check with josekit. RSA1_5 is refused unless explicitly allowed.
"""

from __future__ import annotations

import base64
import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwe
from joserfc.jwe import JWERegistry
from joserfc.jwk import ECKey, RSAKey

from veritee.crypto.kbs_jwe import (
    RSA1_5,
    RSA_OAEP,
    RSA_OAEP_256,
    decrypt_response,
    encrypt_response,
    rsa_public_key,
)
from veritee.errors import FormatError, VerificationError

_KEY = rsa.generate_private_key(65537, 2048)


def _b64(i: int) -> str:
    return base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")).rstrip(
        b"=").decode()


def _rsa_jwk(key: rsa.RSAPrivateKey, alg: str) -> dict[str, str]:
    n = key.public_key().public_numbers()
    return {"kty": "RSA", "alg": alg, "n": _b64(n.n), "e": _b64(n.e)}


@pytest.mark.parametrize("alg", [RSA_OAEP_256, RSA_OAEP, RSA1_5])
def test_rsa_response_decrypts_with_joserfc(alg: str) -> None:
    response = encrypt_response(b"disk key", _rsa_jwk(_KEY, alg), {"veritee.version": 2},
                                allow_rsa1_5=True)
    assert set(response) == {"protected", "encrypted_key", "iv", "ciphertext", "tag"}
    registry = JWERegistry(algorithms=[alg, "A256GCM"], strict_check_header=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns that RSA1_5 is deprecated
        out = jwe.decrypt_json(response, RSAKey.import_key(_KEY), registry=registry)
    assert out.plaintext == b"disk key"
    assert out.protected["alg"] == alg and out.protected["enc"] == "A256GCM"
    # ... and with veritee's own reader (the client side).
    plain, header = decrypt_response(response, _KEY)
    assert plain == b"disk key" and header["veritee.version"] == 2


def test_ec_response_decrypts_with_joserfc() -> None:
    key = ECKey.generate_key("P-256")
    pub = {**key.as_dict(private=False), "alg": "ECDH-ES+A256KW"}
    response = encrypt_response(b"secret", pub)
    assert jwe.decrypt_json(response, key).plaintext == b"secret"


def test_rsa1_5_is_refused_unless_allowed() -> None:
    with pytest.raises(VerificationError) as exc:
        encrypt_response(b"x", _rsa_jwk(_KEY, RSA1_5))
    assert exc.value.code == "kbs.jwe.rsa1_5"


def test_bare_rsa_key_gets_oaep_256() -> None:
    jwk = _rsa_jwk(_KEY, RSA_OAEP_256)
    del jwk["alg"]
    response = encrypt_response(b"x", jwk)
    assert decrypt_response(response, _KEY)[1]["alg"] == RSA_OAEP_256


@pytest.mark.parametrize("change", [
    lambda j: j.update(alg="RSA-OAEP-384"),
    lambda j: j.update(n=_b64(_KEY.public_key().public_numbers().n >> 1100)),  # ~948 bits
    lambda j: j.update(e=_b64(65536)),
    lambda j: j.update(e="!!"),
])
def test_unusable_rsa_keys_are_refused_by_field(change: object) -> None:
    jwk = _rsa_jwk(_KEY, RSA_OAEP_256)
    change(jwk)  # type: ignore[operator]
    with pytest.raises(FormatError):
        encrypt_response(b"x", jwk)


def test_legacy_aad_member_for_protocol_0_1() -> None:
    response = encrypt_response(b"x", _rsa_jwk(_KEY, RSA1_5), allow_rsa1_5=True,
                                legacy_aad=True)
    assert response["aad"] == response["protected"]
    assert decrypt_response(response, _KEY)[0] == b"x"


def test_rsa_response_does_not_open_with_another_key_or_a_changed_header() -> None:
    response = encrypt_response(b"x", _rsa_jwk(_KEY, RSA_OAEP_256))
    with pytest.raises(VerificationError):
        decrypt_response(response, rsa.generate_private_key(65537, 2048))
    with pytest.raises(VerificationError):
        decrypt_response(response, ec.generate_private_key(ec.SECP256R1()))
    # Downgrade: the same wrapped key relabelled RSA1_5 must not decrypt.
    hdr = base64.urlsafe_b64decode(response["protected"] + "==").replace(
        b"RSA-OAEP-256", b"RSA1_5")
    forged = {**response, "protected": base64.urlsafe_b64encode(hdr).rstrip(b"=").decode()}
    with pytest.raises(VerificationError):
        decrypt_response(forged, _KEY)


def test_rsa_public_key_round_trip() -> None:
    pub = rsa_public_key(_rsa_jwk(_KEY, RSA_OAEP_256))
    assert pub.public_numbers() == _KEY.public_key().public_numbers()
