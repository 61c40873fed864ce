"""SecFormer's Π_GeLU with the masked-opening sine: erf as a Fourier sine series whose sines come from one
opening and correlated randomness, not from evaluating sin on secrets.

Series (refit for a power-of-two period, in x rather than z = x / sqrt 2):
    erf(x / sqrt 2) ~ sum_{k=1..7} beta_k sin(2 pi k x / P),  P = 16,  for |x| <= 2.5 sqrt 2,
least squares on that interval (`BETA`, reproduced by `fit_beta`): max error 2.4e-5 on erf, 4.3e-5 on
GeLU (the published period-20 series: 3.6e-2 and 5.8e-2).

Protocol (semi-honest, FM64, f = 18 fractional bits), for a secret x and a dealt correlation
(T, S_k = sin(2 pi k T / P), C_k = cos(2 pi k T / P)) with T uniform on the whole ring:
1. open d = x - T (one round; `spu.experimental.reveal`);
2. r = d mod P, exactly, from d's ring encoding: the low log2(P) + f bits (P 2^f divides 2^64, so the ring's
   wrap-around keeps r = (x - T) mod P); r is uniform on [0, P) and independent of x;
3. sin(2 pi k x / P) = sin(2 pi k r / P) C_k + cos(2 pi k r / P) S_k (public times secret, no secret product),
   all 2 x 7 products and their sum on ring integers, with one truncation at the end (`ring_dot`).
The ring-wide T is built in the program from its low part t (uniform on the fixed-point grid of [0, P)) and
two int32 words h, h' as T = (h 2^31 + h') P + t: the opened d = x - T is uniform on the ring, so it says
nothing about x (not only its residue). The dealer (a process that is not a computing party: `dealer`) draws
fresh (t, h, h', S, C) per GeLU element and run; reusing them would reveal differences of inputs.

The same opening serves any Fourier series of x: `gelu_fourier` writes GeLU itself as one cosine series of
period 128 (no comparison; `SineSpec` says which period and how many harmonics a correlation carries).

Without a correlation (`corr=None`) each function computes its series with sin/cos of x directly: the
ideal functionality, i.e. the plaintext reference (under SPU that costs a secret sine per harmonic).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

class SineSpec(NamedTuple):
    """What a correlation is dealt for: the series' period (in units of x, a power of two with
    period 2^FRAC_BITS dividing the ring, see the module doc) and its number of harmonics."""

    period: int
    harmonics: int


ERF_SINE = SineSpec(16, 7)  # `gelu_secformer_masked`'s erf series
GELU_COSINE = SineSpec(128, 64)  # `gelu_fourier`'s GeLU series
PERIOD, HARMONICS = ERF_SINE
X_CUT = 2.5 * math.sqrt(2.0)  # erf(x / sqrt 2) = +-1 beyond (two comparisons), the series inside
FRAC_BITS = 18  # SPU FM64's fixed point; the opened value's low log2(PERIOD) + FRAC_BITS bits are its residue
SINE_BITS = 16  # the dealt sines and cosines are ring integers round(value 2^16) (see `ring_dot`)
# fit_beta(PERIOD, HARMONICS, X_CUT), rounded to 9 digits (max erf error 2.4e-5 either way)
BETA = (1.555343268, -0.571750389, 0.746868936, -0.357022843, 0.208977717, -0.056168389, 0.014221493)


def fit_beta(period: float = PERIOD, harmonics: int = HARMONICS, cut: float = X_CUT, points: int = 20001) -> np.ndarray:
    """Least-squares sine coefficients of erf(x / sqrt 2) on [-cut, cut] for the given period (float64)."""
    from scipy import special

    x = np.linspace(-cut, cut, points)
    basis = np.stack([np.sin(2 * np.pi * k * x / period) for k in range(1, harmonics + 1)], axis=1)
    beta, *_ = np.linalg.lstsq(basis, special.erf(x / math.sqrt(2.0)), rcond=None)
    return beta


def check_field(field: str) -> None:
    """Refuse a field other than FM64: the residue is read off FM64's encoding (FRAC_BITS in a 64-bit ring)."""
    if field != "fm64":
        raise ValueError(
            f"a masked-opening GeLU (gelu 'fourier', the secformer preset's, or 'secformer') needs field fm64, got "
            f"{field!r}; use --gelu secformer_poly (sin/cos of secrets) for other fields"
        )


class SineCorrelation(NamedTuple):
    """One GeLU call's dealt randomness, each field shaped like x (sin/cos with a trailing harmonic axis)."""

    t: jax.Array  # int32: t 2^f, t uniform on {0, 2^-f, ..., P - 2^-f} (as an integer: float32 has too few bits)
    h_hi: jax.Array  # int32, uniform
    h_lo: jax.Array  # int32, uniform
    sin: jax.Array  # int32 [..., harmonics]: round(sin(2 pi k T / P) 2^SINE_BITS), k = 1..harmonics
    cos: jax.Array  # int32 [..., harmonics]: the same for cos


def dealer(shape: tuple, rng: np.random.Generator, spec: SineSpec = ERF_SINE) -> SineCorrelation:
    """Fresh correlated randomness for a GeLU input of `shape` (the dealer's side, in the clear)."""
    t_int = rng.integers(0, spec.period << FRAC_BITS, shape, dtype=np.int32)
    angles = 2 * np.pi * (t_int[..., None] * 2.0**-FRAC_BITS) * np.arange(1, spec.harmonics + 1) / spec.period
    words = lambda: rng.integers(np.iinfo(np.int32).min, np.iinfo(np.int32).max, shape, dtype=np.int32, endpoint=True)
    fixed = lambda v: np.round(v * 2.0**SINE_BITS).astype(np.int32)
    return SineCorrelation(t_int, words(), words(), fixed(np.sin(angles)), fixed(np.cos(angles)))


def correlation_shapes(shape: tuple, spec: SineSpec = ERF_SINE) -> SineCorrelation:
    """The correlation's shapes and dtypes for an input of `shape` (for compiling without values)."""
    s = lambda dtype, extra=(): jax.ShapeDtypeStruct(tuple(shape) + extra, dtype)
    h = (spec.harmonics,)
    return SineCorrelation(s(jnp.int32), s(jnp.int32), s(jnp.int32), s(jnp.int32, h), s(jnp.int32, h))


def masked_residue(x, corr: SineCorrelation, period: int = PERIOD):
    """Open x - T and return (x - T) mod period, public (steps 1-2 of the module doc). SPU only: the residue
    is read off the opened value's fixed-point ring encoding, which plaintext JAX does not have."""
    from spu.experimental import reveal

    high = (corr.h_hi * 65536 * 32768 + corr.h_lo) * period  # int ring arithmetic: (h 2^31 + h') P
    mask = high.astype(x.dtype) + jax.lax.bitcast_convert_type(corr.t, x.dtype)  # T: P 2^f divides the ring, so T mod P = t
    opened = reveal(x - mask)
    bits = jax.lax.bitcast_convert_type(opened, jnp.int32) & ((period << FRAC_BITS) - 1)
    return jax.lax.bitcast_convert_type(bits, x.dtype)


def masked_angles(x, corr: SineCorrelation, period: int):
    """The public angles 2 pi (k r mod P) / P, k = 1..harmonics, r = (x - T) mod P from `masked_residue`
    [..., harmonics]. All on the residue's ring integer R = r 2^f: k R mod P 2^f exactly (by a mask, as
    k R < 2^31 for P 2^f <= 2^25 and k <= 64), then times round(2^30 2 pi / P) and shifted right by 30 bits
    (SPU integers live in the 64-bit ring), so the angle, in [0, 2 pi), is within 2^-f of exact: a
    fixed-point constant 2 pi / P would carry a relative error up to 2^-f P / (4 pi) (4e-4 rad at 2 pi
    for P = 128), which the harmonics' coefficients would multiply."""
    harmonics = corr.sin.shape[-1]
    if (period << FRAC_BITS) * harmonics > 2**31:
        raise ValueError(f"period {period} with {harmonics} harmonics overflows the exact angle reduction")
    r_int = jax.lax.bitcast_convert_type(masked_residue(x, corr, period), jnp.int32)
    k_r = (r_int[..., None] * jnp.arange(1, harmonics + 1, dtype=jnp.int32)) & ((period << FRAC_BITS) - 1)
    angle = (k_r * round(2**30 * 2 * math.pi / period)) >> 30
    return jax.lax.bitcast_convert_type(angle, x.dtype)


def erf_series(x, corr: SineCorrelation | None = None, scale: float = 1.0):
    """scale * sum_k BETA_k sin(2 pi k x / P): by the masked opening with `corr`, else by sin of x (the
    reference). `scale` is folded into the public coefficients (no extra secret product)."""
    beta = scale * jnp.asarray(BETA, x.dtype)
    if corr is None:
        k = jnp.arange(1, HARMONICS + 1, dtype=x.dtype)
        return jnp.sin((2 * math.pi / PERIOD) * x[..., None] * k) @ beta
    angle = masked_angles(x, corr, PERIOD)  # public
    public = jnp.concatenate([jnp.sin(angle) * beta, jnp.cos(angle) * beta], -1)  # sin(a+b) = sin a cos b + cos a sin b
    return ring_dot(public, jnp.concatenate([corr.cos, corr.sin], -1))


def ring_dot(public, secret):
    """sum over the last axis of public * secret / 2^SINE_BITS for fixed-point `public` and ring-integer
    `secret` (the dealt sines at scale 2^SINE_BITS), with one truncation instead of one per product. SPU only.
    `public` is reinterpreted as its ring integers (value 2^f); the integer products (value 2^(f + 16)) are
    exact and local (public times secret), their sum too; the bitcast back reads the sum as a fixed-point
    number 2^16 times too large, and the multiplication by 2^-16 is the one truncation (SPU truncates by
    2^-16 for 28 / 8 bytes per element in ABY3 / SEMI2K, by 2^-18 for 40 / 16: why the sines are at 2^16).
    A fixed-point secret v rides along as its own ring integer (value 2^f) with its coefficient divided by
    2^(f - 16). Needs |public| 2^f |secret| terms <= 2^63 (here |public| <= 13, 129 terms: far inside)."""
    as_int = lambda v: jax.lax.bitcast_convert_type(v, jnp.int32)
    total = (as_int(public) * secret).sum(-1)
    return jax.lax.bitcast_convert_type(total, public.dtype) * (2.0**-SINE_BITS)


def gelu_secformer_masked(x, corr: SineCorrelation | None = None):
    """SecFormer's Π_GeLU with the masked-opening sine: 0.5 x (1 + erf(x / sqrt 2)), erf = -1 below -X_CUT,
    +1 above X_CUT (two comparisons), `erf_series` between.

    Any x. Max abs error vs the exact GeLU on [-8, 8]: 7.2e-4, at the cut (erf(2.5) = 0.99959 is set to 1;
    the series alone is within 4.3e-5). Under SPU FM64 with a dealt correlation, within 6.2e-5 (ABY3) and
    4.7e-5 (SEMI2K) of this function without one (the reference) in float32 on [-8, 8] (measured; tests
    assert 2e-4). Online cost per element: one opening, public sines, 2 x 7 public-secret products summed
    with one truncation, two comparisons, two selects and one secret product (ABY3: 448 bytes, SEMI2K: 352,
    measured; PUMA's GeLU: 860 and 656)."""
    cdf = jnp.where(x < -X_CUT, 0.0, jnp.where(x > X_CUT, 1.0, 0.5 + erf_series(x, corr, scale=0.5)))
    return x * cdf  # 0.5 (1 + erf) with the 0.5 inside the series' coefficients: one truncation fewer


def gelu_cosine_coefficients(spec: SineSpec = GELU_COSINE) -> tuple[float, np.ndarray]:
    """(c_0, c_1..c_K) with GeLU(x) ~ x / 2 + c_0 + sum_k c_k cos(w_k x), w_k = 2 pi k / P (float64).

    Derivation: x erf(x / sqrt 2) = E|x + Z| - sqrt(2 / pi) exp(-x^2 / 2) for Z ~ N(0, 1), so
    GeLU(x) = x / 2 + (|.| * phi)(x) / 2 - phi(x), phi the standard normal density. On |x| < P / 2, |x| is
    the triangle wave P / 4 - (2 P / pi^2) sum_{k odd} cos(w_k x) / k^2, and convolving with phi multiplies
    cos(w_k x) by exp(-w_k^2 / 2); phi's periodisation is (1 / P) (1 + 2 sum_k exp(-w_k^2 / 2) cos(w_k x))
    (Poisson). Hence c_0 = P / 8 - 1 / P and c_k = -exp(-w_k^2 / 2) (P / (pi^2 k^2) [k odd] + 2 / P),
    exact up to the periodic copies' overlap (exp(-(P / 2 - |x|)^2 / 2) small for |x| <= P / 2 - 8)."""
    k = np.arange(1, spec.harmonics + 1)
    w = 2 * np.pi * k / spec.period
    odd = (k % 2 == 1) * spec.period / (np.pi**2 * k**2)
    return spec.period / 8 - 1 / spec.period, -np.exp(-(w**2) / 2) * (odd + 2 / spec.period)


GELU_DOMAIN = GELU_COSINE.period / 2 - 8  # |x| <= 56: the series' stated domain


def gelu_fourier(x, corr: SineCorrelation | None = None):
    """GeLU as one cosine series: x / 2 + c_0 + sum_{k=1..64} c_k cos(2 pi k x / 128)
    (`gelu_cosine_coefficients`), with the cosines from the masked opening: no comparison, no secret product.

    Domain |x| <= 56 (GELU_DOMAIN): max abs error vs the exact GeLU 6.7e-4 there (the dropped harmonics;
    float64, measured on a 5e-4 grid; still 6.7e-4 at |x| = 60). Beyond it the periodic part turns back:
    for |x| in [56, 64 + 56] the error grows to about |x| - 56 and it repeats with period 128, so inputs
    must be known to stay inside (the MiniLM teacher's GeLU inputs on SST-2 and RTE dev lie in
    [-17.2, 24.7], measured; see `secformer eval`'s gelu_input_range). Under SPU FM64 with a dealt
    correlation (`dealer(shape, rng, GELU_COSINE)`), within 2.7e-4 of this function without one in float32
    on [-56, 56] (measured; tests assert 4e-4).
    Online cost per element: one opening and one truncation (x / 2 and the 2 x 64 public-secret products
    summed on ring integers, `ring_dot`): ABY3 52 bytes, SEMI2K 24 (measured; PUMA's GeLU: 860 and 656);
    the dealt randomness is 2 x 64 + 3 values per element."""
    c0, c = gelu_cosine_coefficients()
    coeffs = jnp.asarray(c, x.dtype)
    if corr is None:
        w = (2 * math.pi / GELU_COSINE.period) * jnp.arange(1, GELU_COSINE.harmonics + 1, dtype=x.dtype)
        return 0.5 * x + c0 + jnp.cos(x[..., None] * w) @ coeffs
    angle = masked_angles(x, corr, GELU_COSINE.period)  # public
    half = jnp.full(x.shape + (1,), 0.5 * 2.0 ** (SINE_BITS - FRAC_BITS), x.dtype)  # x's ring integer is x 2^f
    # cos(w (r + T)) = cos(w r) C - sin(w r) S, and x / 2 rides along in the same sum
    public = jnp.concatenate([half, jnp.cos(angle) * coeffs, -jnp.sin(angle) * coeffs], -1)
    x_int = jax.lax.bitcast_convert_type(x, jnp.int32)[..., None]
    return ring_dot(public, jnp.concatenate([x_int, corr.cos, corr.sin], -1)) + c0
