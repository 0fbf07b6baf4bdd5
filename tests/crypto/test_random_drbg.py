"""DRBG behaviour (SP 800-90A section 9) and the entropy sources, beyond the ACVP vectors."""

from __future__ import annotations

import os

import pytest

from veritee.crypto.random import (
    MAX_BYTES_PER_REQUEST,
    MAX_RESEED_INTERVAL,
    CtrDrbgMechanism,
    Drbg,
    DrbgStateError,
    EntropyHealthError,
    EntropySource,
    HealthTestedSource,
    HmacDrbgMechanism,
    HwRngSource,
    InsecureDeterministicSourceForTests,
    OsEntropySource,
    PlatformTrngSource,
    ctr_drbg,
    hash_drbg,
    hmac_drbg,
)
from veritee.errors import PlatformError


class CountingSource:
    """Deterministic bytes that counts reads; ``stuck`` switches it to constant output."""

    def __init__(self, h: float = 8.0) -> None:
        self._inner = InsecureDeterministicSourceForTests(b"counting")
        self.min_entropy_per_sample = h
        self.name = "counting"
        self.reads = 0
        self.stuck = False

    def read(self, n: int) -> bytes:
        self.reads += 1
        return b"\x00" * n if self.stuck else self._inner.read(n)


# ---------------------------------------------------------------------------- sources


def test_sources_satisfy_the_protocol() -> None:
    for src in (
        OsEntropySource(),
        InsecureDeterministicSourceForTests(b"x"),
        PlatformTrngSource(os.urandom),
        HealthTestedSource(OsEntropySource()),
    ):
        assert isinstance(src, EntropySource)
        assert len(src.read(33)) == 33
        assert 0 < src.min_entropy_per_sample <= 8


def test_platform_trng_accepts_an_object_with_trng_and_checks_lengths() -> None:
    class FakeSecureProcessor:
        def trng(self, n: int) -> bytes:
            return os.urandom(n)

    src = PlatformTrngSource(FakeSecureProcessor(), name="snp-trng")
    assert len(src.read(48)) == 48
    with pytest.raises(PlatformError, match="short"):
        PlatformTrngSource(lambda n: b"\x01" * (n - 1)).read(8)


def test_hwrng_absent_is_a_platform_error() -> None:
    with pytest.raises(PlatformError, match="not present"):
        HwRngSource("/nonexistent/hwrng")


def test_hwrng_reads_when_present() -> None:
    if not os.access("/dev/hwrng", os.R_OK):
        pytest.skip("/dev/hwrng not present or not readable")
    src = HwRngSource()
    assert len(src.read(16)) == 16


def test_deterministic_source_is_reproducible_and_scripted_mode_is_strict() -> None:
    a = InsecureDeterministicSourceForTests(b"seed").read(100)
    b = InsecureDeterministicSourceForTests(b"seed")
    assert b.read(40) + b.read(60) == a
    scripted = InsecureDeterministicSourceForTests.scripted([b"ab", b"cde"])
    assert scripted.read(2) == b"ab"
    with pytest.raises(ValueError, match="3 bytes"):
        scripted.read(4)


# ---------------------------------------------------------------------------- DRBG basics


@pytest.mark.parametrize(
    "make",
    [
        lambda s: hmac_drbg(s, "SHA-256"),
        lambda s: hmac_drbg(s, "SHA-384"),
        lambda s: hmac_drbg(s, "SHA-512"),
        lambda s: hash_drbg(s, "SHA-256"),
        lambda s: ctr_drbg(s, "AES-128"),
        lambda s: ctr_drbg(s, "AES-256"),
        lambda s: ctr_drbg(s, "AES-256", derivation_function=False),
    ],
)
def test_each_drbg_is_deterministic_in_its_inputs_and_varies_with_them(make: object) -> None:
    assert callable(make)
    one = make(InsecureDeterministicSourceForTests(b"a")).generate(64)
    two = make(InsecureDeterministicSourceForTests(b"a")).generate(64)
    other = make(InsecureDeterministicSourceForTests(b"b")).generate(64)
    assert one == two != other
    drbg = make(OsEntropySource())
    assert drbg.generate(64) != drbg.generate(64)


def test_request_size_is_limited_to_2_to_the_19_bits() -> None:
    drbg = hmac_drbg(OsEntropySource())
    assert len(drbg.generate(MAX_BYTES_PER_REQUEST)) == 65536
    with pytest.raises(ValueError, match="2\\^19"):
        drbg.generate(MAX_BYTES_PER_REQUEST + 1)
    assert len(drbg.random_bytes(3 * MAX_BYTES_PER_REQUEST + 5)) == 3 * 65536 + 5


def test_reseed_interval_forces_a_reseed_from_the_source() -> None:
    src = CountingSource()
    drbg = hmac_drbg(src, reseed_interval=3)
    assert src.reads == 2  # entropy_input and nonce (SP 800-90A 9.1)
    for _ in range(3):
        drbg.generate(16)
    assert (src.reads, drbg.reseed_counter) == (2, 4)
    drbg.generate(16)  # reseed_counter 4 > 3: reseed first (9.3.1 step 7)
    assert (src.reads, drbg.reseed_counter) == (3, 2)


@pytest.mark.parametrize("interval", [0, MAX_RESEED_INTERVAL + 1])
def test_reseed_interval_must_be_within_1_and_2_to_the_48(interval: int) -> None:
    with pytest.raises(ValueError, match="reseed_interval"):
        hmac_drbg(OsEntropySource(), reseed_interval=interval)


def test_prediction_resistance_reseeds_every_request() -> None:
    src = CountingSource()
    drbg = ctr_drbg(src, prediction_resistance=True)
    before = src.reads
    drbg.generate(16, prediction_resistance=True)
    drbg.generate(16, prediction_resistance=True)
    assert src.reads == before + 2
    plain = ctr_drbg(CountingSource())
    with pytest.raises(DrbgStateError, match="prediction resistance"):
        plain.generate(16, prediction_resistance=True)


def test_uninstantiate_wipes_state_and_refuses_further_use() -> None:
    mech = HmacDrbgMechanism("SHA-256")
    drbg = Drbg(mech, OsEntropySource())
    drbg.generate(32)
    drbg.uninstantiate()
    assert not drbg.instantiated
    assert bytes(mech._k) == bytes(32) and bytes(mech._v) == bytes(32)
    with pytest.raises(DrbgStateError, match="uninstantiated"):
        drbg.generate(1)
    with pytest.raises(DrbgStateError):
        drbg.reseed()
    ctr = CtrDrbgMechanism(256)
    Drbg(ctr, OsEntropySource()).uninstantiate()
    assert bytes(ctr._key) == bytes(32) and bytes(ctr._v) == bytes(16)


def test_ctr_without_df_needs_full_entropy_and_no_nonce() -> None:
    with pytest.raises(ValueError, match="full-entropy"):
        ctr_drbg(OsEntropySource(min_entropy_per_sample=4), derivation_function=False)
    with pytest.raises(ValueError, match="nonce"):
        ctr_drbg(OsEntropySource(), derivation_function=False, nonce=b"n" * 16)


def test_low_entropy_claims_draw_more_entropy() -> None:
    src = InsecureDeterministicSourceForTests.scripted(
        [bytes(range(64)), bytes(range(32))], min_entropy_per_sample=4.0
    )
    hmac_drbg(src, "SHA-256")  # 256-bit strength at 4 bits/byte: 64 + 32 bytes
    assert src.remaining_chunks == 0


# ---------------------------------------------------------------------------- health failures


def test_drbg_halts_on_a_health_failure_until_reseeded_from_a_healthy_source() -> None:
    inner = CountingSource()
    source = HealthTestedSource(inner)
    drbg = hmac_drbg(source, reseed_interval=2)
    drbg.generate(16)
    drbg.generate(16)
    inner.stuck = True  # the noise source breaks
    with pytest.raises(EntropyHealthError) as info:
        drbg.generate(16)  # the forced reseed reads stuck samples: RCT fires
    assert info.value.test == "RCT"
    assert drbg.halted
    for _ in range(3):  # never silently continues
        with pytest.raises(EntropyHealthError, match="refuses output"):
            drbg.generate(16)
    with pytest.raises(EntropyHealthError):
        drbg.reseed()  # the source is still latched as failed
    inner.stuck = False
    source.reset()  # operator action; start-up tests run again on the next read
    drbg.reseed()
    assert not drbg.halted
    assert len(drbg.generate(16)) == 16


def test_drbg_halts_when_its_source_fails_under_another_consumer() -> None:
    inner = CountingSource()
    source = HealthTestedSource(inner)
    drbg = ctr_drbg(source)
    inner.stuck = True
    with pytest.raises(EntropyHealthError):
        source.read(64)  # someone else's read trips the RCT
    with pytest.raises(EntropyHealthError, match="refuses output"):
        drbg.generate(16)
    drbg.reseed(source=HealthTestedSource(OsEntropySource()))  # a different, healthy source
    assert len(drbg.generate(16)) == 16


def test_prediction_resistance_request_with_a_failing_source_halts() -> None:
    inner = CountingSource()
    drbg = hash_drbg(HealthTestedSource(inner), prediction_resistance=True)
    inner.stuck = True
    with pytest.raises(EntropyHealthError):
        drbg.generate(16, prediction_resistance=True)
    with pytest.raises(EntropyHealthError, match="refuses output"):
        drbg.generate(16)


def test_instantiation_from_a_stuck_source_fails() -> None:
    inner = CountingSource()
    inner.stuck = True
    with pytest.raises(EntropyHealthError) as info:
        hmac_drbg(HealthTestedSource(inner))
    assert info.value.phase == "startup"


def test_emulated_secure_processor_trng_seeds_a_health_tested_drbg() -> None:
    from veritee.formats.sevsnp import Product
    from veritee.platform.emulated.snp import InsecureEmulatedSnpMachine

    machine = InsecureEmulatedSnpMachine.create(Product.MILAN, key_size=2048)
    source = HealthTestedSource(PlatformTrngSource(machine, name="emulated-snp-trng"))
    drbg = ctr_drbg(source, "AES-256", prediction_resistance=True)
    assert len(drbg.generate(32, prediction_resistance=True)) == 32
    assert source.samples_tested > 1024
    assert source.name == "health-tested:emulated-snp-trng"
