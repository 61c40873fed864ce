"""Statistical checks of what parties see, on all 64 bits of ring elements (uint64)."""

import itertools

import numpy as np
from scipy import stats

WORD = 2.0**32


def words_pvalue(words: np.ndarray) -> float:
    """KS p-value of 32-bit words (any integer dtype, taken mod 2^32) against the uniform distribution."""
    u = (np.asarray(words).astype(np.uint64).ravel() & np.uint64(0xFFFFFFFF)).astype(np.float64) / WORD
    return stats.kstest(u, "uniform").pvalue


def ring_pvalue(values: np.ndarray) -> float:
    """The smaller KS p-value of the high and the low 32-bit words of ring elements (uint64): uniform on
    the whole ring Z_2^64 only if both are."""
    v = np.asarray(values, np.uint64).ravel()
    return min(words_pvalue(v >> np.uint64(32)), words_pvalue(v))


def below_pvalue(values: np.ndarray, modulus: int) -> float:
    """KS p-value of non-negative integers against the uniform distribution on {0, ..., modulus - 1}."""
    return stats.kstest(np.asarray(values, np.float64).ravel() / modulus, "uniform").pvalue


def pairwise(arrays: list[np.ndarray]):
    """Every pair (i, j, a_i, a_j) of flattened ring arrays, cut to their common length."""
    flat = [np.asarray(a, np.uint64).ravel() for a in arrays]
    for i, j in itertools.combinations(range(len(flat)), 2):
        n = min(flat[i].size, flat[j].size)
        yield i, j, flat[i][:n], flat[j][:n]


def as_ring(a: np.ndarray) -> np.ndarray:
    """int32 (sign-extended, as SPU encodes it) or uint64 arrays as ring elements."""
    a = np.asarray(a)
    return a.astype(np.int64).astype(np.uint64) if a.dtype == np.int32 else a.astype(np.uint64)
