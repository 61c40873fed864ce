"""A checkpoint's GeLU input range: measured on data, recorded in its `secformer.json`, checked against a GeLU
that is right only on a bounded domain (the cosine series, `sine.cosine_gelu`: the program cannot check
its secret inputs, so the range must be known before it runs)."""

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


def check_gelu_range(metadata: dict, approx: ApproxSet, source: str) -> str | None:
    """Refuse (ValueError) a GeLU whose domain the checkpoint's recorded GeLU inputs (`secformer.json`'s
    "gelu_inputs", measured on its training data) leave, naming the spec that covers them. Returns a note
    when the GeLU has a domain but the checkpoint records no range (nothing to check against), else None."""
    domain = approx.gelu_domain
    if domain is None:
        return None
    recorded = metadata.get("gelu_inputs")
    if recorded is None:
        return (f"note: --gelu {approx.gelu} is right only for |x| <= {domain:g} and {source} records no GeLU input range "
                "(secformer.json, written by secformer finetune / distill): its inputs are not checked")
    reach = max(abs(recorded["min"]), abs(recorded["max"]))
    if not reach <= domain:
        fit = recorded.get("fourier_gelu") or sine.spec_for_range(recorded["min"], recorded["max"])
        advice = f"use --gelu {fit}" if fit else "no cosine series covers it: use --gelu secformer (comparisons bound it)"
        raise ValueError(f"{source}'s GeLU inputs reach |x| = {reach:.1f} (secformer.json, measured on {recorded.get('measured_on', 'its data')}), "
                         f"beyond --gelu {approx.gelu}'s domain |x| <= {domain:g}: {advice}")
    return None


def gelu_range_note(model_dir, approx: ApproxSet) -> str | None:
    """`check_gelu_range` for a checkpoint directory (None: the embedded default model)."""
    from ..checkpoint import read_metadata

    return check_gelu_range(read_metadata(model_dir) if model_dir is not None else {}, approx,
                            str(model_dir) if model_dir is not None else "the embedded default model")
