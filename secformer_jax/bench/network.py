"""Modelled network time from bytes and messages; records add each party's measured compute to it.

    network_seconds = max over parties p of ( 8 * send_bytes[p] / bandwidth  +  send_actions[p] * rtt / 2 )
    end-to-end seconds = max over parties p of ( compute_seconds[p] + that party's network term )

Each send action is counted as one message on the critical path costing a one-way latency (rtt / 2); this
over-counts when a party's sends overlap, so it is an upper-bound proxy for rounds. Bandwidth is per party.
The defaults are SPEC.md's: LAN 1 Gbit/s with 0.5 ms RTT, WAN 100 Mbit/s with 40 ms RTT.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Network:
    name: str
    bandwidth_bits_per_s: float
    rtt_s: float

    def __post_init__(self):
        if self.bandwidth_bits_per_s <= 0 or self.rtt_s < 0:
            raise ValueError(f"network {self.name!r}: bandwidth must be > 0 and rtt >= 0")

    def party_seconds(self, party_send_bytes: list[int], party_send_actions: list[int]) -> list[float]:
        """Each party's modelled network time."""
        return [8.0 * b / self.bandwidth_bits_per_s + a * self.rtt_s / 2.0 for b, a in zip(party_send_bytes, party_send_actions)]

    def seconds(self, party_send_bytes: list[int], party_send_actions: list[int]) -> float:
        return max(self.party_seconds(party_send_bytes, party_send_actions))

    def describe(self) -> str:
        return f"{self.name}: {self.bandwidth_bits_per_s / 1e6:g} Mbit/s, {self.rtt_s * 1e3:g} ms RTT"


LAN = Network("LAN", 1e9, 0.5e-3)
WAN = Network("WAN", 100e6, 40e-3)


def parse_network(spec: str, name: str) -> Network:
    """'BANDWIDTH_MBIT,RTT_MS', e.g. '1000,0.5'."""
    try:
        mbit, ms = (float(v) for v in spec.split(","))
    except ValueError as e:
        raise ValueError(f"--{name.lower()} expects 'MBIT_PER_S,RTT_MS' (e.g. 1000,0.5), got {spec!r}") from e
    return Network(name, mbit * 1e6, ms * 1e-3)
