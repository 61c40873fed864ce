"""Each approximation against its definition / the exact function on its stated range (plaintext JAX)."""

import dataclasses
import math

import jax
import numpy as np
import pytest

from secformer_jax.randomness import Dealer
from secformer_jax.approx import PRESETS, REGISTRY, STUDENTS, ApproxSet, choices, lookup, bracketed_div, bracketed_rsqrt, get_approx, goldschmidt_div, goldschmidt_reciprocal, goldschmidt_rsqrt, plan_div, plan_rsqrt, resolve_approx
from secformer_jax.approx import sine
from secformer_jax.approx.gelu import erf_fourier
from secformer_jax.approx.kernels import mul_pow2, plan_brackets

X = np.linspace(-8, 8, 4001).astype(np.float32)
GELU = np.asarray(jax.nn.gelu(X.astype(np.float64), approximate=False))


@pytest.mark.parametrize("name, bound", [("exact", 1e-6), ("puma", 2.0e-2), ("secformer", 7.5e-4), ("secformer_poly", 6.0e-2)])
def test_gelu_error_on_range(name, bound):
    err = np.abs(np.asarray(get_approx("gelu", name)(X)) - GELU).max()
    assert err <= bound


def test_gelu_puma_segments():
    f = get_approx("gelu", "puma")
    np.testing.assert_array_equal(f(np.array([-10.0, -4.5], np.float32)), [0.0, 0.0])
    np.testing.assert_allclose(f(np.array([3.5, 10.0], np.float32)), [3.5, 10.0])
    np.testing.assert_allclose(f(np.array([0.0], np.float32)), [0.008526321541038084], rtol=1e-6)


@pytest.mark.parametrize("name", ["secformer", "secformer_poly"])
def test_gelu_secformer_outer_segments_are_exact_limits(name):
    f = get_approx("gelu", name)
    x = np.array([-9.0, -4.0, 4.0, 9.0], np.float32)  # |x / sqrt 2| > 2.5: erf is +-1
    np.testing.assert_allclose(f(x), [0.0, 0.0, 4.0, 9.0])


def test_masked_sine_series_is_the_least_squares_fit_for_a_power_of_two_period():
    assert sine.PERIOD & (sine.PERIOD - 1) == 0
    np.testing.assert_allclose(sine.fit_beta(), sine.BETA, atol=1e-5)
    z = np.linspace(-sine.X_CUT, sine.X_CUT, 2001)
    series = np.asarray(sine.erf_series(z.astype(np.float32)))
    assert np.abs(series - np.array([math.erf(t / math.sqrt(2)) for t in z])).max() <= 5e-5  # 2.4e-5 in float64


@pytest.mark.parametrize("name", list(sine.COSINE_SPECS))
def test_gelu_cosine_series_is_gelus_fourier_series_on_its_domain(name):
    """The closed-form coefficients: with many harmonics the series is GeLU on the domain up to the periodic
    copies' overlap (7.1e-6 at its edge, 4 units from P / 2; so the formula is right); with the K = P / 2
    used, within the stated 6.7e-4. The function itself
    (the plaintext reference, `harmonic_sums` in float32) is within 2e-5 of that float64 series (measured
    8.2e-6 for P = 128)."""
    from scipy import special

    spec = sine.COSINE_SPECS[name]
    domain = sine.cosine_domain(spec)
    x = np.linspace(-domain, domain, 40001)
    exact = 0.5 * x * (1 + special.erf(x / math.sqrt(2)))
    for s, bound in ((sine.SineSpec(spec.period, 3 * spec.harmonics), 1e-5), (spec, 7e-4)):
        c0, c = sine.gelu_cosine_coefficients(s)
        series = 0.5 * x + c0 + np.cos(np.outer(x, 2 * np.pi * np.arange(1, s.harmonics + 1) / s.period)) @ c
        assert np.abs(series - exact).max() <= bound
    gelu = REGISTRY["gelu"][name]
    f32 = np.asarray(gelu(x.astype(np.float32)))  # the function itself, in float32
    assert np.abs(f32 - series).max() <= 2e-5
    assert np.abs(f32 - exact).max() <= 7e-4  # measured 6.75e-4 for P = 128
    far = np.float32(spec.period * 0.625)  # outside the domain it is wrong, as documented
    assert abs(float(gelu(far)) - far) > spec.period / 16


def test_the_smallest_cosine_spec_covering_a_range_is_named():
    assert sine.spec_for_range(-17.2, 24.7) == "fourier64" and sine.spec_for_range(-3, 26.2) == "fourier64"
    assert sine.spec_for_range(-9, 10) == "fourier32" and sine.spec_for_range(-30, 1) == "fourier"
    assert sine.spec_for_range(-61, 0) is None


@pytest.mark.parametrize("harmonics", [1, 7, 64])
def test_harmonic_sums_equal_the_direct_sums(harmonics):
    """Horner's rule in complex arithmetic (the references' fast path) against sum_k c_k cos / sin(k a)."""
    k = np.arange(1, harmonics + 1)
    coefficients = np.random.default_rng(harmonics).normal(size=harmonics) / k
    angle = np.linspace(-np.pi, np.pi, 2001)
    cos_sum, sin_sum = sine.harmonic_sums(angle.astype(np.float32), coefficients)
    np.testing.assert_allclose(cos_sum, np.cos(np.outer(angle, k)) @ coefficients, atol=2e-5)
    np.testing.assert_allclose(sin_sum, np.sin(np.outer(angle, k)) @ coefficients, atol=2e-5)


@pytest.mark.parametrize("spec", [sine.ERF_SINE, sine.GELU_COSINE])
def test_ring_harmonics_are_each_harmonics_cos_and_sin(spec):
    """The masked path's public harmonics, on int64 as SPU computes them on its 64-bit ring: every harmonic k
    within 2e-7 k of cos / sin(k a) (measured up to 1.9e-7 k; a wrong angle-addition step is off by O(1)),
    and the public terms c_k cos(k a) within half an ulp of the fixed point (2^-18)."""
    from jax.experimental import enable_x64

    top = spec.period << sine.FRAC_BITS  # the residue's ring integer R = r 2^f lies in [0, top)
    r_int = np.concatenate([[0, 1, top // 4, top // 2, top - 1], np.random.default_rng(0).integers(0, top, 20000)])
    k = np.arange(1, spec.harmonics + 1)
    angles = np.outer(2 * np.pi * r_int * 2.0**-sine.FRAC_BITS / spec.period, k)
    coefficients = sine.gelu_cosine_coefficients(spec)[1] if spec == sine.GELU_COSINE else 0.5 * np.asarray(sine.BETA)
    with enable_x64():
        cos, sin = sine.ring_harmonics(jax.numpy.asarray(r_int, np.int64), spec.period, spec.harmonics)
        terms = np.stack([sine.public_term(h, float(c)) for h, c in zip(cos, coefficients)], -1) * 2.0**-sine.FRAC_BITS
    assert len(cos) == len(sin) == spec.harmonics
    cos, sin = (np.stack(v, -1) * 2.0**-sine.HARMONIC_BITS for v in (cos, sin))
    assert np.all(np.abs(cos - np.cos(angles)) <= 2e-7 * k) and np.all(np.abs(sin - np.sin(angles)) <= 2e-7 * k)
    ulps = (terms - cos * coefficients) * 2.0**sine.FRAC_BITS
    assert np.abs(ulps).max() <= 0.502  # to nearest, but for the offset (|c_k| 2^-13 ulps)


def test_masked_sine_refuses_other_fields(tiny_checkpoint):
    from secformer_jax.checkpoint import load_checkpoint
    from secformer_jax.inference import PrivateClassifier

    checkpoint = load_checkpoint(tiny_checkpoint[0])
    with pytest.raises(ValueError, match="needs field fm64"):
        PrivateClassifier(checkpoint, PRESETS["secformer"], field="fm128")
    PrivateClassifier(checkpoint, resolve_approx("secformer", gelu="secformer_poly"), field="fm128")  # sines of secrets are fine


@pytest.mark.parametrize("spec", [sine.ERF_SINE, sine.GELU_COSINE])
def test_dealer_correlation_is_consistent(spec):
    corr = sine.dealer((3, 5), Dealer.from_seed(0).stream("gelu"), spec)
    assert corr.sin.shape == corr.cos.shape == (3, 5, spec.harmonics) and corr.h_hi.dtype == np.int32
    assert corr.t.dtype == np.int32 and corr.t.min() >= 0 and corr.t.max() < spec.period << sine.FRAC_BITS  # t 2^f
    t = corr.t * 2.0**-sine.FRAC_BITS
    k = np.arange(1, spec.harmonics + 1)
    assert corr.sin.dtype == corr.cos.dtype == np.int32  # ring integers at scale 2^SINE_BITS
    sin, cos = corr.sin * 2.0**-sine.SINE_BITS, corr.cos * 2.0**-sine.SINE_BITS
    np.testing.assert_allclose(sin, np.sin(2 * np.pi * k * t[..., None] / spec.period), atol=2.0**-sine.SINE_BITS)
    np.testing.assert_allclose(sin**2 + cos**2, 1.0, atol=2.0**-sine.SINE_BITS * 3)
    shapes = sine.correlation_shapes((3, 5), spec)
    assert [a.shape for a in shapes] == [a.shape for a in corr]


def test_erf_fourier_recurrence_equals_direct_series():
    z = np.linspace(-2.5, 2.5, 101)
    beta = (1.25772, -0.0299154, 0.382155, -0.0519123, 0.196033, -0.0624557, 0.118029)
    direct = sum(b * np.sin((m + 1) * np.pi * z / 10) for m, b in enumerate(beta))
    np.testing.assert_allclose(erf_fourier(z.astype(np.float32)), direct, atol=1e-5)
    # the published 7-term, period-20 series is within 3.6e-2 of erf on [-2.5, 2.5] (worst near |z| = 1.9)
    assert np.abs(direct - np.array([math.erf(t) for t in z])).max() <= 3.6e-2


def test_gelu_quad_definition():
    np.testing.assert_allclose(get_approx("gelu", "quad")(np.array([-2.0, 0.0, 4.0], np.float32)), [0.5, 0.5, 3.5])


def _scores(lim, shape=(3, 2, 8, 12), seed=0):
    return np.random.default_rng(seed).uniform(-lim, lim, shape).astype(np.float32)


def _mask(batch=3, keys=12):
    mask = np.ones((batch, 1, 1, keys), np.float32)
    mask[0, ..., 5:] = 0
    mask[1, ..., 9:] = 0
    return mask


def _reference_softmax(scores, mask):
    e = np.where(mask > 0, np.exp(scores - np.where(mask > 0, scores, -np.inf).max(-1, keepdims=True)), 0.0)
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("name", choices("softmax"))
def test_every_softmax_masks_padding_and_normalises(name):
    scores, mask = _scores(8), _mask()
    p = np.asarray(get_approx("softmax", name)(scores, mask))
    assert np.all(p[np.broadcast_to(mask, p.shape) == 0] == 0.0)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-4)
    assert np.all(p >= 0)


@pytest.mark.parametrize("name, bound", [("exact", 1e-6), ("puma", 2e-6)])
def test_exp_softmaxes_match_reference(name, bound):
    scores, mask = _scores(20), _mask()
    assert np.abs(np.asarray(get_approx("softmax", name)(scores, mask)) - _reference_softmax(scores, mask)).max() <= bound


def test_2quad_definition():
    scores, mask = _scores(8), _mask()
    q = (scores + 5.0) ** 2 * mask
    np.testing.assert_allclose(get_approx("softmax", "2quad")(scores, mask), q / q.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("lim", [1, 8, 60])
def test_secformer_softmax_equals_2quad_within_goldschmidt_tolerance(lim):
    scores, mask = _scores(lim), _mask()
    secformer = np.asarray(get_approx("softmax", "secformer")(scores, mask))
    two_quad = np.asarray(get_approx("softmax", "2quad")(scores, mask))
    np.testing.assert_allclose(secformer, two_quad, rtol=2e-4, atol=1e-7)


def _layer_inputs(var_lo, var_hi, rows=48, d=64, seed=0):
    rng = np.random.default_rng(seed)
    var = np.geomspace(var_lo, var_hi, rows)
    x = rng.normal(size=(rows, d))
    x = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True) * np.sqrt(var)[:, None] + rng.normal(size=(rows, 1))
    return x.astype(np.float32), rng.normal(1, 0.1, d).astype(np.float32), rng.normal(0, 0.1, d).astype(np.float32)


def _reference_layernorm(x, scale, bias, eps):
    x = x.astype(np.float64)
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps) * scale + bias


@pytest.mark.parametrize("name, bound", [("exact", 1e-5), ("puma", 1e-5), ("secformer", 1e-3)])
def test_layernorm_on_stated_variance_range(name, bound):
    x, scale, bias = _layer_inputs(2.0**-10, 2.0**12)
    err = np.abs(np.asarray(get_approx("layernorm", name)(x, scale, bias, 1e-12)) - _reference_layernorm(x, scale, bias, 1e-12))
    assert err.max() <= bound


def test_layernorm_secformer_degrades_outside_its_range():
    x, scale, bias = _layer_inputs(2.0**-14, 2.0**-12, rows=4)
    err = np.abs(np.asarray(get_approx("layernorm", "secformer")(x, scale, bias, 1e-12)) - _reference_layernorm(x, scale, bias, 1e-12))
    assert err.max() > 1e-2  # the docstring's warning is real: below var_lo the iteration has not converged


@pytest.mark.parametrize("lo, hi", [(16.0, 128 * 69.0**2), (0.5, 8.0), (1.0, 1.5)])
def test_goldschmidt_div_across_and_at_edges_of_range(lo, hi):
    den = np.concatenate([[lo, hi], np.geomspace(lo, hi, 50)]).astype(np.float32)
    num = np.random.default_rng(0).uniform(0.1, 2.0, den.shape).astype(np.float32) * den
    plan = plan_div(lo, hi)
    rel = np.abs(np.asarray(goldschmidt_div(num, den, iters=plan.iters, log2_bound=plan.log2_bound)) * den / num - 1)
    assert rel.max() <= 2e-4 and plan.max_rel_error <= 1e-4


def test_goldschmidt_div_outside_range():
    plan = plan_div(16.0, 1000.0)  # k = 10
    below = np.asarray(goldschmidt_reciprocal(np.float32([1.0]), iters=plan.iters, log2_bound=plan.log2_bound))
    assert abs(below[0] - 1.0) > 0.1  # not converged below lo
    beyond = np.asarray(goldschmidt_reciprocal(np.float32([2 ** 11 + 1.0]), iters=plan.iters, log2_bound=plan.log2_bound))  # y > 2
    assert not np.isfinite(beyond[0]) or abs(beyond[0] * (2**11 + 1) - 1) > 1.0


@pytest.mark.parametrize("lo, hi", [(2.0**-10, 2.0**12), (0.25, 4.0)])
def test_goldschmidt_rsqrt_across_and_at_edges_of_range(lo, hi):
    v = np.concatenate([[lo, hi], np.geomspace(lo, hi, 50)]).astype(np.float32)
    plan = plan_rsqrt(lo, hi)
    rel = np.abs(np.asarray(goldschmidt_rsqrt(v, iters=plan.iters, log2_bound=plan.log2_bound)) * np.sqrt(v.astype(np.float64)) - 1)
    assert rel.max() <= 2e-4


def test_bracketed_kernels_across_and_at_edges_of_range():
    lo, hi = 16.0, 128 * 133.0**2
    den = np.concatenate([np.geomspace(lo, hi, 2001), 2.0 ** np.arange(4, 22), 2.0 ** np.arange(4, 22) * (1 - 2**-20)])
    num = den * np.random.default_rng(0).uniform(0.01, 1, den.shape)
    den, num = den.astype(np.float32), num.astype(np.float32)
    assert np.abs(np.asarray(bracketed_div(num, den, lo=lo, hi=hi)) * den / num - 1).max() <= 2e-6
    v = np.concatenate([np.geomspace(2.0**-10, 2.0**12, 2001), 2.0 ** np.arange(-10, 13)]).astype(np.float32)
    rel = np.abs(np.asarray(bracketed_rsqrt(v, lo=2.0**-10, hi=2.0**12)) * np.sqrt(v.astype(np.float64)) - 1)
    assert rel.max() <= 1e-5
    assert plan_brackets(2.0**-10, 2.0**12) == ((-8, -6, -4, -2, 0, 2, 4, 6, 8, 10, 12, 14), 2)
    assert plan_brackets(16, hi).exps == (6, 8, 10, 12, 14, 16, 18, 20, 22)
    # below the range the deflated value falls under 1/4 and the planned iterations no longer suffice
    assert abs(float(bracketed_rsqrt(np.float32([2.0**-16]), lo=2.0**-10, hi=2.0**12)[0]) * 2.0**-8 - 1) > 1e-3


def test_goldschmidt_rsqrt_diverges_beyond_three_times_deflation():
    plan = plan_rsqrt(0.25, 4.0)  # k = 2: x 2^-k >= 3 diverges
    assert plan.log2_bound == 2
    out = np.asarray(goldschmidt_rsqrt(np.float32([13.0]), iters=plan.iters, log2_bound=plan.log2_bound))
    assert not np.isfinite(out[0]) or abs(out[0] * math.sqrt(13.0) - 1) > 1.0


def test_iteration_counts_follow_the_range():
    assert plan_div(16, 2.0**21) == (21, 21, pytest.approx((1 - 2.0**-17) ** 2**21))
    assert plan_div(0.5, 8).iters == 8
    assert plan_div(0.5, 8).iters < plan_div(0.05, 8).iters
    assert plan_rsqrt(2.0**-10, 2.0**12)[:2] == (22, 12)
    assert plan_rsqrt(0.25, 4.0)[:2] == (7, 2)
    with pytest.raises(ValueError, match="0 < lo <= hi"):
        plan_div(0, 8)
    with pytest.raises(ValueError, match="even log2_bound"):
        goldschmidt_rsqrt(np.float32([1.0]), iters=3, log2_bound=3)


def test_mul_pow2_splits_large_shifts_exactly():
    x = np.float32([3.0, -5.5])
    np.testing.assert_array_equal(np.asarray(mul_pow2(x, -40)), x * np.float32(2.0**-40))
    np.testing.assert_array_equal(np.asarray(mul_pow2(x, 0)), x)


def test_presets_and_overrides():
    # what each preset's record says, not its names restated: every protocol function of a preset trains as
    # a function it evaluates, PUMA needs no distillation, MPCFormer and SecFormer do
    assert all(PRESETS[m].training().needs_correlation is False for m in PRESETS)
    assert PRESETS["puma"].training() == PRESETS["plaintext"] and set(STUDENTS) == {"mpcformer", "secformer"}
    assert PRESETS["secformer"].training().softmax == PRESETS["mpcformer"].softmax  # SecFormer's softmax is 2Quad
    assert all(lookup(op, "none").selectable is False and "none" not in choices(op) for op in REGISTRY)
    ablation = resolve_approx("secformer", gelu="fourier", softmax="2quad")
    assert ablation == ApproxSet("fourier", "2quad", "secformer") and ablation.softmax_fn is REGISTRY["softmax"]["2quad"].fn
    assert hash(ablation) == hash(ApproxSet("fourier", "2quad", "secformer"))
    assert ablation.correlation_spec == sine.GELU_COSINE and PRESETS["secformer"].correlation_spec == sine.ERF_SINE
    with pytest.raises(dataclasses.FrozenInstanceError):
        ablation.gelu = "exact"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: resolve_approx("crypten"), "unknown approximation preset 'crypten'; choose one of: plaintext, puma, mpcformer, secformer"),
        (lambda: resolve_approx("puma", gelu="relu"), "unknown gelu approximation 'relu'; choose one of: exact, puma, quad, secformer, secformer_poly, fourier"),
        (lambda: ApproxSet("exact", "sparsemax", "exact"), "unknown softmax approximation 'sparsemax'"),
        (lambda: get_approx("attention", "exact"), "unknown operator 'attention'"),
    ],
)
def test_unknown_names_are_refused_with_choices(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call()
