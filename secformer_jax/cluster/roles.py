"""The processes of a cluster run: computing parties, the model owner, the data owner, the dealer, and a
driver that plays the owners and the dealer for the benchmark harness.

Who sees what: the model owner's weights and the data owner's one-hot tokens, token types and padding
mask leave their owners only as secret shares, one per computing party; the compiled program (public:
architecture, approximations, padded length) comes from the model owner; each party sends its shares
of the outputs to the data owner alone, who reconstructs the logits.

A job on the I/O link (ranks: 0 data owner, 1 model owner, 2 dealer, 3 + i party i):
1. model owner -> each party: {"kind": "job", "input_owners": [per program input: an owner's rank, or the
   name of what the party kept from an earlier job], "receiver": rank, "keep": {...}} and the serialized
   executable;
2. each input owner -> each party: {"kind": "shares", ...} with that party's shares of its inputs; the
   dealer sends {"kind": "dealt", ...}: seeds and corrections (`dealing.Bundle`), from which the party builds
   its shares itself (the dealer receives nothing, it derives the public shapes from its own arguments);
3. each party runs the program on the MPC link, then -> receiver: its output shares (or, for a job whose
   outputs it keeps, none), its SPU profile and the dealer's bytes it received;
4. model owner -> each party: the next job, or {"kind": "stop"}.
With fixed-mask products the first job is the setup program (E = [W] - [B] opened): the parties keep their
shares of B (its "weight_masks" inputs) and E (its outputs, "masked_weights") for the inference's job.
Every failure is reported to the peers that wait on the failing process ({"kind": "abort"}); a process
that vanishes is caught by the receive timeout (or, under `launch`, by the supervisor at once).
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from typing import Any, Callable

import jax
import numpy as np
import spu.api as spu_api
import spu.libspu as libspu

from .. import beaver, dealing
from ..program import HELD, owner
from ..spu_runner import Cost, Program, capture_spu_log, parse_profile, process_cpu_seconds
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
    kept: dict[str, list] = {}  # what earlier jobs left with this party (setup: shares of B, E)
    try:
        mpc = wire.connect_mpc(config, index)
        log(f"{party_id}: connected ({config.protocol}, {len(config.parties)} parties)")
        jobs = 0
        while True:
            header, blobs = io.recv(MO_RANK)
            if header["kind"] == "stop":
                log(f"{party_id}: stop after {jobs} job(s)")
                return jobs
            if header["kind"] != "job":
                raise wire.PeerError(f"expected a job from {MODEL_OWNER}, got {header['kind']!r}")
            executable = libspu.Executable()
            executable.ParseFromString(blobs[0])
            shares, dealt_bytes = _receive_inputs(io, config, index, header, len(executable.input_names), kept)
            runtime = spu_api.Runtime(mpc, config.runtime_config())
            with capture_spu_log() as captured:
                start, cpu_start = time.perf_counter(), process_cpu_seconds()
                for name, share in zip(executable.input_names, shares):
                    runtime.set_var(name, share)
                runtime.run(executable)
                outputs = [runtime.get_var(n) for n in executable.output_names]
                seconds, cpu = time.perf_counter() - start, process_cpu_seconds() - cpu_start
            keep = header.get("keep", {})
            for name, slots in keep.get("inputs", {}).items():
                kept[name] = [shares[i] for i in slots]
            if keep.get("outputs"):
                kept[keep["outputs"]], outputs = outputs, []
            profile = "\n".join(line for line in captured["text"].splitlines() if any(k in line for k in _PROFILE_LINES))
            beaver_bytes = None
            if config.protocol.first_party_triples:  # what a third-party dealer would send for SPU's products (beaver.py)
                own = parse_profile(captured["text"], seconds, 1)
                beaver_bytes = beaver.dealer_bytes(captured["text"], executable.code.decode("utf-8"), config.field, 1, own.send_bytes)
            entries, out_blobs = wire.pack_shares(outputs)
            kind = "kept" if keep.get("outputs") else "outputs"  # "kept": no output shares, the profile only
            io.send(header["receiver"], {"kind": kind, "outputs": entries, "seconds": seconds, "cpu_seconds": cpu,
                                               "profile": profile, "dealt_bytes": dealt_bytes, "beaver_bytes": beaver_bytes}, out_blobs)
            jobs += 1
            log(f"{party_id}: job {jobs} ({executable.name}) ran in {seconds:.2f} s")
    except BaseException as e:
        io.abort(owners, f"{party_id}: {e}")
        raise


def _receive_inputs(io, config: ClusterConfig, index: int, job: dict, count: int, kept: dict) -> tuple[list, int]:
    """This party's shares of a job's inputs, in order: from each owner's message, the dealer's built from
    its seeds and corrections (checked against the job's input shapes), the kept ones from `kept`; and the
    dealer's bytes received."""
    input_owners = job["input_owners"]
    if len(input_owners) != count:
        raise wire.PeerError(f"the job names {len(input_owners)} input owners for {count} program inputs")
    shares: list = [None] * count
    roles = config.roles()
    dealt_bytes = 0
    for name in sorted({o for o in input_owners if isinstance(o, str)}):
        slots = [i for i, o in enumerate(input_owners) if o == name]
        if len(kept.get(name, ())) != len(slots):
            raise wire.PeerError(f"the job reads {len(slots)} kept {name!r} values, this party kept {len(kept.get(name, ()))}")
        for i, share in zip(slots, kept[name]):
            shares[i] = share
    for owner in sorted({o for o in input_owners if not isinstance(o, str)}):
        header, blobs = io.recv(owner)
        slots = [i for i, o in enumerate(input_owners) if o == owner]
        if header["kind"] == "dealt" and owner == DEALER_RANK:
            bundle = dealing.Bundle.from_wire(header, blobs)
            if bundle.rank != index or bundle.protocol != config.protocol:
                raise wire.PeerError(f"the dealer sent shares for party {bundle.rank} under {bundle.protocol}, this is party {index} under {config.protocol}")
            expected = [tuple(job["shapes"][i]) for i in slots]
            if bundle.shapes != expected:
                raise wire.PeerError(f"the dealer dealt {len(bundle.shapes)} values shaped {bundle.shapes[:3]}..., the job expects "
                                     f"{len(expected)} shaped {expected[:3]}...: was the dealer started with the model owner's "
                                     "--spec (or its --model, --approx, --max-length and --linear)?")
            received, dealt_bytes = bundle.shares(), bundle.send_bytes
        elif header["kind"] == "shares":
            received = wire.unpack_shares(header.get("inputs", []), blobs)
        else:
            raise wire.PeerError(f"expected shares from {roles[owner]}, got {header['kind']!r}")
        if len(received) != len(slots):
            raise wire.PeerError(f"{roles[owner]} sent {len(received)} shares, the job expects {len(slots)}")
        for i, share in zip(slots, received):
            shares[i] = share
    return shares, dealt_bytes


def send_job(io, config: ClusterConfig, program: Program, input_owners: list, receiver: int, keep: dict | None = None) -> None:
    """Model owner: announce `program` to every party, inputs from `input_owners` (ranks, or names of kept
    values), outputs to `receiver`; `keep`: {"inputs": {name: [input slots]}, "outputs": name}, what the
    parties keep for later jobs."""
    code = program.executable.SerializeToString()
    shapes = [list(shape) for shape, _ in program.in_shapes]
    for rank in _party_ranks(config):
        io.send(rank, {"kind": "job", "input_owners": input_owners, "receiver": receiver, "keep": keep or {}, "shapes": shapes}, [code])


def input_owners(program: Program, setup: bool = False) -> list:
    """Per program input: the rank that sends it, or the name the parties kept it under."""
    ranks = []
    for name in program.names:
        role = owner(name, setup)
        ranks.append(name if role == HELD else _RANK_OF_OWNER.get(role, DO_RANK))
    return ranks


def send_dealt(io, config: ClusterConfig, values: list[np.ndarray]) -> int:
    """The dealer: seed-based shares of `values` (`dealing.deal`) to each party; returns the bytes sent."""
    bundles = dealing.deal(values, config.protocol)
    for bundle, rank in zip(bundles, _party_ranks(config)):
        io.send(rank, *bundle.to_wire())
    return sum(b.send_bytes for b in bundles)


def share_messages(config: ClusterConfig, values: list[np.ndarray]) -> list[tuple[dict, list[bytes]]]:
    """An owner's message to each party (in party order) with that party's SPU shares of `values`: (header,
    blobs). Its size depends on the values' shapes and dtypes only (the launch audit recomputes it)."""
    spu_io = spu_api.Io(len(config.parties), config.runtime_config())
    per_value = [spu_io.make_shares(v, libspu.Visibility.VIS_SECRET) for v in values]
    messages = []
    for p in range(len(config.parties)):
        entries, blobs = wire.pack_shares([shares[p] for shares in per_value])
        messages.append(({"kind": "shares", "inputs": entries}, blobs))
    return messages


def send_inputs(io, config: ClusterConfig, values: list[np.ndarray]) -> int:
    """An owner: secret-share `values` and send each party its shares; returns the bytes of shares sent."""
    sent = 0
    for (header, blobs), rank in zip(share_messages(config, values), _party_ranks(config)):
        io.send(rank, header, blobs)
        sent += sum(len(b) for b in blobs)
    return sent


def collect_outputs(io, config: ClusterConfig) -> tuple[list[np.ndarray], Cost, dict]:
    """The receiver: every party's output shares, reconstructed; the cost summed over the parties (seconds:
    the slowest party's run); {"dealt_bytes": the dealer's bytes the parties received for the job,
    "compute_seconds": each party process's CPU time in the run}."""
    spu_io = spu_api.Io(len(config.parties), config.runtime_config())
    per_party, profiles, seconds, cpu, dealt, beaver_bytes = [], [], [], [], 0, set()
    for party, rank in zip(config.parties, _party_ranks(config)):
        header, blobs = io.recv(rank)
        per_party.append(wire.unpack_shares(header["outputs"], blobs))
        profiles.append(header["profile"])
        seconds.append(header["seconds"])
        cpu.append(float(header["cpu_seconds"]))
        dealt += int(header["dealt_bytes"])
        beaver_bytes.add(header.get("beaver_bytes"))
    outputs = [spu_io.reconstruct(list(shares)) for shares in zip(*per_party)]
    cost = parse_profile("\n".join(profiles), max(seconds), len(config.parties))
    cost.party_compute_seconds = cpu
    if len(beaver_bytes) != 1:  # each SEMI2K party counts the same corrections from its own profile
        raise wire.PeerError(f"the parties count different SEMI2K triple corrections: {sorted(beaver_bytes, key=str)}")
    cost.beaver_bytes = beaver_bytes.pop()
    return outputs, cost, {"dealt_bytes": dealt, "compute_seconds": cpu}


def stop_parties(io, config: ClusterConfig) -> None:
    for rank in _party_ranks(config):
        io.send(rank, {"kind": "stop"})


def run_model_owner(config: ClusterConfig, serve: Callable[[int], dict], log: Callable[[str], None] = _log) -> None:
    """Model owner: wait for the data owner's request (its public padded length), then `serve(seq_len)`
    gives {"program", "weights" (in the program's input order), "facts" (public, for the data owner),
    "setup": None or (setup program, its weight inputs)}; run the setup job if any (its bytes go to the data
    owner), send the inference job and the weight shares, and stop the parties once the data owner is done."""
    log(f"{MODEL_OWNER}: joining the I/O link at {config.model_owner}")
    io = wire.connect_io(config, MODEL_OWNER)
    try:
        request, _ = io.recv(DO_RANK)
        seq_len = int(request["seq_len"])
        log(f"{MODEL_OWNER}: request for {seq_len} tokens; compiling")
        served = serve(seq_len)
        program, weights = served["program"], served["weights"]
        io.send(DO_RANK, {"kind": "model", **served["facts"]})
        if served["setup"] is not None:
            io.send(DO_RANK, {"kind": "setup", **_run_setup(io, config, *served["setup"], log)})
        owners = input_owners(program)
        if owners.count(MO_RANK) != len(weights):
            raise ValueError(f"the program takes {owners.count(MO_RANK)} weight arrays, the model owner has {len(weights)}")
        send_job(io, config, program, owners, receiver=DO_RANK)
        send_inputs(io, config, weights)
        log(f"{MODEL_OWNER}: weights shared ({sum(w.size for w in weights):,} values); waiting for the data owner")
        io.recv(DO_RANK)
        stop_parties(io, config)
        io.send(DEALER_RANK, {"kind": "stop"})
        io.recv(DEALER_RANK)  # its bye
    except BaseException as e:
        io.abort([DO_RANK, DEALER_RANK] + _party_ranks(config), f"{MODEL_OWNER}: {e}")
        raise


def _run_setup(io, config: ClusterConfig, program: Program, weights: list[np.ndarray], log) -> dict:
    """The fixed-mask setup job: the parties open E = [W] - [B] and keep E and their shares of B; returns
    its bytes (the model owner's shares, the dealer's seeds and corrections, the opening)."""
    keep = {"inputs": {"weight_masks": [i for i, n in enumerate(program.names) if n == "weight_masks"]}, "outputs": "masked_weights"}
    send_job(io, config, program, input_owners(program, setup=True), receiver=MO_RANK, keep=keep)
    owner_bytes = send_inputs(io, config, weights)
    _, cost, reports = collect_outputs(io, config)
    dealer_bytes = reports["dealt_bytes"]
    log(f"{MODEL_OWNER}: setup done (E = W - B opened by the parties, {cost.send_bytes:,} bytes)")
    return {"send_bytes": owner_bytes + dealer_bytes + cost.send_bytes, "model_owner_bytes": owner_bytes,
            "dealer_bytes": dealer_bytes, "online_bytes": cost.send_bytes}


def run_dealer(config: ClusterConfig, deal: Callable[[], list[list[np.ndarray]]], log: Callable[[str], None] = _log) -> int:
    """Dealer: join the I/O link, deal `deal()` (per job with dealt inputs, in job order: the setup's B, then
    the inference's randomness; each in the program's input order) to the computing parties as seeds and
    corrections, then wait for the model owner's stop (the one message it receives: no data) and answer bye
    (leaving earlier, or after the model owner, breaks a peer's pending link traffic). What to deal follows
    from public facts given on its command line (model architecture, approximations, padded length, linear
    layers). Returns the bytes sent."""
    log(f"{DEALER}: joining the I/O link at {config.dealer}")
    io = wire.connect_io(config, DEALER)
    try:
        jobs = deal()
        sent = sum(send_dealt(io, config, values) for values in jobs)
        count = sum(v.size for values in jobs for v in values)
        log(f"{DEALER}: dealt {count:,} values to {len(config.parties)} parties ({sent:,} bytes of seeds and corrections)" if jobs else f"{DEALER}: nothing to deal for this program")
        header, _ = io.recv(MO_RANK)
        if header["kind"] != "stop":
            raise wire.PeerError(f"expected stop from {MODEL_OWNER}, got {header['kind']!r}")
        io.send(MO_RANK, {"kind": "bye"})  # the model owner leaves after this: no send of ours outlives a peer
        return sent
    except BaseException as e:
        io.abort(_party_ranks(config), f"{DEALER}: {e}")
        raise


def run_data_owner(config: ClusterConfig, seq_len: int, make_inputs: Callable[[dict], list[np.ndarray]], log: Callable[[str], None] = _log) -> tuple[np.ndarray, Cost, dict, dict]:
    """Data owner: ask for a `seq_len` program, build its secret inputs from the model's public facts
    (`make_inputs(facts)`: every input of the data owner, in the program's input order), share them, and
    reconstruct the outputs; returns (first output, cost, facts, {"dealt_bytes": the dealer's bytes for this
    inference as the parties received them, "compute_seconds": each party's CPU time in the run, "setup": the
    fixed-mask setup's bytes or None})."""
    log(f"{DATA_OWNER}: joining the I/O link at {config.data_owner}")
    io = wire.connect_io(config, DATA_OWNER)
    try:
        io.send(MO_RANK, {"kind": "request", "seq_len": seq_len})
        facts, _ = io.recv(MO_RANK)
        setup = None
        if facts["spec"]["linear"] == "fixed-mask":
            setup, _ = io.recv(MO_RANK)
            setup.pop("kind")
        send_inputs(io, config, make_inputs(facts))
        log(f"{DATA_OWNER}: inputs shared; waiting for the parties' output shares")
        outputs, cost, reports = collect_outputs(io, config)
        io.send(MO_RANK, {"kind": "done"})
        return outputs[0], cost, facts, reports | {"setup": setup}
    except BaseException as e:
        io.abort([MO_RANK] + _party_ranks(config), f"{DATA_OWNER}: {e}")
        raise


@dataclasses.dataclass(frozen=True)
class Kept:
    """A value the parties of a cluster kept from an earlier job, by the name they keep it under."""

    name: str


class Driver:
    """Both owners and the dealer in this process (three I/O link endpoints; the model owner's sends every
    owner's input, the dealer's the dealt ones), for running many programs through a cluster
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
        self._io, self._dealer_io = links[MODEL_OWNER], links[DEALER]
        self._data_owner_io = links[DATA_OWNER]  # only completes the mesh
        self._jobs = 0
        self._closed = False

    def run(self, program: Program, *args, dealt=None, held: dict | None = None, keep: dict | None = None) -> tuple[Any, Cost]:
        """Like `Simulation.run`: `dealt` (a `dealing.DealtInputs`) goes out from the dealer's endpoint as
        seeds and corrections; `keep` makes the parties keep the named inputs and the outputs (under names
        unique to this job) and returns {name: `Kept`} for a later run's `held`."""
        held = held or {}
        if any(not isinstance(v, Kept) for v in held.values()):
            raise ValueError("a cluster's parties hold only what they kept from an earlier job of this cluster")
        names = tuple(dealt.names) if dealt is not None else ()
        flat = program.flat_inputs(args, names + tuple(held))
        owners = [DEALER_RANK if n in names else held[n].name if n in held else MO_RANK for n in program.names]
        spec, kept = None, None
        if keep:
            self._jobs += 1
            tag = f"job{self._jobs}"
            kept = {n: Kept(f"{tag}/{n}") for n in [*keep.get("inputs", ()), keep["outputs"]]}
            spec = {"inputs": {kept[n].name: [i for i, m in enumerate(program.names) if m == n] for n in keep.get("inputs", ())},
                    "outputs": kept[keep["outputs"]].name}
        send_job(self._io, self.config, program, owners, receiver=MO_RANK, keep=spec)
        if MO_RANK in owners:  # a party reads a message from each rank that owns one of its inputs, no other
            send_inputs(self._io, self.config, [v for v, o in zip(flat, owners) if o == MO_RANK])
        if DEALER_RANK in owners:
            for bundle, rank in zip(dealt.bundles, _party_ranks(self.config)):
                self._dealer_io.send(rank, *bundle.to_wire())
        outputs, cost, _ = collect_outputs(self._io, self.config)
        return (kept, cost) if keep else (jax.tree_util.tree_unflatten(program.out_tree, outputs), cost)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            stop_parties(self._io, self.config)
