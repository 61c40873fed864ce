"""The cost harness on small shapes: complete, consistent records; exact layer extrapolation; clear errors."""

import json

import numpy as np
import pytest

from secformer_jax import threads
from secformer_jax.bench.model import CATEGORIES, model_records
from secformer_jax.bench.network import LAN, WAN, Network, parse_network
from secformer_jax.bench.ops import OPS, op_records
from secformer_jax.bench.report import load, render, save
from secformer_jax.cli import main

SMALL = {"gelu": (64,), "softmax": (2, 8, 8), "layernorm": (4, 16), "div": (2, 8, 8), "rsqrt": (4, 1)}
METHODS = ["puma", "mpcformer", "secformer"]


@pytest.fixture(scope="module")
def op_recs():
    return op_records(list(OPS), METHODS, ["semi2k"], [("small", SMALL)], [LAN, WAN])


@pytest.fixture(scope="module")
def tiny_model_recs():
    return model_records("bert-tiny", METHODS, ["semi2k"], 8, 1, 1, [LAN, WAN])


def test_op_records_are_complete(op_recs):
    assert len(op_recs) == len(OPS) * len(METHODS)
    for r in op_recs:
        for field in ("op", "method", "protocol", "shape", "seconds", "send_bytes", "send_actions", "lan_seconds", "wan_seconds", "max_abs_error"):
            assert field in r
        assert r["send_bytes"] > 0 and r["send_actions"] > 0  # every op here computes on secrets
        assert r["wan_seconds"] > r["lan_seconds"] > 0 and np.isfinite(r["max_abs_error"])


def test_op_errors_reflect_the_methods(op_recs):
    err = {(r["op"], r["method"]): r["max_abs_error"] for r in op_recs}
    assert err[("gelu", "puma")] < 0.03 and err[("gelu", "secformer")] < 1e-3
    assert err[("gelu", "mpcformer")] > 1.0  # Quad is not an approximation of GeLU
    assert err[("rsqrt", "secformer")] < 3e-3 and err[("div", "secformer")] < 1e-2


def test_model_categories_and_totals(tiny_model_recs):
    others = {r["protocol"]: r["by_category"]["other"]["send_bytes"] for r in tiny_model_recs if r["method"] == "puma"}
    plain = [r for r in tiny_model_recs if r["method"] == "plaintext"]
    assert len(plain) == 1 and plain[0]["seconds"] > 0
    for r in (r for r in tiny_model_recs if r["method"] != "plaintext"):
        cats = r["by_category"]
        assert set(cats) == set(CATEGORIES)
        measured = {k: v for k, v in cats.items() if k != "other"}
        assert all(c["send_bytes"] > 0 for c in measured.values())
        # the pieces are measured apart from the whole program: they account for almost all of it ("other",
        # the remainder, is the pooler, the classifier and glue), and that remainder does not depend on the
        # method (a piece measured with other settings than the model's would make it differ)
        assert 0 <= cats["other"]["send_bytes"] < 0.1 * r["send_bytes"]
        assert cats["other"]["send_bytes"] == others[r["protocol"]]
        assert r["extrapolated"] and r["measured_layers"] == 1 and r["layers"] == 2
        assert r["max_abs_error"] < 0.05
        # SecFormer's GeLU runs on dealt randomness: its offline bytes are reported apart from the online cost
        if r["method"] == "secformer":
            assert r["offline"]["send_bytes"] > 0
        else:
            assert r["offline"] is None


def test_offline_randomness_of_the_masked_sine_is_reported_apart():
    (masked,) = op_records(["gelu"], ["secformer"], ["semi2k"], [("small", SMALL)], [LAN, WAN])
    (poly,) = op_records(["gelu"], ["secformer_poly"], ["semi2k"], [("small", SMALL)], [LAN, WAN])
    # the dealer sends, per element, t, two mask words and 2 x 7 sines, seed-based: party 0 one 32-byte seed,
    # party 1 the correction share (8 bytes per value)
    assert masked["offline"]["send_bytes"] == 64 * (3 + 2 * 7) * 8 + 32
    # SEMI2K: SPU's own triples count as a third-party dealer's bytes in the total (tests/test_beaver.py)
    assert masked["beaver_bytes"] > 0 and poly["beaver_bytes"] > 0
    assert masked["total_bytes"] == masked["send_bytes"] + masked["offline"]["send_bytes"] + masked["beaver_bytes"]
    assert poly["offline"] is None and masked["send_bytes"] < poly["send_bytes"] == poly["total_bytes"] - poly["beaver_bytes"]
    # end to end: each party's measured compute plus its modelled network, never less than either
    for r in (masked, poly):
        assert len(r["compute_seconds"]) == 2 and all(c > 0 for c in r["compute_seconds"])
        assert r["lan_seconds"] >= max(r["network_lan_seconds"], max(r["compute_seconds"]))
        assert r["lan_seconds"] <= r["network_lan_seconds"] + max(r["compute_seconds"])


@pytest.fixture(scope="module")
def tiny_full_recs():
    return model_records("bert-tiny", METHODS, ["semi2k"], 8, 1, None, [LAN, WAN])


def test_extrapolated_bytes_match_a_full_run(tiny_model_recs, tiny_full_recs):
    full = tiny_full_recs
    extrapolated = {r["method"]: r for r in tiny_model_recs if r["method"] != "plaintext"}
    for r in (r for r in full if r["method"] != "plaintext"):
        assert not r["extrapolated"]
        assert abs(extrapolated[r["method"]]["send_bytes"] - r["send_bytes"]) <= 0.02 * r["send_bytes"]
        assert abs(extrapolated[r["method"]]["send_actions"] - r["send_actions"]) <= 0.02 * r["send_actions"]
        assert abs(extrapolated[r["method"]]["beaver_bytes"] - r["beaver_bytes"]) <= 0.02 * r["beaver_bytes"]


def test_network_model():
    net = Network("test", 8e6, 0.02)  # 1 MB/s, 10 ms one way
    assert net.seconds([1_000_000, 500_000], [10, 100]) == pytest.approx(max(1.0 + 0.1, 0.5 + 1.0))
    assert parse_network("1000,0.5", "LAN") == LAN
    with pytest.raises(ValueError, match="MBIT_PER_S,RTT_MS"):
        parse_network("fast", "LAN")
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        parse_network("0,1", "LAN")


def test_report_renders_tables_and_plots(tmp_path, op_recs, tiny_model_recs, tiny_full_recs):
    meta = {"command": "test", "date": "today", "machine": "here", "commit": "abc", "spu": "0.9.5", "networks": [LAN.describe()], "cost_note": "n"}
    here = threads.setting()  # this process: a simulation's plan
    party = here | {"OMP_THREAD_LIMIT": "2", "set_by_user": ["OMP_THREAD_LIMIT"]}
    save(tmp_path, "ops", meta, op_recs)
    save(tmp_path, "model", meta | {"threads": here}, tiny_model_recs)
    save(tmp_path, "model-full", meta | {"threads": here, "party_threads": {"p0": party}}, tiny_full_recs)
    save(tmp_path, "model-spu-threads", meta | {"threads": here | {"plan": "spu", "omp_thread_limit_in_effect": 7}}, tiny_model_recs)
    report = (tmp_path / "REPORT.md").read_text()
    assert "- threads: not recorded" in report  # an old result
    assert f"- threads: OMP_THREAD_LIMIT={here['OMP_THREAD_LIMIT']}, OMP_NUM_THREADS={here['OMP_NUM_THREADS']}, " in report
    assert "- threads: SPU's own counts (SECFORMER_THREADS=spu; OpenMP limit in effect: 7)" in report
    assert "- threads: p0: OMP_THREAD_LIMIT=2, " in report and "(set by the user: OMP_THREAD_LIMIT)" in report
    assert "## Extrapolation check" in report and "| bert-tiny | semi2k | puma | 1 -> 2 |" in report
    assert "| gelu | 64 | semi2k | puma |" in report and "| bert-tiny | semi2k | secformer |" in report
    assert (tmp_path / "model.png").stat().st_size > 1000
    assert [name for name, _, _ in load(tmp_path)] == ["model-full", "model-spu-threads", "model", "ops"]  # sorted by file name
    (tmp_path / "junk.json").write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="not a benchmark result"):
        render(tmp_path)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "ops", "--methods", "crypten"], "unknown 'crypten'"),
        (["bench", "ops", "--protocols", "aby3,spdz"], "unknown protocol 'spdz'; choose one of: semi2k, cheetah, aby3"),
        (["bench", "ops", "--ops", "tanh"], "unknown 'tanh'"),
        (["bench", "ops", "--sweep", "10,x"], "comma-separated integers"),
        (["bench", "model", "--model", "gpt2"], "invalid choice: 'gpt2'"),
    ],
)
def test_bench_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "model", "--model", "bert-tiny", "--layers", "0"], "--layers must be in [1, 2]"),
        (["bench", "model", "--model", "bert-tiny", "--seq-len", "1000"], "exceeds 512 positions"),
        (["bench", "ops", "--ops", "softmax", "--sweep", "100"], "not a multiple of softmax's row width 128"),
        (["bench", "ops", "--lan", "fast"], "MBIT_PER_S,RTT_MS"),
        (["bench", "ops", "--cluster", "spu_configs/2pc_semi2k.json", "--protocols", "aby3"], "runs semi2k; --protocols aby3 does not match"),
        (["bench", "ops", "--ops", "gelu", "--methods", "secformer", "--field", "fm128"], "needs field fm64"),
    ],
)
def test_bench_bad_values_give_clear_errors(tmp_path, argv, message, capsys):
    assert main(argv + ["--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
