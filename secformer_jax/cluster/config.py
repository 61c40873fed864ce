"""Cluster configs (`spu_configs/*.json`): who runs where, which protocol, which SPU runtime options.

A config names a protocol (`protocols.PROTOCOLS`) and its computing parties (`Protocol.parties`), each with two addresses:
`mpc_address` for the SPU protocol link among the parties and `io_address` for the link that carries
secret shares from the owners and output shares back; the two owners' `address`es (data owner:
the text, the only one to receive the logits; model owner: the weights) and the dealer's (the correlated
randomness of a protocol GeLU: a process that is neither an owner nor a computing party and receives no
data, only the model owner's stop). Example:

    {"protocol": "<name>", "field": "fm64",
     "parties": [{"id": "p0", "mpc_address": "127.0.0.1:61530", "io_address": "127.0.0.1:61540"}, ...],
     "data_owner": {"address": "127.0.0.1:61550"}, "model_owner": {"address": "127.0.0.1:61551"},
     "dealer": {"address": "127.0.0.1:61552"},
     "runtime_options": {"fxp_exp_mode": "EXP_TAYLOR"},
     "link": {"connect_timeout_s": 30, "recv_timeout_s": 600}}

`runtime_options` are SPU RuntimeConfig fields (enum values by name); the defaults are PUMA's (Taylor exp),
shared by every method so that all of them run on one backend. `link` bounds how long a process waits:
for its peers to come up (to within one connection attempt, ~3.5 s), and for any one message. Loading validates everything and names the bad field.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import spu.libspu as libspu

from ..protocols import PROTOCOLS, Protocol
from ..spu_runner import FIELDS, SPU_RUNTIME_OPTIONS, runtime_config
from ..threads import Plan, cores

DATA_OWNER, MODEL_OWNER, DEALER = "data_owner", "model_owner", "dealer"
OWNERS = (DATA_OWNER, MODEL_OWNER, DEALER)  # the I/O link's first ranks, in order
DEFAULT_LINK = {"connect_timeout_s": 30.0, "recv_timeout_s": 600.0}


class ConfigError(ValueError):
    """A malformed cluster config; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class Party:
    id: str
    mpc_address: str
    io_address: str


@dataclasses.dataclass(frozen=True)
class ClusterConfig:
    """A validated cluster config. I/O link ranks: 0 data owner, 1 model owner, 2 dealer, 3 + i computing party i."""

    protocol: Protocol
    field: str
    parties: tuple[Party, ...]
    data_owner: str
    model_owner: str
    dealer: str
    runtime_options: dict[str, Any]
    connect_timeout_s: float
    recv_timeout_s: float
    source: str = "<dict>"

    @property
    def io_addresses(self) -> list[str]:
        return [self.data_owner, self.model_owner, self.dealer] + [p.io_address for p in self.parties]

    def endpoints(self) -> list[tuple[str, str]]:
        """Every address a process of this config listens on, as (what, address): "p0's MPC address", ..."""
        out = [(f"{role}'s I/O address", a) for role, a in zip(OWNERS, self.io_addresses)]
        for p in self.parties:
            out += [(f"{p.id}'s I/O address", p.io_address), (f"{p.id}'s MPC address", p.mpc_address)]
        return out

    def roles(self) -> list[str]:
        """Every process's name, in I/O rank order."""
        return list(OWNERS) + [p.id for p in self.parties]

    def io_rank(self, role: str) -> int:
        if role not in self.roles():
            raise ConfigError(f"{self.source}: no party {role!r}; parties: {', '.join(self.roles())}")
        return self.roles().index(role)

    def parties_beside(self, role: str) -> int:
        """How many computing parties run on `role`'s machine (its own included if it is one): those whose
        I/O address has the same host as `role`'s (loopback names count as one host). A party on another
        name for the same machine is not counted."""
        host = lambda address: address.rsplit(":", 1)[0]
        mine = host(self.io_addresses[self.io_rank(role)])
        return sum(_same_host(mine, host(p.io_address)) for p in self.parties)

    def thread_plan(self, role: str) -> Plan:
        """`role`'s process's thread plan (`secformer_jax.threads`): one party's share of its machine's
        cores, beside the other parties of this config on that machine."""
        return Plan(1, max(1, self.parties_beside(role)), cores())

    def runtime_config(self, profile: bool = True) -> libspu.RuntimeConfig:
        return runtime_config(self.protocol, self.field, profile=profile, **self.runtime_options)

    def with_addresses(self, io: list[str], mpc: list[str]) -> "ClusterConfig":
        """The same config on other addresses (tests use free ports): `io` in I/O rank order, `mpc` per party."""
        parties = tuple(dataclasses.replace(p, io_address=a, mpc_address=m) for p, a, m in zip(self.parties, io[len(OWNERS):], mpc))
        return dataclasses.replace(self, data_owner=io[0], model_owner=io[1], dealer=io[2], parties=parties)

    def to_json(self) -> dict:
        enum_name = lambda v: v.name if hasattr(v, "name") else v
        return {
            "protocol": self.protocol.name,
            "field": self.field,
            "parties": [dataclasses.asdict(p) for p in self.parties],
            DATA_OWNER: {"address": self.data_owner},
            MODEL_OWNER: {"address": self.model_owner},
            DEALER: {"address": self.dealer},
            "runtime_options": {k: enum_name(v) for k, v in self.runtime_options.items()},
            "link": {"connect_timeout_s": self.connect_timeout_s, "recv_timeout_s": self.recv_timeout_s},
        }


def _address(value: Any, where: str) -> str:
    if not isinstance(value, str) or value.count(":") != 1:
        raise ConfigError(f"{where}: expected 'host:port', got {value!r}")
    host, port = value.split(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: expected 'host:port' with a port in 1..65535, got {value!r}")
    return value


# Names of this machine's loopback and wildcard addresses: one port on any two of them is one endpoint.
_LOCAL_NAMES = {"localhost", "0.0.0.0"}


def _same_host(a: str, b: str) -> bool:
    local = lambda h: h in _LOCAL_NAMES or h.startswith("127.")
    return a == b or (local(a) and local(b))


def _same_endpoint(a: str, b: str) -> bool:
    (host_a, port_a), (host_b, port_b) = a.rsplit(":", 1), b.rsplit(":", 1)
    return port_a == port_b and _same_host(host_a, host_b)


def _object(value: Any, where: str, required: set[str], optional: set[str] = frozenset()) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected an object, got {type(value).__name__}")
    missing = sorted(required - value.keys())
    if missing:
        raise ConfigError(f"{where}: missing field {missing[0]!r}")
    unknown = sorted(value.keys() - required - optional)
    if unknown:
        raise ConfigError(f"{where}: unknown field {unknown[0]!r} (fields: {', '.join(sorted(required | optional))})")
    return value


def _runtime_options(options: Any, where: str) -> dict[str, Any]:
    """RuntimeConfig fields by name; enum values given by their names (e.g. "EXP_TAYLOR")."""
    if not isinstance(options, dict):
        raise ConfigError(f"{where}: expected an object, got {type(options).__name__}")
    probe = libspu.RuntimeConfig()
    out = {}
    for name, value in options.items():
        if name in ("protocol", "field", "fxp_fraction_bits") or not hasattr(probe, name) or name.startswith("_"):
            raise ConfigError(f"{where}.{name}: not a settable SPU runtime option (protocol and field are top-level fields)")
        current = getattr(probe, name)
        if hasattr(type(current), "__members__"):
            members = type(current).__members__
            if value not in members:
                raise ConfigError(f"{where}.{name}: unknown value {value!r}; choose one of: {', '.join(members)}")
            value = members[value]
        elif type(value) is not type(current) and not (isinstance(current, float) and isinstance(value, int)):
            raise ConfigError(f"{where}.{name}: expected {type(current).__name__}, got {value!r}")
        out[name] = value
    return out


def parse_config(raw: Any, source: str = "<dict>") -> ClusterConfig:
    """Validate a config's JSON object (see the module doc); ConfigError names the first bad field."""
    top = _object(raw, source, {"protocol", "parties", *OWNERS}, {"field", "runtime_options", "link", "comment"})
    name, field = top["protocol"], top.get("field", "fm64")
    if not isinstance(name, str) or name not in PROTOCOLS:
        raise ConfigError(f"{source}: protocol: unknown {name!r}; choose one of: {', '.join(PROTOCOLS)}")
    protocol = PROTOCOLS[name]
    if field not in FIELDS:
        raise ConfigError(f"{source}: field: unknown {field!r}; choose one of: {', '.join(FIELDS)}")
    world = protocol.parties
    if not isinstance(top["parties"], list) or len(top["parties"]) != world:
        got = len(top["parties"]) if isinstance(top["parties"], list) else type(top["parties"]).__name__
        raise ConfigError(f"{source}: parties: {protocol} needs exactly {world} computing parties, got {got}")
    parties = []
    for i, p in enumerate(top["parties"]):
        where = f"{source}: parties[{i}]"
        _object(p, where, {"id", "mpc_address", "io_address"})
        if not isinstance(p["id"], str) or not p["id"] or p["id"] in OWNERS:
            raise ConfigError(f"{where}.id: expected a party name other than {'/'.join(OWNERS)}, got {p['id']!r}")
        parties.append(Party(p["id"], _address(p["mpc_address"], f"{where}.mpc_address"), _address(p["io_address"], f"{where}.io_address")))
    owners = {}
    for role in OWNERS:
        owners[role] = _address(_object(top[role], f"{source}: {role}", {"address"})["address"], f"{source}: {role}.address")
    ids = [p.id for p in parties]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{source}: parties: duplicate id in {ids}")
    named = [(f"{p.id}.{kind}", a) for p in parties for kind, a in (("mpc_address", p.mpc_address), ("io_address", p.io_address))]
    named += [(f"{role}.address", a) for role, a in owners.items()]
    for i, (where, address) in enumerate(named):
        other = next((w for w, a in named[:i] if _same_endpoint(a, address)), None)
        if other:
            raise ConfigError(f"{source}: {where} {address} is used twice (also {other}): every link endpoint needs its own port")
    options = _runtime_options(top.get("runtime_options", {k: v.name for k, v in SPU_RUNTIME_OPTIONS.items()}), f"{source}: runtime_options")
    link = _object(top.get("link", DEFAULT_LINK), f"{source}: link", set(), set(DEFAULT_LINK))
    timeouts = DEFAULT_LINK | link
    for name, value in timeouts.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{source}: link.{name}: expected a positive number of seconds, got {value!r}")
    return ClusterConfig(
        protocol, field, tuple(parties), owners[DATA_OWNER], owners[MODEL_OWNER], owners[DEALER], options,
        float(timeouts["connect_timeout_s"]), float(timeouts["recv_timeout_s"]), source,
    )


def load_config(path: str | Path) -> ClusterConfig:
    """Read and validate a cluster config file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"cluster config {path} not found (see spu_configs/ for examples)")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}") from e
    return parse_config(raw, str(path))
