"""`secformer bench model`: BERT-base/large end to end under SPU, per method and protocol, with a
per-category breakdown and optional extrapolation from fewer layers.

Categories (bytes and actions are additive, so the breakdown is exact up to "other"):
- embedding: one-hot word lookup, token types, positions (once);
- linear: one layer's matrix products (Q, K, V, attention scores, probabilities x V, output, FFN in/out), x layers;
- softmax, gelu: one layer's worth, x layers; layernorm: one [L, H] LayerNorm, x (2 layers + 1);
- other = total - the above: residual adds, head reshapes, pooler tanh, classifier, glue.
Each category is measured by compiling that piece alone at the model's shapes, with the method's
approximations, under the same protocol; `other` is what the full program costs beyond them.

Extrapolation (`layers` < the model's): run the model with `layers` layers and with 0 layers (embeddings,
pooler, classifier); per-layer cost = (c_layers - c_0) / layers; total = c_0 + L per-layer. Bytes and actions of
a layer do not depend on its position, so this is exact up to SPU's per-program constants (checked against a
full run in the committed results).
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import spu.libspu as libspu
from transformers import BertConfig

from .. import linear
from ..approx import PRESETS, ApproxSet, sine
from ..inference import LINEAR_PUBLIC_ARG, SPU_COMPILER_OPTIONS, SPU_RUNTIME_OPTIONS, correlation_tree, logits_fn
from ..model import init_params
from ..spu_runner import Cost, Simulation, compile_program
from .network import Network
from .records import cost_fields

MODELS = {
    "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "bert-large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
    "bert-tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=1000),
}
METHODS = ("puma", "mpcformer", "secformer")
CATEGORIES = ("embedding", "linear", "softmax", "gelu", "layernorm", "other")


def model_config(model: str, layers: int | None = None) -> BertConfig:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of: {', '.join(MODELS)}")
    return BertConfig(**(MODELS[model] | ({"num_hidden_layers": layers} if layers is not None else {})), num_labels=2)


def _inputs(config: BertConfig, batch: int, seq_len: int, seed: int):
    """The data owner's secret inputs for random tokens (cost does not depend on their values)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, config.vocab_size, (batch, seq_len))
    eye = np.eye(config.vocab_size, dtype=np.float32)
    return ids, (eye[ids], np.ones((batch, seq_len), np.float32), np.eye(2, dtype=np.float32)[np.zeros_like(ids)])


LAYER = ("bert", "encoder", "layer", "0")



def _category_programs(config: BertConfig, approx: ApproxSet, batch: int, seq_len: int, protocol: str | None = None):
    """{category: (program, inputs, count per model)} measuring one piece each (see module doc); with
    `protocol`, the embedding and linear pieces use fixed-mask products where `linear.prefers_mask`."""
    b, l, h, i, heads = batch, seq_len, config.hidden_size, config.intermediate_size, config.num_attention_heads
    d = h // heads
    rng = np.random.default_rng(1)
    f32 = lambda *shape: rng.normal(0, 1, shape).astype(np.float32)
    copts = libspu.CompilerOptions(**SPU_COMPILER_OPTIONS)
    embedding_site, *layer_sites = linear.bert_sites(1, d)[:5]
    qkv, o, ffn_in, ffn_out = layer_sites

    def embedding(w, w_type, w_pos, onehot, type_onehot, secret=None, public=None):
        words, = linear.site_products(onehot, embedding_site, w, secret, public)
        return words + jnp.einsum("blt,td->bld", type_onehot, w_type) + w_pos[:l][None]

    def layer_products(w, hidden, probs, inter, secret=None, public=None):
        heads_of = lambda x: x.reshape(b, l, heads, d).transpose(0, 2, 1, 3)
        q, k, v = (heads_of(y) for y in linear.site_products(hidden, qkv, w, secret, public))
        scores = jnp.einsum("bhqd,bhkd->bhqk", q, k)  # Q carries 1 / sqrt(d), as in the model
        context = jnp.einsum("bhqk,bhkd->bhqd", probs, v).transpose(0, 2, 1, 3).reshape(b, l, h)
        attended, = linear.site_products(context, o, w, secret, public)
        return scores, *linear.site_products(attended, ffn_in, w, secret, public), *linear.site_products(inter, ffn_out, w, secret, public)

    shapes = {qkv: [(h, h)] * 3, o: [(h, h)], ffn_in: [(h, i)], ffn_out: [(i, h)]}
    weights: dict = {}
    for site, kernel_shapes in shapes.items():
        for (path, _), shape in zip(site.products, kernel_shapes):
            linear.set_path(weights, path, {"kernel": f32(*shape), "bias": f32(shape[1])})
    word_table = {}
    linear.set_path(word_table, embedding_site.products[0][0], {"embedding": f32(config.vocab_size, h)})
    n = config.num_hidden_layers
    onehot = np.eye(config.vocab_size, dtype=np.float32)[rng.integers(0, config.vocab_size, (b, l))]
    embedding_args = (word_table, f32(2, h), f32(config.max_position_embeddings, h), onehot, np.eye(2, dtype=np.float32)[np.zeros((b, l), int)])
    layer_args = (weights, f32(b, l, h), np.full((b, heads, l, l), 1.0 / l, np.float32), f32(b, l, i))
    pieces = {
        "embedding": (embedding, _masked_args(embedding_args, [embedding_site], protocol, batch, seq_len, rng), 1),
        "linear": (layer_products, _masked_args(layer_args, layer_sites, protocol, batch, seq_len, rng), n),
        "softmax": (approx.softmax_fn, (f32(b, heads, l, l) * 3, np.ones((b, 1, 1, l), np.float32)), n),
        "gelu": _gelu_piece(approx, f32(b, l, i), rng, n),
        "layernorm": (
            lambda x, s, bias: approx.layernorm_fn(x, s, bias, config.layer_norm_eps),
            (f32(b, l, h) * 2, np.ones(h, np.float32), np.zeros(h, np.float32)),
            2 * n + 1,
        ),
    }
    programs = {}
    for cat, (fn, args, count) in pieces.items():
        public = (len(args) - 1,) if protocol is not None and cat in ("embedding", "linear") else ()  # the masked weights
        programs[cat] = (compile_program(fn, *args, copts=copts, name=cat, public_args=public), args, count)
    return programs


def _masked_args(args: tuple, sites, protocol: str | None, batch: int, seq_len: int, rng) -> tuple:
    """`args` (weights first) as they are for SPU's own products (protocol None), or with fixed masks for
    `sites` under `protocol`: (stripped weights, ..., secret masks, public masks)."""
    if protocol is None:
        return args
    masks = linear.setup_masks(args[0], sites, protocol, rng)
    return (masks.strip(args[0]), *args[1:], masks.deal(batch, seq_len, rng), masks.public)


def _gelu_piece(approx: ApproxSet, x: np.ndarray, rng: np.random.Generator, count: int):
    """The GeLU category's (function, arguments, count): with dealt randomness when the GeLU needs it."""
    if not approx.needs_correlation:
        return approx.gelu_fn, (x,), count
    return approx.gelu_fn, (x, sine.dealer(x.shape, rng, approx.correlation_spec)), count


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
    )


def plaintext_seconds(config: BertConfig, batch: int, seq_len: int, repeats: int = 5) -> float:
    """Median wall seconds of the jax.jit-compiled plaintext model (exact nonlinearities), after warm-up."""
    params = init_params(config, PRESETS["plaintext"])
    ids, (_, mask, _) = _inputs(config, batch, seq_len, 0)
    fn = jax.jit(logits_fn(config, PRESETS["plaintext"]))
    args = (params, jnp.asarray(ids, jnp.int32), jnp.asarray(mask), jnp.zeros((batch, seq_len), jnp.int32))
    fn(*args).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args).block_until_ready()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _dealt(protocol, field, gelu_layer, programs, measured: int, total_layers: int) -> tuple[dict | None, dict | None]:
    """(offline, setup): bytes of the dealer's per-inference shares (GeLU randomness; the fixed-mask
    products' A and C) and of the once-per-model fixed-mask setup (E to every party, shares of B), a ring
    value counted as one 64-bit element (the program receives it as two int32 words), extrapolated to the
    model's layers like the online cost."""
    sim = Simulation(protocol, field)
    offline_bytes, what = 0, []
    if gelu_layer is not None:
        offline_bytes += sim.share_bytes(gelu_layer) * total_layers
        what.append("dealt GeLU randomness")
    if all(masks is None for *_, masks in programs.values()):
        return ({"send_bytes": offline_bytes, "what": " + ".join(what) + " (shares sent by the dealer)"} if what else None), None
    fresh = {n: sim.share_bytes(linear.fresh_leaves(args[-2])) for n, (_, args, *_) in programs.items()}
    weights = {n: sum(b.size for b in masks.weight_masks.values()) for n, (*_, masks) in programs.items()}
    per_value = sim.share_bytes([np.zeros(1024, np.int32)]) / 1024  # one ring element's shares, all parties
    lin = lambda c: c[0] + total_layers * (c[measured] - c[0]) / measured if measured < total_layers else c[measured]
    return (
        {"send_bytes": round(offline_bytes + lin(fresh)), "what": " + ".join(what + ["fixed-mask A and C"]) + " (shares sent by the dealer)"},
        {"send_bytes": round(2 * per_value * lin(weights)), "what": "once per model: W - B to every party, shares of B (fixed-mask products)"},
    )


def model_records(model, methods, protocols, seq_len, batch, layers, networks: list[Network], field="fm64", progress=None, runners=None, linear_layers: str = "spu") -> list[dict]:
    """Benchmark one model for `methods` x `protocols`; one record per (method, protocol), plus one plaintext
    record. `runners` as in `ops.op_records` (default: SPU simulations). `linear_layers`: "spu" (SPU's own
    products) or "fixed-mask" (`linear.py`, for every method alike, where `linear.prefers_mask`)."""
    if linear_layers not in linear.LINEAR_LAYERS:
        raise ValueError(f"unknown linear layers {linear_layers!r}; choose one of: {', '.join(linear.LINEAR_LAYERS)}")
    fixed_mask = linear_layers == "fixed-mask"
    if fixed_mask:
        linear.check_field(field)
        for protocol in protocols:
            linear.prefers_mask(protocol, 1, 1)  # refuses a protocol without a dealer
        if runners:
            raise ValueError("fixed-mask linear layers run in the simulation only (the cluster path sends no public inputs)")
    full = model_config(model)
    total_layers = full.num_hidden_layers
    measured = total_layers if layers is None else layers
    if not 1 <= measured <= total_layers:
        raise ValueError(f"--layers must be in [1, {total_layers}] for {model}, got {layers}")
    if seq_len > full.max_position_embeddings:
        raise ValueError(f"sequence length {seq_len} exceeds {full.max_position_embeddings} positions")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; choose from: {', '.join(METHODS)}")
    base = {"kind": "model", "model": model, "seq_len": seq_len, "batch": batch, "layers": total_layers, "field": field, "linear": linear_layers}
    plain_s = plaintext_seconds(full, batch, seq_len)
    records = [base | {"method": "plaintext", "protocol": "jax-cpu", "measured_layers": total_layers, "seconds": plain_s}]
    simulations = runners or {p: Simulation(p, field, **SPU_RUNTIME_OPTIONS) for p in protocols}
    copts = libspu.CompilerOptions(**SPU_COMPILER_OPTIONS)
    ids, inputs = _inputs(full, batch, seq_len, 0)
    for method in methods:
        approx = PRESETS[method]
        if approx.needs_correlation:
            sine.check_field(field)
        dealer_rng = np.random.default_rng(2)
        models = {}
        for n in sorted({measured, 0} if measured < total_layers else {measured}):
            config = model_config(model, n)
            params = jax.tree_util.tree_map(np.asarray, init_params(config, PRESETS["plaintext"]))
            models[n] = (params, logits_fn(config, approx), correlation_tree(config, approx, batch, seq_len, dealer_rng))
        one_layer = correlation_tree(model_config(model, 1), approx, batch, seq_len, dealer_rng)
        compiled: dict = {}

        def programs_for(protocol):
            """{layers: (program, args, fn, params, masks)} and the category programs: one set for SPU's
            own products, one per protocol for fixed-mask ones (which products pay depends on it)."""
            key = protocol if fixed_mask else None
            if key not in compiled:
                programs = {}
                for n, (params, fn, correlation) in models.items():
                    args, public, masks = (params, *inputs) + ((correlation,) if correlation is not None else ()), (), None
                    if fixed_mask:
                        head_dim = full.hidden_size // full.num_attention_heads
                        masks = linear.setup_masks(params, linear.bert_sites(n, head_dim), protocol, dealer_rng)
                        args = (masks.strip(params), *inputs, correlation, masks.deal(batch, seq_len, dealer_rng), masks.public)
                        public = (LINEAR_PUBLIC_ARG,)
                    program = compile_program(fn, *args, copts=copts, name=f"{model}_{n}", public_args=public)
                    programs[n] = (program, args, fn, params, masks)
                compiled[key] = (programs, _category_programs(full, approx, batch, seq_len, key))
            return compiled[key]

        for protocol in protocols:
            sim = simulations[protocol]
            costs, error = {}, None
            programs, categories = programs_for(protocol)
            offline, setup = _dealt(protocol, field, one_layer, programs, measured, total_layers)
            for n, (program, args, fn, params, _) in programs.items():
                out, costs[n] = sim.run(program, *args)
                if n == measured:
                    plain = np.asarray(jax.jit(fn)(params, ids.astype(np.int32), inputs[1], np.zeros_like(ids, np.int32)))
                    error = float(np.max(np.abs(out - plain)))
                if progress:
                    progress(1)
            total = costs[measured] if measured == total_layers else _extrapolate(costs[0], costs[measured], measured, total_layers)
            by_category = {}
            for cat, (program, args, count) in categories.items():
                by_category[cat] = _scaled(sim.run(program, *args)[1], count)
                if progress:
                    progress(1)
            by_category["other"] = {
                key: total_value - sum(c[key] for c in by_category.values())
                for key, total_value in (("seconds", total.seconds), ("send_bytes", total.send_bytes), ("send_actions", total.send_actions))
            }
            records.append(
                base | {
                    "method": method, "protocol": protocol, "approx": approx.to_dict(), "measured_layers": measured,
                    "extrapolated": measured < total_layers, **cost_fields(total, networks),
                    "by_category": by_category, "max_abs_error": error, "plaintext_seconds": plain_s, "offline": offline, "setup": setup,
                }
            )
            if fixed_mask:
                compiled.clear()  # the next protocol masks other products: free this one's programs and masks
    return records


def runs_per_method(protocols, layers, total_layers) -> int:
    """How many SPU runs `model_records` makes per method (for progress bars)."""
    return len(protocols) * ((1 if layers in (None, total_layers) else 2) + len(CATEGORIES) - 1)
