"""LayerNorm over the last axis, (x - mean) / sqrt(var + eps) * scale + bias, and MPC-friendly variants.

All variants share `_centred`: the means are dot products with a constant vector c = 2^p / d in [1, 2)
followed by a shift 2^-p, because `jnp.mean` divides by d and 1/d is encoded with relative error up to
d 2^-19 at 18 fractional bits (1/768: 1.0e-3, shifting every centred value by 1e-3 of the row mean). SPU
folds consecutive constant multiplications, so the dot sits between c and the shift (one truncation per
row, as cheap as `jnp.mean`). Under SPU ABY3 FM64, d = 768, rows with |mean| up to 9: mean error 5.7e-6
this way, 9.6e-3 by `jnp.mean` (measured).

The variance is not formed at all: the sum of squares of each row is the diagonal of its sequence's Gram
matrix C C^T (one secret matrix product: under ABY3 it sends the L x L outputs, 0.86 MB for 128 x 768,
against 5.1 MB for the L d squares; SEMI2K 3.3 against 3.9), and v = (sum of squares + d eps) 2^-p =
(var + eps) d 2^-p is a pure shift of it; every variant normalises by 1 / sqrt(v) times the public gain
sqrt(d 2^-p) (in [0.7, 1]), so no constant below 1/2 is ever encoded.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .kernels import bracketed_rsqrt, mul_pow2


def _mean(x):
    """Mean over the last axis, keepdims: (x . c) 2^-p with c = 2^p / d, p = ceil(log2 d)."""
    d = x.shape[-1]
    p = math.ceil(math.log2(d))
    return mul_pow2(x @ jnp.full((d,), 2.0**p / d, x.dtype), -p)[..., None]


def _centred(x, eps):
    """(x - mean, v, gain) over the last axis of x [..., L, d], with v = (var + eps) d 2^-p (the sum of
    squares from the Gram matrix's diagonal, shifted) and the public gain sqrt(d 2^-p): 1 / sqrt(var + eps)
    = gain / sqrt(v)."""
    d = x.shape[-1]
    p = math.ceil(math.log2(d))
    centred = x - _mean(x)
    squares = jnp.diagonal(jnp.einsum("...lh,...mh->...lm", centred, centred), axis1=-2, axis2=-1)[..., None]
    return centred, mul_pow2(squares + d * eps, -p), math.sqrt(d * 2.0**-p)


def layernorm_exact(x, scale, bias, eps):
    """(x - mean) / sqrt(var + eps) * scale + bias with the backend's sqrt and division.

    Any x. Under SPU ABY3 FM64: within 1.2e-3 of this function in float32 for d = 384 and row variances
    in [2^-6, 2^12], 4e-3 in [2^-10, 2^12] (varies with the random shares: a variance of 2^-10 has 8
    significant bits; measured over 6 runs; tests assert 2e-3 and 1e-2)."""
    centred, v, gain = _centred(x, eps)
    return centred * (1.0 / jnp.sqrt(v) * gain) * scale + bias  # the reciprocal of the [..., L, 1] root, not of L d


def layernorm_puma(x, scale, bias, eps):
    """PUMA's LayerNorm: (x - mean) * rsqrt(var + eps) * scale + bias with the backend's rsqrt (SPU:
    power-of-two normalisation, a polynomial first guess and Newton steps).

    Any x. Under SPU ABY3 FM64: within 1.2e-3 of this function in float32 for d = 384 and row variances
    in [2^-6, 2^12], 4e-3 in [2^-10, 2^12] (varies with the random shares: a variance of 2^-10 has 8
    significant bits; measured over 6 runs; tests assert 2e-3 and 1e-2)."""
    centred, v, gain = _centred(x, eps)
    return centred * (jax.lax.rsqrt(v) * gain) * scale + bias


def layernorm_secformer(x, scale, bias, eps, *, var_lo: float = 2.0**-10, var_hi: float = 2.0**12, tol: float = 1e-4):
    """SecFormer's Π_LayerNorm: (x - mean) * r * scale + bias, r = 1 / sqrt(var + eps) by Goldschmidt
    (`bracketed_rsqrt`) on the public variance range [var_lo, var_hi].

    Range: defaults [2^-10, 2^12]: one stacked comparison finds the variance's two-octave bracket (12
    brackets), then 5 Goldschmidt iterations from [1/4, 1) (22 from the whole range's deflation before);
    the MiniLM teacher's LayerNorm inputs have row variances in [3.1e-3, 131] on real tokens of SST-2 and
    RTE dev (2.1e-3 on padding rows; measured), so the range has 3x margin below and 31x above.
    Below var_lo r loses accuracy (the deflated variance falls under 1/4); at 3 times the top bracket's
    upper edge (4 var_hi for the defaults) it diverges.
    Max abs error vs the exact LayerNorm (float64) for 32 rows with variances on the range, d = 384:
    1e-5 in float32; under SPU FM64 within 7.2e-4 (ABY3) / 5.4e-4 (SEMI2K) of this function in float32 for
    variances >= 2^-6 and 1.7e-3 on the whole range (a variance of 2^-10 has 8 significant bits in fixed
    point; measured over 3 runs; tests assert 1e-3 and 1e-2).
    """
    centred, v, gain = _centred(x, eps)
    v_per_var = gain * gain  # v = (var + eps) gain^2
    return centred * (bracketed_rsqrt(v, lo=var_lo * v_per_var, hi=var_hi * v_per_var, tol=tol) * gain) * scale + bias
