"""A BERT classifier run as a sequence of SPU programs whose secret results stay shared between them.

    words, types ──embedding──> [h_0] ──layer (layer 1's weights)──> [h_1] ── ... ──> [h_N] ──head──> logits

One program per stage: the embeddings (`model.BertEmbeddings`), one encoder layer (`model.BertLayer`,
compiled once and run with each layer's weights in turn) and the pooler with the classifier
(`model.BertHead`). Each stage's output stays with the parties as SPU shares (`Simulation.run`'s
keep / held; the cluster's `Driver.run` alike, each party process keeping its shares) and is the next
stage's secret input:
nothing is opened between stages, and only the logits are revealed, to the data owner, as by the single
program (`inference.classifier_builder`). The data owner shares its padding mask with each layer program.

Why: SPU compiles and holds one layer at a time instead of the whole model (compile time and memory
bounded by one layer, progress per layer, every layer run rather than extrapolated from one). The bytes
are the single program's within 0.1% under SEMI2K and ABY3, with a few more send actions (tested); under
Cheetah each program pays its own OT/HE setup. One dealer owns a run's randomness: each stage draws from its
scope (`Dealer.scope(stage name)`), so no two stages can draw the same stream; with fixed-mask products each
stage has its own setup (its weights' B, E), drawn from the setup's dealer the same way."""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from .approx import ApproxSet
from .model import BertEmbeddings, BertHead, BertLayer
from .program import ProgramBuilder
from .randomness import Dealer
from .spu_runner import Cost, Simulation, rss_peak


class StagedClassifier:
    """`BertForSequenceClassification` as an embedding program, one layer program and a head program."""

    def __init__(self, config, approx: ApproxSet, field: str = "fm64", linear_layers: str = "spu", block: int = 0):
        self.config = config
        embeddings = BertEmbeddings(config, approx, block)  # block: the protocol's `weight_block`
        self.embedding = ProgramBuilder(embeddings, ("words", "types"), approx, field, linear_layers, name="embedding")
        self.layer = ProgramBuilder(BertLayer(config, approx, block), ("hidden", "mask"), approx, field, linear_layers, lambda out: out[0], "layer")
        self.head = ProgramBuilder(BertHead(config, approx, block), ("hidden",), approx, field, linear_layers, name="head")

    def stages(self, params: dict, data: dict) -> list[tuple[str, ProgramBuilder, dict, dict]]:
        """(name, builder, its parameters, its data) per stage, in order, from the classifier's parameter tree
        and data (words, mask, types); the hidden states as shapes (they arrive as the parties' shares)."""
        words = data["words"]
        hidden = jax.ShapeDtypeStruct(tuple(np.shape(words)[:2]) + (self.config.hidden_size,), np.float32)
        bert = params["bert"]
        layers = bert["encoder"]["layer"]
        if len(layers) != self.config.num_hidden_layers:
            raise ValueError(f"the parameters hold {len(layers)} layers, the config {self.config.num_hidden_layers}")
        stages = [("embedding", self.embedding, bert["embeddings"], {"words": words, "types": data["types"]})]
        stages += [(f"layer {i}", self.layer, layers[str(i)], {"hidden": hidden, "mask": data["mask"]}) for i in range(len(layers))]
        stages.append(("head", self.head, {"pooler": bert["pooler"], "classifier": params["classifier"]}, {"hidden": hidden}))
        return stages

    def setup(self, runner, params: dict, data: dict, dealer: Dealer) -> tuple[list, dict | None]:
        """Each stage's fixed-mask setup under `runner`'s protocol (`ProgramBuilder.setup` / `run_setup`, B
        from the setup's `dealer`, scoped per stage): (masks per stage, None where nothing is masked; the
        setups' costs summed, or None when no stage has one)."""
        masks, costs = [], []
        for name, builder, stage_params, stage_data in self.stages(params, data):
            m = builder.setup(runner.protocol, stage_data, dealer.scope(name))
            masks.append(m)
            if m is not None:
                costs.append(builder.run_setup(runner, stage_params, m))
        if not costs:
            return masks, None
        total = {key: sum(c[key] for c in costs) for key in ("send_bytes", "model_owner_bytes", "dealer_bytes")}
        return masks, total | {"online": Cost.total([c["online"] for c in costs])}

    def run(self, runner, params: dict, data: dict, masks: list, dealer: Dealer,
            progress: Callable[[str], None] | None = None, per_stage: list | None = None) -> tuple[np.ndarray, Cost, dict | None]:
        """One private inference, stage after stage, its randomness from `dealer` (a fresh one per inference,
        scoped per stage): (logits, the stages' costs summed, the dealer's offline bytes summed or None). `progress(stage name)` after each stage; `per_stage` (a list) gets each
        stage's {"stage", "seconds", "send_bytes", "compute_seconds", "peak_rss_bytes"} (this process's peak
        resident memory during the stage, `spu_runner.rss_peak`, with a simulation: every party's; None with
        a cluster, whose parties are other processes)."""
        stages = self.stages(params, data)
        if len(masks) != len(stages):
            raise ValueError(f"{len(masks)} stage masks for {len(stages)} stages: run setup first")
        costs, offline, kept = [], [], None
        for k, ((name, builder, stage_params, stage_data), stage_masks) in enumerate(zip(stages, masks)):
            last = k == len(stages) - 1
            with rss_peak() as peak:  # the parties' memory only when they run in this process
                out, cost, dealt = builder.run(runner, stage_params, stage_data, stage_masks, dealer.scope(name),
                                               held={"hidden": kept["hidden"]} if kept else None, keep=None if last else "hidden")
            kept = None if last else out
            costs.append(cost)
            if dealt:
                offline.append(dealt)
            if per_stage is not None:
                per_stage.append({"stage": name, "seconds": cost.seconds, "send_bytes": cost.send_bytes,
                                  "compute_seconds": cost.party_compute_seconds,
                                  "peak_rss_bytes": peak["bytes"] if isinstance(runner, Simulation) else None})
            if progress:
                progress(name)
        dealt = {key: sum(d[key] for d in offline) for key in ("send_bytes", "seconds")} if offline else None
        return np.asarray(out), Cost.total(costs), dealt
