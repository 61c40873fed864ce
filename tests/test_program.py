"""The program builder (`program.py`): sites read off the model, the one compatibility check, named inputs
with their owners, compile caching, and what each run may claim about privacy."""

import math

import jax
import numpy as np
import pytest

from secformer_jax.approx import PRESETS, resolve_approx
from secformer_jax.inference import classifier_builder
from secformer_jax.program import check_settings, owner, privacy
from secformer_jax.randomness import Dealer
from secformer_jax.spu_runner import Simulation

from conftest import tiny_config, tiny_params


def _data(config, length=6):
    ids = np.arange(1, length + 1)[None]
    return {"words": np.eye(config.vocab_size, dtype=np.float32)[ids], "mask": np.ones((1, length), np.float32),
            "types": np.eye(2, dtype=np.float32)[np.zeros_like(ids)]}


def test_sites_are_read_off_the_model():
    config = tiny_config(vocab_size=100, num_hidden_layers=3)
    sites = classifier_builder(config, PRESETS["secformer"]).sites(_data(config))
    paths = [s.path for s in sites.products]
    assert len(paths) == 1 + 4 * 3 + 2  # word embeddings; per layer Q/K/V, output, FFN in, FFN out; pooler; classifier
    qkv = [s for s in sites.products if s.path[-2:] == ("attention", "self")]
    assert len(qkv) == 3 and all(len(s.products) == 3 for s in qkv)  # Q, K and V share one opening
    head_dim = config.hidden_size // config.num_attention_heads
    assert all(s.scales == (1 / math.sqrt(head_dim), 1.0, 1.0) for s in qkv)  # the model scales Q, nothing else
    assert sites.products[0].shape == (1, 6, 100) and sites.products[-1].shape == (1, config.hidden_size)
    assert [p for p, _ in sites.gelu] == [("bert", "encoder", "layer", str(i), "intermediate") for i in range(3)]
    assert all(shape == (1, 6, config.intermediate_size) for _, shape in sites.gelu)


@pytest.mark.parametrize(
    "preset, field, layers, protocol, message",
    [
        ("secformer", "fm128", "spu", None, "needs field fm64"),
        ("puma", "fm128", "fixed-mask", None, "need field fm64"),
        ("puma", "fm64", "fixed-mask", "cheetah", "dealer-based protocol"),
        ("puma", "fm64", "beaver", None, "unknown linear layers 'beaver'"),
        ("puma", "fm64", "spu", "spdz", "unknown protocol 'spdz'"),
        ("puma", "fm32", "spu", None, "unknown field 'fm32'"),
    ],
)
def test_one_check_refuses_what_cannot_run(preset, field, layers, protocol, message):
    with pytest.raises(ValueError, match=message):
        check_settings(PRESETS[preset], field, layers, protocol)


def test_inputs_are_named_and_owned_and_programs_cached():
    config = tiny_config(vocab_size=100)
    params = jax.tree_util.tree_map(np.asarray, tiny_params(config))
    builder = classifier_builder(config, resolve_approx("mpcformer", gelu="secformer"), linear_layers="fixed-mask")
    data = _data(config)

    masks = builder.setup("semi2k", data, Dealer())
    inputs = builder.inputs(params, data, masks, builder.deal(data, masks, Dealer()))
    assert sorted(inputs) == ["correlation", "linear", "mask", "masked_weights", "params", "types", "weight_masks", "words"]
    assert {n: owner(n) for n in inputs} == {
        "correlation": "dealer", "linear": "dealer", "masked_weights": "held", "weight_masks": "held", "params": "model_owner",
        "mask": "data_owner", "types": "data_owner", "words": "data_owner",
    }
    assert {n: owner(n, setup=True) for n in ("weights", "weight_masks")} == {"weights": "model_owner", "weight_masks": "dealer"}
    program, new = builder.compile(builder.shapes(params, data, masks))
    assert new and builder.compile(builder.shapes(params, data, builder.setup("semi2k", data))) == (program, False)  # one program
    assert all(p == (name == "masked_weights") for p, name in zip(program.public, program.names))
    with pytest.raises(ValueError, match="setup has not run"):
        builder.run(Simulation("semi2k"), params, data, masks, Dealer())
    with pytest.raises(ValueError, match="do not match the module's"):
        builder.inputs(params, {"words": data["words"]})


def test_privacy_claims():
    assert privacy("semi2k", False)["private"] is False and "party 0" in privacy("semi2k", True)["private_why"]
    assert privacy("aby3", True) == privacy("aby3", True, "in-process (simulation)")
    assert privacy("aby3", True)["private"] and privacy("aby3", True)["dealer"] == "in-process (simulation)"
    assert privacy("aby3", False)["dealer"] is None
    assert not privacy("aby3", True, "data owner")["private"]
    assert privacy("cheetah", False)["private"]
    assert "plaintext weights" not in privacy("aby3", True)["private_why"]
    # masks from a public seed (bench --dealer-seed) protect nothing
    assert not privacy("aby3", True, reproducible=True)["private"] and "public seed" in privacy("aby3", True, reproducible=True)["private_why"]
    assert privacy("aby3", False, reproducible=True)["private"]  # nothing dealt: the seed is not used
