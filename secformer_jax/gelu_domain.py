"""A checkpoint's recorded GeLU input range against a GeLU that is right only on a bounded domain (the cosine
series, `sine.cosine_gelu`): the program cannot check its secret inputs, so a GeLU whose domain the
checkpoint's inputs leave is refused before anything runs. The range is measured on training data and
written to `secformer.json` by `glue.gelu_range.gelu_inputs` (finetune, distill); this module only reads it."""

from __future__ import annotations

from .approx import ApproxSet, sine
from .checkpoint import read_metadata


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
    return check_gelu_range(read_metadata(model_dir) if model_dir is not None else {}, approx,
                            str(model_dir) if model_dir is not None else "the embedded default model")
