"""One process per party over real loopback links: same results and bytes as the simulation, clear
failures (bad config, a party that never starts, a party that dies mid-run), no hangs."""

import json
import signal
import socket
import threading
import time

import numpy as np
import pytest

from secformer_jax.approx import PRESETS, get_approx
from secformer_jax.checkpoint import load_checkpoint
from secformer_jax.cli import main
from secformer_jax.cluster import ConfigError, LaunchError, LocalCluster, launch_inference, load_config, parse_config
from secformer_jax.cluster.config import DATA_OWNER, DEALER, MODEL_OWNER
from secformer_jax.cluster.launch import Supervisor, node_command
from secformer_jax.inference import PrivateClassifier, encode
from secformer_jax.spu_runner import SPU_RUNTIME_OPTIONS, Simulation, compile_program

TEXT = "a gripping, beautifully made film"


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def local_config(tmp_path, name, connect_timeout_s=20, recv_timeout_s=120):
    """spu_configs/NAME.json on free loopback ports and with short timeouts, written under tmp_path."""
    config = load_config(f"spu_configs/{name}.json")
    io = len(config.roles())
    ports = [f"127.0.0.1:{p}" for p in _free_ports(io + len(config.parties))]
    raw = config.with_addresses(ports[:io], ports[io:]).to_json()
    raw["link"] = {"connect_timeout_s": connect_timeout_s, "recv_timeout_s": recv_timeout_s}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize("name", ["3pc_aby3", "2pc_semi2k", "2pc_cheetah"])
def test_committed_configs_load(name):
    config = load_config(f"spu_configs/{name}.json")
    assert len(config.parties) == {"aby3": 3, "semi2k": 2, "cheetah": 2}[config.protocol]
    assert config.runtime_config().fxp_exp_mode.name == "EXP_TAYLOR"


def _valid():
    return json.loads(open("spu_configs/3pc_aby3.json").read())


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.pop("protocol"), "missing field 'protocol'"),
        (lambda c: c.update(protocol="spdz"), "protocol: unknown 'spdz'"),
        (lambda c: c["parties"].pop(), "aby3 needs exactly 3 computing parties, got 2"),
        (lambda c: c["parties"][1].update(mpc_address="localhost"), "parties[1].mpc_address: expected 'host:port'"),
        (lambda c: c["parties"][2].update(io_address="127.0.0.1:99999"), "parties[2].io_address"),
        (lambda c: c["parties"][0].update(id=MODEL_OWNER), "parties[0].id"),
        (lambda c: c["parties"][1].update(id="p0"), "duplicate id"),
        (lambda c: c["data_owner"].update(address=c["model_owner"]["address"]), "is used twice"),
        (lambda c: c["runtime_options"].update(fxp_exp_mode="EXP_FAST"), "runtime_options.fxp_exp_mode: unknown value 'EXP_FAST'"),
        (lambda c: c["runtime_options"].update(no_such_option=1), "runtime_options.no_such_option"),
        (lambda c: c["runtime_options"].update(protocol="ABY3"), "runtime_options.protocol"),
        (lambda c: c["link"].update(recv_timeout_s=0), "link.recv_timeout_s"),
        (lambda c: c.update(extra=1), "unknown field 'extra'"),
    ],
)
def test_malformed_config_names_the_field(edit, message):
    raw = _valid()
    edit(raw)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        parse_config(raw, "cfg.json")


def test_launch_refuses_bad_config_before_starting_anything(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["launch", "--config", str(bad), "--text", "x"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["launch", "--config", str(tmp_path / "missing.json"), "--text", "x"]) == 2
    assert "not found" in capsys.readouterr().err
    # fixed-mask products need a dealer-based protocol: refused before any process starts
    assert main(["launch", "--config", "spu_configs/2pc_cheetah.json", "--linear", "fixed-mask", "--text", "x", "--log-dir", str(tmp_path / "logs")]) == 2
    assert "need a dealer-based protocol" in capsys.readouterr().err and not (tmp_path / "logs").exists()


# ABY3 with the secformer preset and fixed-mask products (the dealer process deals B for the setup, then A,
# C and the GeLU masks); SEMI2K with PUMA's and SPU's own products (nothing to deal: the dealer only joins
# and leaves)
@pytest.mark.parametrize("name, preset, linear_layers", [("3pc_aby3", "secformer", "fixed-mask"), ("2pc_semi2k", "puma", "spu"), ("2pc_cheetah", "puma", "spu")])
def test_launch_equals_simulation(tmp_path, tiny_checkpoint, name, preset, linear_layers):
    path = local_config(tmp_path, name)
    config = load_config(path)
    out = launch_inference(path, TEXT, max_length=16, model=tiny_checkpoint[0], log_dir=tmp_path / "logs", timeout=300,
                           approx_args=["--approx", preset], linear_layers=linear_layers)

    checkpoint = load_checkpoint(tiny_checkpoint[0])
    classifier = PrivateClassifier(checkpoint, PRESETS[preset], linear_layers=linear_layers)
    encoded = encode(checkpoint.tokenizer, TEXT, None, 16)
    simulated = classifier(encoded, config.protocol)
    # each run's fixed-point error is its own (fresh shares, probabilistic truncation): both within 1e-2 of the
    # plaintext model with the same approximations, and within two runs' error of each other
    np.testing.assert_allclose(out["logits"], simulated.plaintext_logits[0], atol=1e-2)
    np.testing.assert_allclose(simulated.logits[0], simulated.plaintext_logits[0], atol=1e-2)
    np.testing.assert_allclose(out["logits"], simulated.logits[0], atol=5e-3)
    assert out["linear"] == linear_layers
    # the dealer's bytes (seeds and corrections, as the parties received them) and the setup's equal the
    # simulation's: the same seed-based dealing
    if simulated.offline is None:
        assert out["offline"] is None
    else:
        assert out["offline"]["send_bytes"] == simulated.offline["send_bytes"] > 0
    if linear_layers == "fixed-mask":
        assert out["setup"]["online_bytes"] == simulated.setup["online"].send_bytes > 0
        assert out["setup"]["dealer_bytes"] == simulated.setup["dealer_bytes"] > 0
        assert out["setup"]["model_owner_bytes"] == pytest.approx(simulated.setup["model_owner_bytes"], rel=1e-3)
    assert np.argmax(out["logits"]) == np.argmax(simulated.plaintext_logits[0])
    # communication is deterministic (Cheetah's to ~0.01%): the party processes send what the simulated parties send
    if config.protocol == "cheetah":
        assert out["cost"]["send_bytes"] == pytest.approx(simulated.cost.send_bytes, rel=1e-3)
    else:
        assert out["cost"]["send_bytes"] == simulated.cost.send_bytes
        assert out["cost"]["send_actions"] == simulated.cost.send_actions
    # SEMI2K's own triples: each party process counts them from its own profile, as the simulation does
    assert out["cost"]["beaver_bytes"] == simulated.cost.beaver_bytes
    assert (simulated.cost.beaver_bytes > 0) if config.protocol == "semi2k" else simulated.cost.beaver_bytes is None
    assert len(out["cost"]["party_send_bytes"]) == len(config.parties)
    # measured per process: each party's CPU time in the run, each process's peak memory
    assert len(out["compute_seconds"]) == len(config.parties) and all(c > 0 for c in out["compute_seconds"])
    assert set(out["peak_rss_bytes"]) == set(config.roles()) and all(m > 50e6 for m in out["peak_rss_bytes"].values())
    # a separate dealer dealt the GeLU masks (and the fixed masks): the run is private under ABY3 and
    # Cheetah (no dealer at all), not under SEMI2K (party 0 deals SPU's own triples)
    dealt = PRESETS[preset].needs_correlation or linear_layers == "fixed-mask"
    assert out["dealer"] == ("separate process" if dealt else None) and out["private"] == (config.protocol != "semi2k")
    # who received what (each process's ledger of received messages): only the data owner receives output
    # shares, the dealer receives only the model owner's stop (no data), the model owner only control messages
    received = {}
    for role in config.roles():
        log = (tmp_path / "logs" / f"{role}.log").read_text()
        line = [l for l in log.splitlines() if l.startswith(f"{role}: received ")][-1]
        received[role] = json.loads(line.split(" received ", 1)[1])
    assert [(sender, kind) for sender, kind, _ in received[DEALER]] == [(MODEL_OWNER, "stop")]
    kinds = {role: {kind for _, kind, _ in msgs} for role, msgs in received.items()}
    assert "outputs" in kinds[DATA_OWNER] and all("outputs" not in kinds[r] for r in config.roles() if r != DATA_OWNER)
    assert kinds[MODEL_OWNER] <= {"request", "done", "bye", "kept"}
    # the setup's E stays with the parties: they answer the model owner with their profiles only
    assert all(size < 100_000 for _, kind, size in received[MODEL_OWNER] if kind == "kept")
    for party in config.parties:
        senders = {sender for sender, kind, _ in received[party.id] if kind in ("shares", "dealt")}
        assert senders == {DATA_OWNER, MODEL_OWNER} | ({DEALER} if dealt else set())  # the dealer's shares go to every party
        assert all(sender == DEALER for sender, kind, _ in received[party.id] if kind == "dealt")
    values = [f"{v:.3f}" for v in out["logits"]]
    for role in [r for r in config.roles() if r != DATA_OWNER]:
        log = (tmp_path / "logs" / f"{role}.log").read_text()
        assert not any(v in log for v in values), role


def test_benchmark_programs_run_through_a_cluster(tmp_path):
    path = local_config(tmp_path, "2pc_semi2k")
    x = np.linspace(-6, 6, 257).astype(np.float32)
    program = compile_program(get_approx("gelu", "secformer"), x)
    simulated, sim_cost = Simulation("semi2k", **SPU_RUNTIME_OPTIONS).run(program, x)
    with LocalCluster(path, log_dir=tmp_path / "logs") as cluster:
        for _ in range(2):  # parties serve several jobs; each job's cost is its own
            out, cost = cluster.run(program, x)
            np.testing.assert_allclose(out, simulated, atol=1e-3)
            assert (cost.send_bytes, cost.send_actions) == (sim_cost.send_bytes, sim_cost.send_actions)
    assert "stop after 2 job(s)" in (tmp_path / "logs" / "p0.log").read_text()


def test_party_that_never_starts_ends_everyone(tmp_path):
    path = local_config(tmp_path, "3pc_aby3", connect_timeout_s=3)
    start = time.monotonic()
    with Supervisor(tmp_path / "logs") as sup:
        for role in ("p0", "p1", MODEL_OWNER):  # p2 never starts
            sup.start(role, node_command(path, role))
        sup.start(DATA_OWNER, node_command(path, DATA_OWNER, "--text", TEXT))
        for proc in sup.procs.values():
            proc.wait(timeout=90)
    assert time.monotonic() - start < 90
    for role, proc in sup.procs.items():
        assert proc.returncode == 2, role
        log = (tmp_path / "logs" / f"{role}.log").read_text()
        assert "could not connect the I/O link" in log and "p2 at 127.0.0.1" in log


def test_party_dying_mid_run_is_reported_without_hanging(tmp_path, tiny_checkpoint):
    path = local_config(tmp_path, "3pc_aby3", recv_timeout_s=300)

    def kill_p1_once_connected(sup):
        def watch():
            log = tmp_path / "logs" / "p1.log"
            while "connected" not in (log.read_text() if log.exists() else ""):
                time.sleep(0.1)
            sup.procs["p1"].send_signal(signal.SIGKILL)

        threading.Thread(target=watch, daemon=True).start()

    start = time.monotonic()
    with pytest.raises(LaunchError, match="p1 was killed by signal 9"):
        launch_inference(
            path, TEXT, max_length=16, model=tiny_checkpoint[0], log_dir=tmp_path / "logs", timeout=120,
            on_start=kill_p1_once_connected,
        )
    assert time.monotonic() - start < 60  # well inside the 300 s receive timeout: the supervisor ends it


def test_data_owner_input_error_ends_the_run(tmp_path, tiny_checkpoint):
    path = local_config(tmp_path, "3pc_aby3", connect_timeout_s=60)
    with pytest.raises(LaunchError, match=r"data_owner exited with status 2(.|\n)*text is empty"):
        launch_inference(path, "   ", max_length=16, model=tiny_checkpoint[0], log_dir=tmp_path / "logs", timeout=120)


def test_a_dealer_started_with_other_arguments_is_named(tmp_path, tiny_checkpoint):
    """A hand-started dealer whose --max-length differs from the model owner's: the parties refuse its shares
    with a message that says what to check, instead of failing inside SPU."""
    path = local_config(tmp_path, "2pc_semi2k")
    model = ["--model", str(tiny_checkpoint[0]), "--approx", "secformer"]
    with Supervisor(tmp_path / "logs") as sup:
        for role in ("p0", "p1"):
            sup.start(role, node_command(path, role))
        sup.start(MODEL_OWNER, node_command(path, MODEL_OWNER, *model, "--max-length", "16"))
        sup.start(DEALER, node_command(path, DEALER, *model, "--max-length", "8"))
        sup.start(DATA_OWNER, node_command(path, DATA_OWNER, "--text", TEXT, "--max-length", "16", "--model", str(tiny_checkpoint[0])))
        with pytest.raises(LaunchError, match="was the dealer started with the model owner's"):
            sup.wait(list(sup.procs), 120)


@pytest.mark.parametrize("linear_layers", ["spu", "fixed-mask"])
def test_bench_model_through_a_cluster_deals_seed_based(tmp_path, linear_layers):
    """The harness's cluster path with dealt GeLU randomness (and fixed-mask products: the setup job, the
    parties keeping B and E for the inference job): the driver's dealer endpoint sends seeds and corrections;
    online, dealt and setup bytes equal the simulation's, compute is measured per party process."""
    from secformer_jax.bench.model import model_records
    from secformer_jax.bench.network import LAN

    path = local_config(tmp_path, "2pc_semi2k")
    args = ("bert-tiny", ["secformer"], ["semi2k"], 8, 1, 2, [LAN])
    simulated = model_records(*args, dealer_seed=1, linear_layers=linear_layers)[1]
    with LocalCluster(path, log_dir=tmp_path / "logs") as cluster:
        clustered = model_records(*args, runners={"semi2k": cluster}, dealer_seed=1, linear_layers=linear_layers)[1]
    assert clustered["send_bytes"] == simulated["send_bytes"] and clustered["offline"] == simulated["offline"]
    assert clustered["beaver_bytes"] == simulated["beaver_bytes"] > 0
    assert clustered["setup"] == simulated["setup"]
    assert clustered["max_abs_error"] < 0.05 and len(clustered["compute_seconds"]) == 2


def test_a_fixed_mask_run_with_nothing_to_mask_has_no_setup(tmp_path):
    """ABY3 on a model without layers masks no product (none pays): no setup job, no message left unread."""
    from secformer_jax.bench.model import model_records
    from secformer_jax.bench.network import LAN

    with LocalCluster(local_config(tmp_path, "3pc_aby3"), log_dir=tmp_path / "logs") as cluster:
        (record,) = model_records("bert-tiny", ["puma"], ["aby3"], 8, 1, 1, [LAN], runners={"aby3": cluster}, linear_layers="fixed-mask")[1:]
    assert record["setup"]["send_bytes"] > 0  # the 1-layer program masks Q, K, V and the FFN's first product


def test_layer_programs_through_a_cluster_keep_shares_in_each_party_process(tmp_path):
    """One program per stage through party processes (ABY3, fixed-mask: a setup per stage): each party
    process keeps the hidden states' shares between programs; bytes per stage equal the simulation's, and
    the logits agree with plaintext as there. Peak memory per stage is not measured here (other processes)."""
    from secformer_jax.bench.model import model_records
    from secformer_jax.bench.network import LAN

    args = ("bert-tiny", ["secformer"], ["aby3"], 8, 1, None, [LAN])
    kwargs = dict(dealer_seed=2, linear_layers="fixed-mask", layer_programs=True)
    simulated = model_records(*args, **kwargs)[1]
    with LocalCluster(local_config(tmp_path, "3pc_aby3"), log_dir=tmp_path / "logs") as cluster:
        clustered = model_records(*args, runners={"aby3": cluster}, **kwargs)[1]
    assert [s["send_bytes"] for s in clustered["stages"]] == [s["send_bytes"] for s in simulated["stages"]]
    assert [s["stage"] for s in clustered["stages"]] == ["embedding", "layer 0", "layer 1", "head"]
    assert clustered["setup"] == simulated["setup"] and clustered["offline"] == simulated["offline"]
    assert clustered["max_abs_error"] < 0.05 and abs(clustered["max_abs_error"] - simulated["max_abs_error"]) < 1e-3
    assert all(s["peak_rss_bytes"] is None for s in clustered["stages"])
