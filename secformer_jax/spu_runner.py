"""Compile a JAX function once with SPU and run it many times in SPU's multi-party simulation.

Protocols (SPU 0.9.5, semi-honest): `semi2k` (2PC, additive shares, trusted-first-party Beaver triples),
`cheetah` (2PC, OT/HE-based, no dealer), `aby3` (3PC replicated shares). Ring FM64 with 18 fractional bits
by default, FM128 (fraction bits 40) as an option.

What is secret and what is public:
- Every array argument is secret-shared (VIS_SECRET): model weights belong to the model owner, the
  one-hot tokens, token types and padding mask to the data owner. No computing party sees any of them.
  The exception is what a caller marks public (`compile_named`'s `public`): the masked
  weights E = W - B of the fixed-mask linear layers (`linear.py`), opened by their setup program, uniform
  on the ring and so no secret.
- Inputs may also arrive already shared (`Simulation.run`'s `dealt`: the dealer's seed-based shares,
  `dealing.py`; `held`: what the parties kept from an earlier program).
- Shapes are public: batch, sequence length (the padded length, not the true one: the mask is secret),
  vocabulary and layer sizes, and the program itself (which approximation, how many iterations).
- Outputs are revealed to whoever reconstructs them (in the simulation: the caller, standing in for the
  data owner).

Cost: `enable_pphlo_profile` makes SPU's C++ runtime print per-op time, bytes and send actions to its
process-wide log. `run` points that log at a temporary file for the duration of the run and parses the
report into a `Cost`: bytes and send actions summed over the parties, and each party's own.
"""

from __future__ import annotations

import dataclasses
import os
import re
import resource
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable

import jax
import numpy as np
import spu.api as spu_api
import spu.libspu as libspu
import spu.utils.frontend as spu_fe

from . import beaver, protocols
from .protocols import Protocol

FIELDS = {"fm64": (libspu.FieldType.FM64, 18), "fm128": (libspu.FieldType.FM128, 40)}
# Runtime and compiler options of SPU's own PUMA benchmarks, used for every method so that all of them run
# on one backend: Taylor exp (only exp-based softmaxes use it) and x / broadcast(y) -> x * broadcast(1 / y).
SPU_RUNTIME_OPTIONS = {"fxp_exp_mode": libspu.RuntimeConfig.ExpMode.EXP_TAYLOR}
SPU_COMPILER_OPTIONS = {"enable_optimize_denominator_with_broadcast": True}
SIMULATION_RECV_TIMEOUT_S = 3600  # a simulated party's wait for another's message (`Simulation.run`)


def _choice(kind: str, value: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"unknown {kind} {value!r}; choose one of: {', '.join(choices)}")
    return value


def runtime_config(protocol: Protocol | str = protocols.DEFAULT, field: str = "fm64", *, profile: bool = True, **options) -> libspu.RuntimeConfig:
    """SPU runtime config. `options` set RuntimeConfig attributes, e.g. fxp_exp_mode (PUMA's Taylor exp)."""
    protocol = protocols.get(protocol)
    ftype, frac_bits = FIELDS[_choice("field", field, FIELDS)]
    config = libspu.RuntimeConfig(protocol=protocol.kind, field=ftype, fxp_fraction_bits=frac_bits)
    config.enable_pphlo_profile = profile
    config.enable_hal_profile = profile and protocol.first_party_triples  # the MPC-level profile `beaver.dealer_bytes` reads
    for name, value in options.items():
        if not hasattr(config, name):
            raise ValueError(f"unknown SPU runtime option {name!r}")
        setattr(config, name, value)
    return config


@dataclasses.dataclass
class OpCost:
    count: int
    seconds: float
    send_bytes: int
    recv_bytes: int
    send_actions: int
    recv_actions: int


@dataclasses.dataclass
class Cost:
    """One SPU run's cost: wall seconds of the whole run (all parties, simulated in one process); bytes and
    send actions summed over all parties (`party_*`: each party's own, its compute seconds included), and
    SPU's per-op (pphlo) breakdown, also summed over parties. Summing matters: protocols such as ABY3 pick which party does a step at
    random, so one party's share varies between runs while the sum does not."""

    seconds: float
    send_bytes: int
    recv_bytes: int
    send_actions: int
    recv_actions: int
    party_send_bytes: list[int]
    party_send_actions: list[int]
    by_op: dict[str, OpCost]
    # each party's CPU seconds in the run: measured per process with one process per party; in the
    # simulation, the process's CPU time split in proportion to each party thread's own (`Simulation.run`)
    party_compute_seconds: list[float] = dataclasses.field(default_factory=list)
    # SEMI2K: the bytes a third-party dealer would send for SPU's own products (`beaver.dealer_bytes`);
    # None for the other protocols (ABY3 and Cheetah make theirs without a dealer)
    beaver_bytes: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def total(cls, costs: list["Cost"]) -> "Cost":
        """The cost of running `costs`' programs one after the other: seconds, bytes, actions, each party's
        figures and compute, and SEMI2K's triples summed; per-op counts, seconds and bytes summed too."""
        by_op: dict[str, OpCost] = {}
        for cost in costs:
            for op, c in cost.by_op.items():
                old = dataclasses.astuple(by_op[op]) if op in by_op else (0,) * 6
                by_op[op] = OpCost(*(a + b for a, b in zip(old, dataclasses.astuple(c))))
        column = lambda field: [sum(v) for v in zip(*(getattr(c, field) for c in costs))]
        beaver = [c.beaver_bytes for c in costs]
        return cls(
            sum(c.seconds for c in costs), sum(c.send_bytes for c in costs), sum(c.recv_bytes for c in costs),
            sum(c.send_actions for c in costs), sum(c.recv_actions for c in costs), column("party_send_bytes"),
            column("party_send_actions"), by_op, column("party_compute_seconds"),
            None if all(b is None for b in beaver) else sum(b or 0 for b in beaver),
        )


_OP_LINE = re.compile(
    r"- pphlo\.(?P<op>\S+), executed (?P<count>\d+) times, duration (?P<sec>[0-9.e+-]+)s, "
    r"send bytes (?P<sb>\d+) recv bytes (?P<rb>\d+), send actions (?P<sa>\d+), recv actions (?P<ra>\d+)"
)
_LINK_LINE = re.compile(
    r"Link details: total send bytes (?P<sb>\d+), recv bytes (?P<rb>\d+), "
    r"send actions (?P<sa>\d+), recv actions (?P<ra>\d+)"
)


def parse_profile(log: str, seconds: float, parties: int) -> Cost:
    """Parse the profiling reports of `parties` parties (pphlo op lines and 'Link details' lines, possibly
    interleaved line by line) into one Cost."""
    links = list(_LINK_LINE.finditer(log))
    if len(links) != parties:
        raise RuntimeError(
            f"expected {parties} SPU 'Link details' profile lines, found {len(links)}; was enable_pphlo_profile set?"
        )
    by_op: dict[str, OpCost] = {}
    for m in _OP_LINE.finditer(log):
        values = (int(m["count"]), float(m["sec"]), int(m["sb"]), int(m["rb"]), int(m["sa"]), int(m["ra"]))
        if m["op"] in by_op:
            old = dataclasses.astuple(by_op[m["op"]])
            # count and duration: the parties run the same ops concurrently; keep party-maximal values
            values = (max(old[0], values[0]), max(old[1], values[1])) + tuple(a + b for a, b in zip(old[2:], values[2:]))
        by_op[m["op"]] = OpCost(*values)
    total = lambda key: sum(int(m[key]) for m in links)
    return Cost(
        seconds, total("sb"), total("rb"), total("sa"), total("ra"),
        [int(m["sb"]) for m in links], [int(m["sa"]) for m in links], by_op,
    )


def process_cpu_seconds() -> float:
    """This process's CPU time so far (user + system, all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextmanager
def rss_peak(interval_s: float = 0.2):
    """The process's peak resident memory during the body (a dict whose "bytes" is set on exit), sampled
    from /proc/self/statm every `interval_s` by a thread (ru_maxrss only grows: it cannot tell one stage's
    peak from an earlier one's). Sampling can miss a spike shorter than the interval."""
    page = os.sysconf("SC_PAGE_SIZE")
    current = lambda: int(open("/proc/self/statm").read().split()[1]) * page
    found, stop = {"bytes": current()}, threading.Event()

    def sample():
        while not stop.wait(interval_s):
            found["bytes"] = max(found["bytes"], current())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join()
        found["bytes"] = max(found["bytes"], current())


_log_lock = threading.Lock()
# SPU's C++ log goes to the console only when asked (SECFORMER_SPU_LOG=1): its lines otherwise mix into
# this program's output (e.g. "thread_pool.cc ... Create a fixed thread pool" on stdout).
_SPU_CONSOLE = os.environ.get("SECFORMER_SPU_LOG", "") not in ("", "0")


def _set_spu_log(path: str, console: bool) -> None:
    options = libspu.logging.LogOptions()
    options.system_log_path = path
    options.enable_console_logger = console
    libspu.logging.setup_logging(options)


_set_spu_log(os.devnull, _SPU_CONSOLE)


@contextmanager
def capture_spu_log():
    """Send SPU's C++ log (where the profiler writes) to a temporary file for the body's duration; the
    dict it yields gets the log's text. SPU's logger is process-wide, so runs are serialised here."""
    with _log_lock, tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "spu.log")
        captured = {}
        _set_spu_log(path, console=False)
        try:
            yield captured
        finally:
            _set_spu_log(os.devnull, console=_SPU_CONSOLE)  # closes (and flushes) the file sink
            captured["text"] = open(path, encoding="utf-8", errors="replace").read() if os.path.exists(path) else ""


@dataclasses.dataclass
class Program:
    """A compiled SPU program plus what is needed to flatten its inputs and rebuild its outputs."""

    executable: libspu.Executable
    in_tree: Any
    in_shapes: list
    out_tree: Any
    public: list[bool]  # per flat input: public (every party holds it in the clear) or secret-shared
    names: list[str]  # per flat input: the name of the input it belongs to (a dict key, or "argN")

    @property
    def mlir(self) -> str:
        return self.executable.code.decode("utf-8")

    def flat_inputs(self, args: tuple, skip: tuple[str, ...] = ()) -> list[np.ndarray | None]:
        """`args` flattened in the program's input order, checked against its structure and shapes; the
        inputs named in `skip` (arriving as shares: shapes or ShapeDtypeStructs suffice) as None."""
        flat, tree = jax.tree_util.tree_flatten(args)
        if tree != self.in_tree:
            raise ValueError(f"arguments do not match the compiled program's structure:\n{tree}\nvs\n{self.in_tree}")
        for i, (a, (shape, dtype)) in enumerate(zip(flat, self.in_shapes)):
            if np.shape(a) != tuple(shape):
                raise ValueError(f"input {i} has shape {np.shape(a)}, the program was compiled for {tuple(shape)}")
        return [None if n in skip else np.asarray(a, dtype) for a, n, (_, dtype) in zip(flat, self.names, self.in_shapes)]


def compile_program(fn: Callable, *example_args, copts: libspu.CompilerOptions | None = None, name: str | None = None) -> Program:
    """Trace `fn` with JAX on `example_args` (arrays or ShapeDtypeStructs; only shapes/dtypes matter) and
    compile it to SPU's pphlo, every input secret. Compile once, then `Simulation.run` as often as needed.
    Each flat input is named after its argument (`Program.names`: "argN"; `compile_named` names them and
    can make some public)."""
    names = [f"arg{i}" for i, arg in enumerate(example_args) for _ in jax.tree_util.tree_leaves(arg)]
    return _compile(fn, example_args, [False] * len(names), names, copts, name)


def compile_named(fn: Callable, inputs: dict, public: tuple[str, ...] = (), copts: libspu.CompilerOptions | None = None, name: str | None = None) -> Program:
    """`compile_program` for a function of one dict of named inputs, `fn(inputs)`: the inputs named in
    `public` are public, the others secret; `Program.names` gives each flat input's name (for routing each
    input to its owner). Run it with `Simulation.run(program, inputs)`."""
    unknown = set(public) - set(inputs)
    if unknown:
        raise ValueError(f"public inputs {sorted(unknown)} are not among the inputs {sorted(inputs)}")
    leaves = jax.tree_util.tree_flatten_with_path((inputs,))[0]
    names = [str(path[1].key) for path, _ in leaves]
    return _compile(fn, (inputs,), [n in public for n in names], names, copts, name)


def _compile(fn, example_args: tuple, public: list[bool], names: list[str], copts, name) -> Program:
    flat, in_tree = jax.tree_util.tree_flatten(example_args)
    flat = [np.zeros(a.shape, a.dtype) for a in flat]

    def flat_fn(*leaves):
        return fn(*jax.tree_util.tree_unflatten(in_tree, leaves))

    flat_fn.__name__ = name or getattr(fn, "__name__", "program")
    executable, output = spu_fe.compile(
        spu_fe.Kind.JAX,
        flat_fn,
        flat,
        {},
        [f"in{i}" for i in range(len(flat))],
        [libspu.Visibility.VIS_PUBLIC if p else libspu.Visibility.VIS_SECRET for p in public],
        lambda outs: [f"out{i}" for i in range(len(outs))],
        copts=copts or libspu.CompilerOptions(),
    )
    _, out_tree = jax.tree_util.tree_flatten(output)
    return Program(executable, in_tree, [(a.shape, a.dtype) for a in flat], out_tree, public, names)


class Simulation:
    """All parties of one protocol in this process, linked by in-memory channels (SPU's simulator)."""

    def __init__(self, protocol: Protocol | str = protocols.DEFAULT, field: str = "fm64", **options):
        self.protocol, self.field = protocols.get(protocol), field
        self.config = runtime_config(self.protocol, field, **options)
        self.world_size = self.protocol.parties
        self.io = spu_api.Io(self.world_size, self.config)
        self._share_sizes: dict = {}  # dtype -> (bytes per element, header bytes) of SPU's shares

    def share_bytes(self, tree) -> int:
        """Bytes a dealer sends to give every party its shares of the arrays in `tree` (secret): SPU's share
        size, linear in the element count for each dtype (a per-element size plus a per-array header,
        measured once on two small arrays; exact to a few bytes of header per array, and independent of the values)."""
        return sum(self._share_size(np.asarray(a).dtype, np.size(a)) for a in jax.tree_util.tree_leaves(tree))

    def _share_size(self, dtype, n: int) -> int:
        cache = self._share_sizes
        if dtype not in cache:
            size = lambda k: sum(len(c) for share in self.io.make_shares(np.zeros(k, dtype), libspu.Visibility.VIS_SECRET) for c in share.share_chunks)
            small, large = size(1024), size(2048)
            cache[dtype] = ((large - small) // 1024, 2 * small - large)
        per_element, header = cache[dtype]
        return per_element * n + header

    def run(self, program: Program, *args, dealt=None, held: dict | None = None, keep: dict | None = None,
            rings: bool = False) -> tuple[Any, Cost]:
        """Secret-share `args`, run `program` on every party, reconstruct the outputs; return (outputs, cost).
        `rings`: every public output (an opened value) as the uint64 ring elements of its encoding, all 64
        bits, checked equal at every party (for tests of what the parties see).
        Inputs that arrive as shares have shapes only in `args`: `dealt` (a `dealing.DealtInputs`: the
        dealer's seed-based shares) and `held` ({input name: [party][leaf shares]}: what the parties kept
        from an earlier program). `keep` = {"inputs": [input names], "outputs": name}: instead of the outputs,
        return what the parties keep for later programs, {name: [party][shares]} (`held` of a later run)."""
        vis = lambda public: libspu.Visibility.VIS_PUBLIC if public else libspu.Visibility.VIS_SECRET
        preshared = (held or {}) | (dealt.shares() if dealt is not None else {})
        flat = program.flat_inputs(args, tuple(preshared))
        shares = [self.io.make_shares(a, vis(p)) if a is not None else None for a, p in zip(flat, program.public)]
        for name, per_party in preshared.items():
            slots = [i for i, n in enumerate(program.names) if n == name]
            if len(per_party) != self.world_size or any(len(s) != len(slots) for s in per_party):
                raise ValueError(f"preshared {name!r}: expected {self.world_size} parties x {len(slots)} shares")
            for k, i in enumerate(slots):
                shares[i] = [party[k] for party in per_party]
        kept = {name: preshared[name] for name in (keep or {}).get("inputs", ())}
        # each party's inputs, dropped once its runtime holds them (the shares of a model's weights are GBs)
        inbox = [[share[rank] for share in shares] for rank in range(self.world_size)]
        del shares, preshared

        desc = libspu.link.Desc()
        # the parties share this process's cores: one may wait on another's long local step (Cheetah packed a
        # 2,048 x 768 operand for 10-20 s on 2 busy cores), far past yacl's default 30 s receive timeout
        desc.recv_timeout_ms = SIMULATION_RECV_TIMEOUT_S * 1000
        for rank in range(self.world_size):
            desc.add_party(f"id_{rank}", f"thread_{rank}")
        results: list = [None] * self.world_size
        errors: list = []

        thread_cpu = [0.0] * self.world_size

        def party(rank: int):
            try:
                config = libspu.RuntimeConfig(self.config)
                runtime = spu_api.Runtime(libspu.link.create_mem(desc, rank), config)
                start = time.thread_time()
                mine, inbox[rank] = inbox[rank], None
                for name, share in zip(program.executable.input_names, mine):
                    runtime.set_var(name, share)
                del mine
                runtime.run(program.executable)
                results[rank] = [runtime.get_var(n) for n in program.executable.output_names]
                thread_cpu[rank] = time.thread_time() - start
            except BaseException as e:  # surfaced in the caller's thread below
                errors.append(e)

        with capture_spu_log() as captured:
            start, cpu_start = time.perf_counter(), process_cpu_seconds()
            threads = [threading.Thread(target=party, args=(r,)) for r in range(self.world_size)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds, cpu = time.perf_counter() - start, process_cpu_seconds() - cpu_start
        if errors:
            log_tail = "\n".join(captured["text"].strip().splitlines()[-5:])
            raise RuntimeError(f"SPU {self.protocol} run failed: {errors[0]}\n{log_tail}") from errors[0]
        cost = parse_profile(captured["text"], seconds, self.world_size) if self.config.enable_pphlo_profile else None
        if cost is not None:  # SPU's worker pools serve every party: their time goes in proportion to each party's own
            own = sum(thread_cpu) or 1.0
            cost.party_compute_seconds = [cpu * t / own for t in thread_cpu]
            if self.protocol.first_party_triples:
                cost.beaver_bytes = beaver.dealer_bytes(captured["text"], program.mlir, self.field, self.world_size, cost.send_bytes)
        if keep:
            return kept | {keep["outputs"]: results}, cost
        outputs = [self._ring(s) if rings and _is_public(s[0]) else self.io.reconstruct(list(s)) for s in zip(*results)]
        return jax.tree_util.tree_unflatten(program.out_tree, outputs), cost

    @staticmethod
    def _ring(shares) -> np.ndarray:
        from .dealing import public_ring

        values = [public_ring(s) for s in shares]
        if any(not np.array_equal(values[0], v) for v in values[1:]):
            raise RuntimeError("the parties hold different values of one opened output")
        return values[0]


def _is_public(share: libspu.Share) -> bool:
    meta = libspu.ValueMeta()
    meta.ParseFromString(share.meta)
    return meta.visibility == libspu.Visibility.VIS_PUBLIC
