"""Flax BERT with the nonlinear layers passed in explicitly as an `ApproxSet`.

Module and parameter names mirror `transformers.models.bert.modeling_flax_bert` (FlaxBertModule,
FlaxBertForSequenceClassificationModule), so a parameter tree loaded from any Hugging Face BERT checkpoint
drops in unchanged:

    {"bert": {"embeddings": {...}, "encoder": {"layer": {"0": {...}, ...}}, "pooler": {...}},
     "classifier": {"kernel", "bias"}}

What differs from the Hugging Face modules, and why:
- GeLU, softmax and LayerNorm come from `approx` (see `secformer_jax.approx`); nothing global is patched.
- A GeLU that runs on dealt randomness (`approx.needs_correlation`) reads it from the "correlation" variable
  collection, one `SineCorrelation` per layer (`program.deal_correlation`); without it, its reference.
- Words enter either as integer ids (plaintext: a table lookup) or as a one-hot float matrix (under MPC:
  a lookup with a secret index is a one-hot matrix product, and the data owner can build the one-hot
  locally from its own tokens, so the product is the only secret work).
- The padding mask is a float 0/1 array handed to the softmax, which multiplies by it (2Quad squares its
  input, so an additive -inf bias would be wrong there). Under MPC the mask is the data owner's secret.
- Token types enter as ids or as a one-hot over `type_vocab_size`, like words.
- Every product with a weight (`Dense`, the word embeddings) is its module's `WeightProduct`, set on every
  module: plain; in blocks of the weight SPU's Cheetah can hold in memory (`block` > 0, `Protocol.weight_block`);
  or a fixed-mask product (`linear.py`) when the "masked_weights" (E), "weight_masks" (B) and "linear" (A, C)
  collections carry its masks (`linear.FixedMasks`), the kernel then not read.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from transformers import BertConfig

from . import linear
from .approx import ApproxSet

Array = Any

SUPPORTED_ACTS = ("gelu",)  # the erf GeLU; every preset replaces exactly this function


def check_config(config: BertConfig) -> None:
    """Raise ValueError if `config` describes a model this BERT cannot run faithfully."""
    model_type = getattr(config, "model_type", None)
    if model_type != "bert":
        raise ValueError(f"expected a BERT checkpoint (model_type 'bert'), got model_type {model_type!r}")
    if config.hidden_act not in SUPPORTED_ACTS:
        raise ValueError(
            f"hidden_act {config.hidden_act!r} is not supported (supported: {', '.join(SUPPORTED_ACTS)})"
        )
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"position_embedding_type {config.position_embedding_type!r} is not supported")
    if config.hidden_size % config.num_attention_heads:
        raise ValueError("hidden_size must be a multiple of num_attention_heads")


def _product(x: Array, w: Array, block: int = 0) -> Array:
    """x [..., n] @ w [n, m]; with `block` > 0, as products with blocks of at most `block` x `block` of w, the
    column blocks concatenated and the row blocks summed: the same sum (exact in plaintext up to float
    rounding order). Why: under SPU 0.9.5's Cheetah a product's memory grows with the weight's size and
    stays with the process after it (its HE objects come from SEAL's global memory pool); blocks bound it
    (`Protocol.weight_block`; the figures: results/README.md, "Cheetah")."""
    n, m = w.shape
    if block <= 0 or (n <= block and m <= block):
        return x @ w
    columns = [functools.reduce(jnp.add, [x[..., r:r + block] @ w[r:r + block, c:c + block] for r in range(0, n, block)])
               for c in range(0, m, block)]
    return jnp.concatenate(columns, -1) if len(columns) > 1 else columns[0]


def _embed(table: Array, ids_or_onehot: Array, block: int = 0) -> Array:
    """Row lookup: integer ids [B, L] index the table; a one-hot [B, L, V] multiplies it (`_product`, in
    blocks with `block` > 0)."""
    if jnp.issubdtype(ids_or_onehot.dtype, jnp.integer):
        return jnp.take(table, ids_or_onehot, axis=0)
    return _product(ids_or_onehot, table, block)


@dataclasses.dataclass(frozen=True)
class WeightProduct:
    """How a layer multiplies its input by one of its fixed weights, set on the layer (as flax's `nn.Dense`
    takes its `dot_general`) and decided in one place: the plain product x @ w; with `block` > 0
    (`Protocol.weight_block`), products with blocks of at most `block` x `block` of w (`_product`: the same
    sum); and, when the module's "masked_weights", "weight_masks" and "linear" collections hold the weight's
    masks (`linear.FixedMasks`), the fixed-mask product (`linear.masked_matmul`: the weight is then not read,
    so the model owner need not send it). Which one runs follows from the module's variables, so one module
    definition serves plaintext, SPU's own products and fixed-mask ones."""

    block: int = 0

    @staticmethod
    def open(module: nn.Module, x: Array):
        """D = x - A, opened once at `module`'s path for the fixed-mask products it calls on x (Q, K and V), or
        None where `module` holds no input mask (its products are not fixed-mask ones)."""
        if not module.has_variable("linear", "input"):
            return None
        return linear.open_input(x, module.get_variable("linear", "input"))

    @staticmethod
    def _masked(module: nn.Module, x: Array, name: str, opened) -> Array:
        """x times the module's weight `name` as a fixed-mask product; `opened` = D when a parent opened x for
        several products, else the module opens x with its own input mask."""
        d = opened if opened is not None else linear.open_input(x, module.get_variable("linear", "input"))
        get = lambda collection: module.get_variable(collection, name)
        return linear.masked_matmul(x, d, get("masked_weights"), get("weight_masks"), get("linear"))

    def affine(self, module: nn.Module, x: Array, features: int, kernel_init, opened=None, scale: float = 1.0) -> Array:
        """(x @ kernel + bias) * scale with the module's "kernel" [in, features] and "bias" [features]; as a
        fixed-mask product the scale is already in the masked weight (`linear.Site.scales`)."""
        if module.has_variable("masked_weights", "kernel"):
            bias = module.param("bias", nn.initializers.zeros, (features,))
            return self._masked(module, x, "kernel", opened) + (bias * scale if scale != 1.0 else bias)
        kernel = module.param("kernel", kernel_init, (x.shape[-1], features))
        y = _product(x, kernel, self.block) + module.param("bias", nn.initializers.zeros, (features,))
        return y * scale if scale != 1.0 else y

    def lookup(self, module: nn.Module, ids_or_onehot: Array, shape: tuple[int, int], init) -> Array:
        """Rows of the module's "embedding" [V, H]: looked up by integer ids, or a one-hot's product with it
        (`_embed`; a fixed-mask product when masked)."""
        if module.has_variable("masked_weights", "embedding"):
            return self._masked(module, ids_or_onehot, "embedding", None)
        return _embed(module.param("embedding", init, shape), ids_or_onehot, self.block)


WHOLE = WeightProduct()  # every product with a weight as one product (every protocol without a weight block)


class Dense(nn.Module):
    """`nn.Dense`'s parameters (kernel [in, out], bias) and function, times a public `scale`; the product is
    `product`'s (`WeightProduct`: plain, blocked or fixed-mask)."""

    features: int
    kernel_init: Any = nn.initializers.lecun_normal()
    product: WeightProduct = WHOLE

    @nn.compact
    def __call__(self, x: Array, opened=None, scale: float = 1.0) -> Array:
        return self.product.affine(self, x, self.features, self.kernel_init, opened, scale)


class WordEmbed(nn.Module):
    """`nn.Embed`'s parameter (embedding [V, H]) looked up by ids or multiplied by a one-hot; the product is
    `product`'s (`WeightProduct`)."""

    num_embeddings: int
    features: int
    embedding_init: Any
    product: WeightProduct = WHOLE

    @nn.compact
    def __call__(self, ids_or_onehot: Array) -> Array:
        return self.product.lookup(self, ids_or_onehot, (self.num_embeddings, self.features), self.embedding_init)


class LayerNorm(nn.Module):
    """LayerNorm with HF's parameter names (`scale`, `bias`) and the approximation's normalisation."""

    eps: float
    approx: ApproxSet

    @nn.compact
    def __call__(self, x):
        d = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (d,))
        bias = self.param("bias", nn.initializers.zeros, (d,))
        return self.approx.layernorm_fn(x, scale, bias, self.eps)


class BertEmbeddings(nn.Module):
    config: BertConfig
    approx: ApproxSet
    product: WeightProduct = WHOLE  # how every product with a weight runs (`WeightProduct`)

    def setup(self):
        c = self.config
        init = nn.initializers.normal(c.initializer_range)
        self.word_embeddings = WordEmbed(c.vocab_size, c.hidden_size, embedding_init=init, product=self.product)
        self.position_embeddings = nn.Embed(c.max_position_embeddings, c.hidden_size, embedding_init=init)
        self.token_type_embeddings = nn.Embed(c.type_vocab_size, c.hidden_size, embedding_init=init)
        self.LayerNorm = LayerNorm(c.layer_norm_eps, self.approx)
        self.dropout = nn.Dropout(rate=c.hidden_dropout_prob)

    def __call__(self, input_ids, token_type_ids, deterministic: bool = True):
        seq_len = input_ids.shape[1]
        words = self.word_embeddings(input_ids)
        types = _embed(self.token_type_embeddings.embedding, token_type_ids)
        positions = self.position_embeddings.embedding[:seq_len][None]  # positions are public
        hidden = self.LayerNorm(words + types + positions)
        return self.dropout(hidden, deterministic=deterministic)


class BertSelfAttention(nn.Module):
    config: BertConfig
    approx: ApproxSet
    product: WeightProduct = WHOLE  # `BertEmbeddings.product`

    def setup(self):
        c = self.config
        init = nn.initializers.normal(c.initializer_range)
        self.query = Dense(c.hidden_size, kernel_init=init, product=self.product)
        self.key = Dense(c.hidden_size, kernel_init=init, product=self.product)
        self.value = Dense(c.hidden_size, kernel_init=init, product=self.product)
        self.dropout = nn.Dropout(rate=c.attention_probs_dropout_prob)

    def __call__(self, hidden, mask, deterministic: bool = True):
        c = self.config
        heads, head_dim = c.num_attention_heads, c.hidden_size // c.num_attention_heads

        def split(x):  # [B, L, H*D] -> [B, H, L, D]
            return x.reshape(x.shape[:2] + (heads, head_dim)).transpose(0, 2, 1, 3)

        opened = self.product.open(self, hidden)  # fixed-mask Q, K, V: one opening of `hidden` for the three
        # 1 / sqrt(d) on Q (L x H values) rather than on the scores (heads x L x L); free in a fixed-mask Q
        q = split(self.query(hidden, opened, scale=1 / math.sqrt(head_dim)))
        k, v = split(self.key(hidden, opened)), split(self.value(hidden, opened))
        scores = jnp.einsum("bhqd,bhkd->bhqk", q, k)
        probs = self.approx.softmax_fn(scores, mask[:, None, None, :])
        probs = self.dropout(probs, deterministic=deterministic)
        context = jnp.einsum("bhqk,bhkd->bhqd", probs, v)
        context = context.transpose(0, 2, 1, 3).reshape(hidden.shape)
        return context, scores


class BertSelfOutput(nn.Module):
    config: BertConfig
    approx: ApproxSet
    product: WeightProduct = WHOLE  # `BertEmbeddings.product`

    def setup(self):
        c = self.config
        self.dense = Dense(c.hidden_size, kernel_init=nn.initializers.normal(c.initializer_range), product=self.product)
        self.LayerNorm = LayerNorm(c.layer_norm_eps, self.approx)
        self.dropout = nn.Dropout(rate=c.hidden_dropout_prob)

    def __call__(self, hidden, residual, deterministic: bool = True):
        hidden = self.dropout(self.dense(hidden), deterministic=deterministic)
        return self.LayerNorm(hidden + residual)


class BertAttention(nn.Module):
    config: BertConfig
    approx: ApproxSet
    product: WeightProduct = WHOLE  # `BertEmbeddings.product`

    def setup(self):
        self.self = BertSelfAttention(self.config, self.approx, self.product)
        self.output = BertSelfOutput(self.config, self.approx, self.product)

    def __call__(self, hidden, mask, deterministic: bool = True):
        context, scores = self.self(hidden, mask, deterministic)
        return self.output(context, hidden, deterministic), scores


class BertIntermediate(nn.Module):
    config: BertConfig
    approx: ApproxSet
    product: WeightProduct = WHOLE  # `BertEmbeddings.product`

    @nn.compact
    def __call__(self, hidden):
        c = self.config
        dense = Dense(c.intermediate_size, kernel_init=nn.initializers.normal(c.initializer_range), product=self.product, name="dense")
        if self.has_variable("correlation", "gelu"):  # dealt randomness for a protocol GeLU (`approx/sine.py`)
            return self.approx.gelu_fn(dense(hidden), self.get_variable("correlation", "gelu"))
        return self.approx.gelu_fn(dense(hidden))


class BertOutput(nn.Module):
    config: BertConfig
    approx: ApproxSet
    product: WeightProduct = WHOLE  # `BertEmbeddings.product`

    def setup(self):
        c = self.config
        self.dense = Dense(c.hidden_size, kernel_init=nn.initializers.normal(c.initializer_range), product=self.product)
        self.dropout = nn.Dropout(rate=c.hidden_dropout_prob)
        self.LayerNorm = LayerNorm(c.layer_norm_eps, self.approx)

    def __call__(self, intermediate, residual, deterministic: bool = True):
        hidden = self.dropout(self.dense(intermediate), deterministic=deterministic)
        return self.LayerNorm(hidden + residual)


class BertLayer(nn.Module):
    config: BertConfig
    approx: ApproxSet
    product: WeightProduct = WHOLE  # `BertEmbeddings.product`

    def setup(self):
        self.attention = BertAttention(self.config, self.approx, self.product)
        self.intermediate = BertIntermediate(self.config, self.approx, self.product)
        self.output = BertOutput(self.config, self.approx, self.product)

    def __call__(self, hidden, mask, deterministic: bool = True):
        attended, scores = self.attention(hidden, mask, deterministic)
        return self.output(self.intermediate(attended), attended, deterministic), scores


class BertLayerCollection(nn.Module):
    config: BertConfig
    approx: ApproxSet
    product: WeightProduct = WHOLE  # `BertEmbeddings.product`

    @nn.compact
    def __call__(self, hidden, mask, deterministic: bool = True):
        all_hidden, all_scores = [hidden], []
        for i in range(self.config.num_hidden_layers):
            hidden, scores = BertLayer(self.config, self.approx, self.product, name=str(i))(hidden, mask, deterministic)
            all_hidden.append(hidden)
            all_scores.append(scores)
        return hidden, tuple(all_hidden), tuple(all_scores)


class BertEncoder(nn.Module):
    config: BertConfig
    approx: ApproxSet
    product: WeightProduct = WHOLE  # `BertEmbeddings.product`

    def setup(self):
        self.layer = BertLayerCollection(self.config, self.approx, self.product)

    def __call__(self, hidden, mask, deterministic: bool = True):
        return self.layer(hidden, mask, deterministic)


class BertPooler(nn.Module):
    config: BertConfig
    product: WeightProduct = WHOLE  # `BertEmbeddings.product`

    @nn.compact
    def __call__(self, hidden):
        c = self.config
        dense = Dense(c.hidden_size, kernel_init=nn.initializers.normal(c.initializer_range), product=self.product, name="dense")
        return jnp.tanh(dense(hidden[:, 0]))


class BertHead(nn.Module):
    """Pooler + classifier on the last hidden state [B, L, H] -> logits: the last of a model's programs when
    it runs one program per stage (`stages.py`). Parameters {"pooler", "classifier"}: the checkpoint's
    `bert/pooler` and `classifier` trees."""

    config: BertConfig
    approx: ApproxSet
    product: WeightProduct = WHOLE  # `BertEmbeddings.product`

    def setup(self):
        c = self.config
        self.pooler = BertPooler(c, self.product)
        self.classifier = Dense(c.num_labels, kernel_init=nn.initializers.normal(c.initializer_range), product=self.product)

    def __call__(self, hidden):
        return self.classifier(self.pooler(hidden))


class BertModule(nn.Module):
    """The encoder: embeddings, `num_hidden_layers` layers, pooler. Returns a dict of arrays:
    `last_hidden_state` [B, L, H], `pooler_output` [B, H], `hidden_states` (embeddings + every layer),
    `attention_scores` (every layer's pre-softmax scores [B, heads, L, L], for distillation)."""

    config: BertConfig
    approx: ApproxSet
    product: WeightProduct = WHOLE  # `BertEmbeddings.product`

    def setup(self):
        check_config(self.config)
        self.embeddings = BertEmbeddings(self.config, self.approx, self.product)
        self.encoder = BertEncoder(self.config, self.approx, self.product)
        self.pooler = BertPooler(self.config, self.product)

    def __call__(self, input_ids, attention_mask, token_type_ids, deterministic: bool = True):
        hidden = self.embeddings(input_ids, token_type_ids, deterministic)
        mask = attention_mask.astype(hidden.dtype)
        last, all_hidden, all_scores = self.encoder(hidden, mask, deterministic)
        return {
            "last_hidden_state": last,
            "pooler_output": self.pooler(last),
            "hidden_states": all_hidden,
            "attention_scores": all_scores,
        }


class BertForSequenceClassification(nn.Module):
    """BERT + pooler + linear head: `num_labels` logits, or one regression score when num_labels == 1."""

    config: BertConfig
    approx: ApproxSet
    product: WeightProduct = WHOLE  # `BertEmbeddings.product`

    def setup(self):
        c = self.config
        self.bert = BertModule(c, self.approx, self.product)
        dropout = getattr(c, "classifier_dropout", None)
        self.dropout = nn.Dropout(rate=c.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = Dense(c.num_labels, kernel_init=nn.initializers.normal(c.initializer_range), product=self.product)

    def __call__(self, input_ids, attention_mask, token_type_ids, deterministic: bool = True):
        out = self.bert(input_ids, attention_mask, token_type_ids, deterministic)
        pooled = self.dropout(out["pooler_output"], deterministic=deterministic)
        return {**out, "logits": self.classifier(pooled)}


def init_params(config: BertConfig, approx: ApproxSet, seed: int = 0, seq_len: int = 8) -> dict:
    """Random parameters (BERT's normal(0, initializer_range) init) for `BertForSequenceClassification`."""
    model = BertForSequenceClassification(config, approx)
    ids = jnp.zeros((1, seq_len), jnp.int32)
    return model.init(jax.random.PRNGKey(seed), ids, jnp.ones((1, seq_len)), ids)["params"]
