"""Tokenised GLUE examples and length-bucketed batches.

Every batch is padded to the smallest bucket (16, 32, 64, ... up to `max_length`) that holds its longest
example, so short tasks (SST-2, CoLA: ~12 tokens) do not pay for 128 and jit compiles one program per
bucket. Training batches are drawn from a seeded permutation, sorted by length within pools of 50 batches
(similar lengths together, order still random), and always full: the last partial batch is dropped.
Evaluation batches keep the file order within each bucket, and a short last batch is padded with rows
that carry weight 0 (one unmasked [PAD] token each, so that every softmax stays finite).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from .tasks import Examples

MIN_BUCKET = 16
POOL = 50


@dataclasses.dataclass
class Batch:
    input_ids: np.ndarray  # int32 [B, L]
    attention_mask: np.ndarray  # int32 [B, L]
    token_type_ids: np.ndarray  # int32 [B, L]
    labels: np.ndarray  # int32 or float32 [B]
    weights: np.ndarray  # float32 [B]: 1 for real rows, 0 for padding rows
    index: np.ndarray  # int [B]: example index, -1 for padding rows


@dataclasses.dataclass
class Tokenized:
    examples: Examples
    ids: list[np.ndarray]  # per example: token ids, truncated to max_length
    types: list[np.ndarray]
    max_length: int
    truncated: int  # how many examples lost tokens to max_length

    def __len__(self) -> int:
        return len(self.ids)


def tokenize(tokenizer, examples: Examples, max_length: int) -> Tokenized:
    """Tokenise every example ([CLS] a [SEP] b [SEP]); pairs are cut longest-first beyond `max_length`."""
    if max_length < MIN_BUCKET:
        raise ValueError(f"max length must be at least {MIN_BUCKET} tokens, got {max_length}")
    full = tokenizer(examples.text_a, examples.text_b)["input_ids"]
    enc = tokenizer(examples.text_a, examples.text_b, truncation=True, max_length=max_length)
    truncated = sum(len(f) > max_length for f in full)
    ids = [np.asarray(x, np.int32) for x in enc["input_ids"]]
    types = [np.asarray(x, np.int32) for x in enc["token_type_ids"]]
    return Tokenized(examples, ids, types, max_length, truncated)


def bucket(length: int, max_length: int) -> int:
    """The padded length for a batch whose longest example has `length` tokens."""
    size = MIN_BUCKET
    while size < length:
        size *= 2
    return min(size, max_length)


def make_batch(data: Tokenized, index: np.ndarray, batch_size: int) -> Batch:
    """Pad the examples `index` into one batch of `batch_size` rows (extra rows weigh 0)."""
    length = bucket(max(len(data.ids[i]) for i in index), data.max_length)
    ids = np.zeros((batch_size, length), np.int32)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for row, i in enumerate(index):
        n = len(data.ids[i])
        ids[row, :n], types[row, :n], mask[row, :n] = data.ids[i], data.types[i], 1
    mask[len(index) :, 0] = 1  # padding rows attend to one token, so that every softmax stays finite
    labels = np.zeros(batch_size, data.examples.labels.dtype)
    labels[: len(index)] = data.examples.labels[index]
    weights = np.zeros(batch_size, np.float32)
    weights[: len(index)] = 1.0
    full_index = np.full(batch_size, -1)
    full_index[: len(index)] = index
    return Batch(ids, mask, types, labels, weights, full_index)


def train_batches(data: Tokenized, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The example indices of every full batch of `epoch`, deterministic in (seed, epoch)."""
    if len(data) < batch_size:
        raise ValueError(f"{len(data)} training examples are fewer than one batch of {batch_size}")
    order = np.random.default_rng([seed, epoch]).permutation(len(data))
    lengths = np.array([len(x) for x in data.ids])
    batches = []
    pool = batch_size * POOL
    for start in range(0, len(order) - batch_size + 1, pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
    rng = np.random.default_rng([seed, epoch, 1])
    return [batches[i] for i in rng.permutation(len(batches))]


def eval_batches(data: Tokenized, batch_size: int) -> Iterator[Batch]:
    """Every example once, in file order (grouped by bucket to limit padding), the last batch padded."""
    lengths = np.array([bucket(len(x), data.max_length) for x in data.ids])
    for size in sorted(set(lengths.tolist())):
        members = np.flatnonzero(lengths == size)
        for start in range(0, len(members), batch_size):
            yield make_batch(data, members[start : start + batch_size], batch_size)
