"""GeLU(x) = x Φ(x) = 0.5 x (1 + erf(x / sqrt(2))) and its MPC-friendly approximations."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# PUMA's piecewise polynomial (SPEC.md section 1): coefficients of F0 on [-4, -1.95) and F1 on [-1.95, 3].
PUMA_F0 = (-0.5054031199708174, -0.42226581151983866, -0.11807612951181953, -0.011034134030615728)
PUMA_F1 = (0.008526321541038084, 0.5, 0.3603292692789629, 0.0, -0.037688200365904236, 0.0, 0.0018067462606141187)
# SecFormer's Fourier sine series for erf(z) on [-2.5, 2.5], period 20: erf(z) ~ sum_m beta_m sin(m pi z / 10).
SECFORMER_BETA = (1.25772, -0.0299154, 0.382155, -0.0519123, 0.196033, -0.0624557, 0.118029)


def gelu_exact(x):
    """The erf GeLU, evaluated by the backend (under SPU: its own erf approximation, within 4.2e-4 of
    float32 on [-8, 8] in ABY3 FM64)."""
    return jax.nn.gelu(x, approximate=False)


def _poly(x, coeffs):
    """sum_i coeffs[i] x^i by Horner's rule (zero coefficients cost nothing but a multiplication)."""
    acc = jnp.full_like(x, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = acc * x + c
    return acc


def gelu_puma(x):
    """PUMA's GeLU: 0 for x < -4; F0 (cubic) on [-4, -1.95); F1 (degree 6, even powers + 0.5 x) on
    [-1.95, 3]; x for x > 3. Three comparisons select the segment.

    Max abs error vs exact GeLU on [-8, 8]: 2.0e-2 (float32; near the segment joints); under SPU ABY3
    FM64 within 2.1e-3 of this plaintext function on [-8, 8] (tests/test_approx_spu.py asserts 3e-3).
    """
    b0, b1, b2 = x < -4.0, x < -1.95, x > 3.0
    f0, f1 = _poly(x, PUMA_F0), _poly(x, PUMA_F1)
    return jnp.where(b0, 0.0, jnp.where(b1, f0, jnp.where(b2, x, f1)))


def gelu_quad(x):
    """MPCFormer's Quad: 0.125 x^2 + 0.25 x + 0.5. Not an approximation of GeLU on any wide range (its
    error at x = 0 is 0.5, and it grows as x^2): usable only after distillation. One multiplication."""
    return 0.125 * x * x + 0.25 * x + 0.5


def erf_fourier(z):
    """erf(z) for z in [-2.5, 2.5] as sum_{m=1..7} beta_m sin(m theta), theta = pi z / 10.

    Evaluates sin(theta) and cos(theta) once and the harmonics by the angle-addition recurrence
    sin((m+1)t) = sin(mt) cos t + cos(mt) sin t, cos((m+1)t) = cos(mt) cos t - sin(mt) sin t.
    Max abs error vs erf on [-2.5, 2.5]: 3.6e-2 (the published 7-term period-20 series; worst near |z| = 1.9).
    """
    theta = z * (math.pi / 10.0)
    s1, c1 = jnp.sin(theta), jnp.cos(theta)
    s, c = s1, c1
    acc = SECFORMER_BETA[0] * s1
    for beta in SECFORMER_BETA[1:]:
        s, c = s * c1 + c * s1, c * c1 - s * s1
        acc = acc + beta * s
    return acc


def gelu_secformer(x):
    """SecFormer's Π_GeLU: 0.5 x (1 + erf(x / sqrt 2)) with erf = -1 for z < -2.5, +1 for z > 2.5 (two
    comparisons) and `erf_fourier` in between. Here sin/cos of a secret are evaluated by the backend
    (the masked-opening sine protocol is a separate piece).

    Max abs error vs exact GeLU on [-8, 8]: 5.8e-2 (float32; it is 0.5 |x| times the series' erf error);
    under SPU ABY3 FM64 within 1.3e-4 of this plaintext function on [-8, 8] (asserted: 5e-4).
    """
    z = x * (1.0 / math.sqrt(2.0))
    erf = jnp.where(z < -2.5, -1.0, jnp.where(z > 2.5, 1.0, erf_fourier(z)))
    return 0.5 * x * (1.0 + erf)
