"""Nonlinear-layer approximations (pure JAX functions), their registry and presets."""

from .kernels import goldschmidt_div, goldschmidt_reciprocal, goldschmidt_rsqrt
from .registry import PRESETS, REGISTRY, ApproxSet, get_approx, resolve_approx

__all__ = [
    "PRESETS", "REGISTRY", "ApproxSet", "get_approx", "resolve_approx",
    "goldschmidt_div", "goldschmidt_reciprocal", "goldschmidt_rsqrt",
]
