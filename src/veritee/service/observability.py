"""Metrics (Prometheus) and structured logs.

Metrics live in a registry per application so several apps in one process (tests) do not
collide. With several worker processes set ``PROMETHEUS_MULTIPROC_DIR`` and /metrics
aggregates every worker (prometheus_client's multiprocess mode).

Logs are one JSON object per line on the ``veritee.service`` logger. Only fields passed to
:func:`log_event` appear, and the callers pass codes, ids and SHA-256 prefixes: never a secret,
a bearer token, a nonce or evidence bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["Metrics", "fingerprint", "log_event", "logger"]

logger = logging.getLogger("veritee.service")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """The service's counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.attestations = Counter("veritee_attestations", "Attestation requests by outcome",
                                    ["outcome"], registry=r)
        self.verdicts = Counter("veritee_verdicts", "EAR statuses issued", ["status"],
                                registry=r)
        self.releases = Counter("veritee_releases", "Resource release decisions", ["outcome"],
                                registry=r)
        self.challenges = Counter("veritee_challenges", "Nonces issued", registry=r)
        self.integrity = Counter("veritee_integrity_violations",
                                 "Stored rows refused because their MAC did not verify",
                                 ["table"], registry=r)
        self.unavailable = Counter("veritee_database_unavailable",
                                   "Requests answered 503 because the database failed",
                                   registry=r)
        self.latency = Histogram("veritee_request_seconds", "Request latency by route",
                                 ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.verification = Histogram("veritee_verification_seconds",
                                      "Time in evidence verification and appraisal",
                                      buckets=_LATENCY_BUCKETS, registry=r)
        self.verification_cpu = Counter("veritee_verification_cpu_seconds",
                                        "Thread CPU time in evidence verification and appraisal",
                                        registry=r)
        self._children: dict[tuple[Counter, str], Any] = {}

    def count(self, counter: Counter, label: str) -> None:
        """``counter.labels(label).inc()``, each labelled child looked up once: ``labels``
        takes a lock and builds its key on every call, and this runs several times per
        request. Labels are codes from a small fixed set (outcomes, statuses, tables)."""
        child = self._children.get((counter, label))
        if child is None:
            child = self._children.setdefault((counter, label), counter.labels(label))
        child.inc()

    def exposition(self) -> bytes:
        """The text exposition format, aggregated over workers in multiprocess mode."""
        from prometheus_client import generate_latest

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
            return generate_latest(reg)
        return generate_latest(self.registry)


def fingerprint(value: str | bytes) -> str:
    """A loggable stand-in for a secret value: the first 12 hex digits of its SHA-256."""
    data = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()[:12]


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one JSON line: ``{"ts", "event", ...fields}``."""
    if logger.isEnabledFor(level):
        from veritee.service._reqlog import current_request_id

        rid = current_request_id()  # inside an HTTP request: its id joins the line
        if rid is not None:
            fields.setdefault("request_id", rid)
        logger.log(level, json.dumps({"ts": round(time.time(), 3), "event": event, **fields},
                                     default=str, sort_keys=True))
