"""`secformer node`: one process of a private BERT inference, as a computing party or as an owner.

- a computing party (`--party p0`, ...) serves jobs until told to stop;
- the model owner (`--party model_owner --model DIR --approx NAME`) loads the checkpoint (fitting the
  SST-2 head for an encoder-only one, as `secformer infer` does), compiles the program for the padded
  length the data owner asks for, and shares its weights;
- the data owner (`--party data_owner --query -`, the text as JSON on stdin) tokenises with the model's public tokenizer, shares
  its inputs and is the only one to receive (and print) the logits;
- the dealer (`--party dealer --model DIR --approx NAME --max-length N --linear L`) reads only the model's
  public architecture (config.json), deals what the programs need for that padded length (fresh,
  `randomness.Dealer`; with fixed-mask products first B for the setup, then A, C and the GeLU masks), sends
  each party its seeds and corrections (`dealing.py`) and waits for the model owner's stop (the one message
  it receives: no data).
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import numpy as np
from transformers import AutoTokenizer

from ..approx import ApproxSet
from ..checkpoint import default_model_dir, load_config
from ..gelu_domain import gelu_range_note
from ..program import privacy
from ..randomness import Dealer
from .config import DATA_OWNER, DEALER, MODEL_OWNER, ClusterConfig
from .roles import _log, run_data_owner, run_dealer, run_model_owner, run_party


def _shaped_data(bert, seq_len: int) -> dict:
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, np.float32)
    return {"words": f32(1, seq_len, bert.vocab_size), "mask": f32(1, seq_len), "types": f32(1, seq_len, bert.type_vocab_size)}


def serve_model(config: ClusterConfig, model_dir, approx: ApproxSet, linear_layers: str = "spu", log=_log) -> None:
    """The model owner's side of one inference."""
    from ..inference import classifier_builder
    from ..classifier_head import load_classifier

    note = gelu_range_note(model_dir, approx)  # before any job: a GeLU domain its inputs leave is refused
    if note:
        log(note)

    def serve(seq_len: int) -> dict:
        checkpoint, head = load_classifier(model_dir, approx, seq_len, log)
        c = checkpoint.config
        builder = classifier_builder(c, approx, config.field, linear_layers, config.protocol)
        builder.check(config.protocol)  # the compatibility checks, before compiling
        data = _shaped_data(c, seq_len)
        masks = builder.setup(config.protocol, data)  # which products are masked (shapes only: B is the dealer's)
        start = time.perf_counter()
        program = builder.compile(builder.shapes(checkpoint.params, data, masks))[0]
        log(f"{MODEL_OWNER}: compiled {c.num_hidden_layers} layers x {seq_len} tokens in {time.perf_counter() - start:.1f} s")
        params = masks.strip(checkpoint.params) if masks is not None else checkpoint.params
        setup = None
        if masks is not None:
            setup = (builder.setup_program(masks), [np.asarray(w) for w in jax.tree_util.tree_leaves(masks.weights(checkpoint.params))])
        facts = {
            "model": str(checkpoint.path),
            "vocab_size": c.vocab_size,
            "type_vocab_size": c.type_vocab_size,
            "num_labels": c.num_labels,
            "id2label": {str(k): v for k, v in (getattr(c, "id2label", None) or {}).items()},
            "approx": approx.to_dict(),
            "linear": linear_layers,
            "head": head,
        }
        return {"program": program, "weights": [np.asarray(w) for w in jax.tree_util.tree_leaves(params)], "facts": facts, "setup": setup}

    run_model_owner(config, serve, log)


def classify_text(config: ClusterConfig, text: str, text_pair: str | None, max_length: int, tokenizer_dir=None, log=_log) -> dict:
    """The data owner's side of one inference: its result as a dict (logits, prediction, cost, each party
    process's CPU seconds in the run, the dealer's bytes as the parties received them, the fixed-mask
    setup's bytes)."""
    from ..inference import check_finite, encode, one_hot_inputs

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or default_model_dir()))
    encoded = encode(tokenizer, text, text_pair, max_length)  # refuse bad text before anyone connects

    def make_inputs(facts):
        """The one-hots, token types and padding mask, in the program's input order (sorted names)."""
        data = dict(zip(("words", "mask", "types"), one_hot_inputs(encoded, facts["vocab_size"], facts["type_vocab_size"])))
        return [np.asarray(a) for a in jax.tree_util.tree_leaves(data)]

    logits, cost, facts, dealt = run_data_owner(config, max_length, make_inputs, log)
    logits = check_finite("private logits", logits)[0]
    labels = facts["id2label"]
    top = str(int(logits.argmax()))
    fixed_mask = facts["linear"] == "fixed-mask"
    needs_dealer = ApproxSet(**facts["approx"]).needs_correlation or fixed_mask
    return {
        "text": text,
        "text_pair": text_pair,
        "model": facts["model"],
        "protocol": config.protocol.name,
        "field": config.field,
        "parties": [p.id for p in config.parties],
        "approx": facts["approx"],
        "seq_len": max_length,
        "num_tokens": len(encoded.tokens),
        "logits": logits.tolist(),
        "prediction": None if facts["num_labels"] == 1 else labels.get(top, top),
        "head": facts["head"],
        "cost": cost.to_dict(),
        "compute_seconds": dealt["compute_seconds"],
        "linear": facts["linear"],
        "offline": {"send_bytes": dealt["dealt_bytes"], "what": "the dealer's seeds and corrections for this inference, as the parties received them"} if needs_dealer else None,
        "setup": dealt["setup"],
        **privacy(config.protocol, needs_dealer, "separate process"),
    }


def deal_for(config: ClusterConfig, model_dir, approx: ApproxSet, max_length: int, linear_layers: str = "spu") -> list[list[np.ndarray]]:
    """The dealer's side: what the model's programs need for `max_length` tokens, per job in job order (with
    fixed-mask products: B for the setup, then the inference's A, C and GeLU masks), each in the program's
    input order; from the checkpoint's public config.json only (never its weights). A fresh key per run."""
    from ..inference import classifier_builder

    bert = load_config(Path(model_dir) if model_dir is not None else default_model_dir())
    builder = classifier_builder(bert, approx, config.field, linear_layers)
    builder.check(config.protocol)
    data = _shaped_data(bert, max_length)
    dealer = Dealer()  # a fresh key: fresh masks every inference
    masks = builder.setup(config.protocol, data, dealer)
    jobs = [] if masks is None else [jax.tree_util.tree_leaves(masks.weight_masks())]
    dealt = jax.tree_util.tree_leaves(builder.deal(data, masks, dealer))
    if dealt:  # the parties expect a message from the dealer only for a program with dealt inputs
        jobs.append(dealt)
    return [[np.asarray(a) for a in values] for values in jobs]


def run_node(config: ClusterConfig, party: str, *, text=None, text_pair=None, max_length=64, model=None, approx=None, linear_layers="spu", log=_log):
    """Run `party`'s role; the data owner returns its result, the others None."""
    if party == DATA_OWNER:
        if text is None:
            raise ValueError("the data owner needs --query (a JSON file or - for stdin with its text)")
        return classify_text(config, text, text_pair, max_length, model, log)
    if party == MODEL_OWNER:
        serve_model(config, model, approx, linear_layers, log)
        return None
    if party == DEALER:
        run_dealer(config, lambda: deal_for(config, model, approx, max_length, linear_layers), log)
        return None
    run_party(config, party, log)
    return None
