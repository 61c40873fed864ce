"""Messages between cluster processes over SPU's brpc links: a JSON header plus binary blobs, no pickle
(a peer's bytes are never executed). Links come from `spu.libspu.link`; timeouts from the config.

Frame: b"SFJ1", the header's length (8 bytes, little endian), the UTF-8 JSON header (with the blobs'
sizes under "_blobs"), then the blobs back to back.
"""

from __future__ import annotations

import errno
import json
import math
import socket
import struct

import spu.libspu as libspu

from .config import ClusterConfig

MAGIC = b"SFJ1"
CONNECT_INTERVAL_MS = 500
# A send is retried after 0.5, 1 and 1.5 s (brpc's default waits 1, 3 and 5 s); one connection attempt is a
# send, so it takes about this long when the peer is absent (measured 3.3 s), which sets the attempt count.
SEND_RETRY_MS = (3, 500, 500, 2000)  # max_retry, first interval, increment, max interval
CONNECT_ATTEMPT_S = 3.5


# The ledger of this process: every message its I/O links delivered, as (sender, kind, bytes, blob bytes),
# entered where it arrives, and every message it sent, as (receiver, kind, bytes, blob bytes), entered where
# it leaves. Only a `Link` touches SPU's link context, so nothing is received or sent around them: `secformer
# node` prints both when it ends, and the launch audit checks every role's received bytes against its
# senders' and against what the protocol says it may receive (tests/test_cluster.py).
RECEIVED: list[tuple[str, str, int, int]] = []
SENT: list[tuple[str, str, int, int]] = []


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


def _connect(desc: libspu.link.Desc, rank: int, what: str, names: list[str], addresses: list[str]):
    try:
        return libspu.link.create_brpc(desc, rank)
    except RuntimeError as e:
        peers = ", ".join(f"{n} at {a}" for i, (n, a) in enumerate(zip(names, addresses)) if i != rank)
        raise PeerError(f"{names[rank]} could not connect the {what} link to its peers ({peers}) within the connect timeout: {_first_line(e)}") from e


def check_listenable(what: str, address: str) -> None:
    """A PeerError naming `what` unless this machine can listen on `address` now: its host must be one of
    this machine's and no process may listen on its port (brpc reuses addresses, so a closed connection's
    port in TIME_WAIT passes, as it does for brpc)."""
    host, port = address.rsplit(":", 1)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except socket.gaierror as e:
            raise PeerError(f"{what} {address}: unknown host ({e.strerror})") from e
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise PeerError(f"{what} {address} is in use by another process: free the port or pick another in the config") from e
            if e.errno == errno.EADDRNOTAVAIL:
                raise PeerError(f"{what} {address} is not an address of this machine") from e
            raise PeerError(f"{what} {address}: cannot listen there ({e.strerror})") from e


def connect_io(config: ClusterConfig, role: str) -> "Link":
    """The I/O link (owners and computing parties) as `role`; blocks until every process has joined. A
    busy or foreign address of `role`'s own is refused at once, named (`check_listenable`)."""
    names = config.roles()
    check_listenable(f"{role}'s I/O address", config.io_addresses[config.io_rank(role)])
    return Link(_connect(_desc(config.io_addresses, names, config), config.io_rank(role), "I/O", names, config.io_addresses), names)


def connect_mpc(config: ClusterConfig, party_index: int) -> libspu.link.Context:
    """The SPU protocol link among the computing parties, as party `party_index`."""
    names = [p.id for p in config.parties]
    addresses = [p.mpc_address for p in config.parties]
    check_listenable(f"{names[party_index]}'s MPC address", addresses[party_index])
    return _connect(_desc(addresses, names, config), party_index, "MPC", names, addresses)


def _first_line(e: BaseException) -> str:
    text = str(e).replace("what:", "").strip()
    return text.splitlines()[0].strip() if text else type(e).__name__


def frame(header: dict, blobs: list[bytes] = ()) -> bytes:
    """One message as it travels (module doc)."""
    head = json.dumps(header | {"_blobs": [len(b) for b in blobs]}).encode()
    return b"".join([MAGIC, struct.pack("<Q", len(head)), head, *blobs])


class Link:
    """This process's end of the I/O link (ranks named by `names`): the only holder of SPU's link context,
    so every message in or out is entered in the ledger (`RECEIVED`, `SENT`)."""

    def __init__(self, ctx, names: list[str]):
        self.__ctx, self.names = ctx, list(names)

    def send(self, dst: int, header: dict, blobs: list[bytes] = ()) -> None:
        data = frame(header, blobs)
        self.__ctx.send(dst, data)
        SENT.append((self.names[dst], str(header.get("kind")), len(data), sum(len(b) for b in blobs)))

    def recv(self, src: int) -> tuple[dict, list[bytes]]:
        """The next message from rank `src`. A peer's {"kind": "abort"} raises."""
        peer = self.names[src]
        try:
            data = self.__ctx.recv(src)
        except RuntimeError as e:
            raise PeerError(f"no message from {peer} within the receive timeout (did it stop?): {_first_line(e)}") from e
        RECEIVED.append((peer, "?", len(data), len(data)))  # counted on arrival, before anything is parsed
        if data[:4] != MAGIC or len(data) < 12:
            raise PeerError(f"malformed message from {peer}")
        (n,) = struct.unpack("<Q", data[4:12])
        try:
            header = json.loads(data[12 : 12 + n])
            sizes = header.pop("_blobs")
            if not isinstance(header, dict) or not all(isinstance(b, int) and b >= 0 for b in sizes):
                raise ValueError("not a header with blob sizes")
        except (ValueError, KeyError, AttributeError, TypeError) as e:
            raise PeerError(f"malformed message header from {peer}: {e}") from e
        blobs, offset = [], 12 + n
        for size in sizes:
            blobs.append(data[offset : offset + size])
            offset += size
        if offset != len(data):
            raise PeerError(f"message from {peer} has {len(data)} bytes, its header accounts for {offset}")
        RECEIVED[-1] = (peer, str(header.get("kind")), len(data), sum(sizes))
        if header.get("kind") == "abort":
            raise PeerError(f"{peer} failed: {header.get('error', 'no reason given')}")
        return header, blobs

    def abort(self, ranks: list[int], error: str) -> None:
        """Tell `ranks` that this process failed (best effort: a peer may already be gone)."""
        for rank in ranks:
            try:
                self.send(rank, {"kind": "abort", "error": error})
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
