"""The audit append encodes an entry's detail once (issue 14): the hash it chains must stay the
canonical JSON of the whole entry, byte for byte, or every existing log would stop verifying."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.service.audit import detail_json, entry_hash, entry_hash_text
from veritee.service.integrity import StateIntegrity

_KEY = StateIntegrity(os.urandom(32))
_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20)


def _reference(prev: str, entry: dict[str, Any]) -> str:
    """The definition: HMAC over prev || json.dumps(entry, sort_keys=True, ASCII)."""
    body = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return _KEY.audit_mac(prev, body.encode())


@settings(max_examples=300, deadline=None)
@given(seq=st.integers(1, 2**62), at=_text, event=_text, outcome=_text, subject=_text,
       detail=st.dictionaries(_text, _json, max_size=6))
def test_entry_hash_is_the_canonical_json_of_the_entry(seq: int, at: str, event: str,
                                                        outcome: str, subject: str,
                                                        detail: dict[str, Any]) -> None:
    prev = hashlib.sha256(at.encode("utf-8", "surrogatepass")).hexdigest()
    want = _reference(prev, {"seq": seq, "at": at, "event": event, "outcome": outcome,
                             "subject": subject, "detail": detail})
    got = entry_hash_text(_KEY, prev, seq=seq, at=at, event=event, outcome=outcome,
                          subject=subject, detail_text=detail_json(detail))
    assert hmac.compare_digest(got, want)
    assert entry_hash(_KEY, prev, seq=seq, at=at, event=event, outcome=outcome,
                      subject=subject, detail=detail) == want
