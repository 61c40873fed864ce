"""`secformer bench ops` and `secformer bench model`: argument parsing and the runs' progress bars."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm.auto import tqdm

from ..run import protocol_type
from ..linear import LINEAR_HELP, LINEAR_LAYERS
from ..protocols import DEFAULT, PROTOCOLS
from ..spu_runner import FIELDS


def _csv(choices=None):
    def parse(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        bad = [v for v in values if choices is not None and v not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad[0]!r}; choose from: {', '.join(choices)}")
        return values

    return parse


def _protocols(text: str) -> list:
    """--protocols NAME,NAME -> their `Protocol`s."""
    return [protocol_type(name) for name in _csv()(text)]


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",")]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from e
    if any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def add_bench_commands(sub) -> None:
    from .model import METHODS, MODELS
    from .ops import MODEL_OP_SHAPES, OPS

    bench = sub.add_parser("bench", help="cost harness: SecFormer vs PUMA vs MPCFormer on one SPU backend")
    kinds = bench.add_subparsers(dest="bench_kind", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--protocols", type=_protocols, help=f"comma-separated: {','.join(PROTOCOLS)} (default: {DEFAULT}, or the --cluster config's)")
    common.add_argument("--field", default="fm64", choices=list(FIELDS))
    common.add_argument("--lan", default="1000,0.5", help="modelled LAN as MBIT_PER_S,RTT_MS (default 1000,0.5)")
    common.add_argument("--wan", default="100,40", help="modelled WAN as MBIT_PER_S,RTT_MS (default 100,40)")
    common.add_argument("--out", type=Path, default=Path("results"), help="results folder (JSON, REPORT.md, PNG)")
    common.add_argument("--name", help="result file name (default: derived from the run)")
    common.add_argument(
        "--cluster", type=Path, help="run through one process per party as in this cluster config (spu_configs/), "
        "instead of the in-process simulation; --protocols must then be the config's"
    )

    ops = kinds.add_parser("ops", parents=[common], help="GeLU, Softmax, LayerNorm, division, rsqrt per method and protocol")
    op_methods = sorted({m for case in OPS.values() for m in case.methods})
    ops.add_argument(
        "--methods", type=_csv(op_methods), default=list(METHODS),
        help="comma-separated: " + ",".join(op_methods) + " (presets' functions under the preset's name; GeLU only: fourier, the cosine series on the masked opening; secformer_poly, sin/cos of secrets)",
    )
    ops.add_argument("--ops", type=_csv(OPS), default=list(OPS))
    ops.add_argument("--shapes", type=_csv(MODEL_OP_SHAPES), default=list(MODEL_OP_SHAPES), help="transformer shape sets")
    ops.add_argument("--sweep", type=_sizes, default=[], help="element counts for a size sweep, e.g. 1536,12288,98304")

    model = kinds.add_parser("model", parents=[common], help="BERT end to end with a per-category breakdown")
    model.add_argument("--methods", type=_csv(METHODS), default=list(METHODS), help="comma-separated: " + ",".join(METHODS))
    model.add_argument("--model", default="bert-base", choices=list(MODELS))
    model.add_argument("--seq-len", type=int, default=128)
    model.add_argument("--batch", type=int, default=1)
    model.add_argument("--layers", type=int, help="measure this many layers and extrapolate to the full model")
    model.add_argument("--layer-programs", action="store_true", default=None,
                       help="run the model as one SPU program per stage (embedding, each layer, head), every layer, nothing extrapolated "
                            "(secformer_jax/stages.py); the default under Cheetah without --layers")
    model.add_argument("--linear", choices=list(LINEAR_LAYERS), default="spu", help=LINEAR_HELP + "; every method alike")
    model.add_argument("--dealer-seed", type=int, help="derive the dealt masks from this seed (reproducible runs; recorded in the JSON); default: a fresh key per run")


def run_bench(args) -> dict:
    from contextlib import ExitStack

    from ..provenance import run_meta
    from .network import parse_network
    from .report import save

    networks = [parse_network(args.lan, "LAN"), parse_network(args.wan, "WAN")]
    meta = run_meta(networks)
    with ExitStack() as stack:
        runners = None
        if args.cluster:
            from ..cluster import LocalCluster, load_config

            protocol = load_config(args.cluster).protocol
            if args.protocols not in (None, [protocol]):
                raise ValueError(f"--cluster {args.cluster} runs {protocol}; --protocols {','.join(map(str, args.protocols))} does not match")
            args.protocols = [protocol]
            runners = {protocol: stack.enter_context(LocalCluster(args.cluster))}
            meta["runner"] = f"cluster {args.cluster} (one process per party, loopback links)"
            meta["party_threads"] = runners[protocol].threads()
        else:
            args.protocols = args.protocols or [DEFAULT]
            meta["runner"] = "simulation (all parties in one process)"
        records, name = _records(args, networks, runners)
    path = save(args.out, name, meta, records)
    return {"path": str(path), "report": str(args.out / "REPORT.md"), "records": len(records)}


def _records(args, networks, runners) -> tuple[list[dict], str]:
    if args.bench_kind == "ops":
        from .ops import MODEL_OP_SHAPES, OPS, op_records, sweep_shape

        shape_sets = [(label, MODEL_OP_SHAPES[label]) for label in args.shapes]
        shape_sets += [(f"sweep-{n}", {op: sweep_shape(op, n) for op in args.ops}) for n in args.sweep]
        pairs = sum(m in OPS[op].methods for op in args.ops for m in args.methods)
        total = len(shape_sets) * pairs * len(args.protocols)
        with tqdm(total=total, desc="bench ops", unit="run") as bar:
            records = op_records(args.ops, args.methods, args.protocols, shape_sets, networks, args.field, progress=bar.update, runners=runners)
        return records, args.name or "ops-" + "-".join(map(str, args.protocols))
    from .model import model_config, model_records, runs_per_method, uses_layer_programs

    if args.seq_len < 1 or args.batch < 1:
        raise ValueError("--seq-len and --batch must be positive")
    total_layers = model_config(args.model).num_hidden_layers
    if args.layer_programs is None and uses_layer_programs(args.protocols, args.layers):
        args.layer_programs = True
        staged = ", ".join(p.name for p in args.protocols if p.layer_programs)
        tqdm.write(f"{staged}: one SPU program per stage (--layer-programs; the whole model as one program does not fit 24 GiB)")
    total = len(args.methods) * runs_per_method(args.protocols, args.layers, total_layers, args.layer_programs)
    with tqdm(total=total, desc=f"bench {args.model}", unit="run") as bar:
        records = model_records(
            args.model, args.methods, args.protocols, args.seq_len, args.batch, args.layers, networks, args.field,
            progress=bar.update, runners=runners, linear_layers=args.linear, dealer_seed=args.dealer_seed, layer_programs=args.layer_programs,
        )
    suffix = ("-fixed-mask" if args.linear == "fixed-mask" else "") + ("-layer-programs" if args.layer_programs else "")
    return records, args.name or f"model-{args.model}-{args.seq_len}-" + "-".join(map(str, args.protocols)) + suffix
