"""EAR signing-key rotation: ``POST /v1/admin/signing-keys/rotate``.

The new key becomes current, the retired one stays published until every token it signed
has expired (``retired_at + token_ttl``), then leaves the JWKS; each rotation is audited.
"""

from __future__ import annotations

import pytest

from veritee.client import AttesterClient
from veritee.errors import VerificationError
from veritee.results import verify_ear
from veritee.service.audit import verify_chain
from veritee.service.core import create_admin_token

from _service_support import Guests, Service


def _jwks(service: Service) -> dict[str, object]:
    r = service.http.get(f"{service.url}/v1/jwks")
    assert r.status_code == 200
    doc: dict[str, object] = r.json()
    return doc


def _kids(service: Service) -> list[str]:
    return [str(k["kid"]) for k in _jwks(service)["keys"]]  # type: ignore[attr-defined]


def _rotate(service: Service) -> dict[str, str]:
    r = service.http.post(f"{service.url}/v1/admin/signing-keys/rotate",
                          headers=service.admin_headers())
    assert r.status_code == 200, r.text
    doc: dict[str, str] = r.json()
    return doc


def test_rotation_keeps_old_tokens_verifying_and_signs_new_ones_with_the_new_kid(
        service: Service, guests: Guests) -> None:
    (old_kid,) = _kids(service)
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        before = client.attest()
        doc = _rotate(service)
        assert doc["retired"] == old_kid and doc["kid"] != old_kid
        assert set(_kids(service)) == {old_kid, doc["kid"]}
        # A passport issued before the rotation still verifies offline and still releases.
        assert verify_ear(before.token, _jwks(service), now=service.clock()).header["kid"] \
            == old_kid
    # A client made after the rotation (AttesterClient caches the JWKS it first fetched)
    # redeems the pre-rotation passport: the release is signed with the new key.
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        assert client.get_resource("apps/a/key", before)
        after = client.attest()
    assert verify_ear(after.token, _jwks(service), now=service.clock()).header["kid"] \
        == doc["kid"]


def test_retired_key_leaves_the_jwks_after_the_token_lifetime(
        service: Service, guests: Guests) -> None:
    (old_kid,) = _kids(service)
    with AttesterClient(service.url, guests.a, dev_mode=True) as client:
        before = client.attest()
    new_kid = _rotate(service)["kid"]
    ttl = service.app.state.settings.token_ttl
    service.clock.offset += ttl - 1
    assert old_kid in _kids(service)  # its last token may still be live
    service.clock.offset += 2
    assert _kids(service) == [new_kid]
    with pytest.raises(VerificationError):
        verify_ear(before.token, _jwks(service), now=service.clock() - ttl)


def test_rotation_is_audited_in_the_chain(service: Service) -> None:
    doc = _rotate(service)
    rows = service.audit()
    last = rows[-1]
    assert (last.event, last.outcome) == ("admin.signing_key.rotate", "ok")
    assert last.detail["retired"] == doc["retired"] and last.detail["current"] == doc["kid"]
    assert verify_chain(rows, service.store.integrity).ok


def test_reader_token_cannot_rotate_the_signing_key(service: Service) -> None:
    kids = _kids(service)
    _, reader = create_admin_token(service.store, "auditor", "reader")
    r = service.http.post(f"{service.url}/v1/admin/signing-keys/rotate",
                          headers={"Authorization": f"Bearer {reader}"})
    assert (r.status_code, r.json()["code"]) == (403, "admin.forbidden")
    r = service.http.post(f"{service.url}/v1/admin/signing-keys/rotate")
    assert r.status_code == 401
    assert _kids(service) == kids


def test_forged_retirement_row_is_refused_not_published(service: Service) -> None:
    # An attacker with database write access un-retires (or back-dates) a key by editing
    # retired_at: the row MAC no longer matches, so the key is refused, never served.
    old = _rotate(service)["retired"]
    with service.store.transaction() as tx:
        tx.execute("UPDATE signing_keys SET retired_at = NULL WHERE kid = ?", (old,))
    service.clock.offset += 120  # past the JWKS refresh
    assert old not in _kids(service)


def test_audit_entries_carry_the_request_id_of_the_http_request(service: Service) -> None:
    # Matches an audit entry to its access-log line (the id the caller sent, or the service's).
    r = service.http.post(f"{service.url}/v1/admin/signing-keys/rotate",
                          headers={**service.admin_headers(), "X-Request-Id": "rotate-0042"})
    assert r.status_code == 200
    r = service.http.put(f"{service.url}/v1/admin/reference-values/x",
                         headers={**service.admin_headers(), "X-Request-Id": "refval-0043"},
                         json={"kind": "measurement", "value": "00" * 48})
    assert r.status_code in (200, 201)
    rows = service.audit()
    assert rows[-2].detail["request_id"] == "rotate-0042"
    assert rows[-1].detail["request_id"] == "refval-0043"
