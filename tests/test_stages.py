"""A model run as one SPU program per stage (`secformer_jax/stages.py`) and the products in weight blocks
Cheetah needs (`model._product`, `Protocol.weight_block`)."""

import re

import jax
import numpy as np
import pytest

from secformer_jax.approx import PRESETS
from secformer_jax.bench.model import _data, _Run, model_config, model_records, uses_layer_programs
from secformer_jax.bench.network import LAN, WAN
from secformer_jax.bench.report import save
from secformer_jax.inference import classifier_builder
from secformer_jax.protocols import PROTOCOLS
from secformer_jax.model import WeightProduct, _embed, _product, init_params
from secformer_jax.program import check_settings
from secformer_jax.randomness import Dealer
from secformer_jax.spu_runner import SPU_RUNTIME_OPTIONS, Simulation, compile_program
from secformer_jax.stages import StagedClassifier

CONFIG = model_config("bert-tiny", 2)


class KeepLog:
    """A runner that records, per program it runs, whether the parties keep its output (nothing opened)."""

    def __init__(self, simulation):
        self.simulation, self.protocol, self.kept = simulation, simulation.protocol, []

    def run(self, program, *args, keep=None, **kwargs):
        self.kept.append(bool(keep))
        return self.simulation.run(program, *args, keep=keep, **kwargs)


@pytest.mark.parametrize("method, protocol, linear_layers", [("puma", "aby3", "spu"), ("secformer", "semi2k", "fixed-mask")])
def test_stage_programs_equal_the_single_program(method, protocol, linear_layers):
    """Embedding, one layer program per layer and the head hand shares on without opening them: the logits
    are the plaintext model's, and the bytes are the single program's up to each program's constant."""
    _, data = _data(CONFIG, 1, 8, 0)
    params = jax.tree_util.tree_map(np.asarray, init_params(CONFIG, PRESETS["plaintext"]))
    approx = PRESETS[method]
    runner = KeepLog(Simulation(protocol, **SPU_RUNTIME_OPTIONS))
    staged = StagedClassifier(CONFIG, approx, "fm64", linear_layers).private_run(params)
    setup = staged.setup(runner, data, Dealer())
    runner.kept.clear()
    done = []
    logits, cost, offline = staged.run(runner, data, Dealer(), progress=done.append)
    assert done == ["embedding", "layer 0", "layer 1", "head"]
    # every stage but the last keeps its output with the parties: only the logits are revealed
    assert runner.kept == [True, True, True, False]
    single = _Run(classifier_builder(CONFIG, approx, "fm64", linear_layers), params, data)
    out, single_cost, single_offline, single_setup = single.run(runner.simulation, Dealer())
    inputs = {"params": params, "words": np.argmax(data["words"], -1).astype(np.int32), "mask": data["mask"],
              "types": np.zeros(data["mask"].shape, np.int32)}
    plain = np.asarray(jax.jit(single.builder.function())(inputs))
    assert np.abs(logits - plain).max() < 1e-3 and np.abs(out - plain).max() < 1e-3
    assert abs(cost.send_bytes - single_cost.send_bytes) <= 1e-3 * single_cost.send_bytes
    assert 0 <= cost.send_actions - single_cost.send_actions <= 4 * 4  # a few per program boundary
    assert cost.beaver_bytes == single_cost.beaver_bytes  # None under ABY3
    if linear_layers == "fixed-mask":
        assert abs(offline["send_bytes"] - single_offline["send_bytes"]) <= 1e-3 * single_offline["send_bytes"]
        assert abs(setup["send_bytes"] - single_setup["send_bytes"]) <= 1e-3 * single_setup["send_bytes"]
    else:
        assert offline is None and setup is None
    assert staged.setup(runner, data) is setup  # once per runner
    with pytest.raises(ValueError, match="openings are recorded for a run of one program"):
        staged.run(runner, data, Dealer(), record_openings=True)


def test_products_in_weight_blocks_are_the_same_sum():
    """`model._product` in blocks of the weight (Cheetah's memory: `Protocol.weight_block`): ragged and
    exact tilings, the one-hot word product, and under SPU."""
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, 5, 20)).astype(np.float32), rng.normal(size=(20, 13)).astype(np.float32)
    for block in (3, 7, 10, 13, 20, 64):
        np.testing.assert_allclose(np.asarray(_product(x, w, block)), x @ w, atol=1e-5)
    table = rng.normal(size=(50, 6)).astype(np.float32)
    onehot = np.eye(50, dtype=np.float32)[rng.integers(0, 50, (2, 5))]
    whole = np.asarray(_embed(table, onehot))
    np.testing.assert_allclose(whole, table[np.argmax(onehot, -1)], atol=1e-6)
    for block in (4, 7, 16, 49, 50, 64):
        np.testing.assert_allclose(np.asarray(_embed(table, onehot, block)), whole, atol=1e-6)
    out, _ = Simulation("semi2k").run(compile_program(lambda t, x: _embed(t, x, 7), table, onehot), table, onehot)
    np.testing.assert_allclose(out, whole, atol=1e-4)
    assert {p.name: p.weight_block for p in PROTOCOLS.values() if p.weight_block} == {"cheetah": 768}  # the others: whole products


def test_a_model_in_weight_blocks_runs_more_smaller_products_with_the_same_logits():
    """Every product with a weight in blocks (here 24 for the tiny BERT's 64 x 64 and 64 x 128 kernels): the
    layer program holds more, smaller dots, and the staged logits equal the unblocked model's."""
    _, data = _data(CONFIG, 1, 8, 0)
    params = jax.tree_util.tree_map(np.asarray, init_params(CONFIG, PRESETS["plaintext"]))
    sim = Simulation("semi2k", **SPU_RUNTIME_OPTIONS)
    logits, dots = {}, {}
    for block in (0, 24):
        staged = StagedClassifier(CONFIG, PRESETS["puma"], product=WeightProduct(block))
        logits[block] = np.asarray(staged.private_run(params).run(sim, data, Dealer())[0])
        layer = staged.layer.compile(staged.layer.shapes(params["bert"]["encoder"]["layer"]["0"], staged.stages(params, data)[1].data, None))[0]
        dots[block] = len(re.findall(r"pphlo\.dot\b", layer.mlir))
    # Q, K, V and the attention output: 3 x 3 blocks each; the FFN's 64 x 128 and 128 x 64: 3 x 6 each
    assert dots[24] - dots[0] == (4 * 9 + 2 * 18) - 6
    np.testing.assert_allclose(logits[24], logits[0], atol=2e-3)


def test_cheetah_runs_no_dealt_randomness_and_the_bench_says_what_it_ran(tmp_path):
    """Cheetah has no dealer: a dealt GeLU is refused there; the harness runs SecFormer with PUMA's GeLU
    under Cheetah and records it, every layer as its own program (the default there)."""
    with pytest.raises(ValueError, match="cheetah runs without a dealer.*--gelu puma"):
        check_settings(PRESETS["secformer"], "fm64", "spu", "cheetah")
    check_settings(PRESETS["secformer"].dealer_free(), "fm64", "spu", "cheetah")
    assert PRESETS["secformer"].dealer_free().to_dict() == {"gelu": "puma", "softmax": "secformer", "layernorm": "secformer"}
    assert PRESETS["puma"].dealer_free() == PRESETS["puma"]
    assert uses_layer_programs(["cheetah"], None) and not uses_layer_programs(["cheetah"], 1) and not uses_layer_programs(["aby3"], None)
    records = model_records("bert-tiny", ["secformer"], ["cheetah"], 8, 1, None, [LAN, WAN])
    (r,) = [r for r in records if r["method"] == "secformer"]
    assert r["approx"]["gelu"] == "puma" and r["programs"] == "one per stage" and not r["extrapolated"]
    assert r["measured_layers"] == 2 and r["max_abs_error"] < 0.05 and r["offline"] is None and r["private"]
    assert r["peak_rss_bytes"] > 100e6
    # each stage's own figures, its peak memory sampled during it
    assert [st["stage"] for st in r["stages"]] == ["embedding", "layer 0", "layer 1", "head"]
    assert sum(st["send_bytes"] for st in r["stages"]) == r["send_bytes"]
    assert all(st["peak_rss_bytes"] > 100e6 for st in r["stages"])  # sampled during each stage
    report = save(tmp_path, "staged", {"command": "c", "date": "d", "machine": "m", "commit": "x", "spu": "0.9.5", "networks": [], "cost_note": "n"}, records)
    text = (tmp_path / "REPORT.md").read_text()
    assert report.exists() and "| bert-tiny | cheetah | secformer | layer 1 |" in text and (tmp_path / "staged-stages.png").exists()
    with pytest.raises(ValueError, match="runs every layer"):
        model_records("bert-tiny", ["puma"], ["cheetah"], 8, 1, 1, [LAN], layer_programs=True)
