"""The one registry of approximations, the `ApproxSet` a model is built with, and the presets."""

from __future__ import annotations

import dataclasses
from typing import Callable

from . import gelu as _gelu
from . import layernorm as _layernorm
from . import sine as _sine
from . import softmax as _softmax

# op -> name -> function. Signatures: gelu f(x); softmax f(scores, mask); layernorm f(x, scale, bias, eps).
# A GeLU in NEEDS_CORRELATION also takes f(x, corr): dealt randomness of the given `sine.SineSpec` (see
# `sine.py`); without it, it computes its ideal functionality (the plaintext reference).
REGISTRY: dict[str, dict[str, Callable]] = {
    "gelu": {
        "exact": _gelu.gelu_exact,
        "puma": _gelu.gelu_puma,
        "quad": _gelu.gelu_quad,
        "secformer": _sine.gelu_secformer_masked,
        "secformer_poly": _gelu.gelu_secformer_poly,
        "fourier": _sine.gelu_fourier,
    },
    "softmax": {
        "exact": _softmax.softmax_exact,
        "puma": _softmax.softmax_puma,
        "2quad": _softmax.softmax_2quad,
        "secformer": _softmax.softmax_secformer,
    },
    "layernorm": {
        "exact": _layernorm.layernorm_exact,
        "puma": _layernorm.layernorm_puma,
        "secformer": _layernorm.layernorm_secformer,
    },
}


NEEDS_CORRELATION: dict[tuple[str, str], _sine.SineSpec] = {
    ("gelu", "secformer"): _sine.ERF_SINE,
    ("gelu", "fourier"): _sine.GELU_COSINE,
}
# Functions right only on |x| <= a bound (the program cannot check it; `secformer eval` does, in plaintext).
DOMAINS: dict[tuple[str, str], float] = {("gelu", "fourier"): _sine.GELU_DOMAIN}


def get_approx(op: str, name: str) -> Callable:
    """The registered function `name` for operator `op` (ValueError naming the choices otherwise)."""
    if op not in REGISTRY:
        raise ValueError(f"unknown operator {op!r}; operators: {', '.join(REGISTRY)}")
    if name not in REGISTRY[op]:
        raise ValueError(f"unknown {op} approximation {name!r}; choose one of: {', '.join(REGISTRY[op])}")
    return REGISTRY[op][name]


@dataclasses.dataclass(frozen=True)
class ApproxSet:
    """Which registered function each nonlinear operator uses. Frozen and made of strings, so hashable
    (it is a Flax module attribute); names are checked on construction."""

    gelu: str
    softmax: str
    layernorm: str

    def __post_init__(self):
        for op in REGISTRY:
            get_approx(op, getattr(self, op))

    def fn(self, op: str) -> Callable:
        """The function chosen for `op` ("gelu", "softmax" or "layernorm")."""
        return get_approx(op, getattr(self, op))

    @property
    def gelu_fn(self) -> Callable:
        return self.fn("gelu")

    @property
    def softmax_fn(self) -> Callable:
        return self.fn("softmax")

    @property
    def layernorm_fn(self) -> Callable:
        return self.fn("layernorm")

    @property
    def correlation_spec(self) -> _sine.SineSpec | None:
        """What the GeLU's dealt correlated randomness (`sine.SineCorrelation`) is for; None if it needs none."""
        return NEEDS_CORRELATION.get(("gelu", self.gelu))

    @property
    def gelu_domain(self) -> float | None:
        """The bound on |x| within which the GeLU is right; None if it is right everywhere."""
        return DOMAINS.get(("gelu", self.gelu))

    @property
    def needs_correlation(self) -> bool:
        """Whether the GeLU runs a protocol on dealt correlated randomness."""
        return self.correlation_spec is not None

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


PRESETS: dict[str, ApproxSet] = {
    "plaintext": ApproxSet("exact", "exact", "exact"),
    "puma": ApproxSet("puma", "puma", "puma"),
    "mpcformer": ApproxSet("quad", "2quad", "exact"),
    # SecFormer's softmax and LayerNorm protocols; its GeLU is the cosine series on the same masked opening
    # (no comparison: 52 / 24 bytes per element in ABY3 / SEMI2K against the paper's segmented erf series' 448
    # / 352, on the domain |x| <= 56). `--gelu secformer` restores the paper's Π_GeLU (any x).
    "secformer": ApproxSet("fourier", "secformer", "secformer"),
}


def resolve_approx(preset: str, gelu: str | None = None, softmax: str | None = None, layernorm: str | None = None) -> ApproxSet:
    """A preset with optional per-operator overrides (for ablations), e.g. ("secformer", softmax="2quad")."""
    if preset not in PRESETS:
        raise ValueError(f"unknown approximation preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    overrides = {op: name for op, name in (("gelu", gelu), ("softmax", softmax), ("layernorm", layernorm)) if name is not None}
    return dataclasses.replace(PRESETS[preset], **overrides)
