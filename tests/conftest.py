"""Shared fixtures: a tiny BERT (2 layers, hidden 64) saved as a Hugging Face checkpoint directory."""

import jax
import numpy as np
import pytest
from transformers import AutoTokenizer, BertConfig

from secformer_jax.approx import PRESETS
from secformer_jax.checkpoint import default_model_dir, save_checkpoint
from secformer_jax.model import init_params


def tiny_config(**overrides) -> BertConfig:
    """2 layers, hidden 64, 4 heads; the real WordPiece vocabulary so the MiniLM tokenizer fits."""
    values = dict(
        vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=64, type_vocab_size=2, num_labels=2, initializer_range=0.2,
        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
    )
    return BertConfig(**(values | overrides))


def tiny_params(config: BertConfig, seed: int = 0) -> dict:
    """Random parameters with non-trivial LayerNorm scales/biases (init leaves them at 1/0)."""
    params = init_params(config, PRESETS["plaintext"], seed)
    rng = np.random.default_rng(seed)

    def perturb(path, x):
        x = np.asarray(x)
        if path[-1].key in ("scale", "bias") and any(getattr(k, "key", "") == "LayerNorm" for k in path):
            return (x + rng.normal(0, 0.1, x.shape)).astype(np.float32)
        return x

    return jax.tree_util.tree_map_with_path(perturb, params)


@pytest.fixture(scope="session")
def minilm_tokenizer():
    return AutoTokenizer.from_pretrained(str(default_model_dir()))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, minilm_tokenizer):
    """(directory, config, params) of a saved tiny classifier checkpoint."""
    config = tiny_config()
    params = tiny_params(config)
    path = save_checkpoint(tmp_path_factory.mktemp("tiny") / "ckpt", config, params, minilm_tokenizer)
    return path, config, params
