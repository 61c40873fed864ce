"""`secformer node`: one process of a private BERT inference, as a computing party or as an owner.

- a computing party (`--party p0`, ...) serves jobs until told to stop;
- the model owner (`--party model_owner --model DIR --approx NAME`) loads the checkpoint (fitting the
  SST-2 head for an encoder-only one, as `secformer infer` does), compiles the program for the padded
  length the data owner asks for, and shares its weights;
- the data owner (`--party data_owner --text ...`) tokenises with the model's public tokenizer, shares
  its inputs and is the only one to receive (and print) the logits;
- the dealer (`--party dealer --model DIR --approx NAME --max-length N`) reads only the model's public
  architecture (config.json), deals the randomness the program needs for that padded length (fresh,
  `randomness.Dealer`), sends each party its shares and waits for the model owner's stop (the one message
  it receives: no data).
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from transformers import AutoTokenizer

from ..approx import ApproxSet
from ..checkpoint import default_model_dir, load_config
from ..program import privacy
from ..randomness import Dealer
from .config import DATA_OWNER, DEALER, MODEL_OWNER, ClusterConfig
from .roles import _log, run_data_owner, run_dealer, run_model_owner, run_party


def serve_model(config: ClusterConfig, model_dir, approx: ApproxSet, log=_log) -> None:
    """The model owner's side of one inference."""
    from ..inference import PrivateClassifier
    from ..sentiment_head import load_classifier

    def serve(seq_len: int):
        checkpoint, head = load_classifier(model_dir, approx, seq_len, log)
        classifier = PrivateClassifier(checkpoint, approx, config.field)
        classifier.simulation(config.protocol)  # the compatibility checks, before compiling
        program, seconds = classifier.program(seq_len, config.protocol)
        log(f"{MODEL_OWNER}: compiled {checkpoint.config.num_hidden_layers} layers x {seq_len} tokens in {seconds:.1f} s")
        c = checkpoint.config
        facts = {
            "model": str(checkpoint.path),
            "vocab_size": c.vocab_size,
            "type_vocab_size": c.type_vocab_size,
            "num_labels": c.num_labels,
            "id2label": {str(k): v for k, v in (getattr(c, "id2label", None) or {}).items()},
            "approx": approx.to_dict(),
            "head": head,
        }
        return program, [np.asarray(w) for w in jax.tree_util.tree_leaves(checkpoint.params)], facts

    run_model_owner(config, serve, log)


def classify_text(config: ClusterConfig, text: str, text_pair: str | None, max_length: int, tokenizer_dir=None, log=_log) -> dict:
    """The data owner's side of one inference: its result as a dict (logits, prediction, cost)."""
    from ..inference import encode, one_hot_inputs

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or default_model_dir()))
    encoded = encode(tokenizer, text, text_pair, max_length)  # refuse bad text before anyone connects

    def make_inputs(facts):
        """The one-hots, token types and padding mask, in the program's input order (sorted names)."""
        data = dict(zip(("words", "mask", "types"), one_hot_inputs(encoded, facts["vocab_size"], facts["type_vocab_size"])))
        return [np.asarray(a) for a in jax.tree_util.tree_leaves(data)]

    logits, cost, facts = run_data_owner(config, max_length, make_inputs, log)
    logits = np.asarray(logits)[0]
    labels = facts["id2label"]
    top = str(int(logits.argmax()))
    return {
        "text": text,
        "text_pair": text_pair,
        "model": facts["model"],
        "protocol": config.protocol,
        "field": config.field,
        "parties": [p.id for p in config.parties],
        "approx": facts["approx"],
        "seq_len": max_length,
        "num_tokens": len(encoded.tokens),
        "logits": logits.tolist(),
        "prediction": None if facts["num_labels"] == 1 else labels.get(top, top),
        "head": facts["head"],
        "cost": cost.to_dict(),
        "linear": "spu",
        **privacy(config.protocol, ApproxSet(**facts["approx"]).needs_correlation, "separate process"),
    }


def deal_for(config: ClusterConfig, model_dir, approx: ApproxSet, max_length: int) -> list[np.ndarray]:
    """The dealer's side: the randomness the model's program needs for `max_length` tokens, as the program's
    dealt inputs in its input order; from the checkpoint's public config.json only (never its weights)."""
    from ..inference import classifier_builder

    bert = load_config(Path(model_dir) if model_dir is not None else default_model_dir())
    builder = classifier_builder(bert, approx, config.field)
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, np.float32)
    shapes = {"words": f32(1, max_length, bert.vocab_size), "mask": f32(1, max_length), "types": f32(1, max_length, bert.type_vocab_size)}
    dealt = builder.deal(shapes, None, Dealer())  # a fresh key: fresh masks every inference
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(dealt)]


def run_node(config: ClusterConfig, party: str, *, text=None, text_pair=None, max_length=64, model=None, approx=None, log=_log):
    """Run `party`'s role; the data owner returns its result, the others None."""
    if party == DATA_OWNER:
        if text is None:
            raise ValueError("the data owner needs --text")
        return classify_text(config, text, text_pair, max_length, model, log)
    if party == MODEL_OWNER:
        serve_model(config, model, approx, log)
        return None
    if party == DEALER:
        run_dealer(config, lambda: deal_for(config, model, approx, max_length), log)
        return None
    run_party(config, party, log)
    return None
