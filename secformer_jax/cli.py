"""`secformer` command line: `infer` (one private BERT inference under SPU) and `bench` (the cost harness)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .approx import PRESETS, REGISTRY, resolve_approx
from .bench.commands import add_bench_commands, run_bench
from .spu_runner import FIELDS, PROTOCOLS


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="secformer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    infer = sub.add_parser("infer", help="classify a text privately under SPU and compare with plaintext")
    infer.add_argument("--text", required=True, help="the data owner's text")
    infer.add_argument("--text-pair", help="second segment for sentence-pair tasks")
    infer.add_argument("--protocol", default="aby3", choices=list(PROTOCOLS))
    infer.add_argument("--field", default="fm64", choices=list(FIELDS))
    infer.add_argument("--approx", default="secformer", choices=list(PRESETS), help="approximation preset")
    for op, impls in REGISTRY.items():
        infer.add_argument(f"--{op}", choices=list(impls), help=f"override the preset's {op}")
    infer.add_argument("--model", type=Path, help="Hugging Face BERT checkpoint directory (default: embedded MiniLM)")
    infer.add_argument("--max-length", type=int, default=64, help="padded (public) sequence length")
    infer.add_argument("--json", type=Path, help="write the result as JSON here")
    add_bench_commands(sub)
    return parser


def infer(args) -> dict:
    from .checkpoint import load_checkpoint
    from .inference import PrivateClassifier, encode
    from .sentiment_head import attach_sentiment_head

    approx = resolve_approx(args.approx, gelu=args.gelu, softmax=args.softmax, layernorm=args.layernorm)
    checkpoint = load_checkpoint(args.model)
    config = checkpoint.config
    if args.max_length > config.max_position_embeddings:
        raise ValueError(f"--max-length {args.max_length} exceeds the model's {config.max_position_embeddings} positions")
    encoded = encode(checkpoint.tokenizer, args.text, args.text_pair, args.max_length)
    head = None
    if not checkpoint.has_classifier:
        _log(f"{checkpoint.path} has no classifier: using a sentiment head fitted on SST-2 (frozen encoder, {args.approx} approximations)")
        head = attach_sentiment_head(checkpoint, approx, max_length=args.max_length)
        _log(f"  head: SST-2 dev accuracy {head['dev_accuracy']:.3f} in plaintext ({'cached' if head['cached'] else 'fitted now'})")

    classifier = PrivateClassifier(checkpoint, approx, args.field)
    classifier.simulation(args.protocol)  # validate the protocol before compiling
    _log(f"compiling the SPU program ({config.num_hidden_layers} layers, {args.max_length} tokens) ...")
    _, compile_seconds = classifier.program(args.max_length)
    _log(f"  compiled in {compile_seconds:.1f} s; running {args.protocol} ({PROTOCOLS[args.protocol][1]} parties, simulated) ...")
    result = classifier(encoded, args.protocol)

    labels = getattr(config, "id2label", None) or {}
    regression = config.num_labels == 1
    private, plain = result.logits[0], result.plaintext_logits[0]
    out = {
        "text": args.text,
        "text_pair": args.text_pair,
        "model": str(checkpoint.path),
        "protocol": args.protocol,
        "field": args.field,
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
    }
    return out


def print_summary(out: dict) -> None:
    cost = out["cost"]
    print(f"text:        {out['text']!r}" + (f" / {out['text_pair']!r}" if out["text_pair"] else ""))
    print(f"approx:      {out['approx']}")
    if out["prediction"] is not None:
        agree = "agrees" if out["prediction"] == out["plaintext_prediction"] else "DIFFERS from"
        print(f"prediction:  {out['prediction']} (private; {agree} plaintext)")
    fmt = lambda xs: "[" + ", ".join(f"{x:+.4f}" for x in xs) + "]"
    print(f"logits:      {fmt(out['logits'])}  private, {out['protocol']}")
    print(f"             {fmt(out['plaintext_logits'])}  plaintext, same approximations")
    print(f"max |error|: {out['max_abs_error']:.2e}")
    print(
        f"cost:        {cost['seconds']:.2f} s wall (all parties simulated in one process), "
        f"parties sent {cost['send_bytes'] / 2**20:.1f} MiB in {cost['send_actions']} send actions (all parties)"
    )
    top = sorted(cost["by_op"].items(), key=lambda kv: -kv[1]["send_bytes"])[:5]
    for op, c in top:
        print(f"  {op:<22} {c['send_bytes'] / 2**20:8.1f} MiB {c['send_actions']:6d} actions {c['seconds']:7.2f} s")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "bench":
            done = run_bench(args)
            print(f"wrote {done['records']} records to {done['path']}; report: {done['report']}")
            return 0
        out = infer(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"secformer: error: {e}", file=sys.stderr)
        return 2
    print_summary(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
