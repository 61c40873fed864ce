"""Goldschmidt iterations for division and inverse square root, deflated by public powers of two.

Fixed-point facts these kernels are built around (SPU FM64: f = 18 fractional bits):
- multiplying by a public 2^-j (j <= f) costs one truncation and is exact up to it, while a constant 1/B
  with B not a power of two is encoded with relative error up to 2^-f B;
- a secret below ~2^-12 keeps only a few significant bits. So a deflated input y = v 2^-k is never stored
  as such: the iteration carries Y = v 2^-(k - s) (`s` headroom bits keep the smallest input's value near
  2^-4) and forms y = Y 2^-s only inside the multiplier m, where an absolute error of 2^-f is harmless.

The iteration counts come from public bounds [lo, hi] on the input: `iterations_for_*` runs the same
recurrence in float64 at both ends of the range and returns the smallest count that meets `tol`.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

MAX_ITERS = 40
_HEADROOM_TARGET = -4  # log2 of the smallest carried value Y


def _pow2(x, exponent: int):
    """x * 2^exponent as multiplications by public powers of two of at most 2^-8 each (encodable at f = 18)."""
    while exponent < -8:
        x, exponent = x * 2.0**-8, exponent + 8
    return x * 2.0**exponent


def _deflation(lo: float, hi: float, span: float, even: bool = False) -> tuple[int, int]:
    """(k, s): hi * 2^-k < span, and s >= 0 headroom bits so that lo * 2^-(k - s) >= 2^-4."""
    if not 0 < lo < hi:
        raise ValueError(f"need public bounds 0 < lo < hi, got lo={lo}, hi={hi}")
    k = max(0, math.floor(math.log2(hi / span)) + 1)
    if even:
        k += k % 2
    s = max(0, _HEADROOM_TARGET - math.floor(math.log2(lo)) + k)
    s = min(s, k)  # never carry more than the undeflated value
    if even:
        s -= s % 2
    return k, s


def _div_steps(y: np.ndarray, iters: int) -> np.ndarray:
    r = np.ones_like(y)
    for _ in range(iters):
        m = 2.0 - y
        r, y = r * m, y * m
    return r


def _rsqrt_steps(x: np.ndarray, iters: int) -> np.ndarray:
    r = np.ones_like(x)
    for _ in range(iters):
        m = 1.5 - 0.5 * x
        r, x = r * m, x * m * m
    return r


def iterations_for_reciprocal(lo: float, hi: float, tol: float = 1e-4) -> int:
    """Goldschmidt division iterations so that 1/v has relative error <= tol on [lo, hi] (float64)."""
    k, _ = _deflation(lo, hi, span=1.0)
    y = np.array([lo, hi]) * 2.0**-k
    for n in range(1, MAX_ITERS + 1):
        if np.max(np.abs(_div_steps(y, n) * y - 1.0)) <= tol:
            return n
    raise ValueError(f"[{lo}, {hi}] needs more than {MAX_ITERS} Goldschmidt iterations")


def iterations_for_rsqrt(lo: float, hi: float, tol: float = 1e-4) -> int:
    """Goldschmidt rsqrt iterations so that 1/sqrt(v) has relative error <= tol on [lo, hi] (float64)."""
    k, _ = _deflation(lo, hi, span=2.0, even=True)
    x = np.array([lo, hi]) * 2.0**-k
    for n in range(1, MAX_ITERS + 1):
        if np.max(np.abs(_rsqrt_steps(x, n) * np.sqrt(x) - 1.0)) <= tol:
            return n
    raise ValueError(f"[{lo}, {hi}] needs more than {MAX_ITERS} Goldschmidt rsqrt iterations")


def _scaled_reciprocal(v, lo: float, hi: float, tol: float):
    """(r, k) with r ~ 2^k / v: the Goldschmidt iteration on y = v 2^-k, before the final deflation."""
    k, s = _deflation(lo, hi, span=1.0)
    n = iterations_for_reciprocal(lo, hi, tol)
    big_y = _pow2(v, s - k)
    r = jnp.ones_like(v)
    for _ in range(n):
        m = 2.0 - _pow2(big_y, -s)
        r, big_y = r * m, big_y * m
    return r, k


def goldschmidt_div(num, den, *, lo: float, hi: float, tol: float = 1e-4):
    """num / den for a secret den in the public range [lo, hi] (Π_Div).

    Deflate: y = den 2^-k in (0, 1) (k from hi). Repeat {m = 2 - y; r = r m; y = y m}: y_n = 1 - (1 - y)^(2^n),
    so r_n -> 1/y with relative error (1 - y)^(2^n); n is the smallest count meeting `tol` at y = lo 2^-k
    (`iterations_for_reciprocal`; e.g. [16, 609408] needs 20, [0.5, 8] needs 9). Then
    num / den = (num r) 2^-k: the numerator is multiplied in before the deflation is undone, so a quotient
    that is representable keeps its precision even when 1/den alone would underflow the fixed point.
    Below lo the error grows; den >= 2^(k+1) diverges.
    Fixed point (f = 18): y is carried as Y = y 2^s so its relative precision stays ~2^-14 (module doc);
    measured under SPU ABY3 FM64: relative error < 3e-3 for den on [lo, hi] (tests/test_approx_spu.py).
    """
    r, k = _scaled_reciprocal(den, lo, hi, tol)
    return _pow2(num * r, -k)


def goldschmidt_reciprocal(v, *, lo: float, hi: float, tol: float = 1e-4):
    """1/v for v in [lo, hi]: `goldschmidt_div(1, v)`. 1/v must itself be representable (> 2^-f)."""
    return goldschmidt_div(jnp.ones_like(v), v, lo=lo, hi=hi, tol=tol)


def goldschmidt_rsqrt(v, *, lo: float, hi: float, tol: float = 1e-4):
    """1/sqrt(v) for a secret v in the public range [lo, hi] (Π_LayerNorm's core).

    Deflate: x = v 2^-k in (0, 2) with k even (from hi). Repeat {m = (3 - x)/2; x = x m^2; r = r m}:
    r -> 1/sqrt(x), converging quadratically near 1, while a small x grows by about 2.25 per iteration;
    n is the smallest count meeting `tol` at both ends (`iterations_for_rsqrt`; e.g. [2^-6, 2^12] needs 19).
    Then 1/sqrt(v) = r 2^-(k/2). The iteration diverges for x >= 3 (v >= 3 2^k).
    Fixed point: x is carried as X = x 2^s (s even) as in `goldschmidt_reciprocal`; measured relative
    error under SPU ABY3 FM64 on [lo, hi]: < 2e-3 (tests/test_approx_spu.py).
    """
    k, s = _deflation(lo, hi, span=2.0, even=True)
    n = iterations_for_rsqrt(lo, hi, tol)
    big_x = _pow2(v, s - k)
    r = jnp.ones_like(v)
    for _ in range(n):
        m = 1.5 - 0.5 * _pow2(big_x, -s)
        r, big_x = r * m, big_x * m * m
    return _pow2(r, -(k // 2))
