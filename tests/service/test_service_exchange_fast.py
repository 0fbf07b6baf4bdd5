"""The exchange's hot path (issue 14 target 2): fewer database round trips and keys imported
once, with the security rules unchanged.

In process, against the running service's broker: a challenge writes nothing (the nonce carries
its own tag), attest verifies first and then opens one write transaction (nonce use, policies,
audit), yet a policy that
fails to load still leaves the nonce burned and the refusal audited; EARs and releases signed
with the cached key import verify against the published JWKS with joserfc; a rotated key is
used at once.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.client import decrypt_release, evidence_for
from veritee.results import verify_ear
from veritee.service.core import Broker
from veritee.service.integrity import IntegrityViolation
from veritee.service.problems import NonceRejected, Problem
from veritee.service.storage import Store

from _service_support import SECRET_A, Guests, Service


def _broker(svc: Service) -> Broker:
    broker = svc.app.state.broker
    assert isinstance(broker, Broker)
    return broker


@contextmanager
def _counting(store: Store, seen: list[bool]) -> Iterator[None]:
    """Record ``write`` of every transaction the store opens meanwhile."""
    original = store.transaction

    @contextmanager
    def counted(*, write: bool = True) -> Iterator[Any]:
        seen.append(write)
        with original(write=write) as tx:
            yield tx

    store.transaction = counted  # type: ignore[method-assign]
    try:
        yield
    finally:
        del store.transaction


def _attest(broker: Broker, guest: Any, nonce: bytes | None = None
            ) -> tuple[Any, ec.EllipticCurvePrivateKey, bytes]:
    nonce = nonce or broker.challenge().nonce
    key = ec.generate_private_key(ec.SECP384R1())
    body = evidence_for(guest, nonce, key)
    out = broker.attest(body["evidence"], body.get("attached"), body["runtime_data"]["nonce"],
                        body["runtime_data"]["key"])
    return out, key, nonce


def test_challenge_writes_nothing_and_attest_writes_once(service: Service,
                                                         guests: Guests) -> None:
    broker = _broker(service)
    seen: list[bool] = []
    with _counting(service.store, seen):
        nonce = broker.challenge().nonce
    assert seen == []  # the nonce authenticates itself (a tag under the data key)
    with _counting(service.store, seen):
        out, _, _ = _attest(broker, guests.a, nonce)
    assert out.result.status == "affirming"
    # Verification reads nothing; then one write transaction: the nonce used up, the
    # policies read, the accepted entry in the audit log, together.
    assert seen == [True]


def test_policy_that_fails_to_load_still_burns_the_nonce(service: Service,
                                                        guests: Guests) -> None:
    """Policies are read in the transaction that uses the nonce up; their failure must not
    roll that back, whatever the error."""
    broker = _broker(service)
    r = service.http.put(f"{service.url}/v1/admin/policies/default",
                         headers=service.admin_headers(), json={"min_guest_svn": 0})
    assert r.status_code == 201, r.text
    with service.store.transaction() as tx:  # a database writer without the key
        tx.execute("UPDATE appraisal_policies SET body = ? WHERE policy_id = 'default'",
                   (json.dumps({"policy_id": "default", "allow_debug": True}),))
    nonce = broker.challenge().nonce
    with pytest.raises(IntegrityViolation):  # the app answers it as state.integrity
        _attest(broker, guests.a, nonce)
    with pytest.raises(NonceRejected) as again:
        _attest(broker, guests.a, nonce)
    assert again.value.code == "nonce.used"


def test_unknown_evidence_refused_audited_and_nonce_burned(service: Service) -> None:
    broker = _broker(service)
    nonce = broker.challenge().nonce
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = evidence_for(_Junk(), nonce, key)["runtime_data"]["key"]
    junk = base64.b64encode(b"\x00" * 64).decode()
    with pytest.raises(Problem) as first:
        broker.attest(junk, None, base64.urlsafe_b64encode(nonce).decode().rstrip("="), jwk)
    assert service.refusals()[-1].detail["code"] == first.value.code
    with pytest.raises(NonceRejected):
        broker.attest(junk, None, base64.urlsafe_b64encode(nonce).decode().rstrip("="), jwk)


class _Junk:
    """An evidence source whose bytes no scheme recognises."""

    def extended_report(self, report_data: bytes, vmpl: int | None = None
                        ) -> tuple[bytes, bytes]:
        return b"\x00" * 64, b""


def test_cached_keys_sign_what_joserfc_verifies_and_follow_rotation(service: Service,
                                                                    guests: Guests) -> None:
    broker = _broker(service)
    for _ in range(2):  # the second exchange uses the cached imports
        out, key, _ = _attest(broker, guests.a)
        jwks = broker.jwks()
        jti = str(verify_ear(out.token, jwks, issuer=broker.settings.issuer).claims["jti"])
        release, _ = broker.release("apps/a/key", out.token)
        assert decrypt_release(release, key, jwks=jwks, path="apps/a/key",
                               jti=jti) == SECRET_A
    old = broker.signing_key.kid
    rotated = broker.rotate_signing_key("test")
    assert rotated["kid"] != old
    out, key, _ = _attest(broker, guests.a)
    assert verify_ear(out.token, broker.jwks()).header["kid"] == rotated["kid"]
    release, _ = broker.release("apps/a/key", out.token)
    signed_header = json.loads(base64.urlsafe_b64decode(release.split(".")[0] + "=="))
    assert signed_header["kid"] == rotated["kid"]
    jti = str(out.result.claims["jti"])
    assert decrypt_release(release, key, jwks=broker.jwks(), path="apps/a/key",
                           jti=jti) == SECRET_A


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()],
                         ids=lambda c: c.name)
def test_direct_jwe_is_what_joserfc_decrypts(curve: ec.EllipticCurve) -> None:
    """The release JWE built with cryptography is byte-compatible with joserfc's ECDH-ES +
    A256GCM; the thumbprint is joserfc's; a changed protected header (the AAD) fails."""
    from joserfc import jwe
    from joserfc.errors import JoseError
    from joserfc.jwk import ECKey

    from veritee.crypto.kbs_jwe import encrypt_compact_ecdh_es
    from veritee.service.core import _ec_thumbprint

    key = ec.generate_private_key(curve)
    public = ECKey.import_key(key.public_key()).as_dict(private=False)
    assert _ec_thumbprint(public) == ECKey.import_key(public).thumbprint()
    token = encrypt_compact_ecdh_es(b"secret bytes", public, {
        "kid": _ec_thumbprint(public), "veritee.resource": "a/b", "veritee.version": 3})
    registry = jwe.JWERegistry(algorithms=["ECDH-ES", "A256GCM"], strict_check_header=False)
    obj = jwe.decrypt_compact(token, ECKey.import_key(key), registry=registry)
    assert obj.plaintext == b"secret bytes"
    assert obj.protected["veritee.resource"] == "a/b"
    assert obj.protected["veritee.version"] == 3
    assert (obj.protected["alg"], obj.protected["enc"]) == ("ECDH-ES", "A256GCM")
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    header["veritee.resource"] = "a/c"
    forged = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    with pytest.raises(JoseError):
        jwe.decrypt_compact(".".join([forged, *token.split(".")[1:]]), ECKey.import_key(key),
                            registry=registry)
    with pytest.raises(JoseError):  # another key cannot open it
        jwe.decrypt_compact(token, ECKey.import_key(ec.generate_private_key(curve)),
                            registry=registry)


def test_es384_release_verifies_with_joserfc(service_factory: Any, database_url: str,
                                             guests: Guests) -> None:
    """The directly built EAR and release JWS with an ES384 key (48-byte R and S) are what
    joserfc verifies; a flipped signature byte is refused."""
    from _service_support import provision

    svc = service_factory(database_url, ear_alg="ES384")
    provision(svc, guests)
    broker = _broker(svc)
    out, key, _ = _attest(broker, guests.a)
    # The EAR, signed without joserfc, is what joserfc (verify_ear) verifies, as a JWT.
    ear = verify_ear(out.token, broker.jwks(), issuer=broker.settings.issuer)
    assert ear.claims == out.result.claims
    assert ear.header == {"alg": "ES384", "kid": broker.signing_key.kid, "typ": "JWT"}
    release, _ = broker.release("apps/a/key", out.token)
    jti = str(out.result.claims["jti"])
    assert decrypt_release(release, key, jwks=broker.jwks(), path="apps/a/key",
                           jti=jti) == SECRET_A
    head, body, sig = release.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    assert len(raw) == 96
    raw[5] ^= 1
    bad = ".".join([head, body, base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()])
    from veritee.errors import VerificationError

    with pytest.raises(VerificationError):
        decrypt_release(bad, key, jwks=broker.jwks(), path="apps/a/key", jti=jti)


@pytest.mark.parametrize("column, value", [("detail", '{"code":"forged"}'),
                                           ("outcome", "refused"), ("entry_hash", "0" * 64)])
def test_audit_head_changed_after_this_process_wrote_it_is_refused(
        service: Service, guests: Guests, column: str, value: str) -> None:
    """audit_append skips recomputing the head's MAC only for a head stored exactly as this
    process wrote it: a head edited in the database since (any column) is still refused."""
    broker = _broker(service)
    _attest(broker, guests.a)  # this process writes the head ("attestation accepted")
    with service.store.transaction() as tx:
        if tx.dialect == "sqlite":
            tx.execute("DROP TRIGGER audit_log_no_update")
        else:
            tx.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")
        tx.execute(f"UPDATE audit_log SET {column} = ? WHERE seq = (SELECT MAX(seq) FROM "
                   "audit_log)", (value,))
    with pytest.raises(IntegrityViolation), service.store.transaction() as tx:
        tx.audit_append("test", "ok", "x", {}, "2026-01-01T00:00:00Z")


def test_audit_chain_extended_on_the_fast_path_verifies(service: Service,
                                                       guests: Guests) -> None:
    from veritee.service.audit import verify_chain

    broker = _broker(service)
    for _ in range(3):
        out, _, _ = _attest(broker, guests.a)
        broker.release("apps/a/key", out.token)
    with service.store.transaction(write=False) as tx:
        report = verify_chain(tx.audit_rows(), service.store.integrity)
    assert report.ok, report.problem
    assert report.entries >= 6


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_spki_from_the_jwk_is_cryptography_s(curve: ec.EllipticCurve) -> None:
    """The binding hashes the TEE key's SPKI, built from the JWK's coordinates: byte for
    byte what cryptography serialises, on every curve."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from joserfc.jwk import ECKey

    from veritee.service.core import _spki

    for _ in range(3):
        key = ec.generate_private_key(curve).public_key()
        jwk = ECKey.import_key(key).as_dict(private=False)
        assert _spki(key, jwk) == key.public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_tee_key_text_must_be_canonical(service: Service, guests: Guests) -> None:
    """The EAR's cnf is the JWK text as sent, so that text must name exactly one key: padded,
    short or non-canonical coordinates are refused."""
    broker = _broker(service)
    nonce = broker.challenge().nonce
    key = ec.generate_private_key(ec.SECP384R1())
    body = evidence_for(guests.a, nonce, key)
    jwk = body["runtime_data"]["key"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    bad = [{**jwk, "x": jwk["x"] + "="}, {**jwk, "x": "AA" + jwk["x"]},
           {**jwk, "y": jwk["y"][:-1] + alphabet[alphabet.index(jwk["y"][-1]) | 1]}
           if len(jwk["y"]) % 4 else {**jwk, "y": jwk["y"] + "A"},
           {**jwk, "x": jwk["x"].replace(jwk["x"][0], "+", 1)}]
    for wrong in bad:
        with pytest.raises(Problem) as refused:
            broker.attest(body["evidence"], body.get("attached"), body["runtime_data"]["nonce"],
                          wrong)
        assert refused.value.code == "request.invalid", wrong


@pytest.mark.parametrize("sql", [
    "UPDATE reference_values SET value = ? WHERE name = 'a'",
    "UPDATE reference_values SET scheme = 'tdx', value = ? WHERE name = 'a'",
    "UPDATE appraisal_policies SET body = ? WHERE policy_id = 'default'",
], ids=["reference value", "reference scheme", "policy body"])
def test_rows_verified_before_are_checked_again_once_changed(
        service: Service, guests: Guests, sql: str) -> None:
    """Reference values and policies are verified (and the policy built) once per stored
    text: a row a database writer changes after the service used it is refused, not served
    from what was verified before."""
    broker = _broker(service)
    r = service.http.put(f"{service.url}/v1/admin/policies/default",
                         headers=service.admin_headers(), json={"min_guest_svn": 0})
    assert r.status_code == 201, r.text
    _attest(broker, guests.a)  # policy and reference rows verified and built
    _attest(broker, guests.a)  # ... and served from what was kept
    value = (json.dumps({"policy_id": "default", "allow_debug": True})
             if "policies" in sql else guests.b.measurement.hex())
    with service.store.transaction() as tx:  # a database writer without the key
        tx.execute(sql, (value,))
    with pytest.raises(IntegrityViolation):
        _attest(broker, guests.a)


def test_an_attachment_is_decoded_once_per_text(service: Service, guests: Guests) -> None:
    """The certificate table a guest attaches is the same text every time: decoded once; a
    text that is not base64 is refused every time, and a large one is not kept."""
    broker = _broker(service)
    broker._attached.clear()
    _attest(broker, guests.a)
    _attest(broker, guests.a)
    assert len(broker._attached) == 1
    key = ec.generate_private_key(ec.SECP384R1())
    for attached in ("!!not base64!!", "QUJD" * 5000):
        for _ in range(2):
            nonce = broker.challenge().nonce
            body = evidence_for(guests.a, nonce, key)
            with pytest.raises(Problem):
                broker.attest(body["evidence"], attached, body["runtime_data"]["nonce"],
                              body["runtime_data"]["key"])
    assert len(broker._attached) == 1  # neither the bad text nor the 20,000-character one


def test_the_nonce_text_is_strict_base64url(service: Service, guests: Guests) -> None:
    """runtime_data.nonce is base64url, padded or not: a text with other characters (which
    a lenient decoder would skip), the standard alphabet, misplaced padding or non-zero
    trailing bits is a 400 naming the field, and the nonce is not used up by it."""
    broker = _broker(service)
    nonce = broker.challenge().nonce
    key = ec.generate_private_key(ec.SECP384R1())
    body = evidence_for(guests.a, nonce, key)
    text = body["runtime_data"]["nonce"]
    assert "=" not in text and len(text) % 4 == 3  # 32 bytes: 43 characters, 2 trailing bits
    standard = base64.b64encode(nonce).decode().rstrip("=")
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(text[-1])
    bad_bits = text[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[
        last | 1]
    refused = [text + "!", "!" + text, text[:20] + " " + text[20:], text + "==", text[:-2],
               "=" + text, text[:40] + "=" + text[40:], bad_bits]
    if standard != text:  # the nonce's bytes need + or / in the standard alphabet
        refused.append(standard)
    for bad in refused:
        with pytest.raises(Problem) as err:
            broker.attest(body["evidence"], body.get("attached"), bad,
                          body["runtime_data"]["key"])
        assert err.value.status == 400, bad
        assert "runtime_data.nonce: not valid base64url" in err.value.detail, bad
    # Padded or not, the nonce is accepted (once).
    out = broker.attest(body["evidence"], body.get("attached"), text + "=",
                        body["runtime_data"]["key"])
    assert out.result.status == "affirming"
    with pytest.raises(NonceRejected):
        broker.attest(body["evidence"], body.get("attached"), text,
                      body["runtime_data"]["key"])
