"""`secformer node` and `secformer launch`: argument parsing."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..approx import PRESETS, REGISTRY


def _approx_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--approx", default="secformer", choices=list(PRESETS), help="approximation preset (model owner)")
    for op, impls in REGISTRY.items():
        parser.add_argument(f"--{op}", choices=list(impls), help=f"override the preset's {op}")


def approx_flags(args) -> list[str]:
    """The approximation options of `args` as command-line flags for the model owner's process."""
    flags = ["--approx", args.approx]
    for op in REGISTRY:
        if getattr(args, op):
            flags += [f"--{op}", getattr(args, op)]
    return flags


def add_cluster_commands(sub) -> None:
    node = sub.add_parser("node", help="run one process of a multi-process inference (a computing party or an owner)")
    node.add_argument("--config", type=Path, required=True, help="cluster config JSON (see spu_configs/)")
    node.add_argument("--party", required=True, help="a computing party's id from the config, model_owner or data_owner")
    node.add_argument("--text", help="data owner: the text to classify")
    node.add_argument("--text-pair", help="data owner: second segment for sentence-pair tasks")
    node.add_argument("--max-length", type=int, default=64, help="padded (public) sequence length")
    node.add_argument("--model", type=Path, help="model owner: checkpoint; data owner: its tokenizer (default: embedded MiniLM)")
    node.add_argument("--json", type=Path, help="data owner: write the result as JSON here")
    _approx_options(node)

    launch = sub.add_parser("launch", help="start every party and both owners of a config on this machine; print the data owner's result")
    launch.add_argument("--config", type=Path, required=True, help="cluster config JSON (see spu_configs/)")
    launch.add_argument("--text", required=True, help="the data owner's text")
    launch.add_argument("--text-pair", help="second segment for sentence-pair tasks")
    launch.add_argument("--max-length", type=int, default=64, help="padded (public) sequence length")
    launch.add_argument("--model", type=Path, help="Hugging Face BERT checkpoint directory (default: embedded MiniLM)")
    launch.add_argument("--timeout", type=float, default=900.0, help="seconds before every process is stopped (default 900)")
    launch.add_argument("--log-dir", type=Path, help="where each process's log goes (default: a new temporary folder)")
    launch.add_argument("--json", type=Path, help="write the data owner's result as JSON here")
    _approx_options(launch)
