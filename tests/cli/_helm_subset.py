"""Render the chart in deploy/helm without helm: the small subset of Helm's template language
the chart's templates are kept to (no container runtime or helm binary is available here).

Supported: ``{{ .Values.a.b }}``, ``.Release.Name``, ``.Release.Namespace``, ``.Chart.Name``,
``.Chart.AppVersion`` (and any ``Chart.yaml`` key), string literals, the pipes ``quote``,
``toYaml``, ``nindent N`` and ``indent N``, ``{{ if X }} / {{ else }} / {{ end }}`` on a
value's truthiness, and whitespace trimming with ``{{-`` and ``-}}``. Anything else raises,
so a template that strays from the subset fails the test instead of rendering wrongly.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_TAG = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


class TemplateError(Exception):
    """The template uses something outside the supported subset."""


@dataclass
class _If:
    cond: str
    then: list[Any] = field(default_factory=list)
    other: list[Any] = field(default_factory=list)


def _parse(text: str) -> list[Any]:
    # Tokens: str (text) or ("expr", s); trimming applied while tokenising.
    tokens: list[Any] = []
    pos = 0
    for m in _TAG.finditer(text):
        chunk = text[pos:m.start()]
        if m.group(1):
            chunk = chunk.rstrip(" \t\n")
        tokens.append(chunk)
        tokens.append(("tag", m.group(2)))
        pos = m.end()
        if m.group(3):
            rest = text[pos:]
            pos += len(rest) - len(rest.lstrip(" \t\n"))
    tokens.append(text[pos:])
    root: list[Any] = []
    stack: list[tuple[list[Any], _If | None]] = [(root, None)]
    for tok in tokens:
        body, node = stack[-1]
        if isinstance(tok, str):
            body.append(tok)
            continue
        tag = tok[1]
        if tag.startswith("if "):
            new = _If(tag[3:].strip())
            body.append(new)
            stack.append((new.then, new))
        elif tag == "else":
            if node is None:
                raise TemplateError("else without if")
            stack[-1] = (node.other, node)
        elif tag == "end":
            if node is None:
                raise TemplateError("end without if")
            stack.pop()
        elif tag.startswith("/*") or tag.startswith("define") or tag.startswith("range"):
            raise TemplateError(f"unsupported action: {tag}")
        else:
            body.append(("expr", tag))
    if len(stack) != 1:
        raise TemplateError("if without end")
    return root


def _lookup(ctx: dict[str, Any], ref: str) -> Any:
    if ref.startswith('"') and ref.endswith('"'):
        return json.loads(ref)
    if not ref.startswith("."):
        raise TemplateError(f"unsupported value: {ref}")
    value: Any = ctx
    for part in ref[1:].split("."):
        if not isinstance(value, dict):
            raise TemplateError(f"{ref}: not a map at {part}")
        value = value.get(part)
    return value


def _scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _pipe(ctx: dict[str, Any], expr: str) -> str:
    head, *fns = [p.strip() for p in expr.split("|")]
    words = head.split()
    if len(words) == 2 and words[0] in ("quote", "toYaml"):  # `toYaml .Values.x | ...`
        head, fns = words[1], [words[0], *fns]
    value: Any = _lookup(ctx, head)
    out: str | None = None
    for fn in fns:
        name, *args = fn.split()
        current = out if out is not None else value
        if name == "quote":
            out = json.dumps(_scalar(current))
        elif name == "toYaml":
            out = yaml.safe_dump(current, default_flow_style=False, sort_keys=False).rstrip("\n")
        elif name in ("nindent", "indent"):
            pad = " " * int(args[0])
            text = _scalar(current)
            out = ("\n" if name == "nindent" else "") + "\n".join(
                pad + line if line else line for line in text.split("\n"))
        else:
            raise TemplateError(f"unsupported function: {name}")
    return out if out is not None else _scalar(value)


def _render(nodes: list[Any], ctx: dict[str, Any]) -> str:
    parts: list[str] = []
    for node in nodes:
        if isinstance(node, str):
            parts.append(node)
        elif isinstance(node, _If):
            parts.append(_render(node.then if _lookup(ctx, node.cond) else node.other, ctx))
        else:
            parts.append(_pipe(ctx, node[1]))
    return "".join(parts)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else v
    return out


def render_chart(chart: Path, *, release: str = "veritee", namespace: str = "default",
                 values: dict[str, Any] | None = None) -> dict[str, str]:
    """Render every template of ``chart``; return {template name: YAML text}."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    chart_ctx = {k[0].upper() + k[1:]: v for k, v in meta.items()}
    ctx = {"Values": _merge(yaml.safe_load((chart / "values.yaml").read_text()),
                            values or {}),
           "Release": {"Name": release, "Namespace": namespace}, "Chart": chart_ctx}
    return {t.name: _render(_parse(t.read_text()), ctx)
            for t in sorted((chart / "templates").glob("*.yaml"))}
