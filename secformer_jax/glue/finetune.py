"""Teacher fine-tuning: a BERT checkpoint (default: the embedded MiniLM) trained on one GLUE task in plaintext.

Loss: softmax cross-entropy over the labels, or mean squared error on the score for STS-B (one output).
The result is a Hugging Face-style checkpoint directory (`checkpoint.save_checkpoint`) with the task's
labels in its config and a `secformer.json` beside it: task, role, the approximations the model was
trained with and should be evaluated with, settings, losses and durations.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax

from ..approx import PRESETS, ApproxSet
from ..checkpoint import DEFAULT_PACKAGE, METADATA, Checkpoint, default_model_dir, load_checkpoint, load_config, save_checkpoint
from ..model import BertForSequenceClassification
from .batches import Tokenized, tokenize
from .gelu_range import gelu_inputs
from .loop import Hyper, discard_state, fit
from .tasks import TaskSpec, get_task, read_task

STATE_DIR = "train_state"


def task_loss(task: TaskSpec, logits, labels, weights):
    """Weighted mean cross-entropy (classification) or squared error (regression) of `logits` [B, num_labels]."""
    if task.regression:
        per_row = jnp.square(logits[:, 0] - labels)
    else:
        per_row = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return jnp.sum(per_row * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def keeps_classifier(base_config, task: TaskSpec) -> bool:
    """Whether fine-tuning on `task` may start from the base checkpoint's classifier: only when it has the
    task's width and was not fine-tuned on another task, whose labels mean something else (MRPC's index 1 is
    "equivalent", RTE's is "not_entailment"); any other base gets a fresh classifier."""
    return base_config.num_labels == task.num_labels and getattr(base_config, "finetuning_task", None) in (None, task.name)


def apply_model(model: BertForSequenceClassification, params, batch: dict, rng):
    """The model's outputs on a batch of ids; dropout on when `rng` is given."""
    rngs = {} if rng is None else {"dropout": rng}
    return model.apply({"params": params}, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                       deterministic=rng is None, rngs=rngs)


def training_data(checkpoint: Checkpoint, task: TaskSpec, max_length: int, max_train: int | None, glue_dir, seed: int) -> Tokenized:
    """The task's train split (a seeded random subset of `max_train` examples when given), tokenised."""
    if max_length > checkpoint.config.max_position_embeddings:
        raise ValueError(f"--max-length {max_length} exceeds the model's {checkpoint.config.max_position_embeddings} positions")
    examples = read_task(task.name, "train", glue_dir)
    if max_train is not None:
        if max_train < 1:
            raise ValueError(f"--max-train must be positive, got {max_train}")
        if max_train < len(examples):
            examples = examples.take(np.sort(np.random.default_rng(seed).permutation(len(examples))[:max_train]))
    return tokenize(checkpoint.tokenizer, examples, max_length)


def prepare_out(out: Path, restart: bool) -> None:
    """Refuse to overwrite a finished checkpoint; with `restart`, discard an interrupted run's state."""
    if (out / METADATA).exists():
        raise ValueError(f"{out} already holds a finished checkpoint; choose another --out or delete it")
    if restart:
        discard_state(out / STATE_DIR)


def save_run(out: Path, checkpoint: Checkpoint, params, task: TaskSpec, metadata: dict, approx: ApproxSet, data: Tokenized) -> dict:
    """Write the checkpoint with the task's labels and its `secformer.json` (`metadata` plus the GeLU input
    range of the trained model under `approx`, the approximations it was trained with, on its training data
    `data`: `gelu_range.gelu_inputs`), drop the resumable state, and return the metadata written."""
    inputs = gelu_inputs(checkpoint.config, params, approx, data)
    metadata = metadata | {"gelu_inputs": {k: inputs[k] for k in ("min", "max", "fourier_gelu")} | {"measured_on": f"its training data ({len(data)} examples)"}}
    config = checkpoint.config
    config.num_labels = task.num_labels
    config.id2label = task.id2label
    config.label2id = {v: k for k, v in task.id2label.items()}
    config.finetuning_task = task.name
    save_checkpoint(out, config, params, checkpoint.tokenizer)
    (out / METADATA).write_text(json.dumps(metadata, indent=2))
    discard_state(out / STATE_DIR)
    return metadata


def finetune(task_name: str, out: str | Path, model_dir: str | Path | None = None, hyper: Hyper = Hyper(3, 2e-5),
             max_length: int = 128, max_train: int | None = None, glue_dir=None, restart: bool = False,
             approx: ApproxSet = PRESETS["plaintext"]) -> dict:
    """Fine-tune `model_dir` on `task_name` and save the teacher to `out`; returns its metadata."""
    task, out = get_task(task_name), Path(out)
    prepare_out(out, restart)
    start = time.perf_counter()
    base = load_config(Path(model_dir) if model_dir is not None else default_model_dir())
    checkpoint = load_checkpoint(model_dir, num_labels=task.num_labels, drop_classifier=not keeps_classifier(base, task))
    data = training_data(checkpoint, task, max_length, max_train, glue_dir, hyper.seed)
    model = BertForSequenceClassification(checkpoint.config, approx)

    def loss_fn(params, _aux, batch, rng):
        return task_loss(task, apply_model(model, params, batch, rng)["logits"], batch["labels"], batch["weights"])

    params, history = fit(loss_fn, checkpoint.params, None, data, hyper, out / STATE_DIR, f"finetune {task.name}")
    metadata = {
        "task": task.name, "role": "teacher", "method": None, "base_model": str(model_dir) if model_dir is not None else f"embedded default ({DEFAULT_PACKAGE})",
        "classifier": "the base model's" if checkpoint.has_classifier else "new (random initialisation)",
        "trained_with": approx.to_dict(), "evaluate_with": "plaintext", "train_examples": len(data),
        "truncated_examples": data.truncated, "history": history, "seconds": history["seconds"],
        "wall_seconds_this_call": time.perf_counter() - start,
    }
    return save_run(out, checkpoint, params, task, metadata, approx, data)
