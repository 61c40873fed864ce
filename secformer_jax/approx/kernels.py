"""Goldschmidt division and inverse square root on public power-of-two bounds, and fixed-point helpers.

Fixed point (SPU FM64: f = 18 fractional bits, about 45 integer bits) shapes these kernels:
- a public constant c is encoded as round(c 2^f) 2^-f, so 1/B for B not a power of two carries a relative
  error up to 2^-(f+1) / c (1/768: 1.0e-3), while 2^-j for j <= f is exact and x 2^-j costs one truncation;
- a secret v keeps about log2(v) + f significant bits, so a deflated value v 2^-k below ~2^-12 keeps few.
The Goldschmidt kernels therefore never store the deflated value: they carry z = v m_1 ... m_i (the input
times the multipliers so far, kept at full relative precision; it tends to 2^k) and form the deflated
y = z 2^-k only inside the next multiplier m, where an absolute error of 2^-f merely perturbs the
convergence path: the result is r = m_1 ... m_n and z = v r (division) or z = v r^2 (rsqrt) holds whatever
the m_i are, so rounding in m costs nothing and each step adds one truncation (relative 2^-f) to r.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

MAX_SHIFT = 16  # bits shifted by one multiplication: 2^-16 is exactly encodable for any f >= 16 (and SPU
# truncates by 2^-16 for 28 / 8 bytes per element in ABY3 / SEMI2K, by 2^-17 or 2^-18 for 40 / 16)
MAX_ITERS = 64


def mul_pow2(x, exponent: int):
    """x 2^exponent for a static int exponent, as multiplications by public powers of two of at least
    2^-MAX_SHIFT (a smaller constant would encode as 0 at f = 18). Exact in float32; under SPU each
    multiplication truncates (absolute error 2^-f)."""
    while exponent < -MAX_SHIFT:
        x = x * 2.0**-MAX_SHIFT
        exponent += MAX_SHIFT
    return x * 2.0**exponent if exponent else x


class Plan(NamedTuple):
    """Static Goldschmidt parameters for a public input range, and the error they give in exact arithmetic."""

    iters: int
    log2_bound: int
    max_rel_error: float


def _check_range(lo: float, hi: float) -> None:
    if not 0 < lo <= hi:
        raise ValueError(f"need public bounds 0 < lo <= hi, got lo={lo}, hi={hi}")


def plan_div(lo: float, hi: float, tol: float = 1e-4) -> Plan:
    """Parameters of `goldschmidt_div` for a denominator in [lo, hi]: k = ceil(log2 hi), so the deflated
    y = v 2^-k lies in [lo 2^-k, 1], and the fewest iterations n with (1 - lo 2^-k)^(2^n) <= tol (the
    error at the upper end, |1 - y| < 1/2, is smaller). Roughly n = log2(hi / lo) + log2(ln(1 / tol)):
    e.g. [16, 2^21] needs 21 iterations for tol = 1e-4, [0.5, 8] needs 8."""
    _check_range(lo, hi)
    k = math.ceil(math.log2(hi))
    e = 1.0 - lo * 2.0**-k
    for n in range(1, MAX_ITERS + 1):
        if e ** (2**n) <= tol:
            return Plan(n, k, e ** (2**n))
    raise ValueError(f"[{lo}, {hi}] needs more than {MAX_ITERS} Goldschmidt division iterations")


def plan_rsqrt(lo: float, hi: float, tol: float = 1e-4) -> Plan:
    """Parameters of `goldschmidt_rsqrt` for an input in [lo, hi]: the smallest even k with hi 2^-k <= 1,
    and the fewest iterations n after which both ends of [lo 2^-k, hi 2^-k] are within relative error
    tol (the recurrence x <- x (3 - x)^2 / 4 is increasing on (0, 1), so the ends bound the range).
    A small deflated x grows by 9/4 per iteration until it nears 1, then the error squares:
    e.g. [2^-10, 2^12] needs 22 iterations for tol = 1e-4, [0.25, 4] needs 7."""
    _check_range(lo, hi)
    k = 2 * math.ceil(math.log2(hi) / 2)
    ends = [lo * 2.0**-k, hi * 2.0**-k]
    for n in range(1, MAX_ITERS + 1):
        ends = [x * (3.0 - x) ** 2 / 4.0 for x in ends]
        err = max(abs(1.0 - math.sqrt(x)) for x in ends)
        if err <= tol:
            return Plan(n, k, err)
    raise ValueError(f"[{lo}, {hi}] needs more than {MAX_ITERS} Goldschmidt rsqrt iterations")


def _scaled_reciprocal(den, iters: int, log2_bound: int):
    """r ~ 2^k / den by Goldschmidt on y = den 2^-k: m = 2 - y, (r, z) = (r, z) m, with z = y 2^k carried.

    Rounds: SPU sends once per operation, so the two products r m and z m go as one multiplication of the
    stacked pair, and z is carried pre-scaled by 2^-(k - MAX_SHIFT) (one truncation before the loop) so
    the deflation inside it is one multiplication by 2^-MAX_SHIFT at most: one truncation and one
    multiplication per iteration (two and two unstacked, for k > MAX_SHIFT). The pre-scaled z keeps
    log2(den 2^-(k - MAX_SHIFT)) + f significant bits (den >= 2^(k - MAX_SHIFT) keeps all f)."""
    pre = max(log2_bound - MAX_SHIFT, 0)
    z, r = mul_pow2(den, -pre), None
    for _ in range(iters):
        m = 2.0 - mul_pow2(z, pre - log2_bound)
        if r is None:
            r, z = m, z * m
        else:
            r, z = jnp.stack([r, z]) * m
    return r


def goldschmidt_div(num, den, *, iters: int, log2_bound: int):
    """num / den for a secret den with 0 < den < 2^(k+1), k = log2_bound (Π_Div).

    Math: y_0 = den 2^-k; repeat n times {m = 2 - y; r = r m; y = y m}. Then y_n = 1 - (1 - y_0)^(2^n) and
    r_n = y_n / y_0, so r_n 2^-k = (1 / den) (1 - e) with relative error e = (1 - y_0)^(2^n): quadratic
    convergence near y_0 = 1, slow (e ~ exp(-y_0 2^n)) for small y_0, divergence for y_0 >= 2.
    `plan_div(lo, hi, tol)` gives (n, k) for a public range [lo, hi] to a tolerance.
    Result: (num r_n) 2^-k. The numerator is multiplied in before the deflation is undone: r_n ~ 2^k / den
    is well represented, while 1/den alone underflows the fixed point for a large den (at f = 18, 1/40000
    is 6.6 units of 2^-18). So the quotient keeps relative precision; num / den must stay below
    2^(45 - k) (the FM64 integer range of num r_n).
    Measured (plan_div(16, 2^21): n = 21, k = 21, planned error 1.1e-7), relative error of num / den for
    2001 den on [16, 2^21]: 4.8e-7 in float32 and 1.9e-4 under SPU ABY3 FM64 (tests assert 2e-4 and 5e-4).
    """
    return mul_pow2(num * _scaled_reciprocal(den, iters, log2_bound), -log2_bound)


def goldschmidt_reciprocal(den, *, iters: int, log2_bound: int):
    """1 / den by `goldschmidt_div`'s iteration (same range, convergence and error, relative), for
    1 / den above the fixed-point resolution: prefer `goldschmidt_div(num, den)` for a quotient."""
    return mul_pow2(_scaled_reciprocal(den, iters, log2_bound), -log2_bound)


def goldschmidt_rsqrt(x, *, iters: int, log2_bound: int):
    """1 / sqrt(x) for a secret x with 0 < x < 3 2^k, k = log2_bound even (Π_LayerNorm's core).

    Math: x_0 = x 2^-k; r = 1; repeat n times {m = (3 - x)/2; x = x m^2; r = r m}. Then x_n = x_0 r_n^2,
    so r_n = sqrt(x_n) / sqrt(x_0) and the relative error is 1 - sqrt(x_n). With x = 1 - e,
    e <- e^2 (3 + e) / 4 (quadratic near 1); a small x_0 grows by 9/4 per iteration, so n ~
    log_{9/4}(1 / x_0) + 4; x_0 >= 3 diverges. `plan_rsqrt(lo, hi, tol)` gives (n, k) for a range.
    Result: r_n 2^-(k/2) (exact: k is even).
    Measured (plan_rsqrt(2^-10, 2^12): n = 22, k = 12, planned error 1.3e-5), relative error for 2001 x on
    [2^-10, 2^12]: 1.3e-5 in float32 and 2.3e-3 under SPU ABY3 FM64, where it is the input's own precision:
    x = 2^-10 has 8 significant bits; 2.4e-4 for x >= 2^-6 (tests assert 2e-4 in float32; under SPU 3e-3,
    and 5e-4 for x >= 2^-6).
    """
    if log2_bound % 2:
        raise ValueError(f"goldschmidt_rsqrt needs an even log2_bound, got {log2_bound}")
    z, r = x, None
    for _ in range(iters):  # one truncation and two multiplication rounds: (r m, m^2) stacked, then z m^2
        m = 1.5 - mul_pow2(z, -log2_bound - 1)
        if r is None:
            r, m2 = m, m * m
        else:
            r, m2 = jnp.stack([r, m]) * m
        z = z * m2
    return mul_pow2(r, -(log2_bound // 2))


class Brackets(NamedTuple):
    """Public power-of-two brackets covering [lo, hi]: bracket g is [2^(e_g - width), 2^e_g), e_g = exps[g]."""

    exps: tuple[int, ...]
    width: int


def plan_brackets(lo: float, hi: float, width: int = 2) -> Brackets:
    """Brackets of `width` octaves covering [lo, hi], exponents multiples of `width` (so 2^(e / 2) is a power
    of two for width 2), the top one above hi."""
    _check_range(lo, hi)
    first = width * (math.floor(math.log2(lo) / width) + 1)
    last = width * (math.floor(math.log2(hi) / width) + 1)
    return Brackets(tuple(range(first, last + 1, width)), width)


def bracket_select(v, brackets: Brackets, tables):
    """sum_g [v in bracket g] tables[g] for public tables [G, T]: the G - 1 comparisons of v with the inner
    bracket edges as one stacked comparison, then a dot product with public differences (telescoping:
    tables[0] + sum_j [v >= 2^(e_(j-1))] (tables[j] - tables[j-1])), one truncation. Returns [..., T]."""
    tables = np.asarray(tables, np.float64)
    edges = jnp.asarray([2.0**e for e in brackets.exps[:-1]], v.dtype)
    bits = (v[..., None] >= edges).astype(v.dtype)
    return jnp.asarray(tables[0], v.dtype) + bits @ jnp.asarray(np.diff(tables, axis=0), v.dtype)


def bracketed_div(num, den, *, lo: float, hi: float, tol: float = 1e-4):
    """num / den for a secret den in the public range [lo, hi], by Goldschmidt started in den's bracket.

    Math: with brackets of two octaves (`plan_brackets`, top exponent T), one stacked comparison gives
    A = 2^(S - e_g) for den's bracket g, S = min(T, MAX_SHIFT) (so each shift below is one truncation; A is
    a power of two down to 2^(S - T), kept >= 2^-8 by raising S); y = den A 2^-S = den 2^-e_g lies in
    [1/4, 1), so `plan_div(1/4, 1, tol)` iterations (6 for tol 1e-4 instead of about log2(hi / lo) + 3)
    give r ~ 1 / y, and num / den = num (r A) 2^-S. The same secret A scales y and r, so the selection's rounding cancels.
    Outside the range: den < lo leaves y below 1/4 (fewer correct bits), y >= 2 (den >= 2^(T+1)) diverges.
    Rounds: one comparison, then about 3 + 6 multiplications instead of ~2 log2(hi / lo).
    Precision as `goldschmidt_div`'s: num r A is formed before undoing the deflation; r A keeps at least
    f - (T - S) significant bits: all 18 for the softmax's den < 2^16, 12 in its top bracket [2^20, 2^22)
    (mean (x + 5)^2 above 8192 over 128 keys)."""
    brackets = plan_brackets(lo, hi)
    shift = max(min(brackets.exps[-1], MAX_SHIFT), brackets.exps[-1] - 8)  # one truncation when T <= 24
    scale = bracket_select(den, brackets, [[2.0 ** (shift - e)] for e in brackets.exps])[..., 0]
    y = mul_pow2(den * scale, -shift)
    plan = plan_div(2.0**-brackets.width, 1.0, tol)
    r = goldschmidt_reciprocal(y, iters=plan.iters, log2_bound=plan.log2_bound)
    return mul_pow2(num * (r * scale), -shift)


def bracketed_rsqrt(v, *, lo: float, hi: float, tol: float = 1e-4):
    """1 / sqrt(v) for a secret v in the public range [lo, hi], by Goldschmidt started in v's bracket.

    Math: brackets of two octaves with even exponents; one stacked comparison selects B = 2^(E - e_g) and
    C = 2^((E - e_g) / 2) = sqrt(B) (E the top exponent), y = v B 2^-E lies in [1/4, 1), `plan_rsqrt(1/4,
    1, tol)` iterations give r ~ 1 / sqrt(y), and 1 / sqrt(v) = r C 2^(-E/2). Outside the range: v < lo leaves
    y below 1/4 (fewer correct bits), y >= 3 diverges. Rounds: one comparison, then about 2 + 3 x 5 instead of
    3 x ~log_{9/4}(hi / lo)."""
    brackets = plan_brackets(lo, hi)  # width 2: even exponents, so (top - e) / 2 is whole
    top = brackets.exps[-1]
    scales = bracket_select(v, brackets, [[2.0 ** (top - e), 2.0 ** ((top - e) // 2)] for e in brackets.exps])
    y = mul_pow2(v * scales[..., 0], -top)
    plan = plan_rsqrt(2.0**-brackets.width, 1.0, tol)
    r = goldschmidt_rsqrt(y, iters=plan.iters, log2_bound=plan.log2_bound)
    return mul_pow2(r * scales[..., 1], -(top // 2))
