"""A database writer cannot steer a release: every trust-state row is authenticated.

Each test plays an attacker with write access to the database but not the master key (a
stolen database credential, a compromised replica, a backup restored with edits): the row it
writes or edits is refused on read, loudly (a ``state.integrity`` problem, an audit entry, a
metric), and no secret leaves. SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from veritee.client import AttesterClient, Passport, ServiceRefused, evidence_for
from veritee.results import public_jwk, sign_ear, verify_ear
from veritee.service import MasterKey, Settings, create_app
from veritee.service.audit import GENESIS, verify_chain
from veritee.service.core import hash_token
from veritee.service.integrity import IntegrityViolation

from _service_support import SECRET_A, SECRET_B, Guests, Service


def _sql(svc: Service, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Write straight to the database, as the attacker does (no MACs, no service)."""
    with svc.store.transaction() as tx:
        tx.execute(sql, params)


def _integrity_alarms(svc: Service) -> list[str]:
    return [r.subject for r in svc.audit() if r.event == "integrity"]


def _metric(svc: Service) -> float:
    text = svc.http.get(f"{svc.url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("veritee_integrity_violations_total"))


def _claims_for(svc: Service, guests: Guests
                ) -> tuple[dict[str, Any], ec.EllipticCurvePrivateKey]:
    """Genuine claims of guest A's EAR, and the key it is bound to."""
    with AttesterClient(svc.url, guests.a, dev_mode=True) as client:
        passport = client.attest()
    jwks = svc.http.get(f"{svc.url}/v1/jwks").json()
    return dict(verify_ear(passport.token, jwks).claims), passport.key


def test_db_injected_signing_key_releases_nothing(service: Service, guests: Guests) -> None:
    """Finding 1: a key row inserted by a database writer mints no accepted EAR, is not
    published in the JWKS, and the service never re-reads keys because a token failed."""
    claims, _ = _claims_for(service, guests)
    attacker = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(attacker, kid="atk", alg="ES256")
    _sql(service, "INSERT INTO signing_keys (kid, alg, private_ciphertext, public_jwk, "
         "created_at, retired_at) VALUES ('atk', 'ES256', 'junk', ?, 0, 1)", (json.dumps(jwk),))
    # cnf = a key outside any TEE: the attacker's own.
    claims["cnf"] = {"jwk": ECKey.import_key(attacker.public_key()).as_dict(private=False)}
    forged = sign_ear(claims, attacker, kid="atk")
    r = service.http.get(f"{service.url}/v1/resources/apps/a/key",
                         headers={"Authorization": f"Bearer {forged}"})
    assert (r.status_code, r.json()["code"]) == (401, "token.invalid")
    assert "jwe" not in r.text and "release" not in r.json()
    # The JWKS is re-read on its timer, and then only from authenticated rows.
    broker = service.app.state.broker
    broker._jwks_loaded = 0.0
    kids = [k["kid"] for k in service.http.get(f"{service.url}/v1/jwks").json()["keys"]]
    assert "atk" not in kids and kids == [broker.signing_key.kid]
    assert "signing_keys:atk" in _integrity_alarms(service)
    assert _metric(service) >= 1


def test_db_injected_active_signing_key_stops_the_start(
        service: Service, database_url: str, guests: Guests, machine: Any) -> None:
    """An injected *live* key (newest, not retired) is not silently used at the next start."""
    attacker = ec.generate_private_key(ec.SECP256R1())
    jwk = public_jwk(attacker, kid="atk", alg="ES256")
    _sql(service, "INSERT INTO signing_keys (kid, alg, private_ciphertext, public_jwk, "
         "created_at) VALUES ('atk', 'ES256', 'junk', ?, ?)", (json.dumps(jwk), time.time() + 10))
    settings = Settings(database_url=database_url, dev_mode=True, key_source="emulated",
                        emulated_machine_dir="/nonexistent")
    with pytest.raises(IntegrityViolation, match="signing_keys"):
        create_app(settings, master_key=MasterKey(b"\x11" * 32), anchors=machine.anchors(),
                   store=service.store)


def test_db_edited_resource_policy_releases_nothing(service: Service, guests: Guests) -> None:
    """Opening A's resource to any workload in the database gives guest B nothing."""
    _sql(service, "UPDATE resources SET policy = ? WHERE path = 'apps/a/key'",
         (json.dumps({"allow_any_workload": True}),))
    with AttesterClient(service.url, guests.b, dev_mode=True) as client:
        passport = client.attest()
        with pytest.raises(ServiceRefused) as info:
            client.get_resource("apps/a/key", passport)
    assert (info.value.status, info.value.code) == (500, "state.integrity")
    assert "resources:apps/a/key" in _integrity_alarms(service)
    assert ("release", "granted") not in [(r.event, r.outcome) for r in service.audit()
                                          if r.subject == "resource:apps/a/key"]


def test_db_row_moved_to_another_path_releases_nothing(service: Service,
                                                       guests: Guests) -> None:
    """B's whole row (policy, ciphertext, version, MAC) copied under A's path: the MAC is
    bound to the path, so guest B cannot read its own secret through A's name, nor A B's."""
    with service.store.transaction() as tx:
        row = tx.one("SELECT policy, secret_ciphertext, version, mac FROM resources "
                     "WHERE path = 'apps/b/password'")
        assert row is not None
        tx.execute("UPDATE resources SET policy = ?, secret_ciphertext = ?, version = ?, "
                   "mac = ? WHERE path = 'apps/a/key'", tuple(row))
    with AttesterClient(service.url, guests.b, dev_mode=True) as client:
        with pytest.raises(ServiceRefused) as info:
            client.fetch("apps/a/key")
        assert info.value.code == "state.integrity"
        assert client.fetch("apps/b/password") == SECRET_B  # untouched rows still work


def test_db_swapped_secret_is_not_blessed_by_a_policy_update(service: Service,
                                                             guests: Guests) -> None:
    """An admin policy update keeps the *authenticated* secret, never one slipped in."""
    planted = MasterKey(b"\x22" * 32).encrypt(b"attacker-known", b"apps/a/key")
    _sql(service, "UPDATE resources SET secret_ciphertext = ? WHERE path = 'apps/a/key'",
         (planted,))
    r = service.http.put(f"{service.url}/v1/admin/resources/apps/a/key",
                         headers=service.admin_headers(),
                         json={"policy": {"measurements": [guests.a.measurement.hex()]}})
    assert (r.status_code, r.json()["code"]) == (500, "state.integrity")


def test_db_injected_reference_value_admits_nothing(service: Service, guests: Guests) -> None:
    """A launch digest added in the database does not make an unknown guest acceptable."""
    _sql(service, "INSERT INTO reference_values (name, kind, value, updated_at) VALUES "
         "('evil', 'measurement', ?, 0)", (guests.unknown.measurement.hex(),))
    with AttesterClient(service.url, guests.unknown, dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert info.value.code == "state.integrity"
    assert "reference_values:evil" in _integrity_alarms(service)


def test_db_edited_appraisal_policy_admits_nothing(service: Service, guests: Guests) -> None:
    """A laxer appraisal policy written in the database is refused, not applied."""
    r = service.http.put(f"{service.url}/v1/admin/policies/default",
                         headers=service.admin_headers(), json={"min_guest_svn": 0})
    assert r.status_code == 201, r.text
    _sql(service, "UPDATE appraisal_policies SET body = ? WHERE policy_id = 'default'",
         (json.dumps({"policy_id": "default", "allow_debug": True}),))
    with AttesterClient(service.url, guests.debug, dev_mode=True) as client, \
            pytest.raises(ServiceRefused) as info:
        client.attest()
    assert info.value.code == "state.integrity"


def test_db_injected_admin_token_opens_nothing(service: Service) -> None:
    token = "vt_attacker"
    _sql(service, "INSERT INTO admin_tokens (token_id, name, token_hash, role, created_at) "
         "VALUES ('atk', 'atk', ?, 'admin', 0)", (hash_token(token),))
    r = service.http.get(f"{service.url}/v1/admin/resources",
                         headers={"Authorization": f"Bearer {token}"})
    assert (r.status_code, r.json()["code"]) == (500, "state.integrity")
    assert "secret" not in r.text and "apps/a/key" not in r.text
    assert "admin_tokens:atk" in _integrity_alarms(service)


def test_db_unrevoked_admin_token_stays_revoked(service: Service) -> None:
    h = service.admin_headers()
    made = service.http.post(f"{service.url}/v1/admin/tokens", headers=h,
                             json={"name": "ci", "role": "admin"}).json()
    assert service.http.delete(f"{service.url}/v1/admin/tokens/{made['token_id']}",
                               headers=h).status_code == 204
    _sql(service, "UPDATE admin_tokens SET revoked_at = NULL WHERE token_id = ?",
         (made["token_id"],))
    r = service.http.get(f"{service.url}/v1/admin/resources",
                         headers={"Authorization": f"Bearer {made['token']}"})
    assert r.status_code == 500 and r.json()["code"] == "state.integrity"


def test_db_role_escalation_refused(service: Service) -> None:
    h = service.admin_headers()
    made = service.http.post(f"{service.url}/v1/admin/tokens", headers=h,
                             json={"name": "auditor", "role": "reader"}).json()
    _sql(service, "UPDATE admin_tokens SET role = 'admin' WHERE token_id = ?",
         (made["token_id"],))
    r = service.http.put(f"{service.url}/v1/admin/reference-values/x",
                         headers={"Authorization": f"Bearer {made['token']}"},
                         json={"kind": "measurement", "value": "00" * 48})
    assert r.json()["code"] == "state.integrity"


# -- the keyed audit chain ----------------------------------------------------------------

def _drop_audit_guards(svc: Service) -> None:
    with svc.store.transaction() as tx:
        if tx.dialect == "sqlite":
            tx.execute("DROP TRIGGER audit_log_no_update")
            tx.execute("DROP TRIGGER audit_log_no_delete")
        else:
            tx.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change")


def _sha_chain(prev: str, seq: int, at: str, event: str, outcome: str, subject: str,
               detail: dict[str, Any]) -> str:
    """The old, unkeyed entry hash: anybody can compute it."""
    body = json.dumps({"seq": seq, "at": at, "event": event, "outcome": outcome,
                       "subject": subject, "detail": detail},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(bytes.fromhex(prev) + body.encode()).hexdigest()


def _verify(svc: Service, expect_head: str | None = None) -> Any:
    with svc.store.transaction(write=False) as tx:
        return verify_chain(tx.audit_rows(), svc.store.integrity, expect_head=expect_head)


def test_appended_audit_row_detected(service: Service) -> None:
    """Finding 2: a row appended with a hash the attacker computed is caught."""
    head = _verify(service)
    assert head.ok
    seq = head.entries + 1
    detail = {"actor": "nobody"}
    forged = _sha_chain(head.head, seq, "2030-01-01T00:00:00+00:00", "release", "granted",
                        "resource:apps/a/key", detail)
    _sql(service, "INSERT INTO audit_log (seq, at, event, outcome, subject, detail, prev_hash, "
         "entry_hash) VALUES (?, '2030-01-01T00:00:00+00:00', 'release', 'granted', "
         "'resource:apps/a/key', ?, ?, ?)", (seq, json.dumps(detail), head.head, forged))
    report = _verify(service, expect_head=head.head)
    assert not report.ok and report.bad_seq == seq and "forged" in report.problem
    # The service will not chain its own entries onto a row it did not write.
    r = service.http.put(f"{service.url}/v1/admin/reference-values/x",
                         headers=service.admin_headers(),
                         json={"kind": "measurement", "value": "00" * 48})
    assert (r.status_code, r.json()["code"]) == (500, "state.integrity")


def test_recomputed_audit_chain_detected(service: Service) -> None:
    """An edited entry with every later hash recomputed (what defeats an unkeyed chain)."""
    rows = service.audit()
    _drop_audit_guards(service)
    prev = GENESIS if rows[0].seq == 1 else rows[0].prev_hash
    for row in rows:
        outcome = "refused" if row.seq == 2 else row.outcome
        digest = _sha_chain(prev, row.seq, row.at, row.event, outcome, row.subject, row.detail)
        _sql(service, "UPDATE audit_log SET outcome = ?, prev_hash = ?, entry_hash = ? "
             "WHERE seq = ?", (outcome, prev, digest, row.seq))
        prev = digest
    report = _verify(service)
    assert not report.ok and report.bad_seq == 1


def test_removed_audit_row_detected(service: Service) -> None:
    _drop_audit_guards(service)
    _sql(service, "DELETE FROM audit_log WHERE seq = 2")
    report = _verify(service)
    assert not report.ok and report.bad_seq == 3 and "removed" in report.problem


def test_reordered_audit_rows_detected(service: Service) -> None:
    rows = {r.seq: r for r in service.audit()}
    _drop_audit_guards(service)
    two, three = rows[2], rows[3]
    for seq, src in ((2, three), (3, two)):
        _sql(service, "UPDATE audit_log SET at = ?, event = ?, outcome = ?, subject = ?, "
             "detail = ?, prev_hash = ?, entry_hash = ? WHERE seq = ?",
             (src.at, src.event, src.outcome, src.subject,
              json.dumps(src.detail, sort_keys=True, separators=(",", ":")), src.prev_hash,
              src.entry_hash, seq))
    report = _verify(service)
    assert not report.ok and report.bad_seq == 2


def test_truncated_audit_tail_detected_with_expect_head(service: Service) -> None:
    head = _verify(service)
    _drop_audit_guards(service)
    _sql(service, "DELETE FROM audit_log WHERE seq = ?", (head.entries,))
    report = _verify(service, expect_head=head.head)
    assert not report.ok and "truncated" in report.problem


def test_untampered_state_still_serves(service: Service, guests: Guests) -> None:
    """The control: with nothing changed, everything verifies and the secret is released."""
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        assert client.fetch("apps/a/key") == SECRET_A
    assert _verify(service).ok and _integrity_alarms(service) == []


def test_db_without_the_master_key_cannot_be_adopted(
        service_factory: Callable[..., Service], database_url: str) -> None:
    """Another master key does not open this database's data key: refused, not re-keyed."""
    from veritee.errors import ConfigError

    service_factory(database_url)
    with pytest.raises(ConfigError, match="wrapped by master key"):
        service_factory(database_url, master=MasterKey(b"\x33" * 32))


def test_release_to_forged_ear_from_reused_nonce_key_still_bound(service: Service,
                                                                  guests: Guests) -> None:
    """Sanity for the positive path over the raw protocol: the signed release decrypts."""
    key = ec.generate_private_key(ec.SECP384R1())
    r = service.http.post(f"{service.url}/v1/challenge")
    text = r.json()["nonce"]
    nonce = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    r = service.http.post(f"{service.url}/v1/attest", json=evidence_for(guests.a, nonce, key))
    token = r.json()["token"]
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        assert client.get_resource("apps/a/key", Passport(token, key)) == SECRET_A
