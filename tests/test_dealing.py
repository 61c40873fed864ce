"""Seed-based dealing (`dealing.py`): the shares the parties build from seeds and corrections are SPU's
shares of the dealt values, only one correction share travels, seeds are fresh, and a malformed message
is refused."""

import numpy as np
import pytest

from secformer_jax import dealing
from secformer_jax.protocols import PROTOCOLS
from secformer_jax.spu_runner import Simulation

RNG = np.random.default_rng(0)
VALUES = [
    RNG.integers(-2**31, 2**31, (3, 5), dtype=np.int64).astype(np.int32),
    np.array(7, np.int32),
    RNG.integers(0, 2**64 - 1, (40, 3), dtype=np.uint64, endpoint=True),  # ring values
]


def _ring(v):
    return v if v.dtype == np.uint64 else v.astype(np.int64).astype(np.uint64)


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_parties_build_the_shares_of_the_dealt_values(protocol):
    bundles = dealing.deal(VALUES, protocol)
    sim = Simulation(protocol)
    per_party = [dealing.Bundle.from_wire(*b.to_wire()).shares() for b in bundles]  # as they arrive
    for j, v in enumerate(VALUES[:2]):  # int32 values reconstruct exactly (SPU decodes int32)
        assert (sim.io.reconstruct([p[j] for p in per_party]) == v).all()
    # ring values: the shares (each party's first one, summed over the distinct ones) add up on the ring
    firsts = [np.frombuffer(_chunk(p[2]), "<u8").reshape(40, 3, -1)[..., 0] for p in per_party]
    assert (sum(firsts, np.zeros((40, 3), np.uint64)) == VALUES[2]).all()


def _chunk(share):
    import spu.libspu as libspu

    chunk = libspu.ValueChunk()
    chunk.ParseFromString(share.share_chunks[0])
    return chunk.content


@pytest.mark.parametrize("protocol, correction_parties, seeds", [("semi2k", 1, 1), ("cheetah", 1, 1), ("aby3", 2, 4)])
def test_only_the_corrections_travel(protocol, correction_parties, seeds):
    bundles = dealing.deal(VALUES, protocol)
    elements = sum(v.size for v in VALUES)
    assert sum(b.send_bytes for b in bundles) == correction_parties * 8 * elements + 32 * seeds
    assert sum(b.send_bytes for b in bundles) == sum(sum(map(len, b.to_wire()[1])) for b in bundles)
    assert bundles[0].corrections == [None] * len(VALUES)  # party 0 expands seeds only


def test_seeds_are_fresh_and_no_single_party_holds_every_share():
    """Catches: a constant seed (two deals of the same value then share it alike)."""
    first, second = dealing.deal(VALUES, "aby3"), dealing.deal(VALUES, "aby3")
    assert all(first[0].seeds[i] != second[0].seeds[i] for i in first[0].seeds)
    assert first[1].corrections[0] is not None and not (first[1].corrections[0] == second[1].corrections[0]).all()
    held = [set(b.seeds) | ({2} if b.corrections[0] is not None else set()) for b in first]
    assert held == [{0, 1}, {1, 2}, {0, 2}]  # replicated: each party two of the three shares


def test_malformed_messages_and_values_are_refused():
    header, blobs = dealing.deal(VALUES, "semi2k")[1].to_wire()
    with pytest.raises(ValueError, match="blob count"):
        dealing.Bundle.from_wire(header, blobs[:-1])
    with pytest.raises(ValueError, match="malformed"):
        dealing.Bundle.from_wire({k: v for k, v in header.items() if k != "shapes"}, blobs)
    with pytest.raises(ValueError, match="unknown protocol 'spdz'"):
        dealing.deal(VALUES, "spdz")
    with pytest.raises(ValueError, match="float32"):
        dealing.deal([np.zeros(3, np.float32)], "semi2k")
