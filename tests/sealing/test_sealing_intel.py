"""veritee.sealing on the emulated SGX enclave and TDX TD: the same API as on SEV-SNP.

The sealing tables of docs/sealing.md, one test per row: who opens, who is refused. Every
refusal is the one SealingError (no oracle).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from veritee.errors import ConfigError, PlatformError, SealingError
from veritee.formats.sealed import SealedHeader, SealTee, SgxKeyParams, TdxKeyParams
from veritee.platform.adapters import SgxPlatform, TdxPlatform
from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor
from veritee.platform.emulated.sgx import EmulatedEnclave, InsecureEmulatedSgxMachine
from veritee.platform.emulated.tdx import EmulatedTd, InsecureEmulatedTdxMachine
from veritee.sealing import (
    Sealer,
    SealingPolicy,
    open_sealed,
    reseal,
    seal,
    seal_file,
    sealing_source,
    unseal,
)
from veritee.sealing._core import data_key

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CODE = b"enclave code, release 1".ljust(4096, b"\0")
OTHER_CODE = b"another enclave entirely".ljust(4096, b"\0")
MEASUREMENT = SealingPolicy.measurement()


@pytest.fixture(scope="module")
def vendor() -> EmulatedIntelVendor:
    return EmulatedIntelVendor.generate(now=NOW)


@pytest.fixture(scope="module")
def signer() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=3, key_size=3072)


@pytest.fixture(scope="module")
def other_signer() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=3, key_size=3072)


@pytest.fixture
def sgx(vendor: EmulatedIntelVendor) -> InsecureEmulatedSgxMachine:
    return InsecureEmulatedSgxMachine(vendor, cpu=EmulatedIntelCpu(vendor, now=NOW))


@pytest.fixture
def tdx(vendor: EmulatedIntelVendor) -> InsecureEmulatedTdxMachine:
    return InsecureEmulatedTdxMachine(vendor, cpu=EmulatedIntelCpu(vendor, now=NOW))


def _enclave(machine: InsecureEmulatedSgxMachine, key: rsa.RSAPrivateKey, *, svn: int = 1,
             code: bytes = CODE, debug: bool = False) -> EmulatedEnclave:
    return machine.load(code, key, isv_svn=svn, debug=debug)


# -- SGX: the table ----------------------------------------------------------------------------
def test_sgx_measurement_seal_opens_in_the_same_enclave(sgx: InsecureEmulatedSgxMachine,
                                                        signer: rsa.RSAPrivateKey) -> None:
    enclave = _enclave(sgx, signer)
    blob = seal(enclave, b"state", MEASUREMENT, aad=b"ctx")
    header = SealedHeader.from_bytes(blob)
    assert header.tee is SealTee.SGX
    params = header.key_params()
    assert isinstance(params, SgxKeyParams) and params.key_policy == 1  # MRENCLAVE
    assert params.isv_svn == 1 and params.cpu_svn == sgx.cpu.cpusvn
    # The same enclave, loaded again (a restart), opens it; through the Platform adapter too.
    again = _enclave(sgx, signer)
    assert unseal(again, blob, MEASUREMENT, aad=b"ctx") == b"state"
    assert unseal(SgxPlatform(again), blob, MEASUREMENT, aad=b"ctx") == b"state"


def test_sgx_other_enclave_mrenclave_refused(sgx: InsecureEmulatedSgxMachine,
                                             signer: rsa.RSAPrivateKey) -> None:
    blob = seal(_enclave(sgx, signer), b"state", MEASUREMENT)
    other = _enclave(sgx, signer, code=OTHER_CODE)  # same signer, another MRENCLAVE
    with pytest.raises(SealingError):
        unseal(other, blob, MEASUREMENT)


def test_sgx_debug_enclave_refused(sgx: InsecureEmulatedSgxMachine,
                                   signer: rsa.RSAPrivateKey) -> None:
    blob = seal(_enclave(sgx, signer), b"state", MEASUREMENT)
    with pytest.raises(SealingError):  # DEBUG is always in the key: never a production key
        unseal(_enclave(sgx, signer, debug=True), blob, MEASUREMENT)


def test_sgx_same_signer_newer_svn_opens_older_refused(sgx: InsecureEmulatedSgxMachine,
                                                       signer: rsa.RSAPrivateKey) -> None:
    v2 = _enclave(sgx, signer, svn=2)
    blob = seal(v2, b"state", SealingPolicy.signer())
    v3 = _enclave(sgx, signer, svn=3, code=OTHER_CODE)  # a new release: new MRENCLAVE
    # The reader states the floor it accepts (default: its own SVN, 3): 2 is accepted only
    # when it says so.
    with pytest.raises(SealingError):
        unseal(v3, blob, SealingPolicy.signer())
    assert unseal(v3, blob, SealingPolicy.signer(min_svn=2)) == b"state"
    v1 = _enclave(sgx, signer, svn=1)
    with pytest.raises(SealingError):  # EGETKEY refuses an ISVSVN above the enclave's
        unseal(v1, blob, SealingPolicy.signer(min_svn=0))


def test_sgx_other_signer_refused(sgx: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey,
                                  other_signer: rsa.RSAPrivateKey) -> None:
    blob = seal(_enclave(sgx, signer, svn=2), b"state", SealingPolicy.signer())
    with pytest.raises(SealingError):
        unseal(_enclave(sgx, other_signer, svn=2), blob, SealingPolicy.signer())


def test_sgx_signer_seal_to_a_floor_above_own_svn_is_refused(
        sgx: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey) -> None:
    with pytest.raises(PlatformError):
        seal(_enclave(sgx, signer, svn=2), b"x", SealingPolicy.signer(min_svn=3))


def test_sgx_cpusvn_up_opens_down_refused(sgx: InsecureEmulatedSgxMachine,
                                          signer: rsa.RSAPrivateKey) -> None:
    sgx.cpu.update_microcode(3)
    blob = seal(_enclave(sgx, signer), b"state", MEASUREMENT)
    sgx.cpu.update_microcode(4)  # a TCB recovery: the old key stays reachable
    assert unseal(_enclave(sgx, signer), blob, MEASUREMENT) == b"state"
    sgx.cpu.update_microcode(2)  # a rollback below the sealing TCB: EGETKEY refuses
    with pytest.raises(SealingError):
        unseal(_enclave(sgx, signer), blob, MEASUREMENT)


def test_sgx_reader_cpusvn_floor_refuses_data_sealed_under_old_microcode(
        sgx: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey) -> None:
    sgx.cpu.update_microcode(2)
    old = seal(_enclave(sgx, signer), b"written by vulnerable microcode", MEASUREMENT)
    sgx.cpu.update_microcode(4)
    floor = SealingPolicy.measurement(min_cpu_svn=sgx.cpu.cpusvn)
    with pytest.raises(SealingError):
        unseal(_enclave(sgx, signer), old, floor)


def test_sgx_weakened_keyrequest_in_the_header_is_refused(
        sgx: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey,
        other_signer: rsa.RSAPrivateKey) -> None:
    """A forger (an older release of the same signer) writes a header whose key it can derive
    (ISVSVN 1, no CPUSVN, MRSIGNER|NOISVPRODID): the reader refuses each weakening, though the
    data key would derive and the tag verify."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    reader = _enclave(sgx, signer, svn=2)
    attacker = _enclave(sgx, signer, svn=1, code=OTHER_CODE)
    good = SealedHeader.from_bytes(seal(attacker, b"x", SealingPolicy.signer()))
    base = good.key_params()
    assert isinstance(base, SgxKeyParams)
    for weak in (replace(base, cpu_svn=bytes(16)), replace(base, key_policy=0x2 | 0x4)):
        header = replace(good, tee_params=weak.to_bytes())
        key = sealing_source(attacker)._key(weak, header.salt)  # type: ignore[attr-defined]
        raw = header.to_bytes()
        forged = raw + AESGCM(data_key(key, header, b"veritee-seal-blob-v1")).encrypt(
            header.nonce, b"forged", raw)
        with pytest.raises(SealingError):
            unseal(reader, forged, SealingPolicy.signer(min_svn=1))


def test_sgx_tampered_blob_refused(sgx: InsecureEmulatedSgxMachine,
                                   signer: rsa.RSAPrivateKey) -> None:
    enclave = _enclave(sgx, signer)
    blob = bytearray(seal(enclave, b"state", MEASUREMENT))
    for offset in (0x0A, 0x10, 0x40, len(blob) - 1):  # ISVSVN, CPUSVN, SALT (KEYID), tag
        bad = bytearray(blob)
        bad[offset] ^= 1
        with pytest.raises(SealingError):
            unseal(enclave, bytes(bad), MEASUREMENT)


def test_sgx_stream_and_reseal(sgx: InsecureEmulatedSgxMachine, signer: rsa.RSAPrivateKey,
                               tmp_path: Path) -> None:
    enclave = _enclave(sgx, signer, svn=2)
    src = tmp_path / "model.bin"
    src.write_bytes(bytes(range(256)) * 100)
    seal_file(enclave, src, tmp_path / "model.sealed", MEASUREMENT, chunk_size=1000)
    with open_sealed(enclave, tmp_path / "model.sealed", MEASUREMENT) as f:
        assert f.read(5000, 300) == src.read_bytes()[5000:5300]
    blob = seal(enclave, b"state", MEASUREMENT)
    moved = reseal(enclave, blob, SealingPolicy.signer(), expected=MEASUREMENT)
    assert unseal(_enclave(sgx, signer, svn=2, code=OTHER_CODE), moved,
                  SealingPolicy.signer()) == b"state"


# -- TDX: the table ----------------------------------------------------------------------------
def _td(machine: InsecureEmulatedTdxMachine, firmware: bytes = b"TDVF 1", **kw: object
        ) -> EmulatedTd:
    return machine.launch(firmware, **kw)


def test_tdx_measurement_seal_opens_in_the_same_td(tdx: InsecureEmulatedTdxMachine) -> None:
    blob = seal(_td(tdx), b"disk key", MEASUREMENT)
    header = SealedHeader.from_bytes(blob)
    assert header.tee is SealTee.TDX and header.key_params() == TdxKeyParams("mrtd")
    assert unseal(TdxPlatform(_td(tdx)), blob, MEASUREMENT) == b"disk key"


def test_tdx_other_mrtd_refused(tdx: InsecureEmulatedTdxMachine) -> None:
    blob = seal(_td(tdx), b"disk key", MEASUREMENT)
    with pytest.raises(SealingError):
        unseal(_td(tdx, b"TDVF 2"), blob, MEASUREMENT)


def test_tdx_debug_td_refused(tdx: InsecureEmulatedTdxMachine) -> None:
    blob = seal(_td(tdx), b"disk key", MEASUREMENT)
    with pytest.raises(SealingError):
        unseal(_td(tdx, debug=True), blob, MEASUREMENT)


def test_tdx_rtmr_binding(tdx: InsecureEmulatedTdxMachine) -> None:
    bound = SealingPolicy.measurement(bind_rtmrs=True)
    td = _td(tdx)
    td.measure_event(1, b"kernel 6.8")
    blob = seal(td, b"disk key", bound)
    assert unseal(td, blob, MEASUREMENT) == b"disk key"  # mrtd+rtmr satisfies an mrtd reader
    other = _td(tdx)
    other.measure_event(1, b"kernel 6.9")
    with pytest.raises(SealingError):
        unseal(other, blob, bound)
    # An mrtd-only header is weaker than an RTMR-binding reader expects.
    with pytest.raises(SealingError):
        unseal(td, seal(td, b"disk key", MEASUREMENT), bound)


def test_tdx_signer_is_mrowner_and_has_no_svn(tdx: InsecureEmulatedTdxMachine) -> None:
    owner = bytes(range(48))
    blob = seal(_td(tdx, mr_owner=owner), b"k", SealingPolicy.signer())
    assert unseal(_td(tdx, b"TDVF 2", mr_owner=owner), blob, SealingPolicy.signer()) == b"k"
    with pytest.raises(SealingError):
        unseal(_td(tdx, mr_owner=bytes(48)), blob, SealingPolicy.signer())
    with pytest.raises(SealingError):  # the reader expects measurement: refused, not followed
        unseal(_td(tdx, mr_owner=owner), blob, MEASUREMENT)
    with pytest.raises(PlatformError):
        seal(_td(tdx), b"k", SealingPolicy.signer(min_svn=1))


def test_tdx_other_cpu_refused(vendor: EmulatedIntelVendor,
                               tdx: InsecureEmulatedTdxMachine) -> None:
    blob = seal(_td(tdx), b"disk key", MEASUREMENT)
    elsewhere = InsecureEmulatedTdxMachine(vendor, cpu=EmulatedIntelCpu(vendor, now=NOW))
    with pytest.raises(SealingError):
        unseal(_td(elsewhere), blob, MEASUREMENT)


def test_tdx_tampered_blob_refused(tdx: InsecureEmulatedTdxMachine) -> None:
    td = _td(tdx)
    blob = seal(td, b"disk key", MEASUREMENT)
    for offset, value in ((0x08, 2), (0x50, 0), (len(blob) - 1, 0)):
        bad = bytearray(blob)
        bad[offset] ^= value or 1
        with pytest.raises(SealingError):
            unseal(td, bytes(bad), MEASUREMENT)


# -- across TEEs -------------------------------------------------------------------------------
def test_a_blob_sealed_on_one_tee_is_refused_on_another(
        sgx: InsecureEmulatedSgxMachine, tdx: InsecureEmulatedTdxMachine,
        signer: rsa.RSAPrivateKey) -> None:
    from veritee.formats.sevsnp import Product
    from veritee.platform.emulated.measurement import simple_guest_image
    from veritee.platform.emulated.snp import EmulatedAmdVendor, InsecureEmulatedSnpMachine

    enclave, td = _enclave(sgx, signer), _td(tdx)
    snp = InsecureEmulatedSnpMachine(EmulatedAmdVendor.generate(Product.MILAN, key_size=2048,
                                                                now=NOW))
    guest = snp.launch(simple_guest_image(b"guest".ljust(4096, b"\0")))
    blobs = {"sgx": seal(enclave, b"x", MEASUREMENT), "tdx": seal(td, b"x", MEASUREMENT),
             "snp": seal(guest, b"x", MEASUREMENT)}
    readers = {"sgx": enclave, "tdx": td, "snp": guest}
    for written, blob in blobs.items():
        for read, reader in readers.items():
            if read == written:
                assert unseal(reader, blob, MEASUREMENT) == b"x"
            else:
                with pytest.raises(SealingError):
                    unseal(reader, blob, MEASUREMENT)


# -- the key store on SGX and TDX: no counters, so only with the documented unsafe opt-out ----
@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_key_store_needs_the_unsafe_opt_out_without_counters(
        tee: str, sgx: InsecureEmulatedSgxMachine, tdx: InsecureEmulatedTdxMachine,
        signer: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    from veritee.crypto.keys import KeyStore, KeyType, Usage

    platform = SgxPlatform(_enclave(sgx, signer)) if tee == "sgx" else TdxPlatform(_td(tdx))
    assert platform.counters is None
    sealer = Sealer(platform, MEASUREMENT, counters=None)
    with pytest.raises(ConfigError):
        KeyStore(tmp_path, sealer)
    store = KeyStore(tmp_path, sealer, unsafe_allow_no_rollback_protection=True)
    store.create("signing", KeyType.EC_P256, [Usage.SIGN])
    version, signature = store.sign("signing", b"msg")
    store.verify("signing", version, b"msg", signature)
    # Another workload (another enclave / TD image) cannot open the store.
    other = (SgxPlatform(_enclave(sgx, signer, code=OTHER_CODE)) if tee == "sgx"
             else TdxPlatform(_td(tdx, b"TDVF 2")))
    from veritee.errors import KeyStoreError

    with pytest.raises(KeyStoreError):
        KeyStore(tmp_path, Sealer(other, MEASUREMENT),
                 unsafe_allow_no_rollback_protection=True).entries()
