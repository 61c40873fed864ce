"""Nonlinear-layer approximations (pure JAX functions), the registry and presets, and the Goldschmidt kernels."""

from .gelu import gelu_exact, gelu_puma, gelu_quad, gelu_secformer_poly
from .kernels import (
    bracketed_div, bracketed_rsqrt, goldschmidt_div, goldschmidt_reciprocal, goldschmidt_rsqrt, plan_div, plan_rsqrt,
)
from .layernorm import layernorm_exact, layernorm_puma, layernorm_secformer
from .registry import METHODS, OPS, PRESETS, REGISTRY, STUDENTS, Approximation, ApproxSet, choices, get_approx, lookup, resolve_approx
from .sine import SineCorrelation, gelu_fourier, gelu_secformer_masked
from .softmax import softmax_2quad, softmax_exact, softmax_puma, softmax_secformer

__all__ = [
    "METHODS", "OPS", "PRESETS", "REGISTRY", "STUDENTS", "Approximation", "ApproxSet", "choices", "get_approx", "lookup", "resolve_approx",
    "bracketed_div", "bracketed_rsqrt",
    "goldschmidt_div", "goldschmidt_reciprocal", "goldschmidt_rsqrt", "plan_div", "plan_rsqrt",
    "SineCorrelation",
    "gelu_exact", "gelu_puma", "gelu_quad", "gelu_fourier", "gelu_secformer_masked", "gelu_secformer_poly",
    "softmax_exact", "softmax_puma", "softmax_2quad", "softmax_secformer",
    "layernorm_exact", "layernorm_puma", "layernorm_secformer",
]
