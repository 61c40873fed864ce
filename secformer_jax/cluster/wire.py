"""Messages between cluster processes over SPU's brpc links: a JSON header plus binary blobs, no pickle
(a peer's bytes are never executed). Links come from `spu.libspu.link`; timeouts from the config.

Frame: b"SFJ1", the header's length (8 bytes, little endian), the UTF-8 JSON header (with the blobs'
sizes under "_blobs"), then the blobs back to back.
"""

from __future__ import annotations

import json
import math
import struct

import spu.libspu as libspu

from .config import ClusterConfig

MAGIC = b"SFJ1"
CONNECT_INTERVAL_MS = 500
# A send is retried after 0.5, 1 and 1.5 s (brpc's default waits 1, 3 and 5 s); one connection attempt is a
# send, so it takes about this long when the peer is absent (measured 3.3 s), which sets the attempt count.
SEND_RETRY_MS = (3, 500, 500, 2000)  # max_retry, first interval, increment, max interval
CONNECT_ATTEMPT_S = 3.5


# Every message this process received, as (sender, kind, bytes): what a process learns is what it receives, so
# `secformer node` prints this ledger when it ends (tests assert who received what).
RECEIVED: list[tuple[str, str, int]] = []


class PeerError(RuntimeError):
    """A peer could not be reached, went silent, sent something malformed or reported its own failure."""


def _desc(addresses: list[str], names: list[str], config: ClusterConfig) -> libspu.link.Desc:
    desc = libspu.link.Desc()
    for name, address in zip(names, addresses):
        desc.add_party(name, address)
    retry = desc.retry_opts
    retry.max_retry, retry.retry_interval_ms, retry.retry_interval_incr_ms, retry.max_retry_interval_ms = SEND_RETRY_MS
    desc.retry_opts = retry
    desc.connect_retry_interval_ms = CONNECT_INTERVAL_MS
    desc.connect_retry_times = max(1, math.ceil(config.connect_timeout_s / CONNECT_ATTEMPT_S))
    desc.recv_timeout_ms = int(config.recv_timeout_s * 1000)
    desc.http_timeout_ms = int(config.recv_timeout_s * 1000)
    return desc


def _connect(desc: libspu.link.Desc, rank: int, what: str, names: list[str], addresses: list[str]) -> libspu.link.Context:
    try:
        return libspu.link.create_brpc(desc, rank)
    except RuntimeError as e:
        peers = ", ".join(f"{n} at {a}" for i, (n, a) in enumerate(zip(names, addresses)) if i != rank)
        raise PeerError(f"{names[rank]} could not connect the {what} link to its peers ({peers}) within the connect timeout: {_first_line(e)}") from e


def connect_io(config: ClusterConfig, role: str) -> libspu.link.Context:
    """The I/O link (owners and computing parties) as `role`; blocks until every process has joined."""
    names = config.roles()
    return _connect(_desc(config.io_addresses, names, config), config.io_rank(role), "I/O", names, config.io_addresses)


def connect_mpc(config: ClusterConfig, party_index: int) -> libspu.link.Context:
    """The SPU protocol link among the computing parties, as party `party_index`."""
    names = [p.id for p in config.parties]
    addresses = [p.mpc_address for p in config.parties]
    return _connect(_desc(addresses, names, config), party_index, "MPC", names, addresses)


def _first_line(e: BaseException) -> str:
    text = str(e).replace("what:", "").strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


def send(ctx: libspu.link.Context, dst: int, header: dict, blobs: list[bytes] = ()) -> None:
    head = json.dumps(header | {"_blobs": [len(b) for b in blobs]}).encode()
    ctx.send(dst, b"".join([MAGIC, struct.pack("<Q", len(head)), head, *blobs]))


def recv(ctx: libspu.link.Context, src: int, peer: str) -> tuple[dict, list[bytes]]:
    """The next message from rank `src` (named `peer` in errors). A peer's {"kind": "abort"} raises."""
    try:
        data = ctx.recv(src)
    except RuntimeError as e:
        raise PeerError(f"no message from {peer} within the receive timeout (did it stop?): {_first_line(e)}") from e
    if data[:4] != MAGIC or len(data) < 12:
        raise PeerError(f"malformed message from {peer}")
    RECEIVED.append((peer, "?", len(data)))
    (n,) = struct.unpack("<Q", data[4:12])
    header = json.loads(data[12 : 12 + n])
    blobs, offset = [], 12 + n
    for size in header.pop("_blobs"):
        blobs.append(data[offset : offset + size])
        offset += size
    RECEIVED[-1] = (peer, str(header.get("kind")), len(data))
    if header.get("kind") == "abort":
        raise PeerError(f"{peer} failed: {header.get('error', 'no reason given')}")
    return header, blobs


def abort(ctx: libspu.link.Context, ranks: list[int], error: str) -> None:
    """Tell `ranks` that this process failed (best effort: a peer may already be gone)."""
    for rank in ranks:
        try:
            send(ctx, rank, {"kind": "abort", "error": error})
        except Exception:  # noqa: BLE001 - the peer is gone; nothing more to tell it
            pass


def pack_shares(shares: list[libspu.Share]) -> tuple[list[dict], list[bytes]]:
    """Shares as (header entries, blobs): each share is its meta blob and its chunk blobs."""
    entries, blobs = [], []
    for s in shares:
        entries.append({"chunks": len(s.share_chunks)})
        blobs += [s.meta, *s.share_chunks]
    return entries, blobs


def unpack_shares(entries: list[dict], blobs: list[bytes]) -> list[libspu.Share]:
    shares, i = [], 0
    for entry in entries:
        share = libspu.Share()
        share.meta = blobs[i]
        share.share_chunks = blobs[i + 1 : i + 1 + entry["chunks"]]
        shares.append(share)
        i += 1 + entry["chunks"]
    return shares
