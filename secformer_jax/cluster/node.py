"""`secformer node`: one process of a private BERT inference, as a computing party or as an owner.

- a computing party (`--party p0`, ...) serves jobs until told to stop;
- the owners and the dealer run one `RunSpec` (`--spec JSON`, what `launch` hands each of them, or the same
  --model/--approx/--max-length/--linear flags; the protocol and field are the config's); the model owner
  sends its spec to the data owner, who refuses a different one;
- the model owner (`--party model_owner`) loads the checkpoint (fitting the
  SST-2 head for an encoder-only one, as `secformer infer` does), compiles the program for the padded
  length the data owner asks for, and shares its weights;
- the data owner (`--party data_owner --query -`, the text as JSON on stdin) tokenises with the model's public tokenizer, shares
  its inputs and is the only one to receive (and print) the logits;
- the dealer (`--party dealer`) reads only the model's
  public architecture (config.json), deals what the programs need for that padded length (fresh,
  `randomness.Dealer`; with fixed-mask products first B for the setup, then A, C and the GeLU masks), sends
  each party its seeds and corrections (`dealing.py`) and waits for the model owner's stop (the one message
  it receives: no data).
"""

from __future__ import annotations

import json
import time

import jax
import numpy as np
from transformers import AutoTokenizer

from ..checkpoint import default_model_dir, load_config
from ..gelu_domain import gelu_range_note
from ..private_run import PrivateRun
from ..program import privacy
from ..randomness import Dealer
from ..run import CLUSTER, RunRecord, RunSpec, setup_json
from . import wire
from .config import DATA_OWNER, DEALER, MODEL_OWNER, OWNERS, ClusterConfig
from .roles import _log, run_data_owner, run_dealer, run_model_owner, run_party


def _shaped_data(bert, seq_len: int) -> dict:
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, np.float32)
    return {"words": f32(1, seq_len, bert.vocab_size), "mask": f32(1, seq_len), "types": f32(1, seq_len, bert.type_vocab_size)}


def serve_model(config: ClusterConfig, spec: RunSpec, log=_log) -> None:
    """The model owner's side of one inference."""
    from ..classifier_head import load_classifier
    from ..inference import classifier_builder

    approx = spec.approximations()
    note = gelu_range_note(spec.model_dir, approx)  # before any job: a GeLU domain its inputs leave is refused
    if note:
        log(note)

    def serve(seq_len: int) -> dict:
        if seq_len != spec.max_length:
            raise ValueError(f"the data owner asks for {seq_len} tokens, this model owner serves the spec's {spec.max_length}")
        checkpoint, head = load_classifier(spec.model_dir, approx, seq_len, log)
        c = checkpoint.config
        start = time.perf_counter()
        run = PrivateRun.single(classifier_builder(c, approx, spec.field, spec.linear, spec.protocol), checkpoint.params)
        jobs = run.owner_jobs(spec.protocol, _shaped_data(c, seq_len))
        log(f"{MODEL_OWNER}: compiled {c.num_hidden_layers} layers x {seq_len} tokens in {time.perf_counter() - start:.1f} s")
        facts = {
            "spec": spec.to_json(),
            "model": str(checkpoint.path),
            "vocab_size": c.vocab_size,
            "type_vocab_size": c.type_vocab_size,
            "num_labels": c.num_labels,
            "id2label": {str(k): v for k, v in (getattr(c, "id2label", None) or {}).items()},
            "head": head,
        }
        return {"program": jobs.program, "weights": jobs.weights, "facts": facts, "setup": jobs.setup}

    run_model_owner(config, serve, log)


def classify_text(config: ClusterConfig, spec: RunSpec, text: str, text_pair: str | None, log=_log) -> dict:
    """The data owner's side of one inference: its `RunRecord` JSON (kind "node", mode "cluster": logits,
    prediction, the parties' online cost and CPU seconds, the dealer's bytes as the parties received them,
    the fixed-mask setup's bytes). `spec.model` is the data owner's copy of the public tokenizer."""
    from ..inference import check_finite, encode, one_hot_inputs, prediction

    tokenizer = AutoTokenizer.from_pretrained(str(spec.model_dir or default_model_dir()))
    encoded = encode(tokenizer, text, text_pair, spec.max_length)  # refuse bad text before anyone connects

    def make_inputs(facts):
        """The one-hots, token types and padding mask, in the program's input order (sorted names)."""
        theirs = RunSpec.from_json(facts["spec"])
        if theirs.replace(model=None) != spec.replace(model=None):  # the checkpoint's path may differ between machines
            raise wire.PeerError(f"the model owner runs {json.dumps(theirs.to_json())}, this data owner {json.dumps(spec.to_json())}: "
                                 "start every owner and the dealer with the same --spec (or the same settings)")
        data = dict(zip(("words", "mask", "types"), one_hot_inputs(encoded, facts["vocab_size"], facts["type_vocab_size"])))
        return [np.asarray(a) for a in jax.tree_util.tree_leaves(data)]

    logits, cost, facts, dealt = run_data_owner(config, spec.max_length, make_inputs, log)
    logits = check_finite("private logits", logits)
    offline = {"send_bytes": dealt["dealt_bytes"], "what": "the dealer's seeds and corrections for this inference, as the parties received them"} if spec.dealt else None
    return RunRecord(
        "node", CLUSTER, spec, cost, privacy(config.protocol, spec.dealt, "separate process"), offline, setup_json(dealt["setup"]),
        model=facts["model"], logits=logits,
        extra={"text": text, "text_pair": text_pair, "parties": [p.id for p in config.parties], "num_tokens": len(encoded.tokens),
               "head": facts["head"], "prediction": prediction(logits[0], facts["num_labels"], facts["id2label"])},
    ).to_json()


def deal_for(config: ClusterConfig, spec: RunSpec) -> list[list[np.ndarray]]:
    """The dealer's side: what the model's programs need for `spec.max_length` tokens, per job in job order
    (with fixed-mask products: B for the setup, then the inference's A, C and GeLU masks), each in the
    program's input order; from the checkpoint's public config.json only (never its weights). A fresh key per run."""
    from ..inference import classifier_builder

    bert = load_config(spec.model_dir or default_model_dir())
    run = PrivateRun.single(classifier_builder(bert, spec.approximations(), spec.field, spec.linear), None)  # no weights: shapes only
    data = _shaped_data(bert, spec.max_length)
    dealer = Dealer()  # a fresh key: fresh masks every inference
    masks, setup = run.deal_setup(spec.protocol, data, dealer)
    dealt = run.deal_run(masks, data, dealer)
    return [values for values in (setup, dealt) if values]  # the parties expect the dealer only for a job with dealt inputs


def run_node(config: ClusterConfig, party: str, spec: RunSpec | None, *, text=None, text_pair=None, log=_log):
    """Run `party`'s role, an owner's or the dealer's under `spec` (the protocol and field must be the config's; a
    computing party's None: it runs the programs the model owner sends); the data owner returns its record, the others None."""
    if spec is not None and (spec.protocol, spec.field) != (config.protocol, config.field):
        raise ValueError(f"the run spec says {spec.protocol} over {spec.field}, the config {config.protocol} over {config.field}")
    if party in OWNERS and spec is None:
        raise ValueError(f"{party} runs a run spec: --spec or the --model/--approx/--max-length/--linear flags")
    if party == DATA_OWNER:
        if text is None:
            raise ValueError("the data owner needs --query (a JSON file or - for stdin with its text)")
        return classify_text(config, spec, text, text_pair, log)
    if party == MODEL_OWNER:
        serve_model(config, spec, log)
        return None
    if party == DEALER:
        run_dealer(config, lambda: deal_for(config, spec), log)
        return None
    run_party(config, party, log)
    return None
