"""SEV-SNP byte formats (``veritee.formats.sevsnp``).

Oracles: the real reports under ``../shared/evidence/snp`` (skipped when absent) with the field
values MANIFEST.json records for them, and the AMD SEV-SNP Firmware ABI (publication 56860,
"ATTESTATION_REPORT Structure", "TCB_VERSION Structure", "Guest Policy Structure",
"MSG_REPORT_REQ Message Structure") and the GHCB specification (56421, "SNP Extended Guest
Request") for the certificate table. The Turin ``TCB_VERSION`` byte order (FMC, BL, TEE, SNP,
3 reserved, UCODE) was cross-checked against independent decoders (virtee/sev-style
``from_turin_bytes``; tinfoil's KDS URL tests).

Synthetic reports are built with ``AttestationReport(...).to_bytes()`` so that the spec checks
run without the shared corpus.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veritee.errors import FormatError
from veritee.formats.sevsnp import (
    CERT_GUIDS,
    REPORT_SIZE,
    SIGNED_SIZE,
    AttestationReport,
    CertTable,
    CertTableEntry,
    Cpuid,
    EcdsaP384Signature,
    FirmwareVersion,
    GuestPolicy,
    MsgReportReq,
    PlatformInfo,
    Product,
    SignerInfo,
    SigningKey,
    TcbLayout,
    TcbVersion,
    product_from_cpuid,
)

from _evidence import EVIDENCE_DIR, evidence_available, manifest_samples

PROPERTY = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# Real evidence
# --------------------------------------------------------------------------------------------


def _report_files() -> list[Path]:
    """Every real report file under snp/*/ (empty when the corpus is absent)."""
    if not evidence_available():
        return []
    root = EVIDENCE_DIR / "snp"
    found: set[Path] = set()
    for pattern in ("report*.bin", "attestation.bin", "test-report*.bin", "*.hex"):
        found.update(root.glob(f"*/{pattern}"))
    return sorted(found)


def _read_report(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".hex":
        return bytes.fromhex(data.decode("ascii").strip())
    return data


REPORT_FILES = _report_files()
SNP_SAMPLES = [s for s in manifest_samples("snp/") if "report" in s["files"]]


@pytest.mark.evidence
def test_corpus_has_reports() -> None:
    if not evidence_available():
        pytest.skip("shared evidence not present")
    assert len(REPORT_FILES) >= 10
    versions = {AttestationReport.from_bytes(_read_report(p)).version for p in REPORT_FILES}
    assert versions == {2, 3, 5}


@pytest.mark.evidence
@pytest.mark.parametrize("path", REPORT_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_report_round_trips(path: Path) -> None:
    data = _read_report(path)
    assert len(data) == REPORT_SIZE
    report = AttestationReport.from_bytes(data)
    assert report.to_bytes() == data
    assert report.raw == data
    assert report.signed_bytes == data[:SIGNED_SIZE]
    again = AttestationReport.from_bytes(report.to_bytes())
    assert again == report
    # A report rebuilt from its fields (no cached raw) serialises to the same bytes.
    rebuilt = dataclasses.replace(report)
    assert rebuilt.raw == data
    assert json.dumps(report.to_dict())  # JSON-friendly
    assert report.signature_algo == 1  # ECDSA P-384 with SHA-384


def _tcb_raw(t: TcbVersion) -> str:
    return f"{t.to_u64():016x}"


@pytest.mark.evidence
@pytest.mark.parametrize("sample", SNP_SAMPLES, ids=lambda s: s["id"])
def test_real_report_fields_match_manifest(sample: dict[str, Any]) -> None:
    path = EVIDENCE_DIR / sample["dir"] / sample["files"]["report"]
    report = AttestationReport.from_bytes(_read_report(path))
    known = sample["known_fields"]
    dec: dict[str, Any] = known.get("decoded", {})
    checked = 0
    scalar = {"version": report.version, "guest_svn": report.guest_svn, "vmpl": report.vmpl}
    for name, got in scalar.items():
        if name in dec:
            assert got == dec[name], name
            checked += 1
    if "policy" in dec:
        assert report.policy.to_u64() == int(dec["policy"], 16)
        checked += 1
    if "platform_info" in dec:
        assert report.platform_info.to_u64() == int(dec["platform_info"], 16)
        checked += 1
    if "signing_key" in dec:
        assert report.signer_info.signing_key.name == dec["signing_key"]
        checked += 1
    for name in ("report_data", "measurement", "host_data", "id_key_digest",
                 "author_key_digest", "chip_id"):
        if name in dec:
            assert getattr(report, name).hex() == dec[name], name
            checked += 1
    if "current_version" in dec:
        assert str(report.current_version) == dec["current_version"]
        checked += 1
    if "reported_tcb" in dec:
        want = dec["reported_tcb"]
        assert _tcb_raw(report.reported_tcb) == want["raw"]
        for comp in ("bootloader", "tee", "snp", "microcode"):
            assert getattr(report.reported_tcb, comp) == want[comp], comp
        checked += 1
    for name in ("current_tcb", "committed_tcb", "launch_tcb"):
        if name in dec:
            assert _tcb_raw(getattr(report, name)) == dec[name], name
            checked += 1
    if "cpuid_fam_id" in dec:
        assert report.cpuid is not None
        assert report.cpuid.family == int(dec["cpuid_fam_id"], 16)
        assert report.cpuid.model == int(dec["cpuid_mod_id"], 16)
        assert report.cpuid.stepping == int(dec["cpuid_step"], 16)
        checked += 1
    else:
        assert report.cpuid is None or report.version >= 3
    for name in ("launch_mit_vector", "current_mit_vector"):
        if name in dec:
            assert getattr(report, name) == int(dec[name], 16), name
            checked += 1
    # What the sources themselves assert.
    src: dict[str, Any] = known.get("asserted_by_source", {})
    if "chip_id" in src:
        assert report.chip_id.hex() == src["chip_id"]
    if "host_data" in src:
        assert report.host_data.hex() == src["host_data"]
    if "measurement_prefix" in src:
        assert report.measurement.hex().startswith(src["measurement_prefix"])
    if sample["id"].endswith("go-sev-guest") or sample["dir"].endswith("go-sev-guest"):
        assert report.report_data == bytes([1, 2, 3, 4, 5]) + bytes(59)
        assert report.id_key_digest == bytes(48)  # launched without an ID block
    if sample["dir"].endswith("milan-v3-dstack"):
        text = b"attest-test-fixture-2026"
        assert report.report_data == text + bytes(64 - len(text))
    if dec:
        assert checked >= 10


@pytest.mark.evidence
def test_decoded_products_match_cpuid() -> None:
    """v3+ reports name their product through CPUID; the corpus has Milan and Genoa."""
    if not evidence_available():
        pytest.skip("shared evidence not present")
    products = set()
    for path in REPORT_FILES:
        r = AttestationReport.from_bytes(_read_report(path))
        if r.cpuid is not None:
            products.add(r.cpuid.product)
            assert r.tcb_layout is TcbLayout.MILAN_GENOA
    assert products == {Product.MILAN, Product.GENOA}


# -- configfs-tsm auxblob ---------------------------------------------------------------------


@pytest.mark.evidence
@pytest.mark.filterwarnings("ignore:Parsed a serial number")  # AMD's VCEK serial is negative
def test_real_tsm_auxblob_cert_table(evidence_dir: Path) -> None:
    sample_dir = evidence_dir / "snp" / "genoa-v3-veraison-tsm"
    tsm = cbor2.loads((sample_dir / "sevsnp-tsm-report.cbor").read_bytes())
    auxblob, outblob = tsm["auxblob"], tsm["outblob"]
    assert outblob == (sample_dir / "report.bin").read_bytes()
    AttestationReport.from_bytes(outblob)

    table = CertTable.from_bytes(auxblob)
    assert [e.kind for e in table.entries] == ["ARK", "ASK", "VCEK"]
    assert table.to_bytes() == auxblob  # headers, terminator, payloads in order
    assert CertTable.from_bytes(table.to_bytes()) == table

    vcek_payload = table.get("VCEK")
    assert vcek_payload is not None
    got = x509.load_pem_x509_certificate(vcek_payload)
    want = x509.load_pem_x509_certificate((sample_dir / "vcek.pem").read_bytes())
    assert got == want
    assert table.get("ASK") == (sample_dir / "ask.pem").read_bytes()
    assert table.get("ARK") == (sample_dir / "ark.pem").read_bytes()
    assert table.get("VLEK") is None
    # The JSON form of the same report carries the same auxblob (base64url).
    doc = json.loads((sample_dir / "sevsnp-tsm-report.json").read_text())
    padded = doc["auxblob"] + "=" * (-len(doc["auxblob"]) % 4)
    assert base64.urlsafe_b64decode(padded) == auxblob


# --------------------------------------------------------------------------------------------
# Synthetic reports
# --------------------------------------------------------------------------------------------

MILAN_TCB = TcbVersion(bootloader=3, tee=0, snp=8, microcode=115)
TURIN_TCB = TcbVersion(fmc=1, bootloader=2, tee=3, snp=4, microcode=5)
SIG = EcdsaP384Signature(r=int.from_bytes(bytes(range(1, 49)), "little"),
                         s=int.from_bytes(bytes(range(101, 149)), "little"))


def make_report(version: int = 3, *, family: int = 0x19, model: int = 0x01,
                tcb: TcbVersion | None = None, **overrides: Any) -> AttestationReport:
    """A well-formed synthetic report (every field non-trivial, reserved ranges zero)."""
    turin = product_from_cpuid(family, model) is Product.TURIN and version >= 3
    t = tcb or (TURIN_TCB if turin else MILAN_TCB)
    fields: dict[str, Any] = dict(
        version=version,
        guest_svn=7,
        policy=GuestPolicy(abi_minor=1, abi_major=2, smt=True, debug=False),
        family_id=bytes(range(16)),
        image_id=bytes(range(16, 32)),
        vmpl=1,
        signature_algo=1,
        current_tcb=t,
        platform_info=PlatformInfo(smt_enabled=True, tsme_enabled=True),
        signer_info=SignerInfo(author_key_en=True, signing_key=SigningKey.VCEK),
        report_data=bytes(range(64)),
        measurement=bytes(range(100, 148)),
        host_data=b"\x11" * 32,
        id_key_digest=b"\x22" * 48,
        author_key_digest=b"\x33" * 48,
        report_id=b"\x44" * 32,
        report_id_ma=b"\xff" * 32,
        reported_tcb=t,
        chip_id=bytes(range(64, 128)),
        committed_tcb=t,
        current_version=FirmwareVersion(1, 55, 29),
        committed_version=FirmwareVersion(1, 55, 28),
        launch_tcb=t,
        signature=SIG,
        cpuid=Cpuid(family, model, 1) if version >= 3 else None,
        launch_mit_vector=0x3 if version >= 5 else None,
        current_mit_vector=0x1 if version >= 5 else None,
    )
    fields.update(overrides)
    return AttestationReport(**fields)


def _with(data: bytes, offset: int, value: int) -> bytes:
    b = bytearray(data)
    b[offset] = value
    return bytes(b)


def _raises(data: bytes, *, offset: int | None = None, field: str | None = None) -> FormatError:
    with pytest.raises(FormatError) as info:
        AttestationReport.from_bytes(data)
    err = info.value
    assert err.structure == "ATTESTATION_REPORT"
    if offset is not None:
        assert err.offset == offset, (hex(offset), err)
    if field is not None:
        assert err.field == field, err
    return err


@pytest.mark.parametrize("version", [2, 3, 5])
def test_synthetic_round_trip(version: int) -> None:
    report = make_report(version)
    data = report.to_bytes()
    assert len(data) == REPORT_SIZE
    parsed = AttestationReport.from_bytes(data)
    assert parsed == report
    assert parsed.to_bytes() == data
    assert parsed.signed_bytes == data[:0x2A0]


def test_field_offsets_follow_the_abi_table() -> None:
    """Spot-check each field's offset in the serialised bytes (ABI 56860 ATTESTATION_REPORT)."""
    r = make_report(5, model=0x11)
    d = r.to_bytes()
    assert d[0x00:0x04] == (5).to_bytes(4, "little")
    assert d[0x04:0x08] == (7).to_bytes(4, "little")
    assert int.from_bytes(d[0x08:0x10], "little") == r.policy.to_u64()
    assert d[0x10:0x20] == r.family_id and d[0x20:0x30] == r.image_id
    assert d[0x30:0x34] == (1).to_bytes(4, "little")
    assert d[0x34:0x38] == (1).to_bytes(4, "little")
    assert int.from_bytes(d[0x48:0x4C], "little") == 1  # AUTHOR_KEY_EN
    assert d[0x50:0x90] == r.report_data
    assert d[0x90:0xC0] == r.measurement
    assert d[0xC0:0xE0] == r.host_data
    assert d[0xE0:0x110] == r.id_key_digest
    assert d[0x110:0x140] == r.author_key_digest
    assert d[0x140:0x160] == r.report_id
    assert d[0x160:0x180] == r.report_id_ma
    assert d[0x188:0x18B] == bytes([0x19, 0x11, 1])
    assert d[0x1A0:0x1E0] == r.chip_id
    assert d[0x1E8:0x1EB] == bytes([29, 55, 1])  # CURRENT_BUILD, _MINOR, _MAJOR
    assert d[0x1EC:0x1EF] == bytes([28, 55, 1])
    assert int.from_bytes(d[0x1F8:0x200], "little") == 3
    assert int.from_bytes(d[0x200:0x208], "little") == 1
    assert d[0x2A0:0x2D0] == bytes(range(1, 49))  # R, little-endian
    assert d[0x2E8:0x318] == bytes(range(101, 149))  # S at 0x2A0 + 72


# -- reserved ranges ---------------------------------------------------------------------------

_COMMON_RESERVED = [(0x04C, 0x04F), (0x1EB, 0x1EB), (0x1EF, 0x1EF),
                    (0x2A0 + 48, 0x2A0 + 71),  # R padding
                    (0x2E8 + 48, 0x2E8 + 71),  # S padding
                    (0x330, 0x49F)]
RESERVED = {
    2: [*_COMMON_RESERVED, (0x188, 0x19F), (0x1F8, 0x29F)],
    3: [*_COMMON_RESERVED, (0x18B, 0x19F), (0x1F8, 0x29F)],
    5: [*_COMMON_RESERVED, (0x18B, 0x19F), (0x208, 0x29F)],
}
RESERVED_CASES = [
    (version, off)
    for version, ranges in RESERVED.items()
    for lo, hi in ranges
    for off in sorted({lo, hi})
]


@pytest.mark.parametrize(("version", "offset"), RESERVED_CASES,
                         ids=[f"v{v}-0x{o:03x}" for v, o in RESERVED_CASES])
def test_reserved_byte_set_is_rejected_at_its_offset(version: int, offset: int) -> None:
    data = make_report(version).to_bytes()
    for value in (0x01, 0x80):
        err = _raises(_with(data, offset, value), offset=offset)
        assert "reserved" in str(err.want) or "zero" in str(err.want)


def test_v2_cpuid_bytes_are_reserved() -> None:
    """In a v2 report 0x188-0x18A are reserved (CPUID fields exist from v3)."""
    data = make_report(2).to_bytes()
    for off in (0x188, 0x189, 0x18A):
        _raises(_with(data, off, 0x19), offset=off)


def test_v3_mitigation_vectors_are_reserved() -> None:
    data = make_report(3).to_bytes()
    for off in (0x1F8, 0x1FF, 0x200, 0x207):
        _raises(_with(data, off, 1), offset=off)


# -- whole-buffer and field checks -------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, REPORT_SIZE - 1, REPORT_SIZE + 1, 2 * REPORT_SIZE])
def test_wrong_length(length: int) -> None:
    data = (make_report(3).to_bytes() * 2)[:length]
    err = _raises(data, field="<length>")
    assert err.got == length and err.want == REPORT_SIZE


def test_non_bytes_input() -> None:
    with pytest.raises(FormatError):
        AttestationReport.from_bytes("not bytes")  # type: ignore[arg-type]


def test_bytearray_and_memoryview_accepted() -> None:
    data = make_report(3).to_bytes()
    assert AttestationReport.from_bytes(bytearray(data)).raw == data  # type: ignore[arg-type]
    assert AttestationReport.from_bytes(memoryview(data)).raw == data  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [0, 1, 4, 6, 0xFFFFFFFF])
def test_unsupported_version(version: int) -> None:
    data = bytearray(make_report(3).to_bytes())
    data[0:4] = version.to_bytes(4, "little")
    err = _raises(bytes(data), offset=0, field="VERSION")
    assert err.got == version


def test_policy_bit17_clear() -> None:
    data = bytearray(make_report(3).to_bytes())
    data[0x0A] &= ~0x02  # bit 17 = bit 1 of byte 0x0A
    _raises(bytes(data), offset=0x08, field="POLICY.bit17")


@pytest.mark.parametrize("bit", [26, 31, 32, 47, 63])
def test_policy_reserved_bits(bit: int) -> None:
    data = bytearray(make_report(3).to_bytes())
    policy = int.from_bytes(data[0x08:0x10], "little") | (1 << bit)
    data[0x08:0x10] = policy.to_bytes(8, "little")
    _raises(bytes(data), offset=0x08, field="POLICY.reserved")


@pytest.mark.parametrize("bit", [5, 8, 31])
def test_signer_info_reserved_bits(bit: int) -> None:
    data = bytearray(make_report(3).to_bytes())
    word = int.from_bytes(data[0x48:0x4C], "little") | (1 << bit)
    data[0x48:0x4C] = word.to_bytes(4, "little")
    _raises(bytes(data), offset=0x48, field="SIGNER_INFO.reserved")


@pytest.mark.parametrize("key", [2, 3, 4, 5, 6])
def test_signer_info_bad_signing_key(key: int) -> None:
    data = bytearray(make_report(3).to_bytes())
    data[0x48:0x4C] = (key << 2).to_bytes(4, "little")
    err = _raises(bytes(data), offset=0x48, field="SIGNER_INFO.SIGNING_KEY")
    assert err.got == key


@pytest.mark.parametrize("key", [SigningKey.VCEK, SigningKey.VLEK, SigningKey.NONE])
def test_signer_info_valid_signing_keys(key: SigningKey) -> None:
    r = make_report(3, signer_info=SignerInfo(mask_chip_key=True, signing_key=key))
    assert AttestationReport.from_bytes(r.to_bytes()).signer_info.signing_key is key


@pytest.mark.parametrize("vmpl", [4, 5, 0xFFFFFFFF])
def test_vmpl_above_3(vmpl: int) -> None:
    data = bytearray(make_report(3).to_bytes())
    data[0x30:0x34] = vmpl.to_bytes(4, "little")
    err = _raises(bytes(data), offset=0x30, field="VMPL")
    assert err.got == vmpl


@pytest.mark.parametrize("vmpl", [0, 1, 2, 3])
def test_vmpl_0_to_3(vmpl: int) -> None:
    r = make_report(3, vmpl=vmpl)
    assert AttestationReport.from_bytes(r.to_bytes()).vmpl == vmpl


@pytest.mark.parametrize("bit", [8, 9, 63])
def test_platform_info_undefined_bits(bit: int) -> None:
    data = bytearray(make_report(3).to_bytes())
    value = int.from_bytes(data[0x40:0x48], "little") | (1 << bit)
    data[0x40:0x48] = value.to_bytes(8, "little")
    _raises(bytes(data), offset=0x40, field="PLATFORM_INFO.reserved")


# -- TCB layouts -------------------------------------------------------------------------------

TCB_FIELDS = {"CURRENT_TCB": 0x038, "REPORTED_TCB": 0x180, "COMMITTED_TCB": 0x1E0,
              "LAUNCH_TCB": 0x1F0}


@pytest.mark.parametrize("field", TCB_FIELDS)
@pytest.mark.parametrize("byte", [2, 3, 4, 5])
def test_milan_tcb_reserved_bytes(field: str, byte: int) -> None:
    base = TCB_FIELDS[field]
    for version in (2, 3):
        data = make_report(version).to_bytes()
        err = _raises(_with(data, base + byte, 1), field="TCB_VERSION.reserved")
        assert err.offset is not None and base + 2 <= err.offset <= base + 5


@pytest.mark.parametrize("field", TCB_FIELDS)
@pytest.mark.parametrize("byte", [4, 5, 6])
def test_turin_tcb_reserved_bytes(field: str, byte: int) -> None:
    base = TCB_FIELDS[field]
    data = make_report(3, family=0x1A, model=0x02).to_bytes()
    err = _raises(_with(data, base + byte, 1), field="TCB_VERSION.reserved")
    assert err.offset is not None and base + 4 <= err.offset <= base + 6


def test_tcb_reserved_error_names_the_nonzero_byte() -> None:
    data = make_report(3).to_bytes()
    _raises(_with(data, 0x180 + 5, 1), offset=0x185)


def test_turin_layout_decodes_from_the_right_bytes() -> None:
    """ABI 56860 TCB_VERSION (Turin): byte0 FMC, 1 BL, 2 TEE, 3 SNP, 4-6 reserved, 7 UCODE."""
    report = make_report(3, family=0x1A, model=0x02)
    data = report.to_bytes()
    for base in TCB_FIELDS.values():
        assert data[base:base + 8] == bytes([1, 2, 3, 4, 0, 0, 0, 5])
    parsed = AttestationReport.from_bytes(data)
    assert parsed.cpuid is not None and parsed.cpuid.product is Product.TURIN
    assert parsed.tcb_layout is TcbLayout.TURIN
    for name in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
        tcb = getattr(parsed, name)
        assert (tcb.fmc, tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode) == (1, 2, 3, 4, 5)
        assert tcb.components() == {"fmc": 1, "bootloader": 2, "tee": 3, "snp": 4,
                                    "microcode": 5}
    # Bytes that are reserved in the Milan layout are fields in the Turin one, and vice versa.
    raw = bytearray(data)
    raw[0x180:0x188] = bytes([9, 8, 7, 6, 0, 0, 0, 200])
    t = AttestationReport.from_bytes(bytes(raw)).reported_tcb
    assert (t.fmc, t.bootloader, t.tee, t.snp, t.microcode) == (9, 8, 7, 6, 200)
    _raises(_with(data, 0x186, 8), field="TCB_VERSION.reserved")  # Milan's SNP byte


def test_milan_layout_decodes_from_the_right_bytes() -> None:
    """ABI 56860 TCB_VERSION (Milan/Genoa): byte0 BL, 1 TEE, 2-5 reserved, 6 SNP, 7 UCODE."""
    data = make_report(3, tcb=TcbVersion(bootloader=1, tee=2, snp=3, microcode=4)).to_bytes()
    assert data[0x180:0x188] == bytes([1, 2, 0, 0, 0, 0, 3, 4])
    t = AttestationReport.from_bytes(data).reported_tcb
    assert (t.fmc, t.bootloader, t.tee, t.snp, t.microcode) == (None, 1, 2, 3, 4)
    assert t.layout is TcbLayout.MILAN_GENOA


def test_to_bytes_refuses_inconsistent_reports() -> None:
    with pytest.raises(FormatError):  # Turin CPUID with Milan-layout TCBs
        make_report(3, family=0x1A, tcb=MILAN_TCB).to_bytes()
    with pytest.raises(FormatError):  # v2 with CPUID
        make_report(2, cpuid=Cpuid(0x19, 1, 1)).to_bytes()
    with pytest.raises(FormatError):  # v3 without CPUID
        make_report(3, cpuid=None).to_bytes()
    with pytest.raises(FormatError):  # v5 without mitigation vectors
        make_report(5, launch_mit_vector=None, current_mit_vector=None).to_bytes()
    with pytest.raises(FormatError):  # v3 with mitigation vectors
        make_report(3, launch_mit_vector=1, current_mit_vector=1).to_bytes()
    with pytest.raises(FormatError):
        make_report(3, report_data=b"short").to_bytes()
    with pytest.raises(FormatError):
        make_report(4).to_bytes()


@pytest.mark.parametrize(("family", "model", "product"), [
    (0x19, 0x00, Product.MILAN), (0x19, 0x01, Product.MILAN), (0x19, 0x0F, Product.MILAN),
    (0x19, 0x10, Product.GENOA), (0x19, 0x11, Product.GENOA), (0x19, 0xA0, Product.GENOA),
    (0x19, 0xAF, Product.GENOA), (0x1A, 0x02, Product.TURIN), (0x19, 0x50, None),
    (0x17, 0x31, None),
])
def test_product_from_cpuid(family: int, model: int, product: Product | None) -> None:
    assert product_from_cpuid(family, model) is product
    assert TcbLayout.for_product(product) is (
        TcbLayout.TURIN if product is Product.TURIN else TcbLayout.MILAN_GENOA)


# -- small structures --------------------------------------------------------------------------


def test_tcb_version_round_trip_both_layouts() -> None:
    for tcb in (MILAN_TCB, TURIN_TCB):
        assert TcbVersion.from_u64(tcb.to_u64(), tcb.layout) == tcb
    assert str(MILAN_TCB) == "bootloader=3 tee=0 snp=8 microcode=115"
    assert MILAN_TCB.to_u64() == 0x7308000000000003
    with pytest.raises(FormatError):
        TcbVersion(bootloader=256, tee=0, snp=0, microcode=0).to_u64()
    with pytest.raises(FormatError):
        TcbVersion(bootloader=0, tee=0, snp=0, microcode=0, fmc=-1).to_u64()


@given(st.integers(0, 2**64 - 1), st.sampled_from(list(TcbLayout)))
@PROPERTY
def test_tcb_version_from_u64_property(value: int, layout: TcbLayout) -> None:
    try:
        tcb = TcbVersion.from_u64(value, layout)
    except FormatError as err:
        assert err.field == "TCB_VERSION.reserved"
        return
    assert tcb.layout is layout
    assert tcb.to_u64() == value


@pytest.mark.parametrize("value", [-1, 2**64])
def test_tcb_version_from_u64_out_of_range(value: int) -> None:
    with pytest.raises(FormatError):
        TcbVersion.from_u64(value, TcbLayout.MILAN_GENOA)


@given(st.integers(-(2**64), 2**70))
@PROPERTY
def test_guest_policy_from_u64_property(value: int) -> None:
    try:
        policy = GuestPolicy.from_u64(value)
    except FormatError as err:
        assert err.structure == "GUEST_POLICY"
        assert err.field in ("POLICY.bit17", "POLICY.reserved")
        return
    assert 0 <= value < 2**26 and value >> 17 & 1
    assert policy.to_u64() == value


def test_guest_policy_flags() -> None:
    assert GuestPolicy.from_u64(0x30000) == GuestPolicy(smt=True)
    p = GuestPolicy.from_u64(0x3001F)
    assert (p.abi_minor, p.abi_major, p.smt, p.debug) == (0x1F, 0, True, False)
    assert GuestPolicy.from_u64(0xB0000).debug is True
    assert GuestPolicy.from_u64(0x70000).migrate_ma is True
    bits = {"single_socket": 20, "cxl_allow": 21, "mem_aes_256_xts": 22, "rapl_dis": 23,
            "ciphertext_hiding": 24, "page_swap_disable": 25}
    for name, bit in bits.items():
        pol = GuestPolicy.from_u64((1 << 17) | (1 << bit))
        assert getattr(pol, name) is True
        assert pol.to_u64() == (1 << 17) | (1 << bit)


def test_guest_policy_to_u64_rejects_out_of_range_abi() -> None:
    with pytest.raises(FormatError):
        GuestPolicy(abi_minor=300).to_u64()


@given(st.integers(0, 0xFF))
@PROPERTY
def test_platform_info_round_trip(value: int) -> None:
    try:
        info = PlatformInfo.from_u64(value)
    except FormatError:
        assert value & 0x40
        return
    assert info.to_u64() == value


@given(st.integers(0, 2**32 - 1))
@PROPERTY
def test_signer_info_round_trip(value: int) -> None:
    try:
        info = SignerInfo.from_u32(value)
    except FormatError as err:
        assert err.field in ("SIGNER_INFO.reserved", "SIGNER_INFO.SIGNING_KEY")
        assert value >> 5 or (value >> 2 & 7) not in (0, 1, 7)
        return
    assert info.to_u32() == value


def test_firmware_version() -> None:
    v = FirmwareVersion(1, 55, 29)
    assert str(v) == "1.55.29" and v.as_tuple() == (1, 55, 29)
    assert FirmwareVersion(1, 55, 29).as_tuple() > FirmwareVersion(1, 52, 4).as_tuple()


def test_signature_round_trip_and_errors() -> None:
    raw = SIG.to_bytes()
    assert len(raw) == 512
    assert EcdsaP384Signature.from_bytes(raw) == SIG
    with pytest.raises(FormatError) as info:
        EcdsaP384Signature.from_bytes(_with(raw, 50, 1))
    assert info.value.offset == 50
    with pytest.raises(FormatError):
        EcdsaP384Signature.from_bytes(raw[:-1])
    with pytest.raises(FormatError):
        EcdsaP384Signature(r=1 << 384, s=1).to_bytes()


# -- MSG_REPORT_REQ ----------------------------------------------------------------------------


def test_msg_report_req_round_trip() -> None:
    for vmpl in range(4):
        for key_sel in (0, 1, 2):
            req = MsgReportReq(report_data=bytes(range(64)), vmpl=vmpl, key_sel=key_sel)
            data = req.to_bytes()
            assert len(data) == 0x60
            assert data[0x40:0x44] == vmpl.to_bytes(4, "little")
            assert data[0x44:0x48] == key_sel.to_bytes(4, "little")
            assert MsgReportReq.from_bytes(data) == req


def test_msg_report_req_errors() -> None:
    good = MsgReportReq(report_data=bytes(64)).to_bytes()

    def bad(data: bytes, field: str, offset: int | None) -> None:
        with pytest.raises(FormatError) as info:
            MsgReportReq.from_bytes(data)
        assert info.value.structure == "MSG_REPORT_REQ"
        assert info.value.field == field
        assert info.value.offset == offset

    bad(good[:-1], "<length>", None)
    bad(good + b"\0", "<length>", None)
    bad(_with(good, 0x40, 4), "VMPL", 0x40)
    bad(_with(good, 0x44, 3), "KEY_SEL", 0x44)
    bad(_with(good, 0x44, 4), "KEY_SEL.reserved", 0x44)
    bad(_with(good, 0x47, 0x80), "KEY_SEL.reserved", 0x44)
    bad(_with(good, 0x48, 1), "reserved", 0x48)
    bad(_with(good, 0x5F, 1), "reserved", 0x5F)
    with pytest.raises(FormatError):
        MsgReportReq(report_data=bytes(63)).to_bytes()
    with pytest.raises(FormatError):
        MsgReportReq(report_data=bytes(64), vmpl=4).to_bytes()


@given(st.one_of(st.binary(max_size=200), st.binary(min_size=0x60, max_size=0x60)))
@PROPERTY
def test_msg_report_req_property(data: bytes) -> None:
    try:
        req = MsgReportReq.from_bytes(data)
    except FormatError as err:
        assert err.structure == "MSG_REPORT_REQ"
        return
    assert req.to_bytes() == data


# -- certificate table -------------------------------------------------------------------------

GUIDS = {name: guid for guid, name in CERT_GUIDS.items()}


def _entry(guid: uuid.UUID | None, offset: int, length: int) -> bytes:
    g = guid.bytes if guid is not None else bytes(16)
    return g + offset.to_bytes(4, "little") + length.to_bytes(4, "little")


def _cert_raises(data: bytes, *, field: str | None = None, offset: int | None = None) -> None:
    with pytest.raises(FormatError) as info:
        CertTable.from_bytes(data)
    assert info.value.structure == "CERT_TABLE"
    if field is not None:
        assert info.value.field == field
    if offset is not None:
        assert info.value.offset == offset


def test_cert_table_round_trip() -> None:
    table = CertTable.build({"VCEK": b"vcek-der", "ASK": b"ask", "ARK": b"ark!", "CRL": b""})
    data = table.to_bytes()
    assert len(data) == 5 * 24 + 8 + 3 + 4
    assert data[4 * 24:5 * 24] == bytes(24)  # terminator
    assert int.from_bytes(data[16:20], "little") == 5 * 24  # first payload after the headers
    parsed = CertTable.from_bytes(data)
    assert parsed == table
    assert [e.kind for e in parsed.entries] == ["VCEK", "ASK", "ARK", "CRL"]
    assert parsed.get("VCEK") == b"vcek-der" and parsed.get("VLEK") is None
    assert CertTable(()).to_bytes() == bytes(24)
    assert CertTable.from_bytes(bytes(24)).entries == ()
    unknown = CertTableEntry(uuid.UUID(int=1), b"x")
    assert unknown.kind is None
    assert CertTable.from_bytes(CertTable((unknown,)).to_bytes()).entries == (unknown,)


def test_cert_table_out_of_range() -> None:
    vcek = GUIDS["VCEK"]
    # payload runs past the end
    _cert_raises(_entry(vcek, 48, 10) + bytes(24) + b"12345", field="OFFSET/LENGTH", offset=16)
    # offset beyond the buffer
    _cert_raises(_entry(vcek, 4096, 0) + bytes(24), field="OFFSET/LENGTH", offset=16)
    # payload starting inside its own header
    _cert_raises(_entry(vcek, 8, 4) + bytes(24), field="OFFSET/LENGTH", offset=16)
    # huge length (u32 overflow territory)
    _cert_raises(_entry(vcek, 48, 0xFFFFFFFF) + bytes(24), field="OFFSET/LENGTH")


def test_cert_table_missing_terminator() -> None:
    vcek = GUIDS["VCEK"]
    _cert_raises(b"", field="terminator", offset=0)
    _cert_raises(bytes(23), field="terminator", offset=0)
    _cert_raises(_entry(vcek, 24, 0), field="terminator", offset=24)
    _cert_raises(_entry(vcek, 24, 0) + bytes(10), field="terminator", offset=24)


def test_cert_table_non_zero_terminator() -> None:
    vcek = GUIDS["VCEK"]
    _cert_raises(_entry(None, 48, 0) + bytes(24), field="terminator", offset=16)
    _cert_raises(_entry(None, 0, 1) + b"x", field="terminator", offset=16)
    _cert_raises(_entry(vcek, 48, 1) + _entry(None, 0, 7) + b"x", field="terminator",
                 offset=40)


def test_cert_table_payload_overlapping_terminator() -> None:
    _cert_raises(_entry(GUIDS["VCEK"], 24, 24) + bytes(24), field="OFFSET/LENGTH")


def test_cert_table_payload_overlapping_later_header() -> None:
    data = (_entry(GUIDS["VCEK"], 24, 16) + _entry(GUIDS["ASK"], 72, 4) + bytes(24)
            + b"abcd")
    _cert_raises(data, field="OFFSET/LENGTH")


def test_cert_table_overlapping_payloads() -> None:
    data = (_entry(GUIDS["VCEK"], 72, 8) + _entry(GUIDS["ASK"], 76, 8) + bytes(24)
            + bytes(range(1, 13)))
    _cert_raises(data)


def _table_base() -> bytes:
    return CertTable.build({"ARK": b"A" * 20, "ASK": b"S" * 10, "VCEK": b"V" * 30}).to_bytes()


_mutation = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                     min_size=1, max_size=4)


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    b = bytearray(data)
    for pos, value in edits:
        b[pos % len(b)] = value
    return bytes(b)


@given(st.one_of(st.binary(max_size=300),
                 _mutation.map(lambda edits: _mutate(_table_base(), edits)),
                 st.integers(0, 200).map(lambda n: _table_base()[:n])))
@PROPERTY
def test_cert_table_property(data: bytes) -> None:
    try:
        table = CertTable.from_bytes(data)
    except FormatError as err:
        assert err.structure == "CERT_TABLE"
        return
    for entry in table.entries:
        assert isinstance(entry.data, bytes)


# -- AttestationReport property tests -----------------------------------------------------------

_BASES = {v: make_report(v).to_bytes() for v in (2, 3, 5)}
_BASES[4] = make_report(3, family=0x1A, model=0x02).to_bytes()  # key 4 = Turin v3


@given(st.one_of(
    st.binary(max_size=2 * REPORT_SIZE),
    st.binary(min_size=REPORT_SIZE, max_size=REPORT_SIZE),
    st.tuples(st.sampled_from(sorted(_BASES)), _mutation).map(
        lambda t: _mutate(_BASES[t[0]], t[1])),
))
@PROPERTY
def test_attestation_report_property(data: bytes) -> None:
    """Arbitrary bytes and mutated valid reports only ever raise FormatError; a report that
    parses serialises back to exactly its input (the parse is lossless)."""
    try:
        report = AttestationReport.from_bytes(data)
    except FormatError as err:
        assert err.structure == "ATTESTATION_REPORT"
        assert err.offset is None or 0 <= err.offset < REPORT_SIZE
        return
    assert report.to_bytes() == data
    assert AttestationReport.from_bytes(report.to_bytes()) == report
