"""`run.py`: a run's settings as one `RunSpec` (its JSON what `launch` hands every process) and one record
type written by infer, launch, bench and eval."""

import argparse
import json
import re

import numpy as np
import pytest

from secformer_jax.bench.model import model_records
from secformer_jax.bench.network import LAN, WAN
from secformer_jax.cli import main
from secformer_jax.glue.evaluate import evaluate
from secformer_jax.protocols import PROTOCOLS
from secformer_jax.run import RECORD_KEYS, RunSpec, add_spec_options

NUMBER = (int, float)
LIST = list
# the type of each shared key's value (None is allowed where a run has no such fact)
TYPES = {
    "kind": str, "mode": str, "model": str, "seq_len": int, "batch": int, "approx": dict, "protocol": str, "field": str, "linear": str,
    "programs": str, "seconds": NUMBER, "send_bytes": int, "recv_bytes": int, "send_actions": int, "party_send_bytes": LIST,
    "party_send_actions": LIST, "compute_seconds": LIST, "beaver_bytes": int, "total_bytes": int, "network_lan_seconds": NUMBER,
    "lan_seconds": NUMBER, "network_wan_seconds": NUMBER, "wan_seconds": NUMBER, "by_op": dict, "offline": dict, "setup": dict,
    "private": bool, "private_why": str, "dealer": str, "logits": LIST, "plaintext_logits": LIST, "max_abs_error": NUMBER,
    "compile_seconds": NUMBER, "threads": dict, "peak_rss_bytes": (int, dict),
}
NEVER_NONE = {"kind", "mode", "model", "seq_len", "batch", "approx", "protocol", "field", "linear", "programs", "seconds", "send_bytes",
              "send_actions", "party_send_bytes", "total_bytes", "lan_seconds", "wan_seconds", "private", "private_why"}


def check_record(out: dict, kind: str) -> None:
    """`out` is a `RunRecord`'s JSON of command `kind`: every shared key, each of its type, and JSON-serialisable."""
    assert set(TYPES) == set(RECORD_KEYS)
    missing = set(RECORD_KEYS) - set(out)
    assert not missing, f"{kind} record lacks {sorted(missing)}"
    assert out["kind"] == kind
    for key, kind_of in TYPES.items():
        value = out[key]
        if value is None:
            assert key not in NEVER_NONE, f"{kind}: {key} is None"
        else:
            typed = isinstance(value, bool) if kind_of is bool else isinstance(value, kind_of) and not isinstance(value, bool)
            assert typed, f"{kind}: {key} = {value!r}"
    assert set(out["approx"]) == {"preset", "gelu", "softmax", "layernorm"}
    assert out["total_bytes"] == out["send_bytes"] + ((out["offline"] or {}).get("send_bytes", 0)) + (out["beaver_bytes"] or 0)
    json.dumps(out)


def test_a_spec_round_trips_through_json_and_refuses_what_it_is_not():
    spec = RunSpec("ckpt", 16, "secformer", (("softmax", "2quad"),), "semi2k", "fm64", "fixed-mask")
    assert RunSpec.from_json(json.dumps(spec.to_json())) == spec and spec.protocol is PROTOCOLS["semi2k"]
    assert spec.approximations().softmax == "2quad" and spec.replace(model=None).model is None
    good = spec.to_json()
    for bad, message in [
        ("[1]", "a run spec is a JSON object"), ("{not json", "a run spec is a JSON object"),
        (good | {"extra": 1}, "unknown: ['extra']"), ({k: v for k, v in good.items() if k != "linear"}, "missing: ['linear']"),
        (good | {"max_length": "16"}, "max length must be an integer"), (good | {"max_length": 1}, "at least 2 tokens"),
        (good | {"staged": "no"}, "run spec 'staged'"), (good | {"approx": "fancy"}, "unknown approximation preset 'fancy'"),
        (good | {"overrides": {"gelu": "relu"}}, "relu"), (good | {"protocol": "spdz"}, "unknown protocol 'spdz'"),
        (good | {"protocol": "cheetah"}, "cheetah runs without a dealer"), (good | {"field": "fm16"}, "unknown field 'fm16'"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            RunSpec.from_json(bad if isinstance(bad, str) else json.dumps(bad))


def test_the_spec_option_carries_every_setting_and_agrees_with_the_config(tmp_path):
    parser = argparse.ArgumentParser()
    add_spec_options(parser, protocol=False, field=False, spec=True)
    flags = parser.parse_args(["--approx", "puma", "--max-length", "32", "--linear", "fixed-mask"])
    assert RunSpec.from_args(flags, protocol="aby3", field="fm64") == RunSpec(None, 32, "puma", protocol="aby3", linear="fixed-mask")
    spec = RunSpec("m", 8, "mpcformer", protocol="semi2k")
    text = json.dumps(spec.to_json())
    assert RunSpec.from_args(parser.parse_args(["--spec", text, "--max-length", "99"]), protocol="semi2k", field="fm64") == spec  # --spec wins
    (tmp_path / "spec.json").write_text(text)
    assert RunSpec.from_args(parser.parse_args(["--spec", str(tmp_path / "spec.json")]), protocol="semi2k", field="fm64") == spec
    with pytest.raises(ValueError, match="the run spec says protocol semi2k, the cluster config aby3"):
        RunSpec.from_args(parser.parse_args(["--spec", text]), protocol="aby3", field="fm64")
    with pytest.raises(FileNotFoundError, match="neither a JSON object nor a file"):
        RunSpec.from_args(parser.parse_args(["--spec", str(tmp_path / "missing.json")]))


def test_infer_bench_and_eval_write_one_record_type(tiny_checkpoint, tmp_path):
    """The same top-level keys for the same facts (launch's: `test_cluster.test_launch_equals_simulation`)."""
    path = tmp_path / "infer.json"
    assert main(["infer", "--text", "a fine film", "--model", str(tiny_checkpoint[0]), "--protocol", "semi2k", "--approx", "puma",
                 "--max-length", "16", "--json", str(path)]) == 0
    infer = json.loads(path.read_text())
    check_record(infer, "infer")

    (bench,) = model_records("bert-tiny", ["puma"], ["semi2k"], 8, 1, 1, [LAN, WAN])[1:]
    check_record(bench, "model")

    glue = tmp_path / "glue" / "SST-2"
    glue.mkdir(parents=True)
    (glue / "dev.tsv").write_text("sentence\tlabel\na fine film\t1\na dull film\t0\n")
    evaluated = evaluate("SST-2", tiny_checkpoint[0], "puma", 16, tmp_path / "glue", spu_examples=2, protocol="semi2k")["spu"]
    check_record(evaluated, "eval")

    for out in (infer, bench, evaluated):  # the same facts under the same keys, whoever wrote them
        assert (out["protocol"], out["field"], out["linear"], out["programs"]) == ("semi2k", "fm64", "spu", "one")
        assert out["approx"] == {"preset": "puma", "gelu": "puma", "softmax": "puma", "layernorm": "puma"}
        assert out["private"] is False and out["offline"] is None and out["setup"] is None and out["beaver_bytes"] > 0
        assert out["mode"] == "simulation" and len(out["party_send_bytes"]) == len(out["compute_seconds"]) == 2
    assert infer["seq_len"] == 16 and infer["logits"] is not None and np.isfinite(infer["max_abs_error"])
    assert evaluated["batch"] == 16 and evaluated["seq_len"] == 16 and evaluated["examples"] == 2
    assert bench["seq_len"] == 8 and bench["logits"] is None and bench["model"] == "bert-tiny"


def test_the_nodes_parts_of_a_private_run_deal_fresh_and_refuse_a_staged_run(tiny_checkpoint):
    """`PrivateRun`'s parts for owners in separate processes: the model owner's jobs take its weights in the
    programs' input order, the dealer deals B once and fresh randomness per run from shapes only, and a run
    of several stages is refused by name (the cluster's nodes run one program)."""
    import jax

    from secformer_jax.approx import PRESETS
    from secformer_jax.inference import classifier_builder
    from secformer_jax.private_run import PrivateRun
    from secformer_jax.randomness import Dealer
    from secformer_jax.stages import StagedClassifier

    _, config, params = tiny_checkpoint
    aby3 = PROTOCOLS["aby3"]
    approx = PRESETS["secformer"]
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, np.float32)
    data = {"words": f32(1, 8, config.vocab_size), "mask": f32(1, 8), "types": f32(1, 8, config.type_vocab_size)}
    builder = classifier_builder(config, approx, "fm64", "fixed-mask", aby3)

    jobs = PrivateRun.single(builder, params).owner_jobs(aby3, data)
    assert jobs.setup is not None and len(jobs.setup[1]) == jobs.setup[0].names.count("weights")
    assert len(jobs.weights) == jobs.program.names.count("params")

    dealer_view = PrivateRun.single(builder, None)  # the dealer has no weights
    dealer = Dealer()
    masks, setup = dealer_view.deal_setup(aby3, data, dealer)
    assert [a.shape for a in setup] == [a.shape for a in jax.tree_util.tree_leaves(masks.kernel_shapes())]
    first, second = dealer_view.deal_run(masks, data, Dealer()), dealer_view.deal_run(masks, data, Dealer())  # a fresh key per run
    assert [a.shape for a in first] == [a.shape for a in second] and len(first) == jobs.program.names.count("correlation") + jobs.program.names.count("linear")
    assert not any(np.array_equal(a, b) for a, b in zip(first, second) if a.size > 8), "two runs dealt the same randomness"
    with pytest.raises(ValueError, match="already used in this run"):  # one dealer's streams serve one run
        dealer_view.deal_run(masks, data, dealer), dealer_view.deal_run(masks, data, dealer)

    staged = StagedClassifier(config, approx, "fm64", "spu").private_run(params)
    with pytest.raises(ValueError, match="one program; this run has 4 stages"):
        staged.owner_jobs(aby3, data)
