"""Text -> tokens -> secret shares -> SPU program -> revealed logits, next to the plaintext reference.

The data owner tokenises locally and turns its tokens into a one-hot matrix, token-type one-hots and a
float padding mask (its secret inputs); the model owner contributes the parameter tree (its secret
input). Both are secret-shared among the computing parties, the compiled program runs, and only the
logits are reconstructed. The same function also runs as plain JAX (jit) with the same approximations:
that is the reference the private result is compared to (`max_abs_error`).
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import spu.libspu as libspu

from . import linear
from .approx import ApproxSet, sine
from .checkpoint import Checkpoint, load_checkpoint
from .model import BertForSequenceClassification
from .spu_runner import Cost, Program, Simulation, compile_program

# Runtime and compiler options of SPU's own PUMA benchmarks, used for every method so that all of them run
# on one backend: Taylor exp (only exp-based softmaxes use it) and x / broadcast(y) -> x * broadcast(1 / y).
SPU_RUNTIME_OPTIONS = {"fxp_exp_mode": libspu.RuntimeConfig.ExpMode.EXP_TAYLOR}
SPU_COMPILER_OPTIONS = {"enable_optimize_denominator_with_broadcast": True}


@dataclasses.dataclass
class Encoded:
    """One tokenised example, padded to a public length; arrays have a leading batch axis of 1."""

    input_ids: np.ndarray  # int32 [1, L]
    attention_mask: np.ndarray  # int32 [1, L], 1 = real token
    token_type_ids: np.ndarray  # int32 [1, L]
    tokens: list[str]  # the real tokens (data owner only)


def encode(tokenizer, text: str, text_pair: str | None = None, max_length: int = 64) -> Encoded:
    """Tokenise and pad to `max_length`. Refuses empty text and text longer than `max_length` tokens
    (truncating silently would classify a different text)."""
    for name, value in (("text", text), ("text pair", text_pair)):
        if value is not None and not value.strip():
            raise ValueError(f"{name} is empty")
    if max_length < 2:
        raise ValueError(f"max length must be at least 2 tokens ([CLS] and [SEP]), got {max_length}")
    full = tokenizer(text, text_pair)["input_ids"]
    if len(full) > max_length:
        raise ValueError(
            f"the input is {len(full)} tokens, over the max length {max_length}; raise --max-length "
            "(at most the model's max_position_embeddings) or shorten the text"
        )
    enc = tokenizer(text, text_pair, padding="max_length", max_length=max_length, return_tensors="np")
    tokens = tokenizer.convert_ids_to_tokens(full)
    return Encoded(
        enc["input_ids"].astype(np.int32),
        enc["attention_mask"].astype(np.int32),
        enc["token_type_ids"].astype(np.int32),
        tokens,
    )


def load_classifier(model_dir, approx: ApproxSet, max_length: int, log=lambda message: None) -> tuple[Checkpoint, dict | None]:
    """The checkpoint at `model_dir` (None: the embedded MiniLM) ready to classify `max_length` tokens. An
    encoder without a classifier gets the SST-2 sentiment head fitted under `approx` (returned as the
    second value: its provenance; None when the checkpoint has its own classifier)."""
    from .sentiment_head import attach_sentiment_head

    checkpoint = load_checkpoint(model_dir)
    limit = checkpoint.config.max_position_embeddings
    if max_length > limit:
        raise ValueError(f"--max-length {max_length} exceeds the model's {limit} positions")
    head = None
    if not checkpoint.has_classifier:
        log(f"{checkpoint.path} has no classifier: using a sentiment head fitted on SST-2 (frozen encoder, these approximations)")
        head = attach_sentiment_head(checkpoint, approx, max_length=max_length)
        log(f"  head: SST-2 dev accuracy {head['dev_accuracy']:.3f} in plaintext ({'cached' if head['cached'] else 'fitted now'})")
    return checkpoint, head


def correlation_tree(config, approx: ApproxSet, batch: int, seq_len: int, rng: np.random.Generator | None = None):
    """The dealt randomness of every layer's GeLU, as the model's "correlation" collection; with `rng`
    None, its shapes only (for compiling). None when `approx` needs none. Fresh per inference: reused
    randomness would reveal differences between inputs."""
    if not approx.needs_correlation:
        return None
    shape = (batch, seq_len, config.intermediate_size)
    spec = approx.correlation_spec
    deal = (lambda: sine.dealer(shape, rng, spec)) if rng is not None else (lambda: sine.correlation_shapes(shape, spec))
    layers = {str(i): {"intermediate": {"gelu": deal()}} for i in range(config.num_hidden_layers)}
    return {"bert": {"encoder": {"layer": layers}}}


def one_hot_inputs(encoded: Encoded, vocab_size: int, type_vocab_size: int) -> tuple[np.ndarray, ...]:
    """The data owner's secret inputs: word one-hots [1, L, V], padding mask [1, L], type one-hots [1, L, T]."""
    eye = partial(np.eye, dtype=np.float32)
    return (
        eye(vocab_size)[encoded.input_ids],
        encoded.attention_mask.astype(np.float32),
        eye(type_vocab_size)[encoded.token_type_ids],
    )


LINEAR_PUBLIC_ARG = 6  # `logits_fn`'s public argument (compile with public_args=(LINEAR_PUBLIC_ARG,))


def logits_fn(config, approx: ApproxSet):
    """(params, words, mask, types[, correlation[, linear, linear_public]]) -> logits [B, num_labels];
    words/types as ids or one-hots; `correlation`: the dealt randomness of a protocol GeLU
    (`correlation_tree`), None for its reference; `linear` (secret) and `linear_public` (public): the
    fixed-mask products' collections (`linear.FixedMasks.deal` and `.public`), None for SPU's own products."""
    model = BertForSequenceClassification(config, approx)

    def logits(params, words, mask, types, correlation=None, linear=None, linear_public=None):
        variables = {"params": params} | ({"correlation": correlation} if correlation is not None else {})
        if linear_public is not None:
            variables |= {"linear": linear, "linear_public": linear_public}
        return model.apply(variables, words, mask, types)["logits"]

    return logits


@dataclasses.dataclass
class Result:
    logits: np.ndarray
    plaintext_logits: np.ndarray
    cost: Cost  # the online phase: the SPU program
    compile_seconds: float
    offline: dict | None = None  # dealt randomness: {"seconds": dealer time, "send_bytes": shares sent}

    @property
    def max_abs_error(self) -> float:
        return float(np.max(np.abs(self.logits - self.plaintext_logits)))


class PrivateClassifier:
    """A checkpoint with one approximation set: compiled once per sequence length (with SPU's own products
    the program does not depend on the protocol; with fixed-mask ones, `linear_layers="fixed-mask"`, which
    products are masked does: once per length and protocol), run under any protocol."""

    def __init__(self, checkpoint: Checkpoint, approx: ApproxSet, field: str = "fm64", linear_layers: str = "spu"):
        if linear_layers not in linear.LINEAR_LAYERS:
            raise ValueError(f"unknown linear layers {linear_layers!r}; choose one of: {', '.join(linear.LINEAR_LAYERS)}")
        self.checkpoint, self.approx, self.field, self.linear_layers = checkpoint, approx, field, linear_layers
        if approx.needs_correlation:
            sine.check_field(field)
        if linear_layers == "fixed-mask":
            linear.check_field(field)
        self._simulations: dict[str, Simulation] = {}
        self._fn = logits_fn(checkpoint.config, approx)
        self._plain = jax.jit(self._fn)
        self._programs: dict[tuple, tuple[Program, float]] = {}
        self._masks: dict[str, tuple[linear.FixedMasks, dict]] = {}

    def masks(self, protocol: str) -> tuple[linear.FixedMasks, dict] | None:
        """The fixed masks for `protocol` (the setup, once per protocol) and the weights stripped of the
        masked kernels; None with SPU's own products."""
        if self.linear_layers == "spu":
            return None
        if protocol not in self._masks:
            params = self.checkpoint.params
            c = self.checkpoint.config
            sites = linear.bert_sites(c.num_hidden_layers, c.hidden_size // c.num_attention_heads)
            masks = linear.setup_masks(params, sites, protocol, np.random.default_rng())
            self._masks[protocol] = (masks, masks.strip(params))
        return self._masks[protocol]

    def program(self, seq_len: int, protocol: str = "aby3") -> tuple[Program, float]:
        """The compiled SPU program for `seq_len` tokens (cached; `protocol` matters only for fixed-mask
        products) and the seconds its compilation took."""
        masks = self.masks(protocol)
        key = (seq_len, protocol if masks else None)
        if key not in self._programs:
            c = self.checkpoint.config
            start = time.perf_counter()
            shapes = (
                masks[1] if masks else self.checkpoint.params,
                jax.ShapeDtypeStruct((1, seq_len, c.vocab_size), jnp.float32),
                jax.ShapeDtypeStruct((1, seq_len), jnp.float32),
                jax.ShapeDtypeStruct((1, seq_len, c.type_vocab_size), jnp.float32),
                correlation_tree(c, self.approx, 1, seq_len),
            )
            if masks:
                shapes += (masks[0].deal(1, seq_len), masks[0].public)
            copts = libspu.CompilerOptions(**SPU_COMPILER_OPTIONS)
            public = (LINEAR_PUBLIC_ARG,) if masks else ()
            program = compile_program(self._fn, *shapes, copts=copts, name="bert_logits", public_args=public)
            self._programs[key] = (program, time.perf_counter() - start)
        return self._programs[key]

    def plaintext_logits(self, encoded: Encoded) -> np.ndarray:
        return np.asarray(self._plain(self.checkpoint.params, encoded.input_ids, encoded.attention_mask, encoded.token_type_ids))

    def simulation(self, protocol: str) -> Simulation:
        if protocol not in self._simulations:
            if self.linear_layers == "fixed-mask":
                linear.prefers_mask(protocol, 1, 1)  # refuses a protocol without a dealer
            self._simulations[protocol] = Simulation(protocol, self.field, **SPU_RUNTIME_OPTIONS)
        return self._simulations[protocol]

    def __call__(self, encoded: Encoded, protocol: str = "aby3") -> Result:
        """Run privately under `protocol` and return the revealed logits next to the plaintext ones."""
        c = self.checkpoint.config
        simulation = self.simulation(protocol)
        seq_len = encoded.input_ids.shape[1]
        program, compile_seconds = self.program(seq_len, protocol)
        masks = self.masks(protocol)
        inputs = one_hot_inputs(encoded, c.vocab_size, c.type_vocab_size)
        rng = np.random.default_rng()
        start = time.perf_counter()
        correlation = correlation_tree(c, self.approx, 1, seq_len, rng)
        dealt = [correlation] if correlation is not None else []
        inputs += (correlation,)
        if masks:
            fresh = masks[0].deal(1, seq_len, rng)
            inputs += (fresh, masks[0].public)
            dealt += [linear.fresh_leaves(fresh)]
        what = "dealt randomness (" + ", ".join(["GeLU"] * (correlation is not None) + ["fixed-mask products"] * bool(masks)) + ")"
        offline = {"seconds": time.perf_counter() - start, "send_bytes": simulation.share_bytes(dealt), "what": what} if dealt else None
        logits, cost = simulation.run(program, masks[1] if masks else self.checkpoint.params, *inputs)
        return Result(np.asarray(logits), self.plaintext_logits(encoded), cost, compile_seconds, offline)
