"""GLUE tasks from a `glue_data`-style directory (TASK/{train,dev}.tsv) and their metrics.

Files are read tab-separated with no quote handling (some sentences open an unmatched `"`; a quote-aware
reader silently merges rows). Metrics follow GLUE: accuracy (RTE, SST-2), F1 of the positive class and
accuracy (MRPC), Matthews correlation (CoLA), Pearson and Spearman correlation (STS-B).
"""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    name: str
    text_a: str | int  # header name, or column index for files without a header
    text_b: str | int | None
    label: str | int
    header: bool
    labels: tuple[str, ...] | None  # label values as written in the file; None: regression (a float score)
    metrics: tuple[str, ...]  # the first is the task's main metric
    label_names: tuple[str, ...] | None = None  # what a prediction prints as (default: `labels`)

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def id2label(self) -> dict[int, str]:
        return {} if self.labels is None else dict(enumerate(self.label_names or self.labels))

    @property
    def regression(self) -> bool:
        return self.labels is None


TASKS: dict[str, TaskSpec] = {
    "RTE": TaskSpec("RTE", "sentence1", "sentence2", "label", True, ("entailment", "not_entailment"), ("accuracy",)),
    "MRPC": TaskSpec("MRPC", "#1 String", "#2 String", "Quality", True, ("0", "1"), ("f1", "accuracy"), ("not_equivalent", "equivalent")),
    "STS-B": TaskSpec("STS-B", "sentence1", "sentence2", "score", True, None, ("pearson", "spearman")),
    "CoLA": TaskSpec("CoLA", 3, None, 1, False, ("0", "1"), ("matthews",), ("unacceptable", "acceptable")),
    "SST-2": TaskSpec("SST-2", "sentence", None, "label", True, ("0", "1"), ("accuracy",), ("negative", "positive")),
}


@dataclasses.dataclass
class Examples:
    """One split of a task: texts (pairs where the task has two segments) and labels (int ids or float scores)."""

    task: TaskSpec
    text_a: list[str]
    text_b: list[str] | None
    labels: np.ndarray  # int32 [N] or float32 [N]
    source: str = ""  # the file read, and the rows taken from it when a subset: which data a result was computed on

    def __len__(self) -> int:
        return len(self.text_a)

    def take(self, index) -> "Examples":
        index = list(index)
        return Examples(
            self.task, [self.text_a[i] for i in index],
            None if self.text_b is None else [self.text_b[i] for i in index], self.labels[np.asarray(index, int)],
            self.source if index == list(range(len(self))) else f"{self.source} ({len(index)} of its {len(self)} rows)",
        )


def default_glue_dir() -> Path:
    """`$SECFORMER_GLUE_DIR`, else `../shared/data/glue` beside the repository."""
    env = os.environ.get("SECFORMER_GLUE_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data" / "glue"


def recorded_path(path: Path) -> str:
    """How a result names a data file: relative to the repository when beside it (`../shared/...`, the same on
    every machine), else absolute."""
    path, repo = Path(path).resolve(), Path(__file__).resolve().parents[2]
    try:
        return str(Path("..") / path.relative_to(repo.parent))
    except ValueError:
        return str(path)


def get_task(name: str) -> TaskSpec:
    """The task called `name` (case-insensitive; "STSB" and "SST2" accepted)."""
    key = {k.lower().replace("-", ""): k for k in TASKS}.get(name.lower().replace("-", ""))
    if key is None:
        raise ValueError(f"unknown GLUE task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[key]


def read_task(name: str, split: str, glue_dir: str | Path | None = None) -> Examples:
    """Read `split` ("train" or "dev") of task `name`; errors name the file and the row at fault."""
    task = get_task(name)
    if split not in ("train", "dev"):
        raise ValueError(f"unknown split {split!r}; choose train or dev")
    root = Path(glue_dir) if glue_dir is not None else default_glue_dir()
    path = root / task.name / f"{split}.tsv"
    if not path.exists():
        raise FileNotFoundError(
            f"{task.name} {split} data not found at {path}; pass --glue-dir (or set SECFORMER_GLUE_DIR) to a "
            "glue_data-style directory holding TASK/train.tsv and TASK/dev.tsv"
        )
    with path.open(encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if r]
    if task.header:
        header, rows = rows[0], rows[1:]
        missing = [c for c in (task.text_a, task.text_b, task.label) if c is not None and c not in header]
        if missing:
            raise ValueError(f"{path}: header lacks column(s) {', '.join(missing)} (has: {', '.join(header)})")
        col = {c: header.index(c) for c in (task.text_a, task.text_b, task.label) if c is not None}
    else:
        col = {c: c for c in (task.text_a, task.text_b, task.label) if c is not None}
    width = max(col.values()) + 1
    text_a, text_b, labels = [], [] if task.text_b is not None else None, []
    for number, row in enumerate(rows, start=2 if task.header else 1):
        if len(row) < width:
            raise ValueError(f"{path}:{number}: {len(row)} columns, expected at least {width}")
        raw = row[col[task.label]].strip()
        if task.regression:
            try:
                labels.append(float(raw))
            except ValueError:
                raise ValueError(f"{path}:{number}: score {raw!r} is not a number") from None
        elif raw not in task.labels:
            raise ValueError(f"{path}:{number}: label {raw!r} is not one of {', '.join(task.labels)}")
        else:
            labels.append(task.labels.index(raw))
        text_a.append(row[col[task.text_a]])
        if text_b is not None:
            text_b.append(row[col[task.text_b]])
    if not text_a:
        raise ValueError(f"{path} holds no examples")
    dtype = np.float32 if task.regression else np.int32
    return Examples(task, text_a, text_b, np.asarray(labels, dtype), recorded_path(path))


def predictions(task: TaskSpec, logits: np.ndarray) -> np.ndarray:
    """Label ids (argmax) for classification, the score itself for regression."""
    logits = np.asarray(logits)
    return logits[:, 0] if task.regression else logits.argmax(-1)


def matthews(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Matthews correlation of binary labels; 0 when a row or column of the confusion matrix is empty."""
    t, p = np.asarray(y_true) == 1, np.asarray(y_pred) == 1
    tp, tn, fp, fn = (float(np.sum(a & b)) for a, b in ((t, p), (~t, ~p), (~t, p), (t, ~p)))
    den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if den == 0 else (tp * tn - fp * fn) / den


def f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """F1 of the positive class (label 1); 0 when there is no true or predicted positive."""
    t, p = np.asarray(y_true) == 1, np.asarray(y_pred) == 1
    tp = float(np.sum(t & p))
    return 0.0 if tp == 0 else 2 * tp / (float(np.sum(t)) + float(np.sum(p)))


def compute_metrics(task: TaskSpec, preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """GLUE metrics of `preds` (from `predictions`) against `labels`, as fractions (not percent)."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    if preds.shape != labels.shape:
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    if task.regression:
        if len(labels) < 2 or np.std(preds) == 0 or np.std(labels) == 0:
            return {"pearson": 0.0, "spearman": 0.0}  # undefined: a constant prediction has no correlation
        return {"pearson": float(stats.pearsonr(preds, labels)[0]), "spearman": float(stats.spearmanr(preds, labels)[0])}
    out = {"accuracy": float(np.mean(preds == labels))}
    if "f1" in task.metrics:
        out["f1"] = f1(labels, preds)
    if "matthews" in task.metrics:
        out["matthews"] = matthews(labels, preds)
    return out
