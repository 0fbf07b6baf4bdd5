"""Challenge nonces authenticate themselves; only their use is stored (issue 14 target 2).

``nonce = expiry (ms) || random || HMAC tag`` under a key derived from the data key: a forged,
altered, foreign or expired nonce is refused before any verification, each refusal audited; a
nonce is used up by the one write that records an attempt's result, so two attempts racing
with one nonce get one result, and a purge of old rows never reopens a nonce.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from veritee.client import evidence_for
from veritee.service.core import NONCE_BYTES, Broker
from veritee.service.integrity import StateIntegrity
from veritee.service.problems import NonceRejected
from veritee.service.storage import NonceState

from _service_support import Guests, Service


def _broker(svc: Service) -> Broker:
    broker = svc.app.state.broker
    assert isinstance(broker, Broker)
    return broker


def _attest(broker: Broker, guest: Any, nonce: bytes) -> Any:
    body = evidence_for(guest, nonce, ec.generate_private_key(ec.SECP384R1()))
    text = base64.urlsafe_b64encode(nonce).decode().rstrip("=")
    return broker.attest(body["evidence"], body.get("attached"), text,
                         body["runtime_data"]["key"])


def _refused(broker: Broker, guest: Any, nonce: bytes) -> str:
    with pytest.raises(NonceRejected) as refused:
        _attest(broker, guest, nonce)
    return refused.value.code


def test_fresh_nonces_are_32_unpredictable_bytes_with_their_expiry(service: Service) -> None:
    broker = _broker(service)
    first, second = broker.challenge(), broker.challenge()
    assert len(first.nonce) == len(second.nonce) == NONCE_BYTES == 32
    assert first.nonce[6:] != second.nonce[6:]
    ttl = service.app.state.settings.nonce_ttl
    assert abs(first.expires_at - (service.clock() + ttl)) < 2
    assert int.from_bytes(first.nonce[:6], "big") / 1000 == first.expires_at


def test_forged_altered_and_foreign_nonces_are_unknown(service: Service,
                                                       guests: Guests) -> None:
    broker = _broker(service)
    good = broker.challenge().nonce
    far = (int.from_bytes(good[:6], "big") + 3_600_000).to_bytes(6, "big")
    body = good[:6] + os.urandom(10)
    foreign = body + StateIntegrity(os.urandom(32)).challenge_tag(body)
    cases = {
        "random": os.urandom(32),
        "later expiry, same tag": far + good[6:],
        "one tag bit": good[:-1] + bytes([good[-1] ^ 1]),
        "one random bit": good[:10] + bytes([good[10] ^ 0x80]) + good[11:],
        "another service's key": foreign,
        "short": good[:31],
        "long": good + b"\0",
    }
    for name, nonce in cases.items():
        assert broker.nonce_state(nonce, service.clock())[0] == NonceState.UNKNOWN, name
    # Through attest: refused and audited before verification, and the good one still works.
    assert _refused(broker, guests.a, cases["later expiry, same tag"]) == "nonce.unknown"
    assert service.refusals()[-1].detail["code"] == "nonce.unknown"
    assert _attest(broker, guests.a, good).result.status == "affirming"


def test_expiry_is_the_nonce_own(service: Service, guests: Guests) -> None:
    broker = _broker(service)
    nonce = broker.challenge().nonce
    service.clock.offset += service.app.state.settings.nonce_ttl + 1
    assert _refused(broker, guests.a, nonce) == "nonce.expired"


def test_racing_attempts_get_one_result(service: Service, guests: Guests) -> None:
    """Nothing is read before verifying (two replicas racing with one nonce both verify):
    the write that records the first result uses the nonce up, the second is refused by it."""
    broker = _broker(service)
    nonce = broker.challenge().nonce
    assert _attest(broker, guests.a, nonce).result.status == "affirming"
    assert _refused(broker, guests.a, nonce) == "nonce.used"
    assert service.refusals()[-1].detail["code"] == "nonce.used"
    # A refused attempt uses its nonce up the same way.
    other = broker.challenge().nonce
    with pytest.raises(Exception) as first:
        _attest(broker, guests.unknown, other)
    assert first.value.code == "attestation.rejected"  # type: ignore[attr-defined]
    assert _refused(broker, guests.a, other) == "nonce.used"


def test_purge_never_reopens_a_nonce(service: Service, guests: Guests,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    broker = _broker(service)
    nonce = broker.challenge().nonce
    _attest(broker, guests.a, nonce)
    # Housekeeping runs on this attempt (it is random, ~1%, otherwise): a used nonce that has
    # not expired keeps its row, so it stays used.
    monkeypatch.setattr("veritee.service.core.secrets.randbelow", lambda n: 0)
    _attest(broker, guests.a, broker.challenge().nonce)
    assert _refused(broker, guests.a, nonce) == "nonce.used"
    # Rows go only an hour after their nonce expired, when the nonce's own expiry refuses it
    # (the hour covers replicas whose clocks disagree).
    with service.store.transaction() as tx:
        assert tx.nonce_purge(service.clock() - 3600) == 0
    service.clock.offset += service.app.state.settings.nonce_ttl + 3601
    _attest(broker, guests.a, broker.challenge().nonce)  # purges the first nonce's row
    with service.store.transaction(write=False) as tx:
        assert tx.one("SELECT 1 FROM nonces WHERE nonce_hash = ?",
                      (hashlib.sha256(nonce).hexdigest(),)) is None
    assert _refused(broker, guests.a, nonce) == "nonce.expired"
