"""The dealer's randomness: ChaCha20 keystreams (the `cryptography` package), one independent stream per
named mask, keyed from `os.urandom` per run.

Every dealt value (the GeLU mask T, its words h and h', the fixed-mask A and B) is uniform on a power-of-two
range, so it is read straight off the keystream's bits: no rejection, no bias. A key is 32 bytes; stream
`name` of key K is ChaCha20(K, nonce = SHA-256(name)[:16]) (a 16-byte ChaCha20 nonce, counter included),
so two names never share keystream and nothing about one stream follows from another (ChaCha20 is a PRF).
numpy's generators (PCG64) are not used for masks: their state is recoverable from their outputs.

`Dealer.from_seed(n)` derives the key from an integer: for benchmarks that must repeat a run exactly (the
bench's `--dealer-seed`, recorded in its JSON); never for an inference.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

KEY_BYTES = 32


class Stream:
    """One ChaCha20 keystream, read in order."""

    def __init__(self, key: bytes, name: str):
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


class Dealer:
    """A run's dealer randomness: `stream(name)` is the keystream of one mask. Fresh key per `Dealer()`."""

    def __init__(self, key: bytes | None = None):
        self.key = os.urandom(KEY_BYTES) if key is None else key
        self._used: set[str] = set()
        self.seeded = False

    @classmethod
    def from_seed(cls, seed: int) -> "Dealer":
        """A reproducible dealer (benchmarks only: the key follows from the seed)."""
        dealer = cls(hashlib.sha256(f"secformer-jax dealer seed {int(seed)}".encode()).digest())
        dealer.seeded = True
        return dealer

    def stream(self, name: str) -> Stream:
        """The keystream of mask `name`; each name once per dealer (a reused stream is a reused mask)."""
        if name in self._used:
            raise ValueError(f"the dealer's stream {name!r} was already used in this run: a mask must not be reused")
        self._used.add(name)
        return Stream(self.key, name)
