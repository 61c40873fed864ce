"""Privacy as code: the dealer's randomness is cryptographic, fresh and never reused within a run or across
runs, and the values the compiled program really opens (captured from the run as the ring elements the
parties hold, `openings.py`) are uniform on all 64 bits of the ring and independent of each other, whatever
the secrets are. Each test names the mutations it catches."""

import jax
import numpy as np
import pytest

from secformer_jax import dealing, linear
from secformer_jax.approx import PRESETS, sine
from secformer_jax.bench.model import _data, model_config
from secformer_jax.checkpoint import load_checkpoint
from secformer_jax.inference import PrivateClassifier, classifier_builder, encode
from secformer_jax.model import init_params
from secformer_jax.randomness import Dealer, Stream
from secformer_jax.spu_runner import SPU_RUNTIME_OPTIONS, Simulation, compile_program
from secformer_jax.stages import StagedClassifier

from conftest import tiny_config, tiny_params
from uniformity import as_ring, below_pvalue, pairwise, ring_pvalue

SINGLE_P = 1e-5  # one uniformity test of a correct mask fails this rarely; a broken mask gives p < 1e-30
PAIR_P = 1e-7  # many pairs per test: a stricter bar (a reused mask's difference is x - x', p ~ 0)


def test_dealer_streams_are_cryptographic_fresh_and_never_reused():
    """Catches: a constant key (two runs with equal masks), a stream reused within a run (directly or through
    two stage scopes with one name), a Stream built outside the dealer, a second dealer on a run's key."""
    a, b = Dealer(), Dealer()
    assert not np.array_equal(a.stream("A/x").uint64((64,)), b.stream("A/x").uint64((64,)))
    with pytest.raises(ValueError, match="already used"):
        a.stream("A/x")
    layer = a.scope("layer 0")
    layer.stream("gelu/x")
    with pytest.raises(ValueError, match="already used"):
        a.stream("layer 0/gelu/x")  # the run's names are one namespace, scopes included
    with pytest.raises(ValueError, match="already used"):
        a.scope("layer 0").stream("gelu/x")
    with pytest.raises(TypeError, match="drawn from the run's Dealer"):
        Stream(bytes(32), "gelu")
    with pytest.raises(RuntimeError, match="already in use"):
        Dealer.__new__(Dealer)._init(a._Dealer__key, seeded=False)
    seeded = Dealer.from_seed(3).stream("s").int32((8,))
    assert np.array_equal(seeded, Dealer.from_seed(3).stream("s").int32((8,))) and Dealer.from_seed(3).seeded
    assert ring_pvalue(Dealer().stream("w").uint64((20000,))) > SINGLE_P
    bits = Dealer().stream("t").below_pow2((20000,), 25)
    assert bits.min() >= 0 and bits.max() < 2**25 and below_pvalue(bits, 2**25) > SINGLE_P


@pytest.mark.parametrize("spec", [sine.ERF_SINE, sine.GELU_COSINE], ids=lambda s: f"P{s.period}")
def test_the_sine_gelu_opens_values_spread_over_the_ring(spec):
    """What SPU really opens in a masked-opening GeLU (captured as ring elements), for a constant x and a
    varying one: D = x - T uniform on all 64 bits, and its residue D mod P 2^f (what the parties compute
    the sines from) uniform below P 2^f. Catches: T's ring-wide part (h, h') zeroed or narrowed (D is then
    x - t: the high word is constant), t zeroed (the residue is x's)."""
    from secformer_jax.openings import recording

    def opened(x, corr):
        with recording() as values:
            sine.masked_residue(x, corr, spec.period)
        return tuple(values)

    sim = Simulation("semi2k")
    modulus = spec.period << sine.FRAC_BITS
    for x in (np.full(4000, 3.25, np.float32), np.linspace(-50, 50, 4000).astype(np.float32)):
        corr = sine.dealer(x.shape, Dealer().stream("gelu"), spec)
        (ring,) = sim.run(compile_program(opened, x, corr), x, corr, rings=True)[0]
        assert ring.dtype == np.uint64 and ring_pvalue(ring) > SINGLE_P
        assert below_pvalue(ring % np.uint64(modulus), modulus) > SINGLE_P


@pytest.fixture(scope="module")
def tiny_classifier(tiny_checkpoint):
    ckpt = load_checkpoint(tiny_checkpoint[0])
    return ckpt, encode(ckpt.tokenizer, "a gripping, beautifully made film", max_length=16)


@pytest.mark.parametrize("protocol", ["semi2k", "aby3"])
def test_every_opening_of_a_private_bert_is_uniform_independent_and_fresh(tiny_classifier, protocol):
    """A tiny BERT with fixed-mask products and the secformer preset: every value the program opens (the
    one-hot words, each layer's product inputs and GeLU inputs), as the ring elements the parties hold, is
    uniform on all 64 bits; every pair of openings within the run differs by a uniform ring element (a
    mask used twice would leave x - x'); a second run on the same text opens other values. Catches: T or A
    reused across layers or sites of one run (one stream or one value for every layer), T or A reused
    across runs, a constant dealer key, the word one-hot opened with a broken mask, a mask narrowed to 32 bits."""
    ckpt, enc = tiny_classifier
    classifier = PrivateClassifier(ckpt, PRESETS["secformer"], linear_layers="fixed-mask")
    first, second = (classifier(enc, protocol, record_openings=True) for _ in range(2))
    layers = ckpt.config.num_hidden_layers
    assert first.max_abs_error < 0.05 and len(first.openings) >= 2 * layers + 1  # GeLU and FFN-in per layer, the words
    assert all(o.dtype == np.uint64 for o in first.openings)
    for a, b in zip(first.openings, second.openings):
        assert ring_pvalue(a) > SINGLE_P if a.size >= 512 else len(np.unique(a)) > 0.99 * a.size
        assert np.mean(a == b) < 0.01  # fresh masks: the same input opens to other values
    for i, j, a, b in pairwise(first.openings):
        assert ring_pvalue(a - b) > PAIR_P, f"openings {i} and {j} of one run share a mask"


class DealtLog:
    """A runner that keeps, per program it runs, the dealt values (reconstructed from every party's seeds
    and corrections: what the dealer really sent)."""

    def __init__(self, simulation):
        self.simulation, self.protocol, self.dealt = simulation, simulation.protocol, []

    def run(self, program, *args, dealt=None, **kwargs):
        if dealt is not None:
            self.dealt += [as_ring(v) for v in dealing.reconstruct(dealt.bundles)]
        return self.simulation.run(program, *args, dealt=dealt, **kwargs)


def _independent(values: list[np.ndarray]) -> None:
    """No two dealt values (across layers, sites, stages, programs) share their elements."""
    assert len(values) > 1
    for i, j, a, b in pairwise(values):
        assert np.mean(a == b) < 0.01, f"dealt values {i} and {j} are the same mask"


@pytest.mark.parametrize("staged", [False, True], ids=["one program", "layer programs"])
def test_every_dealt_value_of_a_run_is_its_own(staged):
    """Every value the dealer sends in one fixed-mask run with the secformer preset (the setup's B per
    kernel; then per inference each site's A and C and each GeLU's t, h, h', sines and cosines), in one
    program or one program per stage: no two of them equal (a reused mask equals its twin). Catches: one
    correlation dealt to every layer, one A for every site, the same dealer scope for every stage, B reused
    between kernels."""
    config = model_config("bert-tiny", 2)
    _, data = _data(config, 1, 8, 0)
    params = jax.tree_util.tree_map(np.asarray, init_params(config, PRESETS["plaintext"]))
    runner = DealtLog(Simulation("semi2k", **SPU_RUNTIME_OPTIONS))
    approx = PRESETS["secformer"]
    if staged:
        private = StagedClassifier(config, approx, "fm64", "fixed-mask").private_run(params)
        private.setup(runner, data, Dealer())
        setup_values = len(runner.dealt)
        private.run(runner, data, Dealer())
    else:
        builder = classifier_builder(config, approx, "fm64", "fixed-mask")
        masks = builder.setup("semi2k", data, Dealer())
        builder.run_setup(runner, params, masks)
        setup_values = len(runner.dealt)
        builder.run(runner, params, data, masks, Dealer())
    assert 0 < setup_values < len(runner.dealt)
    _independent(runner.dealt)


@pytest.mark.parametrize("protocol", ["semi2k", "aby3"])
def test_the_public_masked_weights_say_nothing_about_the_weights(protocol):
    """E = [W] - [B], opened by the setup program of the secformer preset: uniform on all 64 bits whatever W
    is (here W = 0), the same at every party of the protocol, E + B = W, and no two kernels' E alike.
    Catches: B dropped from or leaked into the opening, B narrowed to 32 bits, one B for every kernel."""
    config = tiny_config(vocab_size=100)
    params = jax.tree_util.tree_map(lambda w: np.zeros_like(np.asarray(w)), tiny_params(config))
    builder = classifier_builder(config, PRESETS["secformer"], linear_layers="fixed-mask")
    data = {"words": np.eye(100, dtype=np.float32)[np.arange(1, 7)][None], "mask": np.ones((1, 6), np.float32),
            "types": np.eye(2, dtype=np.float32)[np.zeros((1, 6), int)]}
    masks = builder.setup(protocol, data, Dealer())
    builder.run_setup(Simulation(protocol), params, masks)
    per_party = [[dealing.public_ring(s) for s in party] for party in masks.held["masked_weights"]]
    assert len(per_party) == {"semi2k": 2, "aby3": 3}[protocol]
    b = jax.tree_util.tree_leaves(masks.weight_masks())
    assert all((e0 == e).all() for other in per_party[1:] for e0, e in zip(per_party[0], other))
    assert all(((e + bb) == 0).all() for e, bb in zip(per_party[0], b))  # W = 0
    assert ring_pvalue(np.concatenate([v.ravel() for v in per_party[0]])) > SINGLE_P
    for i, j, e, f in pairwise(per_party[0]):
        assert np.mean(e == f) < 0.01, f"kernels {i} and {j} share B"


def test_the_fixed_mask_opening_uses_the_dealers_a_and_is_uniform_on_the_ring():
    """D = x 2^f - A for the A that the dealer's own code deals (`FixedMasks.deal`), opened by the program:
    uniform on all 64 bits for a constant x and for a varying one. Catches: A drawn narrower than the
    ring or zeroed in `FixedMasks.deal`."""
    rng = np.random.default_rng(0)
    x = np.concatenate([np.full(3000, -6.0), np.full(3000, 0.5), np.linspace(-8, 8, 3000)]).astype(np.float32)[None]
    site = linear.Site(("dense",), x.shape, ((("dense",), "kernel"),))
    masks = linear.setup_masks({"dense": {"kernel": rng.normal(0, 0.1, (9000, 2)).astype(np.float32)}}, [site], "semi2k", Dealer())
    a = masks.deal([site], Dealer())["dense"]["input"]
    from secformer_jax.openings import recording

    def opened(x, a):
        with recording() as values:
            linear.open_input(x, a)
        return tuple(values)

    sim = Simulation("semi2k")
    program = compile_program(opened, x, jax.ShapeDtypeStruct(x.shape, np.int32))
    (ring,), _ = sim.run(program, x, jax.ShapeDtypeStruct(x.shape, np.int32), dealt=_dealt_arg(a), rings=True)
    for part in (ring[0, :3000], ring[0, 3000:6000], ring[0, 6000:]):
        assert ring_pvalue(part) > SINGLE_P


def _dealt_arg(a: np.ndarray) -> dealing.DealtInputs:
    """`a` dealt seed-based as the program's second positional input ("arg1")."""
    return dealing.deal_inputs({"arg1": a}, "semi2k")
