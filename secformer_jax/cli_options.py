"""The command-line options shared by several commands: approximations, protocol, field, linear layers.
Choices come from their registries (`approx.REGISTRY`, `protocols.PROTOCOLS`, `spu_runner.FIELDS`, `linear.LINEAR_LAYERS`)."""

from __future__ import annotations

import argparse

from .approx import OPS, PRESETS, ApproxSet, choices, resolve_approx
from .linear import LINEAR_HELP, LINEAR_LAYERS
from .protocols import DEFAULT, PROTOCOLS, Protocol, get
from .spu_runner import FIELDS


def add_approx_options(parser: argparse.ArgumentParser, default: str | None = "secformer", help: str = "approximation preset") -> None:
    """--approx PRESET and a per-operator override --gelu/--softmax/--layernorm NAME."""
    parser.add_argument("--approx", default=default, choices=list(PRESETS), help=help)
    for op in OPS:
        parser.add_argument(f"--{op}", choices=choices(op), help=f"override the preset's {op}")


def approx_overrides(args) -> dict[str, str]:
    """The per-operator overrides given on the command line."""
    return {op: getattr(args, op) for op in OPS if getattr(args, op, None) is not None}


def approx_from_args(args) -> ApproxSet:
    return resolve_approx(args.approx, **approx_overrides(args))


def approx_flags(args) -> list[str]:
    """The approximation options of `args` as command-line flags (for a child process)."""
    flags = ["--approx", args.approx]
    for op, name in approx_overrides(args).items():
        flags += [f"--{op}", name]
    return flags


def protocol_type(name: str) -> Protocol:
    """argparse `type` of a protocol option: the `Protocol` named (unknown: argparse's one-line error)."""
    try:
        return get(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_run_options(parser: argparse.ArgumentParser, protocol: bool = True, linear: bool = True) -> None:
    """--protocol, --field and --linear for a private run."""
    if protocol:
        parser.add_argument("--protocol", default=DEFAULT, type=protocol_type, choices=list(PROTOCOLS.values()))
    parser.add_argument("--field", default="fm64", choices=list(FIELDS))
    if linear:
        parser.add_argument("--linear", default="spu", choices=list(LINEAR_LAYERS), help=LINEAR_HELP)
