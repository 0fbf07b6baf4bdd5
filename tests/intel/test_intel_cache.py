"""IntelCache: verified collateral is reused only for the exact bytes and inside its window.

The emulated Intel vendor signs real DCAP collateral with real keys, so these attacks run
without ../shared; the last tests repeat the warm == cold comparison on every real sample.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from veritee.crypto._x509 import _PEM_RE
from veritee.errors import ConfigError, FormatError, VerificationError
from veritee.formats.intel import HEADER_SIZE, TD10_REPORT_SIZE, Quote, TcbStatus
from veritee.platform.emulated.intel import EmulatedIntelCpu, EmulatedIntelVendor
from veritee.platform.emulated.tdx import InsecureEmulatedTdxMachine
from veritee.trust.intel import (
    IntelCache,
    IntelCollateral,
    VerifiedQuote,
    _cut,
    _linked,
    _load_chain,
    _pem_blocks,
    load_certificates,
    verify_quote,
)

from _evidence import manifest_samples
from _intel_support import INTEL_PREFIXES, load_sample, quote_file

NOW = datetime(2026, 6, 1, tzinfo=UTC)
FIRMWARE = bytes(range(256)) * 16 * 2
# v4 TD quote: header, TD 1.0 body, u32 size, then signature (64), attestation key (64),
# certification data type (2) and size (4), then the QE report (SGX QL API, "Quote Format").
QE_REPORT_AT = HEADER_SIZE + TD10_REPORT_SIZE + 4 + 64 + 64 + 2 + 4


@pytest.fixture
def vendor() -> EmulatedIntelVendor:
    return EmulatedIntelVendor.generate(now=NOW)


@pytest.fixture
def cpu(vendor: EmulatedIntelVendor) -> EmulatedIntelCpu:
    return EmulatedIntelCpu(vendor, now=NOW)


def _quote(vendor: EmulatedIntelVendor, cpu: EmulatedIntelCpu, data: bytes = bytes(64)) -> bytes:
    return InsecureEmulatedTdxMachine(vendor, cpu=cpu).launch(FIRMWARE).quote(data)


def _verify(vendor: EmulatedIntelVendor, quote: bytes | Quote, col: IntelCollateral,
            cache: IntelCache | None, at: datetime = NOW, **kw: Any) -> VerifiedQuote:
    kw.setdefault("trusted_roots", [vendor.root])
    return verify_quote(quote, col, now=at, cache=cache, **kw)


def _code(fn: Any) -> str:
    with pytest.raises(VerificationError) as exc:
        fn()
    return exc.value.code


def test_warm_result_equals_the_cold_one(vendor: EmulatedIntelVendor,
                                         cpu: EmulatedIntelCpu) -> None:
    q, col, cache = _quote(vendor, cpu), vendor.collateral("TDX", NOW), IntelCache()
    cold = _verify(vendor, q, col, None)
    first = _verify(vendor, q, col, cache)
    warm = _verify(vendor, q, col, cache)
    assert cache.hits == 3 and cache.misses == 3  # platform, TCB Info, QE identity
    assert warm.checks == first.checks == cold.checks
    assert warm.tcb == cold.tcb and warm.tcb is not None and warm.tcb.status is not None
    assert warm.pck_chain == cold.pck_chain and warm.crl_checked


def test_a_new_quote_is_served_the_verified_collateral(
        vendor: EmulatedIntelVendor, cpu: EmulatedIntelCpu) -> None:
    col, cache = vendor.collateral("TDX", NOW), IntelCache()
    td = InsecureEmulatedTdxMachine(vendor, cpu=cpu).launch(FIRMWARE)
    _verify(vendor, td.quote(bytes(64)), col, cache)
    v = _verify(vendor, td.quote(b"\x01" * 64), col, cache)
    # TCB Info and QE identity are hits. The platform entry is keyed by the QE report's
    # signature too, which the emulated QE makes afresh per quote (a real QE's is fixed
    # when its attestation key is certified), so it is verified again.
    assert cache.hits == 2
    assert v.quote.body.report_data == b"\x01" * 64


def test_changed_tcb_info_byte_is_not_served_from_the_cache(
        vendor: EmulatedIntelVendor, cpu: EmulatedIntelCpu) -> None:
    q, col, cache = _quote(vendor, cpu), vendor.collateral("TDX", NOW), IntelCache()
    _verify(vendor, q, col, cache)
    assert col.tcb_info is not None
    tampered = col.tcb_info.replace(b'"tcbEvaluationDataNumber":17',
                                    b'"tcbEvaluationDataNumber":18')
    assert tampered != col.tcb_info
    bad = dataclasses.replace(col, tcb_info=tampered)
    assert _code(lambda: _verify(vendor, q, bad, cache)) == "intel.tcb_info.signature"
    assert col.qe_identity is not None
    bad_qe = dataclasses.replace(col, qe_identity=col.qe_identity.replace(b'"version":2',
                                                                          b'"version":3'))
    assert _code(lambda: _verify(vendor, q, bad_qe, cache)) == "intel.qe_identity.signature"


def test_pck_revoked_in_a_newer_crl_is_not_served_from_the_cache(
        vendor: EmulatedIntelVendor, cpu: EmulatedIntelCpu) -> None:
    q, col, cache = _quote(vendor, cpu), vendor.collateral("TDX", NOW), IntelCache()
    _verify(vendor, q, col, cache)
    vendor.revoke_pck(cpu.pck_certificate())
    later = NOW + timedelta(hours=2)
    newer = dataclasses.replace(col, pck_crl=vendor.pck_crl(later))  # only the PCK CRL changes
    assert _code(lambda: _verify(vendor, q, newer, cache, at=later)) == "intel.chain.revoked"


def test_revoked_processor_ca_in_a_newer_root_crl_is_not_served(
        vendor: EmulatedIntelVendor, cpu: EmulatedIntelCpu) -> None:
    q, col, cache = _quote(vendor, cpu), vendor.collateral("TDX", NOW), IntelCache()
    _verify(vendor, q, col, cache)
    vendor.revoked_ca = True
    later = NOW + timedelta(hours=2)
    newer = dataclasses.replace(col, root_ca_crl=vendor.root_ca_crl(later))
    assert _code(lambda: _verify(vendor, q, newer, cache, at=later)) == "intel.chain.revoked"


def test_expired_collateral_after_a_warm_hit_is_refused(vendor: EmulatedIntelVendor,
                                                        cpu: EmulatedIntelCpu) -> None:
    q, col, cache = _quote(vendor, cpu), vendor.collateral("TDX", NOW), IntelCache()
    _verify(vendor, q, col, cache)
    _verify(vendor, q, col, cache)
    assert cache.hits == 3
    late = NOW + timedelta(days=31)  # CRLs, TCB Info and QE identity end at NOW + 30 days
    assert _code(lambda: _verify(vendor, q, col, cache, at=late)) == "intel.crl.stale"
    no_crls = dataclasses.replace(col, pck_crl=None, root_ca_crl=None)
    _verify(vendor, q, no_crls, cache)  # warm again, without CRLs
    assert _code(lambda: _verify(vendor, q, no_crls, cache, at=late)) == "intel.tcb_info.expired"


def test_other_trusted_roots_are_not_served_from_the_cache(
        vendor: EmulatedIntelVendor, cpu: EmulatedIntelCpu) -> None:
    q, col, cache = _quote(vendor, cpu), vendor.collateral("TDX", NOW), IntelCache()
    _verify(vendor, q, col, cache)
    assert _code(lambda: _verify(vendor, q, col, cache, trusted_roots=None)
                 ) == "intel.chain.root_untrusted"
    other = EmulatedIntelVendor.generate(now=NOW)
    assert _code(lambda: _verify(vendor, q, col, cache, trusted_roots=[other.root])
                 ) == "intel.chain.root_untrusted"


def test_tampered_quote_is_refused_with_a_warm_cache(vendor: EmulatedIntelVendor,
                                                     cpu: EmulatedIntelCpu) -> None:
    q, col, cache = _quote(vendor, cpu), vendor.collateral("TDX", NOW), IntelCache()
    _verify(vendor, q, col, cache)
    body = bytearray(q)
    body[HEADER_SIZE + 520] ^= 1  # REPORTDATA, in the signed body
    assert _code(lambda: _verify(vendor, bytes(body), col, cache)) == "intel.quote.signature"
    sig = bytearray(q)
    sig[HEADER_SIZE + TD10_REPORT_SIZE + 4] ^= 1  # the quote signature's r
    assert _code(lambda: _verify(vendor, bytes(sig), col, cache)) == "intel.quote.signature"


def test_tampered_qe_report_is_refused_with_a_warm_cache(vendor: EmulatedIntelVendor,
                                                         cpu: EmulatedIntelCpu) -> None:
    q, col, cache = _quote(vendor, cpu), vendor.collateral("TDX", NOW), IntelCache()
    _verify(vendor, q, col, cache)
    bad = bytearray(q)
    bad[QE_REPORT_AT] ^= 1  # QE report CPUSVN
    assert _code(lambda: _verify(vendor, bytes(bad), col, cache)) == "intel.qe_report.signature"
    parsed = Quote.from_bytes(bytes(bad))  # the same attack given as a parsed Quote
    assert _code(lambda: _verify(vendor, parsed, col, cache)) == "intel.qe_report.signature"


def test_parsed_quote_and_bytes_give_the_same_result(vendor: EmulatedIntelVendor,
                                                     cpu: EmulatedIntelCpu) -> None:
    q, col, cache = _quote(vendor, cpu), vendor.collateral("TDX", NOW), IntelCache()
    a = _verify(vendor, q, col, cache)
    b = _verify(vendor, Quote.from_bytes(q), col, cache)
    c = _verify(vendor, Quote.from_bytes(q), col, cache)
    assert a.checks == b.checks == c.checks and a.tcb == b.tcb == c.tcb


def test_cache_is_bounded_and_clears(vendor: EmulatedIntelVendor) -> None:
    cache = IntelCache(max_entries=1)
    col = vendor.collateral("TDX", NOW)
    for _ in range(3):
        cpu = EmulatedIntelCpu(vendor, now=NOW)
        _verify(vendor, _quote(vendor, cpu), col, cache)
    # one platform, one collateral object, four facts (parsed PEM blocks, links, CRLs)
    assert len(cache) <= 1 + 1 + 4
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ConfigError):
        IntelCache(max_entries=0)


def test_threads_share_one_cache(vendor: EmulatedIntelVendor, cpu: EmulatedIntelCpu) -> None:
    td = InsecureEmulatedTdxMachine(vendor, cpu=cpu).launch(FIRMWARE)
    quotes = [td.quote(bytes([i]) * 64) for i in range(4)]
    col, cache = vendor.collateral("TDX", NOW), IntelCache()
    cold = [_verify(vendor, q, col, None).checks for q in quotes]
    with ThreadPoolExecutor(4) as pool:
        warm = list(pool.map(lambda q: _verify(vendor, q, col, cache).checks, quotes * 4))
    assert warm == cold * 4


def test_naive_time_is_a_config_error_with_a_cache(vendor: EmulatedIntelVendor,
                                                   cpu: EmulatedIntelCpu) -> None:
    with pytest.raises(ConfigError, match="now: naive datetime"):
        verify_quote(_quote(vendor, cpu), vendor.collateral("TDX", NOW),
                     now=datetime(2026, 6, 1), cache=IntelCache())


# -- real samples (skipped without ../shared) -----------------------------------------------
SAMPLES = [s for p in INTEL_PREFIXES for s in manifest_samples(p) if quote_file(s)]


@pytest.mark.evidence
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s["dir"])
def test_real_sample_warm_equals_cold(sample: dict[str, Any]) -> None:
    s = load_sample(sample)
    roots = [s.sample_root] if s.sample_root is not None else None
    cache = IntelCache()

    # go-tdx-guest's sample has a non-zero trailer, refused in bytes: pass it parsed.
    quote: bytes | Quote = s.quote if any(s.quote.trailer) else s.quote_bytes
    assert _cut(s.quote)[0] == s.quote.signed_bytes  # the cut region is what is signed

    def run(c: IntelCache | None) -> tuple[object, ...] | str:
        try:
            v = verify_quote(quote, s.collateral, now=s.now, trusted_roots=roots,
                             cache=c)
        except VerificationError as exc:
            return exc.code
        return (v.checks, v.tcb, v.crl_checked)

    cold = run(None)
    assert run(cache) == cold
    assert run(cache) == cold
    if not isinstance(cold, str):
        assert cache.hits > 0


# -- the first quote of a new platform: CA chain, CRLs and collateral from the cache ----------
def test_new_platform_with_cached_ca_chain_equals_cold(vendor: EmulatedIntelVendor) -> None:
    col, cache = vendor.collateral("TDX", NOW), IntelCache()
    _verify(vendor, _quote(vendor, EmulatedIntelCpu(vendor, now=NOW)), col, cache)
    q = _quote(vendor, EmulatedIntelCpu(vendor, now=NOW))  # another machine, same CA
    cold = _verify(vendor, q, col, None)
    hits = cache.hits
    warm = _verify(vendor, q, col, cache)
    assert cache.hits > hits and warm.checks == cold.checks and warm.tcb == cold.tcb
    cache.clear_platforms()
    assert _verify(vendor, q, col, cache).checks == cold.checks


def test_crl_signed_by_another_key_is_not_served_from_the_cache(
        vendor: EmulatedIntelVendor, cpu: EmulatedIntelCpu) -> None:
    q, col, cache = _quote(vendor, cpu), vendor.collateral("TDX", NOW), IntelCache()
    _verify(vendor, q, col, cache)
    forger = EmulatedIntelVendor.generate(now=NOW)
    forged = forger._crl(vendor.ca, forger.ca_key, [], NOW)  # the CA's name, another key
    cache.clear_platforms()
    bad = dataclasses.replace(col, pck_crl=forged)
    assert _code(lambda: _verify(vendor, q, bad, cache)) == "intel.crl.signature"


def test_a_link_is_remembered_only_for_the_exact_pair(vendor: EmulatedIntelVendor) -> None:
    cache = IntelCache()
    forger = EmulatedIntelVendor.generate(now=NOW)  # same names, other keys
    assert _linked(vendor.ca, vendor.root, cache)
    assert not _linked(forger.ca, vendor.root, cache)  # not served: another child
    assert not _linked(vendor.ca, forger.root, cache)  # not served: another parent
    assert _linked(vendor.ca, vendor.root, cache)


def test_per_block_pem_loading_gives_what_load_certificates_gives(
        vendor: EmulatedIntelVendor, cpu: EmulatedIntelCpu) -> None:
    pem = cpu.pck_chain_pem()
    cache = IntelCache()
    assert _load_chain(pem, cache) == load_certificates(pem)
    assert _load_chain(pem, cache) == load_certificates(pem)  # CA blocks from the cache
    assert len(cache._facts) == 2  # the CA and the root; never a platform's own leaf
    bad = pem.replace(b"MII", b"MI!", 1)  # a broken base64 body in the first block
    with pytest.raises(FormatError) as want:
        load_certificates(bad, structure="QuoteCertificationData.pck_chain")
    with pytest.raises(FormatError) as got:
        _load_chain(bad, cache)
    assert str(got.value) == str(want.value)


def test_tcb_status_follows_a_microcode_rollback_after_a_warm_hit(
        vendor: EmulatedIntelVendor, cpu: EmulatedIntelCpu) -> None:
    col, cache = vendor.collateral("TDX", NOW), IntelCache()
    for _ in range(2):
        up = _verify(vendor, _quote(vendor, cpu), col, cache)
        assert up.tcb is not None and up.tcb.status is TcbStatus.UP_TO_DATE
    cpu.update_microcode(2)  # a rollback: new PCK certificate, older TCB
    for _ in range(2):
        old = _verify(vendor, _quote(vendor, cpu), col, cache)
        assert old.tcb is not None and old.tcb.status is TcbStatus.OUT_OF_DATE
        assert old.tcb == _verify(vendor, _quote(vendor, cpu), col, None).tcb


def test_qe_identity_mismatch_is_refused_after_a_warm_hit(
        vendor: EmulatedIntelVendor, cpu: EmulatedIntelCpu) -> None:
    q, col, cache = _quote(vendor, cpu), vendor.collateral("TDX", NOW), IntelCache()
    _verify(vendor, q, col, cache)
    vendor.qe_mrsigner = bytes(32)  # Intel now lists another QE signer
    assert _code(lambda: _verify(vendor, q, vendor.collateral("TDX", NOW), cache)
                 ) == "intel.qe_identity.mismatch"


def test_an_older_qe_is_evaluated_afresh_after_a_warm_hit(vendor: EmulatedIntelVendor,
                                                          cpu: EmulatedIntelCpu) -> None:
    col, cache = vendor.collateral("TDX", NOW), IntelCache()
    td = InsecureEmulatedTdxMachine(vendor, cpu=cpu).launch(FIRMWARE)
    for _ in range(2):
        v = _verify(vendor, td.quote(bytes(64)), col, cache)
        assert v.tcb is not None and v.tcb.qe_status is TcbStatus.UP_TO_DATE
    cpu.td_qe.isv_svn = 1  # the same platform's QE, below the QE identity's current level
    old = _verify(vendor, td.quote(bytes(64)), col, cache)
    assert old.tcb is not None and old.tcb.qe_status is TcbStatus.OUT_OF_DATE
    assert old.tcb.status is TcbStatus.OUT_OF_DATE


@pytest.mark.parametrize("extra", [b"", b"-----BEGIN X-----\nabc\n-----END X-----\n",
                                   b"-----END CERTIFICATE-----", b"-----BEGIN CERTIFICATE-----",
                                   b"-----", b"junk\n"])
def test_pem_blocks_are_the_ones_the_loader_finds(cpu: EmulatedIntelCpu, extra: bytes) -> None:
    pem = cpu.pck_chain_pem()
    middle = pem.replace(b"\n-----BEGIN", extra + b"\n-----BEGIN", 1)
    for text in (pem, extra + pem, pem + extra, middle):
        want = [m.group(0) for m in _PEM_RE.finditer(text) if m.group(1) == b"CERTIFICATE"]
        assert _pem_blocks(text) == want


def test_the_front_door_keeps_an_intel_cache_per_verifier() -> None:
    from veritee import attest, schemes
    from veritee.policy.intel import TdxPolicy
    from veritee.testing.intel import FakeIntel

    intel = FakeIntel.generate()
    coll = schemes.Collateral({"intel": intel.collateral("TDX")})
    verifier = attest.Verifier(anchors=schemes.Anchors({"intel": intel.roots}), collateral=coll)
    cache = verifier.caches["tdx"]
    assert isinstance(cache, IntelCache)
    quote = intel.td_quote()
    first = verifier.verify(quote, policy=TdxPolicy(), now=intel.now)
    second = verifier.verify(quote, policy=TdxPolicy(), now=intel.now)
    assert cache.hits >= 3 and first == second
    col = intel.collateral("TDX")
    assert col.tcb_info is not None
    tampered = dataclasses.replace(col, tcb_info=col.tcb_info.replace(b'"version":3',
                                                                       b'"version":2'))
    with pytest.raises(VerificationError) as exc:
        verifier.verify(quote, policy=TdxPolicy(), now=intel.now,
                        collateral=schemes.Collateral({"intel": tampered}))
    assert exc.value.code == "intel.tcb_info.signature"
