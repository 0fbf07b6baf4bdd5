"""The SGX memory encryption engine's integrity tree: version counters with MACs.

Modelled on S. Gueron, "A Memory Encryption Engine Suitable for General Purpose Processors"
(IACR ePrint 2016/204), the MEE of client SGX, and V. Costan and S. Devadas, "Intel SGX
Explained" (ePrint 2016/086), section "Memory Encryption Engine":

* every protected data unit has a *version counter*; its MAC binds ciphertext, address and
  version, so old ciphertext with its old MAC fails once the version moved on;
* the counters are themselves in DRAM, grouped eight to a node; each node carries a MAC over
  its counters, its address and the counter that covers it one level up;
* the top level's covering counters are on die (SRAM inside the CPU package), out of any
  attacker's reach. Every write bumps the counters on the whole path to the root, so a
  replay of any DRAM state (data, MACs and every tree node together) fails at the root.

Differences from the real MEE, deliberately: the data unit is a 4 KiB page rather than a
64-byte cache line; counters are 64-bit rather than 56-bit; MACs are HMAC-SHA-256 (from
``cryptography``) rather than a 56-bit Carter-Wegman MAC. None of these change which attacks
are detected.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from veritee.errors import PlatformError
from veritee.platform.emulated.isolation.faults import IntegrityViolation
from veritee.platform.emulated.isolation.memory import PhysicalMemory

__all__ = ["CounterTree"]

ARITY = 8
_COUNTER_BYTES = 8
_MAC_BYTES = 32
_NODE_BYTES = ARITY * _COUNTER_BYTES + _MAC_BYTES
_COUNTERS = struct.Struct(f"<{ARITY}Q")  # eight little-endian 64-bit counters


@dataclass
class _Node:
    level: int
    index: int
    counters: list[int]
    mac: bytes


class CounterTree:
    """Version counters for ``leaves`` data units, kept in DRAM under an on-die root."""

    def __init__(self, memory: PhysicalMemory, leaves: int, key: bytes) -> None:
        self._memory = memory
        self._key = key
        self.leaves = leaves
        self._levels: list[tuple[int, int]] = []  # (metadata offset, node count) per level
        units = leaves
        while True:
            nodes = -(-units // ARITY)
            self._levels.append((memory.reserve(nodes * _NODE_BYTES), nodes))
            if nodes <= ARITY:
                break
            units = nodes
        self._root = [0] * self._levels[-1][1]  # on die: never in PhysicalMemory
        for level, (_, nodes) in enumerate(self._levels):
            for index in range(nodes):
                self._store(_Node(level, index, [0] * ARITY, b""), parent=0)

    @property
    def depth(self) -> int:
        """Levels of nodes in DRAM (the on-die root above them not counted)."""
        return len(self._levels)

    def _hmac(self, level: int, index: int, counters: list[int], parent: int) -> hmac.HMAC:
        """HMAC over (level, index, counters, covering counter): a node's MAC input."""
        h = hmac.HMAC(self._key, hashes.SHA256())
        h.update(b"veritee-mee-node" + bytes([level]) + index.to_bytes(4, "little")
                 + _COUNTERS.pack(*counters) + parent.to_bytes(_COUNTER_BYTES, "little"))
        return h

    def _load(self, level: int, index: int) -> _Node:
        offset = self._levels[level][0] + index * _NODE_BYTES
        raw = self._memory.meta_load(offset, _NODE_BYTES)
        counters = list(_COUNTERS.unpack_from(raw))
        return _Node(level, index, counters, raw[_COUNTERS.size:])

    def _store(self, node: _Node, parent: int) -> None:
        node.mac = self._hmac(node.level, node.index, node.counters, parent).finalize()
        offset = self._levels[node.level][0] + node.index * _NODE_BYTES
        self._memory.meta_store(offset, _COUNTERS.pack(*node.counters) + node.mac)

    def _path(self, leaf: int) -> list[_Node]:
        """Load and verify every node from ``leaf`` up to the on-die root."""
        if not 0 <= leaf < self.leaves:
            raise PlatformError(f"leaf {leaf} outside 0..{self.leaves - 1}")
        path = [self._load(level, leaf // ARITY ** (level + 1))
                for level in range(len(self._levels))]
        for level, node in enumerate(path):
            h = self._hmac(level, node.index, node.counters, self._parent_counter(path, level))
            try:
                h.verify(node.mac)
            except InvalidSignature:
                raise IntegrityViolation(
                    f"MEE integrity tree: node {node.index} at level {level} does not match "
                    "its parent counter (replayed or corrupted metadata)") from None
        return path

    def _parent_counter(self, path: list[_Node], level: int) -> int:
        index = path[level].index
        if level + 1 == len(path):
            return self._root[index]
        return path[level + 1].counters[index % ARITY]

    def version(self, leaf: int) -> int:
        """The verified version counter of a data unit."""
        return self._path(leaf)[0].counters[leaf % ARITY]

    def advance(self, leaf: int) -> int:
        """Bump the counters on the leaf's whole path (and the root); return the new version."""
        path = self._path(leaf)
        for level, node in enumerate(path):
            node.counters[(leaf // ARITY ** level) % ARITY] += 1
        self._root[path[-1].index] += 1
        for level, node in enumerate(path):
            self._store(node, self._parent_counter(path, level))
        return path[0].counters[leaf % ARITY]
