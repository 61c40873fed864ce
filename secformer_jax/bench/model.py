"""`secformer bench model`: BERT-base/large end to end under SPU, per method and protocol, with a
per-category breakdown and optional extrapolation from fewer layers.

Categories (bytes and actions are additive, so the breakdown is exact up to "other"):
- embedding: the model's own `BertEmbeddings` with no nonlinearity (one-hot word product, token types,
  positions), once;
- linear: the model's own `BertLayer` with no nonlinearity (`NO_NONLINEARITY`: Q, K, V, scores,
  scores x V, output, FFN in/out and the residual additions), x layers;
- softmax, gelu: one layer's worth of the method's function, x layers; layernorm: one [L, H] LayerNorm,
  x (2 layers + 1);
- other = total - the above: pooler and classifier, SPU's per-program work, and whatever the pieces miss.
Each piece is compiled alone at the model's shapes and run under the same protocol (and the same
linear-layer products); `other` is what the full program costs beyond them, so it must stay small and
non-negative (tests check it: it is a check on the pieces, not a definition).

Extrapolation (`layers` < the model's): run the model with `layers` layers and with 0 layers (embeddings,
pooler, classifier); per-layer cost = (c_layers - c_0) / layers; total = c_0 + L per-layer. Bytes and actions of
a layer do not depend on its position, so this is exact up to SPU's per-program constants (checked against a
full run in the committed results).
"""

from __future__ import annotations

import itertools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import spu.libspu as libspu
from transformers import BertConfig

from ..approx import METHODS, PRESETS, ApproxSet, sine
from ..inference import classifier_builder
from ..model import BertEmbeddings, BertLayer, WeightProduct, init_params
from ..private_run import PrivateRun
from ..program import ProgramBuilder, privacy
from ..protocols import Protocol
from ..protocols import get as protocol_named
from ..randomness import Dealer
from ..run import CLUSTER, SETUP_BYTES, SIMULATION, RunRecord, RunSpec, setup_json
from ..spu_runner import SPU_COMPILER_OPTIONS, SPU_RUNTIME_OPTIONS, Cost, Simulation, compile_program, peak_rss_bytes
from ..stages import StagedClassifier
from .network import Network

MODELS = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "bert-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "bert-tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=1000),
}
CATEGORIES = ("embedding", "linear", "softmax", "gelu", "layernorm", "other")
NO_NONLINEARITY = ApproxSet("none", "none", "none")  # the model's products and additions alone


def model_config(model: str, layers: int | None = None) -> BertConfig:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
    return BertConfig(**(MODELS[model] | ({"num_hidden_layers": layers} if layers is not None else {})), num_labels=2)


def _data(config: BertConfig, batch: int, seq_len: int, seed: int) -> tuple[np.ndarray, dict]:
    """Random token ids and the data owner's secret inputs for them (cost does not depend on their values)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, config.vocab_size, (batch, seq_len))
    eye = np.eye(config.vocab_size, dtype=np.float32)
    types = np.eye(config.type_vocab_size, dtype=np.float32)[np.zeros_like(ids)]
    return ids, {"words": eye[ids], "mask": np.ones((batch, seq_len), np.float32), "types": types}


class _Run:
    """One builder's program on fixed random weights and data (`PrivateRun.single`), set up once per runner."""

    def __init__(self, builder: ProgramBuilder, params: dict, data: dict):
        self.builder, self.data = builder, data
        self.params = jax.tree_util.tree_map(np.asarray, params)
        self.private = PrivateRun.single(builder, self.params)

    def run(self, simulation: Simulation, dealer: Dealer) -> tuple[np.ndarray, Cost, dict | None, dict | None]:
        """(output, online cost, offline, setup) of one run in `simulation`; the fixed-mask setup (B dealt by
        `dealer`, E opened) once per runner, the per-run randomness fresh from `dealer`."""
        setup = self.private.setup(simulation, self.data, dealer)
        return (*self.private.run(simulation, self.data, dealer), setup)


def _module_run(module, data_names, approx, field, linear_layers, data: dict, output=None, name="piece") -> _Run:
    builder = ProgramBuilder(module, data_names, approx, field, linear_layers, output, name)
    params = module.init(jax.random.PRNGKey(1), *(data[n] for n in data_names))["params"]
    return _Run(builder, params, data)


def _category_pieces(config: BertConfig, approx: ApproxSet, batch: int, seq_len: int, field: str, linear_layers: str, protocol: Protocol | None = None):
    """{category: (piece, count per model)}: a piece is a `_Run` of one of the model's own modules with no
    nonlinearity (embedding: `BertEmbeddings`; linear: one `BertLayer`, its products and additions), or
    (function, args) of the method's nonlinearity at the model's shapes (module doc)."""
    b, l, h, i, heads = batch, seq_len, config.hidden_size, config.intermediate_size, config.num_attention_heads
    rng = np.random.default_rng(1)
    f32 = lambda *shape: rng.normal(0, 1, shape).astype(np.float32)
    _, data = _data(config, batch, seq_len, 1)
    n = config.num_hidden_layers
    product = WeightProduct(protocol.weight_block if protocol is not None else 0)
    embedding = _module_run(BertEmbeddings(config, NO_NONLINEARITY, product), ("words", "types"), NO_NONLINEARITY, field, linear_layers,
                            {"words": data["words"], "types": data["types"]}, name="embedding")
    layer = _module_run(BertLayer(config, NO_NONLINEARITY, product), ("hidden", "mask"), NO_NONLINEARITY, field, linear_layers,
                        {"hidden": f32(b, l, h), "mask": data["mask"]}, lambda out: out[0], "linear")
    gelu_args = (f32(b, l, i) * 3,)
    if approx.needs_correlation:
        gelu_args += (sine.dealer(gelu_args[0].shape, Dealer().stream("gelu"), approx.correlation_spec),)
    return {
        "embedding": (embedding, 1),
        "linear": (layer, n),
        "softmax": ((approx.softmax_fn, (f32(b, heads, l, l) * 3, np.ones((b, 1, 1, l), np.float32))), n),
        "gelu": ((approx.gelu_fn, gelu_args), n),
        "layernorm": ((lambda x, s, bias: approx.layernorm_fn(x, s, bias, config.layer_norm_eps),
                       (f32(b, l, h) * 2, np.ones(h, np.float32), np.zeros(h, np.float32))), 2 * n + 1),
    }


def _scaled(cost: Cost, k: float) -> dict:
    return {"seconds": cost.seconds * k, "send_bytes": round(cost.send_bytes * k), "send_actions": round(cost.send_actions * k)}


def _extrapolate(c0: Cost, cn: Cost, measured: int, total: int) -> Cost:
    """c_0 + total (c_n - c_0) / measured, field by field (per-party lists too)."""
    lin = lambda a, b: a + total * (b - a) / measured
    return Cost(
        lin(c0.seconds, cn.seconds),
        round(lin(c0.send_bytes, cn.send_bytes)), round(lin(c0.recv_bytes, cn.recv_bytes)),
        round(lin(c0.send_actions, cn.send_actions)), round(lin(c0.recv_actions, cn.recv_actions)),
        [round(lin(a, b)) for a, b in zip(c0.party_send_bytes, cn.party_send_bytes)],
        [round(lin(a, b)) for a, b in zip(c0.party_send_actions, cn.party_send_actions)],
        {},
        [lin(a, b) for a, b in zip(c0.party_compute_seconds, cn.party_compute_seconds)],
        None if c0.beaver_bytes is None else round(lin(c0.beaver_bytes, cn.beaver_bytes)),
    )


def plaintext_seconds(config: BertConfig, batch: int, seq_len: int, repeats: int = 5) -> float:
    """Median wall seconds of the jax.jit-compiled plaintext model (exact nonlinearities), after warm-up."""
    ids, data = _data(config, batch, seq_len, 0)
    fn = jax.jit(classifier_builder(config, PRESETS["plaintext"]).function())
    inputs = {"params": init_params(config, PRESETS["plaintext"]), "words": jnp.asarray(ids, jnp.int32),
              "mask": jnp.asarray(data["mask"]), "types": jnp.zeros((batch, seq_len), jnp.int32)}
    fn(inputs).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(inputs).block_until_ready()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _extrapolated(values: dict[int, float], measured: int, total_layers: int) -> float:
    """c_0 + total (c_n - c_0) / n for a per-model quantity measured at n and 0 layers (or c_total itself)."""
    if measured == total_layers:
        return values[measured]
    return values[0] + total_layers * (values[measured] - values[0]) / measured


def model_records(model, methods, protocols, seq_len, batch, layers, networks: list[Network], field="fm64", progress=None, runners=None,
                  linear_layers: str = "spu", dealer_seed: int | None = None, layer_programs: bool | None = None) -> list[dict]:
    """Benchmark one model for `methods` x `protocols`; one record per (method, protocol), plus one plaintext
    record. `runners` as in `ops.op_records` (default: SPU simulations). `linear_layers`: "spu" (SPU's own
    products) or "fixed-mask" (`linear.py`, for every method alike, where `linear.prefers_mask`). The dealt
    randomness and masks are fresh per run from a new `randomness.Dealer` (costs do not depend on their
    values); `dealer_seed` makes them reproducible (recorded in each record as `dealer_seed`).
    `layer_programs`: run the model as one program per stage (`stages.py`: embedding, every layer, head;
    every layer run, none extrapolated) instead of one program; None (the default): layer programs when the
    protocols include one whose `Protocol.layer_programs` is set and `layers` is None (`uses_layer_programs`).
    Under a protocol without a dealer (`Protocol.dealer_free`) a method whose GeLU needs dealt randomness runs
    PUMA's GeLU instead (`ApproxSet.dealer_free`; the record's `approx` says so); the products with weights
    run in the protocol's `weight_block`s. `protocols`: `Protocol`s or their names."""
    protocols = [protocol_named(p) for p in protocols]
    runs_made = itertools.count()

    def new_dealer() -> Dealer:  # one per run: a stream name is used once per dealer
        return Dealer() if dealer_seed is None else Dealer.from_seed(dealer_seed * (1 << 30) + next(runs_made))

    fixed_mask = linear_layers == "fixed-mask"
    if layer_programs is None:
        layer_programs = uses_layer_programs(protocols, layers)
    full = model_config(model)
    total_layers = full.num_hidden_layers
    measured = total_layers if layers is None or layer_programs else layers
    if layer_programs and layers not in (None, total_layers):
        raise ValueError("--layer-programs runs every layer: leave out --layers")
    if not 1 <= measured <= total_layers:
        raise ValueError(f"--layers must be in [1, {total_layers}] for {model}, got {layers}")
    if seq_len > full.max_position_embeddings:
        raise ValueError(f"sequence length {seq_len} exceeds {full.max_position_embeddings} positions")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; choose from: {', '.join(METHODS)}")
    approx_for = lambda method, protocol: PRESETS[method].dealer_free() if protocol.dealer_free else PRESETS[method]
    for method in methods:
        for protocol in protocols:
            classifier_builder(full, approx_for(method, protocol), field, linear_layers, protocol).check(protocol)
    plain_s = plaintext_seconds(full, batch, seq_len)
    records = [{"kind": "model", "model": model, "seq_len": seq_len, "batch": batch, "layers": total_layers, "method": "plaintext",
                "protocol": "jax-cpu", "measured_layers": total_layers, "seconds": plain_s}]
    simulations = {protocol_named(p): r for p, r in runners.items()} if runners else {p: Simulation(p, field, **SPU_RUNTIME_OPTIONS) for p in protocols}
    ids, data = _data(full, batch, seq_len, 0)
    plain_inputs = {"words": ids.astype(np.int32), "mask": data["mask"], "types": np.zeros_like(ids, np.int32)}
    counts = sorted({measured, 0} if measured < total_layers else {measured})
    for method in methods:
        # per (approximations, weight block): the programs differ only there across protocols, so the
        # protocols that share them share each program's compilation (a `_Run` sets up per protocol)
        runs_of, pieces_of = {}, {}
        for protocol in protocols:
            approx = approx_for(method, protocol)
            key = (approx, protocol.weight_block)
            sim = simulations[protocol]
            if layer_programs:
                params = jax.tree_util.tree_map(np.asarray, init_params(full, PRESETS["plaintext"]))
                staged = StagedClassifier(full, approx, field, linear_layers, WeightProduct(protocol.weight_block)).private_run(params)
                setup_cost = staged.setup(sim, data, new_dealer())
                stage_costs = []
                out, total, dealt = staged.run(sim, data, new_dealer(), progress=lambda _: progress(1) if progress else None, per_stage=stage_costs)
                out = np.asarray(out)
                offline_bytes = dealt["send_bytes"] if dealt else 0
                setup_record = setup_json(setup_cost)
                reference = classifier_builder(full, approx).function()
                error = float(np.max(np.abs(out - np.asarray(jax.jit(reference)({"params": params, **plain_inputs})))))
                del params
            else:
                costs, offline, setup = {}, {}, {}
                if key not in runs_of:
                    runs_of[key] = {n: _Run(classifier_builder(model_config(model, n), approx, field, linear_layers, protocol),
                                            init_params(model_config(model, n), PRESETS["plaintext"]), data) for n in counts}
                for n, run in runs_of[key].items():
                    out, costs[n], dealt, setup_cost = run.run(sim, new_dealer())
                    offline[n] = dealt["send_bytes"] if dealt else 0
                    setup[n] = setup_json(setup_cost)
                    if n == measured:
                        error = float(np.max(np.abs(out - np.asarray(jax.jit(run.builder.function())({"params": run.params, **plain_inputs})))))
                    if progress:
                        progress(1)
                total = costs[measured] if measured == total_layers else _extrapolate(costs[0], costs[measured], measured, total_layers)
                offline_bytes = round(_extrapolated(offline, measured, total_layers))
                setup_record = None if setup[measured] is None else setup[measured] | {
                    key: round(_extrapolated({n: (s or {}).get(key, 0) for n, s in setup.items()}, measured, total_layers)) for key in SETUP_BYTES}
            by_category = {}  # with layer programs the stages are the breakdown (`stages` in the record)
            if not layer_programs and key not in pieces_of:
                pieces_of[key] = _category_pieces(full, approx, batch, seq_len, field, linear_layers, protocol)
            pieces = {} if layer_programs else pieces_of[key]
            for cat, (piece, count) in pieces.items():
                if isinstance(piece, _Run):
                    cost = piece.run(sim, new_dealer())[1]
                else:
                    fn, args = piece
                    cost = sim.run(compile_program(fn, *args, copts=libspu.CompilerOptions(**SPU_COMPILER_OPTIONS), name=cat), *args)[1]
                by_category[cat] = _scaled(cost, count)
                if progress:
                    progress(1)
            if pieces:
                by_category["other"] = {
                    key: total_value - sum(c[key] for c in by_category.values())
                    for key, total_value in (("seconds", total.seconds), ("send_bytes", total.send_bytes), ("send_actions", total.send_actions))
                }
            dealt_what = ["dealt GeLU randomness"] * approx.needs_correlation + ["fixed-mask A and C"] * fixed_mask
            spec = RunSpec(model, seq_len, method, _overrides(method, approx), protocol, field, linear_layers, layer_programs)
            record = RunRecord(
                "model", CLUSTER if runners else SIMULATION, spec, total, privacy(protocol, bool(dealt_what), reproducible=dealer_seed is not None),
                {"send_bytes": offline_bytes, "what": " + ".join(dealt_what) + " (seeds and corrections sent by the dealer)"} if dealt_what else None,
                setup_record, batch=batch, max_abs_error=error, peak_rss_bytes=peak_rss_bytes(), networks=tuple(networks),
                extra={"method": method, "layers": total_layers, "measured_layers": measured, "extrapolated": measured < total_layers,
                       "dealer_seed": dealer_seed, "plaintext_seconds": plain_s, **({"stages": stage_costs} if layer_programs else {"by_category": by_category})},
            )
            records.append(record.to_json())
    return records


def _overrides(method: str, approx: ApproxSet) -> tuple[tuple[str, str], ...]:
    """The operators where `approx` differs from the `method` preset (PUMA's GeLU under a dealer-free protocol)."""
    preset = PRESETS[method].to_dict()
    return tuple((op, name) for op, name in approx.to_dict().items() if preset[op] != name)


def uses_layer_programs(protocols, layers: int | None) -> bool:
    """Whether `model_records` runs layer programs when not told: under a protocol whose `layer_programs` is
    set (Cheetah: the whole BERT-base as one program does not fit 24 GiB, one program per stage does;
    `results/model-bert-base-128-cheetah-*`), unless `layers` asks for an extrapolation."""
    return any(protocol_named(p).layer_programs for p in protocols) and layers is None


def runs_per_method(protocols, layers, total_layers, layer_programs: bool = False) -> int:
    """How many SPU runs `model_records` makes per method (for progress bars)."""
    if layer_programs:  # one run per stage, the stages being the breakdown
        return len(protocols) * (total_layers + 2)
    return len(protocols) * ((1 if layers in (None, total_layers) else 2) + len(CATEGORIES) - 1)
