"""A model run as one SPU program per stage (`secformer_jax/stages.py`) and the chunked word-embedding
product Cheetah needs (`model._embed`, `inference.VOCAB_CHUNKS`)."""

import jax
import numpy as np
import pytest

from secformer_jax.approx import PRESETS
from secformer_jax.bench.model import _data, _Run, model_config, model_records
from secformer_jax.bench.network import LAN, WAN
from secformer_jax.bench.report import save
from secformer_jax.inference import VOCAB_CHUNKS, classifier_builder
from secformer_jax.model import _embed, init_params
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
    staged = StagedClassifier(CONFIG, approx, "fm64", linear_layers)
    masks, setup = staged.setup(runner, params, data, Dealer)
    runner.kept.clear()
    done = []
    logits, cost, offline = staged.run(runner, params, data, masks, Dealer, progress=done.append)
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
    with pytest.raises(ValueError, match="3 stage masks for 4 stages"):
        staged.run(runner, params, data, masks[:3], Dealer)


def test_the_chunked_word_product_is_the_same_sum():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, 6)).astype(np.float32)
    onehot = np.eye(50, dtype=np.float32)[rng.integers(0, 50, (2, 5))]
    whole = np.asarray(_embed(table, onehot))
    np.testing.assert_allclose(whole, table[np.argmax(onehot, -1)], atol=1e-6)
    for chunk in (7, 16, 49, 50, 64):
        np.testing.assert_allclose(np.asarray(_embed(table, onehot, chunk)), whole, atol=1e-6)
    out, _ = Simulation("semi2k").run(compile_program(lambda t, x: _embed(t, x, 7), table, onehot), table, onehot)
    np.testing.assert_allclose(out, whole, atol=1e-4)
    assert VOCAB_CHUNKS == {"cheetah": 2048}  # the other protocols take one product


def test_cheetah_runs_no_dealt_randomness_and_the_bench_says_what_it_ran(tmp_path):
    """Cheetah has no dealer: a dealt GeLU is refused there; the harness runs SecFormer with PUMA's GeLU
    under Cheetah and records it, every layer as its own program."""
    with pytest.raises(ValueError, match="cheetah runs without a dealer.*--gelu puma"):
        check_settings(PRESETS["secformer"], "fm64", "spu", "cheetah")
    check_settings(PRESETS["secformer"].dealer_free(), "fm64", "spu", "cheetah")
    assert PRESETS["secformer"].dealer_free().to_dict() == {"gelu": "puma", "softmax": "secformer", "layernorm": "secformer"}
    assert PRESETS["puma"].dealer_free() == PRESETS["puma"]
    records = model_records("bert-tiny", ["secformer"], ["cheetah"], 8, 1, None, [LAN, WAN], layer_programs=True)
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
