"""Fixed-mask linear layers: x W for the model's fixed secret W with one opening of x per inference, not of W.

SPU's SEMI2K multiplies two secrets with a fresh Beaver triple, which opens both masked factors: at every
inference the whole masked weight matrix W - B is opened again (a BERT-base layer: 7.1 M weights against
0.6 M activations). W never changes, so its mask need not either (SecureML's observation for a fixed
operand; Mohassel & Zhang 2017, section 4.2):

    setup, once per model:  the dealer draws B uniform on the ring Z_2^64; the parties get E = W - B in the
                            clear (uniform, so it says nothing about W) and shares of B;
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

The dealer must not be a computing party and must not see E (the parties hold it): then it knows B but
not W, as SPU's trusted-first-party Beaver dealer does. A and C are fresh per inference; B is reused, which
is safe because the one value it masks, W, is reused too (E is the same at every inference).

Where it pays (`prefers_mask`): SEMI2K, every product (SPU's opens the weights). ABY3 multiplies two
replicated secrets locally and reshares and truncates the output (52 bytes per output element, measured),
while the masked product opens the input (24 bytes per element) and truncates the output (28): it pays when
the output is wider than the input (Q, K and V together, the FFN's first product). Cheetah has no dealer.

Ring integers enter the program as two int32 words (JAX traces 32-bit integers; SPU computes on the 64-bit
ring): v = hi 2^32 + lo. XLA folds int32 constants with 32-bit wrap-around (hi * 2^16 * 2^16 becomes 0), so
2^16 enters as a public input (`unit`, one per opening site) that XLA cannot fold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .openings import reveal
from .randomness import Dealer

WEIGHT_BITS = 16  # the weights' ring integers are round(W 2^16): the product then needs one truncation by 2^-16
PROTOCOLS = ("semi2k", "aby3")  # the dealer-based ones
LINEAR_LAYERS = ("spu", "fixed-mask")  # products with the weights: SPU's own, or this module's
LINEAR_HELP = "products with the weights: SPU's own (default), or fixed-mask ones where they cost less (semi2k, aby3; see secformer_jax/linear.py)"


class MaskedWeight(NamedTuple):
    """Public, once per model: E = round(W 2^16) - B as ring words."""

    e_hi: jax.Array  # int32 [n, m]
    e_lo: jax.Array


class ProductMask(NamedTuple):
    """Secret: B (once per model) and C = A B (fresh per inference), as ring words."""

    b_hi: jax.Array  # int32 [n, m]
    b_lo: jax.Array
    c_hi: jax.Array  # int32 [..., m]
    c_lo: jax.Array


class InputMask(NamedTuple):
    """Secret, fresh per inference: A shaped like the input x, as ring words."""

    a_hi: jax.Array  # int32 [..., n]
    a_lo: jax.Array


def to_words(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint64 ring values -> int32 (hi, lo) with hi 2^32 + lo = v mod 2^64 (lo read as a signed word)."""
    v = np.asarray(v, np.uint64)
    lo = (v & np.uint64(0xFFFFFFFF)).astype(np.uint32).view(np.int32)
    hi = ((v - lo.astype(np.int64).astype(np.uint64)) >> np.uint64(32)).astype(np.uint32).view(np.int32)
    return hi, lo


def check_field(field: str) -> None:
    """Refuse a field other than FM64: the masks are uniform on a 64-bit ring (two int32 words), which would
    not hide x in FM128's 128-bit ring."""
    if field != "fm64":
        raise ValueError(f"fixed-mask linear layers need field fm64, got {field!r}; use --linear spu")


def prefers_mask(protocol: str, n_in: int, n_out: int) -> bool:
    """Whether a fixed-mask product x W (W: [n_in, n_out]) costs less than SPU's own under `protocol`
    (module doc)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"fixed-mask linear layers need a dealer-based protocol ({', '.join(PROTOCOLS)}), got {protocol!r}")
    return protocol == "semi2k" or n_out > n_in


def ring(hi, lo, unit):
    """The ring integer hi 2^32 + lo from int32 words, `unit` the public 2^16 (module doc)."""
    return hi * unit * unit + lo


def open_input(x, mask: InputMask, unit):
    """D = x 2^f - A, opened (one round; SPU only): uniform on the ring."""
    return reveal(jax.lax.bitcast_convert_type(x, jnp.int32) - ring(*mask, unit))


def masked_matmul(x, opened, weight: MaskedWeight, mask: ProductMask, unit):
    """x W = (x E + D B + C) 2^-(f + 16) on ring integers (module doc), x fixed point [..., n], `opened` =
    `open_input(x, A, unit)` for the A that `mask.c` was dealt with. SPU only."""
    x_int = jax.lax.bitcast_convert_type(x, jnp.int32)
    e, b, c = ring(*weight, unit), ring(mask.b_hi, mask.b_lo, unit), ring(mask.c_hi, mask.c_lo, unit)
    product = x_int @ e + opened @ b + c
    return jax.lax.bitcast_convert_type(product, x.dtype) * 2.0**-WEIGHT_BITS


@dataclasses.dataclass(frozen=True)
class Site:
    """One opening: an input (`path` of the module that opens it, `shape` of the input) and the products
    that share it (paths of modules holding a kernel, with the kernel's name), each with a public output
    scale (`scales`, default 1: the module computes scale (x W + b); the setup folds the scale into E, so it
    costs nothing). The opening module finds "input" (`InputMask`) in the "linear" collection and "unit" in
    "linear_public" at its path; each product module its `ProductMask` and `MaskedWeight` under the
    kernel's name. Sites are read off the model itself (`program.trace_sites`), not written by hand."""

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
    """The dealer's per-model state for one protocol: which sites are masked, the public E tree (the
    program's "linear_public" collection) and the dealer's B per product. `deal` gives each inference's
    fresh A and C (the "linear" collection); `strip` drops the masked weights from the model owner's
    parameters (the program never reads them)."""

    sites: list[Site]
    public: dict
    weight_masks: dict  # product path -> B (uint64), the dealer's secret

    def deal(self, sites: list[Site], dealer: Dealer | None = None) -> dict:
        """The "linear" collection of one inference whose inputs have the shapes of `sites` (the masked ones
        among them: sites are traced per input shape): B's words, fresh A (stream "A/<site path>" of
        `dealer`, a fresh one per inference) and C = A B (ring products: numpy's uint64 products and sums
        wrap mod 2^64). With `dealer` None, A and C as ShapeDtypeStructs: nothing drawn or multiplied (for
        compiling)."""
        shaped = lambda shape: (jax.ShapeDtypeStruct(shape, jnp.int32),) * 2
        masked = {site.path for site in self.sites}
        tree: dict = {}
        for site in (s for s in sites if s.path in masked):
            shape = site.shape
            a = None if dealer is None else dealer.stream("A/" + "/".join(site.path)).uint64(shape)
            set_path(tree, site.path + ("input",), InputMask(*(shaped(shape) if a is None else to_words(a))))
            for path, name in site.products:
                b = self.weight_masks[path]
                c = shaped(shape[:-1] + b.shape[1:]) if a is None else to_words(np.matmul(a, b))
                set_path(tree, path + (name,), ProductMask(*to_words(b), *c))
        return tree

    def strip(self, params: dict) -> dict:
        """`params` without the masked weights (a copy; the arrays shared)."""
        copy = lambda t: {k: copy(v) for k, v in t.items()} if isinstance(t, Mapping) else t
        out = copy(params)
        for site in self.sites:
            for path, name in site.products:
                del _get(out, path)[name]
        return out


def fresh_leaves(dealt: dict) -> list[np.ndarray]:
    """The per-inference ring values of a `FixedMasks.deal` tree, one array per value (A and C, their low
    words: a ring value is sent as one 64-bit share), for counting the dealer's bytes; B is the setup's."""
    leaves = jax.tree_util.tree_leaves(dealt, is_leaf=lambda v: isinstance(v, (InputMask, ProductMask)))
    return [v.a_lo if isinstance(v, InputMask) else v.c_lo for v in leaves]


def setup_masks(params: dict, sites: list[Site], protocol: str, dealer: Dealer) -> FixedMasks:
    """Mask each of `sites` (`program.trace_sites`) whose products `prefers_mask` under `protocol`
    (setup, once per model and protocol): B uniform on the ring (stream "B/<product path>" of `dealer`),
    E = round(W 2^16) - B public."""
    chosen, public, weight_masks = [], {}, {}
    unit = np.int32(1 << 16)
    for site in sites:
        kernels = [np.asarray(_get(params, path)[name], np.float64) for path, name in site.products]
        n_in, n_out = kernels[0].shape[0], sum(k.shape[1] for k in kernels)
        if not prefers_mask(protocol, n_in, n_out):
            continue
        chosen.append(site)
        set_path(public, site.path + ("unit",), unit)
        for i, ((path, name), kernel) in enumerate(zip(site.products, kernels)):
            b = dealer.stream("B/" + "/".join(path)).uint64(kernel.shape)
            w = np.round(kernel * site.scale(i) * 2.0**WEIGHT_BITS).astype(np.int64).astype(np.uint64)
            weight_masks[path] = b
            set_path(public, path + (name,), MaskedWeight(*to_words(w - b)))
    return FixedMasks(chosen, public, weight_masks)
