"""``veritee demo --tee tpm``: the whole flow on a real TPM 2.0 (swtpm), step by step.

A software TPM is manufactured in a temporary directory (EK certificate from a private
``swtpm_localca``), booted with a measured boot written as a TCG event log, and its AK is
enrolled by credential activation. The verifier's nonce goes into a quote, which the same
``trust.tpm`` / ``policy.tpm`` code that checks real TPM evidence verifies, with the swtpm CA
root passed explicitly. Then the attacks, PCR-policy sealing, a PCR-bound key and an NV
counter. Everything runs on the TPM platform of ``veritee.platform.tpm``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from veritee.errors import PlatformError, PolicyRejected, SealingError, VerificationError

__all__ = ["run_demo_tpm"]


def _info(text: str) -> None:
    print(f"    {text}")


def run_demo_tpm() -> int:
    """Run the demo; 0 when every expected outcome happened (PlatformError without swtpm)."""
    from veritee.formats.eventlog import EventLog, EventType
    from veritee.formats.tpm import HashAlg
    from veritee.platform.tpm import (
        BootEvent,
        InsecureSwtpmPlatform,
        default_boot_chain,
        register_ak,
    )
    from veritee.policy.tpm import TpmPolicy, appraise
    from veritee.trust.tpm import TpmAnchors, bind_ak, verify_quote

    t0, n, ok = time.perf_counter(), 0, True

    def step(text: str) -> None:
        nonlocal n
        n += 1
        print(f"\n[{n}] {text}")

    state = Path(tempfile.mkdtemp(prefix="veritee-demo-swtpm-"))
    try:
        step("Software TPM 2.0 (swtpm, libtpms): manufactured with an EK certificate from a "
             "private swtpm_localca - INSECURE, for development only")
        tpm = InsecureSwtpmPlatform.open(state)
        with tpm:
            now = datetime.now(UTC)
            _info(f"banks: {', '.join(b.name for b in tpm.banks)}")
            step("Measured boot: firmware, boot loader, kernel extended into PCRs 0-7 and "
                 "written to a TCG crypto-agile event log")
            log = EventLog.from_bytes(tpm.event_log())
            _info(f"event log: {len(log.events)} events")

            step("Verifier enrols the AK: EK certificate -> swtpm CA (passed explicitly), "
                 "then credential activation proves the AK sits beside that EK")
            reg = register_ak(tpm, roots=[tpm.ca_root()],
                              intermediates=tpm.ca_intermediates(), now=now)
            _info(f"EK chain of {len(reg.ek_chain.path)} certificates, manufacturer "
                  f"{reg.ek_chain.manufacturer}, model {reg.ek_chain.model}; AK activated")

            step("Verifier sends a fresh nonce; the TPM quotes PCRs 0-7 with it")
            nonce = os.urandom(32)
            q = tpm.quote(nonce)
            # The enrolled AK binds the quote's AK to the TPM (issue 18: required by default).
            enrolled = TpmAnchors(registered_aks=(reg.ak_public,))
            verified = bind_ak(verify_quote(q.attest, q.signature, reg.ak_public, nonce=nonce,
                                            pcrs=q.pcrs,
                                            event_log=EventLog.from_bytes(q.event_log)),
                               enrolled, now=now)
            golden = {b: dict(v) for b, v in q.pcrs.items()}
            policy = TpmPolicy(pcrs=golden, nonce=nonce, require_event_log=True,
                               policy_id="demo")
            appraisal = appraise(verified, policy)
            for line in appraisal.to_text().splitlines()[1:]:
                _info(line)
            ok &= appraisal.accepted

            step("Attacks the verifier must stop")
            fresh = os.urandom(32)
            tampered = bytearray(q.attest)
            tampered[-1] ^= 1

            def replay() -> object:
                return verify_quote(q.attest, q.signature, reg.ak_public, nonce=fresh,
                                    pcrs=q.pcrs)

            def flipped() -> object:
                return verify_quote(bytes(tampered), q.signature, reg.ak_public, nonce=nonce,
                                    pcrs=q.pcrs)

            def other_boot() -> object:
                tpm.extend(BootEvent(4, EventType.EV_IPL, b"a rootkit's boot loader"))
                q2 = tpm.quote(nonce)
                v2 = bind_ak(verify_quote(q2.attest, q2.signature, reg.ak_public,
                                          nonce=nonce, pcrs=q2.pcrs), enrolled, now=now)
                a2 = appraise(v2, policy)
                if not a2.accepted:
                    raise PolicyRejected(a2)
                return a2

            ok &= _attempts([("replayed quote against a new nonce", replay),
                             ("one flipped bit in the quoted attest", flipped),
                             ("a different boot chain (PCR 4)", other_boot)])

            step("Sealing to PCRs: TPM2_Create under a PolicyPCR digest; TPM2_Unseal only "
                 "while the PCRs hold those values")
            tpm.reboot()
            blob = tpm.seal(b"disk key", {HashAlg.SHA256: [0, 1, 2, 3, 4, 5, 6, 7]})
            _info(f"unsealed after the same boot: {tpm.unseal(blob)!r}")
            key = tpm.derive_key(b"app key", pcrs={HashAlg.SHA256: [4]})
            tpm.reboot(boot=[*default_boot_chain(), BootEvent(4, EventType.EV_IPL, b"evil")])
            try:
                tpm.unseal(blob)
                refused = "NOT REFUSED"
            except SealingError:
                refused = "refused (SealingError)"
            _info(f"after a different boot: {refused}")
            ok &= refused.startswith("refused")
            try:
                other = tpm.derive_key(b"app key", pcrs={HashAlg.SHA256: [4]})
                _info(f"PCR-bound key after that boot differs: {other != key}")
                ok &= other != key
            except PlatformError as exc:
                _info(f"PCR-bound key after that boot: refused ({exc})")

            step("NV counter (TPM_NT_COUNTER): the TPM only ever increments it")
            cid = tpm.counter_create()
            value = tpm.counter_advance(cid, 3)
            _info(f"counter {cid.hex()[:8]}... at {value}; lowering it: "
                  f"{tpm.counter_advance(cid, 1)} (unchanged)")
            _info(f"TPM2_GetRandom: {tpm.trng(16).hex()}")
    finally:
        shutil.rmtree(state, ignore_errors=True)
    print(f"\nresult: {'OK' if ok else 'FAILED'} ({time.perf_counter() - t0:.1f} s)")
    return 0 if ok else 1


def _attempts(cases: list[tuple[str, Callable[[], object]]]) -> bool:
    ok = True
    for name, fn in cases:
        try:
            fn()
            outcome, stopped = "accepted", False
        except PolicyRejected as exc:
            outcome, stopped = "policy: " + ", ".join(exc.appraisal.codes()), True
        except VerificationError as exc:
            outcome, stopped = exc.code, True
        ok &= stopped
        _info(f"{name}: {'stopped' if stopped else 'NOT STOPPED'} ({outcome})")
    return ok

