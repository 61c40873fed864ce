"""`secformer bench ops`: each nonlinear operator and numeric kernel, per method and protocol, under SPU.

Methods derive from the registry (`_registry_methods`): for GeLU, Softmax and LayerNorm each compared
preset's function under the preset's name (GeLU: puma, mpcformer = quad, secformer = the paper's segmented
erf series on a masked opening), then every other selectable function (GeLU: fourier, the cosine series on
the same opening; secformer_poly, sin/cos of secrets); division and inverse square root:
the backend's own (`x / y`, `lax.rsqrt`; PUMA and MPCFormer) vs Goldschmidt started in the input's
power-of-two bracket within public bounds (SecFormer's `bracketed_div`, `bracketed_rsqrt`).
Inputs are drawn on the ranges the docstrings state; `max_abs_error` is against the exact function in
float64 (relative error for rsqrt), so it includes the approximation's own error: Quad and 2Quad are not
approximations at all (they need distillation). Division is softmax's: numerators in [0, den] over
denominators in 2Quad's range [16, K (128 + 5)^2], so quotients lie in [0, 1] and the error is absolute.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from ..approx import METHODS, PRESETS, bracketed_div, bracketed_rsqrt, choices, lookup, sine
from ..approx.softmax import QUAD_SHIFT

DIV_LO, DIV_HI_PER_KEY = 16.0, (128.0 + QUAD_SHIFT) ** 2  # the secformer softmax's public range per key
RSQRT_LO, RSQRT_HI = 2.0**-10, 2.0**12  # the secformer LayerNorm's public variance range


def _gelu_ref(x):
    return 0.5 * x * (1 + special.erf(x / math.sqrt(2)))


def _softmax_ref(scores, mask):
    e = np.exp(scores - scores.max(-1, keepdims=True)) * mask
    return e / e.sum(-1, keepdims=True)


def _layernorm_ref(x, scale, bias):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-12) * scale + bias


@dataclasses.dataclass(frozen=True)
class OpCase:
    """One operator: its methods, an input sampler for a shape, and the float64 reference."""

    methods: dict[str, Callable]
    sample: Callable[[tuple, np.random.Generator], tuple]
    reference: Callable
    relative: bool = False  # report relative instead of absolute error
    dealt: dict[str, Callable] = dataclasses.field(default_factory=dict)  # method -> (shape, stream) -> dealt randomness


def _sample_ln(shape, rng):
    rows, d = shape[:-1], shape[-1]
    var = rng.uniform(np.log2(RSQRT_LO) + 2, np.log2(RSQRT_HI) - 2, rows + (1,))
    x = rng.normal(size=shape) * np.sqrt(2.0**var) + rng.normal(size=rows + (1,))
    return x.astype(np.float32), rng.normal(1, 0.1, d).astype(np.float32), rng.normal(0, 0.1, d).astype(np.float32)


def _sample_div(shape, rng):
    keys = shape[-1]
    den = np.exp(rng.uniform(np.log(DIV_LO), np.log(keys * DIV_HI_PER_KEY), shape[:-1] + (1,)))
    num = den * rng.uniform(0, 1, shape)
    return num.astype(np.float32), den.astype(np.float32)


def _secformer_div(num, den):
    return bracketed_div(num, den, lo=DIV_LO, hi=num.shape[-1] * DIV_HI_PER_KEY)


def _secformer_rsqrt(v):
    return bracketed_rsqrt(v, lo=RSQRT_LO, hi=RSQRT_HI)


def _registry_methods(op: str) -> dict:
    """method -> registry record for `op`: each compared preset's choice under the preset's name, then every
    other selectable function (the backend's exact one aside) under its own name, or NAME-OP where that name
    is a preset's (e.g. "secformer-softmax" would be a softmax named like a preset that does not use it)."""
    methods = {preset: PRESETS[preset].record(op) for preset in METHODS}
    chosen = {record.name for record in methods.values()}
    for name in choices(op):
        if name not in chosen | {"exact"}:
            methods[f"{name}-{op}" if name in methods else name] = lookup(op, name)
    return methods


def _case(op: str, sample, reference, wrap=lambda fn: fn) -> OpCase:
    """An operator case whose methods derive from the registry; dealt randomness where a record needs it."""
    methods = _registry_methods(op)
    dealt = {m: partial(sine.dealer, spec=r.correlation) for m, r in methods.items() if r.correlation is not None}
    return OpCase({m: wrap(r.fn) for m, r in methods.items()}, sample, reference, dealt=dealt)


OPS: dict[str, OpCase] = {
    "gelu": _case("gelu", lambda shape, rng: (rng.uniform(-8, 8, shape).astype(np.float32),), _gelu_ref),
    "softmax": _case(
        "softmax", lambda shape, rng: (rng.uniform(-8, 8, shape).astype(np.float32), np.ones(shape[-1:], np.float32)), _softmax_ref
    ),
    "layernorm": _case("layernorm", _sample_ln, _layernorm_ref, lambda f: lambda x, scale, bias: f(x, scale, bias, 1e-12)),
    "div": OpCase(
        {"puma": jnp.divide, "mpcformer": jnp.divide, "secformer": _secformer_div}, _sample_div, np.divide
    ),
    "rsqrt": OpCase(
        {
            "puma": jax.lax.rsqrt,
            "mpcformer": lambda v: 1.0 / jnp.sqrt(v),
            "secformer": _secformer_rsqrt,
        },
        lambda shape, rng: (np.exp(rng.uniform(np.log(RSQRT_LO), np.log(RSQRT_HI), shape)).astype(np.float32),),
        lambda v: 1 / np.sqrt(v),
        relative=True,
    ),
}

# Transformer shapes: one layer's worth of each op (batch 1, 128 tokens).
MODEL_OP_SHAPES = {
    "bert-base": {"gelu": (128, 3072), "softmax": (12, 128, 128), "layernorm": (128, 768), "div": (12, 128, 128), "rsqrt": (128, 1)},
    "bert-large": {"gelu": (128, 4096), "softmax": (16, 128, 128), "layernorm": (128, 1024), "div": (16, 128, 128), "rsqrt": (128, 1)},
}


def sweep_shape(op: str, size: int) -> tuple:
    """A shape of `size` elements for the size sweep (rows of 128 keys, 768 features, ...)."""
    width = {"gelu": 1, "softmax": 128, "layernorm": 768, "div": 128, "rsqrt": 1}[op]
    if size % width:
        raise ValueError(f"sweep size {size} is not a multiple of {op}'s row width {width}")
    return (size,) if width == 1 else (size // width, width)


def max_error(case: OpCase, inputs: tuple, out: np.ndarray) -> float:
    ref = case.reference(*(np.asarray(a, np.float64) for a in inputs))
    err = np.abs(np.asarray(out, np.float64) - ref)
    return float(np.max(err / np.abs(ref) if case.relative else err))


def op_records(ops, methods, protocols, shape_sets, networks, field="fm64", seed=0, progress=None, runners=None) -> list[dict]:
    """Benchmark `ops` x `methods` x shapes (each compiled once) x `protocols` (each run once).

    `shape_sets`: list of (label, {op: shape}) such as ("bert-base", MODEL_OP_SHAPES["bert-base"]).
    `protocols`: `Protocol`s or their names. `runners`: {Protocol or its name: object with run(program, *args) -> (outputs, Cost)}, default SPU simulations
    (a `cluster.LocalCluster` runs through party processes instead).
    Returns one record per run; `progress(n)` is called after each run.
    """
    from .. import dealing
    from ..program import privacy
    from ..protocols import get
    from ..randomness import Dealer
    from ..spu_runner import SPU_RUNTIME_OPTIONS, Simulation, compile_program
    from .records import cost_fields

    for op in ops:
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}; choose from: {', '.join(OPS)}")
        if any(m in OPS[op].dealt for m in methods):
            sine.check_field(field)
    protocols = [get(p) for p in protocols]
    simulations = {get(p): r for p, r in runners.items()} if runners else {p: Simulation(p, field, **SPU_RUNTIME_OPTIONS) for p in protocols}
    records = []
    rng = np.random.default_rng(seed)
    for label, shapes in shape_sets:
        for op in ops:
            case = OPS[op]
            inputs = case.sample(tuple(shapes[op]), rng)
            for method in [m for m in methods if m in case.methods]:
                fn = case.methods[method]
                dealt = (case.dealt[method](inputs[0].shape, Dealer().stream(op)),) if method in case.dealt else ()
                program = compile_program(fn, *inputs, *dealt, name=f"{op}_{method}")
                for protocol in protocols:
                    if dealt and protocol.dealer_free:  # nothing dealt runs there (`program.check_settings`)
                        print(f"note: {op} {method} needs a dealer; not run under {protocol}", file=sys.stderr)
                        if progress:
                            progress(1)
                        continue
                    # the dealt correlation (the last argument) arrives seed-based, as from a dealer
                    shares = dealing.deal_inputs({f"arg{len(inputs)}": dealt[0]}, protocol) if dealt else None
                    out, cost = simulations[protocol].run(program, *inputs, *dealt, dealt=shares)
                    offline = {"send_bytes": shares.send_bytes, "what": "seeds and corrections sent by the dealer"} if dealt else None
                    records.append(
                        {
                            "kind": "op", "op": op, "method": method, "protocol": protocol.name, "field": field,
                            "shape_set": label, "shape": list(shapes[op]), "elements": int(np.prod(inputs[0].shape)),
                            **cost_fields(cost, networks, offline["send_bytes"] if offline else 0),
                            "max_abs_error": max_error(case, inputs, out),
                            "error_kind": "relative" if case.relative else "absolute",
                            "offline": offline,
                            **privacy(protocol, bool(dealt)),
                        }
                    )
                    if progress:
                        progress(1)
    return records
