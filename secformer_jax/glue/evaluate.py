"""GLUE dev metrics of a checkpoint under one approximation set: in plaintext on the whole split, and under
SPU on an evenly spaced subset, compared example by example with the plaintext run.

Plaintext uses exactly the functions the SPU program computes (a protocol GeLU without its dealt
randomness computes its ideal functionality), so disagreement under SPU measures fixed-point and protocol
error only. Label agreement: the share of subset examples whose SPU label equals the plaintext label
(for STS-B, a regression, the largest score difference is the check instead).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jax
import numpy as np
from tqdm.auto import tqdm

from ..approx import resolve_approx
from ..checkpoint import load_checkpoint, read_metadata
from ..inference import Encoded, PrivateClassifier, check_finite, classifier_builder
from ..gelu_domain import check_gelu_range
from .. import threads
from ..program import privacy
from ..protocols import DEFAULT, Protocol, get
from ..run import SIMULATION, RunRecord, RunSpec, setup_json
from ..spu_runner import Cost, peak_rss_bytes
from .batches import Tokenized, bucket, eval_batches, tokenize
from .gelu_range import gelu_inputs
from .tasks import compute_metrics, get_task, predictions, read_task


def plaintext_logits(checkpoint, approx, data: Tokenized, batch_size: int = 64) -> np.ndarray:
    """Logits [N, num_labels] of every example, in plain JAX under `approx`, in the examples' order."""
    fn = jax.jit(classifier_builder(checkpoint.config, approx).function())
    out = np.zeros((len(data), checkpoint.config.num_labels), np.float32)
    for batch in tqdm(list(eval_batches(data, batch_size)), desc="plaintext dev", unit="batch", leave=False):
        logits = check_finite("plaintext logits", fn({"params": checkpoint.params, "words": batch.input_ids, "mask": batch.attention_mask, "types": batch.token_type_ids}))
        real = batch.index >= 0
        out[batch.index[real]] = logits[real]
    return out


def subset(n: int, total: int) -> np.ndarray:
    """`n` evenly spaced example indices out of `total` (dev files are often sorted by source or label)."""
    if n > total:
        raise ValueError(f"asked for {n} SPU examples, the split has {total}")
    return np.unique(np.linspace(0, total - 1, n).round().astype(int))


def encoded(data: Tokenized, rows) -> Encoded:
    """Examples `rows` (of one bucket) padded to their bucket length, one row each, as `PrivateClassifier` takes them."""
    length = max(bucket(len(data.ids[i]), data.max_length) for i in rows)
    pad = lambda x: np.pad(x, (0, length - len(x))).astype(np.int32)
    stack = lambda arrays: np.stack([pad(x) for x in arrays])
    return Encoded(stack(data.ids[i] for i in rows), stack(np.ones_like(data.ids[i]) for i in rows), stack(data.types[i] for i in rows), [])


def spu_batches(data: Tokenized, index: np.ndarray, batch: int) -> list[np.ndarray]:
    """`index` grouped by bucket length, each group split into runs of at most `batch` examples of near-equal
    size (at most two program shapes per bucket to compile)."""
    if batch < 1:
        raise ValueError(f"--spu-batch must be at least 1, got {batch}")
    lengths = np.array([bucket(len(data.ids[i]), data.max_length) for i in index])
    runs = []
    for length in sorted(set(lengths.tolist())):
        members = index[lengths == length]
        runs += np.array_split(members, -(-len(members) // batch))
    return runs


def run_spu(checkpoint, approx, data: Tokenized, index: np.ndarray, protocol: Protocol, field: str, linear_layers: str = "spu",
            batch: int = 16) -> dict:
    """Private logits of the examples `index` under `protocol`, next to the plaintext ones (same padding), run
    `batch` examples of one bucket per program (`spu_batches`); a run's seconds and bytes are shared equally
    by its examples. Also the runs' online cost summed ("cost"), the dealer's bytes summed ("offline_bytes",
    None without a dealer), the fixed-mask setup's ("setup") and the compile seconds per program shape."""
    classifier = PrivateClassifier(checkpoint, approx, field, linear_layers)
    classifier.simulation(protocol)
    position = {int(i): k for k, i in enumerate(index)}
    private, plain = np.zeros((len(index), checkpoint.config.num_labels)), np.zeros((len(index), checkpoint.config.num_labels))
    send_bytes, seconds, compile_seconds, costs, offline = np.zeros(len(index)), np.zeros(len(index)), {}, [], []
    for rows in tqdm(spu_batches(data, index, batch), desc=f"SPU {protocol}", unit="run", leave=False):
        enc = encoded(data, rows)
        shape = "x".join(map(str, enc.input_ids.shape))  # examples x tokens
        if shape not in compile_seconds:
            compile_seconds[shape] = classifier.program(enc.input_ids.shape[1], protocol, batch=len(rows))[1]
        result = classifier(enc, protocol)
        at = [position[int(i)] for i in rows]
        private[at], plain[at] = result.logits, result.plaintext_logits
        send_bytes[at], seconds[at] = result.cost.send_bytes / len(rows), result.cost.seconds / len(rows)
        costs.append(result.cost)
        if result.offline is not None:
            offline.append(result.offline["send_bytes"])
    return {"private": private, "plaintext": plain, "send_bytes": send_bytes.tolist(), "seconds": seconds.tolist(),
            "compile_seconds": compile_seconds, "batch": batch, "cost": Cost.total(costs), "offline_bytes": sum(offline) if offline else None,
            "setup": classifier.setup_cost(protocol)}


def evaluate(task_name: str, model_dir: str | Path, approx_preset: str | None = None, max_length: int = 128,
             glue_dir=None, spu_examples: int = 0, protocol: Protocol | str = DEFAULT, field: str = "fm64",
             max_examples: int | None = None, overrides: dict | None = None, linear_layers: str = "spu", spu_batch: int = 16) -> dict:
    """Dev metrics of `model_dir` on `task_name` under a preset (default: the one its `secformer.json` names,
    else plaintext), in plaintext and, with `spu_examples` > 0, under SPU on that many examples."""
    task, protocol = get_task(task_name), get(protocol)
    if spu_examples < 0 or (max_examples is not None and max_examples < 1) or spu_batch < 1:
        raise ValueError(f"--spu-examples must be >= 0, --max-examples and --spu-batch >= 1, got {spu_examples}, {max_examples} and {spu_batch}")
    metadata = read_metadata(model_dir)
    if metadata.get("task") not in (None, task.name):
        raise ValueError(f"{model_dir} was trained on {metadata['task']}, not {task.name}")
    preset = approx_preset or metadata.get("evaluate_with") or "plaintext"
    approx = resolve_approx(preset, **(overrides or {}))
    spec = RunSpec(str(model_dir), max_length, preset, tuple((overrides or {}).items()), protocol, field, linear_layers) if spu_examples else None
    note = check_gelu_range(metadata, approx, str(model_dir))
    if note:
        print(note, file=sys.stderr)
    checkpoint = load_checkpoint(model_dir)
    if not checkpoint.has_classifier or checkpoint.config.num_labels != task.num_labels:
        raise ValueError(f"{model_dir} has no {task.name} classifier ({task.num_labels} outputs): fine-tune or distil it first")
    if max_length > checkpoint.config.max_position_embeddings:
        raise ValueError(f"--max-length {max_length} exceeds the model's {checkpoint.config.max_position_embeddings} positions")
    examples = read_task(task.name, "dev", glue_dir)
    if max_examples is not None:
        examples = examples.take(range(min(max_examples, len(examples))))
    data = tokenize(checkpoint.tokenizer, examples, max_length)

    start = time.perf_counter()
    logits = plaintext_logits(checkpoint, approx, data)
    preds = predictions(task, logits)
    out = {
        "task": task.name, "model": str(model_dir), "preset": preset, "approx": approx.to_dict(),
        "role": metadata.get("role"), "method": metadata.get("method"), "max_length": max_length,
        "examples": len(data), "truncated_examples": data.truncated, "data": {"split": "dev", "source": examples.source},
        "metrics": compute_metrics(task, preds, examples.labels), "main_metric": task.metrics[0],
        "plaintext_seconds": time.perf_counter() - start, "gelu_inputs": gelu_inputs(checkpoint.config, checkpoint.params, approx, data),
        "training": {k: metadata[k] for k in ("train_examples", "seconds", "evaluate_with", "trained_with") if k in metadata},
        "spu": None,
    }
    if spu_examples > 0:
        index = subset(spu_examples, len(data))
        run = run_spu(checkpoint, approx, data, index, protocol, field, linear_layers, spu_batch)
        spu_preds, plain_preds = predictions(task, run["private"]), predictions(task, run["plaintext"])
        labels = examples.labels[index]
        offline = {"send_bytes": run["offline_bytes"], "what": "the dealer's seeds and corrections, all runs"} if run["offline_bytes"] is not None else None
        record = RunRecord(
            "eval", SIMULATION, spec, run["cost"], privacy(protocol, spec.dealt), offline, setup_json(run["setup"]), batch=run["batch"],
            logits=run["private"], plaintext_logits=run["plaintext"], max_abs_error=float(np.max(np.abs(run["private"] - run["plaintext"]))),
            compile_seconds=sum(run["compile_seconds"].values()), threads=threads.setting(), peak_rss_bytes=peak_rss_bytes(),
            extra={"examples": len(index), "indices": index.tolist(), "metrics": compute_metrics(task, spu_preds, labels),
                   "plaintext_metrics": compute_metrics(task, plain_preds, labels),
                   "agreement": None if task.regression else float(np.mean(spu_preds == plain_preds)),
                   "mean_send_bytes": float(np.mean(run["send_bytes"])), "mean_seconds": float(np.mean(run["seconds"])),
                   "compile_seconds_by_shape": run["compile_seconds"]},
        )
        out["spu"] = record.to_json()
    return out
