"""SEMI2K's own Beaver triples, counted: the bytes a third-party dealer would send for SPU's products.

SPU 0.9.5's SEMI2K takes the correlated randomness of its products (Beaver triples and their kin) from the
trusted-first-party provider: both parties expand seeds, party 0 computes the correction itself, and
nothing travels, so a run's link counters show no dealer at all. A deployment that does not trust party 0
needs a dealer (SPU's TrustedThirdParty provider, whose server is not in the wheel) that sends one party
the correction, one ring element per output of the correlation (`TrustedParty::adjust*`). `dealer_bytes`
counts those corrections for one run, per SPU kernel, from what the run already reports: each kernel's
send bytes (SPU's MPC-level profile, `enable_hal_profile`) and the program's shapes. With S = a kernel's
send bytes per party (2PC: both parties send alike), F = the field's element bytes:

    mul_aa, mul_a1b         Mul: opens x - a and y - b (2 n F), corrects c (n F):            S / 2
    and_bb, a2b, msb_a2b    And triples only (the adders' gates): opens 2 n B, corrects n B:  S / 2
    square_s                Square: opens x - a (n F), corrects a^2 (n F):                    S
    trunc_a                 2PC probabilistic truncation: one MulPriv on words of the truncation's
                            ring (FM32 for FM64's 18 bits), sends n w, corrects n w:          S
    b2a                     RandBit: opens n boolean words (B bytes each), corrects n nbits F;
                            the profile does not give nbits <= 8 B, so counted at its bound:  8 F S
    mmul_aa                 Dot: opens m k + k n, corrects m n: F times the output size of every
                            product of two secrets in the program (pphlo dot / dot_general), checked
                            against the kernel's bytes
    a2p, b2p, a2v           openings: no randomness

Exact (b2a aside, a bound and negligible: kilobytes in a BERT-base run) for SPU 0.9.5's kernels
(libspu/mpc/semi2k: arithmetic.cc, boolean.cc, conversion.cc). The listed kernels' bytes must add up to
the run's link total and the products' sizes to mmul_aa's bytes, or the count refuses (a kernel or an op
it does not know): no silent undercount.
"""

from __future__ import annotations

import re

_KERNEL_LINE = re.compile(r"- (?P<name>[A-Za-z0-9_]+), executed \d+ times, duration \S+ send bytes (?P<sb>\d+) recv bytes")
# corrections per send byte of one party, for kernels whose correction follows their openings
PER_SEND_BYTE = {"mul_aa": 0.5, "mul_a1b": 0.5, "and_bb": 0.5, "a2b": 0.5, "msb_a2b": 0.5, "square_s": 1.0, "trunc_a": 1.0}
OPENINGS = ("a2p", "b2p", "a2v")
B2A_BOUND = 8  # b2a corrections <= 8 F S (nbits <= 8 bytes per boolean word)
FIELD_BYTES = {"fm32": 4, "fm64": 8, "fm128": 16}
_DOT = re.compile(
    r"pphlo\.dot(?:_general)? .*?: \(tensor<(?P<lhs>[0-9x]*)x?!pphlo\.secret<[^>]*>>, tensor<(?P<rhs>[0-9x]*)x?!pphlo\.secret<[^>]*>>\) "
    r"-> tensor<(?P<out>[0-9x]*)x?!pphlo\.secret"
)


def _numel(dims: str) -> int:
    n = 1
    for d in filter(None, dims.split("x")):
        n *= int(d)
    return n


def kernel_send_bytes(log: str) -> dict[str, int]:
    """{kernel: send bytes summed over the parties} of the counted and opening kernels, from SPU's
    MPC-level profile lines in `log` (parties' reports may interleave)."""
    known = set(PER_SEND_BYTE) | set(OPENINGS) | {"b2a", "mmul_aa"}
    totals: dict[str, int] = {}
    for m in _KERNEL_LINE.finditer(log):
        if m["name"] in known:
            totals[m["name"]] = totals.get(m["name"], 0) + int(m["sb"])
    return totals


def secret_products(mlir: str) -> tuple[int, int]:
    """(sum of output sizes, sum of operand sizes) over the program's products of two secrets. Refuses one
    inside a loop's region (it would run a data-dependent number of times), calls and beaver caches."""
    if re.search(r"func\.call|beaver_cache", mlir):
        raise ValueError("the program has calls or beaver caches: its products cannot be counted from its text")
    body = min((len(line) - len(line.lstrip()) for line in mlir.splitlines() if line.lstrip().startswith("%")), default=0)
    outputs = operands = 0
    for line in mlir.splitlines():
        m = _DOT.search(line)
        if m is None:
            continue
        if len(line) - len(line.lstrip()) > body:
            raise ValueError(f"a product of two secrets inside a loop's region cannot be counted from the program's text: {line.strip()[:120]}")
        outputs += _numel(m["out"])
        operands += _numel(m["lhs"]) + _numel(m["rhs"])
    return outputs, operands


def dealer_bytes(log: str, mlir: str, field: str, reports: int, link_send_bytes: int) -> int:
    """Bytes a third-party dealer would send for one 2PC SEMI2K run's products (module doc): `log` holds the
    MPC-level profiles of `reports` parties (both in a simulation, one party's own in a cluster: the
    parties send alike), `mlir` is the program, `link_send_bytes` the link total of those reports."""
    f = FIELD_BYTES[field]
    sent = kernel_send_bytes(log)
    if sum(sent.values()) != link_send_bytes:
        raise ValueError(
            f"SEMI2K kernels' send bytes {sent} add up to {sum(sent.values())}, not the link's {link_send_bytes}: a "
            "communicating kernel is missing from beaver.py's rules (or the MPC profile is off: enable_hal_profile)"
        )
    per_party = {name: b / reports for name, b in sent.items()}
    outputs, operands = secret_products(mlir)
    if per_party.get("mmul_aa", 0) != operands * f:
        raise ValueError(f"mmul_aa sent {per_party.get('mmul_aa', 0)} bytes per party, the program's products of secrets open {operands * f}")
    total = sum(per_party.get(name, 0) * k for name, k in PER_SEND_BYTE.items())
    total += B2A_BOUND * f * per_party.get("b2a", 0) + outputs * f
    return round(total)
