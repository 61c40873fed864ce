"""Benchmark results: JSON files in a results folder -> one Markdown report and PNG plots.

Every `secformer bench` run writes `NAME.json` = {"meta": {...}, "records": [...]} into its folder and
re-renders `REPORT.md` and the plots from all JSON files there, so several runs (per protocol, per model)
make one report. Ratios vs PUMA are taken only between records of the same JSON file (the same run).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .model import CATEGORIES  # noqa: E402

MB = 1e6


def save(out_dir: Path, name: str, meta: dict, records: list[dict]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    render(out_dir)
    return path


def load(out_dir: Path) -> list[tuple[str, dict, list[dict]]]:
    runs = []
    for path in sorted(out_dir.glob("*.json")):
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "records" not in data or "meta" not in data:
            raise ValueError(f"{path} is not a benchmark result (needs 'meta' and 'records')")
        runs.append((path.stem, data["meta"], data["records"]))
    return runs


def _fmt_s(x):
    return f"{x:.2e}" if abs(x) < 0.01 else f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _totals(r: dict) -> dict:
    """A record's end-to-end figures; records from before compute was measured (no `network_lan_seconds`)
    have network-only `lan_seconds`/`wan_seconds`, and no compute."""
    new = "network_lan_seconds" in r
    offline = (r["offline"]["send_bytes"] if r.get("offline") else 0) + (r.get("beaver_bytes") or 0)
    return {
        "compute": max(r["compute_seconds"]) if new and r.get("compute_seconds") else None,
        "total_bytes": r.get("total_bytes", r["send_bytes"] + offline),
        "lan": r["lan_seconds"] if new else None,
        "network_lan": r["network_lan_seconds"] if new else r["lan_seconds"],
        "wan": r["wan_seconds"] if new else None,
        "network_wan": r["network_wan_seconds"] if new else r["wan_seconds"],
    }


def _opt(x, fmt=_fmt_s) -> str:
    return "-" if x is None else fmt(x)


def _ratio(ref, r, key) -> str:
    return f"{ref[key] / r[key]:.2f}x" if ref and ref.get(key) and r.get(key) else "-"


def model_table(records: list[dict]) -> list[str]:
    """One row per record: end-to-end figures first (compute = the busiest party's CPU seconds; LAN/WAN s =
    max over parties of compute + modelled network; total = online + dealt bytes + SEMI2K's triples), then the network-only
    figures; ratios vs PUMA of the same run."""
    lines = [
        "| model | protocol | method | layers (measured) | wall s | compute s | online MB | offline MB | triples MB | total MB | LAN s | WAN s | "
        "network-only LAN s | network-only WAN s | send actions | LAN vs PUMA | total bytes vs PUMA | online bytes vs PUMA | max abs err | setup MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    puma = {(r["model"], r["protocol"]): r for r in records if r["method"] == "puma"}
    for r in records:
        if r["method"] == "plaintext":
            lines.append(f"| {r['model']} | jax-cpu | plaintext (jit) | {r['layers']} | {_fmt_s(r['seconds'])} |" + " - |" * 15)
            continue
        t, ref = _totals(r), puma.get((r["model"], r["protocol"]))
        tref = _totals(ref) if ref else None
        method = r["method"] + (", fixed-mask linear" if r.get("linear") == "fixed-mask" else "")
        offline = r["offline"]["send_bytes"] / MB if r.get("offline") else 0
        setup = f"{r['setup']['send_bytes'] / MB:,.0f}" if r.get("setup") else "-"
        lines.append(
            f"| {r['model']} | {r['protocol']} | {method} | {r['layers']} ({r['measured_layers']}) | {_fmt_s(r['seconds'])} | "
            f"{_opt(t['compute'])} | {r['send_bytes'] / MB:,.0f} | {offline:,.0f} | {_triples(r)} | {t['total_bytes'] / MB:,.0f} | {_opt(t['lan'])} | {_opt(t['wan'])} | "
            f"{_fmt_s(t['network_lan'])} | {_fmt_s(t['network_wan'])} | {r['send_actions']:,} | {_ratio(tref, t, 'lan')} | "
            f"{_ratio(tref, t, 'total_bytes')} | {_ratio(ref, r, 'send_bytes')} | {r['max_abs_error']:.2e} | {setup} |"
        )
    return lines


def _triples(record: dict) -> str:
    """MB a third-party dealer would send for SPU's own SEMI2K products (`beaver.py`), or - (other protocols,
    or a record from before they were counted)."""
    beaver = record.get("beaver_bytes")
    return "-" if beaver is None else f"{beaver / MB:,.1f}"


def _offline(record: dict) -> str:
    """MB of dealt randomness (the offline phase, not in the online columns), or - when none; with fixed-mask
    linear layers also the once-per-model setup."""
    offline, setup = record.get("offline"), record.get("setup")
    text = f"{offline['send_bytes'] / MB:,.1f}" if offline else "-"
    return text + (f" (+ {setup['send_bytes'] / MB:,.0f} once per model)" if setup else "")


def category_table(records: list[dict]) -> list[str]:
    lines = [
        "| model | protocol | method | " + " | ".join(f"{c} MB" for c in CATEGORIES) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in CATEGORIES) + " |",
    ]
    for r in records:
        if "by_category" in r:
            cells = " | ".join(f"{r['by_category'][c]['send_bytes'] / MB:,.0f}" for c in CATEGORIES)
            lines.append(f"| {r['model']} | {r['protocol']} | {r['method']} | {cells} |")
    return lines


def op_table(records: list[dict]) -> list[str]:
    lines = [
        "| op | shape | protocol | method | wall s | compute s | online MB | total MB | send actions | LAN ms | network-only LAN ms | WAN s | max err | offline MB | triples MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    ms = lambda x: f"{x * 1e3:,.1f}"
    for r in records:
        t = _totals(r)
        lines.append(
            f"| {r['op']} | {'x'.join(map(str, r['shape']))} | {r['protocol']} | {r['method']} | {_fmt_s(r['seconds'])} | {_opt(t['compute'])} | "
            f"{r['send_bytes'] / MB:,.2f} | {t['total_bytes'] / MB:,.2f} | {r['send_actions']:,} | {_opt(t['lan'], ms)} | {ms(t['network_lan'])} | "
            f"{_fmt_s(t['wan'] if t['wan'] is not None else t['network_wan'])} | {r['max_abs_error']:.1e} ({r['error_kind'][:3]}) | {_offline(r)} | {_triples(r)} |"
        )
    return lines


def extrapolation_check(runs) -> list[str]:
    """Extrapolated records next to full runs of the same model, method, protocol and shape (any runs)."""
    key = lambda r: (r["model"], r["method"], r["protocol"], r["seq_len"], r["batch"])
    models = [r for _, _, records in runs for r in records if r["kind"] == "model" and r["method"] != "plaintext"]
    full = {key(r): r for r in models if not r["extrapolated"]}
    lines = []
    for r in models:
        if r["extrapolated"] and key(r) in full:
            f = full[key(r)]
            lines.append(
                f"| {r['model']} | {r['protocol']} | {r['method']} | {r['measured_layers']} -> {r['layers']} | "
                f"{r['send_bytes'] / MB:,.1f} | {f['send_bytes'] / MB:,.1f} | {100 * (r['send_bytes'] / f['send_bytes'] - 1):+.3f}% | "
                f"{r['send_actions']:,} | {f['send_actions']:,} | {_fmt_s(r['seconds'])} | {_fmt_s(f['seconds'])} |"
            )
    if not lines:
        return []
    return [
        "## Extrapolation check", "",
        "| model | protocol | method | layers | MB extrapolated | MB full run | difference | actions extrapolated | actions full | s extrapolated | s full |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ] + lines + [""]


def _plot_models(records, path):
    spu = [r for r in records if "by_category" in r]
    groups = sorted({(r["model"], r["protocol"]) for r in spu})
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 4), squeeze=False)
    for ax, (model, protocol) in zip(axes[0], groups):
        rows = [r for r in spu if (r["model"], r["protocol"]) == (model, protocol)]
        bottom = [0.0] * len(rows)
        for cat in CATEGORIES:
            vals = [max(r["by_category"][cat]["send_bytes"], 0) / 1e9 for r in rows]
            ax.bar([r["method"] for r in rows], vals, bottom=bottom, label=cat)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_title(f"{model}, {protocol}")
        ax.set_ylabel("GB sent (all parties)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stage_table(records: list[dict]) -> list[str]:
    """Per stage of the records run as one program per stage (`--layer-programs`): seconds, MB sent, the
    busiest party's compute and the process's peak resident memory during the stage."""
    lines = ["| model | protocol | method | stage | wall s | compute s | MB sent | peak GB |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        for st in r.get("stages", []):
            lines.append(f"| {r['model']} | {r['protocol']} | {r['method']} | {st['stage']} | {_fmt_s(st['seconds'])} | "
                         f"{_fmt_s(max(st['compute_seconds']))} | {st['send_bytes'] / MB:,.1f} | {_fmt_gb(st['peak_rss_bytes'])} |")
    return lines


def _fmt_gb(value: int | None) -> str:
    """Bytes as GB; "-" where not measured (a cluster's parties run in other processes)."""
    return "-" if value is None else f"{value / 1e9:.2f}"


def _plot_stages(records, path):
    """Peak resident memory and wall seconds per stage, one line per (method, protocol)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for r in records:
        names = [st["stage"].replace("layer ", "L") for st in r["stages"]]
        label = f"{r['method']}/{r['protocol']}"
        axes[0].plot(names, [st["peak_rss_bytes"] / 1e9 if st["peak_rss_bytes"] else float("nan") for st in r["stages"]], marker="o", label=label)
        axes[1].plot(names, [st["seconds"] for st in r["stages"]], marker="o", label=label)
    axes[0].set_ylabel("peak resident GB during the stage")
    axes[1].set_ylabel("wall s")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_ops(records, path, x_key="send_bytes", ylabel="MB sent (all parties)"):
    ops = sorted({r["op"] for r in records})
    fig, axes = plt.subplots(1, len(ops), figsize=(3.6 * len(ops), 3.6), squeeze=False)
    for ax, op in zip(axes[0], ops):
        rows = [r for r in records if r["op"] == op]
        for (method, protocol) in sorted({(r["method"], r["protocol"]) for r in rows}):
            pts = sorted((r["elements"], r[x_key] / MB) for r in rows if (r["method"], r["protocol"]) == (method, protocol))
            ax.loglog(*zip(*pts), marker="o", label=f"{method}/{protocol}")
        ax.set_title(op)
        ax.set_xlabel("elements")
        ax.set_ylabel(ylabel)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def thread_note(meta: dict) -> str:
    """The run's SPU thread counts in one line: each party process's where they ran apart, else this process's."""
    def one(t: dict) -> str:
        if t.get("plan") == "spu":
            return f"SPU's own counts (SECFORMER_THREADS=spu; OpenMP limit in effect: {t.get('omp_thread_limit_in_effect')}) on {t['cores']} cores"
        values = ", ".join(f"{k}={t[k]}" for k in ("OMP_THREAD_LIMIT", "OMP_NUM_THREADS", "YACL_NUM_THREADS"))
        mine = f" (set by the user: {', '.join(t['set_by_user'])})" if t.get("set_by_user") else ""
        return f"{values} on {t['cores']} cores{mine}"
    if meta.get("party_threads"):
        return "; ".join(f"{role}: {one(t)}" for role, t in meta["party_threads"].items())
    if meta.get("threads"):
        return one(meta["threads"])
    return "not recorded (SPU's defaults: 2 OpenMP threads per product and a pool of all cores, per party)"


def render(out_dir: Path) -> Path:
    """Rewrite REPORT.md (and the PNG plots) from every JSON result in `out_dir`."""
    lines = ["# Benchmark results", "", "Generated by `secformer bench` from the JSON files in this folder; each section is one run.", ""]
    runs = load(out_dir)
    lines += extrapolation_check(runs)
    for name, meta, records in runs:
        lines += [f"## {name}", "", f"- command: `{meta['command']}`", f"- date: {meta['date']}", f"- machine: {meta['machine']}",
                  f"- commit: {meta['commit']}, SPU {meta['spu']}", f"- threads: {thread_note(meta)}",
                  f"- networks (modelled): {'; '.join(meta['networks'])}", f"- {meta['cost_note']}", ""]
        models = [r for r in records if r["kind"] == "model"]
        ops = [r for r in records if r["kind"] == "op"]
        if models:
            lines += model_table(models) + [""]
        if any("by_category" in r for r in models):
            lines += ["Per category (MB sent, all parties):", ""] + category_table(models) + [""]
            _plot_models(models, out_dir / f"{name}.png")
            lines += [f"![{name}]({name}.png)", ""]
        staged = [r for r in models if r.get("stages")]
        if staged:
            lines += ["Per stage (one SPU program each):", ""] + stage_table(staged) + [""]
            _plot_stages(staged, out_dir / f"{name}-stages.png")
            lines += [f"![{name} stages]({name}-stages.png)", ""]
        if ops:
            lines += op_table(ops) + [""]
            if len({r["elements"] for r in ops}) > 1:
                _plot_ops(ops, out_dir / f"{name}.png")
                lines += [f"![{name}]({name}.png)", ""]
    path = out_dir / "REPORT.md"
    path.write_text("\n".join(lines))
    return path
