"""KDF wrappers against the NIST ACVP vectors: KDF-1.0 (SP 800-108 KBKDF) and KDA-HKDF.

KDF-1.0 (read from internalProjection.json, the only file with ``fixedData``): every
counter-mode test that ``veritee.crypto.kdf`` supports runs, one loop per MAC with a collected
failure list. Documented skips, asserted exactly below:

* kdfMode ``feedback`` and ``double pipeline iteration`` (all their groups): ``cryptography``
  implements SP 800-108 counter mode only (``kbkdf.Mode`` has ``CounterMode`` alone).
* macMode ``CMAC-TDES`` (its counter-mode groups): TDES is not supported (SP 800-131A Rev.2).
* ``middle fixed data`` tests whose ``breakLocation`` is not a multiple of 8: ``cryptography``
  takes the break location in bytes.

KDA-HKDF-Sp800-56Cr1/Cr2: every group and test, AFT and VAL, single and multi-expansion.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from veritee.crypto.kdf import (
    CounterLocation,
    hkdf,
    hkdf_expand,
    hkdf_extract,
    kbkdf_cmac,
    kbkdf_hmac,
)

from _vectors import load_acvp, unhex

KDF = "KDF-1.0"
UNSUPPORTED_KDF_MODES = {"feedback", "double pipeline iteration"}
UNSUPPORTED_MACS = {"CMAC-TDES"}
SUPPORTED_MACS = [
    "CMAC-AES128",
    "CMAC-AES192",
    "CMAC-AES256",
    "HMAC-SHA-1",
    "HMAC-SHA2-224",
    "HMAC-SHA2-256",
    "HMAC-SHA2-384",
    "HMAC-SHA2-512",
    "HMAC-SHA2-512/224",
    "HMAC-SHA2-512/256",
    "HMAC-SHA3-224",
    "HMAC-SHA3-256",
    "HMAC-SHA3-384",
    "HMAC-SHA3-512",
]
# Counts in the pinned vector set (ACVP-Server v1.1.0.43), see the vectors' README.
EXPECTED_SKIPPED_GROUPS = {"feedback": 2992, "double pipeline iteration": 1501, "CMAC-TDES": 96}
EXPECTED_COUNTER_TESTS = 2770
#: Counter-mode tests run, and middle-fixed-data tests skipped for an unaligned break.
EXPECTED_RAN = 1828
EXPECTED_UNALIGNED = 750

LOCATIONS = {
    "before fixed data": CounterLocation.BEFORE_FIXED,
    "after fixed data": CounterLocation.AFTER_FIXED,
    "middle fixed data": CounterLocation.MIDDLE_FIXED,
}


def _unaligned_break(group: dict[str, Any], case: dict[str, Any]) -> bool:
    return group["counterLocation"] == "middle fixed data" and case["breakLocation"] % 8 != 0


def _kbkdf(group: dict[str, Any], case: dict[str, Any]) -> bytes:
    bits = group["keyOutLength"]
    nbytes = -(-bits // 8)
    location = LOCATIONS[group["counterLocation"]]
    brk = case["breakLocation"] // 8 if location is CounterLocation.MIDDLE_FIXED else None
    kwargs: dict[str, Any] = {
        "length": nbytes,
        "fixed_data": unhex(case["fixedData"]),
        "counter_bytes": group["counterLength"] // 8,
        "location": location,
        "break_location": brk,
    }
    mac = group["macMode"]
    if mac.startswith("CMAC-AES"):
        out = kbkdf_cmac(unhex(case["keyIn"]), **kwargs)
    else:
        out = kbkdf_hmac(unhex(case["keyIn"]), hash_name=mac.removeprefix("HMAC-"), **kwargs)
    if bits % 8:  # keep the leftmost L bits, pad bits zero (ACVP keyOut convention)
        out = out[:-1] + bytes([out[-1] & (0xFF << (8 - bits % 8)) & 0xFF])
    return out


@pytest.mark.parametrize("mac", SUPPORTED_MACS)
def test_acvp_kbkdf_counter_mode(mac: str) -> None:
    data = load_acvp(KDF)
    ran, failures = 0, []
    for group in data["testGroups"]:
        if group["kdfMode"] != "counter" or group["macMode"] != mac:
            continue
        assert group["testType"] == "AFT"
        for case in group["tests"]:
            if _unaligned_break(group, case):
                continue
            ran += 1
            if _kbkdf(group, case) != unhex(case["keyOut"]):
                failures.append((group["tgId"], case["tcId"]))
    assert ran > 0
    assert not failures, f"{mac}: {len(failures)} of {ran} failed: {failures[:10]}"


def test_acvp_kbkdf_skipped_set_is_exactly_the_documented_one() -> None:
    data = load_acvp(KDF)
    groups = data["testGroups"]
    skipped_groups: Counter[str] = Counter()
    ran_tests = skipped_unaligned = 0
    for g in groups:
        if g["kdfMode"] in UNSUPPORTED_KDF_MODES:
            skipped_groups[g["kdfMode"]] += 1
        elif g["macMode"] in UNSUPPORTED_MACS:
            skipped_groups[g["macMode"]] += 1
        else:
            assert g["kdfMode"] == "counter"
            assert g["macMode"] in SUPPORTED_MACS
            assert g["counterLocation"] in LOCATIONS
            for case in g["tests"]:
                if _unaligned_break(g, case):
                    skipped_unaligned += 1
                else:
                    ran_tests += 1
    assert dict(skipped_groups) == EXPECTED_SKIPPED_GROUPS
    counter_tests = sum(len(g["tests"]) for g in groups if g["kdfMode"] == "counter")
    assert counter_tests == EXPECTED_COUNTER_TESTS
    tdes_tests = 2 * EXPECTED_SKIPPED_GROUPS["CMAC-TDES"]
    assert ran_tests + skipped_unaligned + tdes_tests == EXPECTED_COUNTER_TESTS
    # Pinned so that a change of vectors or of the skip rule is noticed.
    assert (ran_tests, skipped_unaligned) == (EXPECTED_RAN, EXPECTED_UNALIGNED)


# --------------------------------------------------------------------------- KDA HKDF


def _fixed_info(case: dict[str, Any]) -> bytes:
    """uPartyInfo || vPartyInfo || [t] || l(32-bit bits), 'concatenation' encoding."""
    info = b""
    for party in ("fixedInfoPartyU", "fixedInfoPartyV"):
        p = case[party]
        info += unhex(p["partyId"]) + unhex(p.get("ephemeralData", ""))
    params = case["kdfParameter"]
    if "t" in params:
        info += unhex(params["t"])
    return info + int(params["l"]).to_bytes(4, "big")


def _hkdf_case(case: dict[str, Any]) -> bool:
    """True when the computed DKM(s) equal the vector's (AFT: must be; VAL: as testPassed)."""
    if "kdfMultiExpansionParameter" in case:
        mp = case["kdfMultiExpansionParameter"]
        alg = mp["hmacAlg"]
        prk = hkdf_extract(unhex(mp["z"]), salt=unhex(mp["salt"]), hash_name=alg)
        dkms = [
            hkdf_expand(prk, length=it["l"] // 8, info=unhex(it["fixedInfo"]), hash_name=alg)
            for it in mp["iterationParameters"]
        ]
        return dkms == [unhex(d) for d in case["dkms"]]
    params = case["kdfParameter"]
    dkm = hkdf(
        unhex(params["z"]),
        length=params["l"] // 8,
        salt=unhex(params["salt"]),
        info=_fixed_info(case),
        hash_name=params["hmacAlg"],
    )
    return dkm == unhex(case["dkm"])


@pytest.mark.parametrize("folder", ["KDA-HKDF-Sp800-56Cr1", "KDA-HKDF-Sp800-56Cr2"])
def test_acvp_kda_hkdf_every_group(folder: str) -> None:
    data = load_acvp(folder)
    failures, counts = [], Counter[str]()
    for group in data["testGroups"]:
        for case in group["tests"]:
            match = _hkdf_case(case)
            # AFT: the DKM must match; VAL: it matches exactly when testPassed is true.
            expected = group["testType"] == "AFT" or bool(case["testPassed"])
            counts[group["testType"]] += 1
            if match != expected:
                failures.append((group["tgId"], case["tcId"]))
    assert not failures, f"{folder}: {len(failures)} failed: {failures[:10]}"
    total = {"KDA-HKDF-Sp800-56Cr1": 1000, "KDA-HKDF-Sp800-56Cr2": 2000}[folder]
    assert counts["AFT"] + counts["VAL"] == total
