"""`secformer` command line: `infer` (one private BERT inference, parties simulated in one process), `node` and
`launch` (the same inference with one process per party over real links), `bench` (the cost harness) and
`finetune`, `distill`, `eval`, `accuracy-report` (GLUE accuracy: teachers, distilled students, SPU checks)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import threads
from .bench.commands import add_bench_commands, run_bench
from .cli_options import add_approx_options, add_run_options, approx_flags, approx_from_args
from .cluster.commands import add_cluster_commands
from .glue.commands import COMMANDS as GLUE_COMMANDS
from .glue.commands import add_glue_commands, print_glue, run_glue


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secformer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    infer = sub.add_parser("infer", help="classify a text privately under SPU and compare with plaintext")
    infer.add_argument("--text", required=True, help="the data owner's text")
    infer.add_argument("--text-pair", help="second segment for sentence-pair tasks")
    add_run_options(infer)
    add_approx_options(infer)
    infer.add_argument("--model", type=Path, help="Hugging Face BERT checkpoint directory (default: embedded MiniLM)")
    infer.add_argument("--max-length", type=int, default=64, help="padded (public) sequence length")
    infer.add_argument("--json", type=Path, help="write the result as JSON here")
    add_cluster_commands(sub)
    add_bench_commands(sub)
    add_glue_commands(sub)
    return parser


def infer(args) -> dict:
    from .inference import PrivateClassifier, encode
    from .classifier_head import load_classifier
    from .program import privacy

    from .checkpoint import read_metadata
    from .gelu_domain import gelu_range_note
    from .spu_runner import peak_rss_bytes

    approx = approx_from_args(args)
    note = gelu_range_note(args.model, approx)
    if note:
        _log(note)
    meant = read_metadata(args.model).get("evaluate_with") if args.model is not None else None
    if meant is not None and meant != args.approx:
        _log(f"note: {args.model} was trained for --approx {meant}; running it with --approx {args.approx}")
    checkpoint, head = load_classifier(args.model, approx, args.max_length, _log)
    config = checkpoint.config
    encoded = encode(checkpoint.tokenizer, args.text, args.text_pair, args.max_length)

    classifier = PrivateClassifier(checkpoint, approx, args.field, args.linear)
    classifier.simulation(args.protocol)  # validate the protocol before compiling
    _log(f"compiling the SPU program ({config.num_hidden_layers} layers, {args.max_length} tokens) ...")
    _, compile_seconds = classifier.program(args.max_length, args.protocol)
    _log(f"  compiled in {compile_seconds:.1f} s; running {args.protocol} ({args.protocol.parties} parties, simulated) ...")
    result = classifier(encoded, args.protocol)

    labels = getattr(config, "id2label", None) or {}
    regression = config.num_labels == 1
    private, plain = result.logits[0], result.plaintext_logits[0]
    out = {
        "text": args.text,
        "text_pair": args.text_pair,
        "model": str(checkpoint.path),
        "protocol": args.protocol.name,
        "field": args.field,
        "linear": args.linear,
        "approx": approx.to_dict() | {"preset": args.approx},
        "seq_len": args.max_length,
        "num_tokens": len(encoded.tokens),
        "logits": private.tolist(),
        "plaintext_logits": plain.tolist(),
        "max_abs_error": result.max_abs_error,
        "prediction": None if regression else labels.get(int(private.argmax()), str(int(private.argmax()))),
        "plaintext_prediction": None if regression else labels.get(int(plain.argmax()), str(int(plain.argmax()))),
        "head": head,
        "compile_seconds": compile_seconds,
        "cost": result.cost.to_dict(),
        "offline": result.offline,
        "setup": _setup_record(result.setup),
        "peak_rss_bytes": peak_rss_bytes(),  # this process: compile, every simulated party and the dealer
        "threads": threads.setting(),
        **privacy(args.protocol, result.offline is not None),
    }
    return out


def _setup_record(setup: dict | None) -> dict | None:
    """The fixed-mask setup's bytes as JSON (the opening's Cost as its bytes)."""
    if setup is None:
        return None
    return {k: v for k, v in setup.items() if k != "online"} | {"online_bytes": setup["online"].send_bytes}


def print_summary(out: dict) -> None:
    cost = out["cost"]
    print(f"text:        {out['text']!r}" + (f" / {out['text_pair']!r}" if out["text_pair"] else ""))
    print(f"approx:      {out['approx']}")
    plain = "plaintext_logits" in out
    if out["prediction"] is not None:
        agree = ("; agrees with" if out["prediction"] == out["plaintext_prediction"] else "; DIFFERS from") + " plaintext" if plain else ""
        print(f"prediction:  {out['prediction']} (private{agree})")
    fmt = lambda xs: "[" + ", ".join(f"{x:+.4f}" for x in xs) + "]"
    print(f"logits:      {fmt(out['logits'])}  private, {out['protocol']}")
    if plain:
        print(f"             {fmt(out['plaintext_logits'])}  plaintext, same approximations")
        print(f"max |error|: {out['max_abs_error']:.2e}")
    where = "all parties simulated in one process" if plain else f"slowest of {len(cost['party_send_bytes'])} party processes"
    print(
        f"cost:        {cost['seconds']:.2f} s wall ({where}), "
        f"parties sent {cost['send_bytes'] / 2**20:.1f} MiB in {cost['send_actions']} send actions (all parties)"
    )
    if out.get("threads"):
        from .bench.report import thread_note
        from .cluster.config import OWNERS

        t = out["threads"]
        parties = {role: v for role, v in t.items() if role not in OWNERS}
        print(f"threads:     {thread_note({'threads': t} if 'cores' in t else {'party_threads': parties})}")
    if out.get("offline"):
        print(f"offline:     {out['offline']['send_bytes'] / 2**20:.1f} MiB of {out['offline']['what']}: sent by the dealer, apart from the above")
    if cost.get("beaver_bytes"):
        print(f"triples:     {cost['beaver_bytes'] / 2**20:.1f} MiB that a third-party dealer would send for SPU's own SEMI2K products "
              "(here party 0 makes them itself, hence not private against it)")
    if out.get("setup"):
        print(f"setup:       {out['setup']['send_bytes'] / 2**20:.1f} MiB once per model (fixed-mask products: shares of W and B, E = W - B opened)")
    if "private" in out:
        print(f"private:     {'yes' if out['private'] else 'NO'} ({out['private_why']})")
    top = sorted(cost["by_op"].items(), key=lambda kv: -kv[1]["send_bytes"])[:5]
    for op, c in top:
        print(f"  {op:<22} {c['send_bytes'] / 2**20:8.1f} MiB {c['send_actions']:6d} actions {c['seconds']:7.2f} s")


def _cluster(args) -> dict | None:
    from .cluster import load_config
    from .cluster.commands import read_query
    from .cluster.launch import die_with_supervisor, launch_inference
    from .cluster.node import run_node
    from .cluster.wire import RECEIVED, SENT
    from .spu_runner import peak_rss_bytes

    if args.command == "launch":
        from .gelu_domain import gelu_range_note

        if args.query is not None and args.text_pair is not None:
            raise ValueError("--text-pair goes with --text; a --query file holds its own text_pair")
        text, text_pair = read_query(args.query) if args.query is not None else (args.text, args.text_pair)

        note = gelu_range_note(args.model, approx_from_args(args))  # refused before any process starts
        if note:
            _log(note)
        _log(f"starting the parties and owners of {args.config} (logs: {args.log_dir or 'a temporary folder'}) ...")
        out = launch_inference(
            args.config, text, text_pair=text_pair, max_length=args.max_length, model=args.model,
            approx_args=approx_flags(args), linear_layers=args.linear, timeout=args.timeout, log_dir=args.log_dir,
        )
        _log(f"  logs of every process: {out['log_dir']}")
        from .provenance import run_meta

        meta = run_meta()
        return out | {k: meta[k] for k in ("command", "date", "machine", "commit")}
    die_with_supervisor()  # started by `launch`: never outlive it
    config = load_config(args.config)
    threads.exec_under(config.thread_plan(args.party))  # started by hand: rerun under this machine's plan
    _log(f"{args.party}: threads {json.dumps(threads.setting())}")
    approx = approx_from_args(args)
    text, text_pair = (None, None) if args.query is None else read_query(args.query)
    try:
        return run_node(
            config, args.party, text=text, text_pair=text_pair, max_length=args.max_length,
            model=args.model, approx=approx, linear_layers=args.linear, log=_log,
        )
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
    print_summary(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
