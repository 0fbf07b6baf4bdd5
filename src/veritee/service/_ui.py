"""The web console at ``/ui``: what the broker has been doing, at a glance (server-rendered).

A reader token shows; an admin token may also change (revoke tokens). The browser signs in by
posting its token once; the token is then kept in an ``HttpOnly``, ``SameSite=Strict`` cookie
scoped to ``/ui`` (``Secure`` over HTTPS), and every change is a POST carrying a CSRF value
derived from that token. Pages load nothing from elsewhere: inline SVG for the chart, one
style sheet from ``/ui/style.css``, and a Content-Security-Policy that allows only that.

Shown: attestations per hour over the last 24 hours by TEE and verdict (a stacked bar chart),
the most frequent refusal codes, each resource with the reference values (workloads) its policy
admits, reference values, appraisal policies, the audit chain's status and head, signing keys
and their age, and (admin) the API tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import html
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from veritee.service.core import Broker
from veritee.service.problems import Problem

__all__ = ["router"]

router = APIRouter(prefix="/ui", include_in_schema=False)

_COOKIE = "veritee_ui"
_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
_COLOURS = {"accepted": "#1b7f3b", "refused": "#b3261e"}
_TEE_COLOURS = ("#1b7f3b", "#2f6db5", "#7a4fb0", "#0f7c80", "#8a6d00")
_MAX_AUDIT = 20000  # rows read for the chart and refusal counts (the newest)

_STYLE = """
:root { color-scheme: light; }
body { font-family: DejaVu Sans, Arial, sans-serif; margin: 0; color: #1a1a1a;
       background: #fafafa; }
header { background: #12355b; color: #fff; padding: 0.8rem 1.5rem; display: flex;
         justify-content: space-between; align-items: center; }
header h1 { font-size: 1.3rem; margin: 0; }
main { padding: 1rem 1.5rem; max-width: 72rem; }
section { background: #fff; border: 1px solid #d0d0d0; border-radius: 6px;
          padding: 0.8rem 1rem; margin-bottom: 1rem; }
h2 { font-size: 1.1rem; margin: 0 0 0.6rem 0; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid #e2e2e2;
         vertical-align: top; }
code { font-size: 0.85rem; word-break: break-all; }
.ok { color: #1b5e20; font-weight: bold; }
.bad { color: #b3261e; font-weight: bold; }
.legend span { display: inline-block; margin-right: 1rem; }
.swatch { margin-right: 0.3rem; vertical-align: middle; }
button { font: inherit; padding: 0.3rem 0.8rem; border: 1px solid #12355b;
         background: #fff; color: #12355b; border-radius: 4px; cursor: pointer; }
header button { background: #12355b; color: #fff; border-color: #fff; }
label { display: block; margin-bottom: 0.3rem; }
input[type=password] { font: inherit; width: 28rem; max-width: 100%; padding: 0.3rem; }
.error { color: #b3261e; }
"""


def _broker(request: Request) -> Broker:
    broker: Broker = request.app.state.broker
    return broker


def _csrf(token: str) -> str:
    return hmac.new(token.encode(), b"veritee-ui-csrf", hashlib.sha256).hexdigest()


def _who(request: Request) -> tuple[str, str, str] | None:
    """(token, token id, role) of the signed-in browser, or None."""
    token = request.cookies.get(_COOKIE)
    if not token:
        return None
    broker = _broker(request)
    try:
        token_id = broker.authenticate(token, need="reader")
    except Problem:
        return None
    try:
        broker.authenticate(token, need="admin")
        role = "admin"
    except Problem:
        role = "reader"
    return token, token_id, role


def _page(title: str, body: str, *, status: int = 200, who: tuple[str, str, str] | None = None
          ) -> HTMLResponse:
    signed = ""
    if who is not None:
        signed = (f'<form method="post" action="/ui/logout"><span>signed in: '
                  f'{html.escape(who[2])} </span><input type="hidden" name="csrf" '
                  f'value="{_csrf(who[0])}"><button type="submit">Sign out</button></form>')
    doc = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
           f'<meta name="viewport" content="width=device-width, initial-scale=1">'
           f'<title>{html.escape(title)}</title>'
           f'<link rel="stylesheet" href="/ui/style.css"></head><body>'
           f'<header><h1>veritee key broker</h1>{signed}</header>'
           f'<main id="main">{body}</main></body></html>')
    return HTMLResponse(doc, status_code=status, headers=_HEADERS)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > 4096:
        raise Problem(413, "request.too_large", "form: want at most 4096 bytes")
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


@router.get("/style.css")
def style() -> Response:
    """The console's one style sheet."""
    return Response(_STYLE, media_type="text/css",
                    headers={"Cache-Control": "max-age=300", "X-Content-Type-Options":
                             "nosniff"})


def _login_page(error: str = "", status: int = 200) -> HTMLResponse:
    err = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return _page("Sign in - veritee", f"""<section><h2>Sign in</h2>{err}
<form method="post" action="/ui/login">
<label for="token">Admin or reader token</label>
<input type="password" id="token" name="token" autocomplete="off" required>
<button type="submit">Sign in</button></form>
<p>A reader token shows the broker's state; an admin token may also revoke tokens.</p>
</section>""", status=status)


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the posted token; on success keep it in the console's cookie."""
    token = (await _form(request)).get("token", "").strip()
    try:
        _broker(request).authenticate(token, need="reader")
    except Problem:
        return _login_page("That token is unknown or revoked.", status=401)
    response = RedirectResponse("/ui", status_code=303)
    response.set_cookie(_COOKIE, token, httponly=True, samesite="strict", path="/ui",
                        secure=request.url.scheme == "https", max_age=8 * 3600)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the cookie."""
    who = _who(request)
    form = await _form(request)
    if who is not None and not hmac.compare_digest(form.get("csrf", ""), _csrf(who[0])):
        return _page("Refused - veritee", "<p>Refused: stale form.</p>", status=403)
    response = RedirectResponse("/ui", status_code=303)
    response.delete_cookie(_COOKIE, path="/ui")
    return response


@router.post("/tokens/{token_id}/revoke")
async def revoke(token_id: str, request: Request) -> Response:
    """Revoke an API token (admin role and a matching CSRF value required)."""
    who = _who(request)
    if who is None:
        return _login_page("Sign in first.", status=401)
    form = await _form(request)
    if not hmac.compare_digest(form.get("csrf", ""), _csrf(who[0])):
        return _page("Refused - veritee", "<p>Refused: the form did not come from this "
                     "console.</p>", status=403, who=who)
    if who[2] != "admin":
        return _page("Refused - veritee", "<p>Refused: a reader token may not change "
                     "anything.</p>", status=403, who=who)
    try:
        _broker(request).revoke_token(who[1], token_id)
    except Problem as p:
        return _page("Refused - veritee", f"<p>Refused: {html.escape(p.code)}: "
                     f"{html.escape(p.detail)}</p>", status=p.status, who=who)
    return RedirectResponse("/ui", status_code=303)


@router.get("")
def dashboard(request: Request) -> Response:
    """The console: sign-in form, or the broker's state."""
    who = _who(request)
    if who is None:
        return _login_page()
    broker = _broker(request)
    now = broker.clock()
    from veritee.service.audit import verify_chain

    with broker.store.transaction(write=False) as tx:
        rows = tx.audit_rows()
        resources = tx.resource_list()
        references = tx.reference_list()
        policies = tx.policy_list()
        tokens = tx.token_list() if who[2] == "admin" else []
        keys = tx.all("SELECT kid, alg, created_at, retired_at FROM signing_keys "
                      "ORDER BY created_at")
    chain = verify_chain(rows, broker.store.integrity)
    recent = rows[-_MAX_AUDIT:]
    parts = [_chain_section(chain), _chart_section(recent, now), _refusals_section(recent),
             _resources_section(resources, references), _references_section(references),
             _policies_section(policies, broker.settings.appraisal_policy_id),
             _keys_section(keys, now)]
    if who[2] == "admin":
        parts.append(_tokens_section(tokens, who))
    return _page("veritee console", "".join(parts), who=who)


def _chain_section(chain: Any) -> str:
    status = ('<span class="ok">verified</span>' if chain.ok else
              f'<span class="bad">BROKEN at seq {html.escape(str(chain.bad_seq))}: '
              f"{html.escape(chain.problem)}</span>")
    return (f'<section aria-labelledby="h-audit"><h2 id="h-audit">Audit chain</h2>'
            f"<p>Status: {status}. Entries: {chain.entries}. Head: "
            f"<code>{html.escape(chain.head)}</code></p></section>")


def _when(row: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(row.at).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _chart_section(rows: list[Any], now: float) -> str:
    # Buckets: the last 24 whole hours; series: accepted per TEE, and refused.
    start = (int(now) // 3600 - 23) * 3600
    buckets: dict[int, Counter[str]] = defaultdict(Counter)
    for r in rows:
        if r.event != "attestation":
            continue
        at = _when(r)
        if at is None or at < start:
            continue
        series = (f"accepted {r.detail.get('tee', '?')}" if r.outcome == "accepted"
                  else "refused")
        buckets[int(at - start) // 3600][series] += 1
    names = sorted({s for c in buckets.values() for s in c}, key=lambda s: (s == "refused", s))
    colour = {n: (_COLOURS["refused"] if n == "refused" else
                  _TEE_COLOURS[i % len(_TEE_COLOURS)]) for i, n in enumerate(names)}
    top = max((sum(c.values()) for c in buckets.values()), default=0)
    w, h, pad, bar = 720, 200, 30, 720 // 24
    bars: list[str] = []
    for i in range(24):
        y = h - pad
        for n in names:
            count = buckets.get(i, Counter())[n]
            if not count:
                continue
            height = max(1, round((h - 2 * pad) * count / top))
            y -= height
            bars.append(f'<rect x="{pad + i * (w - pad) // 24}" y="{y}" width="{bar - 4}" '
                        f'height="{height}" fill="{colour[n]}"><title>{html.escape(n)}: '
                        f"{count}</title></rect>")
    total = sum(sum(c.values()) for c in buckets.values())
    summary = ", ".join(f"{n}: {sum(c[n] for c in buckets.values())}" for n in names) or "none"
    # Swatches are SVG (a fill attribute), not inline CSS, which the CSP forbids.
    legend = "".join(f'<span><svg class="swatch" width="12" height="12" aria-hidden="true">'
                     f'<rect width="12" height="12" fill="{colour[n]}"/></svg>'
                     f"{html.escape(n)}</span>" for n in names)
    first = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:00")
    return (f'<section aria-labelledby="h-chart"><h2 id="h-chart">Attestations, last 24 '
            f"hours (per hour, by TEE and verdict)</h2>"
            f'<svg role="img" aria-labelledby="chart-title" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}"><title id="chart-title">Attestations per hour since '
            f"{first} UTC: {html.escape(summary)}</title>"
            f'<line x1="{pad}" y1="{h - pad}" x2="{w}" y2="{h - pad}" stroke="#555"/>'
            f'<text x="{pad}" y="{h - 8}" font-size="11" fill="#333">{first} UTC</text>'
            f'<text x="{w - 40}" y="{h - 8}" font-size="11" fill="#333">now</text>'
            f'<text x="2" y="{pad}" font-size="11" fill="#333">{top}</text>'
            f'{"".join(bars)}</svg><p class="legend">{legend}</p>'
            f"<p>Total: {total} ({html.escape(summary)}).</p></section>")


def _refusals_section(rows: list[Any]) -> str:
    codes = Counter(str(r.detail.get("code", "?")) for r in rows
                    if r.outcome == "refused")
    body = "".join(f"<tr><td><code>{html.escape(code)}</code></td><td>{n}</td></tr>"
                   for code, n in codes.most_common(10))
    return (f'<section aria-labelledby="h-ref"><h2 id="h-ref">Most frequent refusal codes'
            f"</h2><table><thead><tr><th scope=\"col\">code</th><th scope=\"col\">count</th>"
            f"</tr></thead><tbody>{body or '<tr><td colspan=2>none</td></tr>'}</tbody>"
            f"</table></section>")


def _resources_section(resources: list[tuple[str, dict[str, Any], int]],
                       references: list[tuple[str, str, str]]) -> str:
    names: dict[str, list[str]] = defaultdict(list)
    for name, _, value in references:
        names[value.lower()].append(name)
    rows = []
    for path, policy, version in resources:
        if policy.get("allow_any_workload"):
            admits = "any workload that passes appraisal"
        else:
            wanted = [str(m).lower() for m in policy.get("measurements") or []]
            admits = ", ".join(
                (f"{html.escape(', '.join(names[m]))} (<code>{m[:16]}</code>)" if m in names
                 else f"unnamed <code>{m[:16]}</code>") for m in wanted) or "none"
            if policy.get("mrtd"):
                admits += f"; {len(policy['mrtd'])} TDX MRTD value(s)"
        rows.append(f"<tr><td><code>{html.escape(path)}</code></td><td>{version}</td>"
                    f"<td>{admits}</td></tr>")
    return (f'<section aria-labelledby="h-res"><h2 id="h-res">Resources and the workloads '
            f'their policies admit</h2><table><thead><tr><th scope="col">resource</th>'
            f'<th scope="col">version</th><th scope="col">admits</th></tr></thead><tbody>'
            f"{''.join(rows) or '<tr><td colspan=3>none</td></tr>'}</tbody></table>"
            f"</section>")


def _references_section(references: list[tuple[str, str, str]]) -> str:
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{html.escape(k)}</td>"
                   f"<td><code>{html.escape(v)}</code></td></tr>" for n, k, v in references)
    return (f'<section aria-labelledby="h-rv"><h2 id="h-rv">Reference values</h2><table>'
            f'<thead><tr><th scope="col">name</th><th scope="col">kind</th>'
            f'<th scope="col">value</th></tr></thead><tbody>'
            f"{rows or '<tr><td colspan=3>none</td></tr>'}</tbody></table></section>")


def _policies_section(policies: list[str], active: str) -> str:
    items = "".join(f"<li>{html.escape(p)}{' (active)' if p == active else ''}</li>"
                    for p in policies)
    return (f'<section aria-labelledby="h-pol"><h2 id="h-pol">Appraisal policies</h2>'
            f"<p>Active: {html.escape(active)}</p><ul>{items or '<li>none stored</li>'}</ul>"
            f"</section>")


def _age(seconds: float) -> str:
    days, rest = divmod(int(max(0.0, seconds)), 86400)
    return f"{days} d {rest // 3600} h" if days else f"{rest // 3600} h {rest % 3600 // 60} min"


def _keys_section(keys: Sequence[Sequence[Any]], now: float) -> str:
    rows = "".join(
        f"<tr><td><code>{html.escape(str(k[0]))}</code></td><td>{html.escape(str(k[1]))}</td>"
        f"<td>{_age(now - float(k[2]))}</td><td>{'retired' if k[3] else 'active'}</td></tr>"
        for k in keys)
    return (f'<section aria-labelledby="h-keys"><h2 id="h-keys">EAR signing keys</h2><table>'
            f'<thead><tr><th scope="col">kid</th><th scope="col">alg</th>'
            f'<th scope="col">age</th><th scope="col">state</th></tr></thead><tbody>'
            f"{rows or '<tr><td colspan=4>none</td></tr>'}</tbody></table></section>")


def _tokens_section(tokens: list[dict[str, Any]], who: tuple[str, str, str]) -> str:
    csrf = _csrf(who[0])
    rows = []
    for t in tokens:
        tid = html.escape(str(t["token_id"]))
        action = ("revoked" if t["revoked"] else "this session" if t["token_id"] == who[1] else
                  f'<form method="post" action="/ui/tokens/{tid}/revoke">'
                  f'<input type="hidden" name="csrf" value="{csrf}">'
                  f'<button type="submit" aria-label="Revoke token {html.escape(str(t["name"]))}"'
                  f">Revoke</button></form>")
        created = datetime.fromtimestamp(float(t["created_at"]), UTC).strftime(
            "%Y-%m-%d %H:%M") if t.get("created_at") else ""
        rows.append(f"<tr><td><code>{tid}</code></td><td>{html.escape(str(t['name']))}</td>"
                    f"<td>{html.escape(str(t['role']))}</td><td>{created}</td>"
                    f"<td>{action}</td></tr>")
    return (f'<section aria-labelledby="h-tok"><h2 id="h-tok">API tokens</h2><table>'
            f'<thead><tr><th scope="col">id</th><th scope="col">name</th>'
            f'<th scope="col">role</th><th scope="col">created (UTC)</th>'
            f'<th scope="col">action</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f"</section>")
