"""`secformer node` and `secformer launch`: argument parsing (a run's settings: `run.add_spec_options`; `launch` hands every
process the same `RunSpec` JSON as --spec)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..run import add_spec_options


def add_cluster_commands(sub) -> None:
    node = sub.add_parser("node", help="run one process of a multi-process inference (a computing party or an owner)")
    node.add_argument("--config", type=Path, required=True, help="cluster config JSON (see spu_configs/)")
    node.add_argument("--party", required=True, help="a computing party's id from the config, model_owner, data_owner or dealer")
    node.add_argument("--query", help='data owner: a JSON file {"text": ..., "text_pair": ... or null}, or - for stdin '
                      "(the text never goes on a command line, which every local user can read)")
    node.add_argument("--json", type=Path, help="data owner: write the result as JSON here")
    add_spec_options(node, model="model owner: checkpoint; data owner: its tokenizer; dealer: its config.json (default: embedded MiniLM)",
                     protocol=False, field=False, spec=True)  # the protocol and field are the config's

    launch = sub.add_parser("launch", help="start every party and both owners of a config on this machine; print the data owner's result")
    launch.add_argument("--config", type=Path, required=True, help="cluster config JSON (see spu_configs/)")
    text = launch.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", help="the data owner's text (visible to local users in this command line: see --query)")
    text.add_argument("--query", help='a JSON file {"text": ..., "text_pair": ... or null}, or - for stdin')
    launch.add_argument("--text-pair", help="second segment for sentence-pair tasks (with --text)")
    launch.add_argument("--timeout", type=float, default=900.0, help="seconds before every process is stopped (default 900)")
    launch.add_argument("--log-dir", type=Path, help="where each process's log goes (default: a new temporary folder)")
    launch.add_argument("--json", type=Path, help="write the data owner's result as JSON here")
    add_spec_options(launch, protocol=False, field=False, spec=True)  # the protocol and field are the config's


def read_query(source: str) -> tuple[str, str | None]:
    """(text, text_pair) from a query file or "-" (stdin): a JSON object {"text": str, "text_pair": str or null}."""
    where = "the query on stdin" if source == "-" else f"query file {source}"
    if source == "-":
        raw = sys.stdin.read()
    elif not Path(source).is_file():
        raise FileNotFoundError(f"{where} not found")
    else:
        raw = Path(source).read_text()
    try:
        query = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where} is not valid JSON: {e}") from e
    if not isinstance(query, dict) or not isinstance(query.get("text"), str) or set(query) - {"text", "text_pair"} \
            or not isinstance(query.get("text_pair"), (str, type(None))):
        raise ValueError(f'{where}: expected {{"text": a string, "text_pair": a string or null}}, got {raw[:80]!r}')
    return query["text"], query.get("text_pair")
