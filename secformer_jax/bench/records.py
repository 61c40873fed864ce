"""Record fields shared by the op and model benchmarks."""

from __future__ import annotations

from ..spu_runner import Cost
from .network import Network


def cost_fields(cost: Cost, networks: list[Network], offline_bytes: int = 0) -> dict:
    """seconds (measured wall time of the run), bytes and send actions summed over parties, per-party values,
    each party's compute seconds (`compute_seconds`, measured CPU time: `Cost.party_compute_seconds`),
    `beaver_bytes` (SEMI2K: what a third-party dealer would send for SPU's own products, `beaver.py`; None
    for the other protocols), `total_bytes` = online + `offline_bytes` (what the dealer sends per inference
    for the dealt randomness) + `beaver_bytes`, and per network N:
    `network_N_seconds` (modelled from each party's online bytes and messages only) and `N_seconds` = max over
    parties of (compute + that party's modelled network), the end-to-end time. Dealt bytes travel before the
    inference, so they are in `total_bytes`, not on the online critical path."""
    fields = {
        "seconds": cost.seconds,
        "send_bytes": cost.send_bytes,
        "beaver_bytes": cost.beaver_bytes,
        "total_bytes": cost.send_bytes + offline_bytes + (cost.beaver_bytes or 0),
        "recv_bytes": cost.recv_bytes,
        "send_actions": cost.send_actions,
        "party_send_bytes": cost.party_send_bytes,
        "party_send_actions": cost.party_send_actions,
        "compute_seconds": cost.party_compute_seconds,
    }
    for net in networks:
        name = net.name.lower()
        party = net.party_seconds(cost.party_send_bytes, cost.party_send_actions)
        fields[f"network_{name}_seconds"] = max(party)
        fields[f"{name}_seconds"] = max(c + n for c, n in zip(cost.party_compute_seconds, party)) if cost.party_compute_seconds else None
    return fields
