"""Process CPU, PostgreSQL activity and CPU-quota cgroups for the service benchmarks (Linux).

* :func:`tree_cpu` / :class:`CpuMeter`: user + system CPU seconds from ``/proc/<pid>/stat``
  (no psutil dependency), of a process tree or of every process of a program.
* :func:`pg_transactions`: committed + rolled-back transactions of one database
  (``pg_stat_database``), for transactions per exchange.
* :class:`CpuQuotas`: one cgroup v1 ``cpu`` controller group per process with a CFS quota
  (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` CPUs), as if each ran on its own small node;
  removed on exit. :meth:`CpuQuotas.available` says whether this machine allows it (root,
  cgroup v1 ``cpu`` mounted).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

__all__ = ["CpuMeter", "CpuQuotas", "pg_transactions", "program_pids", "tree_cpu", "tree_pids"]

_TICK = os.sysconf("SC_CLK_TCK")
_CGROUP_CPU = Path("/sys/fs/cgroup/cpu")


def _cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    except (OSError, IndexError, ValueError):
        return None


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its live descendants (every thread's children)."""
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants."""
    return sum(c for p in tree_pids(pid) if (c := _cpu(p)) is not None)


def program_pids(comm: str) -> list[int]:
    """Pids of every process whose ``comm`` is ``comm`` (e.g. all of PostgreSQL's)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


class CpuMeter:
    """CPU used by a changing set of processes between :meth:`start` and :meth:`stop`.

    ``pids`` is called at both ends; a process that appears in between counts from zero, one
    that is gone at the end counts what it had at the start (lost: its last part).
    """

    def __init__(self, pids: Callable[[], Iterable[int]]) -> None:
        self.pids = pids
        self.before: dict[int, float] = {}
        self.seconds = 0.0

    def _sample(self) -> dict[int, float]:
        return {p: c for p in self.pids() if (c := _cpu(p)) is not None}

    def start(self) -> None:
        """Sample the start."""
        self.before = self._sample()

    def stop(self) -> float:
        """Sample the end; return (and keep in ``seconds``) the CPU seconds in between."""
        after = self._sample()
        self.seconds = sum(c - self.before.get(p, 0.0) for p, c in after.items())
        return self.seconds


def pg_transactions(admin_url: str, database: str) -> int:
    """Committed + rolled-back transactions in ``database`` since its statistics reset.

    Backends report to the statistics collector at most once a second when idle: read this
    a second or two after the load stops.
    """
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
        row = conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                           "WHERE datname = %s", (database,)).fetchone()
    return int(row[0]) if row else 0


class CpuQuotas:
    """CFS CPU quotas (cgroup v1) for processes, one group each; every group removed on exit.

    Use as a context manager: ``with CpuQuotas(0.4) as q: q.add(pid)``. ``cpus`` is the budget
    of each group, in CPUs (0.4 = 40 ms of CPU time per 100 ms period).
    """

    PERIOD_US = 100_000

    def __init__(self, cpus: float, *, tag: str = "veritee-bench") -> None:
        self.cpus = cpus
        self.tag = f"{tag}-{os.getpid()}-{secrets.token_hex(2)}"
        self.groups: list[Path] = []

    @staticmethod
    def available() -> str | None:
        """None if quotas can be set here, else why not."""
        if not (_CGROUP_CPU / "cpu.cfs_quota_us").exists():
            return "no cgroup v1 cpu controller at /sys/fs/cgroup/cpu"
        if not os.access(_CGROUP_CPU, os.W_OK):
            return "/sys/fs/cgroup/cpu is not writable (not root?)"
        return None

    def __enter__(self) -> CpuQuotas:
        return self

    def add(self, pid: int) -> Path:
        """Put ``pid`` (and the children it starts from now on) in a new capped group."""
        group = _CGROUP_CPU / f"{self.tag}-{len(self.groups)}"
        group.mkdir()
        self.groups.append(group)
        (group / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(int(self.cpus * self.PERIOD_US)))
        (group / "cgroup.procs").write_text(str(pid))
        return group

    def throttled(self) -> tuple[int, int]:
        """(periods, periods in which a group hit its quota), summed over the groups."""
        periods = throttled = 0
        for group in self.groups:
            stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines()
                        if line.count(" ") == 1)
            periods += int(stat.get("nr_periods", 0))
            throttled += int(stat.get("nr_throttled", 0))
        return periods, throttled

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for group in reversed(self.groups):
            try:
                # Processes still inside go back to the root group, so the group can go.
                for pid in (group / "cgroup.procs").read_text().split():
                    try:
                        (_CGROUP_CPU / "cgroup.procs").write_text(pid)
                    except OSError:
                        continue  # exited meanwhile
                group.rmdir()
            except OSError as err:
                print(f"warning: could not remove {group}: {err}")
