"""The one registry of approximations, the `ApproxSet` a model is built with, and the presets.

An approximation is one `Approximation` record: its function, the dealt randomness it runs on (a
`sine.SineSpec`, or None), the input domain it is right on (None: everywhere), the function a student
is trained with in its place (`trains_as`: a protocol that evaluates a training function's ideal
functionality trains as that function), and a one-line cost note. Presets, the CLI's choices, the
benchmark's operator cases and the distilled students all derive from `REGISTRY`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from . import gelu as _gelu
from . import layernorm as _layernorm
from . import sine as _sine
from . import softmax as _softmax

OPS = ("gelu", "softmax", "layernorm")


@dataclasses.dataclass(frozen=True)
class Approximation:
    """One registered function for operator `op`. Signatures: gelu f(x) (f(x, corr) when `correlation` is set:
    dealt randomness of that spec, see `sine.py`; without it, the ideal functionality, i.e. the plaintext
    reference); softmax f(scores, mask); layernorm f(x, scale, bias, eps)."""

    op: str
    name: str
    fn: Callable
    cost: str
    trains_as: str | None = None  # None: trained as itself
    correlation: _sine.SineSpec | None = None
    domain: float | None = None  # right only for |x| <= domain (the program cannot check it; `secformer eval` does)
    selectable: bool = True  # False: only for cost accounting (the benchmark's "none"), not a CLI choice

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def _none_gelu(x):
    """Identity: no GeLU at all (the benchmark measures the linear layers with it)."""
    return x


def _none_softmax(scores, mask):
    """Identity on the scores (no normalisation, no mask): benchmark use only."""
    return scores


def _none_layernorm(x, scale, bias, eps):
    """Identity (no normalisation, gain or bias): benchmark use only."""
    return x


_RECORDS = (
    Approximation("gelu", "exact", _gelu.gelu_exact, "the backend's erf"),
    Approximation("gelu", "puma", _gelu.gelu_puma, "3 comparisons + 5 products (PUMA)", "exact"),
    Approximation("gelu", "quad", _gelu.gelu_quad, "1 product (MPCFormer; needs distillation)"),
    Approximation("gelu", "secformer", _sine.gelu_secformer_masked, "1 opening + 2 comparisons (paper's erf series)", "exact", _sine.ERF_SINE),
    Approximation("gelu", "secformer_poly", _gelu.gelu_secformer_poly, "sin/cos of secrets + 2 comparisons", "exact"),
    *(Approximation("gelu", name, _sine.cosine_gelu(spec), f"1 opening + 1 truncation (cosine series, period {spec.period}, |x| <= {_sine.cosine_domain(spec):g})",
                    "exact", spec, _sine.cosine_domain(spec)) for name, spec in _sine.COSINE_SPECS.items()),
    Approximation("gelu", "none", _none_gelu, "free (cost accounting only)", selectable=False),
    Approximation("softmax", "exact", _softmax.softmax_exact, "the backend's exp, max and division"),
    Approximation("softmax", "puma", _softmax.softmax_puma, "Taylor exp + max + division (PUMA)", "exact"),
    Approximation("softmax", "2quad", _softmax.softmax_2quad, "(x + c)^2 + division (MPCFormer; needs distillation)"),
    Approximation("softmax", "secformer", _softmax.softmax_secformer, "2Quad + bracketed Goldschmidt division", "2quad"),
    Approximation("softmax", "none", _none_softmax, "free (cost accounting only)", selectable=False),
    Approximation("layernorm", "exact", _layernorm.layernorm_exact, "the backend's rsqrt"),
    Approximation("layernorm", "puma", _layernorm.layernorm_puma, "PUMA's rsqrt", "exact"),
    Approximation("layernorm", "secformer", _layernorm.layernorm_secformer, "bracketed Goldschmidt rsqrt", "exact"),
    Approximation("layernorm", "none", _none_layernorm, "free (cost accounting only)", selectable=False),
)
REGISTRY: dict[str, dict[str, Approximation]] = {op: {r.name: r for r in _RECORDS if r.op == op} for op in OPS}


def choices(op: str) -> list[str]:
    """The names a user may pick for `op` (the CLI's choices)."""
    return [name for name, record in REGISTRY[op].items() if record.selectable]


def lookup(op: str, name: str) -> Approximation:
    """The record `name` for operator `op` (ValueError naming the choices otherwise)."""
    if op not in REGISTRY:
        raise ValueError(f"unknown operator {op!r}; operators: {', '.join(REGISTRY)}")
    if name not in REGISTRY[op]:
        raise ValueError(f"unknown {op} approximation {name!r}; choose one of: {', '.join(choices(op))}")
    return REGISTRY[op][name]


def get_approx(op: str, name: str) -> Callable:
    """The registered function `name` for operator `op`."""
    return lookup(op, name).fn


@dataclasses.dataclass(frozen=True)
class ApproxSet:
    """Which registered function each nonlinear operator uses. Frozen and made of strings, so hashable
    (it is a Flax module attribute); names are checked on construction."""

    gelu: str
    softmax: str
    layernorm: str

    def __post_init__(self):
        for op in OPS:
            lookup(op, getattr(self, op))

    def record(self, op: str) -> Approximation:
        return lookup(op, getattr(self, op))

    def fn(self, op: str) -> Callable:
        """The function chosen for `op` ("gelu", "softmax" or "layernorm")."""
        return self.record(op).fn

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
        return self.record("gelu").correlation

    @property
    def gelu_domain(self) -> float | None:
        """The bound on |x| within which the GeLU is right; None if it is right everywhere."""
        return self.record("gelu").domain

    @property
    def needs_correlation(self) -> bool:
        """Whether the GeLU runs a protocol on dealt correlated randomness."""
        return self.correlation_spec is not None

    def dealer_free(self) -> ApproxSet:
        """This set with PUMA's GeLU in place of one that runs on dealt randomness: what a protocol without a
        dealer (Cheetah) runs for it."""
        return dataclasses.replace(self, gelu="puma") if self.needs_correlation else self

    def training(self) -> ApproxSet:
        """The set a student for this one is trained with: each protocol replaced by the function whose
        ideal functionality it evaluates (`Approximation.trains_as`)."""
        return ApproxSet(*(self.record(op).trains_as or getattr(self, op) for op in OPS))

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


PRESETS: dict[str, ApproxSet] = {
    "plaintext": ApproxSet("exact", "exact", "exact"),
    "puma": ApproxSet("puma", "puma", "puma"),
    "mpcformer": ApproxSet("quad", "2quad", "exact"),
    # SecFormer's protocols: the paper's Π_GeLU (segmented erf series on a masked opening, any x), 2Quad with
    # Goldschmidt division, Goldschmidt LayerNorm. Chosen on end-to-end totals (compute, online and dealt
    # bytes) against the cosine series and PUMA's GeLU: results/README.md, "The GeLU preset's choice".
    "secformer": ApproxSet("secformer", "secformer", "secformer"),
}
# The methods compared (the benchmark's and the students'): every preset but the plaintext one.
METHODS = tuple(name for name in PRESETS if name != "plaintext")
# Presets that change the function computed, so a model needs distillation to keep its accuracy.
STUDENTS = tuple(name for name in METHODS if PRESETS[name].training() != PRESETS["plaintext"])


def resolve_approx(preset: str, gelu: str | None = None, softmax: str | None = None, layernorm: str | None = None) -> ApproxSet:
    """A preset with optional per-operator overrides (for ablations), e.g. ("secformer", softmax="2quad")."""
    if preset not in PRESETS:
        raise ValueError(f"unknown approximation preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    overrides = {op: name for op, name in (("gelu", gelu), ("softmax", softmax), ("layernorm", layernorm)) if name is not None}
    return dataclasses.replace(PRESETS[preset], **overrides)
