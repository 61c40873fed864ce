"""Nonlinear-layer approximations (pure JAX functions), the registry and presets, and the Goldschmidt kernels."""

from .gelu import gelu_exact, gelu_puma, gelu_quad, gelu_secformer
from .kernels import goldschmidt_div, goldschmidt_reciprocal, goldschmidt_rsqrt, plan_div, plan_rsqrt
from .layernorm import layernorm_exact, layernorm_puma, layernorm_secformer
from .registry import PRESETS, REGISTRY, ApproxSet, get_approx, resolve_approx
from .softmax import softmax_2quad, softmax_exact, softmax_puma, softmax_secformer

__all__ = [
    "PRESETS", "REGISTRY", "ApproxSet", "get_approx", "resolve_approx",
    "goldschmidt_div", "goldschmidt_reciprocal", "goldschmidt_rsqrt", "plan_div", "plan_rsqrt",
    "gelu_exact", "gelu_puma", "gelu_quad", "gelu_secformer",
    "softmax_exact", "softmax_puma", "softmax_2quad", "softmax_secformer",
    "layernorm_exact", "layernorm_puma", "layernorm_secformer",
]
