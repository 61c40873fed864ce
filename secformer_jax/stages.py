"""A BERT classifier run as a sequence of SPU programs whose secret results stay shared between them.

    words, types ──embedding──> [h_0] ──layer (layer 1's weights)──> [h_1] ── ... ──> [h_N] ──head──> logits

One program per stage (run by `private_run.PrivateRun`): the embeddings (`model.BertEmbeddings`), one encoder layer (`model.BertLayer`,
compiled once and run with each layer's weights in turn) and the pooler with the classifier
(`model.BertHead`). Each stage's output stays with the parties as SPU shares (`Simulation.run`'s
keep / held; the cluster's `Driver.run` alike, each party process keeping its shares) and is the next
stage's secret input:
nothing is opened between stages, and only the logits are revealed, to the data owner, as by the single
program (`inference.classifier_builder`). The data owner shares its padding mask with each layer program.

Why: SPU compiles and holds one layer at a time instead of the whole model (compile time and memory
bounded by one layer, progress per layer, every layer run rather than extrapolated from one). The bytes
are the single program's within 0.1% under SEMI2K and ABY3, with a few more send actions (tested); under
Cheetah each program pays its own OT/HE setup. With fixed-mask products each stage has its own setup (its
weights' B, E)."""

from __future__ import annotations

import jax
import numpy as np

from .approx import ApproxSet
from .model import WHOLE, BertEmbeddings, BertHead, BertLayer, WeightProduct
from .private_run import PrivateRun, Stage
from .program import ProgramBuilder


class StagedClassifier:
    """`BertForSequenceClassification` as an embedding program, one layer program and a head program."""

    def __init__(self, config, approx: ApproxSet, field: str = "fm64", linear_layers: str = "spu", product: WeightProduct = WHOLE):
        self.config = config
        embeddings = BertEmbeddings(config, approx, product)  # product: in the protocol's `weight_block`s
        self.embedding = ProgramBuilder(embeddings, ("words", "types"), approx, field, linear_layers, name="embedding")
        self.layer = ProgramBuilder(BertLayer(config, approx, product), ("hidden", "mask"), approx, field, linear_layers, lambda out: out[0], "layer")
        self.head = ProgramBuilder(BertHead(config, approx, product), ("hidden",), approx, field, linear_layers, name="head")

    def stages(self, params: dict, data: dict) -> list[Stage]:
        """The stages, in order, from the classifier's parameter tree and data (words, mask, types); the hidden
        states as shapes (they arrive as the parties' shares)."""
        words = data["words"]
        hidden = jax.ShapeDtypeStruct(tuple(np.shape(words)[:2]) + (self.config.hidden_size,), np.float32)
        bert = params["bert"]
        layers = bert["encoder"]["layer"]
        if len(layers) != self.config.num_hidden_layers:
            raise ValueError(f"the parameters hold {len(layers)} layers, the config {self.config.num_hidden_layers}")
        stages = [Stage("embedding", self.embedding, bert["embeddings"], {"words": words, "types": data["types"]})]
        stages += [Stage(f"layer {i}", self.layer, layers[str(i)], {"hidden": hidden, "mask": data["mask"]}) for i in range(len(layers))]
        stages.append(Stage("head", self.head, {"pooler": bert["pooler"], "classifier": params["classifier"]}, {"hidden": hidden}))
        return stages

    def private_run(self, params: dict) -> PrivateRun:
        """The classifier on `params` as a run of these stages (setup and runs: `PrivateRun`)."""
        return PrivateRun(lambda data: self.stages(params, data))
