"""The accuracy table: `secformer eval --json` files -> Markdown (results/ACCURACY.md) and a bar chart.

Rows are methods, recognised from each file's checkpoint role and preset: the fine-tuned teacher in
plaintext ("Teacher"), the same teacher under PUMA's approximations ("PUMA": no retraining), and the
distilled students under their own presets ("MPCFormer", "SecFormer"). Cells show the task's GLUE metric
in percent (MRPC: F1 / accuracy; STS-B: Pearson / Spearman), from the whole dev split in plaintext.
"""

from __future__ import annotations

import json
from pathlib import Path

from .tasks import TASKS

METHODS = ("Teacher", "PUMA", "MPCFormer", "SecFormer")


def method_of(run: dict) -> str | None:
    role, preset = run.get("role"), run.get("preset")
    if role == "teacher":
        return {"plaintext": "Teacher", "puma": "PUMA"}.get(preset)
    if role == "student" and preset == run.get("method"):
        return {"mpcformer": "MPCFormer", "secformer": "SecFormer"}.get(preset)
    return None


def load_runs(folder: Path) -> dict[tuple[str, str], dict]:
    """(method, task) -> eval result, from the JSON files directly in `folder`; other files are ignored."""
    runs = {}
    for path in sorted(Path(folder).glob("*.json")):
        run = json.loads(path.read_text())
        method = method_of(run) if "metrics" in run else None
        if method is not None:
            runs[(method, run["task"])] = run | {"file": path.name}
    if not runs:
        raise FileNotFoundError(f"no `secformer eval --json` results in {folder}")
    return runs


def load_candidates(folder: Path) -> list[dict]:
    """Teacher candidates: eval JSONs in `folder/sweep` (training JSONs in `folder/train/sweep`), each marked
    `chosen` when its task's teacher file (`folder/TASK-teacher.json`, a link) is that file."""
    rows = []
    for path in sorted((Path(folder) / "sweep").glob("*.json")):
        run = json.loads(path.read_text())
        train = Path(folder) / "train" / "sweep" / path.name
        chosen = (Path(folder) / f"{run['task']}-teacher.json").resolve() == path.resolve()
        rows.append(run | {"file": path.name, "chosen": chosen, "train": json.loads(train.read_text()) if train.exists() else None})
    return rows


def cell(run: dict | None, which: str = "metrics") -> str:
    if run is None or run.get(which) is None:
        return "-"
    m = run[which] if which == "metrics" else run[which]["metrics"]
    task = TASKS[run["task"]]
    return " / ".join(f"{100 * m[k]:.1f}" for k in (task.metrics if len(task.metrics) > 1 else task.metrics[:1]))


def _main(run: dict | None) -> float | None:
    return None if run is None else 100 * run["metrics"][TASKS[run["task"]].metrics[0]]


def render(runs: dict, candidates: list[dict] = ()) -> str:
    tasks = [t for t in TASKS if any((m, t) in runs for m in METHODS)]
    heads = [f"{t} ({'/'.join(TASKS[t].metrics)})" for t in tasks]
    lines = ["| method | " + " | ".join(heads) + " | mean of main metrics |", "|---" * (len(tasks) + 2) + "|"]
    for m in METHODS:
        scores = [_main(runs.get((m, t))) for t in tasks]
        mean = f"{sum(scores) / len(scores):.1f}" if all(s is not None for s in scores) else "-"
        lines.append(f"| {m} | " + " | ".join(cell(runs.get((m, t))) for t in tasks) + f" | {mean} |")
    gaps = []
    for name, a, b in (("SecFormer - Teacher", "SecFormer", "Teacher"), ("SecFormer - MPCFormer", "SecFormer", "MPCFormer")):
        diffs = [None if None in (_main(runs.get((a, t))), _main(runs.get((b, t)))) else _main(runs[(a, t)]) - _main(runs[(b, t)]) for t in tasks]
        gaps.append(f"| {name}, points | " + " | ".join("-" if d is None else f"{d:+.1f}" for d in diffs) + " | |")
    out = ["## Plaintext, whole dev split, each method's approximations", "", *lines, *gaps, "",
           "The gap rows compare the main metric (the first one named in the column head).", ""]

    out += ["## Under SPU (ABY3 simulation) on an evenly spaced dev subset", "",
            "Metric under SPU, the plaintext metric on the same examples, label agreement (STS-B: the largest "
            "score difference instead), the largest logit difference.", "",
            "Examples of one padded length run together, at most `per run` of them in one program; bytes and seconds "
            "per example are a run's divided by its examples.", "",
            "| method | task | examples | SPU | plaintext, same examples | agreement | max abs logit error | MiB sent / example | s / example | per run |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for m in METHODS:
        for t in tasks:
            run = runs.get((m, t))
            spu = run and run.get("spu")
            if not spu:
                continue
            agree = "-" if spu["agreement"] is None else f"{spu['agreement']:.0%}"
            plain = cell({"task": t, "metrics": spu["plaintext_metrics"]})
            error = spu["max_abs_error"] if "max_abs_error" in spu else spu["max_abs_logit_error"]  # before run.RunRecord: its own name
            out.append(f"| {m} | {t} | {spu['examples']} | {cell(run, 'spu')} | {plain} | {agree} | "
                       f"{error:.1e} | {spu['mean_send_bytes'] / 2**20:.0f} | {spu['mean_seconds']:.1f} | {spu.get('batch', 1)} |")
    out += ["", "## Training (durations measured on this machine)", "",
            "Loss before -> after: the stage's loss without dropout on its first 256 training examples; per epoch: the "
            "mean training loss (with dropout) of each epoch, stage by stage.", "",
            "| task | method | training examples | steps | seconds | loss before -> after | per epoch |", "|---|---|---|---|---|---|---|"]
    for t in tasks:
        for m in ("Teacher", "MPCFormer", "SecFormer"):
            run = runs.get((m, t))
            train = run and run.get("train")
            if not train:
                continue
            hist = train["history"]
            stages = [hist] if m == "Teacher" else [hist["stage1"], hist["stage2"]]
            steps = " + ".join(str(h["steps"]) for h in stages)
            losses = "; ".join(f"{h['initial_loss']:.3f} -> {h['final_loss']:.3f}" for h in stages)
            epochs = "; ".join(", ".join(f"{x:.3f}" for x in h.get("epoch_loss", []) if x is not None) for h in stages)
            out.append(f"| {t} | {m} | {train['train_examples']} | {steps} | {train['seconds']:.0f} | {losses} | {epochs} |")
    if candidates:
        out += ["", "## Teacher candidates", "",
                "Where a task's teacher was chosen among several runs: the best main metric on the dev split is kept "
                "(the task's teacher files link to it).", "",
                "| task | run | base model | epochs, learning rate | dev | kept |", "|---|---|---|---|---|---|"]
        for run in candidates:
            train = run["train"] or {}
            settings = train.get("history", {}).get("settings", {})
            hyper = f"{settings['epochs']:g}, {settings['lr']:g}" if settings else "-"
            out.append(f"| {run['task']} | {run['file']} | {train.get('base_model', '-')} | {hyper} | {cell(run)} | "
                       f"{'yes' if run['chosen'] else 'no'} |")
    commits = sorted({run.get("commit", "not recorded") for run in [*runs.values(), *candidates]})
    out += ["", "## Commands", "", f"Code: commit {', '.join(commits)}; machine: "
            f"{next((r['machine'] for r in runs.values() if 'machine' in r), 'not recorded')}.", "", "```"]
    for t in tasks:  # per task: training (teacher, students), then the evaluations
        found = [runs.get((m, t)) or {} for m in METHODS]
        tried = [r for r in candidates if r["task"] == t]
        commands = [c for r in tried for c in ((r["train"] or {}).get("command"), r.get("command"))]
        commands += [(r.get("train") or {}).get("command") for r in found] + [r.get("command") for r in found]
        out += [c for c in dict.fromkeys(commands) if c]
    out += ["```", ""]
    return "\n".join(out)


def draw(runs: dict, ax) -> None:
    """Grouped bars: each task's main metric per method, on a matplotlib axis."""
    import numpy as np

    tasks = [t for t in TASKS if any((m, t) in runs for m in METHODS)]
    width = 0.8 / len(METHODS)
    for i, m in enumerate(METHODS):
        values = [_main(runs.get((m, t))) or 0.0 for t in tasks]
        ax.bar(np.arange(len(tasks)) + i * width, values, width, label=m)
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, [f"{t}\n({TASKS[t].metrics[0]})" for t in tasks])
    ax.set_ylabel("dev metric, %")
    ax.set_title("GLUE dev, plaintext with each method's approximations")
    ax.legend(ncol=4, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2))


def plot(runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    draw(runs, ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_accuracy_report(folder: Path, out: Path) -> dict:
    """Render the runs in `folder` (eval JSONs; training JSONs in `folder/train`) to `out` and a PNG beside it."""
    runs = load_runs(folder)
    for (method, task), run in runs.items():
        name = {"Teacher": "teacher", "MPCFormer": "mpcformer", "SecFormer": "secformer"}.get(method)
        train = Path(folder) / "train" / f"{task}-{name}.json"
        if name and train.exists():
            run["train"] = json.loads(train.read_text())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    header = ("# GLUE accuracy: teacher, PUMA, MPCFormer, SecFormer\n\nGenerated by `secformer accuracy-report` from "
              f"`{folder}`; the runs were made by `scripts/accuracy.sh` (commands below). ![accuracy]({png.name})\n\n")
    out.write_text(header + render(runs, load_candidates(folder)))
    plot(runs, png)
    return {"markdown": str(out), "plot": str(png), "runs": len(runs)}
