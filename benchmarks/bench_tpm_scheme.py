"""The TPM scheme through the front door: what ``attest.verify`` adds over ``verify_quote``.

Run: ``python benchmarks/bench_tpm_scheme.py [--seconds 3]``

A fresh swtpm quote of the SHA-256 PCRs 0-9 with its event log, in the container the swtpm
attester sends (Trustee's tpm JSON): ``attest.verify`` (parse the container, verify the quote and
replay the log, bind the enrolled AK, appraise, compare the binding) against the baseline
``trust.tpm.verify_quote`` on the already-parsed pieces (signature, digest, replay) in the same
run. With the shared evidence present, the same for GCE's go-tpm-tools attestation (two quotes,
an AK certificate chain) against ``verify_quote`` of its SHA-256 quote. Figures are calls per
second (best of three windows, ``_timing.rate``) and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import rate

from veritee import attest
from veritee.attest import Challenge
from veritee.collateral.tpm import load_go_tpm_tools_attestation
from veritee.formats.eventlog import EventLog
from veritee.formats.tpm import HashAlg
from veritee.platform.tpm import (
    InsecureSwtpmPlatform,
    register_ak,
    swtpm_unavailable_reason,
)
from veritee.policy.tpm import TpmPolicy
from veritee.schemes import Anchors, Collateral, expected_binding, get
from veritee.trust.tpm import TpmAnchors, verify_quote

EVIDENCE = Path(__file__).resolve().parents[2] / "shared" / "evidence"


def _swtpm(seconds: float) -> dict[str, float]:
    from cryptography.hazmat.primitives.asymmetric import ec

    from veritee.platform.adapters import TpmAdapter

    root = Path(tempfile.mkdtemp(prefix="veritee-bench-tpm-scheme-"))
    try:
        with InsecureSwtpmPlatform.open(root / "tpm") as tpm:
            reg = register_ak(tpm, roots=[tpm.ca_root()], intermediates=tpm.ca_intermediates(),
                              now=datetime.now(UTC))
            challenge = Challenge.for_key(b"bench nonce", ec.generate_private_key(
                ec.SECP256R1()).public_key())
            binding = expected_binding(challenge.nonce, challenge.key_spki, 32)
            evidence = TpmAdapter(tpm).evidence(binding).data
            q = tpm.quote(binding)
        anchors = Anchors({"tpm": TpmAnchors(registered_aks=(reg.ak_public,))})
        log = EventLog.from_bytes(q.event_log)
        verifier = attest.Verifier(anchors=anchors)
        front = rate(lambda: verifier.verify(evidence, policy=TpmPolicy(),
                                             challenge=challenge), seconds)
        base = rate(lambda: verify_quote(q.attest, q.signature, q.ak_public, nonce=binding,
                                         pcrs=q.pcrs, event_log=log), seconds)
        return {"swtpm_front_door_per_s": front, "swtpm_verify_quote_per_s": base,
                "swtpm_ratio": front / base}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _gce(seconds: float) -> dict[str, float]:
    base_dir = EVIDENCE / "gcp-vtpm" / "gce-cos-85-no-nonce"
    if not base_dir.is_dir():
        return {}
    data = (base_dir / "attestation.pb").read_bytes()
    roots = get("tpm").load_collateral([base_dir / "gce_ek_root_1.cer",
                                        base_dir / "gce_ek_intermediate_2.crt"])
    now = datetime(2025, 1, 1, tzinfo=UTC)
    verifier = attest.Verifier(collateral=Collateral({"tpm": roots}), clock=lambda: now)
    q = next(e for e in load_go_tpm_tools_attestation(data) if HashAlg.SHA256 in e.pcrs)
    assert q.ak is not None and q.event_log is not None
    log = EventLog.from_bytes(q.event_log)
    ak = q.ak
    front = rate(lambda: verifier.verify(data, policy=TpmPolicy(), expected_binding=b""),
                 seconds)
    base = rate(lambda: verify_quote(q.attest, q.signature, ak, nonce=b"", pcrs=q.pcrs,
                                     event_log=log), seconds)
    return {"gce_front_door_per_s": front, "gce_verify_quote_per_s": base,
            "gce_ratio": front / base}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    out: dict[str, float] = {}
    reason = swtpm_unavailable_reason()
    if reason is None:
        out.update(_swtpm(args.seconds))
    else:
        print(f"swtpm part skipped: {reason}", file=sys.stderr)
    out.update(_gce(args.seconds))
    print(json.dumps({k: round(v, 3) for k, v in out.items()}, indent=2))


if __name__ == "__main__":
    main()
