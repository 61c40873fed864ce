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
   all 2 x 7 products and their sum on ring integers, with one truncation at the end (`masked_series`, `ring_value`). The public
   cos / sin of k a, a = 2 pi r / P, come from those of a alone by angle addition, one harmonic after the
   other in a loop, on public ring integers at scale 2^30 (`ring_base_harmonic`, `ring_harmonics`): no
   communication.
The ring-wide T is built in the program from its low part t (uniform on the fixed-point grid of [0, P)) and
two int32 words h, h' as T = (h 2^31 + h') P + t: the opened d = x - T is uniform on the ring, so it says
nothing about x (not only its residue). The dealer (a process that is not a computing party: `dealer`) draws
fresh (t, h, h', S, C) per GeLU element and run; reusing them would reveal differences of inputs.

The same opening serves any Fourier series of x: `cosine_gelu` writes GeLU itself as one cosine series of
period 128, 64 or 32 (`COSINE_SPECS`; no comparison; `SineSpec` says which period and how many harmonics a
correlation carries).

Without a correlation (`corr=None`) each function computes its series of x itself: the ideal functionality,
i.e. the plaintext reference, by Horner's rule in complex arithmetic from one cos / sin of x
(`harmonic_sums`; under SPU a secret sine, a secret cosine and a complex secret product per harmonic).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..openings import reveal

class SineSpec(NamedTuple):
    """What a correlation is dealt for: the series' period (in units of x, a power of two with
    period 2^FRAC_BITS dividing the ring, see the module doc) and its number of harmonics."""

    period: int
    harmonics: int


ERF_SINE = SineSpec(16, 7)  # `gelu_secformer_masked`'s erf series
# `cosine_gelu`'s GeLU series by name (the registry's GeLU choices): period P, K = P / 2 harmonics, so every
# spec keeps the harmonics up to the same frequency (w_K = pi) and the same error; a smaller P covers a
# smaller |x| (`cosine_domain`) with fewer dealt values per element (2 K + 3)
COSINE_SPECS = {"fourier": SineSpec(128, 64), "fourier64": SineSpec(64, 32), "fourier32": SineSpec(32, 16)}
GELU_COSINE = COSINE_SPECS["fourier"]  # `gelu_fourier`'s
DOMAIN_MARGIN = 4  # a cosine series of period P is GeLU on |x| <= P / 2 - 4 (`gelu_cosine_coefficients`)
PERIOD, HARMONICS = ERF_SINE
X_CUT = 2.5 * math.sqrt(2.0)  # erf(x / sqrt 2) = +-1 beyond (two comparisons), the series inside
FRAC_BITS = 18  # SPU FM64's fixed point; the opened value's low log2(PERIOD) + FRAC_BITS bits are its residue
SINE_BITS = 16  # the dealt sines and cosines are ring integers round(value 2^16) (see `ring_value`)
HARMONIC_BITS = 30  # the public cos / sin of k a are ring integers value 2^30, floored (`ring_harmonics`)
ROOT_DOUBLINGS = 6  # `ring_harmonics` takes a Taylor series at a / 2^6 and doubles the angle 6 times
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


def dealer(shape: tuple, stream, spec: SineSpec = ERF_SINE) -> SineCorrelation:
    """Fresh correlated randomness for a GeLU input of `shape` (the dealer's side, in the clear), drawn from
    `stream` (a `randomness.Stream`: ChaCha20, one per GeLU and run)."""
    t_int = stream.below_pow2(shape, (spec.period << FRAC_BITS).bit_length() - 1)
    angles = 2 * np.pi * (t_int[..., None] * 2.0**-FRAC_BITS) * np.arange(1, spec.harmonics + 1) / spec.period
    words = lambda: stream.int32(shape)
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
    high = (corr.h_hi * 65536 * 32768 + corr.h_lo) * period  # int ring arithmetic: (h 2^31 + h') P
    mask = high.astype(x.dtype) + jax.lax.bitcast_convert_type(corr.t, x.dtype)  # T: P 2^f divides the ring, so T mod P = t
    opened = reveal(x - mask)
    bits = jax.lax.bitcast_convert_type(opened, jnp.int32) & ((period << FRAC_BITS) - 1)
    return jax.lax.bitcast_convert_type(bits, x.dtype)


def _ring_scale(a, b):
    """a b 2^-30 (floor) for ring integers at scale 2^HARMONIC_BITS (products < 2^62: no wrap-around)."""
    return (a * b) >> HARMONIC_BITS


def _ring_rotate(cos_a, sin_a, cos_b, sin_b):
    """cos(a + b) and sin(a + b) from ring integers at scale 2^30: each a sum of two products, floored once
    (b's sine negated, not a product: b is the smaller operand where they differ)."""
    return (cos_a * cos_b + sin_a * -sin_b) >> HARMONIC_BITS, (sin_a * cos_b + cos_a * sin_b) >> HARMONIC_BITS


def _ring_horner(t, coefficients):
    """sum_i coefficients_i t^i for ring-integer t at scale 2^30 (Horner, a floor per step)."""
    acc = round(coefficients[-1] * 2**HARMONIC_BITS)
    for c in reversed(coefficients[:-1]):
        acc = round(c * 2**HARMONIC_BITS) + _ring_scale(t, acc)
    return acc


def ring_base_harmonic(r_int, period: int):
    """(cos a, sin a), a = 2 pi r / P, for r = r_int 2^-f in [0, P) given as its ring integer, as ring
    integers round-down(value 2^30). Integer arithmetic on values below 2^63: under SPU int32 is a 64-bit
    ring integer (public here: no communication); plaintext JAX computes the same with int64 (x64 enabled).

    1. theta = a / 2^6 = 2 pi R / (P 2^(f + 6)) on the 2^30 scale: R times the constant as an int32, a shift;
    2. cos and sin of theta by Taylor series (theta < 0.1: the first term dropped is below 2e-11);
    3. six angle doublings give cos a and sin a."""
    step = 2 * math.pi * 2.0 ** (HARMONIC_BITS - FRAC_BITS - ROOT_DOUBLINGS) / period  # theta 2^30 = R step
    shift = 30 - math.ceil(math.log2(step))  # round(step 2^shift) fits an int32; R times it < 2^(log2(P) + f + 31)
    theta = (r_int * round(step * 2**shift)) >> shift
    t = _ring_scale(theta, theta)
    cos, sin = _ring_horner(t, (1, -1 / 2, 1 / 24, -1 / 720)), _ring_scale(theta, _ring_horner(t, (1, -1 / 6, 1 / 120)))
    for _ in range(ROOT_DOUBLINGS):
        cos, sin = _ring_rotate(cos, sin, cos, sin)
    return cos, sin


def ring_harmonics(r_int, period: int, harmonics: int) -> tuple[list, list]:
    """([cos(k a)], [sin(k a)]), k = 1..harmonics: `ring_base_harmonic` rotated by itself, one harmonic after
    the other (`_ring_rotate`), exactly as `masked_series` runs it in its loop; one array per harmonic.
    The error of harmonic k is about k times that of harmonic 1 plus k floors of 2^-30 (within 1.9e-7 k of
    exact cos / sin for both specs, tested). The 2^30 scale keeps that growth far below the 2^-18 of the
    fixed-point terms built from them (the same recurrence on SPU's fixed point reached 3.5e-4 at k = 64)."""
    base = ring_base_harmonic(r_int, period)
    cos, sin = [base[0]], [base[1]]
    while len(cos) < harmonics:
        more = _ring_rotate(cos[-1], sin[-1], *base)
        cos.append(more[0])
        sin.append(more[1])
    return cos, sin


def term_constants(coefficient: float) -> tuple[int, int, int]:
    """(o, m, shift) of `public_term` for a nonzero float coefficient (module-level constants)."""
    if coefficient == 0:
        raise ValueError("a public term needs a nonzero coefficient")
    bits = 30 - math.ceil(math.log2(abs(coefficient)))
    shift = HARMONIC_BITS + bits - FRAC_BITS
    m = round(coefficient * 2.0**bits)
    return round(2.0 ** (shift - 1) / m), m, shift


def public_term(harmonic, coefficient: float):
    """coefficient * harmonic as a ring integer at scale 2^f, rounded to nearest, for a `ring_harmonics` ring
    integer (scale 2^30) and a nonzero float coefficient: times m = round(c 2^s), s as large as an int32
    allows (so c is exact to 2^-30 relative), and a shift by 30 + s - f. The rounding offset 2^(29 + s - f)
    does not fit an int32 constant, so it enters as (harmonic + o) m with o = round(2^(29 + s - f) / m),
    about 2^11 / |c| (so |c| > 2^-20): half an ulp to within |c| 2^-13 ulps. Rounding down instead adds up
    to one ulp of 2^-f per term (times a dealt sine): measured 2.8e-4 instead of 1.6e-4 on `gelu_fourier`,
    1.0e-4 instead of 6.1e-5 on `gelu_secformer_masked` (from their references)."""
    offset, m, shift = term_constants(coefficient)
    return ((harmonic + offset) * m) >> shift


def harmonic_sums(angle, coefficients):
    """(sum_k c_k cos(k angle), sum_k c_k sin(k angle)), k = 1..len(coefficients): the real and imaginary
    parts of sum_k c_k z^k, z = cos(angle) + i sin(angle), by Horner's rule in complex arithmetic
    (acc = c_K; acc = c_k + z acc down to k = 1; the sums are z acc) from one cos and sin of `angle`.
    One complex product per harmonic and no array of harmonics (jax.jit fuses the loop), and |z| = 1, so a
    rounding error is carried along without growth, in floating point and in SPU's fixed point alike.
    (Clenshaw's real recurrence on cos(angle) alone is as fast in float32, but near angle = 0, where cos is
    flat, it multiplies the fixed-point error of cos(angle) by |sum_k k^2 c_k| (330 for `gelu_fourier`): under
    SPU without a correlation that was 2.9e-3 from its plaintext self on [-8, 8], this 1.2e-3; measured.)"""
    zc, zs = jnp.cos(angle), jnp.sin(angle)
    coefficients = [float(c) for c in coefficients]  # Python floats: they take angle's dtype
    re, im = jnp.full_like(angle, coefficients[-1]), jnp.zeros_like(angle)
    for c in reversed(coefficients[:-1]):
        re, im = c + (re * zc - im * zs), re * zs + im * zc
    return re * zc - im * zs, re * zs + im * zc


def masked_series(x, corr: SineCorrelation, period: int, coefficients, kind: str, init=None):
    """sum_k c_k cos(2 pi k x / P) (kind "cos") or sum_k c_k sin(2 pi k x / P) (kind "sin") through the masked
    opening, k = 1..harmonics of `corr`, as a secret ring integer at scale 2^(f + 16) (`ring_value` reads it),
    plus `init` (a secret ring integer at that scale) when given. SPU only.
    With a = 2 pi k r / P public (harmonics of the residue r = (x - T) mod P, `masked_residue`) and the dealt
    C_k, S_k of b = 2 pi k T / P: cos(a + b) = cos a C_k - sin a S_k, sin(a + b) = sin a C_k + cos a S_k. Each
    product is a public ring integer (`public_term`, scale 2^f) times a dealt one (scale 2^16): exact and
    local, summed without truncation. The harmonics run in a loop (jax.lax.fori_loop: harmonic k + 1 is
    harmonic k rotated by the base, as `ring_harmonics`), so the program holds one step, not K (its size,
    and SPU's compile time, do not grow with K)."""
    r_int = jax.lax.bitcast_convert_type(masked_residue(x, corr, period), jnp.int32)  # R = r 2^f in [0, P 2^f)
    base = ring_base_harmonic(r_int, period)
    signs = (1.0, -1.0) if kind == "cos" else (1.0, 1.0)  # the coefficients of (C_k, S_k)
    table = np.array([term_constants(s * float(c)) for c in coefficients for s in signs], np.int32).reshape(len(coefficients), 2, 3)
    consts = [jnp.asarray(table[:, j, i]) for j in range(2) for i in range(3)]

    def term(k, cos_k, sin_k):
        first, second = (cos_k, sin_k) if kind == "cos" else (sin_k, cos_k)  # paired with C_k and S_k
        o1, m1, s1, o2, m2, s2 = (c[k] for c in consts)
        with_c = jax.lax.dynamic_index_in_dim(corr.cos, k, axis=-1, keepdims=False)
        with_s = jax.lax.dynamic_index_in_dim(corr.sin, k, axis=-1, keepdims=False)
        return (((first + o1) * m1) >> s1) * with_c + (((second + o2) * m2) >> s2) * with_s

    def step(k, state):
        cos_k, sin_k, total = _ring_rotate(state[0], state[1], *base) + (state[2],)
        return cos_k, sin_k, total + term(k, cos_k, sin_k)

    total = term(0, *base) if init is None else init + term(0, *base)  # a secret start: no secret zero needed
    return jax.lax.fori_loop(1, len(coefficients), step, (*base, total))[2]


def ring_value(total, dtype):
    """A secret ring integer at scale 2^(f + 16) (the sum of public-times-dealt products) as a fixed-point
    `dtype` value: the bitcast reads it 2^16 times too large and the multiplication by 2^-16 is its one
    truncation (SPU truncates by 2^-16 for 28 / 8 bytes per element in ABY3 / SEMI2K, by 2^-18 for 40 / 16:
    why the dealt sines are at 2^16). Needs the sum's magnitude below 2^63 (here at most 2^45). SPU only."""
    return jax.lax.bitcast_convert_type(total, dtype) * (2.0**-SINE_BITS)


def erf_series(x, corr: SineCorrelation | None = None, scale: float = 1.0):
    """scale * sum_k BETA_k sin(2 pi k x / P): by the masked opening with `corr`, else by `harmonic_sums` of x
    (the reference). `scale` is folded into the public coefficients (no extra secret product)."""
    beta = scale * np.asarray(BETA)
    if corr is None:
        return harmonic_sums((2 * math.pi / PERIOD) * x, beta)[1]
    return ring_value(masked_series(x, corr, PERIOD, beta, "sin"), x.dtype)


def gelu_secformer_masked(x, corr: SineCorrelation | None = None):
    """SecFormer's Π_GeLU with the masked-opening sine: 0.5 x (1 + erf(x / sqrt 2)), erf = -1 below -X_CUT,
    +1 above X_CUT (two comparisons), `erf_series` between.

    Any x. Max abs error vs the exact GeLU on [-8, 8]: 7.2e-4, at the cut (erf(2.5) = 0.99959 is set to 1;
    the series alone is within 4.3e-5). Under SPU FM64 with a dealt correlation, within 4.9e-5 (ABY3 and
    SEMI2K) of this function without one (the reference) in float32 on [-8, 8] (measured on 2001 points, up
    to 6.3e-5 on 20001; tests assert 1e-4). Online cost per element: one opening, public sines
    (`ring_harmonics`), 2 x 7 public-secret products summed with one truncation, two comparisons, two
    selects and one secret product (ABY3: 448 bytes, SEMI2K: 352; PUMA's GeLU: 860 and 656). Time per
    configuration: `results/ops-gelu-bert-base.json`."""
    cdf = jnp.where(x < -X_CUT, 0.0, jnp.where(x > X_CUT, 1.0, 0.5 + erf_series(x, corr, scale=0.5)))
    return x * cdf  # 0.5 (1 + erf) with the 0.5 inside the series' coefficients: one truncation fewer


def gelu_cosine_coefficients(spec: SineSpec = GELU_COSINE) -> tuple[float, np.ndarray]:
    """(c_0, c_1..c_K) with GeLU(x) ~ x / 2 + c_0 + sum_k c_k cos(w_k x), w_k = 2 pi k / P (float64).

    Derivation: x erf(x / sqrt 2) = E|x + Z| - sqrt(2 / pi) exp(-x^2 / 2) for Z ~ N(0, 1), so
    GeLU(x) = x / 2 + (|.| * phi)(x) / 2 - phi(x), phi the standard normal density. On |x| < P / 2, |x| is
    the triangle wave P / 4 - (2 P / pi^2) sum_{k odd} cos(w_k x) / k^2, and convolving with phi multiplies
    cos(w_k x) by exp(-w_k^2 / 2); phi's periodisation is (1 / P) (1 + 2 sum_k exp(-w_k^2 / 2) cos(w_k x))
    (Poisson). Hence c_0 = P / 8 - 1 / P and c_k = -exp(-w_k^2 / 2) (P / (pi^2 k^2) [k odd] + 2 / P),
    exact up to the periodic copies' overlap (exp(-(P / 2 - |x|)^2 / 2): 7.1e-6 at most for |x| <= P / 2 - 4)."""
    k = np.arange(1, spec.harmonics + 1)
    w = 2 * np.pi * k / spec.period
    odd = (k % 2 == 1) * spec.period / (np.pi**2 * k**2)
    return spec.period / 8 - 1 / spec.period, -np.exp(-(w**2) / 2) * (odd + 2 / spec.period)


def cosine_domain(spec: SineSpec) -> float:
    """The bound on |x| within which the cosine series of `spec` is GeLU: P / 2 - DOMAIN_MARGIN."""
    return spec.period / 2 - DOMAIN_MARGIN


def cosine_gelu(spec: SineSpec):
    """GeLU as one cosine series of period P = spec.period: x / 2 + c_0 + sum_{k=1..K} c_k cos(2 pi k x / P)
    (`gelu_cosine_coefficients`), the cosines from the masked opening: no comparison, no secret product.

    Domain |x| <= P / 2 - 4 (`cosine_domain`: 60, 28, 12 for P = 128, 64, 32). With K = P / 2 harmonics the
    max abs error vs the exact GeLU there is 6.7e-4, 6.2e-4, 5.2e-4 (the dropped harmonics; the periodic
    copies' overlap adds at most 7.1e-6 at the domain's edge; float64, measured on a 6e-4 grid). Beyond the
    domain the periodic part turns back: for |x| in [P / 2, P] the error grows to about |x| - P / 2 and it
    repeats with period P, so inputs must be known to stay inside: a checkpoint records its GeLU input range
    and names the smallest spec that covers it (`secformer.json`, `spec_for_range`); the CLI refuses a spec
    whose domain it exceeds.
    Without a correlation (the reference) the series is summed by `harmonic_sums` from one cos / sin of x:
    in float32 within 8.2e-6 of the float64 series for P = 128 (6.75e-4 of the exact GeLU on its domain).
    Under SPU FM64 with a dealt correlation (`dealer(shape, stream, spec)`), within 1.7e-4 of the reference
    on [-56, 56] for P = 128 (ABY3 and SEMI2K, measured on up to 393216 points; 2.8e-4 when the public
    terms were rounded down; tests assert 2.5e-4 for every spec). The public cos / sin of the harmonics come
    from integer angle addition in a loop (`masked_series`), not from SPU's fixed-point sin / cos.
    Online cost per element: one opening and one truncation (x / 2 and the 2 K public-secret products
    summed on ring integers, `masked_series`): ABY3 52 bytes, SEMI2K 24 (measured; PUMA's GeLU: 860 and
    656), whatever the spec; the dealt randomness is 2 K + 3 values per element."""
    c0, c = gelu_cosine_coefficients(spec)

    def gelu(x, corr: SineCorrelation | None = None):
        if corr is None:
            return 0.5 * x + c0 + harmonic_sums((2 * math.pi / spec.period) * x, c)[0]
        x_int = jax.lax.bitcast_convert_type(x, jnp.int32)  # x's ring integer is x 2^f; x / 2 rides along
        return ring_value(masked_series(x, corr, spec.period, c, "cos", init=(1 << (SINE_BITS - 1)) * x_int), x.dtype) + c0

    gelu.__name__ = gelu.__qualname__ = f"gelu_fourier_p{spec.period}"
    gelu.__doc__ = f"`cosine_gelu` of period {spec.period} with {spec.harmonics} harmonics: GeLU on |x| <= {cosine_domain(spec):g}."
    return gelu


gelu_fourier = cosine_gelu(GELU_COSINE)
GELU_DOMAIN = cosine_domain(GELU_COSINE)  # |x| <= 60


def spec_for_range(lo: float, hi: float) -> str | None:
    """The name of the smallest cosine spec whose domain covers [lo, hi] (None if none does)."""
    fits = [(spec.period, name) for name, spec in COSINE_SPECS.items() if max(abs(lo), abs(hi)) <= cosine_domain(spec)]
    return min(fits)[1] if fits else None
