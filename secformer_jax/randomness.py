"""The dealer's randomness: ChaCha20 keystreams (the `cryptography` package), one independent stream per
named mask, keyed from `os.urandom` per run.

One owner per run: a `Dealer` is the only source of dealt randomness in a run. Every mask of the run (each
GeLU site, each product's A, each kernel's B, in every stage and program) is a stream `dealer.stream(name)`
under a unique name; a stage or program draws through `dealer.scope(prefix)`, a view that adds its prefix to
every name and shares the run's record of used names. Reuse is refused by construction, not by a test:

- a name is used once per dealer (its scopes included): a second `stream(name)` raises;
- a `Stream` is built only here (`Dealer.stream`, and `expand` for the parties' seed expansion): its
  constructor refuses callers without this module's token;
- a key is used by one dealer per process: `Dealer()` draws a fresh 32-byte key from `os.urandom` and
  refuses one already in use (a collision has probability 2^-256; a repeat means a broken `os.urandom`);
  keys cannot be passed in.

Every dealt value (the GeLU mask T, its words h and h', the fixed-mask A and B) is uniform on a power-of-two
range, so it is read straight off the keystream's bits: no rejection, no bias. Stream `name` of key K is
ChaCha20(K, nonce = SHA-256(name)[:16]) (a 16-byte ChaCha20 nonce, counter included), so two names never
share keystream and nothing about one stream follows from another (ChaCha20 is a PRF). numpy's generators
(PCG64) are not used for masks: their state is recoverable from their outputs.

`Dealer.from_seed(n)` derives the key from an integer: for benchmarks that must repeat a run exactly (the
bench's `--dealer-seed`, recorded in its JSON); its runs claim no privacy (`program.privacy`). Seeded
dealers are exempt from the one-key-per-process rule, so a benchmark can repeat itself.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

KEY_BYTES = 32
_TOKEN = object()  # only this module builds streams
_KEYS_IN_USE: set[bytes] = set()  # SHA-256 of every unseeded dealer key of this process


class Stream:
    """One ChaCha20 keystream, read in order. Built by `Dealer.stream` or `expand` only."""

    def __init__(self, key: bytes, name: str, token: object = None):
        if token is not _TOKEN:
            raise TypeError("a Stream is drawn from the run's Dealer (Dealer.stream) or a received seed (randomness.expand)")
        if len(key) != KEY_BYTES:
            raise ValueError(f"a dealer key is {KEY_BYTES} bytes, got {len(key)}")
        nonce = hashlib.sha256(name.encode()).digest()[:16]
        self._encryptor = Cipher(algorithms.ChaCha20(key, nonce), mode=None).encryptor()

    def bytes(self, n: int) -> bytes:
        return self._encryptor.update(bytes(n))  # the keystream itself: ChaCha20 of zeros

    def uint64(self, shape) -> np.ndarray:
        """Uniform on the ring Z_2^64."""
        n = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(self.bytes(8 * n), dtype="<u8").reshape(shape).copy()

    def int32(self, shape) -> np.ndarray:
        """Uniform int32 words."""
        n = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(self.bytes(4 * n), dtype="<i4").reshape(shape).copy()

    def below_pow2(self, shape, bits: int) -> np.ndarray:
        """Uniform on {0, ..., 2^bits - 1} (bits <= 31) as int32."""
        if not 0 < bits <= 31:
            raise ValueError(f"bits must be in [1, 31], got {bits}")
        return (self.int32(shape) & np.int32((1 << bits) - 1)).astype(np.int32)


def expand(seed: bytes, name: str, shape) -> np.ndarray:
    """The uint64 ring values that the 32-byte `seed` expands to under `name` (seed-based dealing: the dealer
    and the party holding the seed compute the same share, `dealing.py`)."""
    return Stream(seed, name, _TOKEN).uint64(shape)


def fresh_seed() -> bytes:
    """A one-time 32-byte seed from `os.urandom` (one per share per deal, `dealing.deal`)."""
    return os.urandom(KEY_BYTES)


class Dealer:
    """A run's dealer randomness: `stream(name)` is the keystream of one mask, each name once. A fresh key per
    `Dealer()`; `scope(prefix)` for a stage or program of the same run."""

    def __init__(self):
        self._init(os.urandom(KEY_BYTES), seeded=False)

    def _init(self, key: bytes, seeded: bool, prefix: str = "", used: set[str] | None = None) -> None:
        digest = hashlib.sha256(key).digest()
        if used is None and not seeded:
            if digest in _KEYS_IN_USE:
                raise RuntimeError("os.urandom returned a dealer key already in use in this process: refusing to reuse masks")
            _KEYS_IN_USE.add(digest)
        self.__key, self.seeded, self.prefix = key, seeded, prefix
        self._used: set[str] = set() if used is None else used

    @classmethod
    def from_seed(cls, seed: int) -> "Dealer":
        """A reproducible dealer (benchmarks only: the key follows from the seed; runs claim no privacy)."""
        dealer = cls.__new__(cls)
        dealer._init(hashlib.sha256(f"secformer-jax dealer seed {int(seed)}".encode()).digest(), seeded=True)
        return dealer

    def scope(self, prefix: str) -> "Dealer":
        """The same run's dealer with `prefix/` before every stream name (a stage or program of the run)."""
        if not prefix or "/" in prefix:
            raise ValueError(f"a dealer scope is one non-empty name without '/', got {prefix!r}")
        view = Dealer.__new__(Dealer)
        view._init(self.__key, self.seeded, f"{self.prefix}{prefix}/", self._used)
        return view

    def stream(self, name: str) -> Stream:
        """The keystream of mask `name` (under this view's prefix); each full name once per run."""
        full = self.prefix + name
        if full in self._used:
            raise ValueError(f"the dealer's stream {full!r} was already used in this run: a mask must not be reused")
        self._used.add(full)
        return Stream(self.__key, full, _TOKEN)
