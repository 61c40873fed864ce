"""The protocol registry (`protocols.py`): its facts agree with SPU, the dealing layouts are sound, nothing
outside it names a protocol, and a new entry works everywhere without touching another module."""

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import spu.libspu as libspu

from secformer_jax import cli, dealing, linear, program, protocols
from secformer_jax.approx import PRESETS
from secformer_jax.cluster.config import parse_config
from secformer_jax.protocols import PROTOCOLS
from secformer_jax.spu_runner import Simulation

PACKAGE = Path(protocols.__file__).parent


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_each_protocol_matches_spu_and_its_share_layout_is_sound(name):
    p = PROTOCOLS[name]
    assert str(p) == p.name == name and protocols.get(name) is p and protocols.get(p) is p
    shares = Simulation(p).io.make_shares(np.zeros(4, np.int32), libspu.Visibility.VIS_SECRET)
    assert len(shares) == p.parties == len(p.seeded)
    every = set(range(p.parties))
    assert set().union(*map(set, p.holds)) == every  # every share index is held by some party
    assert all(set(s) <= set(h) for s, h in zip(p.seeded, p.holds))  # a party derives only shares it holds
    # exactly one share index comes from no seed: the correction, sent to the parties that hold it
    assert len(every - set().union(*p.seeded)) == 1
    assert p.fixed_mask in (None, protocols.EVERY, protocols.WIDENING)
    assert not (p.dealer_free and p.fixed_mask)  # fixed-mask products need a dealer


def test_unknown_protocols_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown protocol 'aby4'; choose one of: semi2k, cheetah, aby3"):
        protocols.get("aby4")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["infer", "--text", "x", "--protocol", "aby4"])


def test_no_module_outside_the_registry_names_a_protocol():
    quoted = re.compile(r"""["'](%s)["']""" % "|".join(map(re.escape, PROTOCOLS)))
    offenders = [f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
                 for path in sorted(PACKAGE.rglob("*.py")) if path.name != "protocols.py"
                 for n, line in enumerate(path.read_text().splitlines(), 1) if quoted.search(line)]
    assert offenders == []


def test_a_new_protocol_entry_works_everywhere(monkeypatch):
    """A fourth entry (SEMI2K's kind with a dealer for its own triples, as a private SEMI2K would be) reaches
    the CLI, cluster configs, dealing, the fixed-mask choice and the privacy claim with no other edit."""
    new = dataclasses.replace(PROTOCOLS["semi2k"], name="semi2k-dealt", first_party_triples=False, sharing="2PC additive sharing, dealt triples")
    monkeypatch.setitem(PROTOCOLS, new.name, new)
    assert cli.build_parser().parse_args(["infer", "--text", "x", "--protocol", new.name]).protocol is new
    raw = json.loads((Path(__file__).parents[1] / "spu_configs" / "2pc_semi2k.json").read_text()) | {"protocol": new.name}
    assert parse_config(raw).protocol is new
    values = [np.arange(-6, 6, dtype=np.int32).reshape(3, 4)]
    bundles = dealing.deal(values, new.name)
    per_party = [dealing.Bundle.from_wire(*b.to_wire()).shares() for b in bundles]
    assert (Simulation(new).io.reconstruct([p[0] for p in per_party]) == values[0]).all()
    assert linear.prefers_mask(new, 768, 768)
    claim = program.privacy(new, dealt=True)
    assert claim["private"] and "dealt triples" in claim["private_why"]
    assert not program.privacy("semi2k", dealt=True)["private"]
    program.check_settings(PRESETS["secformer"], protocol=new)
