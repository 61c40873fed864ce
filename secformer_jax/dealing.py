"""Seed-based dealing: the dealer's secret values reach the computing parties as seeds plus corrections, so
only one share of each value travels (as SPU's and CrypTen's third-party dealers do it).

A dealt value x (an int32 array, which SPU holds on the ring Z_2^64 sign-extended, or a uint64 array of ring
values, which the program reads as an int32 input holding the full ring element) is split on the ring:

    SEMI2K, Cheetah (additive, 2 parties):   x = s0 + s1
        s0 = G(k0)                       party 0 receives the seed k0 and expands it itself
        s1 = x - s0                      the correction: sent to party 1
    ABY3 (replicated, party i holds s_i and s_(i+1)):   x = s0 + s1 + s2
        s0 = G(k0), s1 = G(k1)           party 0 receives k0 and k1, party 1 k1, party 2 k0
        s2 = x - s0 - s1                 the correction: sent to parties 1 and 2

G(k) is ChaCha20 keyed by the 32-byte seed k (`randomness.expand`, one stream per value), so every
seed-derived share is uniform on the ring and a party holding one seed learns nothing of the other shares.
Each party sees exactly the shares SPU's own `Io.make_shares` would give it (same storage types, same
layout), so the program cannot tell the difference. What travels per dealt element: SEMI2K 8 bytes (SPU's
Io sends both shares: 16), ABY3 16 bytes (Io: 48, two shares to each of three parties), plus 32 bytes per
seed per run. `Bundle.send_bytes` counts exactly what `to_wire` puts on the link.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import spu.libspu as libspu

from . import protocols
from .protocols import Protocol
from .randomness import KEY_BYTES, expand, fresh_seed

_CHUNK = 128 << 20  # SPU's share_max_chunk_size default


def _expand(seed: bytes, index: int, shape) -> np.ndarray:
    return expand(seed, f"share/{index}", shape)


@dataclasses.dataclass
class Bundle:
    """What one computing party receives from the dealer for one run: seeds (share index -> 32 bytes) and,
    per dealt value, its correction share (None where the party derives all its shares from seeds), plus the
    public shapes."""

    protocol: Protocol
    rank: int
    seeds: dict[int, bytes]
    shapes: list[tuple[int, ...]]
    corrections: list[np.ndarray | None]

    @property
    def send_bytes(self) -> int:
        """Bytes of seeds and corrections (what `to_wire` sends, without its JSON header)."""
        return KEY_BYTES * len(self.seeds) + sum(c.nbytes for c in self.corrections if c is not None)

    def shares(self) -> list[libspu.Share]:
        """This party's SPU shares of every dealt value, built locally from the seeds and corrections."""
        out = []
        for j, (shape, correction) in enumerate(zip(self.shapes, self.corrections)):
            parts = [correction if i not in self.seeds else _expand(self.seeds[i], j, shape) for i in self.protocol.holds[self.rank]]
            out.append(_share(self.protocol, shape, np.stack(parts, axis=-1)))
        return out

    def to_wire(self) -> tuple[dict, list[bytes]]:
        """(JSON header, blobs) for `cluster.wire.send`."""
        held = [j for j, c in enumerate(self.corrections) if c is not None]
        header = {"kind": "dealt", "protocol": self.protocol.name, "rank": self.rank, "seeds": sorted(self.seeds),
                  "shapes": [list(s) for s in self.shapes], "corrections": held}
        return header, [self.seeds[i] for i in sorted(self.seeds)] + [self.corrections[j].tobytes() for j in held]

    @classmethod
    def from_wire(cls, header: dict, blobs: list[bytes]) -> "Bundle":
        """The inverse of `to_wire`, checked: a malformed message, a field `to_wire` does not write, or seeds
        and corrections other than the ones this party's rank receives (module doc) are a ValueError."""
        extra = sorted(set(header) - {"kind", "protocol", "rank", "seeds", "shapes", "corrections"})
        if extra:
            raise ValueError(f"dealt-shares message with unexpected fields {extra}")
        try:
            protocol, rank = protocols.get(header["protocol"]), int(header["rank"])
            seed_ids, shapes, held = [int(i) for i in header["seeds"]], [tuple(int(d) for d in s) for s in header["shapes"]], header["corrections"]
            if set(seed_ids) != protocol.seeded[rank]:
                raise ValueError(f"party {rank} is dealt the seeds of shares {sorted(protocol.seeded[rank])}, got {sorted(seed_ids)}")
            receives = len(protocol.seeded[rank]) < len(protocol.holds[rank])
            if sorted(int(j) for j in held) != (list(range(len(shapes))) if receives else []):
                raise ValueError(f"party {rank} receives {'every' if receives else 'no'} correction, the message holds {len(held)} of {len(shapes)}")
            if len(blobs) != len(seed_ids) + len(held) or any(len(b) != KEY_BYTES for b in blobs[: len(seed_ids)]):
                raise ValueError("blob count or seed size does not match the header")
            corrections: list = [None] * len(shapes)
            for j, blob in zip(held, blobs[len(seed_ids):]):
                corrections[int(j)] = np.frombuffer(blob, "<u8").reshape(shapes[int(j)]).copy()
        except (KeyError, TypeError, IndexError) as e:
            raise ValueError(f"malformed dealt-shares message: {e}") from e
        return cls(protocol, rank, dict(zip(seed_ids, blobs)), shapes, corrections)


def deal(values: list[np.ndarray], protocol: Protocol | str) -> list[Bundle]:
    """Split the int32 / uint64 arrays `values` into one `Bundle` per computing party (module doc), with
    fresh seeds (`randomness.fresh_seed`, per call: never shared between deals)."""
    protocol = protocols.get(protocol)
    seeds = [fresh_seed() for _ in range(protocol.parties - 1)]
    corrections = []
    for j, v in enumerate(values):
        v = np.asarray(v)
        if v.dtype == np.int32:
            ring = v.astype(np.int64).astype(np.uint64)  # sign-extended, as SPU encodes an int32
        elif v.dtype == np.uint64:
            ring = v.copy()
        else:
            raise ValueError(f"dealt value {j} is {v.dtype}; the dealer deals int32 or uint64 (ring) arrays")
        for seed in seeds:
            ring = ring - _expand(seed, j, v.shape)  # uint64 arithmetic wraps mod 2^64
        corrections.append(ring)
    bundles = []
    for rank, seeded in enumerate(protocol.seeded):
        receives = len(seeded) < len(protocol.holds[rank])
        bundles.append(Bundle(protocol, rank, {i: seeds[i] for i in seeded}, [np.shape(v) for v in values],
                              [c if receives else None for c in corrections]))
    return bundles


def reconstruct(bundles: list[Bundle]) -> list[np.ndarray]:
    """The dealt values (uint64 ring elements) that all parties' `bundles` of one deal add up to: what the
    parties could recover together, and nobody alone (for audits and tests)."""
    seeds = {i: seed for b in bundles for i, seed in b.seeds.items()}
    values = []
    for j, shape in enumerate(bundles[0].shapes):
        correction = next(b.corrections[j] for b in bundles if b.corrections[j] is not None)
        values.append(correction + sum((_expand(seeds[i], j, shape) for i in sorted(seeds)), np.zeros(shape, np.uint64)))
    return values


@dataclasses.dataclass
class DealtInputs:
    """A program's dealt inputs of one run: the input names (each a tree of `counts[i]` leaves, in the
    program's leaf order) and one `Bundle` per computing party holding all their leaves in that order."""

    names: list[str]
    counts: list[int]
    bundles: list[Bundle]

    @property
    def send_bytes(self) -> int:
        """What the dealer sends, all parties together: seeds and corrections."""
        return sum(b.send_bytes for b in self.bundles)

    def split(self, shares: list) -> dict:
        """One party's shares (all dealt leaves, in order) -> {input name: its leaves' shares}."""
        out, start = {}, 0
        for name, count in zip(self.names, self.counts):
            out[name], start = shares[start: start + count], start + count
        return out

    def shares(self) -> dict:
        """{input name: [party][leaf shares]}, built as each party builds them (`Bundle.shares`)."""
        per_party = [self.split(b.shares()) for b in self.bundles]
        return {name: [p[name] for p in per_party] for name in self.names}


def deal_inputs(dealt: dict, protocol: Protocol | str) -> DealtInputs:
    """`deal` for a program's dealt inputs ({input name: tree of int32 / uint64 arrays}), names sorted as the
    program orders its inputs."""
    import jax  # the trees' order is JAX's (the program's flattening)

    names = sorted(n for n in dealt if dealt[n] is not None)
    leaves = [jax.tree_util.tree_leaves(dealt[n]) for n in names]
    return DealtInputs(names, [len(l) for l in leaves], deal([v for l in leaves for v in l], protocol))


def _share(protocol: Protocol, shape, content: np.ndarray) -> libspu.Share:
    """An SPU secret share of an int32 value: `content` [..., shares held] uint64 ring elements."""
    meta = libspu.ValueMeta()
    meta.data_type = libspu.DataType.DT_I32
    meta.visibility = libspu.Visibility.VIS_SECRET
    meta.shape = [int(d) for d in shape]
    meta.storage_type = f"{protocol.kind.name.lower()}.AShr<FM64>"  # SPU's name of the kind's arithmetic share
    meta.is_complex = False
    data = np.ascontiguousarray(content, "<u8").tobytes()
    chunks = []
    for offset in range(0, max(len(data), 1), _CHUNK):
        chunk = libspu.ValueChunk()
        chunk.total_bytes, chunk.chunk_offset, chunk.content = len(data), offset, data[offset: offset + _CHUNK]
        chunks.append(chunk.SerializeToString())
    share = libspu.Share()
    share.meta, share.share_chunks = meta.SerializeToString(), chunks
    return share


def public_ring(share: libspu.Share) -> np.ndarray:
    """The ring values (uint64) of a public SPU value held by a party, e.g. E after the setup's opening."""
    meta = libspu.ValueMeta()
    meta.ParseFromString(share.meta)
    if not meta.storage_type.startswith("Pub2k<FM64>"):
        raise ValueError(f"not a public FM64 value: {meta.storage_type}")
    data = bytearray()
    for blob in share.share_chunks:
        chunk = libspu.ValueChunk()
        chunk.ParseFromString(blob)
        data[chunk.chunk_offset: chunk.chunk_offset + len(chunk.content)] = chunk.content
    return np.frombuffer(bytes(data), "<u8").reshape(tuple(meta.shape.dims)).copy()
