"""AMD SEV-SNP launch measurement, computed the way the SNP firmware does it.

During launch the hypervisor hands guest pages to the firmware with ``SNP_LAUNCH_UPDATE``. For
each 4 KiB page the firmware builds a ``PAGE_INFO`` structure holding the current launch digest,
a digest of the page contents and the page's metadata, and replaces the launch digest with
SHA-384 of that structure::

    digest_0   = initial (48 zero bytes, or a starting digest supplied by the caller)
    digest_i+1 = SHA-384(PAGE_INFO(digest_i, CONTENTS_i, PAGE_TYPE_i, IMI_i, VMPL perms_i, GPA_i))

The final digest is the ``MEASUREMENT`` field of the guest's ``ATTESTATION_REPORT``.

Source: AMD SEV Secure Nested Paging Firmware ABI Specification (publication 56860), section
"SNP_LAUNCH_UPDATE" and its table "PAGE_INFO Structure" (sev-snp-measure cites it as section
8.17.2, Table 67; section and table numbers move between revisions). The offsets below agree with
two independent public implementations: virtee/sev-snp-measure ``gctx.py`` and Microsoft's ``igvm``
crate (``measurement/snp.rs``, ``SnpPageInfo``).

Deliberately left out:

* The firmware's own checks on the *pages* (RMP state, page already assigned, secrets/CPUID page
  contents validation). This module only computes the digest; the emulated firmware decides
  what to accept. ``GuestImage`` does refuse overlapping regions, since a real launch cannot
  measure one GPA twice.
* The ID block / ID auth structures of ``SNP_LAUNCH_FINISH``: they do not change MEASUREMENT.
* Building VMSA pages: callers pass the 4096-byte VMSA images they want measured.
"""

from __future__ import annotations

import enum
import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from veritee.errors import FormatError

__all__ = [
    "DIGEST_SIZE",
    "PAGE_INFO_SIZE",
    "PAGE_SIZE",
    "SIMPLE_CPUID_GPA",
    "SIMPLE_SECRETS_GPA",
    "SIMPLE_ZERO_GPA",
    "SIMPLE_ZERO_LENGTH",
    "VMSA_GPA",
    "GuestImage",
    "ImageRegion",
    "LaunchDigest",
    "PageType",
    "measure",
    "page_info_bytes",
    "simple_guest_image",
]

PAGE_SIZE = 4096
"""Size of one guest page measured by ``SNP_LAUNCH_UPDATE`` (4 KiB pages only)."""

DIGEST_SIZE = 48
"""Size of a SHA-384 digest: the launch digest and the CONTENTS field."""

PAGE_INFO_SIZE = 0x70
"""Size of the PAGE_INFO structure; also the value of its LENGTH field."""

VMSA_GPA = 0xFFFF_FFFF_F000
"""GPA recorded for VMSA pages by KVM/QEMU (``INITIAL_VMSA_GPA``) and used by sev-snp-measure.

The VMSA page is assigned in the RMP with GPA ``(u64)-1``, page-aligned and with the bits above
51 cleared, so every vCPU's VMSA is measured at this same GPA.
"""

SIMPLE_SECRETS_GPA = 0x80_0000
"""GPA of the SECRETS page in :func:`simple_guest_image`."""

SIMPLE_CPUID_GPA = 0x80_1000
"""GPA of the CPUID page in :func:`simple_guest_image`."""

SIMPLE_ZERO_GPA = 0x80_2000
"""Start GPA of the ZERO region in :func:`simple_guest_image`."""

SIMPLE_ZERO_LENGTH = 0x6000
"""Length in bytes of the ZERO region in :func:`simple_guest_image` (six pages)."""

_STRUCTURE = "SNP_LAUNCH_UPDATE"
_GPA_LIMIT = 1 << 64
_ZERO_CONTENTS = bytes(DIGEST_SIZE)

# PAGE_INFO field offsets (SEV-SNP ABI 56860, "PAGE_INFO Structure" table).
_OFF_DIGEST_CUR = 0x00  # 48 bytes: launch digest before this page
_OFF_CONTENTS = 0x30  # 48 bytes: SHA-384 of the page, or zeros (see PageType)
_OFF_LENGTH = 0x60  # u16 LE: length of PAGE_INFO, 0x70
_OFF_PAGE_TYPE = 0x62  # u8: PageType
_OFF_IMI_PAGE = 0x63  # u8: bit 0 IMI_PAGE, bits 7:1 reserved
_OFF_VMPL3_PERMS = 0x64  # u8
_OFF_VMPL2_PERMS = 0x65  # u8
_OFF_VMPL1_PERMS = 0x66  # u8
_OFF_RESERVED = 0x67  # u8: reserved, zero
_OFF_GPA = 0x68  # u64 LE: guest physical address of the page


class PageType(enum.IntEnum):
    """PAGE_TYPE values of ``SNP_LAUNCH_UPDATE`` (SEV-SNP ABI 56860, SNP_LAUNCH_UPDATE).

    Only NORMAL and VMSA pages have their contents measured (CONTENTS = SHA-384 of the page);
    for the other types CONTENTS is 48 zero bytes and only the type and GPA are measured.
    """

    NORMAL = 0x01
    """Ordinary page whose contents are encrypted and measured."""
    VMSA = 0x02
    """A vCPU's initial VM save area, contents measured."""
    ZERO = 0x03
    """Page the firmware zero-fills; contents not hashed."""
    UNMEASURED = 0x04
    """Page encrypted but not measured beyond its type and GPA."""
    SECRETS = 0x05
    """The firmware-filled secrets page (VMPCKs etc.); contents not hashed."""
    CPUID = 0x06
    """The CPUID page the firmware validates; contents not hashed."""


_MEASURED_CONTENTS = frozenset({PageType.NORMAL, PageType.VMSA})


def _fail(field: str, got: object, want: object) -> FormatError:
    return FormatError(_STRUCTURE, field, got=got, want=want)


def _check_page_type(page_type: object) -> PageType:
    if isinstance(page_type, bool) or not isinstance(page_type, int):
        raise _fail("page_type", type(page_type).__name__, "a PageType")
    try:
        return PageType(page_type)
    except ValueError:
        raise _fail(
            "page_type", page_type, f"one of {', '.join(str(int(t)) for t in PageType)}"
        ) from None


def _check_gpa(gpa: object, field: str = "gpa") -> int:
    if isinstance(gpa, bool) or not isinstance(gpa, int):
        raise _fail(field, type(gpa).__name__, "an int")
    if not 0 <= gpa < _GPA_LIMIT:
        raise _fail(field, hex(gpa), "0 <= gpa < 2**64")
    if gpa % PAGE_SIZE:
        raise _fail(field, hex(gpa), f"a multiple of {PAGE_SIZE:#x}")
    return gpa


def _check_length(length: object, field: str = "length") -> int:
    if isinstance(length, bool) or not isinstance(length, int):
        raise _fail(field, type(length).__name__, "an int")
    if length < 0 or length % PAGE_SIZE:
        raise _fail(field, hex(length), f"a non-negative multiple of {PAGE_SIZE:#x}")
    return length


def _check_range(gpa: int, length: int, field: str = "gpa") -> None:
    if gpa + length > _GPA_LIMIT:
        raise _fail(field, f"{gpa:#x} + {length:#x}", "a range ending at or below 2**64")


def _check_buffer(data: object, field: str) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _fail(field, type(data).__name__, "bytes")
    return bytes(data)


def _check_vmpl_perms(vmpl_perms: object) -> tuple[int, int, int]:
    if not isinstance(vmpl_perms, tuple) or len(vmpl_perms) != 3:
        raise _fail("vmpl_perms", vmpl_perms, "a tuple (vmpl1, vmpl2, vmpl3) of three u8")
    perms: list[int] = []
    for perm in vmpl_perms:
        if isinstance(perm, bool) or not isinstance(perm, int) or not 0 <= perm <= 0xFF:
            raise _fail("vmpl_perms", vmpl_perms, "three integers in 0..255")
        perms.append(perm)
    return (perms[0], perms[1], perms[2])


def page_info_bytes(  # noqa: PLR0917 - positional order mirrors the PAGE_INFO fields
    digest_cur: bytes,
    contents: bytes,
    page_type: PageType,
    gpa: int,
    imi: bool,
    vmpl_perms: tuple[int, int, int],
) -> bytes:
    """Build the 0x70-byte PAGE_INFO structure hashed by ``SNP_LAUNCH_UPDATE``.

    Layout (SEV-SNP ABI 56860, "PAGE_INFO Structure" table), little-endian:

    ======  ====  ============  ==========================================
    offset  size  field         value
    ======  ====  ============  ==========================================
    0x00    48    DIGEST_CUR    ``digest_cur``
    0x30    48    CONTENTS      ``contents``
    0x60    2     LENGTH        0x0070
    0x62    1     PAGE_TYPE     ``page_type``
    0x63    1     IMI_PAGE      bit 0 = ``imi``, bits 7:1 reserved (zero)
    0x64    1     VMPL3_PERMS   ``vmpl_perms[2]``
    0x65    1     VMPL2_PERMS   ``vmpl_perms[1]``
    0x66    1     VMPL1_PERMS   ``vmpl_perms[0]``
    0x67    1     reserved      zero
    0x68    8     GPA           ``gpa``
    ======  ====  ============  ==========================================

    ``vmpl_perms`` is ordered ``(vmpl1, vmpl2, vmpl3)``; the structure stores them in the
    reverse order, VMPL3 first. ``contents`` is used as given: this function does not hash the
    page (see :meth:`LaunchDigest.update_page` for that).

    Raises:
        FormatError: (a ``ValueError``) naming the field, what was given and what is wanted.
    """
    digest_cur = _check_buffer(digest_cur, "digest_cur")
    if len(digest_cur) != DIGEST_SIZE:
        raise _fail("digest_cur", f"{len(digest_cur)} bytes", f"{DIGEST_SIZE} bytes")
    contents = _check_buffer(contents, "contents")
    if len(contents) != DIGEST_SIZE:
        raise _fail("contents", f"{len(contents)} bytes", f"{DIGEST_SIZE} bytes (a digest)")
    page_type = _check_page_type(page_type)
    gpa = _check_gpa(gpa)
    vmpl1, vmpl2, vmpl3 = _check_vmpl_perms(vmpl_perms)
    info = b"".join(
        (
            digest_cur,  # 0x00 DIGEST_CUR
            contents,  # 0x30 CONTENTS
            PAGE_INFO_SIZE.to_bytes(2, "little"),  # 0x60 LENGTH
            bytes(
                (
                    int(page_type),  # 0x62 PAGE_TYPE
                    0x01 if imi else 0x00,  # 0x63 IMI_PAGE (bit 0)
                    vmpl3,  # 0x64 VMPL3_PERMS
                    vmpl2,  # 0x65 VMPL2_PERMS
                    vmpl1,  # 0x66 VMPL1_PERMS
                    0x00,  # 0x67 reserved
                )
            ),
            gpa.to_bytes(8, "little"),  # 0x68 GPA
        )
    )
    assert len(info) == PAGE_INFO_SIZE  # layout invariant, not input validation
    return info


class LaunchDigest:
    """The running SNP launch digest of one guest (the firmware's ``LD`` in the guest context).

    Feed pages in the order the hypervisor issues ``SNP_LAUNCH_UPDATE``; :attr:`digest` is then
    the ``MEASUREMENT`` that appears in the guest's attestation report.
    """

    __slots__ = ("_digest",)

    def __init__(self, initial: bytes = bytes(DIGEST_SIZE)) -> None:
        """Start from ``initial`` (48 bytes; zeros, as the firmware does at SNP_LAUNCH_START).

        A non-zero ``initial`` resumes a digest computed elsewhere, e.g. a precomputed firmware
        hash as sev-snp-measure's ``--snp-ovmf-hash`` does.
        """
        initial = _check_buffer(initial, "initial")
        if len(initial) != DIGEST_SIZE:
            raise _fail("initial", f"{len(initial)} bytes", f"{DIGEST_SIZE} bytes")
        self._digest = initial

    @property
    def digest(self) -> bytes:
        """The current launch digest (48 bytes): the report's MEASUREMENT once launch ends."""
        return self._digest

    def copy(self) -> LaunchDigest:
        """Return an independent copy holding the same digest."""
        return LaunchDigest(self._digest)

    def __repr__(self) -> str:
        return f"LaunchDigest({self._digest.hex()})"

    def update_page(
        self,
        gpa: int,
        page_type: PageType,
        contents: bytes | None = None,
        *,
        imi: bool = False,
        vmpl_perms: tuple[int, int, int] = (0, 0, 0),
    ) -> None:
        """Measure one 4 KiB page, as one page of ``SNP_LAUNCH_UPDATE`` does.

        ``contents`` must be exactly :data:`PAGE_SIZE` bytes for NORMAL and VMSA pages (their
        SHA-384 becomes CONTENTS) and ``None`` for ZERO, UNMEASURED, SECRETS and CPUID pages
        (CONTENTS is zeros). ``gpa`` must be page-aligned and below 2**64. ``vmpl_perms`` is
        ``(vmpl1, vmpl2, vmpl3)``.

        Raises:
            FormatError: (a ``ValueError``) naming the field, what was given and what is wanted.
                The digest is unchanged when it raises.
        """
        page_type = _check_page_type(page_type)
        gpa = _check_gpa(gpa)
        if page_type in _MEASURED_CONTENTS:
            if contents is None:
                raise _fail("contents", None, f"{PAGE_SIZE} bytes for a {page_type.name} page")
            page = _check_buffer(contents, "contents")
            if len(page) != PAGE_SIZE:
                raise _fail("contents", f"{len(page)} bytes", f"{PAGE_SIZE} bytes")
            digest_of_contents = hashlib.sha384(page).digest()
        else:
            if contents is not None:
                got = (
                    f"{len(contents)} bytes"
                    if isinstance(contents, bytes | bytearray | memoryview)
                    else type(contents).__name__
                )
                raise _fail(
                    "contents", got, f"None for a {page_type.name} page (contents not measured)"
                )
            digest_of_contents = _ZERO_CONTENTS
        info = page_info_bytes(self._digest, digest_of_contents, page_type, gpa, imi, vmpl_perms)
        self._digest = hashlib.sha384(info).digest()

    def _update_range(self, start_gpa: int, length: int, page_type: PageType) -> None:
        start_gpa = _check_gpa(start_gpa, "start_gpa")
        length = _check_length(length)
        _check_range(start_gpa, length, "start_gpa")
        for offset in range(0, length, PAGE_SIZE):
            self.update_page(start_gpa + offset, page_type)

    def update_normal_pages(self, start_gpa: int, data: bytes) -> None:
        """Measure ``data`` (a multiple of 4096 bytes) as NORMAL pages from ``start_gpa`` up."""
        start_gpa = _check_gpa(start_gpa, "start_gpa")
        data = _check_buffer(data, "data")
        if len(data) % PAGE_SIZE:
            raise _fail("data", f"{len(data)} bytes", f"a multiple of {PAGE_SIZE} bytes")
        _check_range(start_gpa, len(data), "start_gpa")
        view = memoryview(data)
        for offset in range(0, len(data), PAGE_SIZE):
            self.update_page(
                start_gpa + offset, PageType.NORMAL, view[offset : offset + PAGE_SIZE].tobytes()
            )

    def update_zero_pages(self, start_gpa: int, length: int) -> None:
        """Measure ``length`` bytes (a multiple of 4096) from ``start_gpa`` as ZERO pages."""
        self._update_range(start_gpa, length, PageType.ZERO)

    def update_unmeasured_pages(self, start_gpa: int, length: int) -> None:
        """Measure ``length`` bytes (a multiple of 4096) from ``start_gpa`` as UNMEASURED pages."""
        self._update_range(start_gpa, length, PageType.UNMEASURED)

    def update_secrets_page(self, gpa: int) -> None:
        """Measure the SECRETS page at ``gpa``."""
        self.update_page(gpa, PageType.SECRETS)

    def update_cpuid_page(self, gpa: int) -> None:
        """Measure the CPUID page at ``gpa``."""
        self.update_page(gpa, PageType.CPUID)

    def update_vmsa_page(self, gpa: int, vmsa: bytes) -> None:
        """Measure one vCPU's 4096-byte VMSA at ``gpa`` (KVM/QEMU use :data:`VMSA_GPA`)."""
        self.update_page(gpa, PageType.VMSA, vmsa)


@dataclass(frozen=True, slots=True)
class ImageRegion:
    """A page-aligned run of guest memory measured with one page type.

    ``data`` holds the bytes for NORMAL and VMSA regions (``len(data) == length``; for VMSA each
    page is one vCPU's VMSA measured at its own GPA) and is ``None`` for the other types.
    ``length`` is a positive multiple of :data:`PAGE_SIZE`.
    """

    gpa: int
    page_type: PageType
    data: bytes | None
    length: int

    def __post_init__(self) -> None:
        """Check the region describes whole pages with data exactly where it is measured."""
        page_type = _check_page_type(self.page_type)
        object.__setattr__(self, "page_type", page_type)
        gpa = _check_gpa(self.gpa)
        length = _check_length(self.length)
        if length == 0:
            raise _fail("length", 0, f"a positive multiple of {PAGE_SIZE:#x}")
        _check_range(gpa, length)
        if page_type in _MEASURED_CONTENTS:
            if self.data is None:
                raise _fail("data", None, f"{length} bytes for a {page_type.name} region")
            data = _check_buffer(self.data, "data")
            if len(data) != length:
                raise _fail("data", f"{len(data)} bytes", f"{length} bytes (the region length)")
            object.__setattr__(self, "data", data)
        elif self.data is not None:
            raise _fail("data", "bytes", f"None for a {page_type.name} region")

    @property
    def end(self) -> int:
        """First GPA past the region."""
        return self.gpa + self.length


@dataclass(frozen=True, slots=True)
class GuestImage:
    """What a launch loads: regions measured in order, before any VMSA passed to :func:`measure`.

    Regions must not overlap: the firmware cannot assign one guest page twice.
    """

    regions: tuple[ImageRegion, ...]

    def __post_init__(self) -> None:
        """Check every entry is an :class:`ImageRegion` and no two regions overlap."""
        regions = tuple(self.regions)
        for region in regions:
            if not isinstance(region, ImageRegion):
                raise _fail("regions", type(region).__name__, "ImageRegion entries")
        object.__setattr__(self, "regions", regions)
        ordered = sorted(regions, key=lambda r: r.gpa)
        for before, after in itertools.pairwise(ordered):
            if after.gpa < before.end:
                raise _fail(
                    "regions",
                    f"[{before.gpa:#x}, {before.end:#x}) overlaps [{after.gpa:#x}, {after.end:#x})",
                    "disjoint regions",
                )


def _measure_region(ld: LaunchDigest, region: ImageRegion) -> None:
    if region.data is not None:  # NORMAL or VMSA: one page of data per GPA
        view = memoryview(region.data)
        for offset in range(0, region.length, PAGE_SIZE):
            page = view[offset : offset + PAGE_SIZE].tobytes()
            ld.update_page(region.gpa + offset, region.page_type, page)
    else:
        for offset in range(0, region.length, PAGE_SIZE):
            ld.update_page(region.gpa + offset, region.page_type)


def measure(image: GuestImage, vmsas: Sequence[bytes] = (), vmsa_gpa: int = VMSA_GPA) -> bytes:
    """Return the launch MEASUREMENT of ``image`` booted with one VMSA page per vCPU.

    The regions are measured in order, then each of ``vmsas`` (4096 bytes each, vCPU 0 first) as
    a VMSA page at ``vmsa_gpa``. This is the order QEMU/KVM use and sev-snp-measure models: KVM
    measures the VMSAs at ``SNP_LAUNCH_FINISH`` time, after every ``SNP_LAUNCH_UPDATE`` of guest
    memory, all at the same GPA :data:`VMSA_GPA`.
    """
    if not isinstance(image, GuestImage):
        raise _fail("image", type(image).__name__, "a GuestImage")
    if isinstance(vmsas, bytes | bytearray | memoryview | str):
        raise _fail("vmsas", type(vmsas).__name__, "a sequence of 4096-byte VMSA pages")
    vmsa_gpa = _check_gpa(vmsa_gpa, "vmsa_gpa")
    ld = LaunchDigest()
    for region in image.regions:
        _measure_region(ld, region)
    for vmsa in vmsas:
        ld.update_vmsa_page(vmsa_gpa, vmsa)
    return ld.digest


def simple_guest_image(
    firmware: bytes,
    *,
    firmware_gpa: int | None = None,
    kernel_hashes_page_gpa: int | None = None,
) -> GuestImage:
    """Build a minimal OVMF-like layout, not a real OVMF metadata parse.

    Regions, in measurement order:

    1. ``firmware`` (a non-empty multiple of 4096 bytes) as NORMAL pages at ``firmware_gpa``,
       by default ending right below 4 GiB (``2**32 - len(firmware)``), like a flash image;
    2. one SECRETS page at :data:`SIMPLE_SECRETS_GPA` (0x800000);
    3. one CPUID page at :data:`SIMPLE_CPUID_GPA` (0x801000);
    4. a ZERO region of :data:`SIMPLE_ZERO_LENGTH` (0x6000) bytes at :data:`SIMPLE_ZERO_GPA`
       (0x802000), standing in for OVMF's pre-validated early memory;
    5. if ``kernel_hashes_page_gpa`` is given, one ZERO page there: what sev-snp-measure
       measures for OVMF's kernel-hashes page when no kernel is passed.

    The result is deterministic in its inputs. Pass it to :func:`measure` with the VMSAs.

    Raises:
        FormatError: (a ``ValueError``) for a badly sized firmware, an unaligned GPA, or regions
            that overlap.
    """
    firmware = _check_buffer(firmware, "firmware")
    if not firmware or len(firmware) % PAGE_SIZE:
        raise _fail("firmware", f"{len(firmware)} bytes", f"a positive multiple of {PAGE_SIZE}")
    if firmware_gpa is None:
        if len(firmware) > 1 << 32:
            raise _fail("firmware", f"{len(firmware)} bytes", "at most 4 GiB to end below 4 GiB")
        firmware_gpa = (1 << 32) - len(firmware)
    regions = [
        ImageRegion(firmware_gpa, PageType.NORMAL, firmware, len(firmware)),
        ImageRegion(SIMPLE_SECRETS_GPA, PageType.SECRETS, None, PAGE_SIZE),
        ImageRegion(SIMPLE_CPUID_GPA, PageType.CPUID, None, PAGE_SIZE),
        ImageRegion(SIMPLE_ZERO_GPA, PageType.ZERO, None, SIMPLE_ZERO_LENGTH),
    ]
    if kernel_hashes_page_gpa is not None:
        regions.append(ImageRegion(kernel_hashes_page_gpa, PageType.ZERO, None, PAGE_SIZE))
    return GuestImage(tuple(regions))
