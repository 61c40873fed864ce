"""Distillation of an MPC-friendly student from a fine-tuned teacher (MPCFormer's recipe, SPEC.md section 1).

The student has the teacher's architecture and starts from its weights; only its nonlinearities differ.
The students are the presets that change the function computed (`approx.STUDENTS`), each trained with
`PRESETS[name].training()` (every protocol replaced by the function it evaluates) and evaluated with its preset:

- `mpcformer`: Quad GeLU (0.125 x^2 + 0.25 x + 0.5) and 2Quad softmax, exact LayerNorm;
- `secformer`: GeLU kept and 2Quad softmax. It is trained with the exact GeLU and LayerNorm; at inference
  SecFormer's protocols evaluate them (sine-series GeLU within 7.2e-4, Goldschmidt LayerNorm and the
  Goldschmidt 2Quad division within 1e-4 of the ideal functions, see `approx`).

Stage 1 (layer-wise): mean squared error between student and teacher on the embeddings' output, every
layer's hidden state and every layer's attention scores (pre-softmax, only between real tokens), summed.
Stage 2 (prediction layer): soft cross-entropy between the student's and the teacher's logits at
temperature T, or mean squared error for a regression task (STS-B). The teacher runs without dropout.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp

from ..approx import PRESETS, STUDENTS
from ..checkpoint import load_checkpoint, read_metadata
from ..model import BertForSequenceClassification
from .finetune import STATE_DIR, apply_model, prepare_out, save_run, training_data
from .loop import Hyper, fit
from .tasks import get_task



def _masked_mse(student, teacher, mask):
    """Mean of (student - teacher)^2 over the entries where `mask` (broadcastable) is 1."""
    mask = jnp.broadcast_to(mask, student.shape)
    return jnp.sum(jnp.square(student - teacher) * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def layer_loss(student_out: dict, teacher_out: dict, attention_mask, weights):
    """Stage 1: sum over layers of the MSE of hidden states (embeddings included) and attention scores."""
    token = attention_mask.astype(jnp.float32) * weights[:, None]  # [B, L]
    loss = 0.0
    for s, t in zip(student_out["hidden_states"], teacher_out["hidden_states"]):
        loss += _masked_mse(s, t, token[:, :, None])
    pair = token[:, None, :, None] * token[:, None, None, :]  # [B, 1, Lq, Lk]
    for s, t in zip(student_out["attention_scores"], teacher_out["attention_scores"]):
        loss += _masked_mse(s, t, pair)
    return loss


def prediction_loss(student_logits, teacher_logits, weights, regression: bool, temperature: float):
    """Stage 2: soft cross-entropy at `temperature` (MSE when `regression`), weighted mean over rows."""
    if regression:
        per_row = jnp.square(student_logits[:, 0] - teacher_logits[:, 0])
    else:
        target = jax.nn.softmax(teacher_logits / temperature, axis=-1)
        per_row = -jnp.sum(target * jax.nn.log_softmax(student_logits / temperature, axis=-1), axis=-1)
    return jnp.sum(per_row * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def distill(task_name: str, teacher_dir: str | Path, student: str, out: str | Path, stage1: Hyper = Hyper(1, 5e-5),
            stage2: Hyper = Hyper(1, 1e-5), temperature: float = 1.0, max_length: int = 128, max_train: int | None = None,
            glue_dir=None, restart: bool = False) -> dict:
    """Distil `student` ("mpcformer" or "secformer") from the teacher at `teacher_dir` on `task_name`; save it
    to `out` and return its metadata (both stages' histories). Each stage resumes on its own."""
    if student not in STUDENTS:
        raise ValueError(f"unknown student {student!r}; choose one of: {', '.join(STUDENTS)}")
    approx, evaluate_with = PRESETS[student].training(), student  # trained with, evaluated with (SPU and plaintext)
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    task, out = get_task(task_name), Path(out)
    trained = read_metadata(teacher_dir).get("task")
    if trained is not None and trained != task.name:
        raise ValueError(f"the teacher at {teacher_dir} was fine-tuned on {trained}, not {task.name}")
    prepare_out(out, restart)
    teacher = load_checkpoint(teacher_dir)
    if not teacher.has_classifier:
        raise ValueError(f"{teacher_dir} has no classifier: fine-tune a teacher first (secformer finetune)")
    if teacher.config.num_labels != task.num_labels:
        raise ValueError(f"the teacher has {teacher.config.num_labels} outputs, {task.name} needs {task.num_labels}")
    data = training_data(teacher, task, max_length, max_train, glue_dir, stage1.seed)
    teacher_model = BertForSequenceClassification(teacher.config, PRESETS["plaintext"])
    student_model = BertForSequenceClassification(teacher.config, approx)

    def both(params, teacher_params, batch, rng):
        s = apply_model(student_model, params, batch, rng)
        t = jax.lax.stop_gradient(apply_model(teacher_model, teacher_params, batch, None))
        return s, t

    def stage1_loss(params, teacher_params, batch, rng):
        s, t = both(params, teacher_params, batch, rng)
        return layer_loss(s, t, batch["attention_mask"], batch["weights"])

    def stage2_loss(params, teacher_params, batch, rng):
        s, t = both(params, teacher_params, batch, rng)
        return prediction_loss(s["logits"], t["logits"], batch["weights"], task.regression, temperature)

    start = time.perf_counter()
    params, history1 = fit(stage1_loss, teacher.params, teacher.params, data, stage1, out / STATE_DIR / "stage1", f"distill {task.name} {student} stage 1")
    params, history2 = fit(stage2_loss, params, teacher.params, data, stage2, out / STATE_DIR / "stage2", f"distill {task.name} {student} stage 2")
    metadata = {
        "task": task.name, "role": "student", "method": student, "teacher": str(teacher_dir),
        "trained_with": approx.to_dict(), "evaluate_with": evaluate_with, "temperature": temperature,
        "train_examples": len(data), "truncated_examples": data.truncated,
        "history": {"stage1": history1, "stage2": history2}, "seconds": history1["seconds"] + history2["seconds"],
        "wall_seconds_this_call": time.perf_counter() - start,
    }
    return save_run(out, teacher, params, task, metadata, approx, data)

