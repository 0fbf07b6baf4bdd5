"""attest.verify, the one front door, on Intel TDX and SGX quotes from a fake Intel (no ../shared).

The fake signs for real (PCK chain, QE report, attestation key, TCB Info, QE Identity, CRLs);
only its root differs, so every test passes it as the ``intel`` anchor explicitly.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from veritee import attest, schemes
from veritee.errors import (
    CollateralError,
    ConfigError,
    FormatError,
    PolicyRejected,
    VerificationError,
)
from veritee.policy import Appraisal
from veritee.policy.intel import SgxPolicy, TdxPolicy
from veritee.results import trust_vector
from veritee.testing.intel import FakeIntel
from veritee.trust.intel import IntelCollateral


@pytest.fixture(scope="module")
def intel() -> FakeIntel:
    return FakeIntel.generate()


def _coll(intel: FakeIntel, tee: str = "TDX") -> schemes.Collateral:
    return schemes.Collateral({"intel": intel.collateral(tee)})


def _anchors(intel: FakeIntel) -> schemes.Anchors:
    return schemes.Anchors({"intel": intel.roots})


def _one(result: Appraisal | attest.CompositeAppraisal) -> Appraisal:
    assert isinstance(result, Appraisal)
    return result


MRTD = bytes(range(48))


def test_registry_recognises_tdx_and_sgx_in_every_encoding(intel: FakeIntel) -> None:
    td, sgx = intel.td_quote(), intel.sgx_quote()
    assert schemes.recognise(td).name == "tdx"
    assert schemes.recognise(sgx).name == "sgx"
    assert schemes.recognise(base64.b64encode(td)).name == "tdx"  # base64 text of a quote
    assert schemes.recognise(td.hex().encode()).name == "tdx"
    wrapped = json.dumps({"tdx": {"quote": base64.b64encode(td).decode()}}).encode()
    assert schemes.recognise(wrapped).name == "tdx"
    from veritee.formats.tsm import TsmReport

    for tsm in (TsmReport(provider="tdx_guest", outblob=td).to_json(),
                TsmReport(provider="tdx_guest\n", outblob=td).to_cbor()):  # configfs-tsm
        assert schemes.recognise(tsm).name == "tdx"
        assert schemes.get("tdx").parse(tsm).to_bytes() == td
    assert {"tdx", "sgx"} <= set(schemes.names())
    assert attest.is_intel_quote(td) and not attest.is_intel_quote(bytes(1184))


def test_bound_td_quote_is_accepted_with_affirming_claims(intel: FakeIntel) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    challenge = attest.Challenge.for_key(b"n" * 32, key)
    bound = schemes.expected_binding(challenge.nonce, challenge.key_spki, 64)
    quote = intel.td_quote(mr_td=MRTD, report_data=bound)
    appraisal = _one(attest.verify(quote, policy=TdxPolicy(mrtd={MRTD}),
                                   collateral=_coll(intel), anchors=_anchors(intel),
                                   now=intel.now, challenge=challenge))
    assert appraisal.accepted and appraisal.tee == "tdx"
    claims = appraisal.claims
    assert set(schemes.COMMON_CLAIMS) <= set(claims)
    assert claims["measurement"] == MRTD.hex() and claims["debug"] is False
    assert claims["tcb_status"] == "UpToDate" and claims["binding"] == bound.hex()
    assert claims["revocation_checked"] is True
    assert appraisal.vector == {"hardware": 2, "instance-identity": 2, "executables": 3,
                                "configuration": 2, "runtime-opaque": 2}


def test_td_quote_bound_to_another_key_is_rejected(intel: FakeIntel) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    bound = schemes.expected_binding(b"n" * 32, attest.Challenge.for_key(b"", key).key_spki, 64)
    quote = intel.td_quote(report_data=bound)
    with pytest.raises(PolicyRejected) as info:
        attest.verify(quote, policy=TdxPolicy(), collateral=_coll(intel),
                      anchors=_anchors(intel), now=intel.now,
                      challenge=attest.Challenge.for_key(b"n" * 32, other))
    assert info.value.appraisal.codes() == ["tdx.binding.mismatch"]
    assert info.value.appraisal.vector is not None
    assert info.value.appraisal.vector["instance-identity"] == 99


def test_sgx_quote_through_the_front_door(intel: FakeIntel) -> None:
    enclave = bytes(range(32))
    quote = intel.sgx_quote(mr_enclave=enclave, report_data=b"\x07" * 64)
    appraisal = _one(attest.verify(quote, policy=SgxPolicy(mrenclave={enclave}),
                                   collateral=_coll(intel, "SGX"), anchors=_anchors(intel),
                                   now=intel.now, expected_binding=b"\x07" * 64))
    assert appraisal.accepted and appraisal.claims["measurement"] == enclave.hex()
    assert appraisal.vector is not None and appraisal.vector["executables"] == 3
    with pytest.raises(PolicyRejected) as info:
        attest.verify(quote, policy=SgxPolicy(), collateral=_coll(intel, "SGX"),
                      anchors=_anchors(intel), now=intel.now, expected_binding=bytes(64))
    assert "sgx.binding.mismatch" in info.value.appraisal.codes()


def test_production_anchor_refuses_the_fake_root(intel: FakeIntel) -> None:
    with pytest.raises(VerificationError) as info:
        attest.verify(intel.td_quote(), policy=TdxPolicy(), collateral=_coll(intel),
                      now=intel.now)
    assert info.value.code == "intel.chain.root_untrusted"


def test_another_root_is_refused_and_a_pin_is_accepted(intel: FakeIntel) -> None:
    other = FakeIntel.generate(intel.now)
    quote = intel.td_quote()
    with pytest.raises(VerificationError) as info:
        attest.verify(quote, policy=TdxPolicy(), collateral=_coll(intel),
                      anchors=schemes.Anchors({"intel": other.roots}), now=intel.now)
    assert info.value.code == "intel.chain.root_untrusted"
    pin = intel.roots[0].fingerprint(hashes.SHA256()).hex()
    for anchor in ([pin], pin, intel.roots[0]):  # a list, or one pin / certificate alone
        assert _one(attest.verify(quote, policy=TdxPolicy(), collateral=_coll(intel),
                                  anchors=schemes.Anchors({"intel": anchor}),
                                  now=intel.now)).accepted


def test_every_tampered_byte_of_the_signed_part_is_refused(intel: FakeIntel) -> None:
    quote = intel.td_quote()
    verifier = attest.Verifier(anchors=_anchors(intel), collateral=_coll(intel))
    verifier.verify(quote, policy=TdxPolicy(), now=intel.now)  # the untouched quote passes
    signed = 48 + 584  # header || TD 1.0 body (TDX QL API "Quote Format v4")
    for offset in range(0, signed, 29):
        bad = bytearray(quote)
        bad[offset] ^= 0x01
        with pytest.raises((VerificationError, FormatError)):
            verifier.verify(bytes(bad), policy=TdxPolicy(), now=intel.now)


def test_wrong_policy_type_is_a_config_error(intel: FakeIntel) -> None:
    with pytest.raises(ConfigError, match="TdxPolicy"):
        attest.verify(intel.td_quote(), policy=SgxPolicy(), collateral=_coll(intel),
                      anchors=_anchors(intel), now=intel.now)
    with pytest.raises(ConfigError, match="collateral"):
        attest.verify(intel.td_quote(), policy=TdxPolicy(),
                      collateral=schemes.Collateral({"intel": object()}),
                      anchors=_anchors(intel), now=intel.now)


def test_debug_td_is_contraindicated(intel: FakeIntel) -> None:
    quote = intel.td_quote(td_attributes=((1 << 28) | 1).to_bytes(8, "little"))
    with pytest.raises(PolicyRejected) as info:
        attest.verify(quote, policy=TdxPolicy(), collateral=_coll(intel),
                      anchors=_anchors(intel), now=intel.now)
    vector = info.value.appraisal.vector
    assert vector is not None
    assert vector["configuration"] == 96 and vector["runtime-opaque"] == 96
    # The compatibility function returns the scheme's vector unchanged.
    assert trust_vector(info.value.appraisal) == {**vector}


def test_out_of_date_platform_is_a_hardware_warning_when_accepted() -> None:
    old = FakeIntel.generate(release=2)
    policy = TdxPolicy(allowed_tcb_statuses=frozenset({"UpToDate", "OutOfDate"}))
    appraisal = _one(attest.verify(old.td_quote(), policy=policy, collateral=_coll(old),
                                   anchors=_anchors(old), now=old.now))
    assert appraisal.claims["tcb_status"] == "OutOfDate"
    assert appraisal.vector is not None and appraisal.vector["hardware"] == 32


def test_revocation_can_be_required(intel: FakeIntel) -> None:
    no_crls = dataclasses.replace(intel.collateral("TDX"), pck_crl=None, root_ca_crl=None)
    verifier = attest.Verifier(anchors=_anchors(intel), require_revocation=True,
                               collateral=schemes.Collateral({"intel": no_crls}))
    with pytest.raises(CollateralError, match="missing: root_ca_crl, pck_crl"):
        verifier.verify(intel.td_quote(), policy=TdxPolicy(), now=intel.now)


def test_nonzero_trailer_needs_an_explicit_option(intel: FakeIntel) -> None:
    quote = intel.td_quote() + b"\x01\x02\x03"
    kwargs = dict(policy=TdxPolicy(), collateral=_coll(intel), anchors=_anchors(intel),
                  now=intel.now)
    with pytest.raises(FormatError) as info:
        attest.verify(quote, **kwargs)  # type: ignore[arg-type]
    assert info.value.field == "trailer"
    lenient = schemes.get("tdx").with_options(  # type: ignore[attr-defined]
        allow_nonzero_trailer=True)
    assert _one(attest.verify(attest.EvidencePart(quote, scheme=lenient),
                              **kwargs)).accepted  # type: ignore[arg-type]


def test_pretty_printed_tcb_info_is_refused_with_the_reason(intel: FakeIntel) -> None:
    col = intel.collateral("TDX")
    assert col.tcb_info is not None
    pretty = json.dumps(json.loads(col.tcb_info), indent=2).encode()
    with pytest.raises(VerificationError) as info:
        attest.verify(intel.td_quote(), policy=TdxPolicy(), anchors=_anchors(intel),
                      collateral=schemes.Collateral(
                          {"intel": dataclasses.replace(col, tcb_info=pretty)}),
                      now=intel.now)
    assert info.value.code == "intel.tcb_info.signature"
    assert "pretty-printed" in str(info.value)
    # A minified but altered TCB Info fails without that explanation.
    altered = col.tcb_info.replace(b'"UpToDate"', b'"OutOfDate"', 1)
    with pytest.raises(VerificationError) as info:
        attest.verify(intel.td_quote(), policy=TdxPolicy(), anchors=_anchors(intel),
                      collateral=schemes.Collateral(
                          {"intel": dataclasses.replace(col, tcb_info=altered)}),
                      now=intel.now)
    assert "pretty-printed" not in str(info.value)


def test_policy_mapping_round_trips_and_names_bad_keys() -> None:
    tdx = schemes.get("tdx")
    policy = TdxPolicy(policy_id="p", mrtd={MRTD}, allowed_tcb_statuses={"UpToDate",
                                                                         "OutOfDate"},
                       xfam_mask=(1 << 63) | 1, xfam_value=1, denied_advisories={"INTEL-SA-1"})
    mapping = tdx.policy_to_mapping(policy)
    assert json.loads(json.dumps(mapping)) == mapping
    assert tdx.policy_from_mapping(mapping) == policy
    assert tdx.policy_from_mapping({"xfam_mask": "0x8000000000000001", "xfam_value": 1}
                                   ).xfam_mask == (1 << 63) | 1
    with pytest.raises(ConfigError, match="mrtdd: unknown key"):
        tdx.policy_from_mapping({"mrtdd": [MRTD.hex()]})
    with pytest.raises(ConfigError, match=r"mrtd\[0\]"):
        tdx.policy_from_mapping({"mrtd": ["00"]})
    with pytest.raises(ConfigError, match=r"allowed_tcb_statuses\[0\]"):
        tdx.policy_from_mapping({"allowed_tcb_statuses": ["Fine"]})
    with pytest.raises(ConfigError, match="allow_debug"):
        tdx.policy_from_mapping({"allow_debug": 1})
    sgx = schemes.get("sgx")
    s = sgx.policy_from_mapping({"mrsigner": ["ab" * 32], "min_isv_svn": 2, "isv_prod_id": None})
    assert s == SgxPolicy(mrsigner={bytes([0xAB]) * 32}, min_isv_svn=2)
    assert sgx.policy_from_mapping(sgx.policy_to_mapping(s)) == s
    with pytest.raises(ConfigError, match="isv_svn: unknown key"):
        sgx.policy_from_mapping({"isv_svn": 1})


def test_collateral_from_files_directories_and_a_collateral_json(intel: FakeIntel,
                                                                 tmp_path: Path) -> None:
    d = tmp_path / "col"
    d.mkdir()
    intel.vendor.write_collateral(d, "TDX", intel.now)
    scheme = schemes.get("tdx")
    from_dir = scheme.load_collateral([d])
    assert isinstance(from_dir, IntelCollateral)
    assert from_dir.tcb_info is not None and from_dir.pck_crl is not None
    # The same files named one by one, split over two places.
    files = sorted(d.iterdir())
    assert scheme.load_collateral(files) == from_dir
    # A dcap-qvl collateral.json on its own (a file, not a directory).
    col = intel.collateral("TDX")
    assert col.tcb_info is not None and col.qe_identity is not None
    assert col.tcb_info_signature is not None and col.qe_identity_signature is not None
    assert col.pck_crl is not None and col.root_ca_crl is not None
    from cryptography.hazmat.primitives.serialization import Encoding

    chain = "".join(c.public_bytes(Encoding.PEM).decode() for c in col.tcb_info_issuer_chain)
    doc = {"tcb_info": col.tcb_info.decode(), "tcb_info_signature": col.tcb_info_signature.hex(),
           "tcb_info_issuer_chain": chain, "qe_identity": col.qe_identity.decode(),
           "qe_identity_signature": col.qe_identity_signature.hex(),
           "qe_identity_issuer_chain": chain,
           "pck_crl": col.pck_crl.public_bytes(Encoding.DER).hex(),
           "root_ca_crl": col.root_ca_crl.public_bytes(Encoding.DER).hex()}
    (tmp_path / "collateral.json").write_text(json.dumps(doc))
    loaded = scheme.load_collateral([tmp_path / "collateral.json"])
    assert loaded is not None
    appraisal = _one(attest.verify(intel.td_quote(), policy=TdxPolicy(),
                                   collateral=schemes.Collateral({"intel": loaded}),
                                   anchors=_anchors(intel), now=intel.now))
    assert appraisal.accepted
    empty = tmp_path / "empty"
    empty.mkdir()
    assert scheme.load_collateral([empty]) is None


def test_old_wrappers_are_the_scheme(intel: FakeIntel) -> None:
    appraisal = attest.verify_intel_evidence(intel.td_quote(), collateral=intel.collateral("TDX"),
                                             now=intel.now, trusted_roots=intel.roots)
    assert appraisal.vector is not None and appraisal.claims["tee"] == "tdx"
    with pytest.raises(PolicyRejected) as info:  # a TDX policy on an SGX quote
        attest.verify_intel_evidence(intel.sgx_quote(), collateral=intel.collateral("SGX"),
                                     policy=TdxPolicy(), now=intel.now,
                                     trusted_roots=intel.roots)
    assert info.value.appraisal.codes() == ["tdx.tee.type"]
    from datetime import datetime

    with pytest.raises(ConfigError, match="naive"):
        attest.verify_intel_evidence(intel.td_quote(), now=datetime(2025, 1, 1),
                                     trusted_roots=intel.roots)


def test_der_collateral_ending_in_a_whitespace_byte_loads() -> None:
    """DER is binary: a CRL or certificate whose last signature byte is 0x20/0x0a/... (about
    one in 40) was cut short by a .strip() and refused as malformed (seen as a flaky test)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    from veritee.collateral.intel import load_crl
    from veritee.crypto._x509 import load_certificate_chain

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime(2025, 1, 1, tzinfo=UTC)
    crl_der = cert_der = b""

    def ends_in(der: bytes, values: bytes) -> bool:
        return bool(der) and der[-1] in values

    for _ in range(2000):
        if not ends_in(crl_der, b" \t\n\r\x0b\x0c"):
            crl_der = (x509.CertificateRevocationListBuilder().issuer_name(name)
                       .last_update(now).next_update(now + timedelta(days=1))
                       .sign(key, hashes.SHA256()).public_bytes(Encoding.DER))
        if not ends_in(cert_der, b" \t\n\r\x0b\x0c\x00"):
            cert_der = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                        .public_key(key.public_key()).serial_number(1)
                        .not_valid_before(now).not_valid_after(now + timedelta(days=1))
                        .sign(key, hashes.SHA256()).public_bytes(Encoding.DER))
        if ends_in(crl_der, b" \t\n\r\x0b\x0c") and ends_in(cert_der, b" \t\n\r\x0b\x0c\x00"):
            break
    else:  # pragma: no cover - about 1 in 10**20
        pytest.skip("no signature ending in a whitespace byte was drawn")
    assert load_crl(crl_der).public_bytes(Encoding.DER) == crl_der
    assert load_crl(crl_der.hex().encode()).public_bytes(Encoding.DER) == crl_der
    (cert,) = load_certificate_chain(cert_der + bytes(16), structure="chain")  # NUL padding
    assert cert.public_bytes(Encoding.DER) == cert_der
    assert len(load_certificate_chain(cert_der * 2, structure="chain")) == 2


def test_an_appraisal_made_by_the_policy_module_affirms_nothing(intel: FakeIntel) -> None:
    """results.trust_vector no longer guesses a scheme from ``appraisal.tee`` (issue 11): an
    appraisal the policy module made directly (no ``vector``) gets UNMAPPED_VECTOR, every
    claim 0, so its EAR is "none" even though every check passed (the scheme's own mapping,
    via the front door, affirms it), and "contraindicated" when rejected."""
    from veritee.policy.intel import appraise
    from veritee.results import UNMAPPED_VECTOR, ear_claims
    from veritee.trust.intel import verify_quote

    v = verify_quote(intel.td_quote(), intel.collateral("TDX"), now=intel.now,
                     trusted_roots=intel.roots)
    a = appraise(v, TdxPolicy(mrtd={bytes(48)}))
    assert a.vector is None and a.accepted
    assert trust_vector(a) == dict(UNMAPPED_VECTOR)
    assert set(trust_vector(a).values()) == {0}
    assert ear_claims(a, issuer="i", now=1.0, ttl=60)["submods"]["tdx"]["ear.status"] == "none"
    mapped = getattr(schemes.get("tdx"), "trust_vector")(a)  # noqa: B009
    assert mapped == {"hardware": 2, "instance-identity": 0, "executables": 3,
                      "configuration": 2, "runtime-opaque": 2}
    rejected = appraise(v, TdxPolicy(mrtd={b"\x01" * 48}))
    assert not rejected.accepted
    claims = ear_claims(rejected, issuer="i", now=1.0, ttl=60)
    assert claims["submods"]["tdx"]["ear.status"] == "contraindicated"
