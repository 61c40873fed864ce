"""One private run of a model on fixed weights, assembled in one place: its stages, the fixed-mask setup once
per runner, then any number of runs, each dealt fresh, over a `Simulation` or a cluster's runner.

    setup (once per runner: B dealt, E = [W] - [B] opened, kept by the parties)
    run:  deal (fresh) -> share -> stage 1 -> [h] -> stage 2 -> ... -> last stage -> revealed output

In one process (a `Simulation`, or a cluster's `roles.Driver` playing the owners and the dealer) `setup` and
`run` do it all. Where the owners and the dealer are separate processes (`cluster.node`) each takes its
part of the same run: `owner_jobs` (the model owner: the programs and its weight inputs) and `deal_setup` /
`deal_run` (the dealer: B once, then each run's fresh randomness, from public shapes only).

A run is one program (`PrivateRun.single`) or a sequence of stages (`stages.StagedClassifier`: embedding,
each layer, head) whose secret results stay with the parties as shares between programs: nothing is opened
between stages, only the last stage's output is revealed. One dealer owns a run's randomness: with several
stages each draws from its own scope (`Dealer.scope(stage name)`), so no two stages draw the same stream.
`inference.PrivateClassifier`, `bench.model`, the staged benchmark, `glue.evaluate` and the cluster's nodes
all run through it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from . import linear
from .program import ProgramBuilder
from .protocols import Protocol
from .randomness import Dealer
from .spu_runner import Cost, Program, Simulation, rss_peak


def _arrays(tree) -> list[np.ndarray]:
    """A tree's leaves as arrays, in the order a program takes them."""
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One program of a run: its builder, its weights and its data inputs (a stage's input from the stage
    before it as shapes: it arrives as the parties' shares)."""

    name: str
    builder: ProgramBuilder
    params: dict
    data: dict


@dataclasses.dataclass(frozen=True)
class OwnerJobs:
    """The model owner's part of a one-program run: the setup job (its program and the weight inputs, in
    the program's input order) or None, and the inference program with its weight inputs."""

    setup: tuple[Program, list[np.ndarray]] | None
    program: Program
    weights: list[np.ndarray]


class PrivateRun:
    """A model's private program(s) on fixed weights: `stages(data)` gives the stages for the data owner's
    inputs `data`, in order; the last one's output is revealed, each other one's is kept by the parties as
    the next stage's input "hidden"."""

    def __init__(self, stages: Callable[[dict], list[Stage]]):
        self._stages = stages
        self._setups: dict[int, tuple[Any, list, dict | None]] = {}  # id(runner): (runner, masks per stage, setup cost)

    @classmethod
    def single(cls, builder: ProgramBuilder, params: dict) -> PrivateRun:
        """The run of one program: `builder`'s module on `params`."""
        return cls(lambda data: [Stage(builder.name, builder, params, data)])

    def stages(self, data: dict) -> list[Stage]:
        return self._stages(data)

    def _one(self, data: dict) -> Stage:
        stages = self.stages(data)
        if len(stages) != 1:
            raise ValueError(f"owners in separate processes run one program; this run has {len(stages)} stages "
                             "(run a staged model through one runner: a Simulation or a cluster's Driver)")
        return stages[0]

    def owner_jobs(self, protocol: Protocol, data: dict) -> OwnerJobs:
        """The model owner's part under `protocol` for inputs shaped like `data`: which products are fixed-mask
        ones (shapes only: B is the dealer's), the compiled programs and the weights they take."""
        stage = self._one(data)
        builder = stage.builder
        masks = builder.setup(protocol, stage.data)
        program = builder.compile(builder.shapes(stage.params, stage.data, masks))[0]
        params = masks.strip(stage.params) if masks is not None else stage.params
        setup = None if masks is None else (builder.setup_program(masks), _arrays(masks.weights(stage.params)))
        return OwnerJobs(setup, program, _arrays(params))

    def deal_setup(self, protocol: Protocol, data: dict, dealer: Dealer) -> tuple[linear.FixedMasks | None, list[np.ndarray] | None]:
        """The dealer's once-per-model part: the fixed masks (B from `dealer`) and the setup job's dealt values
        in its input order, or (None, None) without a setup. From shapes only: a stage's params may be None."""
        stage = self._one(data)
        masks = stage.builder.setup(protocol, stage.data, dealer)
        return masks, None if masks is None else _arrays(masks.weight_masks())

    def deal_run(self, masks: linear.FixedMasks | None, data: dict, dealer: Dealer) -> list[np.ndarray]:
        """The dealer's part of one run: its dealt values (GeLU masks, fixed-mask A and C for `masks`' B), fresh
        from `dealer`, in the program's input order (empty where the program takes none)."""
        stage = self._one(data)
        return _arrays(stage.builder.deal(stage.data, masks, dealer))

    def _dealer(self, dealer: Dealer, stage: Stage, stages: list[Stage]) -> Dealer:
        return dealer if len(stages) == 1 else dealer.scope(stage.name)

    def setup(self, runner, data: dict, dealer: Dealer | None = None) -> dict | None:
        """The fixed-mask setup of every stage under `runner` (B from `dealer`, a fresh one by default; once per
        runner: later calls return the first one's cost): the setups' costs summed ({"send_bytes",
        "model_owner_bytes", "dealer_bytes", "online": Cost}), or None where no stage has one."""
        if id(runner) not in self._setups:
            dealer = dealer or Dealer()
            stages = self.stages(data)
            masks, costs = [], []
            for stage in stages:
                m = stage.builder.setup(runner.protocol, stage.data, self._dealer(dealer, stage, stages))
                masks.append(m)
                if m is not None:
                    costs.append(stage.builder.run_setup(runner, stage.params, m))
            total = None
            if costs:
                total = {key: sum(c[key] for c in costs) for key in ("send_bytes", "model_owner_bytes", "dealer_bytes")}
                total["online"] = Cost.total([c["online"] for c in costs])
            self._setups[id(runner)] = (runner, masks, total)
        return self._setups[id(runner)][2]

    def masks(self, runner, data: dict) -> list[linear.FixedMasks | None]:
        """Each stage's fixed masks under `runner` (None with SPU's own products), set up first if need be."""
        self.setup(runner, data)
        return self._setups[id(runner)][1]

    def run(self, runner, data: dict, dealer: Dealer, record_openings: bool = False,
            progress: Callable[[str], None] | None = None, per_stage: list | None = None) -> tuple[Any, Cost, dict | None]:
        """One private inference on `data`, its randomness from `dealer` (a fresh `Dealer()` per run): (output,
        the stages' online costs summed, the dealer's offline {"send_bytes", "seconds"} summed or None).
        `record_openings` (one program only): the output is (output, every value the program opened).
        `progress(stage name)` after each stage; `per_stage` (a list) gets each stage's {"stage", "seconds",
        "send_bytes", "compute_seconds", "peak_rss_bytes"} (this process's peak resident memory during the
        stage, `spu_runner.rss_peak`: every party's with a simulation; None with a cluster, whose parties are
        other processes)."""
        stages = self.stages(data)
        masks = self.masks(runner, data)
        if record_openings and len(stages) > 1:
            raise ValueError("openings are recorded for a run of one program")
        costs, offline, kept, out = [], [], None, None
        for k, (stage, stage_masks) in enumerate(zip(stages, masks)):
            last = k == len(stages) - 1
            with rss_peak() as peak:  # the parties' memory only when they run in this process
                out, cost, dealt = stage.builder.run(runner, stage.params, stage.data, stage_masks, self._dealer(dealer, stage, stages),
                                                     record_openings, held={"hidden": kept["hidden"]} if kept else None,
                                                     keep=None if last else "hidden")
            kept = None if last else out
            costs.append(cost)
            if dealt:
                offline.append(dealt)
            if per_stage is not None:
                per_stage.append({"stage": stage.name, "seconds": cost.seconds, "send_bytes": cost.send_bytes,
                                  "compute_seconds": cost.party_compute_seconds,
                                  "peak_rss_bytes": peak["bytes"] if isinstance(runner, Simulation) else None})
            if progress:
                progress(stage.name)
        dealt = {key: sum(d[key] for d in offline) for key in ("send_bytes", "seconds")} if offline else None
        return out, Cost.total(costs), dealt
