"""A sentiment head for encoder-only checkpoints (such as the embedded MiniLM), fitted in plaintext.

The embedded default is a pretrained encoder with no classifier. To make `secformer infer` print a real
prediction, we fit BERT's own classifier (a linear layer on the pooled [CLS] output) as a logistic
regression on SST-2 training sentences, using the pooled features of the *same approximation set* the
private run uses (so the head matches what SPU computes). The encoder stays frozen; this is not
distillation (that is `secformer distill`). Fitted heads are cached per checkpoint, approximation set
and settings under `$SECFORMER_CACHE` (default `~/.cache/secformer-jax`).

Fit: features standardised, softmax cross-entropy + L2 (1e-3), Adam (lr 0.05, 300 full-batch steps);
the standardisation is folded back into the classifier's kernel and bias.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from .approx import ApproxSet
from .checkpoint import Checkpoint
from .glue.tasks import read_task
from .model import BertForSequenceClassification

LABELS = {0: "negative", 1: "positive"}
HEAD_VERSION = 2  # bump when the fitting procedure changes, to invalidate caches


def pooled_features(checkpoint: Checkpoint, approx: ApproxSet, texts: list[str], max_length: int, batch: int = 64, desc: str = "") -> np.ndarray:
    """Pooled [CLS] features [N, hidden] of `texts` under `approx`, in plaintext JAX."""
    model = BertForSequenceClassification(checkpoint.config, approx)
    apply = jax.jit(lambda p, i, m, t: model.apply({"params": p}, i, m, t)["pooler_output"])
    out = []
    for start in tqdm(range(0, len(texts), batch), desc=desc or "features", leave=False):
        enc = checkpoint.tokenizer(
            texts[start : start + batch], padding="max_length", truncation=True, max_length=max_length, return_tensors="np"
        )
        out.append(np.asarray(apply(checkpoint.params, enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])))
    return np.concatenate(out)


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = 1e-3, steps: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression; returns (kernel [H, 2], bias [2]) acting on raw features."""
    mean, std = features.mean(0), features.std(0) + 1e-6
    x, y = jnp.asarray((features - mean) / std), jax.nn.one_hot(labels, len(LABELS))

    def loss(w):
        logits = x @ w["kernel"] + w["bias"]
        return optax.softmax_cross_entropy(logits, y).mean() + l2 * jnp.sum(w["kernel"] ** 2)

    w = {"kernel": jnp.zeros((x.shape[1], len(LABELS))), "bias": jnp.zeros(len(LABELS))}
    opt = optax.adam(0.05)
    state = opt.init(w)

    @jax.jit
    def step(w, state):
        grads = jax.grad(loss)(w)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(w, updates), state

    for _ in range(steps):
        w, state = step(w, state)
    kernel = np.asarray(w["kernel"]) / std[:, None]
    return kernel.astype(np.float32), (np.asarray(w["bias"]) - mean @ kernel).astype(np.float32)


def _cache_path(checkpoint: Checkpoint, approx: ApproxSet, n_train: int, max_length: int) -> Path:
    key = json.dumps([str(checkpoint.path.resolve()), approx.to_dict(), n_train, max_length, HEAD_VERSION])
    root = Path(os.environ.get("SECFORMER_CACHE", Path.home() / ".cache" / "secformer-jax"))
    return root / "heads" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def attach_sentiment_head(
    checkpoint: Checkpoint, approx: ApproxSet, n_train: int = 2000, max_length: int = 64, n_dev: int = 872
) -> dict:
    """Fit (or load from cache) an SST-2 head for `checkpoint` under `approx`; set it as the checkpoint's
    classifier and return {"train_examples", "dev_examples", "dev_accuracy", "cached"}."""
    if checkpoint.config.num_labels != len(LABELS):
        raise ValueError(f"a sentiment head has {len(LABELS)} labels, the checkpoint is set up for {checkpoint.config.num_labels}")
    path = _cache_path(checkpoint, approx, n_train, max_length)
    cached = path.exists()
    if cached:
        saved = np.load(path)
        kernel, bias, dev_accuracy = saved["kernel"], saved["bias"], float(saved["dev_accuracy"])
    else:
        train = read_task("SST-2", "train")
        texts, labels = train.text_a, train.labels
        order = np.random.default_rng(0).permutation(len(texts))[:n_train]
        feats = pooled_features(checkpoint, approx, [texts[i] for i in order], max_length, desc="fitting SST-2 head")
        kernel, bias = fit_logistic(feats, labels[order])
        dev = read_task("SST-2", "dev")
        dev_texts, dev_labels = dev.text_a, dev.labels
        dev_feats = pooled_features(checkpoint, approx, dev_texts[:n_dev], max_length, desc="SST-2 dev accuracy")
        dev_accuracy = float(np.mean((dev_feats @ kernel + bias).argmax(-1) == dev_labels[:n_dev]))
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, kernel=kernel, bias=bias, dev_accuracy=dev_accuracy)
    checkpoint.params = {**checkpoint.params, "classifier": {"kernel": kernel, "bias": bias}}
    checkpoint.config.id2label = dict(LABELS)
    checkpoint.has_classifier = True
    return {"train_examples": n_train, "dev_examples": n_dev, "dev_accuracy": dev_accuracy, "cached": cached}
