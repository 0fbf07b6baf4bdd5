"""SEV-SNP appraisal: a :class:`VerifiedReport` + a :class:`SevSnpPolicy` -> an :class:`Appraisal`.

The input has already been *verified* (``veritee.trust.sevsnp``): the report's signature, the
VEK -> ASK/ASVK -> ARK chain, revocation, and the binding of the VEK's TCB/hwID to the report.
This module only decides whether that verified platform and guest are *acceptable*.

Every check below runs on every call, in this fixed order, and yields exactly one
:class:`Finding` whose ``code`` names the check (``outcome`` says pass/fail/skip). A policy
value of ``None`` (or a permissive boolean such as ``allow_debug=True``) means "not checked"
and the finding is :attr:`Outcome.SKIP`.

====  ========================================  =============================================
 #    code                                      report field (ABI 56860 "ATTESTATION_REPORT")
====  ========================================  =============================================
 1    sevsnp.report_version.below_minimum       VERSION
 2    sevsnp.product.not_allowed                product proved by the VEK certificate chain
 3    sevsnp.signing_key.not_allowed            VEK kind (VCEK or VLEK) that verified
 4    sevsnp.chip_id.mismatch                   CHIP_ID
 5    sevsnp.measurement.mismatch               MEASUREMENT (launch digest)
 6    sevsnp.host_data.mismatch                 HOST_DATA
 7    sevsnp.id_key.mismatch                    ID_KEY_DIGEST
 8    sevsnp.author_key.mismatch                AUTHOR_KEY_DIGEST (+ SIGNER_INFO.AUTHOR_KEY_EN)
 9    sevsnp.family_id.mismatch                 FAMILY_ID
10    sevsnp.image_id.mismatch                  IMAGE_ID
11    sevsnp.guest_svn.below_minimum            GUEST_SVN
12    sevsnp.report_data.mismatch               REPORT_DATA (nonce / key binding)
13    sevsnp.vmpl.not_allowed                   VMPL
14    sevsnp.policy.debug                       POLICY.DEBUG (bit 19)
15    sevsnp.policy.migrate_ma                  POLICY.MIGRATE_MA (bit 18)
16    sevsnp.policy.smt                         POLICY.SMT (bit 16)
17    sevsnp.policy.single_socket               POLICY.SINGLE_SOCKET (bit 20)
18    sevsnp.policy.abi.below_minimum           POLICY.ABI_MAJOR/ABI_MINOR (bits 15:0)
19    sevsnp.tcb.no_floor                       (per-product floors: one exists for product)
20    sevsnp.tcb.bootloader.below_minimum       REPORTED_TCB.BOOT_LOADER
21    sevsnp.tcb.tee.below_minimum              REPORTED_TCB.TEE
22    sevsnp.tcb.snp.below_minimum              REPORTED_TCB.SNP
23    sevsnp.tcb.microcode.below_minimum        REPORTED_TCB.MICROCODE
24    sevsnp.tcb.fmc.below_minimum              REPORTED_TCB.FMC (Turin layout only)
25    sevsnp.committed_tcb.below_minimum        COMMITTED_TCB
26    sevsnp.launch_tcb.below_minimum           LAUNCH_TCB (``min_launch_tcb`` when set)
27    sevsnp.firmware.below_minimum             CURRENT_MAJOR/MINOR/BUILD
28    sevsnp.firmware.provisional               COMMITTED_* vs CURRENT_* (TCB and version)
29    sevsnp.platform.smt                       PLATFORM_INFO.SMT_EN (bit 0)
30    sevsnp.platform.tsme                      PLATFORM_INFO.TSME_EN (bit 1)
31    sevsnp.reported_tcb.above_current         REPORTED_TCB <= CURRENT_TCB (per component)
32    sevsnp.policy.cxl_allow                   POLICY.CXL_ALLOW (bit 21)
33    sevsnp.policy.mem_aes_256_xts             POLICY.MEM_AES_256_XTS (bit 22)
34    sevsnp.policy.rapl_dis                    POLICY.RAPL_DIS (bit 23)
35    sevsnp.policy.ciphertext_hiding           POLICY.CIPHERTEXT_HIDING (bit 24)
36    sevsnp.policy.page_swap_disable           POLICY.PAGE_SWAP_DISABLE (bit 25)
37    sevsnp.platform.ecc                       PLATFORM_INFO.ECC_EN (bit 2)
38    sevsnp.platform.rapl_disabled             PLATFORM_INFO.RAPL_DIS (bit 3)
39    sevsnp.platform.ciphertext_hiding         PLATFORM_INFO.CIPHERTEXT_HIDING_EN (bit 4)
40    sevsnp.platform.alias_check_complete      PLATFORM_INFO.ALIAS_CHECK_COMPLETE (bit 5)
41    sevsnp.revocation.unchecked               the ARK's CRL was checked (trust layer)
====  ========================================  =============================================

Secure defaults (issue 18; the table in ``docs/policy.md`` says which anchor does the same):

* **TCB floor** (:data:`DEFAULT_TCB_FLOOR`): a floor per product, so the TCB checks can fail.
  A product without a floor fails ``sevsnp.tcb.no_floor`` (Turin: no public floor shipped).
* **Provisional firmware refused** (``require_committed_equals_current=True``), as
  go-sev-guest's ``validate`` does unless ``PermitProvisionalFirmware``.
* **Revocation**: a report whose chain was not checked against the ARK's CRL fails
  ``sevsnp.revocation.unchecked`` unless ``allow_unchecked_revocation=True``.
* **ID block**: ``family_id``, ``image_id`` and ``min_guest_svn`` come from the ID block, which
  anyone who launches the guest can sign; setting them without ``id_key_digests`` or
  ``author_key_digests`` is a :class:`~veritee.errors.ConfigError`.
* ``REPORTED_TCB <= CURRENT_TCB`` (go-sev-guest checks the VEK TCB against CURRENT_TCB).

Why the TCB floor is applied where it is: REPORTED_TCB is the TCB the VCEK is derived from, so
the trust layer has already bound it to the signing key -- firmware older than a component's
SPL cannot sign for it. COMMITTED_TCB is the anti-rollback floor: if it is below the floor the
host may later roll the firmware back below it while the guest runs. LAUNCH_TCB is the TCB the
guest was launched under: a guest launched on vulnerable firmware and then live-updated may
already have leaked. CURRENT_TCB is self-reported by the running firmware and adds nothing that
REPORTED_TCB does not already prove, so it is not compared.

Checks deliberately left out, and why:

* Signature, chain, CRL, VEK TCB == REPORTED_TCB, hwID == CHIP_ID, SIGNATURE_ALGO: these are
  verification, done (and raised on) by ``veritee.trust.sevsnp`` before appraisal.
* COMMITTED_TCB <= CURRENT_TCB: an invariant the AMD-SP firmware maintains itself.
* REPORT_ID / REPORT_ID_MA, CPUID stepping, mitigation vectors and the PLATFORM_INFO bits not
  listed above (IOMMU_WRITE_SAFE, TIO_EN): no agreed meaning for a generic relying party yet;
  they are reported in the claims so an application can decide.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from veritee.errors import ConfigError
from veritee.formats.sevsnp import Product, SigningKey, TcbVersion
from veritee.policy import Appraisal, Finding, Outcome, _load
from veritee.policy._checks import contains as _in
from veritee.policy._checks import finding as _ok
from veritee.policy._checks import flag as _flag
from veritee.policy._checks import skipped as _skip
from veritee.trust.sevsnp import VerifiedReport

__all__ = [
    "DEFAULT_TCB_FLOOR",
    "FINDING_CODES",
    "TCB_COMPONENTS",
    "SevSnpPolicy",
    "TcbFloor",
    "appraise",
    "claims",
    "load_policy",
    "policy_from_mapping",
    "policy_to_mapping",
]

TEE = "sevsnp"

TCB_COMPONENTS: tuple[str, ...] = ("bootloader", "tee", "snp", "microcode", "fmc")
"""TCB_VERSION components in the order they are checked (``fmc`` exists only on Turin)."""

# Field sizes (ABI 56860, "ATTESTATION_REPORT Structure").
_MEASUREMENT_LEN = 48
_REPORT_DATA_LEN = 64
_HOST_DATA_LEN = 32
_KEY_DIGEST_LEN = 48  # SHA-384 of the ID / author public key
_ID_LEN = 16  # FAMILY_ID, IMAGE_ID
_CHIP_ID_LEN = 64
_U32_MAX = 0xFFFF_FFFF

FINDING_CODES: frozenset[str] = frozenset({
    "sevsnp.report_version.below_minimum",
    "sevsnp.product.not_allowed",
    "sevsnp.signing_key.not_allowed",
    "sevsnp.chip_id.mismatch",
    "sevsnp.measurement.mismatch",
    "sevsnp.host_data.mismatch",
    "sevsnp.id_key.mismatch",
    "sevsnp.author_key.mismatch",
    "sevsnp.family_id.mismatch",
    "sevsnp.image_id.mismatch",
    "sevsnp.guest_svn.below_minimum",
    "sevsnp.report_data.mismatch",
    "sevsnp.vmpl.not_allowed",
    "sevsnp.policy.debug",
    "sevsnp.policy.migrate_ma",
    "sevsnp.policy.smt",
    "sevsnp.policy.single_socket",
    "sevsnp.policy.abi.below_minimum",
    "sevsnp.tcb.no_floor",
    *(f"sevsnp.tcb.{c}.below_minimum" for c in TCB_COMPONENTS),
    "sevsnp.committed_tcb.below_minimum",
    "sevsnp.launch_tcb.below_minimum",
    "sevsnp.firmware.below_minimum",
    "sevsnp.firmware.provisional",
    "sevsnp.platform.smt",
    "sevsnp.platform.tsme",
    "sevsnp.reported_tcb.above_current",
    "sevsnp.policy.cxl_allow",
    "sevsnp.policy.mem_aes_256_xts",
    "sevsnp.policy.rapl_dis",
    "sevsnp.policy.ciphertext_hiding",
    "sevsnp.policy.page_swap_disable",
    "sevsnp.platform.ecc",
    "sevsnp.platform.rapl_disabled",
    "sevsnp.platform.ciphertext_hiding",
    "sevsnp.platform.alias_check_complete",
    "sevsnp.revocation.unchecked",
})
"""Every code :func:`appraise` can emit (pinned by a test: changing it is an API change)."""


# -- validation helpers for programmatic construction ------------------------------------------


def _err(fld: str, got: object, want: str) -> ConfigError:
    return _load.config_error(fld, got, want)


def _check_int(value: object, fld: str, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _err(fld, value, f"an integer {lo}..{hi}")


def _check_bytes(value: object, fld: str, length: int) -> None:
    if value is None:
        return
    if not isinstance(value, bytes):
        raise _err(fld, type(value).__name__, f"bytes of length {length}")
    if len(value) != length:
        raise ConfigError(f"{fld}: got {len(value)} bytes, want {length} bytes")


def _nonempty_frozenset(value: object, fld: str) -> frozenset[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise _err(fld, value, "a non-empty set")
    out = frozenset(value)
    if not out:
        # An empty allow-list would reject everything; None is how to skip a check.
        raise _err(fld, "an empty set", "a non-empty set (use None to skip the check)")
    return out


def _bytes_set(value: object, fld: str, length: int) -> frozenset[bytes] | None:
    if value is None:
        return None
    out = _nonempty_frozenset(value, fld)
    for item in out:
        _check_bytes(item, f"{fld}[]", length)
    return out


def _enum_set(value: object, fld: str, kind: type[Product] | type[SigningKey]) -> frozenset[Any]:
    out = _nonempty_frozenset(value, fld)
    for item in out:
        if not isinstance(item, kind):
            raise _err(f"{fld}[]", item, f"a {kind.__name__}")
    return out


def _version(value: object, fld: str, parts: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, tuple | list) or len(value) != parts:
        raise _err(fld, value, f"a tuple of {parts} integers 0..255")
    for item in value:
        _check_int(item, f"{fld}[]", 0, 0xFF)
    return tuple(value)


def _check_min_tcb(value: object) -> Mapping[Product, TcbFloor] | TcbFloor | None:
    if value is None or isinstance(value, TcbFloor):
        return value
    if not isinstance(value, Mapping) or not value:
        raise _err("min_tcb", value, "None, a TcbFloor or a non-empty {Product: TcbFloor}")
    for product, floor in value.items():
        if not isinstance(product, Product) or not isinstance(floor, TcbFloor):
            raise _err("min_tcb", {product: floor}, "{Product: TcbFloor} entries")
    return _frozen_floors(value)


# -- policy data -----------------------------------------------------------------------------

_AR4SI_CLAIMS: frozenset[str] = frozenset({
    "instance-identity", "configuration", "executables", "file-system", "hardware",
    "runtime-opaque", "storage-opaque", "sourced-data"})

_BOOL_FIELDS: tuple[str, ...] = (
    "allow_debug", "allow_migration_agent", "allow_smt", "require_single_socket",
    "require_committed_equals_current", "allow_reported_tcb_above_current",
    "require_smt_disabled", "require_tsme", "require_ecc", "require_rapl_disabled",
    "require_platform_ciphertext_hiding", "require_alias_check_complete", "allow_cxl",
    "require_mem_aes_256_xts", "require_rapl_dis", "require_ciphertext_hiding",
    "require_page_swap_disable", "allow_unchecked_revocation")



@dataclass(frozen=True)
class TcbFloor:
    """Minimum security patch level (SPL) per TCB component.

    A component's SPL in the report must be ``>=`` the floor. ``fmc`` applies only to products
    whose TCB layout has an FMC field (Turin); for Milan/Genoa that check is listed as skipped.
    A component left at 0 cannot fail; :data:`DEFAULT_TCB_FLOOR` holds the shipped per-product
    floors. Real deployments should set the SPLs named in AMD's security bulletins.
    """

    bootloader: int = 0
    tee: int = 0
    snp: int = 0
    microcode: int = 0
    fmc: int = 0

    def __post_init__(self) -> None:
        for name in TCB_COMPONENTS:
            _check_int(getattr(self, name), f"min_tcb.{name}", 0, 0xFF)

    def components(self) -> dict[str, int]:
        """Every component's minimum, by name, in :data:`TCB_COMPONENTS` order."""
        return {name: getattr(self, name) for name in TCB_COMPONENTS}

    def below(self, tcb: TcbVersion) -> list[str]:
        """Names of the components of ``tcb`` that are below this floor."""
        return [name for name, got in tcb.components().items() if got < getattr(self, name)]


def _frozen_floors(value: Mapping[Product, TcbFloor]) -> Mapping[Product, TcbFloor]:
    return MappingProxyType(dict(value))


DEFAULT_TCB_FLOOR: Mapping[Product, TcbFloor] = _frozen_floors({
    # Milan: the TCB of the 2024-25 Azure and Project Oak fleet reports (TCB_VERSION
    # 0xdb18000000000004: BL 4, SNP 24, ucode 0xdb). Below it is what the dstack fixture's
    # source calls OutOfDate (SNP 23, ucode 0xd5). Raise it per AMD's security bulletins.
    Product.MILAN: TcbFloor(bootloader=4, tee=0, snp=24, microcode=219),
    # Genoa: the boot loader and SNP SPLs of the public Genoa reports (BL 10, SNP 23). The
    # microcode SPL is per CPU model (Genoa 0x11 and Siena/Bergamo 0xA0 reports carry 84 and
    # 25 at the same firmware), so one microcode floor per product would be wrong: left at 0.
    Product.GENOA: TcbFloor(bootloader=10, tee=0, snp=23, microcode=0),
    # Turin: no public floor yet, so none is shipped and Turin fails sevsnp.tcb.no_floor until
    # the relying party sets one (fail closed rather than a floor that cannot fail).
})
"""The shipped per-product TCB floors (documented in docs/policy.md, with their sources)."""


@dataclass(frozen=True)
class SevSnpPolicy:
    """What a relying party accepts from a verified SEV-SNP guest. Secure by default.

    ``None`` means "not checked" (the appraisal lists it as skipped). The defaults reject debug
    guests, guests with a migration agent, reports from VMPLs other than 0 and report versions
    below 2, provisional firmware, a REPORTED_TCB above CURRENT_TCB and chains whose revocation
    was not checked, and apply per-product TCB floors (:data:`DEFAULT_TCB_FLOOR`; a product
    without one fails). ``required_claims`` names the AR4SI claims whose absence ("no claim")
    keeps the EAR below ``affirming`` (see :mod:`veritee.results`). Nothing about the *workload*
    is pinned by default: a relying party that does not set ``measurements`` accepts any
    launch digest, and the appraisal says so (``sevsnp.measurement.mismatch`` is skipped).

    ``report_data`` is normally set per request to the expected nonce or key hash with
    ``dataclasses.replace(policy, report_data=...)``; a static value in a file is unusual.
    """

    policy_id: str = "default"

    # Workload identity.
    measurements: frozenset[bytes] | None = None  # allow-list of 48-byte launch digests
    report_data: bytes | None = None  # exactly 64 bytes
    host_data: bytes | None = None  # exactly 32 bytes
    id_key_digests: frozenset[bytes] | None = None  # SHA-384 digests of allowed ID keys
    author_key_digests: frozenset[bytes] | None = None  # ... of allowed author keys
    family_id: bytes | None = None  # 16 bytes
    image_id: bytes | None = None  # 16 bytes
    min_guest_svn: int = 0

    # Hardware identity.
    chip_ids: frozenset[bytes] | None = None  # allow-list of 64-byte CHIP_IDs
    allowed_products: frozenset[Product] | None = None  # None: any product the chain proved
    allowed_signing_keys: frozenset[SigningKey] = frozenset({SigningKey.VCEK, SigningKey.VLEK})
    min_report_version: int = 2

    # Guest configuration.
    allowed_vmpls: frozenset[int] = frozenset({0})
    allow_debug: bool = False
    allow_migration_agent: bool = False
    allow_smt: bool = True
    require_single_socket: bool = False
    min_abi: tuple[int, int] | None = None

    # Platform TCB and firmware.
    min_tcb: Mapping[Product, TcbFloor] | TcbFloor | None = field(
        default_factory=lambda: DEFAULT_TCB_FLOOR, hash=False)
    # LAUNCH_TCB floor when it must differ from min_tcb (go-sev-guest: MinimumLaunchTCB);
    # None: min_tcb applies to LAUNCH_TCB too.
    min_launch_tcb: Mapping[Product, TcbFloor] | TcbFloor | None = field(default=None,
                                                                         hash=False)
    min_firmware: tuple[int, int, int] | None = None
    require_committed_equals_current: bool = True
    allow_reported_tcb_above_current: bool = False

    # Host configuration (PLATFORM_INFO).
    require_smt_disabled: bool = False
    require_tsme: bool = False
    require_ecc: bool = False
    require_rapl_disabled: bool = False
    require_platform_ciphertext_hiding: bool = False
    require_alias_check_complete: bool = False

    # Guest policy bits a relying party may require (ABI 56860, Table 9 "GUEST_POLICY").
    allow_cxl: bool = True
    require_mem_aes_256_xts: bool = False
    require_rapl_dis: bool = False
    require_ciphertext_hiding: bool = False
    require_page_swap_disable: bool = False

    # Revocation: False refuses a chain not checked against the ARK's CRL.
    allow_unchecked_revocation: bool = False

    # AR4SI claims that must be present ("none" otherwise lowers the EAR status).
    required_claims: frozenset[str] = frozenset(
        {"hardware", "instance-identity", "configuration", "runtime-opaque"})

    def __post_init__(self) -> None:
        if not isinstance(self.policy_id, str) or not self.policy_id:
            raise _err("policy_id", self.policy_id, "a non-empty string")
        self._freeze("measurements", _bytes_set(self.measurements, "measurements",
                                                _MEASUREMENT_LEN))
        _check_bytes(self.report_data, "report_data", _REPORT_DATA_LEN)
        _check_bytes(self.host_data, "host_data", _HOST_DATA_LEN)
        for name in ("id_key_digests", "author_key_digests"):
            digests = _bytes_set(getattr(self, name), name, _KEY_DIGEST_LEN)
            # The AMD-SP writes zeros when no ID block / author key was used: allowing the
            # all-zero digest would accept guests launched *without* an ID key.
            if digests is not None and bytes(_KEY_DIGEST_LEN) in digests:
                raise _err(name, "an all-zero digest",
                           "real key digests (all zero means no key was used)")
            self._freeze(name, digests)
        _check_bytes(self.family_id, "family_id", _ID_LEN)
        _check_bytes(self.image_id, "image_id", _ID_LEN)
        _check_int(self.min_guest_svn, "min_guest_svn", 0, _U32_MAX)
        self._freeze("chip_ids", _bytes_set(self.chip_ids, "chip_ids", _CHIP_ID_LEN))
        if self.allowed_products is not None:
            self._freeze("allowed_products",
                         _enum_set(self.allowed_products, "allowed_products", Product))
        keys = _enum_set(self.allowed_signing_keys, "allowed_signing_keys", SigningKey)
        if SigningKey.NONE in keys:
            raise _err("allowed_signing_keys", "NONE", "VCEK and/or VLEK (NONE is unsigned)")
        self._freeze("allowed_signing_keys", keys)
        _check_int(self.min_report_version, "min_report_version", 0, _U32_MAX)
        vmpls = _nonempty_frozenset(self.allowed_vmpls, "allowed_vmpls")
        for v in vmpls:
            _check_int(v, "allowed_vmpls[]", 0, 3)
        self._freeze("allowed_vmpls", vmpls)
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise _err(name, getattr(self, name), "true or false")
        # FAMILY_ID, IMAGE_ID and GUEST_SVN come from the ID block, which whoever launches the
        # guest signs with a key of their choice: they mean something only under a pinned key.
        id_block = [n for n in ("family_id", "image_id") if getattr(self, n) is not None]
        if self.min_guest_svn:
            id_block.append("min_guest_svn")
        if id_block and self.id_key_digests is None and self.author_key_digests is None:
            raise _err(", ".join(id_block), "set without a pinned ID or author key",
                       "id_key_digests or author_key_digests (the ID block is signed by"
                       " whoever launches the guest)")
        claims_ = _nonempty_frozenset(self.required_claims, "required_claims") if \
            self.required_claims else frozenset()
        unknown = sorted(c for c in claims_ if c not in _AR4SI_CLAIMS)
        if unknown:
            raise _err("required_claims", unknown, f"names from {sorted(_AR4SI_CLAIMS)}")
        self._freeze("required_claims", frozenset(claims_))
        self._freeze("min_abi", _version(self.min_abi, "min_abi", 2))
        self._freeze("min_firmware", _version(self.min_firmware, "min_firmware", 3))
        self._freeze("min_tcb", _check_min_tcb(self.min_tcb))
        self._freeze("min_launch_tcb", _check_min_tcb(self.min_launch_tcb))

    def _freeze(self, name: str, value: object) -> None:
        # Frozen dataclass: normalise (list -> frozenset, dict -> read-only view) in place.
        object.__setattr__(self, name, value)

    def floor_for(self, product: Product) -> TcbFloor | None:
        """The TCB floor that applies to ``product`` (``None``: no floor for it)."""
        if self.min_tcb is None or isinstance(self.min_tcb, TcbFloor):
            return self.min_tcb
        return self.min_tcb.get(product)


# -- appraisal -------------------------------------------------------------------------------


def appraise(verified: VerifiedReport, policy: SevSnpPolicy) -> Appraisal:
    """Appraise a verified report against ``policy``; every check runs, none raises.

    Returns an :class:`Appraisal` with one finding per check in the order of the table in the
    module docstring, the verification trace from ``verified.checks`` and the verified claims
    (:func:`claims`). ``Appraisal.accepted`` is the verdict; the front door raises
    :class:`~veritee.errors.PolicyRejected` when it is false.
    """
    findings: list[Finding] = []
    for check in _CHECKS:
        findings.extend(check(verified, policy))
    return Appraisal(tee=TEE, policy_id=policy.policy_id, findings=tuple(findings),
                     verification=tuple(verified.checks), claims=claims(verified),
                     required_claims=policy.required_claims)


_NAMES: dict[type, tuple[str, ...]] = {}


def _names(cls: type) -> tuple[str, ...]:
    """A dataclass's field names, in order (looked up once per class)."""
    names = _NAMES.get(cls)
    if names is None:
        names = _NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def claims(verified: VerifiedReport) -> dict[str, Any]:
    """The verified claims a relying party may use, JSON-ready (bytes as lowercase hex)."""
    r = verified.report
    return {
        "report_version": r.version,
        "product": verified.product.value,
        "product_name": verified.vek.product_name,
        "signing_key": verified.vek.kind.name,
        "csp_id": verified.vek.csp_id,
        "ark_fingerprint": verified.ark_fingerprint,
        "chip_id": r.chip_id.hex(),
        "measurement": r.measurement.hex(),
        "report_data": r.report_data.hex(),
        "host_data": r.host_data.hex(),
        "id_key_digest": r.id_key_digest.hex(),
        # Without AUTHOR_KEY_EN the digest field carries no claim.
        "author_key_digest": r.author_key_digest.hex() if r.signer_info.author_key_en else None,
        "family_id": r.family_id.hex(),
        "image_id": r.image_id.hex(),
        "report_id": r.report_id.hex(),
        "guest_svn": r.guest_svn,
        "vmpl": r.vmpl,
        "guest_policy": {name: getattr(r.policy, name) for name in _names(type(r.policy))},
        "platform_info": {name: getattr(r.platform_info, name)
                          for name in _names(type(r.platform_info))},
        "reported_tcb": r.reported_tcb.components(),
        "current_tcb": r.current_tcb.components(),
        "committed_tcb": r.committed_tcb.components(),
        "launch_tcb": r.launch_tcb.components(),
        "current_firmware": str(r.current_version),
        "committed_firmware": str(r.committed_version),
    }


_Check = Callable[[VerifiedReport, SevSnpPolicy], Iterable[Finding]]



def _check_report_version(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    got = v.report.version
    yield _ok("sevsnp.report_version.below_minimum", "version", got, p.min_report_version,
              got >= p.min_report_version, why="report version below the minimum")


def _check_product(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    code = "sevsnp.product.not_allowed"
    if p.allowed_products is None:
        yield _skip(code, "product", "allowed_products is unset (any product the chain proved)")
        return
    yield _ok(code, "product", v.product, p.allowed_products, v.product in p.allowed_products,
              why="product not in the allow-list")


def _check_signing_key(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    got = v.vek.kind
    yield _ok("sevsnp.signing_key.not_allowed", "signing_key", got.name,
              sorted(k.name for k in p.allowed_signing_keys), got in p.allowed_signing_keys,
              why="the report was signed by a key kind the policy does not accept")


def _bytes_check(code: str, fld: str, attr: str, policy_attr: str,
                 why: str) -> _Check:
    """A check that a report byte field equals a pinned value or is in an allow-list."""
    def check(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
        want: bytes | frozenset[bytes] | None = getattr(p, policy_attr)
        if want is None:
            yield _skip(code, fld, f"{policy_attr} is unset")
            return
        got: bytes = getattr(v.report, attr)
        ok = hmac.compare_digest(got, want) if isinstance(want, bytes) else _in(got, want)
        yield _ok(code, fld, got, want, ok, why=why)
    return check


def _check_author_key(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    code, fld = "sevsnp.author_key.mismatch", "author_key_digest"
    if p.author_key_digests is None:
        yield _skip(code, fld, "author_key_digests is unset")
        return
    r = v.report
    if not r.signer_info.author_key_en:
        # The firmware zeroes AUTHOR_KEY_DIGEST when no author key signed the ID key.
        yield Finding(code, Outcome.FAIL, fld, None, p.author_key_digests,
                      "AUTHOR_KEY_EN is 0: the ID key was not signed by an author key")
        return
    yield _ok(code, fld, r.author_key_digest, p.author_key_digests,
              _in(r.author_key_digest, p.author_key_digests),
              why="author key not in the allow-list")


def _check_guest_svn(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    got = v.report.guest_svn
    yield _ok("sevsnp.guest_svn.below_minimum", "guest_svn", got, p.min_guest_svn,
              got >= p.min_guest_svn, why="guest security version below the minimum")


def _check_vmpl(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    got = v.report.vmpl
    yield _ok("sevsnp.vmpl.not_allowed", "vmpl", got, sorted(p.allowed_vmpls),
              got in p.allowed_vmpls, why="report requested from a VMPL the policy does not accept")


def _check_debug(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    yield _flag("sevsnp.policy.debug", "policy.debug",
                v.report.policy.debug, False,
                waived="allow_debug is true" if p.allow_debug else None,
                why="debug guest: the hypervisor can read and write its memory")


def _check_migrate_ma(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    yield _flag("sevsnp.policy.migrate_ma", "policy.migrate_ma",
                v.report.policy.migrate_ma, False,
                waived="allow_migration_agent is true" if p.allow_migration_agent else None,
                why="a migration agent may be associated")


def _check_guest_smt(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    yield _flag("sevsnp.policy.smt", "policy.smt",
                v.report.policy.smt, False,
                waived="allow_smt is true" if p.allow_smt else None,
                why="the guest policy permits SMT")


def _check_single_socket(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    yield _flag("sevsnp.policy.single_socket", "policy.single_socket",
                v.report.policy.single_socket, True,
                waived="require_single_socket is false" if not p.require_single_socket else None,
                why="the guest may run on more than one socket")


def _check_abi(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    code, fld = "sevsnp.policy.abi.below_minimum", "policy.abi"
    if p.min_abi is None:
        yield _skip(code, fld, "min_abi is unset")
        return
    pol = v.report.policy
    got = (pol.abi_major, pol.abi_minor)
    yield _ok(code, fld, f"{got[0]}.{got[1]}", f"{p.min_abi[0]}.{p.min_abi[1]}",
              got >= p.min_abi, why="the guest policy's minimum firmware ABI is below the minimum")


def _check_tcb(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    r = v.report
    codes = [f"sevsnp.tcb.{c}.below_minimum" for c in TCB_COMPONENTS]
    rest = [("sevsnp.committed_tcb.below_minimum", "committed_tcb", r.committed_tcb),
            ("sevsnp.launch_tcb.below_minimum", "launch_tcb", r.launch_tcb)]
    floor_code = "sevsnp.tcb.no_floor"
    if p.min_tcb is None:
        why = "min_tcb is unset"
        yield _skip(floor_code, "min_tcb", why)
        yield from (_skip(code, f"reported_tcb.{c}", why)
                    for code, c in zip(codes, TCB_COMPONENTS, strict=True))
        yield from (_skip(code, fld, why) for code, fld, _ in rest)
        return
    if isinstance(p.min_tcb, TcbFloor):
        yield _skip(floor_code, "min_tcb", "one floor applies to every product")
        floor: TcbFloor | None = p.min_tcb
    else:
        floor = p.min_tcb.get(v.product)
        # No floor for this product must not mean "anything goes": fail closed.
        yield _ok(floor_code, "min_tcb", v.product, sorted(x.value for x in p.min_tcb),
                  floor is not None, why=f"the policy has no TCB floor for {v.product.value}")
    if floor is None:
        why = f"no TCB floor for {v.product.value} (see sevsnp.tcb.no_floor)"
        yield from (_skip(code, f"reported_tcb.{c}", why)
                    for code, c in zip(codes, TCB_COMPONENTS, strict=True))
        yield from (_skip(code, fld, why) for code, fld, _ in rest)
        return
    reported = r.reported_tcb.components()
    for code, c in zip(codes, TCB_COMPONENTS, strict=True):
        fld = f"reported_tcb.{c}"
        if c not in reported:
            yield _skip(code, fld, f"no {c} in the {r.tcb_layout.value} TCB layout")
            continue
        want = getattr(floor, c)
        yield _ok(code, fld, reported[c], want, reported[c] >= want,
                  why=f"{c} security patch level below the floor")
    for code, fld, tcb in rest:
        use: TcbFloor | None = floor
        if fld == "launch_tcb" and p.min_launch_tcb is not None:
            launch = p.min_launch_tcb
            use = launch if isinstance(launch, TcbFloor) else launch.get(v.product)
            if use is None:
                known = [] if isinstance(launch, TcbFloor) else sorted(x.value for x in launch)
                yield _ok(code, fld, v.product, known, False,
                          why=f"the policy has no launch TCB floor for {v.product.value}")
                continue
        assert use is not None
        below = use.below(tcb)
        want_c = {k: x for k, x in use.components().items() if k in tcb.components()}
        yield _ok(code, fld, tcb.components(), want_c, not below,
                  why=f"below the floor: {', '.join(below)}")


def _check_firmware(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    code, fld = "sevsnp.firmware.below_minimum", "current_version"
    if p.min_firmware is None:
        yield _skip(code, fld, "min_firmware is unset")
        return
    got = v.report.current_version
    yield _ok(code, fld, str(got), ".".join(map(str, p.min_firmware)),
              got.as_tuple() >= p.min_firmware, why="firmware version below the minimum")


def _check_provisional(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    code, fld = "sevsnp.firmware.provisional", "committed"
    if not p.require_committed_equals_current:
        yield _skip(code, fld, "require_committed_equals_current is false")
        return
    r = v.report
    got = {"tcb": r.committed_tcb.components(), "version": str(r.committed_version)}
    want = {"tcb": r.current_tcb.components(), "version": str(r.current_version)}
    yield _ok(code, fld, got, want, got == want,
              why="provisional firmware: the host can still roll back to the committed version")


def _check_platform_smt(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    yield _flag("sevsnp.platform.smt", "platform_info.smt_enabled",
                v.report.platform_info.smt_enabled, False,
                waived="require_smt_disabled is false" if not p.require_smt_disabled else None,
                why="SMT is enabled on the host")


def _check_platform_tsme(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    yield _flag("sevsnp.platform.tsme", "platform_info.tsme_enabled",
                v.report.platform_info.tsme_enabled, True,
                waived="require_tsme is false" if not p.require_tsme else None,
                why="TSME is not enabled on the host")


def _check_reported_above_current(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    code, fld = "sevsnp.reported_tcb.above_current", "reported_tcb"
    if p.allow_reported_tcb_above_current:
        yield _skip(code, fld, "allow_reported_tcb_above_current is true")
        return
    r = v.report
    cur = r.current_tcb.components()
    # The VEK is derived from REPORTED_TCB; go-sev-guest refuses a VEK TCB above CURRENT_TCB.
    above = [c for c, x in r.reported_tcb.components().items() if x > cur.get(c, x)]
    yield _ok(code, fld, r.reported_tcb.components(), {"<=": cur}, not above,
              why=f"REPORTED_TCB above CURRENT_TCB in {', '.join(above)}")


def _bit_check(code: str, fld: str, flag: str, attr: str, want: bool) -> _Check:
    """A check that one GUEST_POLICY / PLATFORM_INFO bit has the value ``want`` when the
    policy flag asks for it (``allow_*`` flags ask when false, ``require_*`` when true)."""
    asks_when = not flag.startswith("allow_")
    section, bit = attr.split(".")

    def check(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
        if getattr(p, flag) is not asks_when:
            yield _skip(code, fld, f"{flag} is {str(not asks_when).lower()}")
            return
        got = bool(getattr(getattr(v.report, section), bit))
        yield _ok(code, fld, got, want, got is want,
                  why=f"{fld} is {str(got).lower()}, the policy wants {str(want).lower()}")
    return check


def _check_revocation(v: VerifiedReport, p: SevSnpPolicy) -> Iterable[Finding]:
    code, fld = "sevsnp.revocation.unchecked", "crl"
    if v.crl_checked:
        yield _ok(code, fld, "checked", "checked", True)
    elif p.allow_unchecked_revocation:
        yield _skip(code, fld, "no CRL; allow_unchecked_revocation is true")
    else:
        yield _ok(code, fld, "not checked", "checked", False,
                  why="the VEK chain was not checked against the ARK's CRL: pass the CRL"
                      " (--crl FILE, --fetch --require-crl) or set"
                      " allow_unchecked_revocation")


# The order here is the documented order of findings (module docstring table).
_CHECKS: tuple[_Check, ...] = (
    _check_report_version,
    _check_product,
    _check_signing_key,
    _bytes_check("sevsnp.chip_id.mismatch", "chip_id", "chip_id", "chip_ids",
                 "chip not in the allow-list"),
    _bytes_check("sevsnp.measurement.mismatch", "measurement", "measurement", "measurements",
                 "launch digest not in the allow-list"),
    _bytes_check("sevsnp.host_data.mismatch", "host_data", "host_data", "host_data",
                 "host data differs"),
    _bytes_check("sevsnp.id_key.mismatch", "id_key_digest", "id_key_digest", "id_key_digests",
                 "ID key not in the allow-list"),
    _check_author_key,
    _bytes_check("sevsnp.family_id.mismatch", "family_id", "family_id", "family_id",
                 "family ID differs"),
    _bytes_check("sevsnp.image_id.mismatch", "image_id", "image_id", "image_id",
                 "image ID differs"),
    _check_guest_svn,
    _bytes_check("sevsnp.report_data.mismatch", "report_data", "report_data", "report_data",
                 "report data differs (stale or replayed nonce?)"),
    _check_vmpl,
    _check_debug,
    _check_migrate_ma,
    _check_guest_smt,
    _check_single_socket,
    _check_abi,
    _check_tcb,
    _check_firmware,
    _check_provisional,
    _check_platform_smt,
    _check_platform_tsme,
    _check_reported_above_current,
    _bit_check("sevsnp.policy.cxl_allow", "policy.cxl_allow", "allow_cxl",
               "policy.cxl_allow", False),
    _bit_check("sevsnp.policy.mem_aes_256_xts", "policy.mem_aes_256_xts",
               "require_mem_aes_256_xts", "policy.mem_aes_256_xts", True),
    _bit_check("sevsnp.policy.rapl_dis", "policy.rapl_dis", "require_rapl_dis",
               "policy.rapl_dis", True),
    _bit_check("sevsnp.policy.ciphertext_hiding", "policy.ciphertext_hiding",
               "require_ciphertext_hiding", "policy.ciphertext_hiding", True),
    _bit_check("sevsnp.policy.page_swap_disable", "policy.page_swap_disable",
               "require_page_swap_disable", "policy.page_swap_disable", True),
    _bit_check("sevsnp.platform.ecc", "platform_info.ecc_enabled", "require_ecc",
               "platform_info.ecc_enabled", True),
    _bit_check("sevsnp.platform.rapl_disabled", "platform_info.rapl_disabled",
               "require_rapl_disabled", "platform_info.rapl_disabled", True),
    _bit_check("sevsnp.platform.ciphertext_hiding", "platform_info.ciphertext_hiding_enabled",
               "require_platform_ciphertext_hiding",
               "platform_info.ciphertext_hiding_enabled", True),
    _bit_check("sevsnp.platform.alias_check_complete", "platform_info.alias_check_complete",
               "require_alias_check_complete", "platform_info.alias_check_complete", True),
    _check_revocation,
)


# -- loading and saving ----------------------------------------------------------------------

_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SevSnpPolicy))
_PRODUCTS: dict[str, Product] = {p.value: p for p in Product}
_SIGNING_KEYS: dict[str, SigningKey] = {"VCEK": SigningKey.VCEK, "VLEK": SigningKey.VLEK}


def load_policy(path: str | Path) -> SevSnpPolicy:
    """Load a policy from a TOML or JSON file (by extension, else by content).

    Raises :class:`ConfigError` naming the file and the key path for unknown keys, wrong
    types and wrong lengths.
    """
    data = _load.load_mapping(path)
    try:
        return policy_from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def policy_from_mapping(data: Mapping[str, Any]) -> SevSnpPolicy:
    """Build a policy from a parsed TOML/JSON mapping.

    Keys are the :class:`SevSnpPolicy` field names. Bytes are hex strings (an optional ``0x``
    prefix is accepted); sets are lists; products and signing keys are names (``"Milan"``,
    ``"VCEK"``); versions are lists or dotted strings; ``min_tcb`` is a table of component
    minimums or a table of such tables keyed by product. A JSON ``null`` sets an optional field
    to ``None`` (not checked). Missing keys take the secure defaults.
    """
    table = _load.read_table(data, "<policy>")
    _load.check_keys(table, _FIELDS)
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if value is None and key in _OPTIONAL:
            kwargs[key] = None
        else:
            kwargs[key] = _READERS[key](value, key)
    return SevSnpPolicy(**kwargs)


def policy_to_mapping(policy: SevSnpPolicy) -> dict[str, Any]:
    """The JSON-ready mapping of ``policy``; ``policy_from_mapping`` inverts it exactly.

    Every field is present (``None`` as ``null``), sets are sorted lists so the output is
    deterministic.
    """
    out: dict[str, Any] = {}
    for name in _FIELDS:
        out[name] = _to_jsonable(getattr(policy, name))
    return out


def _to_jsonable(value: object) -> Any:
    # Enums first: SigningKey is an int and Product a str, but files name them.
    if isinstance(value, SigningKey):
        return value.name
    if isinstance(value, Product):
        return value.value
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, TcbFloor):
        return value.components()
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, frozenset):
        items = [_to_jsonable(v) for v in value]
        return sorted(items, key=lambda x: (str(type(x)), x))
    if isinstance(value, Mapping):
        return {_to_jsonable(k): _to_jsonable(v) for k, v in
                sorted(value.items(), key=lambda kv: str(kv[0]))}
    raise TypeError(f"cannot serialise {type(value).__name__}")  # pragma: no cover


def _read_policy_id(value: object, path: str) -> str:
    text = _load.read_str(value, path)
    if not text:
        raise _load.config_error(path, value, "a non-empty string")
    return text


def _hex_reader(length: int) -> Callable[[object, str], bytes]:
    return lambda value, path: _load.read_hex(value, path, length)


def _hex_set_reader(length: int) -> Callable[[object, str], frozenset[bytes]]:
    return lambda value, path: _load.read_hex_set(value, path, length)


def _int_reader(lo: int, hi: int) -> Callable[[object, str], int]:
    return lambda value, path: _load.read_int(value, path, lo, hi)


def _read_vmpls(value: object, path: str) -> frozenset[int]:
    items = _load.read_list(value, path, "a non-empty list of VMPLs 0..3")
    return frozenset(_load.read_int(v, f"{path}[{i}]", 0, 3) for i, v in enumerate(items))


def _name_set_reader(names: Mapping[str, Any]) -> Callable[[object, str], frozenset[Any]]:
    want = f"one of {', '.join(names)}"

    def read(value: object, path: str) -> frozenset[Any]:
        items = _load.read_list(value, path, f"a non-empty list of names ({want})")
        out = set()
        for i, item in enumerate(items):
            if not isinstance(item, str) or item not in names:
                raise _load.config_error(f"{path}[{i}]", item, want)
            out.add(names[item])
        return frozenset(out)
    return read


def _read_abi(value: object, path: str) -> tuple[int, int]:
    major, minor = _load.read_version(value, path, 2)
    return (major, minor)


def _read_firmware(value: object, path: str) -> tuple[int, int, int]:
    major, minor, build = _load.read_version(value, path, 3)
    return (major, minor, build)


def _read_floor(value: object, path: str) -> TcbFloor:
    table = _load.read_table(value, path)
    _load.check_keys(table, TCB_COMPONENTS, prefix=f"{path}.")
    return TcbFloor(**{k: _load.read_int(v, f"{path}.{k}", 0, 0xFF) for k, v in table.items()})


def _read_min_tcb(value: object, path: str) -> Mapping[Product, TcbFloor] | TcbFloor:
    table = _load.read_table(value, path)
    per_product = [k for k in table if k in _PRODUCTS]
    if not per_product:
        # A flat table: one floor for every product.
        _load.check_keys(table, (*TCB_COMPONENTS, *_PRODUCTS), prefix=f"{path}.")
        return _read_floor(table, path)
    for key in table:
        if key in TCB_COMPONENTS:
            raise ConfigError(f"{path}.{key}: a component minimum cannot sit beside per-product"
                              f" floors ({', '.join(per_product)}); put it under"
                              f" [{path}.<product>]")
    _load.check_keys(table, _PRODUCTS, prefix=f"{path}.")
    return {_PRODUCTS[k]: _read_floor(v, f"{path}.{k}") for k, v in table.items()}


def _read_claims(value: object, path: str) -> frozenset[str]:
    if isinstance(value, list) and not value:
        return frozenset()
    items = _load.read_list(value, path, "a list of AR4SI claim names")
    return frozenset(_load.read_str(v, f"{path}[{i}]") for i, v in enumerate(items))


_READERS: dict[str, Callable[[object, str], Any]] = {
    "policy_id": _read_policy_id,
    "measurements": _hex_set_reader(_MEASUREMENT_LEN),
    "report_data": _hex_reader(_REPORT_DATA_LEN),
    "host_data": _hex_reader(_HOST_DATA_LEN),
    "id_key_digests": _hex_set_reader(_KEY_DIGEST_LEN),
    "author_key_digests": _hex_set_reader(_KEY_DIGEST_LEN),
    "family_id": _hex_reader(_ID_LEN),
    "image_id": _hex_reader(_ID_LEN),
    "min_guest_svn": _int_reader(0, _U32_MAX),
    "chip_ids": _hex_set_reader(_CHIP_ID_LEN),
    "allowed_products": _name_set_reader(_PRODUCTS),
    "allowed_signing_keys": _name_set_reader(_SIGNING_KEYS),
    "min_report_version": _int_reader(0, _U32_MAX),
    "allowed_vmpls": _read_vmpls,
    "allow_debug": _load.read_bool,
    "allow_migration_agent": _load.read_bool,
    "allow_smt": _load.read_bool,
    "require_single_socket": _load.read_bool,
    "min_abi": _read_abi,
    "min_tcb": _read_min_tcb,
    "min_launch_tcb": _read_min_tcb,
    "min_firmware": _read_firmware,
    **dict.fromkeys(("require_committed_equals_current", "allow_reported_tcb_above_current",
                     "require_smt_disabled", "require_tsme", "require_ecc",
                     "require_rapl_disabled", "require_platform_ciphertext_hiding",
                     "require_alias_check_complete", "allow_cxl", "require_mem_aes_256_xts",
                     "require_rapl_dis", "require_ciphertext_hiding",
                     "require_page_swap_disable", "allow_unchecked_revocation"),
                    _load.read_bool),
    "required_claims": _read_claims,
}

# Fields whose type admits None ("not checked"); JSON null is accepted only for these.
_OPTIONAL: frozenset[str] = frozenset({
    "measurements", "report_data", "host_data", "id_key_digests", "author_key_digests",
    "family_id", "image_id", "chip_ids", "allowed_products", "min_abi", "min_tcb",
    "min_launch_tcb", "min_firmware",
})
