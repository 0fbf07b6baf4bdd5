"""``veritee show``, ``verify`` and ``appraise``: one path for every registered scheme.

The evidence is recognised by the scheme registry (:func:`veritee.schemes.recognise`; or named
with ``--scheme``), in binary, hex or base64 text; every option goes to the recognised scheme
through the one verifier contract (collateral files to its ``load_collateral``, trust roots to
its vendor's anchors, a policy file to its ``policy_from_mapping``). Nothing here names a TEE.

verify/appraise print one JSON shape for every scheme (``--format json``)::

    {"verdict", "scheme", "format", "checks", "claims", "findings", "tcb_status",
     "advisory_ids", "tcb_date", "revocation"}           (+ "error" when it failed)

Evidence of several devices in one file (an NVIDIA nvat evidence JSON listing several GPUs:
the scheme's optional ``split`` hook) is verified/appraised device by device: the document
then has the same members (``verdict`` the worst of the devices, ``checks``/``findings``
every device's, ``claims`` empty) plus ``parts``, one such document per device in the file's
order; the exit code is the worst of the devices' (see :data:`_SEVERITY`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from veritee.cli import (
    EXIT_BAD_INPUT,
    EXIT_COLLATERAL_UNAVAILABLE,
    EXIT_OK,
    EXIT_POLICY_REJECTED,
    EXIT_VERIFICATION_FAILED,
    _read,
    exit_code_for,
    json_reported,
)
from veritee.errors import ConfigError, FormatError, VerificationError, VeriteeError
from veritee.findings import Finding, Outcome, jsonable
from veritee.schemes._shared import plain

__all__ = ["_cmd_appraise", "_cmd_show", "_cmd_verify"]

_TEXT = frozenset(b"0123456789abcdefABCDEFghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ+/-_=\r\n\t ")


# -- reading and recognising evidence ---------------------------------------------------------
def _decoded(data: bytes) -> bytes | None:
    """Hex text (whitespace, ``0x`` allowed) or base64 text as bytes; ``None`` when ``data``
    is not such text."""
    from veritee._decode import decode_binary_text, decode_hex

    text = data.strip()
    if not text or not _TEXT.issuperset(text):
        return None
    for decode in (decode_hex, decode_binary_text):
        try:
            return decode(text, structure="evidence", field="text")
        except FormatError:
            continue
    return None


@dataclasses.dataclass(frozen=True)
class _Evidence:
    data: bytes
    scheme: Any  # a registered Scheme (veritee.schemes.Scheme)


def _recognise(args: argparse.Namespace) -> _Evidence:
    """The evidence bytes and the scheme they belong to (``--scheme`` or the registry);
    FormatError listing every registered scheme when none recognises them."""
    from veritee import schemes

    raw = _read(args.report, "evidence")
    decoded = _decoded(raw)
    candidates = [raw] if decoded is None else [raw, decoded]
    if getattr(args, "scheme", None):
        scheme = schemes.get(args.scheme)
        data = next((c for c in candidates if scheme.recognise(c)), raw)
        return _Evidence(data, _configured(scheme, args))
    for data in candidates:
        try:
            return _Evidence(data, _configured(schemes.recognise(data), args))
        except FormatError:
            continue
    schemes.recognise(raw)  # raises the FormatError listing every registered scheme
    raise AssertionError("unreachable")  # pragma: no cover


def _configured(scheme: Any, args: argparse.Namespace) -> Any:
    """The scheme with the parser options asked for (``--allow-nonzero-trailer``)."""
    if not getattr(args, "allow_nonzero_trailer", False):
        return scheme
    with_options = getattr(scheme, "with_options", None)
    if with_options is None:
        raise ConfigError(f"--allow-nonzero-trailer: {scheme.name} evidence has no trailer "
                          "(the option is for Intel quotes)")
    return with_options(allow_nonzero_trailer=True)


# -- show -------------------------------------------------------------------------------------
def _lines(obj: object, indent: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if isinstance(value, dict | list) and value:
                out.append(f"{indent}{key}:")
                out += _lines(value, indent + "  ")
            else:
                out.append(f"{indent}{key}: {value}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            if isinstance(value, dict | list):
                out.append(f"{indent}[{i}]")
                out += _lines(value, indent + "  ")
            else:
                out.append(f"{indent}[{i}] {value}")
    return out


def _describe(scheme: Any, parsed: Any) -> dict[str, Any]:
    """The scheme's ``describe`` (optional in the contract), else every parsed field."""
    describe = getattr(scheme, "describe", None)
    if describe is not None:
        doc: dict[str, Any] = describe(parsed)
        return doc
    fmt = getattr(parsed, "format", None)
    return {"format": fmt if isinstance(fmt, str) else scheme.name, "evidence": plain(parsed)}


def _parts(args: argparse.Namespace, ev: _Evidence) -> list[tuple[bytes, bytes | None]]:
    """``(data, attached)`` per evidence part: the scheme's optional ``split`` hook (one part
    per device of an NVIDIA nvat JSON), else the evidence whole with ``--cert-table``."""
    attached = (_read(args.cert_table, "certificate table")
                if getattr(args, "cert_table", None) else None)
    split = getattr(ev.scheme, "split", None)
    if split is None:
        return [(ev.data, attached)]
    parts: list[tuple[bytes, bytes | None]] = split(ev.data, attached)
    if not parts:
        raise FormatError(ev.scheme.name, "<root>", got="no evidence part",
                          want="at least one device")
    # One device: the evidence as given, so the scheme sees its whole container (an nvat
    # JSON's own nonce field is checked against the report's only when parsed whole).
    return parts if len(parts) > 1 else [(ev.data, attached)]


def _cmd_show(args: argparse.Namespace) -> int:
    ev = _recognise(args)
    scheme = ev.scheme
    parts = _parts(args, ev)
    if len(parts) == 1:
        data, attached = parts[0]
        doc = {"scheme": scheme.name, **_describe(scheme, scheme.parse(data, attached=attached))}
    else:
        doc = {"scheme": scheme.name, "parts": [_describe(scheme, scheme.parse(d, attached=a))
                                                for d, a in parts]}
    _emit(args, "\n".join(_lines(doc)), doc)
    return EXIT_OK


# -- verify / appraise ------------------------------------------------------------------------
def _emit(args: argparse.Namespace, text: str, obj: object) -> None:
    if getattr(args, "format", "text") == "json":
        print(json.dumps(obj, indent=2))
    else:
        print(text)


def _paths(args: argparse.Namespace) -> list[Path]:
    """Every collateral path: ``--certs`` (repeatable) and ``--crl``."""
    return [Path(p) for p in (args.certs or [])] + ([Path(args.crl)] if args.crl else [])


def _verifier(args: argparse.Namespace, scheme: Any) -> Any:
    """A verifier holding what the command line gave for the recognised scheme."""
    from veritee.attest import Verifier
    from veritee.schemes import Anchors, Collateral

    anchors = Anchors()
    # --trust-root (a root certificate) and --key (a device key that signs tokens: an Arm
    # IAK/CPAK) are both the vendor's anchors; the scheme reads the files.
    anchor_files = [*(args.trust_root or []), *([args.key] if args.key else [])]
    if anchor_files:
        load = getattr(scheme, "load_anchors", None)
        if load is None:
            raise ConfigError(f"--trust-root/--key: {scheme.name} evidence takes no trust "
                              "anchor file")
        anchors = anchors.with_vendor(scheme.vendor, load([Path(p) for p in anchor_files]))
    collateral = Collateral()
    paths = _paths(args)
    if paths:
        loaded = scheme.load_collateral(paths)
        if loaded is not None:
            collateral = collateral.with_vendor(scheme.vendor, loaded)
    fetchers: dict[str, Any] = {}
    if args.fetch:
        make = getattr(scheme, "new_fetcher", None)
        if make is None:
            raise ConfigError(f"--fetch: no collateral service for {scheme.name} evidence; "
                              "pass its collateral with --certs PATH")
        cache = args.kds_cache or Path.home() / ".cache" / "veritee" / "kds"
        fetchers[scheme.vendor] = make(url=args.kds_url, cache_dir=cache,
                                       clock=lambda: args.at or datetime.now(UTC),
                                       product=args.product)
    elif args.product:
        raise ConfigError("--product names the product for --fetch; give --fetch too")
    return Verifier(anchors=anchors, collateral=collateral, fetchers=fetchers,
                    require_revocation=args.require_crl)


def _expected(args: argparse.Namespace, scheme: Any, verified: Any) -> bytes | None:
    """``--nonce HEX``: the raw bytes the evidence must carry, zero-padded to the size of the
    field that carries them (REPORT_DATA is 64 bytes; a TPM's qualifying data is as long as
    the verifier's nonce was)."""
    if args.nonce is None:
        return None
    from veritee._decode import decode_hex

    try:
        value = decode_hex(args.nonce, structure="--nonce", field="hex")
    except FormatError as exc:
        raise ConfigError(f"--nonce: {exc}") from None
    size = len(scheme.binding(verified))
    if len(value) > max(size, scheme.binding_size):
        raise ConfigError(f"--nonce: got {len(value)} bytes, want at most {size} (the "
                          f"{scheme.name} evidence carries {size} bytes)")
    return value.ljust(size, b"\0")


def _policy(args: argparse.Namespace, scheme: Any) -> Any:
    if not getattr(args, "policy", None):
        return scheme.default_policy()
    from veritee.policy._load import load_mapping

    data = load_mapping(args.policy)
    try:
        return scheme.policy_from_mapping(data)
    except ConfigError as exc:
        raise ConfigError(f"{args.policy}: {exc} ({scheme.name} policy)") from None


def _revocation(scheme: Any, verified: Any) -> dict[str, Any]:
    describe = getattr(scheme, "revocation", None)
    if describe is not None:
        doc: dict[str, Any] = describe(verified)
        return doc
    passed = [c for c in verified.checks if c.outcome is Outcome.PASS
              and ("crl" in c.code or "revocation" in c.code)]
    if passed:
        return {"checked": True, "detail": "checked (" + ", ".join(c.code for c in passed) + ")"}
    return {"checked": False, "detail": f"not checked: {scheme.name} reports no revocation "
            "check"}


def _summary(claims: dict[str, Any]) -> dict[str, Any]:
    return {"tcb_status": claims.get("tcb_status"),
            "advisory_ids": list(claims.get("advisory_ids") or []),
            "tcb_date": claims.get("tcb_date")}


def _result(verdict: str, *, scheme: Any, fmt: str | None, checks: tuple[Finding, ...],
            claims: dict[str, Any], findings: tuple[Finding, ...], summary: dict[str, Any],
            revocation: dict[str, Any] | None) -> dict[str, Any]:
    """The one JSON shape of verify/appraise for every scheme."""
    return {"verdict": verdict, "scheme": getattr(scheme, "name", scheme), "format": fmt,
            "checks": [c.to_dict() for c in checks], "claims": jsonable(claims),
            "findings": [f.to_dict() for f in findings], **summary,
            "revocation": revocation}


def _summary_lines(summary: dict[str, Any], revocation: dict[str, Any] | None) -> list[str]:
    out = []
    if summary["tcb_status"] is not None:
        line = f"TCB status: {summary['tcb_status']}"
        if summary["tcb_date"]:
            line += f" (TCB date {summary['tcb_date']})"
        out.append(line)
        out.append("advisory IDs: " + (", ".join(summary["advisory_ids"]) or "none"))
    if revocation is not None:
        out.append("revocation: " + revocation["detail"])
    return out


def _error_doc(exc: VeriteeError, known: dict[str, Any]) -> dict[str, Any]:
    doc = {"verdict": "error", "scheme": None, "format": None, "checks": [], "claims": {},
           "findings": [], "tcb_status": None, "advisory_ids": [], "tcb_date": None,
           "revocation": None, **known}
    doc["error"] = {"exit_code": exit_code_for(exc), "code": getattr(exc, "code", None),
                    "message": str(exc)}
    return doc


def _failure(args: argparse.Namespace, exc: VeriteeError, known: dict[str, Any]) -> None:
    """On failure, JSON output still goes to stdout, with the error; main() prints it too."""
    if getattr(args, "format", "text") != "json":
        return
    print(json.dumps(_error_doc(exc, known), indent=2))
    json_reported(exc)  # main() prints the stderr line only


@dataclasses.dataclass(frozen=True)
class _Outcome:
    """One evidence part's result: exit code, text for people, the JSON document."""

    code: int
    text: str
    doc: dict[str, Any]


# Exit codes of several devices, best first: the command exits with the worst one. A device
# that could not be checked (collateral missing, bad bytes) is worse than one a policy
# rejected, and a failed signature/chain/binding is worse than missing collateral; codes not
# listed (a bug) are worst of all.
_SEVERITY = (EXIT_OK, EXIT_POLICY_REJECTED, EXIT_COLLATERAL_UNAVAILABLE,
             EXIT_VERIFICATION_FAILED, EXIT_BAD_INPUT)


def _rank(code: int) -> int:
    return _SEVERITY.index(code) if code in _SEVERITY else len(_SEVERITY)


def _run(args: argparse.Namespace, *, appraise: bool) -> int:
    known: dict[str, Any] = {}
    try:
        ev = _recognise(args)
        known["scheme"] = ev.scheme.name
        parts = _parts(args, ev)
        verifier = _verifier(args, ev.scheme)
        if len(parts) == 1:
            out = _one(args, verifier, ev.scheme, parts[0], known, appraise=appraise)
            _emit(args, out.text, out.doc)
            return out.code
    except VeriteeError as exc:
        _failure(args, exc, known)
        raise
    return _several(args, verifier, ev.scheme, parts, appraise=appraise)


def _one(args: argparse.Namespace, verifier: Any, scheme: Any, part: tuple[bytes, bytes | None],
         known: dict[str, Any], *, appraise: bool) -> _Outcome:
    run = _appraise if appraise else _verify
    return run(args, verifier, scheme, part, known)


def _several(args: argparse.Namespace, verifier: Any, scheme: Any,
             parts: list[tuple[bytes, bytes | None]], *, appraise: bool) -> int:
    """Every device of a multi-device evidence file, one result each; the worst exit code.

    A device that fails does not stop the others (a person wants to see every GPU's state);
    each failure is also one ``veritee: device N: ...`` line on stderr."""
    outcomes: list[_Outcome] = []
    for i, part in enumerate(parts):
        known: dict[str, Any] = {"scheme": scheme.name}
        try:
            outcomes.append(_one(args, verifier, scheme, part, known, appraise=appraise))
        except VeriteeError as exc:
            print(f"veritee: device {i}: {exc}", file=sys.stderr)
            outcomes.append(_Outcome(exit_code_for(exc), f"error: {exc}",
                                     _error_doc(exc, known)))
    at = max(range(len(outcomes)), key=lambda i: _rank(outcomes[i].code))
    worst = outcomes[at]
    formats = {o.doc.get("format") for o in outcomes}
    doc: dict[str, Any] = {
        "verdict": worst.doc["verdict"], "scheme": scheme.name,
        "format": formats.pop() if len(formats) == 1 else None,
        "checks": [c for o in outcomes for c in o.doc["checks"]], "claims": {},
        "findings": [f for o in outcomes for f in o.doc["findings"]],
        "tcb_status": None, "advisory_ids": [], "tcb_date": None, "revocation": None,
        "parts": [o.doc for o in outcomes]}
    if worst.code != EXIT_OK:
        error = worst.doc.get("error") or {}
        doc["error"] = {"exit_code": worst.code, "code": error.get("code"),
                        "message": f"device {at}: {error.get('message', '')}"}
    lines = []
    for i, o in enumerate(outcomes):
        lines += [f"device {i} of {len(outcomes)}:", *[f"  {t}" for t in o.text.split("\n")]]
    lines.append(f"verdict (worst of {len(outcomes)} devices): {worst.doc['verdict'].upper()}")
    _emit(args, "\n".join(lines), doc)
    return worst.code


def _verify(args: argparse.Namespace, verifier: Any, scheme: Any,
            part: tuple[bytes, bytes | None], known: dict[str, Any]) -> _Outcome:
    from veritee.attest import EvidencePart

    data, attached = part
    known["format"] = _describe(scheme, scheme.parse(data, attached=attached)).get("format")
    _, _, verified, _ = verifier.verify_only(
        EvidencePart(data, scheme=scheme, attached=attached), now=args.at)
    binding = verifier.check_binding(scheme, verified,
                                     expected_binding=_expected(args, scheme, verified))
    fmt = known["format"]
    checks = (*verified.checks, binding)
    summary = _summary(scheme.claims(verified))
    revocation = _revocation(scheme, verified)
    known.update(checks=[c.to_dict() for c in checks], revocation=revocation, **summary)
    if binding.outcome is Outcome.FAIL:
        got = binding.got.hex() if isinstance(binding.got, bytes) else binding.got
        raise VerificationError(binding.code, f"the evidence carries {got}, not the --nonce "
                                "value")
    lines = [f"verified {scheme.name} evidence ({fmt})", *[f"  {c}" for c in checks],
             *_summary_lines(summary, revocation), "verdict: VERIFIED"]
    return _Outcome(EXIT_OK, "\n".join(lines),
                    _result("verified", scheme=scheme, fmt=fmt, checks=checks, claims={},
                            findings=(), summary=summary, revocation=revocation))


def _appraise(args: argparse.Namespace, verifier: Any, scheme: Any,
              part: tuple[bytes, bytes | None], known: dict[str, Any]) -> _Outcome:
    from veritee.attest import EvidencePart

    data, attached = part
    policy = _policy(args, scheme)
    evidence = EvidencePart(data, scheme=scheme, attached=attached)
    fmt = _describe(scheme, scheme.parse(data, attached=attached)).get("format")
    known["format"] = fmt
    # Verification first on its own (for the revocation status and the size of the field
    # --nonce is compared with); the appraisal then runs the same steps (chains are cached).
    _, _, verified, _ = verifier.verify_only(evidence, now=args.at)
    expected = _expected(args, scheme, verified)
    revocation = _revocation(scheme, verified)
    known["revocation"] = revocation
    appraisal = verifier.appraise(evidence, policy=policy, expected_binding=expected, now=args.at)
    summary = _summary(appraisal.claims)
    verdict = "accepted" if appraisal.accepted else "rejected"
    doc = _result(verdict, scheme=scheme, fmt=fmt, checks=appraisal.verification,
                  claims=appraisal.claims, findings=appraisal.findings, summary=summary,
                  revocation=revocation)
    if not appraisal.accepted:
        doc["error"] = {"exit_code": EXIT_POLICY_REJECTED, "code": "policy.rejected",
                        "message": "policy rejected: " + ", ".join(appraisal.codes())}
    text = "\n".join([*_summary_lines(summary, revocation), appraisal.to_text()])
    return _Outcome(EXIT_OK if appraisal.accepted else EXIT_POLICY_REJECTED, text, doc)


def _cmd_verify(args: argparse.Namespace) -> int:
    return _run(args, appraise=False)


def _cmd_appraise(args: argparse.Namespace) -> int:
    return _run(args, appraise=True)
