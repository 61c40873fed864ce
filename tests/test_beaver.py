"""SEMI2K's own Beaver triples, counted as a third-party dealer's bytes (`secformer_jax/beaver.py`)."""

import jax.numpy as jnp
import numpy as np
import pytest

from secformer_jax import beaver
from secformer_jax.spu_runner import Simulation, compile_program

X = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
Y = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)


def _cost(fn, *args, protocol="semi2k"):
    return Simulation(protocol).run(compile_program(fn, *args), *args)[1]


def test_products_count_one_ring_element_per_triple_output():
    """x y (24 outputs) and x @ y (20 outputs): one 8-byte correction per triple output (Mul, Dot), plus the
    truncation's (one 4-byte MulPriv correction per output: SPU's 2PC truncation works on FM32 words)."""
    assert _cost(lambda x, y: x * y, X, X).beaver_bytes == 24 * 8 + 24 * 4
    assert _cost(lambda x, y: x @ y, X, Y).beaver_bytes == 20 * 8 + 20 * 4
    attention = np.ones((2, 3, 4, 5), np.float32)  # batched products of two secrets (dot_general)
    assert _cost(lambda q, k: jnp.einsum("bhqd,bhkd->bhqk", q, k), attention, attention).beaver_bytes == 2 * 3 * 4 * 4 * (8 + 4)


def test_comparisons_count_their_and_gates_and_other_protocols_have_none():
    less = _cost(lambda x, y: x < y, X, X)
    assert less.beaver_bytes == less.send_bytes / 2 / 2  # And triples: per party, two openings per correction
    assert _cost(lambda x, y: x * y, X, X, protocol="aby3").beaver_bytes is None
    assert _cost(lambda x, y: x * y, X, X, protocol="cheetah").beaver_bytes is None


def _run_with_log(monkeypatch, fn, *args):
    """(program, cost, the run's SPU log as `beaver.dealer_bytes` received it)."""
    program, logs = compile_program(fn, *args), []
    count = beaver.dealer_bytes
    monkeypatch.setattr(beaver, "dealer_bytes", lambda text, *rest: logs.append(text) or count(text, *rest))
    cost = Simulation("semi2k").run(program, *args)[1]
    monkeypatch.setattr(beaver, "dealer_bytes", count)
    return program, cost, logs[0]


def test_the_count_refuses_what_it_does_not_know(monkeypatch):
    """A communicating kernel outside the rules (here: one whose profile line is dropped) or a product of
    secrets the program's text does not show must not undercount silently."""
    program, cost, log = _run_with_log(monkeypatch, lambda x, y: (x * y, x < y), X, X)
    assert beaver.dealer_bytes(log, program.mlir, "fm64", 2, cost.send_bytes) == cost.beaver_bytes
    unknown = "\n".join(line for line in log.splitlines() if "- msb_a2b," not in line)
    with pytest.raises(ValueError, match="missing from beaver.py's rules"):
        beaver.dealer_bytes(unknown, program.mlir, "fm64", 2, cost.send_bytes)
    program, cost, log = _run_with_log(monkeypatch, lambda x, y: x @ y, X, Y)
    with pytest.raises(ValueError, match="products of secrets open 0"):
        beaver.dealer_bytes(log, "", "fm64", 2, cost.send_bytes)
