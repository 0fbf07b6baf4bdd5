"""``veritee demo --tee tdx|sgx``: the whole flow on an emulated Intel TDX TD or SGX enclave.

Attester side: an emulated Intel vendor (SGX Root CA, PCK CA, TCB Signing, TCB Info, QE
identity, CRLs) and CPU, a TD built page by page (MRTD) or an enclave built and signed
(MRENCLAVE, SIGSTRUCT, EINIT), a key pair, and a quote whose REPORTDATA binds the verifier's
fresh nonce and that key. Verifier side: the same ``attest.verify_intel_evidence`` that
checks real Intel quotes, with the emulated root passed explicitly. Then the attacks a
verifier must stop, the platform's own keys, and (TDX) the key broker releasing a secret.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee.attest import bind_report_data, verify_intel_evidence
from veritee.cli._demo import _Printer
from veritee.errors import PlatformError, PolicyRejected, SealingError, VerificationError
from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor
from veritee.platform.emulated.sgx import (
    InsecureEmulatedSgxMachine,
    KeyPolicy,
    sgx_seal,
    sgx_unseal,
)
from veritee.platform.emulated.tdx import InsecureEmulatedTdxMachine
from veritee.policy.intel import SgxPolicy, TdxPolicy
from veritee.trust.intel import IntelCollateral

__all__ = ["run_demo_intel"]


def _firmware() -> bytes:
    pages = [hashlib.sha512(b"veritee demo TDVF page %d" % i).digest() * 64 for i in range(8)]
    return b"".join(pages)


def _attempts(out: _Printer, cases: list[tuple[str, Callable[[], object]]]) -> bool:
    ok = True
    for name, fn in cases:
        try:
            fn()
            outcome, stopped = "accepted", False
        except PolicyRejected as exc:
            outcome, stopped = "policy: " + ", ".join(exc.appraisal.codes()), True
        except (VerificationError, PlatformError, SealingError) as exc:
            outcome, stopped = str(getattr(exc, "code", type(exc).__name__)), True
        ok &= stopped
        out.info(f"{name}: {'stopped' if stopped else 'NOT STOPPED'} ({outcome})")
    return ok


def _vendor(out: _Printer, now: datetime) -> tuple[EmulatedIntelVendor, EmulatedIntelCpu]:
    out.step("Emulated Intel vendor: SGX Root CA, PCK Processor CA, TCB Signing key (ECDSA "
             "P-256) - INSECURE, for development only")
    vendor = EmulatedIntelVendor.generate(now=now)
    fp = vendor.root.fingerprint(hashes.SHA256()).hex()
    out.info(f"root SHA-256: {fp} (trusted only explicitly)")
    out.info("TCB levels: " + ", ".join(f"microcode {lv.release} -> {lv.status.value}"
                                        for lv in vendor.tcb_levels))
    cpu = EmulatedIntelCpu(vendor, now=now)
    out.step("Emulated CPU: fused secret, PPID, microcode (CPUSVN), PCE SVN, PCK certificate")
    out.info(f"FMSPC {vendor.fmspc.hex()}  CPUSVN {cpu.cpusvn.hex()}  PCESVN {cpu.pcesvn}")
    out.info(f"PCK certificate: {cpu.pck_certificate().subject.rfc4514_string()}")
    return vendor, cpu


def run_demo_intel(tee: str) -> int:
    """Run the TDX (``tdx``) or SGX (``sgx``) demo; 0 when every expected outcome happened."""
    return _run_tdx() if tee == "tdx" else _run_sgx()


def _run_tdx() -> int:
    out, ok, now = _Printer(), True, datetime.now(UTC)
    vendor, cpu = _vendor(out, now)
    machine = InsecureEmulatedTdxMachine(vendor, cpu=cpu)
    col = vendor.collateral("TDX", now)

    out.step("Host builds a TD: TDH.MEM.PAGE.ADD + TDH.MR.EXTEND per page, TDH.MR.FINALIZE")
    td = machine.launch(_firmware())
    out.info(f"MRTD: {td.mr_td.hex()}")
    td.measure_event(1, b"kernel image")
    td.measure_event(2, b"kernel command line")
    out.info(f"RTMR1 (kernel) {td.rtmrs[1].hex()[:32]}...  RTMR2 (cmdline) "
             f"{td.rtmrs[2].hex()[:32]}...")

    out.step("Verifier sends a fresh nonce; the TD makes a P-384 key pair")
    nonce = os.urandom(32)
    key = ec.generate_private_key(ec.SECP384R1())
    report_data = bind_report_data(nonce, key.public_key())
    out.info(f"REPORTDATA = SHA-512(nonce || TD public key) = {report_data.hex()[:32]}...")

    out.step("TD: TDG.MR.REPORT -> TDREPORT (MAC'd by the CPU) -> TD Quoting Enclave -> quote")
    quote = td.quote(report_data)
    out.info(f"TD quote v4, {len(quote)} bytes, PCK chain inside (certification data 5 in 6)")

    out.step("Verifier: PCK chain -> QE report -> quote signature -> TCB Info / QE identity")
    policy = TdxPolicy(policy_id="demo", mrtd={td.mr_td}, report_data=report_data)

    def verify(q: bytes, pol: TdxPolicy = policy, roots: object = "emulated",
               collateral: IntelCollateral = col) -> object:
        return verify_intel_evidence(q, collateral=collateral, policy=pol, now=now,
                                     trusted_roots=[vendor.root] if roots else None)

    appraisal = verify_intel_evidence(quote, collateral=col, policy=policy, now=now,
                                      trusted_roots=[vendor.root])
    for line in appraisal.to_text().splitlines()[1:]:
        out.info(line)

    out.step("Attacks the verifier must stop")
    tampered = bytearray(quote)
    tampered[48 + 136] ^= 1  # one bit of MRTD
    debug_td = machine.launch(_firmware(), debug=True)
    old_cpu = EmulatedIntelCpu(vendor, release=1, now=now)
    old = InsecureEmulatedTdxMachine(vendor, cpu=old_cpu).launch(_firmware())
    fresh = bind_report_data(os.urandom(32), key.public_key())
    ok &= _attempts(out, [
        ("replayed quote against a new nonce", lambda: verify(quote, replace(
            policy, report_data=fresh))),
        ("one flipped bit in MRTD", lambda: verify(bytes(tampered))),
        ("emulated root not passed (production Intel root only)",
         lambda: verify(quote, roots=None)),
        ("debug TD under the default policy", lambda: verify(debug_td.quote(report_data),
                                                             replace(policy, mrtd=None))),
        ("TD on revoked microcode", lambda: verify(old.quote(report_data),
                                                   replace(policy, mrtd=None))),
        ("a forged TDREPORT handed to the TD QE",
         lambda: machine.quote(_flip(td.tdreport(report_data), 512 + 16))),
    ])

    out.step("Keys: TDX 1.x has no sealing key; the TD asks a key-service TD (vTPM pattern)")
    k1 = td.derived_key("mrtd")
    out.info(f"mrtd key {k1.hex()[:16]}...; a TD with other firmware gets another key: "
             f"{machine.launch(_firmware()[::-1]).derived_key('mrtd') != k1}")

    out.step("Key broker: the service releases a secret only to an attested TD")
    ok &= _key_broker(out, vendor, td, machine, now)

    print(f"\nresult: {'OK' if ok else 'FAILED'} ({time.perf_counter() - out.t0:.1f} s)")
    return 0 if ok else 1


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1
    return bytes(out)


def _key_broker(out: _Printer, vendor: EmulatedIntelVendor, td: object,
                machine: InsecureEmulatedTdxMachine, now: datetime) -> bool:
    import httpx

    from veritee.client import AttesterClient, ServiceRefused
    from veritee.service import MasterKey, Settings, create_app
    from veritee.service.core import create_admin_token
    from veritee.service.server import LoopbackServer
    from veritee.service.storage import open_store
    from veritee.trust.roots import TrustAnchors

    secret = b"TD disk key 0x7d"
    with tempfile.TemporaryDirectory() as tmp:
        col = Path(tmp) / "intel"
        vendor.write_collateral(col, "TDX", now)
        url = f"sqlite:///{Path(tmp) / 'kbs.db'}"
        store = open_store(url)
        settings = Settings(database_url=url, dev_mode=True, key_source="emulated",
                            emulated_machine_dir=tmp, intel_collateral_dir=str(col),
                            intel_trust_roots=(str(col / "root_ca.pem"),))
        app = create_app(settings, master_key=MasterKey.generate(), anchors=TrustAnchors.amd(),
                         store=store)
        _, admin = create_admin_token(store, "demo", "admin")
        mrtd = td.mr_td  # type: ignore[attr-defined]
        with LoopbackServer(app) as server, httpx.Client(timeout=10) as http:
            out.info(f"service: {server.url} (intel_trust_roots = the emulated root, dev_mode)")
            http.put(f"{server.url}/v1/admin/resources/tds/demo/disk-key",
                     headers={"Authorization": f"Bearer {admin}"},
                     json={"secret": base64.b64encode(secret).decode(),
                           "policy": {"mrtd": [mrtd.hex()]}}).raise_for_status()
            with AttesterClient(server.url, td, dev_mode=True) as client:  # type: ignore[arg-type]
                got = client.get_resource("tds/demo/disk-key", client.attest())
            out.info(f"TD: challenge -> quote -> EAR -> secret {got!r}")
            other = machine.launch(_firmware()[::-1])
            try:
                with AttesterClient(server.url, other, dev_mode=True) as client:
                    client.get_resource("tds/demo/disk-key", client.attest())
                refused = "NOT REFUSED"
            except ServiceRefused as exc:
                refused = f"refused ({exc.status}, {exc.code})"
            out.info(f"a TD with another MRTD: {refused}")
        store.close()
    return got == secret and refused.startswith("refused")


def _run_sgx() -> int:
    out, ok, now = _Printer(), True, datetime.now(UTC)
    vendor, cpu = _vendor(out, now)
    machine = InsecureEmulatedSgxMachine(vendor, cpu=cpu)
    col = vendor.collateral("SGX", now)

    out.step("Enclave author: an RSA-3072 (e = 3) enclave signing key")
    author = rsa.generate_private_key(public_exponent=3, key_size=3072)
    out.step("Loader: ECREATE, EADD + EEXTEND per page, SIGSTRUCT, EINIT")
    code = _firmware()
    enclave = machine.load(code, author, isv_prod_id=1, isv_svn=2)
    out.info(f"MRENCLAVE {enclave.mr_enclave.hex()}")
    out.info(f"MRSIGNER  {enclave.mr_signer.hex()} (SHA-256 of the modulus)")
    peer = machine.load(code[::-1], author, isv_prod_id=2, isv_svn=2)

    out.step("Local attestation: EREPORT for a peer enclave, checked with its report key")
    body = peer.verify_report(enclave.ereport(peer.target_info(), bytes(64)))
    out.info(f"peer verified the report of {body.mr_enclave.hex()[:16]}... (AES-CMAC)")

    out.step("Remote attestation: nonce + key -> EREPORT for the QE -> SGX quote v3")
    nonce = os.urandom(32)
    key = ec.generate_private_key(ec.SECP384R1())
    report_data = bind_report_data(nonce, key.public_key())
    quote = enclave.quote(report_data)
    policy = SgxPolicy(policy_id="demo", mrenclave={enclave.mr_enclave},
                       mrsigner={enclave.mr_signer}, isv_prod_id=1, min_isv_svn=2,
                       report_data=report_data)
    appraisal = verify_intel_evidence(quote, collateral=col, policy=policy, now=now,
                                      trusted_roots=[vendor.root])
    for line in appraisal.to_text().splitlines()[1:]:
        out.info(line)

    def verify(q: bytes, pol: SgxPolicy = policy) -> object:
        return verify_intel_evidence(q, collateral=col, policy=pol, now=now,
                                     trusted_roots=[vendor.root])

    out.step("Attacks the verifier and the enclaves must stop")
    debug = machine.load(code, author, isv_prod_id=1, isv_svn=2, debug=True)
    older = machine.load(code + b"v1", author, isv_prod_id=1, isv_svn=1)
    ok &= _attempts(out, [
        ("replayed quote against a new nonce", lambda: verify(quote, replace(
            policy, report_data=bind_report_data(os.urandom(32), key.public_key())))),
        ("one flipped bit in MRENCLAVE", lambda: verify(_flip(quote, 48 + 64))),
        ("debug enclave", lambda: verify(debug.quote(report_data),
                                         replace(policy, mrenclave=None))),
        ("older enclave release (ISVSVN 1)", lambda: verify(older.quote(report_data),
                                                            replace(policy, mrenclave=None))),
        ("report for another target", lambda: peer.verify_report(
            enclave.ereport(enclave.target_info(), bytes(64)))),
        ("tampered local report", lambda: peer.verify_report(
            _flip(enclave.ereport(peer.target_info(), bytes(64)), 70))),
        ("older release unseals data of a newer one", lambda: sgx_unseal(
            older, sgx_seal(enclave, b"state", KeyPolicy.MRSIGNER),
            policy=KeyPolicy.MRSIGNER, min_isv_svn=0)),
    ])

    out.step("Sealing: EGETKEY seal keys (MRSIGNER policy: a newer release can unseal)")
    newer = machine.load(code + b"v3", author, isv_prod_id=1, isv_svn=3)
    blob = sgx_seal(enclave, b"enclave state", KeyPolicy.MRSIGNER)
    got = sgx_unseal(newer, blob, policy=KeyPolicy.MRSIGNER, min_isv_svn=2)
    out.info(f"sealed by ISVSVN 2, unsealed by ISVSVN 3: {got!r}")
    ok &= got == b"enclave state"
    print(f"\nresult: {'OK' if ok else 'FAILED'} ({time.perf_counter() - out.t0:.1f} s)")
    return 0 if ok else 1
