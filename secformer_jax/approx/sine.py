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

Without a correlation (`corr=None`) the same function computes the series with sin of x directly: the
ideal functionality, i.e. the plaintext reference (under SPU that costs a secret sine per harmonic).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

PERIOD = 16  # in units of x; a power of two (see the module doc)
HARMONICS = 7
X_CUT = 2.5 * math.sqrt(2.0)  # erf(x / sqrt 2) = +-1 beyond (two comparisons), the series inside
FRAC_BITS = 18  # SPU FM64's fixed point; the opened value's low log2(PERIOD) + FRAC_BITS bits are its residue
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
            f"the masked-opening sine GeLU (gelu 'secformer') needs field fm64, got {field!r}; "
            "use --gelu secformer_poly (sin/cos of secrets) for other fields"
        )


class SineCorrelation(NamedTuple):
    """One GeLU call's dealt randomness, each field shaped like x (sin/cos with a trailing harmonic axis)."""

    t: jax.Array  # float32, uniform on {0, 2^-f, ..., P - 2^-f}
    h_hi: jax.Array  # int32, uniform
    h_lo: jax.Array  # int32, uniform
    sin: jax.Array  # float32 [..., HARMONICS]: sin(2 pi k T / P), k = 1..HARMONICS
    cos: jax.Array  # float32 [..., HARMONICS]


def dealer(shape: tuple, rng: np.random.Generator) -> SineCorrelation:
    """Fresh correlated randomness for a GeLU input of `shape` (the dealer's side, in the clear)."""
    t = rng.integers(0, PERIOD << FRAC_BITS, shape, dtype=np.int64).astype(np.float64) * 2.0**-FRAC_BITS
    angles = 2 * np.pi * t[..., None] * np.arange(1, HARMONICS + 1) / PERIOD
    words = lambda: rng.integers(np.iinfo(np.int32).min, np.iinfo(np.int32).max, shape, dtype=np.int32, endpoint=True)
    return SineCorrelation(t.astype(np.float32), words(), words(), np.sin(angles).astype(np.float32), np.cos(angles).astype(np.float32))


def correlation_shapes(shape: tuple) -> SineCorrelation:
    """The correlation's shapes and dtypes for an input of `shape` (for compiling without values)."""
    s = lambda dtype, extra=(): jax.ShapeDtypeStruct(tuple(shape) + extra, dtype)
    return SineCorrelation(s(jnp.float32), s(jnp.int32), s(jnp.int32), s(jnp.float32, (HARMONICS,)), s(jnp.float32, (HARMONICS,)))


def masked_residue(x, corr: SineCorrelation):
    """Open x - T and return (x - T) mod PERIOD, public (steps 1-2 of the module doc). SPU only: the residue
    is read off the opened value's fixed-point ring encoding, which plaintext JAX does not have."""
    from spu.experimental import reveal

    high = (corr.h_hi * 65536 * 32768 + corr.h_lo) * PERIOD  # int ring arithmetic: (h 2^31 + h') P
    mask = high.astype(x.dtype) + corr.t  # T, in fixed point: P 2^f divides the ring, so T mod P = t
    opened = reveal(x - mask)
    bits = jax.lax.bitcast_convert_type(opened, jnp.int32) & ((PERIOD << FRAC_BITS) - 1)
    return jax.lax.bitcast_convert_type(bits, x.dtype)


def erf_series(x, corr: SineCorrelation | None = None, scale: float = 1.0):
    """scale * sum_k BETA_k sin(2 pi k x / P): by the masked opening with `corr`, else by sin of x (the
    reference). `scale` is folded into the public coefficients (no extra secret product)."""
    k = jnp.arange(1, HARMONICS + 1, dtype=x.dtype)
    beta = scale * jnp.asarray(BETA, x.dtype)
    if corr is None:
        return jnp.sin((2 * math.pi / PERIOD) * x[..., None] * k) @ beta
    angle = (2 * math.pi / PERIOD) * masked_residue(x, corr)[..., None] * k  # public
    return ring_dot(jnp.sin(angle) * beta, corr.cos) + ring_dot(jnp.cos(angle) * beta, corr.sin)


def ring_dot(public, secret):
    """sum over the last axis of public * secret, with one fixed-point truncation instead of one per product.
    SPU only. Both operands are reinterpreted as their ring integers (value 2^f each); the integer products
    (value 2^2f) are exact and local (public times secret), their sum too; the bitcast back reads the sum as a
    fixed-point number 2^f times too large, and the multiplication by 2^-f is the one truncation. Needs
    |public|, |secret| <= 2^(63 - 2f) / (terms) (here |.| <= 1.6 and 7 terms: far inside), and f = FRAC_BITS."""
    as_int = lambda v: jax.lax.bitcast_convert_type(v, jnp.int32)
    total = (as_int(public) * as_int(secret)).sum(-1)
    return jax.lax.bitcast_convert_type(total, public.dtype) * (2.0**-FRAC_BITS)


def gelu_secformer_masked(x, corr: SineCorrelation | None = None):
    """SecFormer's Π_GeLU with the masked-opening sine: 0.5 x (1 + erf(x / sqrt 2)), erf = -1 below -X_CUT,
    +1 above X_CUT (two comparisons), `erf_series` between.

    Any x. Max abs error vs the exact GeLU on [-8, 8]: 7.2e-4, at the cut (erf(2.5) = 0.99959 is set to 1;
    the series alone is within 4.3e-5). Under SPU FM64 with a dealt correlation, within 6.2e-5 (ABY3) and
    4.7e-5 (SEMI2K) of this function without one (the reference) in float32 on [-8, 8] (measured; tests
    assert 2e-4). Online cost per element: one opening, public sines, 2 x 7 public-secret products summed
    with one truncation, two comparisons, two selects and one secret product (ABY3: 460 bytes, SEMI2K: 360,
    measured; PUMA's GeLU: 860 and 656)."""
    cdf = jnp.where(x < -X_CUT, 0.0, jnp.where(x > X_CUT, 1.0, 0.5 + erf_series(x, corr, scale=0.5)))
    return x * cdf  # 0.5 (1 + erf) with the 0.5 inside the series' coefficients: one truncation fewer
