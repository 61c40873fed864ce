"""`secformer node` and `secformer launch`: argument parsing."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..linear import LINEAR_HELP, LINEAR_LAYERS
from ..cli_options import add_approx_options


def add_cluster_commands(sub) -> None:
    node = sub.add_parser("node", help="run one process of a multi-process inference (a computing party or an owner)")
    node.add_argument("--config", type=Path, required=True, help="cluster config JSON (see spu_configs/)")
    node.add_argument("--party", required=True, help="a computing party's id from the config, model_owner, data_owner or dealer")
    node.add_argument("--text", help="data owner: the text to classify")
    node.add_argument("--text-pair", help="data owner: second segment for sentence-pair tasks")
    node.add_argument("--max-length", type=int, default=64, help="padded (public) sequence length")
    node.add_argument("--model", type=Path, help="model owner: checkpoint; data owner: its tokenizer; dealer: its config.json (default: embedded MiniLM)")
    node.add_argument("--json", type=Path, help="data owner: write the result as JSON here")
    add_approx_options(node, help="approximation preset (model owner and dealer)")
    node.add_argument("--linear", default="spu", choices=list(LINEAR_LAYERS), help="model owner and dealer: " + LINEAR_HELP)

    launch = sub.add_parser("launch", help="start every party and both owners of a config on this machine; print the data owner's result")
    launch.add_argument("--config", type=Path, required=True, help="cluster config JSON (see spu_configs/)")
    launch.add_argument("--text", required=True, help="the data owner's text")
    launch.add_argument("--text-pair", help="second segment for sentence-pair tasks")
    launch.add_argument("--max-length", type=int, default=64, help="padded (public) sequence length")
    launch.add_argument("--model", type=Path, help="Hugging Face BERT checkpoint directory (default: embedded MiniLM)")
    launch.add_argument("--timeout", type=float, default=900.0, help="seconds before every process is stopped (default 900)")
    launch.add_argument("--log-dir", type=Path, help="where each process's log goes (default: a new temporary folder)")
    launch.add_argument("--json", type=Path, help="write the data owner's result as JSON here")
    add_approx_options(launch, help="approximation preset (model owner and dealer)")
    launch.add_argument("--linear", default="spu", choices=list(LINEAR_LAYERS), help=LINEAR_HELP)
