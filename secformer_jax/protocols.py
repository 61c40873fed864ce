"""The MPC protocols a private run can use: one frozen `Protocol` record each, in one `PROTOCOLS` registry.

Everything that depends on which protocol runs reads it from here: SPU's protocol kind and world size, how
the dealer's values are shared (`dealing`), whether anything dealt may run under it, when a fixed-mask
product with a weight costs less than SPU's (`linear`), the block size of the products with weights, what a
run may claim about privacy and why (`program.privacy`), and whether SPU's own triples come from a party
(and are then counted as the bytes a third-party dealer would send, `beaver`). Adding a protocol is one
entry here (and its tests).

Share layouts are SPU's: additive 2-party sharing x = s0 + s1 (party i holds s_i), and ABY3's replicated
3-party sharing x = s0 + s1 + s2 (party i holds s_i and s_(i+1)). `seeded[i]` are the share indices party i
derives from dealt seeds; it receives a correction for the shares it holds beyond them (`dealing` module doc).
"""

from __future__ import annotations

import dataclasses

import spu.libspu as libspu

WIDENING = "widening"  # `Protocol.fixed_mask`: a fixed-mask product pays only where n_out > n_in
EVERY = "every"  # ... pays for every product with a weight


@dataclasses.dataclass(frozen=True)
class Protocol:
    """One protocol's facts. `name` is SPU's (and what configs, flags and records say); str(p) is the name."""

    name: str
    kind: libspu.ProtocolKind
    holds: tuple[tuple[int, ...], ...]  # share indices party i holds, in SPU's order
    seeded: tuple[frozenset[int], ...]  # share indices party i derives from the dealer's seeds
    dealer_free: bool  # chosen for having no dealer: no dealt randomness runs under it (`program.check_settings`)
    fixed_mask: str | None  # EVERY, WIDENING, or None: fixed-mask products cannot run (`linear.prefers_mask`)
    # > 0: products with weights run in blocks of at most this many weight rows and columns (`model._product`);
    # Cheetah's: SPU 0.9.5's Cheetah keeps each product's memory, which grows with the weight (results/BUMBLEBEE.md)
    weight_block: int
    layer_programs: bool  # the benchmark's default is one SPU program per stage, every layer run (memory)
    first_party_triples: bool  # SPU makes its own Beaver triples at party 0 (trusted first party)
    sharing: str  # the sharing, as privacy claims name it

    @property
    def parties(self) -> int:
        """The number of computing parties (SPU's world size)."""
        return len(self.holds)

    @property
    def private_why(self) -> str:
        """Why a run under this protocol, with nothing else leaking, is or is not private (`program.privacy`)."""
        if self.first_party_triples:
            return (f"SPU 0.9.5's {self.name.upper()} takes its Beaver triples from the trusted-first-party provider: party 0 "
                    "generates them and can unmask every product's inputs (the wheel has a trusted-third-party client but no server)")
        return f"{self.sharing}: no single computing party learns an input or the output"

    def __str__(self) -> str:
        return self.name


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("semi2k", libspu.ProtocolKind.SEMI2K, holds=((0,), (1,)), seeded=(frozenset({0}), frozenset()),
             dealer_free=False, fixed_mask=EVERY, weight_block=0, layer_programs=False, first_party_triples=True,
             sharing="2PC additive sharing with Beaver triples"),
    Protocol("cheetah", libspu.ProtocolKind.CHEETAH, holds=((0,), (1,)), seeded=(frozenset({0}), frozenset()),
             dealer_free=True, fixed_mask=None, weight_block=768, layer_programs=True, first_party_triples=False,
             sharing="2PC without a dealer (OT/HE)"),
    Protocol("aby3", libspu.ProtocolKind.ABY3, holds=((0, 1), (1, 2), (2, 0)), seeded=(frozenset({0, 1}), frozenset({1}), frozenset({0})),
             dealer_free=False, fixed_mask=WIDENING, weight_block=0, layer_programs=False, first_party_triples=False,
             sharing="3PC replicated sharing (honest majority)"),
)}
DEFAULT = PROTOCOLS["aby3"]


def get(protocol: str | Protocol) -> Protocol:
    """The `Protocol` named `protocol` (a `Protocol` is returned as it is); an unknown name is a ValueError."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[protocol]
