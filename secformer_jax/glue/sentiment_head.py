"""Fitting SST-2 sentiment heads for encoder-only checkpoints (`classifier_head.py` finds and attaches them):
BERT's classifier (a linear layer on the pooler output) fitted as a logistic regression on SST-2 over the
frozen encoder's features, under the exact functions. The encoder stays frozen; this is not distillation
(that is `secformer distill`).

- `fit_default_head`: the embedded default's head, shipped as `secformer_jax/heads/minilm-l6-h384-sst2.npz`:
  fitted on the whole SST-2 train split (features at max_length 64; the 4 longer train sentences are cut),
  with its provenance record. `python -m secformer_jax.glue.sentiment_head --out PATH` regenerates it.
- `fit_cached_head`: any other encoder's head, on a seeded subset of SST-2 train, cached per checkpoint
  (path and weight fingerprint) and settings: `python -m secformer_jax.glue.sentiment_head --model DIR`.

Fit (`fit_logistic`): features standardised, logistic regression with an L2 penalty solved to convergence
by Newton's method in float64 (deterministic, no learning rate or step count); the standardisation is
folded back into the classifier's kernel and bias. The shipped head's dev accuracy (and why a linear head on
this encoder's pooler output stops near it) is in its record and in README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

from ..approx import PRESETS, ApproxSet
from ..checkpoint import DEFAULT_PACKAGE, Checkpoint, load_checkpoint
from ..classifier_head import (CACHED_TRAIN_EXAMPLES, DEFAULT_HEAD, DEFAULT_MAX_LENGTH, HEAD_VERSION, LABELS, _package_version, cache_path,
                               encoder_fingerprint, save_head)
from ..model import BertModule
from .tasks import read_task

DEFAULT_L2 = 1e-4  # the l2 `fit_default_head` chooses on a held-out slice of SST-2 train (see the shipped record)
L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2)
HELD_OUT = 0.1  # the fraction of train examples held out to choose l2
FEATURE_KINDS = ("pooler", "mean", "cls")


# --------------------------------------------------------------------------------------------- features
def _buckets(lengths: np.ndarray, max_length: int, step: int) -> np.ndarray:
    """Padded length per example: its length rounded up to a multiple of `step`, at most `max_length`."""
    return np.minimum(-(-lengths // step) * step, max_length)


def encoder_features(
    checkpoint: Checkpoint,
    approx: ApproxSet,
    texts: list[str],
    max_length: int = DEFAULT_MAX_LENGTH,
    kinds: tuple[str, ...] = ("pooler",),
    batch: int = 128,
    pad_to: int | None = None,
    bucket_step: int = 8,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Features [N, hidden] of `texts` under `approx`, in plaintext JAX (jit), in the order of `texts`.

    kinds: "pooler" (the pooler output tanh(dense(h_[CLS])): what BERT's classifier reads), "mean" (the last
    hidden state averaged over real tokens: the sentence-transformers embedding) and "cls" (h_[CLS]).
    Texts are cut to `max_length` tokens. Examples are sorted by length and padded per batch to a multiple of
    `bucket_step` (one compile per padded length; padding is masked, so exact features do not depend on it)
    or, with `pad_to`, all to `pad_to` (as the private run pads to its public length). Batches are always
    `batch` rows (a short last batch is filled with one-token rows, dropped from the result)."""
    unknown = set(kinds) - set(FEATURE_KINDS)
    if unknown:
        raise ValueError(f"unknown feature kinds {sorted(unknown)}; choose from {FEATURE_KINDS}")
    if not texts:
        return {k: np.zeros((0, checkpoint.config.hidden_size), np.float32) for k in kinds}
    model = BertModule(checkpoint.config, approx)

    @jax.jit
    def apply(params, ids, mask, types):
        out = model.apply({"params": params}, ids, mask, types)
        m = mask.astype(out["last_hidden_state"].dtype)[..., None]
        every = {
            "pooler": out["pooler_output"],
            "mean": (out["last_hidden_state"] * m).sum(1) / m.sum(1),
            "cls": out["last_hidden_state"][:, 0],
        }
        return {k: every[k] for k in kinds}

    enc = checkpoint.tokenizer(list(texts), truncation=True, max_length=max_length)
    ids = [np.asarray(x, np.int32) for x in enc["input_ids"]]
    types = [np.asarray(x, np.int32) for x in enc["token_type_ids"]]
    lengths = np.asarray([len(x) for x in ids])
    if pad_to is not None and pad_to < lengths.max():
        raise ValueError(f"pad_to {pad_to} is shorter than the longest text ({lengths.max()} tokens after cutting to {max_length})")
    padded = np.full(len(ids), pad_to) if pad_to is not None else _buckets(lengths, max_length, bucket_step)
    order = np.lexsort((np.arange(len(ids)), lengths))  # stable: by length, then by position
    out = {k: np.zeros((len(ids), checkpoint.config.hidden_size), np.float32) for k in kinds}
    starts = range(0, len(order), batch)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="features", leave=False)
    for start in starts:
        rows = order[start : start + batch]
        length = int(padded[rows].max())
        b_ids = np.zeros((batch, length), np.int32)
        b_types, b_mask = np.zeros_like(b_ids), np.zeros_like(b_ids)
        b_mask[len(rows) :, 0] = 1  # filler rows attend to one token, so every softmax stays finite
        for r, i in enumerate(rows):
            n = len(ids[i])
            b_ids[r, :n], b_types[r, :n], b_mask[r, :n] = ids[i], types[i], 1
        got = apply(checkpoint.params["bert"], b_ids, b_mask, b_types)
        for k in kinds:
            out[k][rows] = np.asarray(got[k])[: len(rows)]
    return out


def pooled_features(checkpoint: Checkpoint, approx: ApproxSet, texts: list[str], max_length: int, batch: int = 128, desc: str = "") -> np.ndarray:
    """Pooler outputs [N, hidden] of `texts` under `approx` (what the classifier reads), in plaintext JAX."""
    return encoder_features(checkpoint, approx, texts, max_length, ("pooler",), batch=batch, progress=bool(desc))["pooler"]


# ------------------------------------------------------------------------------------------------- fit
def fit_logistic(
    features: np.ndarray, labels: np.ndarray, l2: float = DEFAULT_L2, max_iter: int = 50, tol: float = 1e-9
) -> tuple[np.ndarray, np.ndarray]:
    """Two-class logistic regression; returns (kernel [H, 2], bias [2]) acting on raw features.

    Minimises the mean softmax cross-entropy of logits x @ kernel + bias plus l2 * |kernel|^2, with x the
    standardised features (per column; the standardisation is folded back into the returned kernel and
    bias). Two-class softmax logits only matter through their difference, and the penalty is smallest
    with the columns opposite (kernel = [-w/2, w/2], bias = [-c/2, c/2]), so this is a binary logistic
    regression in (w, c) with penalty (l2 / 2) |w|^2 (the bias is not penalised), solved to convergence by
    Newton's method with a backtracking line search in float64: no randomness and no learning rate, so the
    same inputs give the same head. l2 must be positive (data that a hyperplane separates have no
    unpenalised optimum)."""
    if l2 <= 0:
        raise ValueError(f"l2 must be positive, got {l2}")
    labels = np.asarray(labels)
    if set(np.unique(labels).tolist()) - {0, 1}:
        raise ValueError("labels must be 0 or 1")
    x = np.asarray(features, np.float64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = np.concatenate([(x - mean) / std, np.ones((len(x), 1))], 1)
    y = labels.astype(np.float64)
    n, d = x.shape
    penalty = np.full(d, l2)
    penalty[-1] = 0.0  # the bias

    def objective(v):
        z = x @ v
        return np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(penalty * v * v)

    v = np.zeros(d)
    value = objective(v)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(x @ v)))
        grad = x.T @ (p - y) / n + penalty * v
        hess = (x * (p * (1 - p))[:, None]).T @ x / n + np.diag(penalty) + 1e-12 * np.eye(d)
        step = np.linalg.solve(hess, grad)
        decrease = grad @ step  # Newton decrement^2
        t = 1.0
        while t > 1e-8:
            candidate = objective(v - t * step)
            if candidate <= value - 0.25 * t * decrease:
                break
            t *= 0.5
        v, value = v - t * step, candidate
        if decrease / 2 < tol:
            break
    w = v[:-1] / std
    c = v[-1] - mean @ w
    kernel = np.stack([-w / 2, w / 2], 1)
    return kernel.astype(np.float32), np.asarray([-c / 2, c / 2], np.float32)


def accuracy(features: np.ndarray, labels: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> float:
    return float(np.mean((np.asarray(features) @ kernel + bias).argmax(-1) == np.asarray(labels)))


def fit_head(
    checkpoint: Checkpoint, texts: list[str], labels: np.ndarray, max_length: int = DEFAULT_MAX_LENGTH,
    l2: float = DEFAULT_L2, progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """BERT's classifier (kernel [H, 2], bias [2]) fitted on the pooler outputs of `texts` under the exact
    functions; deterministic."""
    feats = encoder_features(checkpoint, PRESETS["plaintext"], texts, max_length, progress=progress)["pooler"]
    return fit_logistic(feats, labels, l2=l2)


def tune_l2(features: np.ndarray, labels: np.ndarray, grid=L2_GRID, held_out: float = HELD_OUT, seed: int = 0) -> tuple[float, dict]:
    """The l2 of `grid` with the best accuracy on a held-out slice (a seeded `held_out` fraction) of the
    training examples, fitted on the rest; returns (l2, {"examples", "seed", "accuracy": {l2: (train,
    held-out accuracy)}}). Ties go to the larger l2."""
    order = np.random.default_rng(seed).permutation(len(labels))
    n = int(round(held_out * len(labels)))
    out, fit = order[:n], order[n:]
    scores = {}
    for l2 in grid:
        kernel, bias = fit_logistic(features[fit], labels[fit], l2=l2)
        scores[l2] = (accuracy(features[fit], labels[fit], kernel, bias), accuracy(features[out], labels[out], kernel, bias))
    best = max(sorted(grid, reverse=True), key=lambda l2: scores[l2][1])
    return best, {"examples": n, "fitted_on": len(fit), "seed": seed,
                  "accuracy": {f"{l2:g}": {"train": a, "held_out": b} for l2, (a, b) in scores.items()}}


def fit_default_head(
    out_path: str | Path = DEFAULT_HEAD,
    n_train: int | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    l2: float | None = None,
    approx_dev: dict[str, int | None] | None = None,
    approx_pad_to: int | None = DEFAULT_MAX_LENGTH,
    alternatives: bool = True,
    checkpoint: Checkpoint | None = None,
    progress: bool = False,
    log=lambda message: None,
) -> dict:
    """Fit the embedded default's SST-2 head and write it (kernel, bias, provenance record) to `out_path`.

    The head is BERT's classifier on the pooler output, fitted (`fit_logistic`) under the exact functions
    on the first `n_train` examples of SST-2 train (None: all of them) at `max_length` tokens (the 4 longer
    train sentences are cut; features only), with `l2` (None: chosen from `L2_GRID` on a held-out 10% of
    those train examples, `tune_l2`; dev is not used for any choice). Dev accuracy is measured under the
    exact functions on the whole dev split and, for each preset in `approx_dev` (default {"secformer": None,
    "puma": None}: preset -> number of dev examples from the start, None for all), with the encoder under
    that preset's approximations in plaintext, every example padded to `approx_pad_to` tokens as the
    private run pads to its public length. With `alternatives`, the record also has the dev accuracy of
    logistic heads on the mean-pooled last hidden state and on h_[CLS] (which BERT's classifier cannot read;
    for comparison). Deterministic. Returns the record."""
    approx_dev = {"secformer": None, "puma": None} if approx_dev is None else approx_dev
    checkpoint = load_checkpoint(None) if checkpoint is None else checkpoint
    train = read_task("SST-2", "train")
    train = train.take(range(len(train) if n_train is None else min(n_train, len(train))))
    dev = read_task("SST-2", "dev")
    kinds = FEATURE_KINDS if alternatives else ("pooler",)
    exact = PRESETS["plaintext"]

    t0 = time.perf_counter()
    feats = encoder_features(checkpoint, exact, train.text_a, max_length, kinds, progress=progress)
    feature_seconds = time.perf_counter() - t0
    log(f"train features: {len(train)} examples in {feature_seconds:.0f} s")
    t0 = time.perf_counter()
    dev_feats = encoder_features(checkpoint, exact, dev.text_a, max_length, kinds)
    dev_feature_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    tuning = None
    if l2 is None:
        l2, tuning = tune_l2(feats["pooler"], train.labels)
        log(f"l2 {l2:g} (held-out accuracy {tuning['accuracy'][f'{l2:g}']['held_out']:.4f})")
    kernel, bias = fit_logistic(feats["pooler"], train.labels, l2=l2)
    fit_seconds = time.perf_counter() - t0
    train_accuracy = accuracy(feats["pooler"], train.labels, kernel, bias)
    dev_pred = (dev_feats["pooler"] @ kernel + bias).argmax(-1)
    dev_exact = float(np.mean(dev_pred == dev.labels))
    log(f"train accuracy {train_accuracy:.4f}, dev accuracy (exact functions) {dev_exact:.4f}")

    under = {}
    for preset, n in approx_dev.items():
        n = len(dev) if n is None else min(n, len(dev))
        t0 = time.perf_counter()
        f = encoder_features(checkpoint, PRESETS[preset], dev.text_a[:n], max_length, pad_to=approx_pad_to, batch=16, progress=progress)["pooler"]
        pred = (f @ kernel + bias).argmax(-1)
        under[preset] = {
            "dev_examples": n, "dev_accuracy": float(np.mean(pred == dev.labels[:n])), "padded_to": approx_pad_to,
            "exact_dev_accuracy_same_examples": float(np.mean(dev_pred[:n] == dev.labels[:n])),
            "agreement_with_exact": float(np.mean(pred == dev_pred[:n])),
            "max_abs_feature_error": float(np.abs(f - dev_feats["pooler"][:n]).max()),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        log(f"dev accuracy under {preset} ({n} examples): {under[preset]['dev_accuracy']:.4f}")

    others = {}
    for kind in kinds[1:]:
        kl2, ktuning = tune_l2(feats[kind], train.labels)
        k, b = fit_logistic(feats[kind], train.labels, l2=kl2)
        others[kind] = {"l2": kl2, "held_out_accuracy": ktuning["accuracy"][f"{kl2:g}"]["held_out"],
                        "train_accuracy": accuracy(feats[kind], train.labels, k, b),
                        "dev_accuracy": accuracy(dev_feats[kind], dev.labels, k, b)}
        log(f"for comparison, a head on {kind} features: dev accuracy {others[kind]['dev_accuracy']:.4f}")

    truncated = sum(len(x) > max_length for x in checkpoint.tokenizer(train.text_a)["input_ids"])
    default_out = Path(out_path).resolve() == DEFAULT_HEAD
    command = f"python -m secformer_jax.glue.sentiment_head --out {'secformer_jax/heads/' + DEFAULT_HEAD.name if default_out else out_path}"
    if n_train is not None:
        command += f" --n-train {n_train}"
    record = {
        "head_version": HEAD_VERSION,
        "task": "SST-2",
        "labels": {str(k): v for k, v in LABELS.items()},
        "model": "MiniLM-L6-H384 (sentence-transformers/all-MiniLM-L6-v2)",
        "model_package": DEFAULT_PACKAGE.split("==")[0],
        "model_package_version": _package_version(),
        "encoder_fingerprint": encoder_fingerprint(checkpoint),
        "features": "pooler_output = tanh(pooler.dense(h_[CLS])) of the frozen encoder: what BertForSequenceClassification's classifier reads",
        "functions": "exact (preset plaintext)",
        "max_length": max_length,
        "train_examples": len(train),
        "train_truncated": int(truncated),
        "train_accuracy": train_accuracy,
        "fit": {"method": "fit_logistic: L2-penalised logistic regression on standardised features, Newton's method to convergence (float64)",
                "l2": l2, "l2_tuning": tuning},
        "dev_examples": len(dev),
        "dev_accuracy": dev_exact,
        "dev_accuracy_under": under,
        "alternatives_not_readable_by_the_classifier": others,
        "seconds": {"train_features": round(feature_seconds, 1), "dev_features": round(dev_feature_seconds, 1), "fit": round(fit_seconds, 1)},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}",
        "command": command,
    }
    save_head(out_path, kernel, bias, record)
    return record


def fit_cached_head(checkpoint: Checkpoint, n_train: int = CACHED_TRAIN_EXAMPLES, max_length: int = DEFAULT_MAX_LENGTH,
                    n_dev: int = 872, progress: bool = False) -> dict:
    """Fit `checkpoint`'s SST-2 head under the exact functions on `n_train` seeded SST-2 train examples at
    `max_length` tokens, measure its dev accuracy on the first `n_dev` dev examples, and cache it where
    `classifier_head.attach_sentiment_head` finds it (`cache_path`). Returns what was saved with it."""
    train = read_task("SST-2", "train")
    order = np.random.default_rng(0).permutation(len(train))[:n_train]
    kernel, bias = fit_head(checkpoint, [train.text_a[i] for i in order], train.labels[order], max_length, progress=progress)
    dev = read_task("SST-2", "dev")
    n_dev = min(n_dev, len(dev))
    dev_feats = pooled_features(checkpoint, PRESETS["plaintext"], dev.text_a[:n_dev], max_length)
    saved = {"dev_accuracy": accuracy(dev_feats, dev.labels[:n_dev], kernel, bias), "dev_examples": n_dev, "train_examples": n_train,
             "max_length": max_length, "head_version": HEAD_VERSION}
    save_head(cache_path(checkpoint, n_train, max_length), kernel, bias, saved)
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m secformer_jax.glue.sentiment_head",
        description="Fit an SST-2 head under the exact functions: regenerate the embedded default's (--out), or fit and cache "
                    "one for another encoder-only checkpoint (--model).",
    )
    parser.add_argument("--model", type=Path, help="an encoder-only checkpoint directory: fit its head and cache it for infer and launch")
    parser.add_argument("--out", type=Path, default=DEFAULT_HEAD, help=f"where to write the default's head (default {DEFAULT_HEAD})")
    parser.add_argument("--n-train", type=int, default=None,
                        help=f"fit on the first N train examples (default: all; with --model, {CACHED_TRAIN_EXAMPLES} seeded ones)")
    parser.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH)
    parser.add_argument("--l2", type=float, default=None, help=f"L2 penalty (default: the best of {L2_GRID} on a held-out 10%% of train)")
    parser.add_argument("--secformer-dev", type=int, default=-1, help="dev examples measured under the secformer preset (default: all; 0: skip)")
    parser.add_argument("--puma-dev", type=int, default=-1, help="dev examples measured under the puma preset (default: all; 0: skip)")
    parser.add_argument("--no-alternatives", action="store_true", help="skip the comparison heads on mean-pooled and [CLS] features")
    args = parser.parse_args(argv)
    if (args.n_train is not None and args.n_train < 2) or args.max_length < 2 or (args.l2 is not None and args.l2 < 0):
        parser.error("--n-train and --max-length must be at least 2 and --l2 non-negative")
    default_only = [flag for flag, given in (("--out", args.out != DEFAULT_HEAD), ("--l2", args.l2 is not None), ("--secformer-dev", args.secformer_dev != -1),
                                             ("--puma-dev", args.puma_dev != -1), ("--no-alternatives", args.no_alternatives)) if given]
    if args.model is not None and default_only:
        parser.error(f"{', '.join(default_only)}: only for the default's head (without --model)")
    approx_dev = {k: (None if n < 0 else n) for k, n in (("secformer", args.secformer_dev), ("puma", args.puma_dev)) if n}
    log = lambda m: print(m, file=sys.stderr, flush=True)
    try:
        if args.model is not None:
            if load_checkpoint(args.model).has_classifier:
                raise ValueError(f"{args.model} has its own classifier: infer and launch use it, no head is needed")
            checkpoint = load_checkpoint(args.model, drop_classifier=True)
            record = fit_cached_head(checkpoint, args.n_train or CACHED_TRAIN_EXAMPLES, args.max_length, progress=True)
            record["cached_at"] = str(cache_path(checkpoint, record["train_examples"], args.max_length))
        else:
            record = fit_default_head(args.out, args.n_train, args.max_length, args.l2, approx_dev, alternatives=not args.no_alternatives,
                                      progress=True, log=log)
    except (ValueError, FileNotFoundError) as e:  # missing GLUE data, a bad checkpoint: one line, not a traceback
        print(f"secformer_jax.glue.sentiment_head: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(record, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
