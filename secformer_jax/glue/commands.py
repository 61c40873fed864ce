"""`secformer finetune | distill | eval | accuracy-report`: the GLUE accuracy pipeline on the command line."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
from pathlib import Path

from ..approx import STUDENTS
from ..run import add_spec_options, overrides
from .tasks import TASKS

COMMANDS = ("finetune", "distill", "eval", "accuracy-report")


def _common(p: argparse.ArgumentParser, max_length: int = 128) -> None:
    p.add_argument("--task", required=True, help=f"GLUE task: {', '.join(TASKS)}")
    p.add_argument("--glue-dir", type=Path, help="glue_data-style directory (default: ../shared/data/glue or $SECFORMER_GLUE_DIR)")
    p.add_argument("--max-length", type=int, default=max_length, help="tokens per example (longer pairs are cut longest-first)")
    p.add_argument("--json", type=Path, help="write the result as JSON here")


def _training(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write (resumes an interrupted run there)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-train", type=int, help="train on a seeded random subset of this many examples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--restart", action="store_true", help="discard an interrupted run's state in --out")


def add_glue_commands(sub) -> None:
    ft = sub.add_parser("finetune", help="fine-tune a teacher on a GLUE task (plaintext, Flax + optax)")
    _common(ft)
    _training(ft)
    ft.add_argument("--model", type=Path, help="Hugging Face BERT checkpoint directory (default: embedded MiniLM)")
    ft.add_argument("--epochs", type=float, default=3.0)
    ft.add_argument("--lr", type=float, default=2e-5)

    ds = sub.add_parser("distill", help="distil an MPCFormer or SecFormer student from a fine-tuned teacher")
    _common(ds)
    _training(ds)
    ds.add_argument("--teacher", type=Path, required=True, help="the teacher's checkpoint directory (secformer finetune)")
    ds.add_argument("--student", required=True, choices=list(STUDENTS))
    ds.add_argument("--stage1-epochs", type=float, default=1.0, help="layer-wise distillation epochs")
    ds.add_argument("--stage1-lr", type=float, default=5e-5)
    ds.add_argument("--stage2-epochs", type=float, default=1.0, help="prediction-layer distillation epochs")
    ds.add_argument("--stage2-lr", type=float, default=1e-5)
    ds.add_argument("--temperature", type=float, default=1.0)

    ev = sub.add_parser("eval", help="GLUE dev metrics in plaintext with the approximations, and under SPU on a subset")
    _common(ev)
    ev.add_argument("--model", type=Path, required=True, help="a fine-tuned or distilled checkpoint directory")
    ev.add_argument("--spu-examples", type=int, default=0, help="also run this many evenly spaced dev examples under SPU")
    ev.add_argument("--spu-batch", type=int, default=16, help="SPU examples of one padded length per program run (time and bytes per example: the run's shared; "
                    "MiniLM under ABY3 simulation: 16 x 128 tokens needs over 24 GiB, 8 x 128 fits)")
    add_spec_options(ev, model=None, max_length=None, approx=None, approx_help="approximation preset (default: the one the checkpoint names)")
    ev.add_argument("--max-examples", type=int, help="evaluate only the first N dev examples")

    rp = sub.add_parser("accuracy-report", help="render the accuracy table from `secformer eval --json` files")
    rp.add_argument("--runs", type=Path, required=True, help="folder of eval JSON files")
    rp.add_argument("--out", type=Path, required=True, help="Markdown file to write (a PNG is written beside it)")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_glue(args, argv: list[str]) -> dict:
    """Run one of COMMANDS (parsed from `argv`); returns what it prints (and writes with --json), with the
    command line that made it."""
    from .loop import Hyper

    if args.command == "accuracy-report":
        from .report import write_accuracy_report

        return write_accuracy_report(args.runs, args.out)
    if args.command in ("finetune", "distill"):  # `kill` saves the run's state like Ctrl-C (fit catches both)
        signal.signal(signal.SIGTERM, _interrupt)
    if args.command == "finetune":
        from .finetune import finetune

        hyper = Hyper(args.epochs, args.lr, args.batch_size, args.seed)
        out = finetune(args.task, args.out, args.model, hyper, args.max_length, args.max_train, args.glue_dir, args.restart)
    elif args.command == "distill":
        from .distill import distill

        out = distill(
            args.task, args.teacher, args.student, args.out,
            Hyper(args.stage1_epochs, args.stage1_lr, args.batch_size, args.seed),
            Hyper(args.stage2_epochs, args.stage2_lr, args.batch_size, args.seed),
            args.temperature, args.max_length, args.max_train, args.glue_dir, args.restart,
        )
    else:
        from .evaluate import evaluate

        out = evaluate(args.task, args.model, args.approx, args.max_length, args.glue_dir, args.spu_examples,
                       args.protocol, args.field, args.max_examples, overrides(args), args.linear, args.spu_batch)
    from ..provenance import run_meta

    meta = run_meta()
    out = {"command": "secformer " + shlex.join(argv)} | {k: meta[k] for k in ("date", "machine", "commit")} | out
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return out


def print_glue(args, out: dict) -> None:
    if args.command == "accuracy-report":
        print(f"wrote {out['markdown']} and {out['plot']} ({out['runs']} runs)")
        return
    if args.command in ("finetune", "distill"):
        hist = out["history"]
        stages = hist.items() if args.command == "distill" else [("training", hist)]
        for name, h in stages:
            print(f"{name}: {h['steps']} steps in {h['seconds']:.0f} s, loss {h['initial_loss']:.4f} -> {h['final_loss']:.4f}")
        print(f"saved {args.out} ({out['train_examples']} training examples; evaluate with --approx {out['evaluate_with']})")
    else:
        fmt = lambda m: ", ".join(f"{k} {v:.4f}" for k, v in m.items())
        print(f"{out['task']} {out['data']['split']} ({out['examples']} examples of {out['data']['source']})")
        print(f"{out['preset']} {out['approx']}, plaintext: {fmt(out['metrics'])}")
        g = out["gelu_inputs"]
        print(f"GeLU inputs on real tokens: [{g['min']:.2f}, {g['max']:.2f}]" + ("" if g["domain"] is None else f" (the GeLU's domain: |x| <= {g['domain']:g})"))
        if g["inside"] is False:
            print(f"WARNING: GeLU inputs leave the {out['approx']['gelu']} GeLU's domain: its results are wrong there; use --gelu secformer")
        spu = out["spu"]
        if spu:
            agree = "" if spu["agreement"] is None else f"; label agreement with plaintext {spu['agreement']:.1%}"
            print(f"under SPU {spu['protocol']} on {spu['examples']} examples: {fmt(spu['metrics'])} "
                  f"(plaintext on the same: {fmt(spu['plaintext_metrics'])}){agree}; max |logit error| {spu['max_abs_error']:.2e}")
    if args.json:
        print(f"wrote {args.json}")
