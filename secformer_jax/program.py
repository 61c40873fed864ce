"""The private program, assembled in one place: named inputs, where each comes from, the dealer, the
compatibility checks, and compilation.

A private run of a Flax module (the BERT classifier, or one of its pieces for the benchmark) is one SPU
program of one dict of named inputs, each with one owner:

| input                              | owner       | visibility | how often                                      |
| ---------------------------------- | ----------- | ---------- | ---------------------------------------------- |
| `params`                           | model owner | secret     | per model (sent again with every run here)     |
| `words`, `mask`, `types` (data)    | data owner  | secret     | per inference                                  |
| `correlation`                      | dealer      | secret     | fresh per inference (protocol GeLU)            |
| `linear`                           | dealer      | secret     | fresh per inference (fixed-mask A and C)       |
| `weight_masks`                     | parties     | secret     | kept from the setup program (shares of B)      |
| `masked_weights`                   | parties     | public     | kept from the setup program (E = W - B opened) |

With fixed-mask products a setup program runs first, once per model (`linear.setup_function`): inputs
`weights` (model owner) and `weight_masks` (dealer), output E, opened inside the protocol; the parties keep
E and their shares of B (`held`). The dealer's inputs travel as seeds plus corrections (`dealing.py`).

Where the dealt randomness and the fixed masks go is read off the module itself (`trace_sites`): every
product with a fixed weight is a `model.Dense` or `model.WordEmbed` call, products called on the same
input share one opening (Q, K and V), and every `BertIntermediate` reads one GeLU correlation. Nothing
restates the architecture.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import spu.libspu as libspu

from . import dealing, linear
from .approx import ApproxSet, sine
from .model import BertIntermediate, Dense, WordEmbed
from .openings import recording
from .randomness import Dealer
from . import protocols
from .protocols import Protocol
from .spu_runner import FIELDS, SPU_COMPILER_OPTIONS, Program, Simulation, compile_named

MODEL_OWNER, DATA_OWNER, DEALER, HELD = "model_owner", "data_owner", "dealer", "held"
DEALT = ("correlation", "linear")  # the dealer's inputs of the main program
PUBLIC_INPUTS = ("masked_weights",)
INPUT_OWNERS = {"params": MODEL_OWNER, "correlation": DEALER, "linear": DEALER, "weight_masks": HELD, "masked_weights": HELD}  # else: data owner
SETUP_OWNERS = {"weights": MODEL_OWNER, "weight_masks": DEALER}


def owner(name: str, setup: bool = False) -> str:
    """Who provides the input `name` of the main program (module doc's table: data inputs are the data
    owner's; `held` ones the parties kept from the setup program) or, with `setup`, of the setup program."""
    if setup:
        return SETUP_OWNERS[name]
    return INPUT_OWNERS.get(name, DATA_OWNER)


def check_settings(approx: ApproxSet, field: str = "fm64", linear_layers: str = "spu", protocol: Protocol | str | None = None) -> None:
    """The one compatibility check of protocol x field x linear layers x approximation (ValueError); the
    protocol's part only when `protocol` is given."""
    protocol = None if protocol is None else protocols.get(protocol)
    for kind, value, known in (("field", field, FIELDS), ("linear layers", linear_layers, linear.LINEAR_LAYERS)):
        if value not in known:
            raise ValueError(f"unknown {kind} {value!r}; choose one of: {', '.join(known)}")
    if approx.needs_correlation:
        sine.check_field(field)
        if protocol is not None and protocol.dealer_free:
            raise ValueError(f"{protocol} runs without a dealer, and the {approx.gelu!r} GeLU needs dealt randomness: "
                             "use --gelu puma (PUMA's GeLU, what `secformer bench` runs for SecFormer under Cheetah) or --gelu secformer_poly")
    if linear_layers == "fixed-mask":
        linear.check_field(field) if protocol is None else linear.check_settings(protocol, field)


SIMULATION_DEALER = "in-process (simulation)"


def privacy(protocol: Protocol | str, dealt: bool, dealer: str = SIMULATION_DEALER, reproducible: bool = False) -> dict:
    """What a run may claim (semi-honest parties): {"private", "private_why", "dealer"} for `protocol`, with
    randomness dealt (`dealt`) by `dealer` ("in-process (simulation)", "data owner", "separate process");
    `reproducible`: the dealt masks follow from a public seed (`Dealer.from_seed`, benchmarks)."""
    protocol = protocols.get(protocol)
    if protocol.first_party_triples:
        private, why = False, protocol.private_why
    elif dealt and reproducible:
        private, why = False, "the dealt masks follow from a public seed (--dealer-seed, for reproducible benchmarks): anyone can recompute them"
    elif dealt and dealer == "data owner":
        private, why = False, "the data owner deals the GeLU masks: with any one computing party it recovers every layer's GeLU input"
    else:
        private, why = True, protocol.private_why
        if dealt:
            why += "; the dealt masks come from a dealer that sees no share and colludes with no party"
    return {"private": private, "private_why": why, "dealer": dealer if dealt else None}


@dataclasses.dataclass(frozen=True)
class Sites:
    """Where a module, called on inputs of given shapes, takes fixed-mask products and dealt GeLU
    randomness: the product sites (`linear.Site`) and the (path, GeLU input shape) of each protocol GeLU."""

    products: tuple[linear.Site, ...]
    gelu: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...]


def trace_sites(module: nn.Module, *data) -> Sites:
    """Read `Sites` off `module` by tracing its initialisation on `data` (arrays or ShapeDtypeStructs; no
    computation): each `Dense` / `WordEmbed` call on a float input is a product (module path, kernel name,
    its `scale`), consecutive calls on the same input value share one opening, at their common parent (the
    module that opens it, as `BertSelfAttention` does for Q, K and V); each `BertIntermediate` call is a GeLU."""
    calls: list = []  # (input, path, kernel name, scale)
    gelu: list = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module_ = context.module
        if context.method_name == "__call__":
            if isinstance(module_, (Dense, WordEmbed)) and jnp.issubdtype(args[0].dtype, jnp.floating):
                name = "kernel" if isinstance(module_, Dense) else "embedding"
                calls.append((args[0], tuple(module_.path), name, float(kwargs.get("scale", 1.0))))
            elif isinstance(module_, BertIntermediate):
                gelu.append((tuple(module_.path), tuple(out.shape)))
        return out

    def init():
        with nn.intercept_methods(record):
            return module.init(jax.random.PRNGKey(0), *(jnp.zeros(d.shape, d.dtype) for d in data))

    jax.eval_shape(init)
    products, i = [], 0
    while i < len(calls):
        j = i + 1
        while j < len(calls) and calls[j][0] is calls[i][0]:
            j += 1
        group = calls[i:j]
        paths = [path for _, path, _, _ in group]
        opener = paths[0] if len(group) == 1 else paths[0][: len(paths[0]) - 1]
        if any(p[:-1] != opener for p in paths[1:]):
            raise ValueError(f"products sharing one input are not siblings: {paths}")
        scales = tuple(s for *_, s in group)
        products.append(linear.Site(opener, tuple(group[0][0].shape), tuple((p, n) for _, p, n, _ in group),
                                    scales if any(s != 1.0 for s in scales) else ()))
        i = j
    return Sites(tuple(products), tuple(gelu))


def deal_correlation(sites: Sites, approx: ApproxSet, dealer: Dealer | None = None) -> dict | None:
    """The "correlation" collection: one `sine.SineCorrelation` per protocol GeLU, fresh from `dealer` (stream
    "gelu/<module path>"), or its shapes only with `dealer` None (for compiling). None when the GeLU needs none."""
    spec = approx.correlation_spec
    if spec is None:
        return None
    tree: dict = {}
    for path, shape in sites.gelu:
        value = sine.dealer(shape, dealer.stream("gelu/" + "/".join(path)), spec) if dealer is not None else sine.correlation_shapes(shape, spec)
        linear.set_path(tree, path + ("gelu",), value)
    return tree


class ProgramBuilder:
    """Builds the private program of `module` called as `module(*data)` with the approximations `approx`:
    sites (traced, per input shape), the dealer's inputs, the named inputs, the compiled program (cached per
    input structure and shapes), and the same function in plain JAX.

    `data_names`: the module's positional inputs, in order (the data owner's); `output`: picks what the
    program returns from the module's output (e.g. the logits)."""

    def __init__(self, module: nn.Module, data_names: tuple[str, ...], approx: ApproxSet, field: str = "fm64",
                 linear_layers: str = "spu", output: Callable[[Any], Any] | None = None, name: str = "program"):
        check_settings(approx, field, linear_layers)
        self.module, self.data_names, self.approx = module, tuple(data_names), approx
        self.field, self.linear_layers, self.output, self.name = field, linear_layers, output, name
        self._sites: dict = {}
        self._programs: dict = {}

    def check(self, protocol: Protocol) -> None:
        """Refuse `protocol` where it cannot run these settings (ValueError)."""
        check_settings(self.approx, self.field, self.linear_layers, protocol)

    def sites(self, data: dict) -> Sites:
        """The module's sites for inputs shaped like `data` (cached per shapes)."""
        key = tuple((n, np.shape(data[n]), np.dtype(data[n].dtype).name) for n in self.data_names)
        if key not in self._sites:
            self._sites[key] = trace_sites(self.module, *(jax.ShapeDtypeStruct(np.shape(data[n]), data[n].dtype) for n in self.data_names))
        return self._sites[key]

    def param_shapes(self, data: dict) -> dict:
        """The module's parameter tree as ShapeDtypeStructs, for inputs shaped like `data` (no weights needed:
        the dealer's view)."""
        zeros = lambda: [jnp.zeros(np.shape(data[n]), data[n].dtype) for n in self.data_names]
        return jax.eval_shape(lambda: self.module.init(jax.random.PRNGKey(0), *zeros()))["params"]

    def setup(self, protocol: Protocol, data: dict, dealer: Dealer | None = None) -> linear.FixedMasks | None:
        """Once per model and protocol: which products are fixed-mask ones under `protocol` and, with `dealer`,
        the dealer's B for each; None with SPU's own products, or where none pays under `protocol` (ABY3 on
        a model without layers: then there is no setup either). `data`: example inputs (their shapes locate
        the products)."""
        self.check(protocol)
        if self.linear_layers == "spu":
            return None
        masks = linear.setup_masks(self.param_shapes(data), list(self.sites(data).products), protocol, dealer)
        return masks if masks.sites else None

    def setup_program(self, masks: linear.FixedMasks) -> Program:
        """The compiled setup program of `masks` (`linear.setup_function`: E = [W] - [B] opened; inputs
        "weights" of the model owner and "weight_masks" of the dealer)."""
        shapes = {"weights": masks.kernel_shapes(), "weight_masks": masks.kernel_shapes()}
        return self.compile(shapes, setup=True)[0]

    def run_setup(self, runner, params: dict, masks: linear.FixedMasks) -> dict:
        """Run the setup program in `runner` (a `Simulation` or a cluster's runner: the model owner shares its
        weights, the dealer deals B seed-based); what the parties keep (their shares of B, E) goes to
        `masks.held`. Returns the setup's cost: {"send_bytes": everything it sends (the weight shares, the
        dealer's bytes, the opening), "model_owner_bytes", "dealer_bytes", "online": the opening's Cost}."""
        program = self.setup_program(masks)
        weights = masks.weights(params)
        dealt = dealing.deal_inputs({"weight_masks": masks.weight_masks()}, runner.protocol)
        inputs = {"weights": weights, "weight_masks": masks.kernel_shapes()}
        masks.held, cost = runner.run(program, inputs, dealt=dealt, keep={"inputs": ["weight_masks"], "outputs": "masked_weights"})
        dealer_bytes = dealt.send_bytes
        owner_bytes = Simulation(runner.protocol, self.field).share_bytes(weights)
        return {"send_bytes": owner_bytes + dealer_bytes + cost.send_bytes, "model_owner_bytes": owner_bytes,
                "dealer_bytes": dealer_bytes, "online": cost}

    def deal(self, data: dict, masks: linear.FixedMasks | None, dealer: Dealer | None = None) -> dict:
        """The dealer's inputs of one run on inputs shaped like `data`: {"correlation", "linear"} (those
        needed), fresh from `dealer` (a new `randomness.Dealer()` per run); with `dealer` None, shapes only
        (for compiling)."""
        sites = self.sites(data)
        dealt = {}
        correlation = deal_correlation(sites, self.approx, dealer)
        if correlation is not None:
            dealt["correlation"] = correlation
        if masks is not None:
            dealt["linear"] = masks.deal(list(sites.products), dealer)
        return dealt

    def inputs(self, params: dict, data: dict, masks: linear.FixedMasks | None = None, dealt: dict | None = None) -> dict:
        """The program's named inputs: the weights (without the masked kernels), the data, the dealt values
        and, as shapes, what the parties kept from the setup program."""
        unknown = set(data) - set(self.data_names)
        if unknown or len(data) != len(self.data_names):
            raise ValueError(f"data inputs {sorted(data)} do not match the module's {list(self.data_names)}")
        named = {"params": masks.strip(params) if masks is not None else params, **data, **(dealt or {})}
        if masks is not None:
            named["weight_masks"] = masks.kernel_shapes()
            named["masked_weights"] = masks.kernel_shapes()
        return named

    def run(self, simulation, params: dict, data: dict, masks: linear.FixedMasks | None, dealer: Dealer,
            record_openings: bool = False, held: dict | None = None, keep: str | None = None) -> tuple[Any, Any, dict | None]:
        """One private run in `simulation` (a `Simulation`, or a cluster's runner): deal (seed-based, from
        `dealer`), share, run. Returns (output, online Cost, offline: {"send_bytes": what the dealer sends,
        "seconds": its time} or None). `held`: data inputs the parties kept from an earlier program ({name:
        what that run's `keep` returned}; `data` then gives only their shapes); `keep`: the parties keep the
        output under this name instead of revealing it, and the run returns what `held` takes."""
        if masks is not None and masks.held is None:
            raise ValueError("the fixed-mask setup has not run: call run_setup first")
        start = time.perf_counter()
        dealt = self.deal(data, masks, dealer)
        shares = dealing.deal_inputs(dealt, simulation.protocol) if dealt else None
        offline = {"send_bytes": shares.send_bytes, "seconds": time.perf_counter() - start} if dealt else None
        inputs = self.inputs(params, data, masks, dealt)
        program = self.compile(jax.tree_util.tree_map(_shape, inputs), record_openings)[0]
        held = (masks.held if masks is not None else {}) | (held or {})
        rings = {"rings": True} if record_openings else {}  # the openings as the ring elements the parties hold
        out, cost = simulation.run(program, inputs, dealt=shares, held=held or None, keep={"outputs": keep} if keep else None, **rings)
        return out, cost, offline

    def function(self, record_openings: bool = False) -> Callable[[dict], Any]:
        """inputs -> output: the module applied to named inputs (plain JAX; what SPU compiles). Without dealt
        inputs a protocol GeLU computes its reference, and the products are the plain ones. With
        `record_openings` (SPU only): (output, every value the program opens), for tests."""

        def run(inputs: dict):
            variables = {"params": inputs["params"]}
            for collection in DEALT + ("weight_masks", "masked_weights"):
                if inputs.get(collection) is not None:
                    variables[collection] = inputs[collection]
            out = self.module.apply(variables, *(inputs[n] for n in self.data_names))
            return self.output(out) if self.output else out

        return _recording(run) if record_openings else run

    def compile(self, inputs: dict, record_openings: bool = False, setup: bool = False) -> tuple[Program, bool]:
        """The compiled program (the setup program with `setup`) for inputs shaped like `inputs` (arrays or
        ShapeDtypeStructs); `masked_weights` is public, the rest secret. Returns (program, whether it was
        compiled now)."""
        leaves, tree = jax.tree_util.tree_flatten(inputs)
        key = (tree, tuple((np.shape(a), np.dtype(a.dtype).name) for a in leaves), record_openings, setup)
        if key in self._programs:
            return self._programs[key], False
        copts = libspu.CompilerOptions(**SPU_COMPILER_OPTIONS)
        public = tuple(n for n in inputs if n in PUBLIC_INPUTS and not setup)
        fn = linear.setup_function if setup else self.function()
        fn = _recording(fn) if record_openings else fn
        self._programs[key] = compile_named(fn, inputs, public, copts=copts, name=f"{self.name}_setup" if setup else self.name)
        return self._programs[key], True

    def shapes(self, params: dict, data: dict, masks: linear.FixedMasks | None) -> dict:
        """`inputs` as ShapeDtypeStructs for compiling without dealing."""
        return jax.tree_util.tree_map(_shape, self.inputs(params, data, masks, self.deal(data, masks)))


def _shape(a) -> jax.ShapeDtypeStruct:
    """An input's shape and program dtype: ring values (uint64, dealt) enter as int32."""
    dtype = np.dtype(a.dtype)
    return jax.ShapeDtypeStruct(np.shape(a), np.int32 if dtype == np.uint64 else dtype)


def _recording(fn: Callable) -> Callable:
    """fn, also returning every value it opens (public outputs): (output, openings)."""

    def run_recording(inputs: dict):
        with recording() as opened:
            out = fn(inputs)
        return out, tuple(opened)

    return run_recording
