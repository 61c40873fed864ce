"""Fixed-mask linear layers: x W for the model's fixed secret W with one opening of x per inference, not of W.

SPU's SEMI2K multiplies two secrets with a fresh Beaver triple, which opens both masked factors: at every
inference the whole masked weight matrix W - B is opened again (a BERT-base layer: 7.1 M weights against
0.6 M activations). W never changes, so its mask need not either (SecureML's observation for a fixed
operand; Mohassel & Zhang 2017, section 4.2):

    setup, once per model:  the dealer draws B uniform on the ring Z_2^64 and deals shares of it; the model
                            owner shares W (as ring integers); the parties open E = [W] - [B] inside the
                            protocol (`setup_function`, one opening of the weights' size) and keep E and
                            their shares of B. E is uniform, so it says nothing about W; the dealer sees
                            neither W nor E;
    per inference:          the dealer draws A uniform on the ring, shaped like x, and deals shares of A and
                            of C = A B (ring products);
    online:                 open D = x - A (x's own size; uniform, so it says nothing about x), then
                            x W = x E + D B + C     (= x E + x B - A B + A B),
                            where x E is secret times public and D B public times secret: local, no message.

Everything runs on FM64's ring integers (`check_field`): x as its fixed-point encoding x 2^f (f = 18), W as
round(W 2^WEIGHT_BITS), so x W comes out at 2^(f + 16) and one multiplication by 2^-16 (one truncation,
SPU's cheapest: 8 / 28 bytes per element in SEMI2K / ABY3) brings it back to 2^f. Error: the weights are
rounded to 2^-16 (SPU's fixed point keeps 2^-18), so each output is off by at most 2^-17 sum_i |x_i| plus
one truncation's 2^-18 (measured on a BERT-base FFN, 768 -> 3072, |x| ~ N(0, 1): 6.2e-4, SPU's own product
3.0e-4).

The dealer must not be a computing party and must collude with none: it knows A (so D would give it x)
and B. A and C are fresh per inference; B is reused, which is safe because the one value it masks, W, is
reused too (E is the same at every inference).

Where it pays (`prefers_mask`): SEMI2K, every product (SPU's opens the weights). ABY3 multiplies two
replicated secrets locally and reshares and truncates the output (52 bytes per output element, measured),
while the masked product opens the input (24 bytes per element) and truncates the output (28): it pays when
the output is wider than the input (Q, K and V together, the FFN's first product). Cheetah has no dealer.

Ring values (A, B, C, E) are int32 inputs of the program whose SPU shares hold full 64-bit ring elements:
JAX traces 32-bit integers, SPU computes on the 64-bit ring, and the dealer's shares are built on the ring
directly (`dealing.py`), as E is by the opening. The model owner's W enters as int32 (|W| 2^16 < 2^31).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from . import protocols
from .openings import reveal
from .protocols import EVERY, Protocol
from .randomness import Dealer

WEIGHT_BITS = 16  # the weights' ring integers are round(W 2^16): the product then needs one truncation by 2^-16
PROTOCOLS = tuple(p.name for p in protocols.PROTOCOLS.values() if p.fixed_mask)  # where fixed-mask products run
LINEAR_LAYERS = ("spu", "fixed-mask")  # products with the weights: SPU's own, or this module's
LINEAR_HELP = f"products with the weights: SPU's own (default), or fixed-mask ones where they cost less ({', '.join(PROTOCOLS)}; see secformer_jax/linear.py)"


def check_field(field: str) -> None:
    """Refuse a field other than FM64: the masks are uniform on the 64-bit ring, which would not hide x in
    FM128's 128-bit ring."""
    if field != "fm64":
        raise ValueError(f"fixed-mask linear layers need field fm64, got {field!r}; use --linear spu")


def check_settings(protocol: Protocol | str, field: str) -> None:
    """Refuse a protocol or field fixed-mask products cannot run under (ValueError)."""
    check_field(field)
    prefers_mask(protocol, 1, 1)


def prefers_mask(protocol: Protocol | str, n_in: int, n_out: int) -> bool:
    """Whether a fixed-mask product x W (W: [n_in, n_out]) costs less than SPU's own under `protocol`
    (`Protocol.fixed_mask`: for every product, or only where n_out > n_in; module doc)."""
    protocol = protocols.get(protocol)
    if protocol.fixed_mask is None:
        raise ValueError(f"fixed-mask linear layers need a dealer-based protocol ({', '.join(PROTOCOLS)}), got {protocol.name!r}")
    return protocol.fixed_mask == EVERY or n_out > n_in


def open_input(x, a):
    """D = x 2^f - A, opened (one round; SPU only): uniform on the ring."""
    return reveal(jax.lax.bitcast_convert_type(x, jnp.int32) - a)


def masked_matmul(x, opened, e, b, c):
    """x W = (x E + D B + C) 2^-(f + 16) on ring integers (module doc), x fixed point [..., n], `opened` =
    `open_input(x, A)` for the A that C = A B was dealt with. SPU only."""
    product = jax.lax.bitcast_convert_type(x, jnp.int32) @ e + opened @ b + c
    return jax.lax.bitcast_convert_type(product, x.dtype) * 2.0**-WEIGHT_BITS


def setup_function(inputs: dict) -> dict:
    """The setup program (once per model): E = [W] - [B] opened, per product. `inputs`: "weights" (the model
    owner's W 2^16) and "weight_masks" (the dealer's B), trees of the same structure; the parties keep the
    output ("masked_weights", public) and their shares of B for every inference."""
    return {"masked_weights": jax.tree_util.tree_map(lambda w, b: reveal(w - b), inputs["weights"], inputs["weight_masks"])}


@dataclasses.dataclass(frozen=True)
class Site:
    """One opening: an input (`path` of the module that opens it, `shape` of the input) and the products
    that share it (paths of modules holding a kernel, with the kernel's name), each with a public output
    scale (`scales`, default 1: the module computes scale (x W + b); the setup folds the scale into W's ring
    integers, so it costs nothing). The opening module finds A at ("linear", "input") under its path; each
    product module finds C ("linear"), B ("weight_masks") and E ("masked_weights") under the kernel's name.
    Sites are read off the model itself (`program.trace_sites`), not written by hand."""

    path: tuple[str, ...]
    shape: tuple[int, ...]
    products: tuple[tuple[tuple[str, ...], str], ...]
    scales: tuple[float, ...] = ()

    def scale(self, i: int) -> float:
        return self.scales[i] if self.scales else 1.0


def _get(tree, path):
    for key in path:
        tree = tree[key]
    return tree


def set_path(tree: dict, path, value) -> None:
    """tree[path[0]]...[path[-1]] = value, creating dicts on the way."""
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


@dataclasses.dataclass
class FixedMasks:
    """The fixed-mask state of one model under one protocol: the masked sites and the dealer's B per product
    (uint64, its secret; None where only shapes are known). `weights` is the model owner's setup input,
    `weight_masks` the dealer's, `deal` each inference's fresh A and C (the "linear" collection), `strip`
    drops the masked kernels from the model owner's parameters (the program never reads them). `held`:
    what the parties keep from the setup program (SPU shares per party, filled by whoever ran it)."""

    sites: list[Site]
    shapes: dict  # product path -> the kernel's shape
    b: dict | None  # product path -> B (uint64), the dealer's secret
    held: dict | None = None

    def _products(self):
        for site in self.sites:
            for i, (path, name) in enumerate(site.products):
                yield site, i, path, name

    def weights(self, params: dict) -> dict:
        """The model owner's setup input: round(W scale 2^16) per masked kernel (int32 tree)."""
        tree: dict = {}
        for site, i, path, name in self._products():
            w = np.round(np.asarray(_get(params, path)[name], np.float64) * site.scale(i) * 2.0**WEIGHT_BITS)
            if np.abs(w).max(initial=0) >= 2**31:
                raise ValueError(f"weight {'/'.join(path)}/{name} reaches {np.abs(w).max() / 2**WEIGHT_BITS:.0f}: a fixed-mask weight must stay below 2^15")
            set_path(tree, path + (name,), w.astype(np.int32))
        return tree

    def tree(self, value) -> dict:
        """A tree shaped like the setup's inputs: value(path, shape) per masked kernel."""
        tree: dict = {}
        for _, _, path, name in self._products():
            set_path(tree, path + (name,), value(path, self.shapes[path]))
        return tree

    def weight_masks(self) -> dict:
        """The dealer's setup input: B per masked kernel (uint64 ring values; shapes when B is not drawn)."""
        return self.tree(lambda path, shape: jax.ShapeDtypeStruct(shape, jnp.int32) if self.b is None else self.b[path])

    def kernel_shapes(self) -> dict:
        """int32 ShapeDtypeStructs shaped like the masked kernels: the program's shapes of W 2^16, B and E."""
        return self.tree(lambda path, shape: jax.ShapeDtypeStruct(shape, jnp.int32))

    def deal(self, sites: list[Site], dealer: Dealer | None = None) -> dict:
        """The "linear" collection of one inference whose inputs have the shapes of `sites` (the masked ones
        among them: sites are traced per input shape): fresh A (stream "A/<site path>" of `dealer`, a fresh
        one per inference) and C = A B (ring products: numpy's uint64 products and sums wrap mod 2^64), as
        uint64 ring values. With `dealer` None, int32 ShapeDtypeStructs: nothing drawn (for compiling)."""
        shaped = lambda shape: jax.ShapeDtypeStruct(shape, jnp.int32)
        masked = {site.path for site in self.sites}
        tree: dict = {}
        for site in (s for s in sites if s.path in masked):
            a = None if dealer is None else dealer.stream("A/" + "/".join(site.path)).uint64(site.shape)
            set_path(tree, site.path + ("input",), shaped(site.shape) if a is None else a)
            for path, name in site.products:
                c_shape = site.shape[:-1] + self.shapes[path][1:]
                set_path(tree, path + (name,), shaped(c_shape) if a is None else np.matmul(a, self.b[path]))
        return tree

    def strip(self, params: dict) -> dict:
        """`params` without the masked weights (a copy; the arrays shared)."""
        copy = lambda t: {k: copy(v) for k, v in t.items()} if isinstance(t, Mapping) else t
        out = copy(params)
        for _, _, path, name in self._products():
            del _get(out, path)[name]
        return out


def setup_masks(param_shapes: dict, sites: list[Site], protocol: Protocol | str, dealer: Dealer | None) -> FixedMasks:
    """Choose the sites (`program.trace_sites`) whose products `prefers_mask` under `protocol` and draw B
    for each of their kernels (stream "B/<product path>" of `dealer`; with `dealer` None, shapes only: the
    model owner's view). `param_shapes`: the parameter tree or its shapes (only shapes are read)."""
    chosen, shapes, b = [], {}, {}
    for site in sites:
        kernels = [tuple(np.shape(_get(param_shapes, path)[name])) for path, name in site.products]
        n_in, n_out = kernels[0][0], sum(k[1] for k in kernels)
        if not prefers_mask(protocol, n_in, n_out):
            continue
        chosen.append(site)
        for (path, _), shape in zip(site.products, kernels):
            shapes[path] = shape
            if dealer is not None:
                b[path] = dealer.stream("B/" + "/".join(path)).uint64(shape)
    return FixedMasks(chosen, shapes, b if dealer is not None else None)
