"""Record fields shared by the op and model benchmarks."""

from __future__ import annotations

from ..spu_runner import Cost
from .network import Network


def cost_fields(cost: Cost, networks: list[Network]) -> dict:
    """seconds (measured wall time of the simulated run), bytes and send actions summed over parties,
    per-party values, and the modelled network seconds for each network (`lan_seconds`, `wan_seconds`)."""
    fields = {
        "seconds": cost.seconds,
        "send_bytes": cost.send_bytes,
        "recv_bytes": cost.recv_bytes,
        "send_actions": cost.send_actions,
        "party_send_bytes": cost.party_send_bytes,
        "party_send_actions": cost.party_send_actions,
    }
    for net in networks:
        fields[f"{net.name.lower()}_seconds"] = net.seconds(cost.party_send_bytes, cost.party_send_actions)
    return fields
