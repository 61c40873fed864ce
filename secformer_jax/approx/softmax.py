"""Masked softmax over the last axis and its MPC-friendly approximations.

Every variant maps `scores` [..., q, k] and a 0/1 float `mask` broadcastable to it (1 = key kept, 0 =
padding; under MPC a secret of the data owner) to probabilities over k: padded keys get exactly 0 (the
mask multiplies them) and the kept ones sum to 1. No control flow depends on values.
"""

from __future__ import annotations

import jax.numpy as jnp

from .kernels import bracketed_div

MASK_BIAS = 1e4  # added (times mask - 1) before max/exp: exp(-1e4) is 0, and PUMA clips below -14
QUAD_SHIFT = 5.0  # c in 2Quad's (x + c)^2
EXP_CLIP = -14.0  # PUMA: exp(x) is set to 0 below this


def softmax_exact(scores, mask):
    """exp(x - max x) mask / sum(exp(x - max x) mask), the max taken over kept keys (x + (mask - 1) 1e4).

    Any scores. Under SPU ABY3 FM64 (the runner's Taylor exp, SPU's division) within 2.4e-3 of this
    function in float32 for scores in [-8, 8] and [-60, 60] (tests assert 5e-3)."""
    x = scores + (mask - 1.0) * MASK_BIAS
    e = jnp.exp(x - jnp.max(x, axis=-1, keepdims=True)) * mask
    return e / jnp.sum(e, axis=-1, keepdims=True)


def softmax_puma(scores, mask):
    """PUMA's softmax: x - max x (over kept keys), exp (SPU: Taylor (1 + x/2^n)^(2^n) when the runtime
    is configured so), 0 where x - max x < -14, times the mask, divided by the sum.

    Any scores. Max abs error vs the exact softmax: 1.2e-6 for scores in [-20, 20] (the clipping drops
    weights below e^-14; float32). Under SPU ABY3 FM64 (Taylor exp) within 2.4e-3 of this function in
    float32 for scores in [-8, 8] and [-60, 60] (tests assert 5e-3).
    """
    x = scores + (mask - 1.0) * MASK_BIAS
    x = x - jnp.max(x, axis=-1, keepdims=True)
    e = jnp.where(x < EXP_CLIP, 0.0, jnp.exp(x)) * mask
    return e / jnp.sum(e, axis=-1, keepdims=True)


def softmax_2quad(scores, mask):
    """MPCFormer's 2Quad: (x + 5)^2 mask / sum_k (x + 5)^2 mask, divided by the backend's division.

    Not an approximation of softmax (not shift invariant; 0 at x = -5): meaningful only in a distilled
    student. The mask multiplies after squaring (a bias would dominate the square). Undefined when every
    kept score is -5. Under SPU ABY3 FM64 within 4e-6 of this function in float32 for scores in [-60, 60]
    (tests assert 5e-5); with the compiler option enable_optimize_denominator_with_broadcast the division
    becomes x * (1 / sum), and 1 / sum underflows the 18 fractional bits for a large sum (for 128 keys
    with scores in [-30, 30], sum ~ 4e4: abs error 3.9e-3 on probabilities up to 3.3e-2, measured).
    """
    q = jnp.square(scores + QUAD_SHIFT) * mask
    return q / jnp.sum(q, axis=-1, keepdims=True)


def softmax_secformer(scores, mask, *, score_bound: float = 128.0, min_denominator: float = 16.0, tol: float = 1e-4):
    """SecFormer's softmax: 2Quad, q = (x + 5)^2 mask, divided by Goldschmidt (Π_Div) on public bounds.

    Range: the denominator D = sum_k q_k lies in [min_denominator, K (score_bound + 5)^2] for K keys (the
    padded length, public) when every kept |x| <= score_bound. Defaults: scores within +-128 and D >= 16
    (measured on the MiniLM teacher, SST-2 dev at 64 tokens and RTE dev at 128: max |x| 62 and 73, min D 90
    and 200, max D 2.4e4 and 5.0e4). `bracketed_div` first finds D's two-octave bracket in that range (one
    stacked comparison; 9 brackets for K = 128), then runs 6 Goldschmidt iterations from [1/4, 1) instead of
    22 from the whole range's deflation. Every probability of a row is q times the same r ~ 1 / D, so the
    error is one factor per row: on the range the row sums to 1 - e with e <= tol; below min_denominator
    e grows (rows sum to less than 1, proportions kept); D >= 2^(E+1) (E the top bracket's exponent,
    2 (score_bound + 5)^2 per key on average) diverges.
    Max abs error vs `softmax_2quad` on the range: 1.1e-7 in float32 (scores in [-60, 60]) and, under SPU
    ABY3 FM64, within 4e-6 of this function in float32 (tests assert 2e-4 relative and 5e-5).
    """
    q = jnp.square(scores + QUAD_SHIFT) * mask
    den = jnp.sum(q, axis=-1, keepdims=True)
    return bracketed_div(q, den, lo=min_denominator, hi=scores.shape[-1] * (score_bound + QUAD_SHIFT) ** 2, tol=tol)
