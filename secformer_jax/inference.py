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

from . import linear, protocols
from .approx import ApproxSet
from .checkpoint import Checkpoint
from .model import WHOLE, BertForSequenceClassification, WeightProduct
from .private_run import PrivateRun
from .program import ProgramBuilder
from .protocols import Protocol
from .randomness import Dealer
from .spu_runner import SPU_RUNTIME_OPTIONS, Cost, Program, Simulation


@dataclasses.dataclass
class Encoded:
    """Tokenised examples padded to one public length: a row per example (`encode` makes one row; a batch of
    B rows runs as one program, whose cost is the B examples' together)."""

    input_ids: np.ndarray  # int32 [B, L]
    attention_mask: np.ndarray  # int32 [B, L], 1 = real token
    token_type_ids: np.ndarray  # int32 [B, L]
    tokens: list[str]  # the real tokens of a single example (data owner only; empty for a batch)


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


def one_hot_inputs(encoded: Encoded, vocab_size: int, type_vocab_size: int) -> tuple[np.ndarray, ...]:
    """The data owner's secret inputs: word one-hots [B, L, V], padding mask [B, L], type one-hots [B, L, T]."""
    eye = partial(np.eye, dtype=np.float32)
    return (
        eye(vocab_size)[encoded.input_ids],
        encoded.attention_mask.astype(np.float32),
        eye(type_vocab_size)[encoded.token_type_ids],
    )


def check_finite(what: str, logits) -> np.ndarray:
    """`logits` as an array; a ValueError naming `what` if any is NaN or infinite (never compared, never
    reported as agreement: with non-finite weights or an overflowing fixed-point range no output means anything)."""
    logits = np.asarray(logits)
    if not np.isfinite(logits).all():
        raise ValueError(f"the {what} hold {int(np.size(logits) - np.isfinite(logits).sum())} NaN or infinite values of {np.size(logits)}: "
                         "check the model's weights and the fixed-point range (--field)")
    return logits


def prediction(logits, num_labels: int, id2label: dict | None) -> str | None:
    """The label of one example's `logits` (its name from `id2label`, keyed by int or str); None for a regression."""
    if num_labels == 1:
        return None
    top = int(np.asarray(logits).argmax())
    labels = {str(k): v for k, v in (id2label or {}).items()}
    return labels.get(str(top), str(top))


def classifier_builder(config, approx: ApproxSet, field: str = "fm64", linear_layers: str = "spu", protocol: Protocol | str | None = None) -> ProgramBuilder:
    """The program builder of `BertForSequenceClassification` (data: words, mask, types; output: logits);
    with `protocol`, its program for that protocol (products with weights in its `Protocol.weight_block`),
    else the whole-product one (what every protocol without a weight block runs)."""
    product = WHOLE if protocol is None else WeightProduct(protocols.get(protocol).weight_block)
    model = BertForSequenceClassification(config, approx, product)
    return ProgramBuilder(model, ("words", "mask", "types"), approx, field, linear_layers, lambda out: out["logits"], "bert_logits")


@dataclasses.dataclass
class Result:
    logits: np.ndarray
    plaintext_logits: np.ndarray
    cost: Cost  # the online phase: the SPU program
    compile_seconds: float
    offline: dict | None = None  # dealt randomness: {"seconds": dealer time, "send_bytes": seeds and corrections sent}
    setup: dict | None = None  # fixed-mask products: the once-per-model setup's bytes (`ProgramBuilder.run_setup`)
    openings: list[np.ndarray] | None = None  # with record_openings: each opened value's ring elements (uint64), in program order

    @property
    def max_abs_error(self) -> float:
        return float(np.max(np.abs(self.logits - self.plaintext_logits)))


class PrivateClassifier:
    """A checkpoint with one approximation set: compiled once per sequence length (with SPU's own products
    the program does not depend on the protocol; with fixed-mask ones, `linear_layers="fixed-mask"`, which
    products are masked does: once per length and protocol), run under any protocol. The program is
    assembled by `program.ProgramBuilder` and run by `private_run.PrivateRun` (the fixed-mask setup once per
    protocol, in that protocol's simulation); this class keeps the per-model state."""

    def __init__(self, checkpoint: Checkpoint, approx: ApproxSet, field: str = "fm64", linear_layers: str = "spu"):
        self.checkpoint, self.approx, self.field, self.linear_layers = checkpoint, approx, field, linear_layers
        self.builder = classifier_builder(checkpoint.config, approx, field, linear_layers)
        self._builders = {p: classifier_builder(checkpoint.config, approx, field, linear_layers, p) for p in protocols.PROTOCOLS.values() if p.weight_block}
        self._runs = {b: PrivateRun.single(b, checkpoint.params) for b in (self.builder, *self._builders.values())}
        self._simulations: dict[Protocol, Simulation] = {}
        self._plain = jax.jit(self.builder.function())
        self._compiled: dict[int, tuple[Program, float]] = {}

    def data(self, encoded: Encoded) -> dict:
        """The data owner's secret inputs of `encoded`."""
        c = self.checkpoint.config
        return dict(zip(("words", "mask", "types"), one_hot_inputs(encoded, c.vocab_size, c.type_vocab_size)))

    def _shaped_data(self, seq_len: int, batch: int = 1) -> dict:
        c = self.checkpoint.config
        f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
        return {"words": f32(batch, seq_len, c.vocab_size), "mask": f32(batch, seq_len), "types": f32(batch, seq_len, c.type_vocab_size)}

    def builder_for(self, protocol: Protocol | str) -> ProgramBuilder:
        """The builder of `protocol`'s program (`Protocol.weight_block`; the same math as `builder`'s)."""
        return self._builders.get(protocols.get(protocol), self.builder)

    def masks(self, protocol: Protocol | str) -> linear.FixedMasks | None:
        """The fixed masks for `protocol`, set up once per protocol (the dealer's B, and the setup program
        run in the protocol's simulation: E opened, kept by the parties); None with SPU's own products."""
        return self._runs[self.builder_for(protocol)].masks(self.simulation(protocol), self._shaped_data(1))[0]

    def setup_cost(self, protocol: Protocol | str) -> dict | None:
        """The fixed-mask setup's bytes under `protocol` (None with SPU's own products)."""
        return self._runs[self.builder_for(protocol)].setup(self.simulation(protocol), self._shaped_data(1))

    def program(self, seq_len: int, protocol: Protocol | str = protocols.DEFAULT, record_openings: bool = False, batch: int = 1) -> tuple[Program, float]:
        """The compiled SPU program for `batch` examples of `seq_len` tokens (cached; `protocol` matters only
        for fixed-mask products) and the seconds its compilation took. `record_openings`: the program also
        outputs every value it opens (`openings.py`; for tests)."""
        masks = self.masks(protocol)
        start = time.perf_counter()
        builder = self.builder_for(protocol)
        shapes = builder.shapes(self.checkpoint.params, self._shaped_data(seq_len, batch), masks)
        program, new = builder.compile(shapes, record_openings)
        if new:
            self._compiled[id(program)] = (program, time.perf_counter() - start)
        return self._compiled[id(program)]

    def plaintext_logits(self, encoded: Encoded) -> np.ndarray:
        inputs = {"params": self.checkpoint.params, "words": encoded.input_ids, "mask": encoded.attention_mask, "types": encoded.token_type_ids}
        return check_finite("plaintext logits", self._plain(inputs))

    def simulation(self, protocol: Protocol | str) -> Simulation:
        protocol = protocols.get(protocol)
        if protocol not in self._simulations:
            self.builder.check(protocol)
            self._simulations[protocol] = Simulation(protocol, self.field, **SPU_RUNTIME_OPTIONS)
        return self._simulations[protocol]

    def __call__(self, encoded: Encoded, protocol: Protocol | str = protocols.DEFAULT, record_openings: bool = False) -> Result:
        """Run privately under `protocol` and return the revealed logits next to the plaintext ones (with
        `record_openings`, also what the parties saw opened: `Result.openings`)."""
        simulation = self.simulation(protocol)
        batch, seq_len = encoded.input_ids.shape
        _, compile_seconds = self.program(seq_len, protocol, record_openings, batch)
        run = self._runs[self.builder_for(protocol)]
        out, cost, offline = run.run(simulation, self.data(encoded), Dealer(), record_openings)
        if offline is not None:
            what = ["GeLU"] * self.approx.needs_correlation + ["fixed-mask products"] * (self.masks(protocol) is not None)
            offline["what"] = f"dealt randomness ({', '.join(what)}): seeds and corrections"
        logits, openings = out if record_openings else (out, None)
        opened = None if openings is None else [np.asarray(o) for o in openings]
        private = check_finite("private logits", logits)
        return Result(private, self.plaintext_logits(encoded), cost, compile_seconds, offline, setup=self.setup_cost(protocol), openings=opened)
