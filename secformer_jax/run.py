"""A private run's public settings (`RunSpec`) and its result (`RunRecord`): one type each, written by
`infer`, `launch` / `node`, `bench model` and `eval` alike.

`RunSpec` is what every process of a run must agree on: the model, the padded length, the approximations,
the protocol, the field, the products with weights and whether the model runs as one program or one per
stage. Its JSON form (`to_json` / `from_json`) is what `launch` hands, unchanged, to every process it starts:
the dealer derives what to deal from the very JSON the model owner compiles from, so the two cannot disagree.

`RunRecord` is one run's result. Its JSON (`to_json`) has the top-level keys `RECORD_KEYS` in every
command's output, each meaning one thing:

- run: "kind" (which command), "mode" ("simulation": every party in this process; "cluster": one process
  per party), "model", "seq_len", "batch", "approx" (the operators and their "preset"), "protocol",
  "field", "linear", "programs" ("one" or "one per stage");
- online cost (`bench.records.cost_fields`): "seconds", "send_bytes", "recv_bytes", "send_actions", the
  per-party lists, "compute_seconds" (each party's CPU seconds), "beaver_bytes", "total_bytes" = online +
  dealt + SEMI2K triples, the modelled "network_lan_seconds" / "lan_seconds" (and WAN), "by_op";
- "offline": what the dealer sends per run ({"send_bytes", "what"}, or None); "setup": the fixed-mask
  setup's bytes, once per model ({"send_bytes", "model_owner_bytes", "dealer_bytes", "online_bytes",
  "what"}, or None);
- privacy (`program.privacy`): "private", "private_why", "dealer";
- outputs: "logits" and "plaintext_logits" of the first example (None where not computed: a benchmark's
  random data, a cluster run, which has no plaintext reference), "max_abs_error" over the run's examples
  (None without a reference);
- provenance: "compile_seconds" (None where another process compiled), "threads", "peak_rss_bytes".

Each command adds its own keys next to these (the text and prediction, a benchmark's breakdown, an
evaluation's metrics); none of them restates a fact the shared keys hold.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from . import protocols
from .approx import OPS, PRESETS, ApproxSet, choices, resolve_approx
from .bench.network import LAN, WAN, Network
from .bench.records import cost_fields
from .linear import LINEAR_HELP, LINEAR_LAYERS
from .program import check_settings
from .protocols import Protocol
from .spu_runner import FIELDS, Cost

SPEC_KEYS = ("model", "max_length", "approx", "overrides", "protocol", "field", "linear", "staged")
RECORD_KEYS = (
    "kind", "mode", "model", "seq_len", "batch", "approx", "protocol", "field", "linear", "programs",
    "seconds", "send_bytes", "recv_bytes", "send_actions", "party_send_bytes", "party_send_actions", "compute_seconds",
    "beaver_bytes", "total_bytes", "network_lan_seconds", "lan_seconds", "network_wan_seconds", "wan_seconds", "by_op",
    "offline", "setup", "private", "private_why", "dealer",
    "logits", "plaintext_logits", "max_abs_error", "compile_seconds", "threads", "peak_rss_bytes",
)
SIMULATION, CLUSTER = "simulation", "cluster"
SETUP_BYTES = ("send_bytes", "model_owner_bytes", "dealer_bytes", "online_bytes")  # a record's "setup" figures


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """The public settings of one private run. `model`: a checkpoint directory (None: the embedded MiniLM;
    for a benchmark, the name of its random-weight architecture); `max_length`: the padded length;
    `approx`: a preset of `approx.PRESETS` with per-operator `overrides` ((op, name) pairs);
    `staged`: one SPU program per stage (`stages.py`) instead of one for the model."""

    model: str | None = None
    max_length: int = 64
    approx: str = "secformer"
    overrides: tuple[tuple[str, str], ...] = ()
    protocol: Protocol = protocols.DEFAULT
    field: str = "fm64"
    linear: str = "spu"
    staged: bool = False

    def __post_init__(self):
        object.__setattr__(self, "protocol", protocols.get(self.protocol))
        object.__setattr__(self, "overrides", tuple(sorted(dict(self.overrides).items())))
        object.__setattr__(self, "model", None if self.model is None else str(self.model))
        if not isinstance(self.max_length, int) or isinstance(self.max_length, bool) or self.max_length < 2:
            raise ValueError(f"max length must be an integer of at least 2 tokens ([CLS] and [SEP]), got {self.max_length!r}")
        check_settings(self.approximations(), self.field, self.linear, self.protocol)  # unknown names refused here too

    def approximations(self) -> ApproxSet:
        """The preset with its overrides."""
        return resolve_approx(self.approx, **dict(self.overrides))

    @property
    def dealt(self) -> bool:
        """Whether the runs take a dealer's inputs (a GeLU's correlation, or fixed-mask products' masks)."""
        return self.approximations().needs_correlation or self.linear == "fixed-mask"

    @property
    def model_dir(self) -> Path | None:
        return None if self.model is None else Path(self.model)

    def replace(self, **changes) -> RunSpec:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        return {"model": self.model, "max_length": self.max_length, "approx": self.approx, "overrides": dict(self.overrides),
                "protocol": self.protocol.name, "field": self.field, "linear": self.linear, "staged": self.staged}

    @classmethod
    def from_json(cls, value: dict | str) -> RunSpec:
        """The spec of `to_json`'s dict, or of its JSON text; ValueError naming what is wrong otherwise."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as e:
                raise ValueError(f"a run spec is a JSON object; {e}") from None
        if not isinstance(value, dict):
            raise ValueError(f"a run spec is a JSON object with the keys {', '.join(SPEC_KEYS)}, got {type(value).__name__}")
        if set(value) != set(SPEC_KEYS):
            extra, missing = sorted(set(value) - set(SPEC_KEYS)), sorted(set(SPEC_KEYS) - set(value))
            raise ValueError(f"a run spec has the keys {', '.join(SPEC_KEYS)}; unknown: {extra or 'none'}, missing: {missing or 'none'}")
        types = {"model": (str, type(None)), "approx": str, "overrides": dict, "protocol": str, "field": str, "linear": str, "staged": bool}
        for key, kind in types.items():
            if not isinstance(value[key], kind):
                raise ValueError(f"run spec {key!r}: expected {getattr(kind, '__name__', 'a string or null')}, got {value[key]!r}")
        return cls(**(value | {"overrides": tuple(value["overrides"].items())}))

    @classmethod
    def from_args(cls, args, **fixed) -> RunSpec:
        """The spec of the options `add_spec_options` added (`args.spec`, a JSON text or file, wins when
        given); `fixed`: settings the command takes from elsewhere (a cluster config's protocol and field)."""
        given = getattr(args, "spec", None)
        if given is not None:
            if not given.lstrip().startswith("{") and not Path(given).is_file():
                raise FileNotFoundError(f"--spec {given}: neither a JSON object nor a file")
            spec = cls.from_json(given if given.lstrip().startswith("{") else Path(given).read_text())
            for key, value in fixed.items():
                if getattr(spec, key) != (protocols.get(value) if key == "protocol" else value):
                    raise ValueError(f"the run spec says {key} {getattr(spec, key)}, the cluster config {value}")
            return spec
        settings = {"model": getattr(args, "model", None), "max_length": getattr(args, "max_length", 64),
                    "approx": getattr(args, "approx", None) or "secformer", "overrides": tuple(overrides(args).items()),
                    "protocol": getattr(args, "protocol", protocols.DEFAULT), "field": getattr(args, "field", "fm64"),
                    "linear": getattr(args, "linear", "spu")}
        return cls(**(settings | fixed))


def overrides(args) -> dict[str, str]:
    """The per-operator overrides given on the command line (--gelu, --softmax, --layernorm)."""
    return {op: getattr(args, op) for op in OPS if getattr(args, op, None) is not None}


def protocol_type(name: str) -> Protocol:
    """argparse `type` of a protocol option: the `Protocol` named (unknown: argparse's one-line error)."""
    try:
        return protocols.get(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_spec_options(parser: argparse.ArgumentParser, *, model: str | None = "Hugging Face BERT checkpoint directory (default: embedded MiniLM)",
                     max_length: int | None = 64, approx: str | None = "secformer", approx_help: str = "approximation preset",
                     approx_option: bool = True, protocol: bool = True, field: bool = True, linear: bool = True, spec: bool = False) -> None:
    """The options of a `RunSpec`, defined here once: --model (with its help; None: left out), --max-length
    (its default; None: left out), --approx PRESET (its default) and --gelu/--softmax/--layernorm overrides
    (unless not `approx_option`), --protocol, --field, --linear; `spec`: also --spec JSON (or a .json file), all settings at once."""
    if model is not None:
        parser.add_argument("--model", type=Path, help=model)
    if max_length is not None:
        parser.add_argument("--max-length", type=int, default=max_length, help="padded (public) sequence length")
    if approx_option:
        parser.add_argument("--approx", default=approx, choices=list(PRESETS), help=approx_help)
        for op in OPS:
            parser.add_argument(f"--{op}", choices=choices(op), help=f"override the preset's {op}")
    if protocol:
        parser.add_argument("--protocol", default=protocols.DEFAULT, type=protocol_type, choices=list(protocols.PROTOCOLS.values()))
    if field:
        parser.add_argument("--field", default="fm64", choices=list(FIELDS))
    if linear:
        parser.add_argument("--linear", default="spu", choices=list(LINEAR_LAYERS), help=LINEAR_HELP)
    if spec:
        parser.add_argument("--spec", help="every run setting at once: a RunSpec's JSON text or .json file (what `launch` hands each process)")


@dataclasses.dataclass
class RunRecord:
    """One private run's result (module doc: the JSON's keys). `cost`: the online phase (all runs of a record
    summed); `offline`, `setup`: the dealer's per-run bytes and the once-per-model setup; `privacy`:
    `program.privacy`'s claim; `extra`: the command's own keys."""

    kind: str
    mode: str
    spec: RunSpec
    cost: Cost
    privacy: dict
    offline: dict | None = None
    setup: dict | None = None
    model: str | None = None  # as run (the resolved default); None: `spec.model`
    batch: int = 1
    logits: np.ndarray | None = None
    plaintext_logits: np.ndarray | None = None
    max_abs_error: float | None = None
    compile_seconds: float | None = None
    threads: dict | None = None
    peak_rss_bytes: int | dict | None = None
    networks: tuple[Network, ...] = (LAN, WAN)
    extra: dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        approx = self.spec.approximations().to_dict() | {"preset": self.spec.approx}
        first = lambda a: None if a is None else np.asarray(a).reshape(-1, np.shape(a)[-1])[0].tolist()
        out = {
            "kind": self.kind, "mode": self.mode, "model": self.model or self.spec.model, "seq_len": self.spec.max_length,
            "batch": self.batch, "approx": approx, "protocol": self.spec.protocol.name, "field": self.spec.field,
            "linear": self.spec.linear, "programs": "one per stage" if self.spec.staged else "one",
            **cost_fields(self.cost, list(self.networks), (self.offline or {}).get("send_bytes", 0)),
            "by_op": {op: dataclasses.asdict(c) for op, c in self.cost.by_op.items()},
            "offline": self.offline, "setup": self.setup, **self.privacy,
            "logits": first(self.logits), "plaintext_logits": first(self.plaintext_logits), "max_abs_error": self.max_abs_error,
            "compile_seconds": self.compile_seconds, "threads": self.threads, "peak_rss_bytes": self.peak_rss_bytes,
        }
        clash = set(out) & set(self.extra)
        if clash:
            raise ValueError(f"a command's own record keys may not restate the shared ones: {sorted(clash)}")
        return out | self.extra


def setup_json(setup: dict | None) -> dict | None:
    """The fixed-mask setup's cost (`ProgramBuilder.run_setup`: its opening as a Cost) as a record's "setup"."""
    if setup is None:
        return None
    what = "once per model: the model owner's shares of W, the dealer's of B, and the opening of E = W - B (fixed-mask products)"
    online = setup["online"].send_bytes if isinstance(setup.get("online"), Cost) else setup["online_bytes"]
    return {k: setup[k] for k in SETUP_BYTES[:3]} | {"online_bytes": online, "what": what}


def summary(out: dict) -> str:
    """A record's JSON as the lines `secformer infer` and `launch` print."""
    from .bench.report import thread_note
    from .cluster.config import OWNERS

    lines = []
    if "text" in out:
        lines.append(f"text:        {out['text']!r}" + (f" / {out['text_pair']!r}" if out.get("text_pair") else ""))
    lines.append(f"approx:      {out['approx']}")
    plain = out["plaintext_logits"] is not None
    if out.get("prediction") is not None:
        agree = (("; agrees with" if out["prediction"] == out["plaintext_prediction"] else "; DIFFERS from") + " plaintext") if plain else ""
        lines.append(f"prediction:  {out['prediction']} (private{agree})")
    fmt = lambda xs: "[" + ", ".join(f"{x:+.4f}" for x in xs) + "]"
    lines.append(f"logits:      {fmt(out['logits'])}  private, {out['protocol']}")
    if plain:
        lines.append(f"             {fmt(out['plaintext_logits'])}  plaintext, same approximations")
        lines.append(f"max |error|: {out['max_abs_error']:.2e}")
    where = "all parties simulated in one process" if out["mode"] == SIMULATION else f"slowest of {len(out['party_send_bytes'])} party processes"
    lines.append(f"cost:        {out['seconds']:.2f} s wall ({where}), parties sent {out['send_bytes'] / 2**20:.1f} MiB "
                 f"in {out['send_actions']} send actions (all parties); modelled LAN end to end {out['lan_seconds']:.2f} s")
    if out.get("threads"):
        t = out["threads"]
        parties = {role: v for role, v in t.items() if role not in OWNERS}
        lines.append(f"threads:     {thread_note({'threads': t} if 'cores' in t else {'party_threads': parties})}")
    if out.get("offline"):
        lines.append(f"offline:     {out['offline']['send_bytes'] / 2**20:.1f} MiB of {out['offline']['what']}: sent by the dealer, apart from the above")
    if out.get("beaver_bytes"):
        lines.append(f"triples:     {out['beaver_bytes'] / 2**20:.1f} MiB that a third-party dealer would send for SPU's own SEMI2K products "
                     "(here party 0 makes them itself, hence not private against it)")
    if out.get("setup"):
        lines.append(f"setup:       {out['setup']['send_bytes'] / 2**20:.1f} MiB once per model (fixed-mask products: shares of W and B, E = W - B opened)")
    lines.append(f"private:     {'yes' if out['private'] else 'NO'} ({out['private_why']})")
    for op, c in sorted(out["by_op"].items(), key=lambda kv: -kv[1]["send_bytes"])[:5]:
        lines.append(f"  {op:<22} {c['send_bytes'] / 2**20:8.1f} MiB {c['send_actions']:6d} actions {c['seconds']:7.2f} s")
    return "\n".join(lines)
