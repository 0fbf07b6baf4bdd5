"""SEV-SNP launch measurement (``veritee.platform.emulated.measurement``).

The oracle is virtee/sev-snp-measure (PyPI ``sev-snp-measure``), whose ``GCTX`` replays
``SNP_LAUNCH_UPDATE`` page by page; its VMSA builder supplies realistic VMSA pages. The package
ships no standalone vectors: its upstream launch-digest vectors (``tests/test_guest.py``) need
OVMF binaries that are neither in the wheel nor in the sdist, so equality with ``GCTX.ld()`` over
varied page sequences is the cross-check, plus a PAGE_INFO built here independently with
``struct`` from the spec table.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.platform.emulated.measurement import (
    PAGE_INFO_SIZE,
    PAGE_SIZE,
    SIMPLE_CPUID_GPA,
    SIMPLE_SECRETS_GPA,
    SIMPLE_ZERO_GPA,
    SIMPLE_ZERO_LENGTH,
    VMSA_GPA,
    GuestImage,
    ImageRegion,
    LaunchDigest,
    PageType,
    measure,
    page_info_bytes,
    simple_guest_image,
)


@pytest.fixture(scope="module")
def gctx_cls() -> Any:
    """The oracle's guest-context class; tests that use it skip when sev-snp-measure is absent."""
    return pytest.importorskip("sevsnpmeasure.gctx").GCTX


ZERO48 = bytes(48)


def _pages(seed: int, count: int) -> bytes:
    rng = random.Random(seed)
    return rng.randbytes(count * PAGE_SIZE)


def _oracle_vmsa_pages(vcpus: int) -> list[bytes]:
    """Realistic QEMU VMSA pages from sev-snp-measure's own builder (BSP, then APs)."""
    vmsa_mod = pytest.importorskip("sevsnpmeasure.vmsa")
    sev_mode = pytest.importorskip("sevsnpmeasure.sev_mode")
    vcpu_types = pytest.importorskip("sevsnpmeasure.vcpu_types")
    vmsa = vmsa_mod.VMSA(sev_mode.SevMode.SEV_SNP, 0xFFFF_F000, vcpu_types.CPU_SIGS["EPYC-v4"], 0x1)
    pages = list(vmsa.pages(vcpus))
    assert all(len(p) == PAGE_SIZE for p in pages)
    return pages


# --------------------------------------------------------------------------------------------
# PAGE_INFO layout (SEV-SNP ABI 56860, "PAGE_INFO Structure" table)


def test_page_info_layout_every_offset() -> None:
    digest_cur = bytes(range(0x00, 0x30))
    contents = bytes(range(0x80, 0xB0))
    gpa = 0x0123_4567_89AB_C000
    info = page_info_bytes(digest_cur, contents, PageType.CPUID, gpa, True, (0x11, 0x22, 0x33))

    assert len(info) == PAGE_INFO_SIZE == 0x70
    assert info[0x00:0x30] == digest_cur  # DIGEST_CUR
    assert info[0x30:0x60] == contents  # CONTENTS
    assert info[0x60:0x62] == b"\x70\x00"  # LENGTH, u16 LE
    assert info[0x62] == 0x06  # PAGE_TYPE
    assert info[0x63] == 0x01  # IMI_PAGE, bit 0
    assert info[0x64] == 0x33  # VMPL3_PERMS
    assert info[0x65] == 0x22  # VMPL2_PERMS
    assert info[0x66] == 0x11  # VMPL1_PERMS
    assert info[0x67] == 0x00  # reserved
    assert info[0x68:0x70] == gpa.to_bytes(8, "little")  # GPA, u64 LE


def test_page_info_imi_clear_is_zero_byte() -> None:
    info = page_info_bytes(ZERO48, ZERO48, PageType.NORMAL, 0, False, (0, 0, 0))
    assert info[0x63] == 0


def test_page_info_matches_independent_struct_pack() -> None:
    digest_cur = hashlib.sha384(b"cur").digest()
    contents = hashlib.sha384(b"page").digest()
    gpa = 0xFFC0_0000
    want = struct.pack("<48s48sHBBBBBBQ", digest_cur, contents, 0x70, 1, 0, 7, 5, 3, 0, gpa)
    assert struct.calcsize("<48s48sHBBBBBBQ") == 0x70
    assert page_info_bytes(digest_cur, contents, PageType.NORMAL, gpa, False, (3, 5, 7)) == want


def test_page_type_values() -> None:
    assert {t.name: int(t) for t in PageType} == {
        "NORMAL": 1,
        "VMSA": 2,
        "ZERO": 3,
        "UNMEASURED": 4,
        "SECRETS": 5,
        "CPUID": 6,
    }


def test_single_page_known_answer_from_first_principles() -> None:
    page = _pages(1, 1)
    gpa = 0xFFFF_F000
    info = struct.pack(
        "<48s48sHBBBBBBQ", ZERO48, hashlib.sha384(page).digest(), 0x70, 1, 0, 0, 0, 0, 0, gpa
    )
    ld = LaunchDigest()
    ld.update_page(gpa, PageType.NORMAL, page)
    assert ld.digest == hashlib.sha384(info).digest()


# --------------------------------------------------------------------------------------------
# Equality with the sev-snp-measure oracle


def test_mixed_sequence_matches_oracle(gctx_cls: Any) -> None:
    firmware = _pages(2, 8)
    hashes_page = _pages(3, 1)
    vmsas = [*_oracle_vmsa_pages(4), _pages(4, 1)]

    ours = LaunchDigest()
    oracle = gctx_cls()
    for target in (ours, oracle):
        target.update_normal_pages(0xFFC0_0000 - len(firmware), firmware)
        target.update_zero_pages(0x80_0000, 0x9000)
        target.update_secrets_page(0x80_9000)
        target.update_cpuid_page(0x80_A000)
        target.update_unmeasured_pages(0x80_B000, 0x3000)
        target.update_normal_pages(0x80_F000, hashes_page)
        target.update_normal_pages(0x1000_0000, _pages(5, 2))
        target.update_zero_pages(0x0, PAGE_SIZE)
    for page in vmsas:
        ours.update_vmsa_page(VMSA_GPA, page)
        oracle.update_vmsa_page(page)

    assert len(ours.digest) == 48
    assert ours.digest == oracle.ld()


def test_every_page_type_alone_matches_oracle(gctx_cls: Any) -> None:
    page = _pages(6, 1)
    cases: list[tuple[Callable[[LaunchDigest], None], Callable[[Any], None]]] = [
        (
            lambda d: d.update_normal_pages(0x5000, page),
            lambda g: g.update_normal_pages(0x5000, page),
        ),
        (lambda d: d.update_vmsa_page(VMSA_GPA, page), lambda g: g.update_vmsa_page(page)),
        (
            lambda d: d.update_zero_pages(0x5000, PAGE_SIZE),
            lambda g: g.update_zero_pages(0x5000, PAGE_SIZE),
        ),
        (
            lambda d: d.update_unmeasured_pages(0x5000, PAGE_SIZE),
            lambda g: g.update_unmeasured_pages(0x5000, PAGE_SIZE),
        ),
        (lambda d: d.update_secrets_page(0x5000), lambda g: g.update_secrets_page(0x5000)),
        (lambda d: d.update_cpuid_page(0x5000), lambda g: g.update_cpuid_page(0x5000)),
    ]
    seen = set()
    for ours_step, oracle_step in cases:
        ours, oracle = LaunchDigest(), gctx_cls()
        ours_step(ours)
        oracle_step(oracle)
        assert ours.digest == oracle.ld()
        seen.add(ours.digest)
    assert len(seen) == len(cases)


def test_initial_digest_matches_oracle_seed(gctx_cls: Any) -> None:
    seed = hashlib.sha384(b"precomputed firmware digest").digest()
    ours, oracle = LaunchDigest(seed), gctx_cls(seed=seed)
    assert ours.digest == seed
    ours.update_normal_pages(0x1000, _pages(7, 3))
    oracle.update_normal_pages(0x1000, _pages(7, 3))
    ours.update_secrets_page(0x8000)
    oracle.update_secrets_page(0x8000)
    assert ours.digest == oracle.ld()


def test_fresh_digest_is_zero(gctx_cls: Any) -> None:
    assert LaunchDigest().digest == ZERO48 == gctx_cls().ld()


def test_measure_simple_image_matches_oracle_replay(gctx_cls: Any) -> None:
    firmware = _pages(8, 16)
    vmsas = _oracle_vmsa_pages(2)
    image = simple_guest_image(firmware, kernel_hashes_page_gpa=0x80_F000)

    oracle = gctx_cls()
    oracle.update_normal_pages(2**32 - len(firmware), firmware)
    oracle.update_secrets_page(SIMPLE_SECRETS_GPA)
    oracle.update_cpuid_page(SIMPLE_CPUID_GPA)
    oracle.update_zero_pages(SIMPLE_ZERO_GPA, SIMPLE_ZERO_LENGTH)
    oracle.update_zero_pages(0x80_F000, PAGE_SIZE)
    for page in vmsas:
        oracle.update_vmsa_page(page)

    assert measure(image, vmsas) == oracle.ld()


def test_measure_without_vmsas_and_with_custom_vmsa_gpa(gctx_cls: Any) -> None:
    firmware = _pages(9, 2)
    image = simple_guest_image(firmware, firmware_gpa=0x10_0000)
    oracle = gctx_cls()
    oracle.update_normal_pages(0x10_0000, firmware)
    oracle.update_secrets_page(SIMPLE_SECRETS_GPA)
    oracle.update_cpuid_page(SIMPLE_CPUID_GPA)
    oracle.update_zero_pages(SIMPLE_ZERO_GPA, SIMPLE_ZERO_LENGTH)
    assert measure(image) == oracle.ld()

    vmsa = _oracle_vmsa_pages(1)[0]
    oracle.update_vmsa_page(vmsa)
    assert measure(image, [vmsa]) == oracle.ld()
    assert measure(image, [vmsa], vmsa_gpa=0x2000) != oracle.ld()


def test_measure_vmsa_region_measured_in_place() -> None:
    vmsa = _oracle_vmsa_pages(1)[0]
    image = GuestImage((ImageRegion(0x3000, PageType.VMSA, vmsa, PAGE_SIZE),))
    ld = LaunchDigest()
    ld.update_vmsa_page(0x3000, vmsa)
    assert measure(image) == ld.digest


_OPS = st.one_of(
    st.tuples(st.just("normal"), st.integers(0, 2**20), st.integers(1, 3), st.integers(0, 2**32)),
    st.tuples(st.just("zero"), st.integers(0, 2**20), st.integers(1, 3), st.just(0)),
    st.tuples(st.just("unmeasured"), st.integers(0, 2**20), st.integers(1, 3), st.just(0)),
    st.tuples(st.just("secrets"), st.integers(0, 2**20), st.just(1), st.just(0)),
    st.tuples(st.just("cpuid"), st.integers(0, 2**20), st.just(1), st.just(0)),
    st.tuples(st.just("vmsa"), st.just(0), st.just(1), st.integers(0, 2**32)),
)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(_OPS, max_size=12), seed=st.binary(min_size=48, max_size=48))
def test_random_sequences_match_oracle(
    ops: list[tuple[str, int, int, int]], seed: bytes, gctx_cls: Any
) -> None:
    ours, oracle = LaunchDigest(seed), gctx_cls(seed=seed)
    for kind, page_number, count, data_seed in ops:
        gpa = page_number * PAGE_SIZE
        length = count * PAGE_SIZE
        if kind == "normal":
            data = _pages(data_seed, count)
            ours.update_normal_pages(gpa, data)
            oracle.update_normal_pages(gpa, data)
        elif kind == "zero":
            ours.update_zero_pages(gpa, length)
            oracle.update_zero_pages(gpa, length)
        elif kind == "unmeasured":
            ours.update_unmeasured_pages(gpa, length)
            oracle.update_unmeasured_pages(gpa, length)
        elif kind == "secrets":
            ours.update_secrets_page(gpa)
            oracle.update_secrets_page(gpa)
        elif kind == "cpuid":
            ours.update_cpuid_page(gpa)
            oracle.update_cpuid_page(gpa)
        else:
            page = _pages(data_seed, 1)
            ours.update_vmsa_page(VMSA_GPA, page)
            oracle.update_vmsa_page(page)
    assert ours.digest == oracle.ld()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 6),
    start_page=st.integers(0, 2**40),
    data_seed=st.integers(0, 2**32),
)
def test_update_normal_pages_equals_single_page_updates(
    n: int, start_page: int, data_seed: int
) -> None:
    data = _pages(data_seed, n)
    start = start_page * PAGE_SIZE
    bulk, single = LaunchDigest(), LaunchDigest()
    bulk.update_normal_pages(start, data)
    for i in range(n):
        single.update_page(
            start + i * PAGE_SIZE, PageType.NORMAL, data[i * PAGE_SIZE : (i + 1) * PAGE_SIZE]
        )
    assert bulk.digest == single.digest


# --------------------------------------------------------------------------------------------
# Sensitivity: one change, a different digest


def _sequence_digest(pages: list[bytes], gpas: list[int], types: list[PageType]) -> bytes:
    ld = LaunchDigest()
    for page, gpa, page_type in zip(pages, gpas, types, strict=True):
        ld.update_page(
            gpa, page_type, page if page_type in (PageType.NORMAL, PageType.VMSA) else None
        )
    return ld.digest


_BASE_TYPES = [PageType.NORMAL, PageType.NORMAL, PageType.ZERO, PageType.SECRETS, PageType.VMSA]
_BASE_GPAS = [0x1000, 0x2000, 0x3000, 0x4000, VMSA_GPA]
_BASE_PAGES = [_pages(10 + i, 1) for i in range(len(_BASE_TYPES))]
_BASE_DIGEST = _sequence_digest(_BASE_PAGES, _BASE_GPAS, _BASE_TYPES)


@pytest.mark.parametrize("index", [0, 1, 4])
@pytest.mark.parametrize("bit", [0, 7, 8 * 2048 + 3, 8 * PAGE_SIZE - 1])
def test_flipped_bit_in_any_measured_page_changes_digest(index: int, bit: int) -> None:
    pages = list(_BASE_PAGES)
    flipped = bytearray(pages[index])
    flipped[bit // 8] ^= 1 << (bit % 8)
    pages[index] = bytes(flipped)
    assert _sequence_digest(pages, _BASE_GPAS, _BASE_TYPES) != _BASE_DIGEST


@pytest.mark.parametrize("index", range(len(_BASE_GPAS)))
def test_different_gpa_changes_digest(index: int) -> None:
    gpas = list(_BASE_GPAS)
    gpas[index] += PAGE_SIZE * 0x100
    assert _sequence_digest(_BASE_PAGES, gpas, _BASE_TYPES) != _BASE_DIGEST


@pytest.mark.parametrize(
    ("index", "new_type"),
    [
        (0, PageType.VMSA),
        (1, PageType.UNMEASURED),
        (2, PageType.UNMEASURED),
        (2, PageType.CPUID),
        (3, PageType.CPUID),
        (4, PageType.NORMAL),
    ],
)
def test_different_page_type_changes_digest(index: int, new_type: PageType) -> None:
    types = list(_BASE_TYPES)
    types[index] = new_type
    assert _sequence_digest(_BASE_PAGES, _BASE_GPAS, types) != _BASE_DIGEST


def test_reordering_pages_changes_digest() -> None:
    order = [1, 0, 2, 3, 4]
    assert (
        _sequence_digest(
            [_BASE_PAGES[i] for i in order],
            [_BASE_GPAS[i] for i in order],
            [_BASE_TYPES[i] for i in order],
        )
        != _BASE_DIGEST
    )


def test_imi_and_vmpl_perms_are_measured() -> None:
    page = _pages(20, 1)
    digests = set()
    for imi, perms in [
        (False, (0, 0, 0)),
        (True, (0, 0, 0)),
        (False, (1, 0, 0)),
        (False, (0, 1, 0)),
        (False, (0, 0, 1)),
    ]:
        ld = LaunchDigest()
        ld.update_page(0x1000, PageType.NORMAL, page, imi=imi, vmpl_perms=perms)
        digests.add(ld.digest)
    assert len(digests) == 5


def test_copy_is_independent() -> None:
    ld = LaunchDigest()
    ld.update_secrets_page(0x1000)
    snapshot = ld.copy()
    ld.update_cpuid_page(0x2000)
    assert snapshot.digest != ld.digest
    snapshot.update_cpuid_page(0x2000)
    assert snapshot.digest == ld.digest


# --------------------------------------------------------------------------------------------
# Bad input: ValueError naming the field, got and want; the digest is left unchanged


def _assert_rejects(call: Callable[[], object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{field}\b.*got .*want ") as info:
        call()
    assert field in str(info.value)


@pytest.mark.parametrize("gpa", [0x1001, 0x800, 1, -PAGE_SIZE, 2**64, 2**64 + PAGE_SIZE])
def test_rejects_bad_gpa(gpa: int) -> None:
    ld = LaunchDigest()
    _assert_rejects(lambda: ld.update_page(gpa, PageType.ZERO), "gpa")
    _assert_rejects(lambda: ld.update_page(gpa, PageType.NORMAL, bytes(PAGE_SIZE)), "gpa")
    assert ld.digest == ZERO48


def test_accepts_highest_gpa() -> None:
    LaunchDigest().update_page(2**64 - PAGE_SIZE, PageType.ZERO)


@pytest.mark.parametrize("size", [0, 1, PAGE_SIZE - 1, PAGE_SIZE + 1, 2 * PAGE_SIZE])
@pytest.mark.parametrize("page_type", [PageType.NORMAL, PageType.VMSA])
def test_rejects_wrong_size_contents(size: int, page_type: PageType) -> None:
    ld = LaunchDigest()
    _assert_rejects(lambda: ld.update_page(0x1000, page_type, bytes(size)), "contents")
    assert ld.digest == ZERO48


@pytest.mark.parametrize("page_type", [PageType.NORMAL, PageType.VMSA])
def test_rejects_missing_contents_for_measured_page(page_type: PageType) -> None:
    _assert_rejects(lambda: LaunchDigest().update_page(0x1000, page_type), "contents")


@pytest.mark.parametrize(
    "page_type", [PageType.ZERO, PageType.UNMEASURED, PageType.SECRETS, PageType.CPUID]
)
def test_rejects_contents_for_unmeasured_page_types(page_type: PageType) -> None:
    ld = LaunchDigest()
    _assert_rejects(lambda: ld.update_page(0x1000, page_type, bytes(PAGE_SIZE)), "contents")
    assert ld.digest == ZERO48


def test_rejects_unknown_page_type() -> None:
    _assert_rejects(lambda: LaunchDigest().update_page(0x1000, 7), "page_type")  # type: ignore[arg-type]


@pytest.mark.parametrize("perms", [(256, 0, 0), (0, -1, 0), (0, 0), (0, 0, 0, 0)])
def test_rejects_bad_vmpl_perms(perms: tuple[int, int, int]) -> None:
    _assert_rejects(
        lambda: LaunchDigest().update_page(0x1000, PageType.ZERO, vmpl_perms=perms), "vmpl_perms"
    )


def test_rejects_bad_initial_digest() -> None:
    _assert_rejects(lambda: LaunchDigest(bytes(32)), "initial")


def test_rejects_bad_bulk_lengths() -> None:
    ld = LaunchDigest()
    _assert_rejects(lambda: ld.update_normal_pages(0x1000, bytes(PAGE_SIZE + 1)), "data")
    _assert_rejects(lambda: ld.update_zero_pages(0x1000, 100), "length")
    _assert_rejects(lambda: ld.update_unmeasured_pages(0x1000, -PAGE_SIZE), "length")
    _assert_rejects(lambda: ld.update_zero_pages(0x1001, PAGE_SIZE), "start_gpa")
    _assert_rejects(lambda: ld.update_zero_pages(2**64 - PAGE_SIZE, 2 * PAGE_SIZE), "start_gpa")
    assert ld.digest == ZERO48


def test_page_info_rejects_bad_fields() -> None:
    _assert_rejects(
        lambda: page_info_bytes(bytes(47), ZERO48, PageType.NORMAL, 0, False, (0, 0, 0)),
        "digest_cur",
    )
    _assert_rejects(
        lambda: page_info_bytes(ZERO48, bytes(PAGE_SIZE), PageType.NORMAL, 0, False, (0, 0, 0)),
        "contents",
    )
    _assert_rejects(
        lambda: page_info_bytes(ZERO48, ZERO48, PageType.NORMAL, 0x10, False, (0, 0, 0)), "gpa"
    )


# --------------------------------------------------------------------------------------------
# GuestImage / ImageRegion / simple_guest_image


def test_simple_guest_image_layout() -> None:
    firmware = _pages(30, 4)
    image = simple_guest_image(firmware)
    assert [(r.gpa, r.page_type, r.length) for r in image.regions] == [
        (2**32 - 4 * PAGE_SIZE, PageType.NORMAL, 4 * PAGE_SIZE),
        (0x80_0000, PageType.SECRETS, PAGE_SIZE),
        (0x80_1000, PageType.CPUID, PAGE_SIZE),
        (0x80_2000, PageType.ZERO, 0x6000),
    ]
    assert image.regions[0].data == firmware
    assert image.regions[-1].end == 0x80_8000
    assert simple_guest_image(firmware) == image  # deterministic, comparable


def test_simple_guest_image_rejects_bad_firmware() -> None:
    _assert_rejects(lambda: simple_guest_image(b""), "firmware")
    _assert_rejects(lambda: simple_guest_image(bytes(PAGE_SIZE + 1)), "firmware")
    _assert_rejects(lambda: simple_guest_image(bytes(PAGE_SIZE), firmware_gpa=0x123), "gpa")


def test_simple_guest_image_rejects_overlapping_kernel_hashes_page() -> None:
    _assert_rejects(
        lambda: simple_guest_image(bytes(PAGE_SIZE), kernel_hashes_page_gpa=SIMPLE_CPUID_GPA),
        "regions",
    )


def test_image_rejects_overlapping_regions() -> None:
    a = ImageRegion(0x1000, PageType.ZERO, None, 2 * PAGE_SIZE)
    b = ImageRegion(0x2000, PageType.NORMAL, bytes(PAGE_SIZE), PAGE_SIZE)
    _assert_rejects(lambda: GuestImage((a, b)), "regions")
    GuestImage((a, ImageRegion(0x3000, PageType.CPUID, None, PAGE_SIZE)))  # adjacent is fine


def test_image_region_validation() -> None:
    _assert_rejects(lambda: ImageRegion(0x1000, PageType.NORMAL, None, PAGE_SIZE), "data")
    _assert_rejects(lambda: ImageRegion(0x1000, PageType.NORMAL, bytes(10), PAGE_SIZE), "data")
    _assert_rejects(lambda: ImageRegion(0x1000, PageType.ZERO, bytes(PAGE_SIZE), PAGE_SIZE), "data")
    _assert_rejects(lambda: ImageRegion(0x1000, PageType.ZERO, None, 0), "length")
    _assert_rejects(lambda: ImageRegion(0x1000, PageType.ZERO, None, 100), "length")
    _assert_rejects(lambda: ImageRegion(0x1008, PageType.ZERO, None, PAGE_SIZE), "gpa")


def test_measure_rejects_a_bare_page_as_vmsas() -> None:
    image = simple_guest_image(bytes(PAGE_SIZE))
    _assert_rejects(lambda: measure(image, bytes(PAGE_SIZE)), "vmsas")  # type: ignore[arg-type]
    _assert_rejects(lambda: measure(image, [bytes(100)]), "contents")
