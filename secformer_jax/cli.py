"""`secformer` command line: `infer` (one private BERT inference, parties simulated in one process), `node` and
`launch` (the same inference with one process per party over real links), `bench` (the cost harness) and
`finetune`, `distill`, `eval`, `accuracy-report` (GLUE accuracy: teachers, distilled students, SPU checks)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import threads
from .bench.commands import add_bench_commands, run_bench
from .cluster.commands import add_cluster_commands
from .glue.commands import COMMANDS as GLUE_COMMANDS
from .glue.commands import add_glue_commands, print_glue, run_glue
from .run import RunSpec, add_spec_options, summary


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secformer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    infer = sub.add_parser("infer", help="classify a text privately under SPU and compare with plaintext")
    infer.add_argument("--text", required=True, help="the data owner's text")
    infer.add_argument("--text-pair", help="second segment for sentence-pair tasks")
    add_spec_options(infer)
    infer.add_argument("--json", type=Path, help="write the result as JSON here")
    add_cluster_commands(sub)
    add_bench_commands(sub)
    add_glue_commands(sub)
    return parser


def infer(args) -> dict:
    from .checkpoint import read_metadata
    from .classifier_head import load_classifier
    from .gelu_domain import gelu_range_note
    from .inference import PrivateClassifier, encode, prediction
    from .program import privacy
    from .run import SIMULATION, RunRecord, setup_json
    from .spu_runner import peak_rss_bytes

    spec = RunSpec.from_args(args)
    spec_runs_one_program(spec)
    approx = spec.approximations()
    note = gelu_range_note(spec.model_dir, approx)
    if note:
        _log(note)
    meant = read_metadata(spec.model_dir).get("evaluate_with") if spec.model is not None else None
    if meant is not None and meant != spec.approx:
        _log(f"note: {spec.model} was trained for --approx {meant}; running it with --approx {spec.approx}")
    checkpoint, head = load_classifier(spec.model_dir, approx, spec.max_length, _log)
    config = checkpoint.config
    encoded = encode(checkpoint.tokenizer, args.text, args.text_pair, spec.max_length)

    classifier = PrivateClassifier(checkpoint, approx, spec.field, spec.linear)
    classifier.simulation(spec.protocol)  # validate the protocol before compiling
    _log(f"compiling the SPU program ({config.num_hidden_layers} layers, {spec.max_length} tokens) ...")
    _, compile_seconds = classifier.program(spec.max_length, spec.protocol)
    _log(f"  compiled in {compile_seconds:.1f} s; running {spec.protocol} ({spec.protocol.parties} parties, simulated) ...")
    result = classifier(encoded, spec.protocol)
    record = RunRecord(
        "infer", SIMULATION, spec, result.cost, privacy(spec.protocol, result.offline is not None), result.offline, setup_json(result.setup),
        model=str(checkpoint.path), logits=result.logits, plaintext_logits=result.plaintext_logits, max_abs_error=result.max_abs_error,
        compile_seconds=compile_seconds, threads=threads.setting(),
        peak_rss_bytes=peak_rss_bytes(),  # this process: compile, every simulated party and the dealer
        extra={"text": args.text, "text_pair": args.text_pair, "num_tokens": len(encoded.tokens), "head": head,
               "prediction": prediction(result.logits[0], config.num_labels, getattr(config, "id2label", None)),
               "plaintext_prediction": prediction(result.plaintext_logits[0], config.num_labels, getattr(config, "id2label", None))},
    )
    return record.to_json()


def spec_runs_one_program(spec: RunSpec) -> None:
    """`infer`, `launch` and `node` run the model as one program (ValueError for a staged spec)."""
    if spec.staged:
        raise ValueError("a staged run (one program per stage) runs in `secformer bench model --layer-programs`; "
                         "infer, launch and node run the model as one program")


def _cluster(args) -> dict | None:
    from .cluster import load_config
    from .cluster.commands import read_query
    from .cluster.config import OWNERS
    from .cluster.launch import die_with_supervisor, launch_inference
    from .cluster.node import run_node
    from .cluster.wire import RECEIVED, SENT
    from .spu_runner import peak_rss_bytes

    if args.command == "launch":
        from .gelu_domain import gelu_range_note

        if args.query is not None and args.text_pair is not None:
            raise ValueError("--text-pair goes with --text; a --query file holds its own text_pair")
        text, text_pair = read_query(args.query) if args.query is not None else (args.text, args.text_pair)

        config = load_config(args.config)
        spec = RunSpec.from_args(args, protocol=config.protocol, field=config.field)
        spec_runs_one_program(spec)
        note = gelu_range_note(spec.model_dir, spec.approximations())  # refused before any process starts
        if note:
            _log(note)
        _log(f"starting the parties and owners of {args.config} (logs: {args.log_dir or 'a temporary folder'}) ...")
        out = launch_inference(args.config, text, spec, text_pair=text_pair, timeout=args.timeout, log_dir=args.log_dir)
        _log(f"  logs of every process: {out['log_dir']}")
        return out
    die_with_supervisor()  # started by `launch`: never outlive it
    config = load_config(args.config)
    threads.exec_under(config.thread_plan(args.party))  # started by hand: rerun under this machine's plan
    _log(f"{args.party}: threads {json.dumps(threads.setting())}")
    spec = None  # a computing party runs whatever programs the model owner sends
    if args.party in OWNERS:
        spec = RunSpec.from_args(args, protocol=config.protocol, field=config.field)
        spec_runs_one_program(spec)
    text, text_pair = (None, None) if args.query is None else read_query(args.query)
    try:
        return run_node(config, args.party, spec, text=text, text_pair=text_pair, log=_log)
    finally:  # the ledger of what this process received and sent (peer, kind, bytes, blob bytes), for audits and tests; its peak memory
        _log(f"{args.party}: received {json.dumps(RECEIVED)}")
        _log(f"{args.party}: sent {json.dumps(SENT)}")
        _log(f"{args.party}: peak_rss_bytes {peak_rss_bytes()}")


def main(argv: list[str] | None = None) -> int:
    from .cluster import Interrupted, LaunchError, PeerError

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        if args.command == "bench":
            done = run_bench(args)
            print(f"wrote {done['records']} records to {done['path']}; report: {done['report']}")
            return 0
        if args.command in GLUE_COMMANDS:
            print_glue(args, run_glue(args, argv))
            return 0
        out = _cluster(args) if args.command in ("node", "launch") else infer(args)
    except Interrupted as e:
        print(f"secformer: {e}", file=sys.stderr)
        return 128 + e.signum
    except (ValueError, FileNotFoundError, LaunchError, PeerError) as e:
        print(f"secformer: error: {e}", file=sys.stderr)
        return 2
    if out is None:  # a computing party or the model owner: nothing to print
        return 0
    if args.command in ("infer", "launch"):
        from .provenance import run_meta

        meta = run_meta()
        out |= {k: meta[k] for k in ("command", "date", "machine", "commit")}
    print(summary(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


def _exit_node(code: int) -> None:
    """End a `node` process without the interpreter's teardown: its work, JSON and ledgers are written by now, and
    destroying SPU's brpc links at interpreter exit can crash a process that finished (a model owner once died of
    SIGSEGV after logging its last line)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    code = main()
    if sys.argv[1:2] == ["node"]:
        _exit_node(code)
    sys.exit(code)
