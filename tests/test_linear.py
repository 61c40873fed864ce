"""Fixed-mask linear layers (`linear.py`): the dealer's ring arithmetic, which products pay under which
protocol, one product under SPU (error and exact bytes), a whole BERT with them, and the bench option."""

import jax
import numpy as np
import pytest

from secformer_jax import dealing, linear
from secformer_jax.approx import PRESETS
from secformer_jax.bench.model import model_records
from secformer_jax.bench.network import LAN, WAN
from secformer_jax.bench.report import save
from secformer_jax.inference import classifier_builder
from secformer_jax.model import Dense
from secformer_jax.program import ProgramBuilder
from secformer_jax.randomness import Dealer
from secformer_jax.spu_runner import Simulation

from conftest import tiny_config, tiny_params

U64 = np.uint64


def test_which_products_pay():
    assert linear.prefers_mask("semi2k", 3072, 768) and linear.prefers_mask("semi2k", 768, 768)
    assert linear.prefers_mask("aby3", 768, 3 * 768) and not linear.prefers_mask("aby3", 768, 768)
    with pytest.raises(ValueError, match="dealer-based protocol"):
        linear.prefers_mask("cheetah", 768, 3072)


SITE = linear.Site(("dense",), (1, 3, 8), ((("dense",), "kernel"),))


def _dense(rng, n=64, m=256):
    return {"dense": {"kernel": rng.normal(0, 0.1, (n, m)).astype(np.float32), "bias": rng.normal(0, 0.1, m).astype(np.float32)}}


def test_the_dealer_masks_the_weight_and_deals_fresh_products():
    rng = np.random.default_rng(1)
    params = _dense(rng, 8, 4)
    masks = linear.setup_masks(params, [SITE], "semi2k", Dealer())
    w = np.round(params["dense"]["kernel"].astype(np.float64) * 2**16).astype(np.int32)
    assert (masks.weights(params)["dense"]["kernel"] == w).all()  # the model owner's setup input
    b = masks.weight_masks()["dense"]["kernel"]
    assert b.dtype == U64 and linear.setup_masks(params, [SITE], "semi2k", None).b is None  # the model owner draws no B
    first, second = masks.deal([SITE], Dealer()), masks.deal([SITE], Dealer())
    for dealt in (first, second):
        assert (dealt["dense"]["kernel"] == np.matmul(dealt["dense"]["input"], b)).all()  # C = A B mod 2^64
    assert not (first["dense"]["input"] == second["dense"]["input"]).all()  # fresh per inference
    assert "kernel" not in masks.strip(params)["dense"] and "kernel" in params["dense"]
    with pytest.raises(ValueError, match="below 2\\^15"):
        masks.weights({"dense": {"kernel": np.full((8, 4), 2.0**15, np.float32)}})


@pytest.mark.parametrize("protocol, per_input, per_output", [("semi2k", 16, 8), ("aby3", 24, 28)])
def test_a_masked_product_under_spu(protocol, per_input, per_output):
    """x W + b within the stated bound; bytes: one opening of x and one truncation of the output (exact),
    fewer than SPU's own product here (a weight wider than the input)."""
    rng = np.random.default_rng(2)
    params, x = _dense(rng)["dense"], rng.normal(0, 1, (1, 32, 64)).astype(np.float32)
    builders = {layers: ProgramBuilder(Dense(256), ("x",), PRESETS["plaintext"], linear_layers=layers) for layers in linear.LINEAR_LAYERS}
    builder = builders["fixed-mask"]
    masks = builder.setup(protocol, {"x": x}, Dealer())
    assert "kernel" not in builder.inputs(params, {"x": x}, masks)["params"]  # the model owner does not send a masked kernel
    sim = Simulation(protocol)
    setup = builder.run_setup(sim, params, masks)
    out, cost, offline = builder.run(sim, params, {"x": x}, masks, Dealer())
    want = x.astype(np.float64) @ params["kernel"] + params["bias"]
    # the setup opened E = W - B (every party holds the same public E) and cost one opening of W's size
    w = np.round(params["kernel"].astype(np.float64) * 2**16).astype(np.int64).astype(U64)
    (b,) = masks.b.values()
    assert all((dealing.public_ring(party[0]) == w - b).all() for party in masks.held["masked_weights"])
    assert setup["online"].send_bytes == per_input * params["kernel"].size  # an opening, as D's
    # seed-based dealing: one correction share of A and C travels (SEMI2K to one party, ABY3 to two) plus the seeds
    corrections, seeds = {"semi2k": (1, 1), "aby3": (2, 4)}[protocol]
    assert offline["send_bytes"] == corrections * 8 * (x.size + want.size) + 32 * seeds
    bound = 2.0**-17 * np.abs(x).sum(-1, keepdims=True) + 2.0**-14
    assert (np.abs(out - want) <= bound).all()
    assert cost.send_bytes == per_input * x.size + per_output * want.size
    plain = builders["spu"].inputs(params, {"x": x})
    _, own = sim.run(builders["spu"].compile(plain)[0], plain)
    assert cost.send_bytes < own.send_bytes


def test_a_bert_with_fixed_mask_products_matches_plaintext_and_costs_less():
    config = tiny_config(vocab_size=512)
    params = jax.tree_util.tree_map(np.asarray, tiny_params(config))
    approx = PRESETS["mpcformer"]
    rng = np.random.default_rng(3)
    ids = rng.integers(1, config.vocab_size, (1, 8))
    data = {"words": np.eye(config.vocab_size, dtype=np.float32)[ids], "mask": np.ones((1, 8), np.float32), "types": np.eye(2, dtype=np.float32)[np.zeros_like(ids)]}
    builder, own_builder = (classifier_builder(config, approx, linear_layers=layers) for layers in ("fixed-mask", "spu"))
    plain = np.asarray(jax.jit(builder.function())({"params": params, "words": ids.astype(np.int32), "mask": data["mask"], "types": np.zeros_like(ids, np.int32)}))
    masks = builder.setup("semi2k", data, Dealer())
    assert len(masks.sites) == 2 + 4 * config.num_hidden_layers + 1  # every product in SEMI2K
    sim = Simulation("semi2k")
    builder.run_setup(sim, params, masks)
    masked, cost, _ = builder.run(sim, params, data, masks, Dealer())
    own_inputs = own_builder.inputs(params, data)
    own, own_cost = sim.run(own_builder.compile(own_inputs)[0], own_inputs)
    own_error = np.abs(own - plain).max()  # SPU's fixed point under MPCFormer's approximations: ~5e-3 here
    assert own_error < 1e-2 and np.abs(masked - plain).max() < 2 * own_error
    assert cost.send_bytes < 0.6 * own_cost.send_bytes


def test_bench_records_fixed_mask_products(tmp_path):
    records = model_records("bert-tiny", ["mpcformer"], ["semi2k", "aby3"], 8, 1, 1, [LAN, WAN], linear_layers="fixed-mask")
    own = {(r["method"], r["protocol"]): r for r in model_records("bert-tiny", ["mpcformer"], ["semi2k"], 8, 1, 1, [LAN])}
    for r in records[1:]:
        assert r["linear"] == "fixed-mask" and r["setup"]["send_bytes"] > 0 and "fixed-mask A and C" in r["offline"]["what"]
        if r["protocol"] == "semi2k":
            mine, theirs = r["by_category"], own[(r["method"], "semi2k")]["by_category"]
            assert mine["linear"]["send_bytes"] < theirs["linear"]["send_bytes"]
            assert mine["embedding"]["send_bytes"] < theirs["embedding"]["send_bytes"]
            assert all(mine[c][k] == theirs[c][k] for c in ("softmax", "gelu") for k in ("send_bytes", "send_actions"))
    save(tmp_path, "fixed", {"command": "test", "date": "today", "machine": "here", "commit": "abc", "spu": "0.9.5", "networks": [], "cost_note": "n"}, records)
    report = (tmp_path / "REPORT.md").read_text()
    assert "| semi2k | mpcformer, fixed-mask linear |" in report and "| setup MB |" in report


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(protocols=["cheetah"], linear_layers="fixed-mask"), "dealer-based protocol"),
        (dict(protocols=["semi2k"], linear_layers="beaver"), "unknown linear layers 'beaver'"),
        (dict(protocols=["semi2k"], linear_layers="fixed-mask", field="fm128"), "need field fm64"),
    ],
)
def test_bench_refuses_what_fixed_masks_cannot_do(kwargs, message):
    protocols = kwargs.pop("protocols")
    with pytest.raises(ValueError, match=message):
        model_records("bert-tiny", ["puma"], protocols, 8, 1, 1, [LAN], **kwargs)
