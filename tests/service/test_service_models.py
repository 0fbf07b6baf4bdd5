"""Both RATS models, nonces across restarts, the sealed master key, settings and EAR encoding."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import schemes
from veritee.attest import bind_report_data
from veritee.client import (
    AttesterClient,
    RelyingParty,
    ServiceRefused,
    evidence_for,
    fetch_jwks,
    verify_passport,
)
from veritee.errors import ConfigError, SealingError, VerificationError
from veritee.findings import Finding, Outcome
from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine
from veritee.policy import Appraisal
from veritee.results import ear_claims, ear_status, sign_ear, tier
from veritee.service import MasterKey, load_master_key
from veritee.service.settings import load_settings, settings_from_mapping

from _service_support import SECRET_A, Guests, Service, image


def test_passport_model_relying_party_verifies_offline(service: Service,
                                                       guests: Guests) -> None:
    jwks = fetch_jwks(service.url, dev_mode=True)  # once, ahead of time
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        passport = client.attest()
    service.server.stop()  # the verifier is gone: the relying party does not need it
    result = verify_passport(passport.token, jwks, issuer="veritee",
                             holder_key=passport.key.public_key())
    assert result.verified_claims["measurement"] == guests.a.measurement.hex()
    with pytest.raises(VerificationError, match=r"ear\.cnf"):
        verify_passport(passport.token, jwks, issuer="veritee",
                        holder_key=ec.generate_private_key(ec.SECP384R1()).public_key())
    holder = passport.key.public_key()
    with pytest.raises(VerificationError, match=r"ear\.expired"):
        verify_passport(passport.token, jwks, issuer="veritee", holder_key=holder,
                        now=time.time() + 301)
    other = {"keys": [dict(jwks["keys"][0], x=jwks["keys"][0]["y"])]}
    with pytest.raises(VerificationError, match=r"ear"):
        verify_passport(passport.token, other, issuer="veritee", holder_key=holder)
    with pytest.raises(VerificationError, match=r"ear\.issuer"):
        verify_passport(passport.token, jwks, issuer="someone else", holder_key=holder)


def test_passport_without_holder_key_or_issuer_refused(service: Service,
                                                       guests: Guests) -> None:
    """A passport checked without the holder's key is a bearer token: refused up front."""
    from veritee.errors import ConfigError

    jwks = fetch_jwks(service.url, dev_mode=True)
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        passport = client.attest()
    with pytest.raises(TypeError):
        verify_passport(passport.token, jwks)  # type: ignore[call-arg]
    with pytest.raises(ConfigError):
        verify_passport(passport.token, jwks, issuer="",
                        holder_key=passport.key.public_key())
    with pytest.raises(ConfigError):
        verify_passport(passport.token, jwks, issuer="veritee",
                        holder_key=None)  # type: ignore[arg-type]


def test_background_check_model_relying_party_posts_evidence(service: Service,
                                                             guests: Guests) -> None:
    rp = RelyingParty(service.url, issuer="veritee", dev_mode=True)
    nonce = rp.challenge()  # handed to the attester
    key = ec.generate_private_key(ec.SECP384R1())  # the attester's session key
    report, table = guests.a.extended_report(bind_report_data(nonce, key.public_key()))
    result = rp.appraise(report, table, nonce, key.public_key())
    assert result.status == "affirming"
    with pytest.raises(ServiceRefused, match=r"nonce\.used"):
        rp.appraise(report, table, nonce, key.public_key())


def test_nonce_single_use_across_restart(service_factory: Callable[..., Service],
                                         database_url: str, guests: Guests) -> None:
    first = service_factory(database_url)
    with AttesterClient(first.url, guests.a, dev_mode=True) as client:
        nonce = client.challenge()
    body = evidence_for(guests.a, nonce, ec.generate_private_key(ec.SECP384R1()))
    assert first.http.post(f"{first.url}/v1/attest", json=body).status_code == 200
    first.server.stop()
    second = service_factory(database_url)  # a new process image on the same database
    r = second.http.post(f"{second.url}/v1/attest", json=body)
    assert (r.status_code, r.json()["code"]) == (403, "nonce.used")


def test_master_key_is_sealed_to_the_service_workload(tmp_path: Path,
                                                      machine: InsecureEmulatedSnpMachine
                                                      ) -> None:
    guest = machine.launch(image(b"service"))
    path = tmp_path / "master.sealed"
    key = load_master_key(path, guest)
    assert path.exists() and key.key not in path.read_bytes()
    assert load_master_key(path, machine.launch(image(b"service"))) == key  # restart
    with pytest.raises(SealingError):
        load_master_key(path, machine.launch(image(b"another workload")))
    assert "key=" not in repr(key)


def test_master_key_wrong_for_database_is_refused(service: Service) -> None:
    from veritee.service.keys import load_signing_key

    with pytest.raises(ConfigError, match=r"does not decrypt"):
        load_signing_key(service.store, MasterKey(b"\x22" * 32), alg="ES256", now=time.time())


def test_settings_refuse_insecure_outside_dev_mode(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"insecure settings refused.*key_source"):
        settings_from_mapping({"emulated_machine_dir": "m"})
    with pytest.raises(ConfigError, match=r"host: plain HTTP"):
        settings_from_mapping({"key_source": "sevsnp", "host": "0.0.0.0"})
    with pytest.raises(ConfigError, match=r"token_ttl"):
        settings_from_mapping({"key_source": "sevsnp", "token_ttl": 7200})
    ok = settings_from_mapping({"key_source": "sevsnp"})
    assert ok.insecure_reasons() == []
    f = tmp_path / "s.toml"
    f.write_text('dev_mode = true\nemulated_machine_dir = "m"\ntoken_ttl = 60\n')
    s = load_settings(f, env={"VERITEE_TOKEN_TTL": "30", "VERITEE_DEV_MODE": "true"})
    assert s.token_ttl == 30 and s.emulated_machine_dir == str(tmp_path / "m")
    with pytest.raises(ConfigError, match=r"s\.toml: toekn_ttl: unknown setting"):
        f.write_text("toekn_ttl = 1\n")
        load_settings(f, env={})
    with pytest.raises(ConfigError, match=r"VERITEE_PORT"):
        settings_from_mapping({"key_source": "sevsnp"}, {"VERITEE_PORT": "http"})


def _appraisal(*failed: str, debug: bool = False) -> Appraisal:
    codes = ["sevsnp.measurement.mismatch", "sevsnp.policy.debug", "sevsnp.tcb.snp.below_minimum",
             "sevsnp.chip_id.mismatch", "sevsnp.report_data.mismatch"]
    findings = tuple(Finding(c, Outcome.FAIL if c in failed else Outcome.PASS, c.split(".")[1])
                     for c in codes)
    return Appraisal(tee="sevsnp", policy_id="p", findings=findings,
                     claims={"guest_policy": {"debug": debug}})


def trust_vector(a: Appraisal) -> dict[str, int]:
    """The AR4SI mapping of the scheme ``a.tee`` names (``results.trust_vector`` maps only
    appraisals made through a scheme; these are made by the policy module directly)."""
    return dict(getattr(schemes.get(a.tee), "trust_vector")(a))  # noqa: B009


@pytest.mark.parametrize(("failed", "entry", "value"), [
    ((), "executables", 3),
    (("sevsnp.measurement.mismatch",), "executables", 33),
    (("sevsnp.tcb.snp.below_minimum",), "hardware", 32),
    (("sevsnp.policy.debug",), "configuration", 96),
    (("sevsnp.chip_id.mismatch",), "instance-identity", 97),
    (("sevsnp.report_data.mismatch",), "instance-identity", 99),
])
def test_trust_vector_maps_each_failed_check(failed: tuple[str, ...], entry: str,
                                             value: int) -> None:
    a = _appraisal(*failed)
    assert trust_vector(a)[entry] == value
    claims = ear_claims(dataclasses.replace(a, vector=trust_vector(a)), issuer="i", now=1000.0,
                        ttl=60, nonce=b"n")
    assert claims["submods"]["sevsnp"]["ear.status"] == (
        "affirming" if not failed else "contraindicated")
    assert claims["exp"] == 1060 and claims["eat_nonce"] == "bg"


def test_tiers_and_status() -> None:
    assert [tier(v) for v in (0, 1, -1, 2, 31, 32, 95, 96, 127)] == [
        "none", "none", "none", "affirming", "affirming", "warning", "warning",
        "contraindicated", "contraindicated"]
    assert ear_status({"hardware": 2, "executables": 33}) == "warning"
    assert ear_status({"hardware": 2}, accepted=False) == "contraindicated"
    assert trust_vector(_appraisal(debug=True))["runtime-opaque"] == 96


def test_sign_ear_rejects_other_curves() -> None:
    with pytest.raises(ValueError, match=r"P-256 or P-384"):
        sign_ear({}, ec.generate_private_key(ec.SECP521R1()), kid="k")


def test_secret_released_decrypts_only_with_the_tee_key(service: Service,
                                                        guests: Guests) -> None:
    from veritee.client import decrypt_release

    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        passport = client.attest()
        r = service.http.get(f"{service.url}/v1/resources/apps/a/key",
                             headers={"Authorization": f"Bearer {passport.token}"})
    assert r.headers["cache-control"] == "no-store"
    release = r.json()["release"]
    jwks = fetch_jwks(service.url, dev_mode=True)
    kw = {"jwks": jwks, "jti": passport.jti}
    assert decrypt_release(release, passport.key, path="apps/a/key", **kw) == SECRET_A
    with pytest.raises(VerificationError, match=r"does not decrypt"):
        decrypt_release(release, ec.generate_private_key(ec.SECP384R1()), path="apps/a/key",
                        **kw)
    with pytest.raises(VerificationError, match=r"another resource"):
        decrypt_release(release, passport.key, path="apps/b/password", **kw)
    with pytest.raises(VerificationError, match=r"another EAR"):
        decrypt_release(release, passport.key, path="apps/a/key", jwks=jwks, jti="other")


def test_sevsnp_key_source_outside_a_guest_is_a_platform_error(tmp_path: Path) -> None:
    from veritee.errors import PlatformError
    from veritee.platform.sevsnp import sev_guest_available
    from veritee.service.app import service_master_key

    if sev_guest_available():
        pytest.skip("inside a real SEV-SNP guest")
    settings = settings_from_mapping({"key_source": "sevsnp",
                                      "master_key_file": str(tmp_path / "m.sealed")})
    with pytest.raises(PlatformError, match="sev-guest"):
        service_master_key(settings)


def test_ear_status_reads_every_value_as_tier_does() -> None:
    """ear_status looks AR4SI values up in a table: every value in and around -128..127 (and
    non-int values) gets the status that tier() gives it."""
    from veritee.results import _STATUS_ORDER, ear_status, tier

    for value in [*range(-200, 201), True, False, 2.5]:
        for required in ((), ("x",)):
            got = ear_status({"x": value, "y": 2}, required=required)
            tiers = [t for t in (tier(value), "affirming") if t != "none"]
            tiers += ["none" for c in required if tier(value) == "none"]
            assert got == max(tiers, key=_STATUS_ORDER.index), (value, required)
