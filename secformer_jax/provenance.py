"""Provenance of a run: the command that made it, when, on what machine with which thread counts, at which commit."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from . import threads


def _command() -> str:
    """This run's command line as a user would type it (`secformer ...` also when run as `python -m`)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "secformer" or argv0.parts[-2:] == ("secformer_jax", "cli.py"):
        return "secformer " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return " ".join(shlex.quote(a) for a in sys.argv)


def run_meta(networks=()) -> dict:
    """Command, date, machine, thread setting and commit of this run; `networks`: the modelled networks of a benchmark."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        commit += "+dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    import spu

    return {
        "command": _command(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}",
        "spu": spu.__version__ if hasattr(spu, "__version__") else "0.9.5",
        "commit": commit,
        "threads": threads.setting(),  # this process's SPU thread counts (a cluster's party processes: their own)
        "networks": [n.describe() for n in networks],
        "cost_note": "bytes and send actions summed over all parties; seconds = wall time of all parties simulated in one process; "
        "compute_seconds = each party's CPU seconds; lan/wan_seconds = max over parties of compute + modelled network, "
        "network_lan/wan_seconds = the network model alone; offline = the dealer's seeds and correction shares per inference "
        "(in total_bytes, not in the online columns)",
    }
