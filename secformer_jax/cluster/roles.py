"""The processes of a cluster run: computing parties, the model owner, the data owner, the dealer, and a
driver that plays the owners and the dealer for the benchmark harness.

Who sees what: the model owner's weights and the data owner's one-hot tokens, token types and padding
mask leave their owners only as secret shares, one per computing party; the compiled program (public:
architecture, approximations, padded length) comes from the model owner; each party sends its shares
of the outputs to the data owner alone, who reconstructs the logits.

A job on the I/O link (ranks: 0 data owner, 1 model owner, 2 dealer, 3 + i party i):
1. model owner -> each party: {"kind": "job", "input_owners": [rank per program input], "receiver": rank}
   and the serialized executable;
2. each input owner -> each party: {"kind": "shares", ...} with that party's shares of its inputs (the
   dealer's: the dealt randomness; the dealer receives nothing, it derives the public shapes from its own
   arguments);
3. each party runs the program on the MPC link, then -> receiver: its output shares and its SPU profile;
4. model owner -> each party: the next job, or {"kind": "stop"}.
Every failure is reported to the peers that wait on the failing process ({"kind": "abort"}); a process
that vanishes is caught by the receive timeout (or, under `launch`, by the supervisor at once).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable

import jax
import numpy as np
import spu.api as spu_api
import spu.libspu as libspu

from ..program import owner
from ..spu_runner import Cost, Program, capture_spu_log, parse_profile
from . import wire
from .config import DATA_OWNER, DEALER, MODEL_OWNER, ClusterConfig

DO_RANK, MO_RANK, DEALER_RANK, FIRST_PARTY_RANK = 0, 1, 2, 3
_RANK_OF_OWNER = {MODEL_OWNER: MO_RANK, DEALER: DEALER_RANK}  # inputs of anyone else: the data owner's
_PROFILE_LINES = ("- pphlo.", "Link details:")


def _party_ranks(config: ClusterConfig) -> list[int]:
    return list(range(FIRST_PARTY_RANK, FIRST_PARTY_RANK + len(config.parties)))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_party(config: ClusterConfig, party_id: str, log: Callable[[str], None] = _log) -> int:
    """Serve jobs as computing party `party_id` until the model owner says stop; returns the job count."""
    index = config.io_rank(party_id) - FIRST_PARTY_RANK
    if index < 0:
        raise ValueError(f"{party_id} is an owner, not a computing party")
    log(f"{party_id}: joining the I/O link at {config.parties[index].io_address}")
    io = wire.connect_io(config, party_id)
    owners = [DO_RANK, MO_RANK]
    try:
        mpc = wire.connect_mpc(config, index)
        log(f"{party_id}: connected ({config.protocol}, {len(config.parties)} parties)")
        jobs = 0
        while True:
            header, blobs = wire.recv(io, MO_RANK, MODEL_OWNER)
            if header["kind"] == "stop":
                log(f"{party_id}: stop after {jobs} job(s)")
                return jobs
            if header["kind"] != "job":
                raise wire.PeerError(f"expected a job from {MODEL_OWNER}, got {header['kind']!r}")
            executable = libspu.Executable()
            executable.ParseFromString(blobs[0])
            shares = _receive_inputs(io, config, header["input_owners"], len(executable.input_names))
            runtime = spu_api.Runtime(mpc, config.runtime_config())
            with capture_spu_log() as captured:
                start = time.perf_counter()
                for name, share in zip(executable.input_names, shares):
                    runtime.set_var(name, share)
                runtime.run(executable)
                outputs = [runtime.get_var(n) for n in executable.output_names]
                seconds = time.perf_counter() - start
            profile = "\n".join(line for line in captured["text"].splitlines() if any(k in line for k in _PROFILE_LINES))
            entries, out_blobs = wire.pack_shares(outputs)
            wire.send(io, header["receiver"], {"kind": "outputs", "outputs": entries, "seconds": seconds, "profile": profile}, out_blobs)
            jobs += 1
            log(f"{party_id}: job {jobs} ({executable.name}) ran in {seconds:.2f} s")
    except BaseException as e:
        wire.abort(io, owners, f"{party_id}: {e}")
        raise


def _receive_inputs(io, config: ClusterConfig, input_owners: list[int], count: int) -> list:
    if len(input_owners) != count:
        raise wire.PeerError(f"the job names {len(input_owners)} input owners for {count} program inputs")
    shares: list = [None] * count
    roles = config.roles()
    for owner in sorted(set(input_owners)):
        header, blobs = wire.recv(io, owner, roles[owner])
        slots = [i for i, o in enumerate(input_owners) if o == owner]
        received = wire.unpack_shares(header.get("inputs", []), blobs)
        if header["kind"] != "shares" or len(received) != len(slots):
            raise wire.PeerError(f"{roles[owner]} sent {len(received)} shares, the job expects {len(slots)}")
        for i, share in zip(slots, received):
            shares[i] = share
    return shares


def send_job(io, config: ClusterConfig, program: Program, input_owners: list[int], receiver: int) -> None:
    """Model owner: announce `program` to every party, inputs from `input_owners`, outputs to `receiver`."""
    code = program.executable.SerializeToString()
    for rank in _party_ranks(config):
        wire.send(io, rank, {"kind": "job", "input_owners": input_owners, "receiver": receiver}, [code])


def send_inputs(io, config: ClusterConfig, values: list[np.ndarray]) -> None:
    """An owner: secret-share `values` and send each party its shares."""
    spu_io = spu_api.Io(len(config.parties), config.runtime_config())
    per_value = [spu_io.make_shares(v, libspu.Visibility.VIS_SECRET) for v in values]
    for p, rank in enumerate(_party_ranks(config)):
        entries, blobs = wire.pack_shares([shares[p] for shares in per_value])
        wire.send(io, rank, {"kind": "shares", "inputs": entries}, blobs)


def collect_outputs(io, config: ClusterConfig) -> tuple[list[np.ndarray], Cost]:
    """The receiver: every party's output shares, reconstructed; the cost summed over the parties (seconds:
    the slowest party's run)."""
    spu_io = spu_api.Io(len(config.parties), config.runtime_config())
    per_party, profiles, seconds = [], [], []
    for party, rank in zip(config.parties, _party_ranks(config)):
        header, blobs = wire.recv(io, rank, party.id)
        per_party.append(wire.unpack_shares(header["outputs"], blobs))
        profiles.append(header["profile"])
        seconds.append(header["seconds"])
    outputs = [spu_io.reconstruct(list(shares)) for shares in zip(*per_party)]
    return outputs, parse_profile("\n".join(profiles), max(seconds), len(config.parties))


def stop_parties(io, config: ClusterConfig) -> None:
    for rank in _party_ranks(config):
        wire.send(io, rank, {"kind": "stop"})


def run_model_owner(config: ClusterConfig, serve: Callable[[int], tuple[Program, list[np.ndarray], dict]], log: Callable[[str], None] = _log) -> None:
    """Model owner: wait for the data owner's request (its public padded length), then `serve(seq_len)`
    gives (program, the weights in the program's input order, public model facts for the data owner);
    send the job and the weight shares, and stop the parties once the data owner is done."""
    log(f"{MODEL_OWNER}: joining the I/O link at {config.model_owner}")
    io = wire.connect_io(config, MODEL_OWNER)
    try:
        request, _ = wire.recv(io, DO_RANK, DATA_OWNER)
        seq_len = int(request["seq_len"])
        log(f"{MODEL_OWNER}: request for {seq_len} tokens; compiling")
        program, weights, facts = serve(seq_len)
        wire.send(io, DO_RANK, {"kind": "model", **facts})
        owners = [_RANK_OF_OWNER.get(owner(name), DO_RANK) for name in program.names]
        if owners.count(MO_RANK) != len(weights):
            raise ValueError(f"the program takes {owners.count(MO_RANK)} weight arrays, the model owner has {len(weights)}")
        send_job(io, config, program, owners, receiver=DO_RANK)
        send_inputs(io, config, weights)
        log(f"{MODEL_OWNER}: weights shared ({sum(w.size for w in weights):,} values); waiting for the data owner")
        wire.recv(io, DO_RANK, DATA_OWNER)
        stop_parties(io, config)
        wire.send(io, DEALER_RANK, {"kind": "stop"})
        wire.recv(io, DEALER_RANK, DEALER)  # its bye
    except BaseException as e:
        wire.abort(io, [DO_RANK, DEALER_RANK] + _party_ranks(config), f"{MODEL_OWNER}: {e}")
        raise


def run_dealer(config: ClusterConfig, deal: Callable[[], list[np.ndarray]], log: Callable[[str], None] = _log) -> int:
    """Dealer: join the I/O link, share `deal()` (the dealt inputs, in the program's input order) with the
    computing parties, then wait for the model owner's stop (the one message it receives: no data) and answer
    bye (leaving earlier, or after the model owner, breaks a peer's pending link traffic). What to deal follows from public facts given on its
    command line (model architecture, approximations, padded length). Returns the number of values dealt."""
    log(f"{DEALER}: joining the I/O link at {config.dealer}")
    io = wire.connect_io(config, DEALER)
    try:
        values = deal()
        if values:
            send_inputs(io, config, values)
        count = sum(v.size for v in values)
        log(f"{DEALER}: dealt {count:,} values to {len(config.parties)} parties" if values else f"{DEALER}: nothing to deal for this program")
        header, _ = wire.recv(io, MO_RANK, MODEL_OWNER)
        if header["kind"] != "stop":
            raise wire.PeerError(f"expected stop from {MODEL_OWNER}, got {header['kind']!r}")
        wire.send(io, MO_RANK, {"kind": "bye"})  # the model owner leaves after this: no send of ours outlives a peer
        return count
    except BaseException as e:
        wire.abort(io, _party_ranks(config), f"{DEALER}: {e}")
        raise


def run_data_owner(config: ClusterConfig, seq_len: int, make_inputs: Callable[[dict], list[np.ndarray]], log: Callable[[str], None] = _log) -> tuple[np.ndarray, Cost, dict]:
    """Data owner: ask for a `seq_len` program, build its secret inputs from the model's public facts
    (`make_inputs(facts)`: every input not the model owner's, in the program's input order), share them, and reconstruct the outputs; returns (first output, cost, facts)."""
    log(f"{DATA_OWNER}: joining the I/O link at {config.data_owner}")
    io = wire.connect_io(config, DATA_OWNER)
    try:
        wire.send(io, MO_RANK, {"kind": "request", "seq_len": seq_len})
        facts, _ = wire.recv(io, MO_RANK, MODEL_OWNER)
        send_inputs(io, config, make_inputs(facts))
        log(f"{DATA_OWNER}: inputs shared; waiting for the parties' output shares")
        outputs, cost = collect_outputs(io, config)
        wire.send(io, MO_RANK, {"kind": "done"})
        return outputs[0], cost, facts
    except BaseException as e:
        wire.abort(io, [MO_RANK] + _party_ranks(config), f"{DATA_OWNER}: {e}")
        raise


class Driver:
    """Both owners and the dealer in this process (three I/O link endpoints; the model owner's sends every
    input), for running many programs through a cluster
    whose parties are already started: `run(program, *args)` returns (outputs, Cost) like
    `Simulation.run`. `close()` stops the parties."""

    def __init__(self, config: ClusterConfig):
        self.config = config
        links: dict[str, Any] = {}
        errors: list[BaseException] = []

        def join(role):
            try:
                links[role] = wire.connect_io(config, role)
            except BaseException as e:  # surfaced below
                errors.append(e)

        threads = [threading.Thread(target=join, args=(r,)) for r in (DATA_OWNER, MODEL_OWNER, DEALER)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        self._io = links[MODEL_OWNER]  # the data owner's endpoint only completes the mesh
        self._idle = (links[DATA_OWNER], links[DEALER])
        self._closed = False

    def run(self, program: Program, *args) -> tuple[Any, Cost]:
        if any(program.public):
            raise ValueError("a program with public inputs (fixed-mask products) cannot run through a cluster yet: its inputs are sent as secret shares")
        flat = program.flat_inputs(args)
        send_job(self._io, self.config, program, [MO_RANK] * len(flat), receiver=MO_RANK)
        send_inputs(self._io, self.config, flat)
        outputs, cost = collect_outputs(self._io, self.config)
        return jax.tree_util.tree_unflatten(program.out_tree, outputs), cost

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            stop_parties(self._io, self.config)
