"""A checkpoint's GeLU input range, measured on its training data and recorded in its `secformer.json` (the
smallest cosine spec covering it included); `gelu_domain.py` checks a GeLU against it at inference."""

from __future__ import annotations

import jax
import numpy as np
from tqdm.auto import tqdm

from ..approx import ApproxSet, sine
from ..model import BertForSequenceClassification
from .batches import Tokenized, eval_batches


def gelu_inputs(config, params: dict, approx: ApproxSet, data: Tokenized, batch_size: int = 64) -> dict:
    """The range of every GeLU input (the intermediate dense outputs) over the real tokens of `data`, in
    plaintext under `approx`; whether it lies in the GeLU's domain (None for a GeLU right everywhere; False
    when it leaves it or overflows to NaN); and the smallest cosine spec that covers it (`fourier_gelu`)."""
    model = BertForSequenceClassification(config, approx)
    is_gelu_input = lambda mdl, _: mdl.name == "dense" and "intermediate" in mdl.scope.path

    @jax.jit
    def extremes(params, ids, mask, types):
        _, state = model.apply({"params": params}, ids, mask, types, capture_intermediates=is_gelu_input)
        xs = jax.numpy.stack(jax.tree_util.tree_leaves(state["intermediates"]))  # [layers, B, L, I]
        real = (mask > 0)[None, ..., None]
        return jax.numpy.where(real, xs, jax.numpy.inf).min(), jax.numpy.where(real, xs, -jax.numpy.inf).max()

    lo, hi = np.inf, -np.inf
    for batch in tqdm(list(eval_batches(data, batch_size)), desc="GeLU input range", unit="batch", leave=False):
        b_lo, b_hi = extremes(params, batch.input_ids, batch.attention_mask, batch.token_type_ids)
        lo, hi = float(np.minimum(lo, b_lo)), float(np.maximum(hi, b_hi))  # NaN (overflow) propagates
    domain = approx.gelu_domain
    return {"min": lo, "max": hi, "domain": domain, "inside": None if domain is None else bool(np.abs([lo, hi]).max() <= domain),
            "fourier_gelu": sine.spec_for_range(lo, hi) if np.isfinite([lo, hi]).all() else None}
