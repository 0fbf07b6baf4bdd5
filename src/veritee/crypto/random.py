"""Randomness: entropy sources, SP 800-90B health tests and SP 800-90A Rev.1 DRBGs.

Layers, bottom up::

    EntropySource (Protocol)      OsEntropySource, HwRngSource, PlatformTrngSource,
                                  InsecureDeterministicSourceForTests
    HealthTestedSource            SP 800-90B 4.3 start-up + 4.4 continuous tests (RCT, APT)
    *DrbgMechanism                SP 800-90A section 10 algorithms: HMAC_DRBG (10.1.2),
                                  Hash_DRBG (10.1.1), CTR_DRBG (10.2.1, AES, with/without df)
    Drbg                          SP 800-90A section 9 functions: instantiate, reseed, generate
                                  (reseed counter, prediction resistance), uninstantiate

Typical use::

    source = HealthTestedSource(OsEntropySource())
    drbg = hmac_drbg(source, "SHA-256", personalization=b"veritee key store")
    key = drbg.generate(32)

The primitives (HMAC, hashes, AES) come from ``cryptography``; only the DRBG mechanisms, which
``cryptography`` does not offer, are written here.

Deliberate limits (written down so nobody relies on them):

* State wiping (``uninstantiate``) overwrites this module's ``bytearray`` state. Python and
  ``cryptography`` may still hold copies (immutable ``bytes`` passed to HMAC/AES, key
  schedules inside OpenSSL contexts); wiping is best effort, not a guarantee.
* Health tests treat each byte as one 8-bit sample. They are meaningful on *raw* noise; the OS
  source is already a conditioned CSPRNG output, where they only catch gross failures.
* TDES CTR_DRBG is not provided (TDES is disallowed for new uses, SP 800-131A Rev.2).
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal, Protocol, TypedDict, Unpack, runtime_checkable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from veritee.crypto.kdf import hash_algorithm
from veritee.errors import PlatformError, VeriteeError

__all__ = [
    "ALPHA_LOG2",
    "APT_WINDOW_BINARY",
    "APT_WINDOW_NON_BINARY",
    "MAX_BYTES_PER_REQUEST",
    "MAX_RESEED_INTERVAL",
    "STARTUP_SAMPLES",
    "CtrDrbgMechanism",
    "Drbg",
    "DrbgMechanism",
    "DrbgOptions",
    "DrbgStateError",
    "EntropyHealthError",
    "EntropySource",
    "HashDrbgMechanism",
    "HealthTestedSource",
    "HmacDrbgMechanism",
    "HwRngSource",
    "InsecureDeterministicSourceForTests",
    "OsEntropySource",
    "PlatformTrngSource",
    "apt_cutoff",
    "ctr_drbg",
    "hash_drbg",
    "hmac_drbg",
    "rct_cutoff",
]

# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class EntropyHealthError(PlatformError):
    """An SP 800-90B health test failed, or a DRBG refuses to run after such a failure.

    ``test`` is ``"RCT"`` (repetition count, 4.4.1), ``"APT"`` (adaptive proportion, 4.4.2) or
    ``"HALTED"`` (a DRBG whose source failed earlier). ``phase`` is ``"startup"`` (4.3) or
    ``"continuous"``. ``sample_index`` is the 1-based number of the sample, counted from the
    source's last reset, at which the test fired; ``cutoff`` the cutoff it reached; ``value``
    the repeated sample value.
    """

    def __init__(
        self,
        source: str,
        test: str,
        message: str,
        *,
        phase: str = "continuous",
        sample_index: int | None = None,
        cutoff: int | None = None,
        value: int | None = None,
    ) -> None:
        self.source = source
        self.test = test
        self.phase = phase
        self.sample_index = sample_index
        self.cutoff = cutoff
        self.value = value
        super().__init__(f"entropy source {source!r}: {test} ({phase}): {message}")


class DrbgStateError(VeriteeError, RuntimeError):
    """A DRBG was used in a state that forbids it (uninstantiated, wrong options)."""


# ---------------------------------------------------------------------------------------------
# Entropy sources
# ---------------------------------------------------------------------------------------------


@runtime_checkable
class EntropySource(Protocol):
    """A source of raw entropy samples, one sample per byte.

    ``min_entropy_per_sample`` is the claimed min-entropy H of one 8-bit sample, in bits
    (0 < H <= 8; SP 800-90B section 3.1.5 calls it the entropy estimate per sample).
    """

    @property
    def name(self) -> str:
        """A short human-readable name used in errors."""
        ...

    @property
    def min_entropy_per_sample(self) -> float:
        """Claimed min-entropy per 8-bit sample, in bits."""
        ...

    def read(self, n: int) -> bytes:
        """Return exactly ``n`` samples (bytes) or raise."""
        ...


def _check_claim(h: float) -> float:
    if not 0 < h <= 8:
        raise ValueError(f"min-entropy per 8-bit sample must be in (0, 8], got {h}")
    return float(h)


class OsEntropySource:
    """The operating system's CSPRNG: ``os.getrandom`` (Linux getrandom(2)), else ``os.urandom``.

    Claims full entropy (8 bits per byte) by default: the kernel conditions its noise sources.
    """

    def __init__(self, *, min_entropy_per_sample: float = 8.0) -> None:
        self._h = _check_claim(min_entropy_per_sample)

    @property
    def name(self) -> str:
        """``"os"``."""
        return "os"

    @property
    def min_entropy_per_sample(self) -> float:
        """The claimed min-entropy per byte."""
        return self._h

    def read(self, n: int) -> bytes:
        """``n`` bytes from getrandom(2), looping over short reads."""
        if n < 0:
            raise ValueError("n must be >= 0")
        getrandom = getattr(os, "getrandom", None)
        if getrandom is None:  # pragma: no cover - non-Linux
            return os.urandom(n)
        out = bytearray()
        while len(out) < n:
            out += getrandom(n - len(out))
        return bytes(out)


class HwRngSource:
    """The kernel's hardware RNG device, ``/dev/hwrng`` (virtio-rng, TPM RNG, CPU TRNGs).

    Raises :class:`~veritee.errors.PlatformError` when the device is absent or unreadable.
    The default claim (4 bits per byte) is deliberately conservative: the kernel does not tell
    us the device's entropy rate, so pass the vendor's figure if you have one.
    """

    def __init__(
        self, path: str | os.PathLike[str] = "/dev/hwrng", *, min_entropy_per_sample: float = 4.0
    ) -> None:
        self._path = Path(path)
        self._h = _check_claim(min_entropy_per_sample)
        if not self._path.exists():
            raise PlatformError(f"hardware RNG {self._path} is not present")
        if not os.access(self._path, os.R_OK):
            raise PlatformError(f"hardware RNG {self._path} is not readable by this process")

    @property
    def name(self) -> str:
        """``"hwrng:<path>"``."""
        return f"hwrng:{self._path}"

    @property
    def min_entropy_per_sample(self) -> float:
        """The claimed min-entropy per byte."""
        return self._h

    def read(self, n: int) -> bytes:
        """``n`` bytes from the device; PlatformError if it fails or runs dry."""
        if n < 0:
            raise ValueError("n must be >= 0")
        out = bytearray()
        try:
            with self._path.open("rb", buffering=0) as dev:
                while len(out) < n:
                    chunk = dev.read(n - len(out))
                    if not chunk:
                        raise PlatformError(f"hardware RNG {self._path} returned no data")
                    out += chunk
        except OSError as exc:
            raise PlatformError(f"hardware RNG {self._path} failed: {exc}") from exc
        return bytes(out)


class _HasTrng(Protocol):
    def trng(self, n: int) -> bytes: ...


class PlatformTrngSource:
    """A TEE platform's true RNG: any object with ``trng(n) -> bytes``, or such a callable.

    For example the emulated secure processor, ``InsecureEmulatedSnpMachine.trng``. This module
    does not import ``veritee.platform``; the caller passes the object in.
    """

    def __init__(
        self,
        trng: _HasTrng | Callable[[int], bytes],
        *,
        name: str = "platform-trng",
        min_entropy_per_sample: float = 8.0,
    ) -> None:
        self._fn: Callable[[int], bytes] = trng if callable(trng) else trng.trng
        self._name = name
        self._h = _check_claim(min_entropy_per_sample)

    @property
    def name(self) -> str:
        """The name given at construction."""
        return self._name

    @property
    def min_entropy_per_sample(self) -> float:
        """The claimed min-entropy per byte."""
        return self._h

    def read(self, n: int) -> bytes:
        """``n`` bytes from the platform TRNG; PlatformError on a short or failed read."""
        if n < 0:
            raise ValueError("n must be >= 0")
        data = self._fn(n)
        if not isinstance(data, bytes | bytearray) or len(data) != n:
            raise PlatformError(f"{self._name}: TRNG returned a short or invalid read")
        return bytes(data)


class InsecureDeterministicSourceForTests:
    """**INSECURE. Tests only.** A reproducible "entropy" source with no entropy at all.

    Two modes: ``InsecureDeterministicSourceForTests(seed)`` streams SHA-256(seed || counter)
    blocks; :meth:`scripted` hands out a fixed list of chunks, each ``read`` taking the next one
    and requiring its exact length (used to feed known-answer vectors through :class:`Drbg`).
    Its min-entropy *claim* is configurable so tests can exercise health-test cutoffs; the claim
    is a lie by construction.
    """

    def __init__(self, seed: bytes = b"", *, min_entropy_per_sample: float = 8.0) -> None:
        self._seed = bytes(seed)
        self._h = _check_claim(min_entropy_per_sample)
        self._counter = 0
        self._buffer = bytearray()
        self._script: deque[bytes] | None = None

    @classmethod
    def scripted(
        cls, chunks: Iterable[bytes], *, min_entropy_per_sample: float = 8.0
    ) -> InsecureDeterministicSourceForTests:
        """A source returning exactly ``chunks`` in order, one per ``read``."""
        src = cls(min_entropy_per_sample=min_entropy_per_sample)
        src._script = deque(bytes(c) for c in chunks)
        return src

    @property
    def name(self) -> str:
        """``"INSECURE-deterministic"``."""
        return "INSECURE-deterministic"

    @property
    def min_entropy_per_sample(self) -> float:
        """The (false) claimed min-entropy per byte."""
        return self._h

    @property
    def remaining_chunks(self) -> int:
        """How many scripted chunks are left (0 in stream mode)."""
        return len(self._script) if self._script is not None else 0

    def read(self, n: int) -> bytes:
        """The next ``n`` deterministic bytes (or the next scripted chunk, of length ``n``)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        if self._script is not None:
            if not self._script:
                raise PlatformError("scripted test source is exhausted")
            chunk = self._script.popleft()
            if len(chunk) != n:
                raise ValueError(
                    f"scripted test source: next chunk has {len(chunk)} bytes, not {n}"
                )
            return chunk
        while len(self._buffer) < n:
            block = hashlib.sha256(self._seed + self._counter.to_bytes(8, "big")).digest()
            self._buffer += block
            self._counter += 1
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out


# ---------------------------------------------------------------------------------------------
# SP 800-90B health tests
# ---------------------------------------------------------------------------------------------

#: False-positive probability alpha = 2^-ALPHA_LOG2 (SP 800-90B 4.4 recommends 2^-20 <= alpha).
ALPHA_LOG2 = 20
#: APT window size W for binary sources (SP 800-90B 4.4.2).
APT_WINDOW_BINARY = 1024
#: APT window size W for non-binary sources: our 8-bit samples (SP 800-90B 4.4.2).
APT_WINDOW_NON_BINARY = 512
#: Minimum number of samples run through the health tests at start-up (SP 800-90B 4.3 (1)).
STARTUP_SAMPLES = 1024


def rct_cutoff(h: float, alpha_log2: int = ALPHA_LOG2) -> int:
    """Repetition Count Test cutoff, SP 800-90B section 4.4.1: ``C = 1 + ceil(-log2(alpha) / H)``.

    With alpha = 2^-alpha_log2 this is ``1 + ceil(alpha_log2 / H)``: the probability of C
    identical samples in a row from a source with min-entropy H is at most
    ``2^(-H (C-1)) <= alpha``.
    """
    _check_claim(h)
    return 1 + math.ceil(alpha_log2 / h)


def apt_cutoff(h: float, window: int = APT_WINDOW_NON_BINARY, alpha_log2: int = ALPHA_LOG2) -> int:
    """Adaptive Proportion Test cutoff, SP 800-90B section 4.4.2.

    The standard defines ``C = 1 + CRITBINOM(W, 2^-H, 1 - alpha)`` (Excel CRITBINOM: the
    smallest k with ``P(X <= k) >= 1 - alpha``), i.e. **the smallest C with
    P(X >= C) <= alpha for X ~ Binomial(W, p = 2^-H)**. With alpha = 2^-20 and W = 512 it
    gives H=0.5 -> 410, H=1 -> 311, H=2 -> 177, H=4 -> 62, H=8 -> 13.

    Computed exactly: ``P(X >= C) = sum_{k=C}^{W} comb(W, k) p^k (1-p)^(W-k)`` in rational
    arithmetic (``fractions.Fraction``; p is taken as the exact binary fraction of the float
    ``2**-H``), so no floating-point tail underflow can move the cutoff.

    Note: the test's counter B starts at 1 for the window's first sample, so the exact
    false-positive rate is ``P(Y >= C-1)`` with Y ~ Binomial(W-1, 2^-H); that differs from the
    tabulated formula by at most one in C (for example H=1 gives 310 with the W-1 form). We keep
    the normative formula so that the cutoffs match the standard's table.
    """
    _check_claim(h)
    if window < 2:
        raise ValueError("window must be >= 2")
    return _apt_cutoff(float(h), window, alpha_log2)


@functools.lru_cache(maxsize=64)
def _apt_cutoff(h: float, window: int, alpha_log2: int) -> int:
    # p = 2^-H as an exact fraction m / d (d a power of two). Scaling every term by d^W keeps
    # the sum in integers: comb(W, k) m^k (d - m)^(W-k) <= alpha d^W, alpha = 1 / 2^alpha_log2.
    p = Fraction(2.0**-h)
    m, d = p.numerator, p.denominator
    bound = d**window  # alpha * d^W * 2^alpha_log2
    # Walk the upper tail from k = W downwards: tail = P(X >= k) * d^W.
    tail = 0
    for k in range(window, -1, -1):
        tail += math.comb(window, k) * m**k * (d - m) ** (window - k)
        if tail << alpha_log2 > bound:
            return k + 1  # P(X >= k+1) <= alpha < P(X >= k)
    return 0  # pragma: no cover - the tail reaches 1 > alpha before k < 0


class HealthTestedSource:
    """Runs SP 800-90B health tests on every raw sample of ``source``.

    * Start-up (4.3): before the first output after construction or :meth:`reset`, at least
      ``startup_samples`` (>= 1024) samples are drawn, run through both tests and discarded.
    * Continuous (4.4): every sample returned by :meth:`read` first passes the Repetition Count
      Test (4.4.1) and the Adaptive Proportion Test (4.4.2, non-overlapping windows of W = 512
      8-bit samples).

    A failure raises :class:`EntropyHealthError`; the source then stays failed (every
    ``read`` raises) until :meth:`reset` is called, which also re-runs the start-up tests. The
    cutoffs come from the wrapped source's claimed min-entropy and alpha = 2^-20.
    """

    def __init__(
        self,
        source: EntropySource,
        *,
        alpha_log2: int = ALPHA_LOG2,
        window: int = APT_WINDOW_NON_BINARY,
        startup_samples: int = STARTUP_SAMPLES,
    ) -> None:
        if startup_samples < STARTUP_SAMPLES:
            raise ValueError("SP 800-90B 4.3 requires at least 1024 start-up samples")
        self._source = source
        h = source.min_entropy_per_sample
        self.rct_cutoff = rct_cutoff(h, alpha_log2)
        self.apt_cutoff = apt_cutoff(h, window, alpha_log2)
        self.window = window
        self.startup_samples = startup_samples
        self._lock = threading.Lock()
        self._failure: EntropyHealthError | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self._started = False
        self._samples = 0  # samples tested since the last reset
        self._rct_value = -1
        self._rct_count = 0
        self._apt_value = -1
        self._apt_count = 0
        self._apt_seen = 0  # samples seen in the current APT window

    @property
    def name(self) -> str:
        """``"health-tested:<inner name>"``."""
        return f"health-tested:{self._source.name}"

    @property
    def min_entropy_per_sample(self) -> float:
        """The wrapped source's claim (the tests check it; they do not change it)."""
        return self._source.min_entropy_per_sample

    @property
    def failed(self) -> bool:
        """True once a health test has failed, until :meth:`reset`."""
        return self._failure is not None

    @property
    def failure(self) -> EntropyHealthError | None:
        """The error that put the source in the failed state, if any."""
        return self._failure

    @property
    def samples_tested(self) -> int:
        """Samples run through the tests since construction or the last reset."""
        return self._samples

    def reset(self) -> None:
        """Clear a failure; the start-up tests run again before the next output (4.3)."""
        with self._lock:
            self._failure = None
            self._reset_state()

    def _test(self, data: bytes, phase: str) -> None:
        """Run RCT and APT over ``data``; raise (and latch the failure) on the first failure."""
        rct_c, apt_c, window = self.rct_cutoff, self.apt_cutoff, self.window
        rv, rc = self._rct_value, self._rct_count
        av, ac, seen = self._apt_value, self._apt_count, self._apt_seen
        n = self._samples
        try:
            for x in data:
                n += 1
                # SP 800-90B 4.4.1 Repetition Count Test: A = last value, B = run length.
                if x == rv:
                    rc += 1
                    if rc >= rct_c:
                        raise EntropyHealthError(
                            self._source.name,
                            "RCT",
                            f"sample value 0x{x:02x} repeated {rc} times (cutoff {rct_c})",
                            phase=phase,
                            sample_index=n,
                            cutoff=rct_c,
                            value=x,
                        )
                else:
                    rv, rc = x, 1
                # SP 800-90B 4.4.2 Adaptive Proportion Test: A = first sample of the window,
                # B = occurrences of A in the window (the first included).
                if seen == 0 or seen >= window:
                    av, ac, seen = x, 1, 1
                else:
                    seen += 1
                    if x == av:
                        ac += 1
                        if ac >= apt_c:
                            raise EntropyHealthError(
                                self._source.name,
                                "APT",
                                f"sample value 0x{x:02x} seen {ac} times in a window of "
                                f"{window} (cutoff {apt_c})",
                                phase=phase,
                                sample_index=n,
                                cutoff=apt_c,
                                value=x,
                            )
        except EntropyHealthError as exc:
            self._failure = exc
            self._samples = n
            raise
        self._rct_value, self._rct_count = rv, rc
        self._apt_value, self._apt_count, self._apt_seen = av, ac, seen
        self._samples = n

    def startup(self) -> None:
        """Run the SP 800-90B 4.3 start-up tests now (otherwise they run on the first read)."""
        with self._lock:
            self._startup_locked()

    def _startup_locked(self) -> None:
        if self._failure is not None:
            raise self._failure
        if not self._started:
            self._test(self._source.read(self.startup_samples), "startup")
            self._started = True

    def read(self, n: int) -> bytes:
        """``n`` samples that passed the continuous tests; EntropyHealthError otherwise."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            self._startup_locked()
            data = self._source.read(n)
            if len(data) != n:
                raise PlatformError(f"{self._source.name}: short read ({len(data)} of {n})")
            self._test(data, "continuous")
            return data


# ---------------------------------------------------------------------------------------------
# SP 800-90A Rev.1 DRBG mechanisms (section 10)
# ---------------------------------------------------------------------------------------------

#: Largest reseed_interval allowed (SP 800-90A Rev.1 Table 2 / Table 3: 2^48 requests).
MAX_RESEED_INTERVAL = 2**48
#: max_number_of_bits_per_request = 2^19 bits (Table 2 and Table 3), in bytes.
MAX_BYTES_PER_REQUEST = 2**19 // 8
# max_personalization_string_length / max_additional_input_length = 2^35 bits (Tables 2, 3).
_MAX_INPUT_BYTES = 2**35 // 8

# Security strength per hash (SP 800-90A Rev.1 Table 2 with SP 800-57 Part 1 Rev.5 Table 3).
_HASH_STRENGTH = {
    "SHA-1": 128,
    "SHA-224": 192,
    "SHA-512/224": 192,
    "SHA3-224": 192,
    "SHA-256": 256,
    "SHA-512/256": 256,
    "SHA3-256": 256,
    "SHA-384": 256,
    "SHA3-384": 256,
    "SHA-512": 256,
    "SHA3-512": 256,
}
# Hash_DRBG seedlen (Table 2): 440 bits for outlen <= 256, 888 bits for SHA-384/512. The SHA-3
# functions follow the same split by output length (as in the ACVP Hash_DRBG tests).
_HASH_SEEDLEN_BITS = {
    "SHA-1": 440,
    "SHA-224": 440,
    "SHA-512/224": 440,
    "SHA3-224": 440,
    "SHA-256": 440,
    "SHA-512/256": 440,
    "SHA3-256": 440,
    "SHA-384": 888,
    "SHA3-384": 888,
    "SHA-512": 888,
    "SHA3-512": 888,
}


def _canonical_hash(name: str) -> str:
    key = name.replace("SHA2-", "SHA-")
    if key not in _HASH_STRENGTH:
        raise ValueError(f"unsupported DRBG hash {name!r}")
    return key


def _wipe(buf: bytearray) -> None:
    buf[:] = bytes(len(buf))


class DrbgMechanism(Protocol):
    """The SP 800-90A section 10 algorithms of one DRBG, on explicitly given inputs.

    These are the ``*_Instantiate_algorithm`` / ``*_Reseed_algorithm`` /
    ``*_Generate_algorithm`` of section 10: no entropy gathering, no reseed-interval policy and
    no request-size checks; :class:`Drbg` (section 9) adds those. Use the mechanisms directly
    only for known-answer testing.
    """

    name: str
    security_strength: int  # bits
    seedlen: int  # bytes
    reseed_counter: int

    def instantiate(self, entropy_input: bytes, nonce: bytes, personalization: bytes) -> None:
        """The mechanism's Instantiate_algorithm."""
        ...

    def reseed(self, entropy_input: bytes, additional_input: bytes) -> None:
        """The mechanism's Reseed_algorithm."""
        ...

    def generate(self, n: int, additional_input: bytes) -> bytes:
        """The mechanism's Generate_algorithm (no reseed-interval check; that is section 9)."""
        ...

    def wipe(self) -> None:
        """Overwrite the internal state with zeros."""
        ...


class HmacDrbgMechanism:
    """HMAC_DRBG, SP 800-90A Rev.1 section 10.1.2, with any SHA-1/SHA-2/SHA-3 hash."""

    def __init__(self, hash_name: str = "SHA-256") -> None:
        self._hash_name = _canonical_hash(hash_name)
        self._alg = hash_algorithm(self._hash_name)
        self.outlen = self._alg.digest_size
        self.name = f"HMAC_DRBG({self._hash_name})"
        self.security_strength = _HASH_STRENGTH[self._hash_name]
        self.seedlen = self.outlen  # not used by HMAC_DRBG; kept for the protocol
        self._k = bytearray(self.outlen)
        self._v = bytearray(self.outlen)
        self.reseed_counter = 0

    def _mac(self, key: bytes | bytearray, *parts: bytes | bytearray) -> bytes:
        h = _hmac.HMAC(bytes(key), self._alg)
        for p in parts:
            h.update(bytes(p))
        return h.finalize()

    def _update(self, provided: bytes) -> None:
        # 10.1.2.2 HMAC_DRBG_Update.
        self._k[:] = self._mac(self._k, self._v, b"\x00", provided)
        self._v[:] = self._mac(self._k, self._v)
        if not provided:
            return
        self._k[:] = self._mac(self._k, self._v, b"\x01", provided)
        self._v[:] = self._mac(self._k, self._v)

    def instantiate(self, entropy_input: bytes, nonce: bytes, personalization: bytes) -> None:
        """10.1.2.3: Key = 0x00.., V = 0x01.., Update(entropy || nonce || perso)."""
        self._k[:] = bytes(self.outlen)
        self._v[:] = b"\x01" * self.outlen
        self._update(entropy_input + nonce + personalization)
        self.reseed_counter = 1

    def reseed(self, entropy_input: bytes, additional_input: bytes) -> None:
        """10.1.2.4: Update(entropy || additional_input); reseed_counter = 1."""
        self._update(entropy_input + additional_input)
        self.reseed_counter = 1

    def generate(self, n: int, additional_input: bytes) -> bytes:
        """10.1.2.5 steps 2-8 (step 1, the reseed check, is done by :class:`Drbg`)."""
        if additional_input:
            self._update(additional_input)  # step 2
        base = _hmac.HMAC(bytes(self._k), self._alg)  # one key schedule for the whole loop
        out = bytearray()
        v = bytes(self._v)
        while len(out) < n:  # step 4: V = HMAC(Key, V); temp = temp || V
            h = base.copy()
            h.update(v)
            v = h.finalize()
            out += v
        self._v[:] = v
        self._update(additional_input)  # step 6
        self.reseed_counter += 1  # step 7
        result = bytes(out[:n])
        _wipe(out)
        return result

    def wipe(self) -> None:
        """Zero Key and V; reseed_counter = 0."""
        _wipe(self._k)
        _wipe(self._v)
        self.reseed_counter = 0


class HashDrbgMechanism:
    """Hash_DRBG, SP 800-90A Rev.1 section 10.1.1, with any SHA-1/SHA-2/SHA-3 hash."""

    def __init__(self, hash_name: str = "SHA-256") -> None:
        self._hash_name = _canonical_hash(hash_name)
        self._alg = hash_algorithm(self._hash_name)
        self.outlen = self._alg.digest_size
        self.name = f"Hash_DRBG({self._hash_name})"
        self.security_strength = _HASH_STRENGTH[self._hash_name]
        self.seedlen = _HASH_SEEDLEN_BITS[self._hash_name] // 8
        self._mod = 1 << (8 * self.seedlen)
        self._v = bytearray(self.seedlen)
        self._c = bytearray(self.seedlen)
        self.reseed_counter = 0

    def _hash(self, *parts: bytes | bytearray) -> bytes:
        h = hashes.Hash(self._alg)
        for p in parts:
            h.update(bytes(p))
        return h.finalize()

    def _hash_df(self, data: bytes, nbytes: int) -> bytes:
        # 10.3.1 Hash_df: temp = Hash(counter || no_of_bits_to_return || input_string) ...
        bits = (8 * nbytes).to_bytes(4, "big")
        out = bytearray()
        counter = 1
        while len(out) < nbytes:
            out += self._hash(bytes([counter]), bits, data)
            counter += 1
        return bytes(out[:nbytes])

    def _add(self, *values: bytes | bytearray | int) -> bytes:
        total = 0
        for v in values:
            total += v if isinstance(v, int) else int.from_bytes(v, "big")
        return (total % self._mod).to_bytes(self.seedlen, "big")

    def instantiate(self, entropy_input: bytes, nonce: bytes, personalization: bytes) -> None:
        """10.1.1.2: V = Hash_df(entropy || nonce || perso), C = Hash_df(0x00 || V)."""
        self._v[:] = self._hash_df(entropy_input + nonce + personalization, self.seedlen)
        self._c[:] = self._hash_df(b"\x00" + bytes(self._v), self.seedlen)
        self.reseed_counter = 1

    def reseed(self, entropy_input: bytes, additional_input: bytes) -> None:
        """10.1.1.3: V = Hash_df(0x01 || V || entropy || add), C = Hash_df(0x00 || V)."""
        self._v[:] = self._hash_df(
            b"\x01" + bytes(self._v) + entropy_input + additional_input, self.seedlen
        )
        self._c[:] = self._hash_df(b"\x00" + bytes(self._v), self.seedlen)
        self.reseed_counter = 1

    def generate(self, n: int, additional_input: bytes) -> bytes:
        """10.1.1.4 steps 2-6 with Hashgen (10.1.1.4 step 3)."""
        if additional_input:  # step 2
            w = self._hash(b"\x02", self._v, additional_input)
            self._v[:] = self._add(self._v, w)
        # Hashgen: data = V; W = Hash(data) || Hash(data+1) || ...
        out = bytearray()
        data = int.from_bytes(self._v, "big")
        while len(out) < n:
            out += self._hash(data.to_bytes(self.seedlen, "big"))
            data = (data + 1) % self._mod
        h = self._hash(b"\x03", self._v)  # step 4
        self._v[:] = self._add(self._v, h, self._c, self.reseed_counter)  # step 5
        self.reseed_counter += 1  # step 6
        result = bytes(out[:n])
        _wipe(out)
        return result

    def wipe(self) -> None:
        """Zero V and C; reseed_counter = 0."""
        _wipe(self._v)
        _wipe(self._c)
        self.reseed_counter = 0


_BLOCK = 16  # AES block length (outlen), bytes


class CtrDrbgMechanism:
    """CTR_DRBG, SP 800-90A Rev.1 section 10.2.1, AES-128/192/256, with or without the df.

    ``ctr_len`` = blocklen (128 bits), so V is incremented modulo 2^128 (10.2.1.2 / 10.2.1.5.1
    step 4.1 with ctr_len = blocklen); that is exactly AES-CTR's counter, so output blocks come
    from one AES-CTR encryption of zeros starting at V+1.
    """

    def __init__(self, key_bits: int = 256, *, derivation_function: bool = True) -> None:
        if key_bits not in (128, 192, 256):
            raise ValueError("CTR_DRBG supports AES-128, AES-192 and AES-256 only")
        self.keylen = key_bits // 8
        self.seedlen = self.keylen + _BLOCK  # Table 3: seedlen = outlen + keylen
        self.security_strength = key_bits
        self.derivation_function = derivation_function
        self.name = f"CTR_DRBG(AES-{key_bits}{'' if derivation_function else ', no df'})"
        self._key = bytearray(self.keylen)
        self._v = bytearray(_BLOCK)
        self.reseed_counter = 0

    def _ctr_stream(self, key: bytes | bytearray, v: bytes | bytearray, nbytes: int) -> bytes:
        """E(K, V+1) || E(K, V+2) || ... truncated to nbytes (V incremented mod 2^128)."""
        start = ((int.from_bytes(v, "big") + 1) % (1 << 128)).to_bytes(_BLOCK, "big")
        enc = Cipher(algorithms.AES(bytes(key)), modes.CTR(start)).encryptor()
        return enc.update(bytes(nbytes)) + enc.finalize()

    def _update(self, provided: bytes) -> None:
        # 10.2.1.2 CTR_DRBG_Update: temp = E(K, V+1) || ...; temp ^= provided; Key || V = temp.
        temp = self._ctr_stream(self._key, self._v, self.seedlen)
        mixed = bytes(a ^ b for a, b in zip(temp, provided, strict=True))
        self._key[:] = mixed[: self.keylen]
        self._v[:] = mixed[self.keylen :]

    def _df(self, data: bytes) -> bytes:
        # 10.3.2 Block_Cipher_df, returning seedlen bytes.
        nbytes = self.seedlen
        s = len(data).to_bytes(4, "big") + nbytes.to_bytes(4, "big") + data + b"\x80"
        s += bytes(-len(s) % _BLOCK)
        k = bytes(range(32))[: self.keylen]
        temp = bytearray()
        i = 0
        while len(temp) < self.keylen + _BLOCK:
            iv = i.to_bytes(4, "big") + bytes(_BLOCK - 4)
            temp += self._bcc(k, iv + s)
            i += 1
        k2, x = bytes(temp[: self.keylen]), bytes(temp[self.keylen : self.keylen + _BLOCK])
        # X = E(K, X) repeatedly == CBC encryption of zero blocks with IV = X.
        nblocks = -(-nbytes // _BLOCK)
        enc = Cipher(algorithms.AES(k2), modes.CBC(x)).encryptor()
        out = enc.update(bytes(nblocks * _BLOCK)) + enc.finalize()
        return out[:nbytes]

    @staticmethod
    def _bcc(key: bytes, data: bytes) -> bytes:
        # 10.3.3 BCC: CBC-MAC with a zero IV = last block of CBC encryption.
        enc = Cipher(algorithms.AES(key), modes.CBC(bytes(_BLOCK))).encryptor()
        return (enc.update(data) + enc.finalize())[-_BLOCK:]

    def _pad(self, data: bytes, what: str) -> bytes:
        if len(data) > self.seedlen:
            raise ValueError(f"without a df, {what} must be at most seedlen bytes")
        return data + bytes(self.seedlen - len(data))

    def instantiate(self, entropy_input: bytes, nonce: bytes, personalization: bytes) -> None:
        """10.2.1.3.1 (no df: seed = entropy XOR perso) / 10.2.1.3.2 (df)."""
        if self.derivation_function:
            seed = self._df(entropy_input + nonce + personalization)
        else:
            if len(entropy_input) != self.seedlen:
                raise ValueError("without a df, entropy_input must be exactly seedlen bytes")
            perso = self._pad(personalization, "personalization")
            seed = bytes(a ^ b for a, b in zip(entropy_input, perso, strict=True))
        self._key[:] = bytes(self.keylen)
        self._v[:] = bytes(_BLOCK)
        self._update(seed)
        self.reseed_counter = 1

    def reseed(self, entropy_input: bytes, additional_input: bytes) -> None:
        """10.2.1.4.1 (no df) / 10.2.1.4.2 (df)."""
        if self.derivation_function:
            seed = self._df(entropy_input + additional_input)
        else:
            if len(entropy_input) != self.seedlen:
                raise ValueError("without a df, entropy_input must be exactly seedlen bytes")
            add = self._pad(additional_input, "additional_input")
            seed = bytes(a ^ b for a, b in zip(entropy_input, add, strict=True))
        self._update(seed)
        self.reseed_counter = 1

    def generate(self, n: int, additional_input: bytes) -> bytes:
        """10.2.1.5.1 / 10.2.1.5.2 steps 2-8 (the reseed check is done by :class:`Drbg`)."""
        if additional_input:  # step 2
            add = (
                self._df(additional_input)
                if self.derivation_function
                else self._pad(additional_input, "additional_input")
            )
            self._update(add)
        else:
            add = bytes(self.seedlen)
        nblocks = -(-n // _BLOCK)
        out = self._ctr_stream(self._key, self._v, nblocks * _BLOCK)  # steps 3-4
        self._v[:] = ((int.from_bytes(self._v, "big") + nblocks) % (1 << 128)).to_bytes(
            _BLOCK, "big"
        )
        self._update(add)  # step 6
        self.reseed_counter += 1  # step 7
        return out[:n]

    def wipe(self) -> None:
        """Zero Key and V; reseed_counter = 0."""
        _wipe(self._key)
        _wipe(self._v)
        self.reseed_counter = 0


# ---------------------------------------------------------------------------------------------
# SP 800-90A Rev.1 section 9: the DRBG functions around a mechanism
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Inputs:
    entropy_bytes: int
    nonce_bytes: int


class Drbg:
    """An instantiated DRBG: SP 800-90A Rev.1 section 9 around a section 10 mechanism.

    Instantiation (9.1) happens in the constructor: entropy and (unless given) a nonce are read
    from ``source``. ``generate`` (9.3.1) enforces the 2^19-bit request limit, reseeds from the
    source when the reseed counter exceeds ``reseed_interval`` and, with
    ``prediction_resistance=True``, reseeds before every such request (9.3.1 step 7).

    If the source is a :class:`HealthTestedSource` and a health test fails (during a reseed
    here, or on a read by anyone else), the DRBG **halts**: every ``generate`` raises
    :class:`EntropyHealthError` until :meth:`reseed` succeeds from a healthy source (the same
    source after ``reset()``, or another one passed to :meth:`reseed`).

    Beyond section 9 (issue 16): ``prediction_resistance=True`` makes *every* generate reseed
    (including :meth:`random_bytes`), so a source that dies after seeding is noticed at the
    next request; a DRBG used in a process forked from the one that instantiated it reseeds
    first, with the new process id as additional input, so parent and child never share
    output; and every (re)seed input from a source that is not a
    :class:`HealthTestedSource` goes through a gross-failure check (a run of identical
    samples at alpha = 2^-40, or the same input as last time), halting the DRBG on failure.

    ``entropy_input_bytes`` overrides how many bytes are requested per (re)seed; by default
    ``ceil(security_strength / H)`` bytes (section 8.6.5: entropy_input carries at least
    security_strength bits of min-entropy), or exactly seedlen for CTR_DRBG without a df
    (10.2.1.3.1, which also requires a full-entropy source).
    """

    def __init__(
        self,
        mechanism: DrbgMechanism,
        source: EntropySource,
        *,
        personalization: bytes = b"",
        nonce: bytes | None = None,
        prediction_resistance: bool = False,
        reseed_interval: int = MAX_RESEED_INTERVAL,
        entropy_input_bytes: int | None = None,
    ) -> None:
        if not 1 <= reseed_interval <= MAX_RESEED_INTERVAL:
            raise ValueError(f"reseed_interval must be in 1..2^48, got {reseed_interval}")
        if len(personalization) > _MAX_INPUT_BYTES:
            raise ValueError("personalization string longer than 2^35 bits (9.1 step 3)")
        self._mech = mechanism
        self._source = source
        self._lock = threading.Lock()
        self.prediction_resistance = prediction_resistance
        self.reseed_interval = reseed_interval
        self._no_df = isinstance(mechanism, CtrDrbgMechanism) and not mechanism.derivation_function
        self._entropy_override = entropy_input_bytes
        self._halted: EntropyHealthError | None = None
        self._instantiated = False
        self._last_input: bytes | None = None  # digest of the last entropy input
        self._pid = os.getpid()
        strength = mechanism.security_strength
        inputs = self._inputs(source)
        # 9.1 step 6: entropy_input; step 8: nonce (8.6.7: >= security_strength/2 bits of
        # entropy); CTR_DRBG without a df takes no nonce (10.2.1.3.1).
        entropy = self._read(source, inputs.entropy_bytes)
        self._check_input(source, entropy)
        if nonce is None:
            nonce = b"" if self._no_df else self._read(source, inputs.nonce_bytes)
        elif self._no_df and nonce:
            raise ValueError("CTR_DRBG without a derivation function takes no nonce")
        mechanism.instantiate(entropy, nonce, personalization)
        self._instantiated = True
        self.security_strength = strength
        _LIVE.add(self)

    # -- helpers ------------------------------------------------------------------------------

    def _inputs(self, source: EntropySource) -> _Inputs:
        if self._no_df:
            if self._entropy_override not in (None, self._mech.seedlen):
                raise ValueError("CTR_DRBG without a df needs exactly seedlen entropy bytes")
            if source.min_entropy_per_sample < 8:
                raise ValueError("CTR_DRBG without a df needs a full-entropy source (10.2.1)")
            return _Inputs(self._mech.seedlen, 0)
        h = source.min_entropy_per_sample
        strength = self._mech.security_strength
        n = self._entropy_override or math.ceil(strength / h)
        return _Inputs(n, math.ceil(strength / 2 / h))

    def _read(self, source: EntropySource, n: int) -> bytes:
        data = source.read(n)
        if len(data) != n:
            raise PlatformError(f"{source.name}: short entropy read ({len(data)} of {n})")
        return data

    def _check_input(self, source: EntropySource, entropy: bytes) -> None:
        """Gross-failure test of an entropy input from a source with no health tests of its
        own (a :class:`HealthTestedSource` already ran SP 800-90B 4.4 on every sample)."""
        if isinstance(source, HealthTestedSource):
            return
        cutoff = rct_cutoff(source.min_entropy_per_sample, _INPUT_ALPHA_LOG2)
        run, prev = 0, -1
        for x in entropy:
            run = run + 1 if x == prev else 1
            prev = x
            if run >= cutoff:
                raise self._halt(EntropyHealthError(
                    source.name, "RCT", f"sample value 0x{x:02x} repeated {run} times in one "
                    f"entropy input (cutoff {cutoff})", cutoff=cutoff, value=x))
        digest = hashlib.sha256(entropy).digest()
        if digest == self._last_input:
            raise self._halt(EntropyHealthError(
                source.name, "REPEAT", "the entropy input repeats the previous one"))
        self._last_input = digest

    def _halt(self, exc: EntropyHealthError) -> EntropyHealthError:
        self._halted = exc
        return exc

    def _check_usable(self) -> None:
        if not self._instantiated:
            raise DrbgStateError(f"{self._mech.name} is uninstantiated")

    def _check_health(self) -> None:
        src = self._source
        if isinstance(src, HealthTestedSource) and src.failed and self._halted is None:
            failure = src.failure
            assert failure is not None
            self._halted = failure
        if self._halted is not None:
            raise EntropyHealthError(
                self._source.name,
                "HALTED",
                f"{self._mech.name} refuses output after an entropy health failure "
                f"({self._halted.test}); reseed from a healthy source first",
            ) from self._halted

    def _reseed_locked(self, additional_input: bytes, source: EntropySource) -> None:
        # 9.2 Reseed_function: entropy_input from the source, then the mechanism's algorithm.
        if len(additional_input) > _MAX_INPUT_BYTES:
            raise ValueError("additional input longer than 2^35 bits (9.2 step 3)")
        try:
            entropy = self._read(source, self._inputs(source).entropy_bytes)
        except EntropyHealthError as exc:
            self._halted = exc
            raise
        self._check_input(source, entropy)
        self._mech.reseed(entropy, additional_input)
        self._source = source
        self._halted = None

    # -- public API -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The mechanism's name, e.g. ``HMAC_DRBG(SHA-256)``."""
        return self._mech.name

    @property
    def instantiated(self) -> bool:
        """False after :meth:`uninstantiate`."""
        return self._instantiated

    @property
    def reseed_counter(self) -> int:
        """Requests since the last (re)seed, plus one (SP 800-90A 10.x ``reseed_counter``)."""
        return self._mech.reseed_counter

    @property
    def halted(self) -> bool:
        """True after an entropy health failure, until a successful reseed."""
        with self._lock:
            try:
                self._check_health()
            except EntropyHealthError:
                return True
            return False

    def reseed(self, additional_input: bytes = b"", *, source: EntropySource | None = None) -> None:
        """SP 800-90A 9.2: reseed from ``source`` (default: the current one).

        A successful reseed from a healthy source clears a halt; the new source is kept.
        """
        with self._lock:
            self._check_usable()
            src = source if source is not None else self._source
            if isinstance(src, HealthTestedSource) and src.failed:
                self._halted = src.failure
                raise EntropyHealthError(
                    src.name, "HALTED", "cannot reseed from a failed source; reset it first"
                ) from src.failure
            self._reseed_locked(additional_input, src)

    def generate(
        self, n: int, additional_input: bytes = b"", *, prediction_resistance: bool | None = None
    ) -> bytes:
        """SP 800-90A 9.3.1: ``n`` pseudorandom bytes (at most 2^19 bits per request).

        ``prediction_resistance`` defaults to the instance's flag, so a DRBG instantiated
        with prediction resistance reseeds before every request unless a caller explicitly
        passes False for one request.
        """
        if not 0 <= n <= MAX_BYTES_PER_REQUEST:
            raise ValueError(f"request of {n} bytes outside 0..{MAX_BYTES_PER_REQUEST} (2^19 bits)")
        if len(additional_input) > _MAX_INPUT_BYTES:
            raise ValueError("additional input longer than 2^35 bits (9.3.1 step 4)")
        if prediction_resistance is None:
            prediction_resistance = self.prediction_resistance
        with self._lock:
            self._check_usable()
            pid = os.getpid()
            if pid != self._pid:
                # A forked child holds a copy of the parent's state: reseed, with the new PID
                # as additional input so outputs differ even if the source repeats itself.
                self._check_health()
                self._reseed_locked(b"veritee-drbg-fork" + pid.to_bytes(8, "little"),
                                    self._source)
                self._pid = pid
            if prediction_resistance and not self.prediction_resistance:
                # 9.3.1 step 5: PR requested from an instantiation that does not support it.
                raise DrbgStateError(f"{self.name} was instantiated without prediction resistance")
            self._check_health()
            # 9.3.1 step 7: reseed first when prediction resistance is requested, or (step 7 via
            # the algorithm's step 1) when reseed_counter > reseed_interval.
            if prediction_resistance or self._mech.reseed_counter > self.reseed_interval:
                self._reseed_locked(additional_input, self._source)
                additional_input = b""  # 9.3.1 step 7.4
            return self._mech.generate(n, additional_input)

    def random_bytes(self, n: int) -> bytes:
        """``n`` bytes, split into requests of at most 2^19 bits."""
        parts = []
        while n > 0:
            k = min(n, MAX_BYTES_PER_REQUEST)
            parts.append(self.generate(k))
            n -= k
        return b"".join(parts)

    def uninstantiate(self) -> None:
        """SP 800-90A 9.4: wipe the internal state; further use raises DrbgStateError."""
        with self._lock:
            self._mech.wipe()
            self._instantiated = False


# Instances alive in this process, so a fork child can replace locks a parent thread held.
_LIVE: weakref.WeakSet[Drbg] = weakref.WeakSet()
# The in-DRBG check on raw inputs is only a gross-failure detector (stuck-at sources): a much
# smaller alpha than SP 800-90B's 2^-20 keeps false alarms negligible on short inputs.
_INPUT_ALPHA_LOG2 = 40


def _after_fork_in_child() -> None:
    # A lock another parent thread held at fork() is held forever in the child: replace it.
    for drbg in list(_LIVE):
        drbg._lock = threading.Lock()
        if isinstance(drbg._source, HealthTestedSource):
            drbg._source._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class DrbgOptions(TypedDict, total=False):
    """Keyword options of :class:`Drbg` accepted by the factory functions."""

    personalization: bytes
    nonce: bytes | None
    prediction_resistance: bool
    reseed_interval: int
    entropy_input_bytes: int | None


def hmac_drbg(
    source: EntropySource, hash_name: str = "SHA-256", **options: Unpack[DrbgOptions]
) -> Drbg:
    """An instantiated HMAC_DRBG (SP 800-90A 10.1.2); ``options`` as for :class:`Drbg`."""
    return Drbg(HmacDrbgMechanism(hash_name), source, **options)


def hash_drbg(
    source: EntropySource, hash_name: str = "SHA-256", **options: Unpack[DrbgOptions]
) -> Drbg:
    """An instantiated Hash_DRBG (SP 800-90A 10.1.1); ``options`` as for :class:`Drbg`."""
    return Drbg(HashDrbgMechanism(hash_name), source, **options)


def ctr_drbg(
    source: EntropySource,
    cipher: Literal["AES-128", "AES-192", "AES-256"] = "AES-256",
    *,
    derivation_function: bool = True,
    **options: Unpack[DrbgOptions],
) -> Drbg:
    """An instantiated CTR_DRBG (SP 800-90A 10.2.1); ``options`` as for :class:`Drbg`."""
    bits = {"AES-128": 128, "AES-192": 192, "AES-256": 256}[cipher]
    mech = CtrDrbgMechanism(bits, derivation_function=derivation_function)
    return Drbg(mech, source, **options)
