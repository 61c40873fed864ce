"""Check the network model's bandwidth term: `secformer launch` on loopback links shaped by the kernel.

Runs in a new network namespace (`unshare -n`; it re-executes itself there), so the machine's own network is
untouched. Per rate R (Mbit/s), an HTB qdisc on the namespace's loopback caps the traffic into each
computing party's MPC port at R (one class per party; the owners' and dealer's I/O links are not capped:
their bytes are not on the online path); rate 0 = no qdisc. Per run it records the launch's wall time (the
slowest party's run), each party's compute, the bytes each class passed (the kernel's counters: payload
plus TCP/IP headers) and the model's prediction for a capped run:

    modelled seconds = max over parties q of ( compute_q + 8 bytes_into_q / R )

and `modelled_seconds_from_send_bytes`, the same from each party's sent payload as the benchmark records
model it (`bench/network.py`, which caps each party's sends; tc can only tell the parties' ports apart on the receiving
side, so here each party's receive link is capped: in ABY3 and 2PC each party receives mostly what its
neighbour sends). Usage (root, or a kernel that allows user namespaces):

    .venv/bin/python scripts/shaped_launch.py --config spu_configs/3pc_aby3.json --approx puma,secformer \
        --rates 0,200,50 --linear fixed-mask --out results/launch/shaped-aby3.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INNER = "SECFORMER_SHAPED_INNER"
ROOT = Path(__file__).resolve().parent.parent


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def mpc_ports(config: Path) -> list[int]:
    parties = json.loads(config.read_text())["parties"]
    return [int(p["mpc_address"].rsplit(":", 1)[1]) for p in parties]


def shape(ports: list[int], mbit: float) -> None:
    """Replace lo's root qdisc: class 1:(10 + i) caps traffic to party i's port at `mbit`; the rest is
    unlimited (class 1:99). rate 0: no qdisc."""
    subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
    if mbit == 0:
        return
    sh("tc", "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "99", "r2q", "1000")
    sh("tc", "class", "add", "dev", "lo", "parent", "1:", "classid", "1:99", "htb", "rate", "100gbit")
    for i, port in enumerate(ports):
        sh("tc", "class", "add", "dev", "lo", "parent", "1:", "classid", f"1:{10 + i}", "htb", "rate", f"{mbit}mbit", "ceil", f"{mbit}mbit")
        sh("tc", "filter", "add", "dev", "lo", "protocol", "ip", "parent", "1:", "prio", "1", "u32", "match", "ip", "dport", str(port), "0xffff",
           "flowid", f"1:{10 + i}")


def class_bytes(ports: list[int]) -> list[int] | None:
    """Bytes each party's class passed (None without a qdisc)."""
    text = subprocess.run(["tc", "-s", "class", "show", "dev", "lo"], capture_output=True, text=True).stdout
    sent = {int(m[1]): int(m[2]) for m in re.finditer(r"class htb 1:(\d+) .*?\n\s*Sent (\d+) bytes", text)}
    return [sent[10 + i] for i in range(len(ports))] if sent else None


def modelled(record: dict, mbit: float) -> dict:
    """The model's seconds for a capped run: from the bytes that crossed into each party (tc's counters), and
    as the benchmark records model it, from each party's sent payload (`bench/network.py`, no headers)."""
    into = [8 * b / (mbit * 1e6) for b in record["bytes_into_party"]]
    sent = [8 * b / (mbit * 1e6) for b in record["party_send_bytes"]]
    return {"modelled_network_seconds": into, "modelled_seconds": max(c + n for c, n in zip(record["compute_seconds"], into)),
            "modelled_seconds_from_send_bytes": max(c + n for c, n in zip(record["compute_seconds"], sent))}


def run_once(args, approx: str, mbit: float) -> dict:
    ports = mpc_ports(args.config)
    shape(ports, mbit)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, "-m", "secformer_jax.cli", "launch", "--config", str(args.config), "--text", args.text,
               "--max-length", str(args.max_length), "--approx", approx, "--linear", args.linear, "--json", str(out)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT)
        elapsed = time.perf_counter() - start
        result = json.loads(out.read_text())
    received = class_bytes(ports)
    compute = result["compute_seconds"]
    record = {
        "approx": approx, "rate_mbit": mbit or None, "wall_seconds": result["cost"]["seconds"], "process_seconds": elapsed,
        "compute_seconds": compute, "party_send_bytes": result["cost"]["party_send_bytes"], "online_bytes": result["cost"]["send_bytes"],
        "prediction": result["prediction"], "bytes_into_party": received,
    }
    if mbit:
        record.update(modelled(record, mbit))
    print(f"{approx} at {mbit or 'unshaped'} Mbit/s: wall {record['wall_seconds']:.1f} s, modelled {record.get('modelled_seconds', float('nan')):.1f} s",
          flush=True)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("spu_configs/3pc_aby3.json"))
    parser.add_argument("--approx", default="puma,secformer")
    parser.add_argument("--rates", default="0,200,50", help="Mbit/s per party link, comma-separated; 0 = not shaped")
    parser.add_argument("--linear", default="fixed-mask")
    parser.add_argument("--text", default="a gripping, beautifully made film")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if not args.config.exists():
        parser.error(f"--config {args.config}: no such file")
    rates = [float(r) for r in args.rates.split(",")]
    if any(r < 0 for r in rates):
        parser.error("--rates must be >= 0")
    if os.environ.get(INNER) != "1":  # re-run in a network namespace of our own
        for unshare in (["unshare", "-n"], ["unshare", "-rn"]):
            done = subprocess.run([*unshare, sys.executable, *sys.argv], env=os.environ | {INNER: "1"})
            if done.returncode == 0:
                return
        sys.exit("could not run in a new network namespace (unshare -n needs root or user namespaces)")
    sh("ip", "link", "set", "lo", "up")
    runs = [run_once(args, approx, mbit) for approx in args.approx.split(",") for mbit in rates]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    meta = {"command": "scripts/shaped_launch.py " + " ".join(sys.argv[1:]), "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": commit, "machine": f"{os.cpu_count()} cores", "note": __doc__.split("\n\n")[1]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"meta": meta, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
