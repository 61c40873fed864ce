"""A tiny BERT (2 layers, hidden 64) under SPU equals the same model in plaintext, for every preset and protocol."""

import numpy as np
import pytest

from secformer_jax.approx import PRESETS
from secformer_jax.checkpoint import load_checkpoint
from secformer_jax.inference import PrivateClassifier, encode

TEXT = "a gripping, beautifully made film"


@pytest.fixture(scope="module")
def classifiers(tiny_checkpoint):
    """One compiled program per preset, shared by the protocols (compile once, run many)."""
    ckpt = load_checkpoint(tiny_checkpoint[0])
    return ckpt, {name: PrivateClassifier(ckpt, approx) for name, approx in PRESETS.items()}


# every preset under ABY3 and the secformer preset under each protocol by default; the rest of the matrix is slow
MATRIX = [
    pytest.param(preset, protocol, marks=() if protocol == "aby3" or preset == "secformer" else pytest.mark.slow)
    for protocol in ("semi2k", "cheetah", "aby3") for preset in PRESETS
]


@pytest.mark.parametrize("preset, protocol", MATRIX)
def test_spu_matches_plaintext(classifiers, preset, protocol):
    ckpt, by_preset = classifiers
    # Cheetah has no dealer: a GeLU on dealt randomness is refused there, PUMA's runs in its place
    classifier = PrivateClassifier(ckpt, PRESETS[preset].dealer_free()) if protocol == "cheetah" else by_preset[preset]
    result = classifier(encode(ckpt.tokenizer, TEXT, max_length=16), protocol)
    scale = float(np.abs(result.plaintext_logits).max())
    assert np.isfinite(result.logits).all()
    assert result.max_abs_error <= 0.02 + 0.02 * scale, (result.logits, result.plaintext_logits)
    # the per-op profile accounts for every byte the parties sent but the openings of the masked-opening GeLU
    # (SPU's reveal is no pphlo op): one share per party per GeLU input element, 8 bytes each (ABY3: each
    # party sends one of its two shares to one other)
    by_op = sum(op.send_bytes for op in result.cost.by_op.values())
    c = ckpt.config
    opened = c.num_hidden_layers * 16 * c.intermediate_size if classifier.approx.needs_correlation else 0
    assert result.cost.send_bytes > 0 and result.cost.send_bytes - by_op == opened * {"semi2k": 16, "cheetah": 16, "aby3": 24}[protocol]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_padding_does_not_change_logits(classifiers, preset):
    """Every softmax variant gives padded keys zero weight: more padding, same logits (plaintext)."""
    ckpt, by_preset = classifiers
    short = by_preset[preset].plaintext_logits(encode(ckpt.tokenizer, TEXT, max_length=12))
    long = by_preset[preset].plaintext_logits(encode(ckpt.tokenizer, TEXT, max_length=40))
    np.testing.assert_allclose(short, long, atol=1e-4)


@pytest.mark.parametrize("protocol", ["semi2k", "aby3"])
def test_fixed_mask_products_match_plaintext_and_cost_less(classifiers, protocol):
    """`linear_layers="fixed-mask"`: same logits as plaintext; fewer online bytes than SPU's own products
    (SEMI2K: all of them; ABY3: Q/K/V and the FFN's first product); A and C dealt."""
    ckpt, by_preset = classifiers
    masked = PrivateClassifier(ckpt, PRESETS["mpcformer"], linear_layers="fixed-mask")
    enc = encode(ckpt.tokenizer, TEXT, max_length=16)
    result, own = masked(enc, protocol), by_preset["mpcformer"](enc, protocol)
    assert result.max_abs_error <= 0.02 + 0.02 * float(np.abs(result.plaintext_logits).max())
    assert result.cost.send_bytes < own.cost.send_bytes
    assert own.offline is None and result.offline["send_bytes"] > 0 and "fixed-mask" in result.offline["what"]
    assert masked.program(16, protocol) is masked.program(16, protocol)


def test_compiles_once_per_length(classifiers):
    ckpt, by_preset = classifiers
    classifier = by_preset["secformer"]
    first = classifier.program(16)
    assert classifier.program(16) is first
