"""Checkpoint loading: our tree equals transformers' Flax BERT, every weight format loads, bad dirs fail clearly."""

import json
import pickle
import shutil
import sys
import types
import zipfile
from collections import OrderedDict

import jax
import numpy as np
import pytest
from flax import serialization, traverse_util
from transformers import FlaxBertForSequenceClassification, FlaxBertModel

from secformer_jax.approx import PRESETS
from secformer_jax.checkpoint import CheckpointError, default_model_dir, flat_to_torch_state, load_checkpoint
from secformer_jax.inference import classifier_builder, encode
from secformer_jax.model import BertForSequenceClassification

from conftest import tiny_config


def _flat(tree):
    return traverse_util.flatten_dict(jax.tree_util.tree_map(np.asarray, tree))


def _assert_same_params(a, b):
    fa, fb = _flat(a), _flat(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_array_equal(fa[k], fb[k], err_msg="/".join(k))


def test_param_tree_matches_transformers():
    config = tiny_config()
    ours = jax.eval_shape(lambda: BertForSequenceClassification(config, PRESETS["plaintext"]).init(
        jax.random.PRNGKey(0), *(np.zeros((1, 8), np.int32),) * 3)["params"])
    hf = FlaxBertForSequenceClassification(config, _do_init=False)
    theirs = jax.eval_shape(lambda: hf.init_weights(jax.random.PRNGKey(0), (1, 8)))
    shapes = lambda t: {k: v.shape for k, v in traverse_util.flatten_dict(t).items()}
    assert shapes(ours) == shapes(theirs)


def test_minilm_matches_transformers_flax_bert(minilm_tokenizer):
    ckpt = load_checkpoint()
    assert not ckpt.has_classifier and ckpt.config.num_hidden_layers == 6 and ckpt.config.hidden_size == 384
    hf = FlaxBertModel.from_pretrained(str(default_model_dir()), from_pt=True)
    enc = encode(ckpt.tokenizer, "a gripping, beautifully made film", "and a second segment", max_length=24)
    theirs = hf(enc.input_ids, enc.attention_mask, enc.token_type_ids)
    model = BertForSequenceClassification(ckpt.config, PRESETS["plaintext"])
    ours = model.apply({"params": ckpt.params}, enc.input_ids, enc.attention_mask, enc.token_type_ids)
    real = enc.attention_mask[0].astype(bool)  # padded positions are garbage in both, and differ in how
    np.testing.assert_allclose(ours["last_hidden_state"][0, real], theirs.last_hidden_state[0, real], atol=2e-5)
    np.testing.assert_allclose(ours["pooler_output"], theirs.pooler_output, atol=2e-5)


def test_one_hot_words_equal_id_lookup(tiny_checkpoint):
    _, config, params = tiny_checkpoint
    fn = classifier_builder(config, PRESETS["plaintext"]).function()
    ids = np.array([[101, 2023, 3185, 102, 0, 0]], np.int32)
    mask = (ids != 0).astype(np.int32)
    types = np.zeros_like(ids)
    onehot = np.eye(config.vocab_size, dtype=np.float32)[ids]
    np.testing.assert_allclose(
        fn({"params": params, "words": ids, "mask": mask, "types": types}),
        fn({"params": params, "words": onehot, "mask": mask.astype(np.float32), "types": np.eye(2, dtype=np.float32)[types]}), atol=1e-5,
    )


def test_safetensors_round_trip_and_transformers_reads_it(tiny_checkpoint):
    path, config, params = tiny_checkpoint
    ckpt = load_checkpoint(path)
    assert ckpt.has_classifier and ckpt.config.num_labels == 2
    _assert_same_params(ckpt.params, params)
    hf = FlaxBertForSequenceClassification.from_pretrained(str(path), from_pt=True)
    enc = encode(ckpt.tokenizer, "a gripping film", max_length=8)
    theirs = hf(enc.input_ids, enc.attention_mask, enc.token_type_ids).logits
    ours = classifier_builder(config, PRESETS["plaintext"]).function()(
        {"params": ckpt.params, "words": enc.input_ids, "mask": enc.attention_mask, "types": enc.token_type_ids}
    )
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def _copy_without_weights(src, dst):
    shutil.copytree(src, dst)
    (dst / "model.safetensors").unlink()
    return dst


def _write_torch_zip(path, state, monkeypatch):
    """Write `state` the way torch.save does (zip + data.pkl + data/<key>), using stand-in torch globals."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    torch.FloatStorage, torch._utils, utils._rebuild_tensor_v2 = FloatStorage, utils, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)

    class Tensor:
        def __init__(self, key, array):
            self.key, self.array = key, array

        def __reduce__(self):
            strides = tuple(s // self.array.itemsize for s in self.array.strides)
            return _rebuild_tensor_v2, (Storage(self.key, self.array.size), 0, self.array.shape, strides, False, OrderedDict())

    class Storage:
        def __init__(self, key, numel):
            self.key, self.numel = key, numel

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel) if isinstance(obj, Storage) else None

    import io

    buf = io.BytesIO()
    tensors = OrderedDict((name, Tensor(str(i), np.ascontiguousarray(a, np.float32))) for i, (name, a) in enumerate(state.items()))
    Pickler(buf, protocol=2).dump(tensors)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        for t in tensors.values():
            z.writestr(f"archive/data/{t.key}", t.array.tobytes())


def test_pytorch_bin_loads_without_torch(tiny_checkpoint, tmp_path, monkeypatch):
    path, _, params = tiny_checkpoint
    dst = _copy_without_weights(path, tmp_path / "bin")
    _write_torch_zip(dst / "pytorch_model.bin", flat_to_torch_state(params), monkeypatch)
    monkeypatch.undo()
    _assert_same_params(load_checkpoint(dst).params, params)


def test_pytorch_bin_refuses_foreign_globals(tiny_checkpoint, tmp_path):
    dst = _copy_without_weights(tiny_checkpoint[0], tmp_path / "evil")
    with zipfile.ZipFile(dst / "pytorch_model.bin", "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps(OrderedDict(x=types.SimpleNamespace())))
    with pytest.raises(CheckpointError, match="refusing to load types.SimpleNamespace"):
        load_checkpoint(dst)


def test_flax_msgpack_loads(tiny_checkpoint, tmp_path):
    path, _, params = tiny_checkpoint
    dst = _copy_without_weights(path, tmp_path / "flax")
    (dst / "flax_model.msgpack").write_bytes(serialization.msgpack_serialize(jax.tree_util.tree_map(np.asarray, params)))
    _assert_same_params(load_checkpoint(dst).params, params)


def _edit_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(config | changes))


def _poison(path, value=np.nan):
    """One weight of the saved checkpoint set to `value` (NaN or infinite)."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(path / "model.safetensors")
    name = sorted(k for k in tensors if "intermediate" in k and k.endswith("weight"))[0]
    tensors[name].flat[3] = value
    save_file(tensors, path / "model.safetensors")


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda p: shutil.rmtree(p), "does not exist"),
        (lambda p: (p / "config.json").unlink(), "config.json is missing"),
        (lambda p: (p / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda p: _edit_config(p, model_type="roberta", architectures=["RobertaModel"]), "'roberta' checkpoint"),
        (lambda p: _edit_config(p, hidden_act="relu"), "hidden_act 'relu' is not supported"),
        (lambda p: (p / "model.safetensors").unlink(), "holds no weights"),
        (lambda p: (p / "model.safetensors").write_bytes(b"garbage"), "cannot read weights"),
        (lambda p: _edit_config(p, hidden_size=32, num_attention_heads=4), "has shape"),
        (lambda p: _edit_config(p, num_hidden_layers=3), "weights missing"),
        (lambda p: [f.unlink() for f in p.glob("*") if "vocab" in f.name or "tokenizer" in f.name], "tokenizer"),
        (_poison, r"tensor bert/encoder/layer/0/intermediate/dense/kernel holds 1 NaN or infinite values"),
        (lambda p: _poison(p, -np.inf), "NaN or infinite"),
    ],
    ids=["no-dir", "no-config", "bad-json", "other-architecture", "unsupported-act", "no-weights",
         "corrupt-weights", "wrong-shape", "missing-layer", "no-tokenizer", "nan-weight", "inf-weight"],
)
def test_bad_checkpoint_dirs_fail_clearly(tiny_checkpoint, tmp_path, break_it, message):
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint[0], dst)
    break_it(dst)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(dst)


def test_non_finite_logits_are_refused_never_compared():
    from secformer_jax.inference import check_finite

    np.testing.assert_array_equal(check_finite("private logits", [[0.5, -1.0]]), [[0.5, -1.0]])
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(ValueError, match="the private logits hold 1 NaN or infinite values of 2"):
            check_finite("private logits", [[0.5, bad]])
