"""The SPU runner: compile once / run many, protocols, cost parsing, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from secformer_jax.spu_runner import Simulation, compile_program, parse_profile, runtime_config


def _fn(params, x):
    return {"y": jnp.tanh(x @ params["w"]), "s": jnp.sum(x)}


@pytest.fixture(scope="module")
def program():
    return compile_program(_fn, {"w": jax.ShapeDtypeStruct((8, 3), jnp.float32)}, jax.ShapeDtypeStruct((4, 8), jnp.float32))


@pytest.mark.parametrize("protocol", ["semi2k", "cheetah", "aby3"])
def test_runs_match_plaintext_and_report_cost(program, protocol):
    rng = np.random.default_rng(0)
    params, x = {"w": rng.normal(size=(8, 3)).astype(np.float32)}, rng.normal(size=(4, 8)).astype(np.float32)
    sim = Simulation(protocol)
    out, cost = sim.run(program, params, x)
    np.testing.assert_allclose(out["y"], np.tanh(x @ params["w"]), atol=1e-2)  # SPU tanh: ~5e-3
    np.testing.assert_allclose(out["s"], x.sum(), atol=1e-3)
    assert len(cost.party_send_bytes) == sim.world_size and sum(cost.party_send_bytes) == cost.send_bytes
    assert cost.send_bytes > 0 and cost.recv_bytes > 0 and cost.send_actions > 0 and cost.seconds > 0
    assert {"dot", "tanh"} <= cost.by_op.keys()
    assert sum(op.send_bytes for op in cost.by_op.values()) <= cost.send_bytes  # the link total includes setup
    # a second run of the same program costs the same: exactly for semi2k/aby3; Cheetah's HE/OT messages
    # vary by a few hundred bytes in ~12 MB, its action count does not
    _, again = sim.run(program, params, x)
    assert again.send_actions == cost.send_actions
    assert abs(again.send_bytes - cost.send_bytes) <= (0.001 * cost.send_bytes if protocol == "cheetah" else 0)


def test_parse_profile_reads_spu_report():
    log = (
        "[info] [api.cc:220] HLO profiling: total time 0.007\n"
        "[info] [api.cc:223] - pphlo.divide, executed 2 times, duration 0.0023s, send bytes 5616 recv bytes 5520, send actions 54, recv actions 53\n"
        "[info] [api.cc:223] - pphlo.dot, executed 1 times, duration 2e-05s, send bytes 240 recv bytes 240, send actions 3, recv actions 3\n"
        "[info] [api.cc:220] HAL profiling: total time 0.0069\n"
        "[info] [api.cc:223] - f_div, executed 1 times, duration 0.0023s, send bytes 5616 recv bytes 5520, send actions 54, recv actions 53\n"
        "[info] [api.cc:233] Link details: total send bytes 9368, recv bytes 8840, send actions 107, recv actions 101\n"
    )
    cost = parse_profile(log, seconds=1.5, parties=1)
    assert (cost.send_bytes, cost.recv_bytes, cost.send_actions, cost.recv_actions) == (9368, 8840, 107, 101)
    assert set(cost.by_op) == {"divide", "dot"}  # the HAL section is not mixed in
    assert cost.by_op["divide"].count == 2 and cost.by_op["dot"].seconds == 2e-05
    # two parties whose lines interleave: bytes add up, per-party totals are kept
    two = parse_profile(log + log.replace("9368", "1000"), seconds=1.5, parties=2)
    assert two.send_bytes == 10368 and two.party_send_bytes == [9368, 1000]
    assert two.by_op["divide"].send_bytes == 2 * 5616 and two.by_op["divide"].count == 2


def test_parse_profile_without_report_is_an_error():
    with pytest.raises(RuntimeError, match="enable_pphlo_profile"):
        parse_profile("nothing here", 1.0, parties=2)


def test_bad_protocol_field_and_option():
    with pytest.raises(ValueError, match="unknown protocol 'spdz'.*semi2k, cheetah, aby3"):
        runtime_config("spdz")
    with pytest.raises(ValueError, match="unknown field 'fm32'"):
        runtime_config("aby3", "fm32")
    with pytest.raises(ValueError, match="unknown SPU runtime option 'no_such_option'"):
        runtime_config("aby3", no_such_option=1)


def test_fm128_option(program):
    params, x = {"w": np.ones((8, 3), np.float32)}, np.full((4, 8), 0.1, np.float32)
    out, _ = Simulation("semi2k", "fm128").run(program, params, x)
    np.testing.assert_allclose(out["y"], np.tanh(x @ params["w"]), atol=1e-2)  # SPU tanh: ~5e-3


def test_wrong_inputs_are_refused(program):
    sim = Simulation("semi2k")
    with pytest.raises(ValueError, match="shape"):
        sim.run(program, {"w": np.ones((8, 3), np.float32)}, np.ones((5, 8), np.float32))
    with pytest.raises(ValueError, match="structure"):
        sim.run(program, {"v": np.ones((8, 3), np.float32)}, np.ones((4, 8), np.float32))
