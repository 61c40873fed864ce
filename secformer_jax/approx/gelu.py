"""GeLU(x) = x Φ(x) = 0.5 x (1 + erf(x / sqrt 2)) and its MPC-friendly approximations (elementwise)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# PUMA (SPEC.md section 1): F0 on [-4, -1.95) in powers of x, F1 on [-1.95, 3] = 0.5 x + (even part in x^2).
PUMA_F0 = (-0.5054031199708174, -0.42226581151983866, -0.11807612951181953, -0.011034134030615728)
PUMA_F1_EVEN = (0.008526321541038084, 0.3603292692789629, -0.037688200365904236, 0.0018067462606141187)
# SecFormer: erf(z) ~ sum_{m=1..7} beta_m sin(m pi z / 10) on [-2.5, 2.5] (period 20).
SECFORMER_BETA = (1.25772, -0.0299154, 0.382155, -0.0519123, 0.196033, -0.0624557, 0.118029)
ERF_CUT = 2.5


def gelu_exact(x):
    """0.5 x (1 + erf(x / sqrt 2)) by the backend's erf (`jax.nn.gelu(approximate=False)`).

    Any x. Under SPU ABY3 FM64 (SPU's own erf approximation) within 4.2e-4 of float32 on [-8, 8] and
    [-30, 30] (measured; tests assert 1e-3)."""
    return jax.nn.gelu(x, approximate=False)


def _horner(t, coeffs):
    """sum_i coeffs[i] t^i."""
    acc = coeffs[-1] * t + coeffs[-2]
    for c in reversed(coeffs[:-2]):
        acc = acc * t + c
    return acc


def gelu_puma(x):
    """PUMA's piecewise GeLU: 0 for x < -4; F0(x) (cubic) on [-4, -1.95); F1(x) = 0.5 x + P(x^2) (degree 6)
    on [-1.95, 3]; x for x > 3. Three comparisons select the segment; 5 secret multiplications evaluate
    the polynomials (F1 by Horner in x^2).

    Any x. Max abs error vs the exact GeLU: 2.0e-2 on [-8, 8] (at the joints x = -1.95 and 3; measured in
    float64 on a 1e-3 grid). Under SPU ABY3 FM64 within 2.2e-3 of this function in float32 on [-30, 30]
    (the comparison at a joint can fall on the other side by one fixed-point unit; tests assert 3e-3).
    """
    f0 = _horner(x, PUMA_F0)
    f1 = _horner(x * x, PUMA_F1_EVEN) + 0.5 * x
    return jnp.where(x < -4.0, 0.0, jnp.where(x < -1.95, f0, jnp.where(x > 3.0, x, f1)))


def gelu_quad(x):
    """MPCFormer's Quad: 0.125 x^2 + 0.25 x + 0.5 (one secret multiplication).

    Not an approximation of GeLU (error 0.5 at x = 0, growing like x^2): meaningful only in a distilled
    student. Under SPU ABY3 FM64 within 1e-5 of this function on [-8, 8] (measured 4e-6)."""
    return 0.125 * x * x + 0.25 * x + 0.5


def erf_fourier(z):
    """SecFormer's erf series sum_{m=1..7} beta_m sin(m θ), θ = π z / 10, meant for z in [-2.5, 2.5].

    One sin and one cos of θ; the harmonics by the recurrence sin((m+1)θ) = 2 cos θ sin(mθ) - sin((m-1)θ)
    (the angle-addition identity summed with its mirror image), one secret multiplication each.
    Max abs error vs erf on [-2.5, 2.5]: 3.6e-2 (the published coefficients; worst near |z| = 1.9).
    """
    theta = z * (math.pi / 10.0)
    s1, two_c1 = jnp.sin(theta), 2.0 * jnp.cos(theta)
    prev, cur = jnp.zeros_like(s1), s1
    acc = SECFORMER_BETA[0] * s1
    for beta in SECFORMER_BETA[1:]:
        prev, cur = cur, two_c1 * cur - prev
        acc = acc + beta * cur
    return acc


def gelu_secformer_poly(x):
    """SecFormer's Π_GeLU with the published series and sin/cos of secrets (the backend's polynomial sine):
    0.5 x (1 + erf(z)), z = x / sqrt 2, with erf = -1 for z < -2.5, +1 for z > 2.5 (two comparisons) and
    `erf_fourier(z)` in between. The masked-opening variant (the `secformer` GeLU) is in `sine.py`.

    Any x. Max abs error vs the exact GeLU: 5.8e-2 on [-8, 8] (0.5 |x| times the series' erf error;
    float64, 1e-3 grid). Under SPU ABY3 FM64 within 1.9e-4 of this function in float32 on [-30, 30]
    (tests assert 5e-4).
    """
    z = x * (1.0 / math.sqrt(2.0))
    erf = jnp.where(z < -ERF_CUT, -1.0, jnp.where(z > ERF_CUT, 1.0, erf_fourier(z)))
    return 0.5 * x * (1.0 + erf)
