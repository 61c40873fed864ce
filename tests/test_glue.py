"""GLUE pipeline: reading and metrics against known values, batching, fine-tuning, distillation (the
student's losses go down), resumption, evaluation in plaintext and under SPU, the CLI and the report."""

import json
import shutil

import numpy as np
import pytest
from scipy import stats

from secformer_jax.checkpoint import load_checkpoint
from secformer_jax.cli import main
from secformer_jax.glue import batches, tasks
from secformer_jax.glue.distill import distill
from secformer_jax.approx import PRESETS, resolve_approx, sine
from secformer_jax.glue.evaluate import encoded, evaluate, gelu_inputs, spu_batches, subset
from secformer_jax.gelu_domain import check_gelu_range
from secformer_jax.checkpoint import read_metadata
from secformer_jax.glue.finetune import finetune, keeps_classifier
from secformer_jax.glue.loop import Hyper


SHARED = tasks.default_glue_dir()
needs_glue = pytest.mark.skipif(not SHARED.exists(), reason=f"GLUE data not found at {SHARED}")


# -- reading and metrics ---------------------------------------------------------------------------------

@needs_glue
def test_rows_and_majority_baselines_match_glue():
    """Row counts of the data README, and the majority-class baselines GLUE publishes for these dev sets
    (RTE 52.7, MRPC F1/acc 81.2/68.4, SST-2 50.9, CoLA Matthews 0)."""
    expected_rows = {"RTE": (2490, 277), "MRPC": (3668, 408), "STS-B": (5749, 1500), "CoLA": (8551, 1043), "SST-2": (67349, 872)}
    for name, (train, dev) in expected_rows.items():
        assert (len(tasks.read_task(name, "train")), len(tasks.read_task(name, "dev"))) == (train, dev)
    baselines = {"RTE": {"accuracy": 0.527}, "MRPC": {"f1": 0.812, "accuracy": 0.684}, "SST-2": {"accuracy": 0.509}, "CoLA": {"matthews": 0.0}}
    for name, want in baselines.items():
        dev = tasks.read_task(name, "dev")
        majority = np.full(len(dev), np.bincount(dev.labels).argmax())
        got = tasks.compute_metrics(dev.task, majority, dev.labels)
        for k, v in want.items():
            assert got[k] == pytest.approx(v, abs=5e-4), (name, k)
    stsb = tasks.read_task("STS-B", "dev")
    assert stsb.labels.dtype == np.float32 and 0 <= stsb.labels.min() and stsb.labels.max() <= 5


def test_metrics_known_values():
    y = np.array([1, 1, 1, 0, 0, 0])
    p = np.array([1, 1, 0, 0, 0, 1])  # tp 2, tn 2, fp 1, fn 1
    assert tasks.matthews(y, p) == pytest.approx(1 / 3)
    assert tasks.f1(y, p) == pytest.approx(2 / 3)
    assert tasks.matthews(y, np.ones(6)) == 0.0 and tasks.f1(y, np.zeros(6)) == 0.0
    assert tasks.matthews(y, 1 - y) == pytest.approx(-1.0)
    preds, labels = np.array([0.1, 0.4, 0.35, 0.8, 2.0]), np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    got = tasks.compute_metrics(tasks.TASKS["STS-B"], preds, labels)
    assert got["pearson"] == pytest.approx(stats.pearsonr(preds, labels)[0])
    assert got["spearman"] == pytest.approx(0.9)  # ranks 1 3 2 4 5 vs 1..5: 1 - 6*2/(5*24)
    assert tasks.compute_metrics(tasks.TASKS["STS-B"], np.ones(5), labels) == {"pearson": 0.0, "spearman": 0.0}
    with pytest.raises(ValueError, match="3 predictions for 6 labels"):
        tasks.compute_metrics(tasks.TASKS["RTE"], p[:3], y)


def write_tsv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")


def test_read_task_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown GLUE task 'QNLI'"):
        tasks.get_task("QNLI")
    assert tasks.get_task("sst2").name == "SST-2" and tasks.get_task("stsb").name == "STS-B"
    with pytest.raises(FileNotFoundError, match="--glue-dir"):
        tasks.read_task("RTE", "dev", tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        tasks.read_task("RTE", "test", tmp_path)
    write_tsv(tmp_path / "SST-2" / "dev.tsv", [("sentence", "label"), ('"an unmatched quote', "1"), ("fine", "2")])
    with pytest.raises(ValueError, match=r"dev.tsv:3: label '2' is not one of 0, 1"):
        tasks.read_task("SST-2", "dev", tmp_path)
    write_tsv(tmp_path / "SST-2" / "dev.tsv", [("text", "label"), ("a", "1")])
    with pytest.raises(ValueError, match="header lacks column"):
        tasks.read_task("SST-2", "dev", tmp_path)
    write_tsv(tmp_path / "CoLA" / "dev.tsv", [("src", "1", "")])
    with pytest.raises(ValueError, match="dev.tsv:1: 3 columns, expected at least 4"):
        tasks.read_task("CoLA", "dev", tmp_path)
    write_tsv(tmp_path / "STS-B" / "dev.tsv", [("sentence1", "sentence2", "score"), ("a", "b", "high")])
    with pytest.raises(ValueError, match="score 'high' is not a number"):
        tasks.read_task("STS-B", "dev", tmp_path)
    # no quote handling: a row opening with " stays one row
    write_tsv(tmp_path / "SST-2" / "dev.tsv", [("sentence", "label"), ('"an unmatched quote', "1"), ("next", "0")])
    got = tasks.read_task("SST-2", "dev", tmp_path)
    assert got.text_a == ['"an unmatched quote', "next"] and got.labels.tolist() == [1, 0]


# -- batching --------------------------------------------------------------------------------------------

def test_buckets_and_batches(minilm_tokenizer):
    words = ["good"] * 5 + ["a b c d e f g h i j k l m n o p q r s t"] * 3 + ["word " * 80] * 2
    examples = tasks.Examples(tasks.TASKS["SST-2"], words, None, np.arange(10, dtype=np.int32) % 2)
    data = batches.tokenize(minilm_tokenizer, examples, 64)
    assert data.truncated == 2 and max(len(x) for x in data.ids) == 64
    assert [batches.bucket(n, 64) for n in (3, 16, 17, 33, 64)] == [16, 16, 32, 64, 64]
    seen = []
    for b in batches.eval_batches(data, 4):
        real = b.index >= 0
        assert b.input_ids.shape[0] == 4 and b.weights.tolist() == real.astype(float).tolist()
        assert (b.attention_mask.sum(1) >= 1).all()  # padding rows keep one token: finite softmaxes
        seen += b.index[real].tolist()
    assert sorted(seen) == list(range(10))
    one = batches.train_batches(data, 3, seed=1, epoch=0)
    assert all((a == b).all() for a, b in zip(one, batches.train_batches(data, 3, seed=1, epoch=0)))
    assert len(one) == 3 and all(len(b) == 3 for b in one)
    assert len(set(np.concatenate(one).tolist())) == 9  # full batches only, no example twice
    with pytest.raises(ValueError, match="fewer than one batch"):
        batches.train_batches(data, 11, 0, 0)


# -- fine-tuning, distillation, evaluation on a tiny model ------------------------------------------------

POSITIVE = ["good", "great", "fine", "lovely", "superb", "nice", "happy", "brilliant"]
NEGATIVE = ["bad", "awful", "poor", "ugly", "dull", "sad", "boring", "terrible"]


@pytest.fixture(scope="module")
def tiny_glue(tmp_path_factory):
    """A learnable SST-2 (a sentiment word in filler), STS-B (score = shared words) and RTE (entailment = the
    same sentence) in glue_data layout."""
    root = tmp_path_factory.mktemp("glue")
    rng, rte_rng = np.random.default_rng(0), np.random.default_rng(1)
    filler = ["the", "film", "was", "a", "story", "and", "it", "very"]
    for split, n in (("train", 96), ("dev", 24)):
        rows = [("sentence", "label")]
        for i in range(n):
            word = rng.choice(POSITIVE if i % 2 else NEGATIVE)
            rows.append((" ".join(rng.choice(filler, 5).tolist() + [word]), str(i % 2)))
        write_tsv(root / "SST-2" / f"{split}.tsv", rows)
        rows = [("sentence1", "sentence2", "score")]
        for i in range(n):
            a = rng.choice(filler, 5).tolist()
            shared = i % 6
            b = a[:shared] + rng.choice(POSITIVE, 5 - shared).tolist()
            rows.append((" ".join(a), " ".join(b), f"{shared:.1f}"))
        write_tsv(root / "STS-B" / f"{split}.tsv", rows)
        rows = [("index", "sentence1", "sentence2", "label")]
        for i in range(n):
            a = " ".join(rte_rng.choice(filler, 5).tolist())
            b = a if i % 2 else " ".join(rte_rng.choice(NEGATIVE, 3).tolist())
            rows.append((str(i), a, b, ("not_entailment", "entailment")[i % 2]))
        write_tsv(root / "RTE" / f"{split}.tsv", rows)
    return root


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory, tiny_checkpoint, tiny_glue):
    out = tmp_path_factory.mktemp("runs") / "teacher"
    meta = finetune("SST-2", out, tiny_checkpoint[0], Hyper(20, 2e-3, batch_size=16), max_length=32, glue_dir=tiny_glue)
    return out, meta


def test_finetune_learns_and_saves(tiny_teacher, tiny_glue):
    out, meta = tiny_teacher
    hist = meta["history"]
    assert hist["final_loss"] < 0.5 * hist["initial_loss"], hist
    assert hist["steps"] == 120 and len(hist["epoch_loss"]) == 20
    assert read_metadata(out)["role"] == "teacher" and not (out / "train_state").exists()
    ckpt = load_checkpoint(out)
    assert ckpt.has_classifier and ckpt.config.id2label == {0: "negative", 1: "positive"}
    result = evaluate("SST-2", out, max_length=32, glue_dir=tiny_glue)
    assert result["preset"] == "plaintext" and result["metrics"]["accuracy"] >= 0.9
    with pytest.raises(ValueError, match="already holds a finished checkpoint"):
        finetune("SST-2", out, None, glue_dir=tiny_glue)
    with pytest.raises(ValueError, match="trained on SST-2, not RTE"):
        evaluate("RTE", out, glue_dir=tiny_glue)


def test_a_classifier_trained_on_another_task_starts_fresh(tiny_teacher, tiny_glue, tmp_path):
    """RTE from the SST-2 teacher: the same width but other labels, so a new classifier; SST-2 keeps it."""
    base = load_checkpoint(tiny_teacher[0]).config
    assert not keeps_classifier(base, tasks.get_task("RTE")) and keeps_classifier(base, tasks.get_task("SST-2"))
    meta = finetune("RTE", tmp_path / "rte", tiny_teacher[0], Hyper(1, 1e-3, 16), max_length=32, glue_dir=tiny_glue)
    assert meta["classifier"] == "new (random initialisation)" and meta["base_model"] == str(tiny_teacher[0])
    meta = finetune("SST-2", tmp_path / "again", tiny_teacher[0], Hyper(1, 1e-3, 16), max_length=32, glue_dir=tiny_glue)
    assert meta["classifier"] == "the base model's"


def test_a_checkpoint_records_its_gelu_range_and_a_gelu_it_leaves_is_refused(tiny_teacher, tiny_glue, tmp_path, capsys):
    """`secformer.json` records the GeLU inputs measured on the training data and the smallest cosine spec
    covering them; a cosine GeLU whose domain they leave is refused (infer, eval, launch) naming that spec."""
    out, meta = tiny_teacher
    recorded = read_metadata(out)["gelu_inputs"]
    assert recorded == meta["gelu_inputs"] and recorded["min"] < 0 < recorded["max"]
    assert recorded["fourier_gelu"] == sine.spec_for_range(recorded["min"], recorded["max"]) is not None
    assert recorded["measured_on"] == f"its training data ({meta['train_examples']} examples)"
    wide = tmp_path / "wide"  # the same checkpoint, recorded as reaching |x| = 26.2 (a MiniLM student's range)
    shutil.copytree(out, wide)
    (wide / "secformer.json").write_text(json.dumps(read_metadata(out) | {"gelu_inputs": {"min": -9.0, "max": 26.2, "fourier_gelu": "fourier64"}}))
    assert check_gelu_range(read_metadata(wide), resolve_approx("secformer", gelu="fourier64"), "w") is None
    assert check_gelu_range(read_metadata(wide), resolve_approx("secformer"), "w") is None  # the paper's GeLU: no domain
    assert "records no GeLU input range" in check_gelu_range({}, resolve_approx("secformer", gelu="fourier"), "w")
    with pytest.raises(ValueError, match=r"reach \|x\| = 26.2 .* domain \|x\| <= 12: use --gelu fourier64"):
        evaluate("SST-2", wide, glue_dir=tiny_glue, overrides={"gelu": "fourier32"})
    for command in (["infer", "--text", "fine"], ["launch", "--config", "spu_configs/3pc_aby3.json", "--text", "fine"]):
        assert main([*command, "--model", str(wide), "--gelu", "fourier32", "--max-length", "16"]) != 0
        assert "use --gelu fourier64" in capsys.readouterr().err


class FailingIds(list):
    """Token ids that raise KeyboardInterrupt (as Ctrl-C would) on their `fail_at`-th lookup."""

    def __init__(self, ids, fail_at):
        super().__init__(ids)
        self.lookups, self.fail_at = 0, fail_at

    def __getitem__(self, i):
        self.lookups += 1
        if self.lookups == self.fail_at:
            raise KeyboardInterrupt
        return super().__getitem__(i)


def test_interrupted_run_resumes_to_the_same_result(tmp_path, tiny_checkpoint, tiny_glue):
    from secformer_jax.approx import PRESETS
    from secformer_jax.glue.finetune import apply_model, task_loss, training_data
    from secformer_jax.glue.loop import fit
    from secformer_jax.model import BertForSequenceClassification

    ckpt = load_checkpoint(tiny_checkpoint[0])
    task = tasks.TASKS["SST-2"]
    data = training_data(ckpt, task, 32, None, tiny_glue, 0)
    model = BertForSequenceClassification(ckpt.config, PRESETS["plaintext"])

    def loss_fn(p, _aux, b, rng):
        return task_loss(task, apply_model(model, p, b, rng)["logits"], b["labels"], b["weights"])

    hyper = Hyper(2, 1e-3, batch_size=16)
    straight, _ = fit(loss_fn, ckpt.params, None, data, hyper, tmp_path / "a", "straight")
    # make_batch looks every example up 3 times: 96 examples for the initial loss, then 16 per step -> fails in step 3
    broken = batches.Tokenized(data.examples, FailingIds(data.ids, 3 * 96 + 3 * 2 * 16 + 1), data.types, data.max_length, 0)
    with pytest.raises(KeyboardInterrupt):
        fit(loss_fn, ckpt.params, None, broken, hyper, tmp_path / "b", "interrupted")
    saved = json.loads((tmp_path / "b" / "progress.json").read_text())
    assert saved["step"] == 2
    resumed, history = fit(loss_fn, ckpt.params, None, data, hyper, tmp_path / "b", "resumed")
    assert history["resumed_from"] == 2
    np.testing.assert_allclose(_flat(resumed), _flat(straight), atol=1e-5)
    with pytest.raises(ValueError, match="other settings"):
        fit(loss_fn, ckpt.params, None, data, Hyper(3, 1e-3, batch_size=16), tmp_path / "b", "changed")


def _flat(tree):
    import jax

    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree_util.tree_leaves(tree)])


@pytest.fixture(scope="module")
def tiny_students(tmp_path_factory, tiny_teacher, tiny_glue):
    root = tmp_path_factory.mktemp("students")
    return {
        name: (root / name, distill("SST-2", tiny_teacher[0], name, root / name, Hyper(2, 2e-3, 16), Hyper(2, 1e-3, 16),
                                    max_length=32, glue_dir=tiny_glue))
        for name in ("mpcformer", "secformer")
    }


def test_distillation_lowers_the_students_losses(tiny_students):
    for name, (out, meta) in tiny_students.items():
        s1, s2 = meta["history"]["stage1"], meta["history"]["stage2"]
        assert s1["final_loss"] < 0.7 * s1["initial_loss"], (name, s1)
        assert s2["final_loss"] < s2["initial_loss"], (name, s2)
        saved = read_metadata(out)
        assert saved["method"] == name and saved["evaluate_with"] == name
    assert tiny_students["secformer"][1]["trained_with"] == {"gelu": "exact", "softmax": "2quad", "layernorm": "exact"}


def test_distill_refuses_bad_inputs(tmp_path, tiny_teacher, tiny_checkpoint, tiny_glue):
    with pytest.raises(ValueError, match="unknown student 'puma'"):
        distill("SST-2", tiny_teacher[0], "puma", tmp_path / "x", glue_dir=tiny_glue)
    with pytest.raises(ValueError, match="fine-tuned on SST-2, not STS-B"):
        distill("STS-B", tiny_teacher[0], "secformer", tmp_path / "x", glue_dir=tiny_glue)
    with pytest.raises(ValueError, match="temperature must be positive"):
        distill("SST-2", tiny_teacher[0], "secformer", tmp_path / "x", temperature=0, glue_dir=tiny_glue)


def test_spu_runs_group_examples_by_bucket(minilm_tokenizer):
    """SPU examples run in programs of one padded length and at most `batch` rows, in near-equal parts."""
    texts = ["good"] * 5 + [" ".join(["word"] * 20)] * 3  # 3 tokens (bucket 16) and 22 tokens (bucket 32)
    examples = tasks.Examples(tasks.get_task("SST-2"), texts, None, np.zeros(len(texts), np.int32), "test")
    data = batches.tokenize(minilm_tokenizer, examples, 64)
    runs = spu_batches(data, np.arange(8), 4)
    assert [r.tolist() for r in runs] == [[0, 1, 2], [3, 4], [5, 6, 7]]
    assert encoded(data, runs[2]).input_ids.shape == (3, 32) and encoded(data, runs[0]).attention_mask.sum() == 3 * 3
    assert [len(r) for r in spu_batches(data, np.arange(8), 1)] == [1] * 8
    with pytest.raises(ValueError, match="--spu-batch must be at least 1"):
        spu_batches(data, np.arange(8), 0)


def test_regression_task_end_to_end(tmp_path, tiny_checkpoint, tiny_glue):
    """STS-B: one output trained with squared error, distilled with MSE on the scores, Pearson/Spearman."""
    meta = finetune("STS-B", tmp_path / "t", tiny_checkpoint[0], Hyper(3, 1e-3, 16), max_length=32, glue_dir=tiny_glue)
    assert meta["history"]["final_loss"] < meta["history"]["initial_loss"]
    assert load_checkpoint(tmp_path / "t").config.num_labels == 1
    student = distill("STS-B", tmp_path / "t", "mpcformer", tmp_path / "s", Hyper(1, 2e-3, 16), Hyper(1, 1e-3, 16),
                      max_length=32, glue_dir=tiny_glue)
    assert student["history"]["stage2"]["final_loss"] < student["history"]["stage2"]["initial_loss"]
    result = evaluate("STS-B", tmp_path / "s", max_length=32, glue_dir=tiny_glue, spu_examples=2, protocol="semi2k")
    assert set(result["metrics"]) == {"pearson", "spearman"} and result["spu"]["agreement"] is None
    assert result["spu"]["max_abs_error"] < 1e-2


def test_eval_under_spu_agrees_with_plaintext(tiny_students, tiny_glue):
    out, _ = tiny_students["secformer"]
    result = evaluate("SST-2", out, max_length=32, glue_dir=tiny_glue, spu_examples=3, protocol="aby3")
    assert result["preset"] == "secformer" and result["approx"]["gelu"] == "secformer"
    exact = result["gelu_inputs"]  # the paper's GeLU is right everywhere: no domain to leave
    assert exact["domain"] is None and exact["inside"] is None and exact["min"] < 0 < exact["max"]
    spu = result["spu"]
    assert spu["indices"] == subset(3, 24).tolist() == [0, 12, 23]
    assert spu["agreement"] == 1.0 and spu["max_abs_error"] < 1e-2
    assert spu["mean_send_bytes"] > 0 and spu["batch"] == 16 and set(spu["compile_seconds_by_shape"]) == {"3x16"}
    # one example per run: one program of 1 x 16, the same labels; the bytes of a run are its rows' together
    single = evaluate("SST-2", out, max_length=32, glue_dir=tiny_glue, spu_examples=3, protocol="aby3", spu_batch=1)["spu"]
    assert set(single["compile_seconds_by_shape"]) == {"1x16"} and single["agreement"] == 1.0 and single["max_abs_error"] < 1e-2
    assert single["mean_send_bytes"] == pytest.approx(spu["mean_send_bytes"], rel=0.05)
    with pytest.raises(ValueError, match="--spu-examples must be >= 0"):
        evaluate("SST-2", out, glue_dir=tiny_glue, spu_examples=-1)
    # the cosine series' domain is checked on the plaintext pass
    gelu = evaluate("SST-2", out, max_length=32, glue_dir=tiny_glue, overrides={"gelu": "fourier"})["gelu_inputs"]
    assert gelu["domain"] == 60 and gelu["inside"] is True and abs(exact["max"] - gelu["max"]) < 0.05
    # inputs beyond it are reported, not silently used: weights scaled to push them out
    checkpoint = load_checkpoint(out)
    data = batches.tokenize(checkpoint.tokenizer, tasks.read_task("SST-2", "dev", tiny_glue), 32)
    layer = checkpoint.params["bert"]["encoder"]["layer"]["0"]["intermediate"]["dense"]
    layer["kernel"] = layer["kernel"] * 1e3
    assert gelu_inputs(checkpoint.config, checkpoint.params, resolve_approx("secformer", gelu="fourier"), data)["inside"] is False
    with pytest.raises(ValueError, match="asked for 30 SPU examples, the split has 24"):
        evaluate("SST-2", out, max_length=32, glue_dir=tiny_glue, spu_examples=30)


def test_cli_eval_report_and_infer_on_a_distilled_student(tmp_path, tiny_teacher, tiny_students, tiny_glue, capsys):
    runs = tmp_path / "acc"
    teacher = str(tiny_teacher[0])
    for name, model, preset in (("teacher", teacher, "plaintext"), ("puma", teacher, "puma"),
                                ("mpcformer", str(tiny_students["mpcformer"][0]), "mpcformer"),
                                ("secformer", str(tiny_students["secformer"][0]), "secformer")):
        argv = ["eval", "--task", "SST-2", "--model", model, "--approx", preset, "--glue-dir", str(tiny_glue),
                "--max-length", "32", "--json", str(runs / f"SST-2-{name}.json")]
        assert main(argv) == 0
        saved = json.loads((runs / f"SST-2-{name}.json").read_text())
        assert saved["command"].startswith("secformer eval --task SST-2") and saved["preset"] == preset
    (runs / "sweep").mkdir()  # two teacher candidates; the task's teacher file links to the first
    first = json.loads((runs / "SST-2-teacher.json").read_text())
    (runs / "sweep" / "SST-2-teacher-from-A.json").write_text(json.dumps(first))
    (runs / "sweep" / "SST-2-teacher-from-B.json").write_text(json.dumps(first | {"metrics": {"accuracy": 0.5}}))
    (runs / "SST-2-teacher.json").unlink()
    (runs / "SST-2-teacher.json").symlink_to("sweep/SST-2-teacher-from-A.json")
    assert main(["accuracy-report", "--runs", str(runs), "--out", str(tmp_path / "ACC.md")]) == 0
    table = (tmp_path / "ACC.md").read_text()
    assert f"| SST-2 | SST-2-teacher-from-A.json | - | - | {100 * first['metrics']['accuracy']:.1f} | yes |" in table
    assert "| SST-2 | SST-2-teacher-from-B.json | - | - | 50.0 | no |" in table
    for method in ("Teacher", "PUMA", "MPCFormer", "SecFormer"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {method} |"))
        assert row.count("|") == 4 and "-" not in row.split("|")[2], row
    assert (tmp_path / "ACC.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["infer", "--model", str(tiny_students["secformer"][0]), "--text", "a lovely film", "--protocol", "aby3",
                 "--max-length", "16"]) == 0
    printed = capsys.readouterr().out
    assert "prediction:  positive (private; agrees with plaintext)" in printed
    assert main(["eval", "--task", "SST-2", "--model", str(tmp_path / "missing"), "--glue-dir", str(tiny_glue)]) == 2
    assert main(["finetune", "--task", "QNLI", "--out", str(tmp_path / "q")]) == 2
