"""Privacy as code: the dealer's randomness is cryptographic and fresh, and the values the compiled program
really opens (captured from the run, `openings.py`) are spread over the ring whatever the secrets are.
Each test names the mutation it catches."""

import jax
import numpy as np
import pytest
from scipy import stats

from secformer_jax import dealing
from secformer_jax.approx import PRESETS, sine
from secformer_jax.checkpoint import load_checkpoint
from secformer_jax.inference import PrivateClassifier, encode
from secformer_jax.randomness import Dealer
from secformer_jax.spu_runner import Simulation, compile_program

from conftest import tiny_config, tiny_params

WORD = 2.0**32


def uniform_words(words: np.ndarray) -> float:
    """KS p-value of int32 words against the uniform distribution on all 2^32 values."""
    u = (np.asarray(words, np.int64).ravel() + 2**31) / WORD
    return stats.kstest(u, "uniform").pvalue


def test_dealer_streams_are_cryptographic_fresh_and_never_reused():
    """Catches: a constant key (two runs with equal masks), a stream reused within a run."""
    a, b = Dealer(), Dealer()
    assert not np.array_equal(a.stream("A/x").uint64((64,)), b.stream("A/x").uint64((64,)))
    assert not np.array_equal(a.stream("A/y").uint64((64,)), Dealer(a.key).stream("A/x").uint64((64,)))
    with pytest.raises(ValueError, match="already used"):
        a.stream("A/x")
    seeded = Dealer.from_seed(3).stream("s").int32((8,))
    assert np.array_equal(seeded, Dealer.from_seed(3).stream("s").int32((8,))) and Dealer.from_seed(3).seeded
    assert uniform_words(Dealer().stream("w").int32((20000,))) > 1e-4
    bits = Dealer().stream("t").below_pow2((20000,), 25)
    assert bits.min() >= 0 and bits.max() < 2**25 and stats.kstest(bits / 2**25, "uniform").pvalue > 1e-4


@pytest.mark.parametrize("spec", [sine.ERF_SINE, sine.GELU_COSINE], ids=lambda s: f"P{s.period}")
def test_the_sine_gelu_opens_values_spread_over_the_ring(spec):
    """What SPU really opens in a masked-opening GeLU (captured), for a constant x and a varying one: its low
    32 bits uniform, the same for both. Catches: T's ring-wide part zeroed (the opening is then x - t)."""
    from secformer_jax.openings import low_words, recording

    def opened(x, corr):
        with recording() as values:
            sine.masked_residue(x, corr, spec.period)
        return low_words(values)

    sim = Simulation("semi2k")
    for x in (np.full(4000, 3.25, np.float32), np.linspace(-50, 50, 4000).astype(np.float32)):
        corr = sine.dealer(x.shape, Dealer().stream("gelu"), spec)
        (words,) = sim.run(compile_program(opened, x, corr), x, corr)[0]
        assert uniform_words(words) > 1e-4


@pytest.fixture(scope="module")
def tiny_classifier(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint[0])
    return ckpt, encode(ckpt.tokenizer, "a gripping, beautifully made film", max_length=16)


@pytest.mark.parametrize("protocol", ["semi2k", pytest.param("aby3", marks=pytest.mark.slow)])  # SEMI2K masks every product
def test_every_opening_of_a_private_bert_is_uniform_and_fresh(tiny_classifier, protocol):
    """A tiny BERT with fixed-mask products and the secformer preset: every value the program opens (the
    one-hot words, each layer's product inputs and GeLU inputs) is uniform on the ring, and two runs on the
    same text open different values. Catches: T or A reused across runs, a constant dealer key, the word
    one-hot opened with a broken mask."""
    ckpt, enc = tiny_classifier
    classifier = PrivateClassifier(ckpt, PRESETS["secformer"], linear_layers="fixed-mask")
    first, second = (classifier(enc, protocol, record_openings=True) for _ in range(2))
    assert first.max_abs_error < 0.05 and len(first.openings) >= 3 * ckpt.config.num_hidden_layers  # ABY3 masks fewer products
    for a, b in zip(first.openings, second.openings):
        assert uniform_words(a) > 1e-4 if a.size >= 512 else len(np.unique(a)) > 0.99 * a.size
        assert np.mean(a == b) < 0.01  # fresh masks: the same input opens to other values


def test_the_public_masked_weights_say_nothing_about_the_weights():
    """E = [W] - [B], opened by the setup program: uniform whatever W is (here W = 0), the same at every
    party, and E + B = W. Catches: B dropped from or leaked into the opening."""
    config = tiny_config(vocab_size=100)
    params = jax.tree_util.tree_map(lambda w: np.zeros_like(np.asarray(w)), tiny_params(config))
    from secformer_jax.inference import classifier_builder

    builder = classifier_builder(config, PRESETS["puma"], linear_layers="fixed-mask")
    data = {"words": np.eye(100, dtype=np.float32)[np.arange(1, 7)][None], "mask": np.ones((1, 6), np.float32),
            "types": np.eye(2, dtype=np.float32)[np.zeros((1, 6), int)]}
    masks = builder.setup("semi2k", data, Dealer())
    builder.run_setup(Simulation("semi2k"), params, masks)
    per_party = [[dealing.public_ring(s) for s in party] for party in masks.held["masked_weights"]]
    b = jax.tree_util.tree_leaves(masks.weight_masks())
    assert all((e0 == e1).all() for e0, e1 in zip(*per_party))
    assert all(((e + bb) == 0).all() for e, bb in zip(per_party[0], b))  # W = 0
    e = np.concatenate([v.ravel() for v in per_party[0]])
    assert uniform_words((e & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32)) > 1e-4
    assert uniform_words((e >> np.uint64(32)).astype(np.uint32).view(np.int32)) > 1e-4
