"""One resumable training loop for fine-tuning and both distillation stages.

`fit` runs AdamW (weight decay 0.01, gradient clipping at 1.0) with a linear warm-up over the first 10% of
steps and a linear decay to 0, over the length-bucketed batches of `batches.train_batches`. Every
`save_every` steps, at the end, and when interrupted (Ctrl-C or an error) it writes the parameters, optimiser state and step to `state_dir`; a
later call with the same settings resumes from there (the batch order is a function of the seed and the
epoch, so a resumed run sees the batches the interrupted one would have). Settings that differ from the
saved ones are an error rather than a silent mix of two runs.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization
from tqdm.auto import tqdm

from .batches import Batch, Tokenized, eval_batches, make_batch, train_batches

# loss_fn(params, aux, batch: dict of arrays, rng or None) -> mean loss over the batch's weighted rows.
# `aux` is passed through untouched (the teacher's parameters when distilling); rng None = no dropout.
LossFn = Callable[[Any, Any, dict, Any], jax.Array]


@dataclasses.dataclass(frozen=True)
class Hyper:
    epochs: float
    lr: float
    batch_size: int = 32
    seed: int = 0
    warmup: float = 0.1
    weight_decay: float = 0.01
    clip: float = 1.0

    def check(self) -> None:
        if self.epochs <= 0 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError(f"epochs, learning rate and batch size must be positive, got {self}")


def batch_arrays(batch: Batch) -> dict:
    return {k: getattr(batch, k) for k in ("input_ids", "attention_mask", "token_type_ids", "labels", "weights")}


def mean_loss(loss_fn: LossFn, params, aux, data: Tokenized, batch_size: int, limit: int = 256) -> float:
    """The loss without dropout over (at most) the first `limit` examples, weighted by rows: a fixed yardstick
    to compare parameters before and after training."""
    fn = jax.jit(lambda p, a, b: loss_fn(p, a, b, None))
    total, count = 0.0, 0.0
    for batch in eval_batches(data, batch_size):
        keep = batch.index < limit
        if not keep.any():
            continue
        batch.weights = batch.weights * keep
        n = float(batch.weights.sum())
        total += float(fn(params, aux, batch_arrays(batch))) * n
        count += n
    return total / count


def fit(loss_fn: LossFn, params, aux, data: Tokenized, hyper: Hyper, state_dir: Path, desc: str, save_every: int = 200) -> tuple[Any, dict]:
    """Train `params` on `data` under `hyper`; returns (params, history). History: settings, steps, seconds,
    `initial_loss`/`final_loss` (`mean_loss`), mean training loss per epoch, `resumed_from` (a step or None)."""
    hyper.check()
    state_dir = Path(state_dir)
    per_epoch = len(train_batches(data, hyper.batch_size, hyper.seed, 0))
    total = max(1, int(round(hyper.epochs * per_epoch)))
    warmup = int(hyper.warmup * total)
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, hyper.lr, max(warmup, 1)), optax.linear_schedule(hyper.lr, 0.0, total - warmup)], [warmup]
    )
    opt = optax.chain(optax.clip_by_global_norm(hyper.clip), optax.adamw(schedule, weight_decay=hyper.weight_decay))
    settings = dataclasses.asdict(hyper) | {"examples": len(data), "max_length": data.max_length, "steps": total}

    params = jax.tree_util.tree_map(jnp.asarray, params)
    opt_state, step, history = opt.init(params), 0, None
    progress_file, state_file = state_dir / "progress.json", state_dir / "state.msgpack"
    if progress_file.exists() and state_file.exists():
        saved = json.loads(progress_file.read_text())
        if saved["settings"] != settings:
            changed = {k: (saved["settings"].get(k), v) for k, v in settings.items() if saved["settings"].get(k) != v}
            raise ValueError(
                f"{state_dir} holds an interrupted run with other settings ({changed}: saved, now); "
                "rerun with the saved settings to resume, or pass --restart to discard it"
            )
        restored = serialization.from_bytes({"params": params, "opt_state": opt_state}, state_file.read_bytes())
        params, opt_state, step, history = restored["params"], restored["opt_state"], saved["step"], saved["history"]
        history["resumed_from"] = step
    if history is None:
        tqdm.write(f"{desc}: the initial loss on up to 256 examples (compiles the loss first)")
        history = {"settings": settings, "initial_loss": mean_loss(loss_fn, params, aux, data, hyper.batch_size),
                   "epoch_loss": [], "seconds": 0.0, "resumed_from": None}

    @jax.jit
    def train_step(params, opt_state, aux, batch, rng):
        loss, grads = jax.value_and_grad(loss_fn)(params, aux, batch, rng)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def save():
        state_dir.mkdir(parents=True, exist_ok=True)
        state_file.write_bytes(serialization.to_bytes({"params": params, "opt_state": opt_state}))
        progress_file.write_text(json.dumps({"settings": settings, "step": step, "history": history}))

    key = jax.random.PRNGKey(hyper.seed)
    start, epoch_losses = time.perf_counter(), []
    bar = None  # opened after the first step, whose compilation would distort its time estimate
    try:
        while step < total:
            epoch, offset = divmod(step, per_epoch)
            for index in train_batches(data, hyper.batch_size, hyper.seed, epoch)[offset:]:
                if step >= total:
                    break
                batch = batch_arrays(make_batch(data, index, hyper.batch_size))
                params, opt_state, loss = train_step(params, opt_state, aux, batch, jax.random.fold_in(key, step))
                step += 1
                epoch_losses.append(float(loss))
                if bar is None:
                    tqdm.write(f"{desc}: compiled and ran the first step in {time.perf_counter() - start:.1f} s")
                    bar = tqdm(total=total, initial=step, desc=desc, unit="step", dynamic_ncols=True)
                else:
                    bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{np.mean(epoch_losses[-50:]):.4f}")
                if step % save_every == 0 and step < total:
                    history["seconds"] += time.perf_counter() - start
                    start = time.perf_counter()
                    save()
            history["epoch_loss"].append(float(np.mean(epoch_losses)) if epoch_losses else None)
            epoch_losses = []
    except BaseException:  # Ctrl-C or a failure: keep what was done, a rerun resumes from here
        if step > 0:
            history["seconds"] += time.perf_counter() - start
            save()
        raise
    finally:
        if bar is not None:
            bar.close()
    history["seconds"] += time.perf_counter() - start
    if "final_loss" not in history:
        history["final_loss"] = mean_loss(loss_fn, params, aux, data, hyper.batch_size)
        history["steps"] = total
        save()  # a finished stage resumes as finished (distillation's stage 2 may be interrupted later)
    return jax.tree_util.tree_map(np.asarray, params), history


def discard_state(state_dir: Path) -> None:
    """Remove a finished (or abandoned) run's resumable state."""
    shutil.rmtree(state_dir, ignore_errors=True)
