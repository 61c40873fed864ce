"""One process per party over real loopback links: same results and bytes as the simulation, clear
failures (bad config, a party that never starts, a party that dies mid-run), no hangs."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from secformer_jax.approx import PRESETS, get_approx
from secformer_jax.checkpoint import load_checkpoint
from secformer_jax.cli import main
from secformer_jax.cluster import ConfigError, LaunchError, LocalCluster, launch_inference, load_config, parse_config
from secformer_jax.cluster.config import DATA_OWNER, DEALER, MODEL_OWNER
from secformer_jax.cluster.launch import Supervisor, logged_by_nodes, node_command
from secformer_jax.inference import PrivateClassifier, encode
from secformer_jax.run import RunSpec
from test_run import check_record
from secformer_jax.spu_runner import SPU_RUNTIME_OPTIONS, Simulation, compile_program

TEXT = "a gripping, beautifully made film"
QUERY = json.dumps({"text": TEXT, "text_pair": None}).encode()


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
    assert len(config.parties) == {"aby3": 3, "semi2k": 2, "cheetah": 2}[config.protocol.name]
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
        # one port on two names of this machine is one endpoint
        (lambda c: c["dealer"].update(address="localhost:" + c["parties"][0]["mpc_address"].split(":")[1]),
         "dealer.address localhost:61530 is used twice (also p0.mpc_address)"),
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
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(raw, "cfg.json")


def test_launch_refuses_bad_config_before_starting_anything(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["launch", "--config", str(bad), "--text", "x"]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["launch", "--config", str(tmp_path / "missing.json"), "--text", "x"]) == 2
    assert "not found" in capsys.readouterr().err
    # fixed-mask products need a dealer-based protocol: refused before any process starts
    cheetah = ["launch", "--config", "spu_configs/2pc_cheetah.json", "--text", "x", "--log-dir", str(tmp_path / "logs")]
    assert main(cheetah + ["--linear", "fixed-mask", "--approx", "puma"]) == 2
    assert "need a dealer-based protocol" in capsys.readouterr().err and not (tmp_path / "logs").exists()
    # so does a GeLU that runs on dealt randomness (the whole run spec is checked against the config's protocol)
    assert main(cheetah + ["--approx", "secformer"]) == 2
    assert "cheetah runs without a dealer" in capsys.readouterr().err and not (tmp_path / "logs").exists()
    # a --spec that is not one
    assert main(["launch", "--config", "spu_configs/3pc_aby3.json", "--text", "x", "--spec", '{"model": null}']) == 2
    assert "a run spec has the keys" in capsys.readouterr().err


# ABY3 with the secformer preset and fixed-mask products (the dealer process deals B for the setup, then A,
# C and the GeLU masks); SEMI2K with PUMA's and SPU's own products (nothing to deal: the dealer only joins
# and leaves)
@pytest.mark.parametrize("name, preset, linear_layers", [("3pc_aby3", "secformer", "fixed-mask"), ("2pc_semi2k", "puma", "spu"), ("2pc_cheetah", "puma", "spu")])
def test_launch_equals_simulation(tmp_path, tiny_checkpoint, name, preset, linear_layers):
    path = local_config(tmp_path, name)
    config = load_config(path)
    spec = RunSpec(tiny_checkpoint[0], 16, preset, protocol=config.protocol, field=config.field, linear=linear_layers)
    out = launch_inference(path, TEXT, spec, log_dir=tmp_path / "logs", timeout=300)

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
    check_record(out, "launch")  # the record type infer, bench and eval write (test_run.py)
    assert out["mode"] == "cluster" and out["plaintext_logits"] is None and out["compile_seconds"] is None
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
    if config.protocol.name == "cheetah":
        assert out["send_bytes"] == pytest.approx(simulated.cost.send_bytes, rel=1e-3)
    else:
        assert out["send_bytes"] == simulated.cost.send_bytes
        assert out["send_actions"] == simulated.cost.send_actions
    # SEMI2K's own triples: each party process counts them from its own profile, as the simulation does
    assert out["beaver_bytes"] == simulated.cost.beaver_bytes
    assert (simulated.cost.beaver_bytes > 0) if config.protocol.name == "semi2k" else simulated.cost.beaver_bytes is None
    assert len(out["party_send_bytes"]) == len(config.parties)
    # measured per process: each party's CPU time in the run, each process's peak memory
    assert len(out["compute_seconds"]) == len(config.parties) and all(c > 0 for c in out["compute_seconds"])
    assert set(out["peak_rss_bytes"]) == set(config.roles()) and all(m > 50e6 for m in out["peak_rss_bytes"].values())
    _check_threads(out["threads"], config.roles(), len(config.parties))
    # a separate dealer dealt the GeLU masks (and the fixed masks): the run is private under ABY3 and
    # Cheetah (no dealer at all), not under SEMI2K (party 0 deals SPU's own triples)
    dealt = PRESETS[preset].needs_correlation or linear_layers == "fixed-mask"
    assert out["dealer"] == ("separate process" if dealt else None) and out["private"] == (config.protocol.name != "semi2k")
    # every byte each role received, at the link layer, against its senders' ledgers and the protocol
    _audit(config, tmp_path / "logs", classifier, 16, dealt)
    values = [f"{v:.3f}" for v in out["logits"]]
    for role in [r for r in config.roles() if r != DATA_OWNER]:
        log = (tmp_path / "logs" / f"{role}.log").read_text()
        assert not any(v in log for v in values), role


HEADER_ONLY = 100_000  # a control message (job facts, a party's profile) has no blobs and a header below this


def _ledgers(config, logs):
    """Each role's ledger as its node process logged it: {role: {"received": [...], "sent": [...]}}, entries
    (peer, kind, bytes, blob bytes) as `cluster.wire.Link` entered them."""
    out = {}
    for role in config.roles():
        lines = (logs / f"{role}.log").read_text().splitlines()
        out[role] = {what: [tuple(m) for m in json.loads([l for l in lines if l.startswith(f"{role}: {what} ")][-1].split(f" {what} ", 1)[1])]
                     for what in ("received", "sent")}
    return out


def _audit(config, logs, classifier, seq_len, dealt):
    """What each role of one launch received, message by message and byte by byte: (1) every message is in
    its sender's ledger and its receiver's, in the same order and of the same size; (2) each computing
    party receives exactly its shares of the data owner's inputs and of the model owner's weights, the
    dealer's seeds and corrections (`dealing.deal` on the program's dealt shapes), the model owner's jobs
    (the compiled programs) and stop; (3) the owners and the dealer receive control messages only, the data
    owner besides exactly one share of the logits per party."""
    from secformer_jax import dealing
    from secformer_jax.cluster.roles import DEALER_RANK, DO_RANK, MO_RANK, input_owners, share_messages
    from secformer_jax.cluster.wire import frame

    ledgers = _ledgers(config, logs)
    roles = config.roles()
    for a in roles:
        for b in roles:
            sent = [m[1:] for m in ledgers[a]["sent"] if m[0] == b]
            assert sent == [m[1:] for m in ledgers[b]["received"] if m[0] == a], f"{a} -> {b}"

    def exact(header, blobs=()):
        return (header["kind"], len(frame(header, blobs)), sum(len(b) for b in blobs))

    masks = classifier.masks(config.protocol)
    programs = ([(classifier.builder_for(config.protocol).setup_program(masks), True)] if masks is not None else [])
    programs.append((classifier.program(seq_len, config.protocol)[0], False))
    expected = {r: {s: [] for s in roles} for r in roles}  # receiver -> sender -> [(kind, bytes or None, blob bytes)]
    for i, party in enumerate(config.parties):
        got = expected[party.id]
        for program, setup in programs:
            owners = input_owners(program, setup)
            mine = lambda rank: [np.zeros(shape, dtype) for (shape, dtype), o in zip(program.in_shapes, owners) if o == rank]
            got[MODEL_OWNER].append(("job", None, len(program.executable.SerializeToString())))
            for rank, role in ((MO_RANK, MODEL_OWNER), (DO_RANK, DATA_OWNER)):
                if mine(rank):
                    got[role].append(exact(*share_messages(config, mine(rank))[i]))
            if mine(DEALER_RANK):
                got[DEALER].append(exact(*dealing.deal(mine(DEALER_RANK), config.protocol)[i].to_wire()))
        got[MODEL_OWNER].append(exact({"kind": "stop"}))
        logits = np.zeros((1, classifier.checkpoint.config.num_labels), np.float32)
        expected[DATA_OWNER][party.id].append(("outputs", None, sum(len(b) for b in share_messages(config, [logits])[i][1])))
        if masks is not None:
            expected[MODEL_OWNER][party.id].append(("kept", None, 0))
    expected[DATA_OWNER][MODEL_OWNER] = [("model", None, 0)] + ([("setup", None, 0)] if masks is not None else [])
    expected[MODEL_OWNER][DATA_OWNER] = [exact({"kind": "request", "seq_len": seq_len}), exact({"kind": "done"})]
    expected[MODEL_OWNER][DEALER] = [exact({"kind": "bye"})]
    expected[DEALER][MODEL_OWNER] = [exact({"kind": "stop"})]
    assert dealt == bool(expected[config.parties[0].id][DEALER])  # a dealer that deals reaches every party
    for receiver in roles:
        for sender in roles:
            received = [m[1:] for m in ledgers[receiver]["received"] if m[0] == sender]
            want = expected[receiver][sender]
            assert [(k, b) for k, _, b in received] == [(k, b) for k, _, b in want], f"{receiver} from {sender}"
            for (kind, size, blob), (_, want_size, _) in zip(received, want):
                assert size == want_size if want_size is not None else size - blob < HEADER_ONLY, f"{receiver} from {sender}: {kind}"
    # the parties receive the same programs (their job messages are one message to all)
    jobs = {tuple(m for m in ledgers[p.id]["received"] if m[1] == "job") for p in config.parties}
    assert len({tuple(m[1:] for m in j) for j in jobs}) == 1


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


def _check_threads(logged, roles, parties_on_machine):
    """Each process ran under one party's share of this machine's cores, and libgomp holds that limit."""
    assert set(logged) == set(roles)
    for role, t in logged.items():
        assert (t["parties_here"], t["parties_sharing_cores"], t["applied"]) == (1, parties_on_machine, True), role
        assert t["omp_thread_limit_in_effect"] == int(t["OMP_THREAD_LIMIT"]) == t["per_party"] == max(1, t["cores"] // parties_on_machine), role
        assert t["per_party"] * parties_on_machine <= max(t["cores"], parties_on_machine)


def test_party_that_never_starts_ends_everyone(tmp_path):
    path = local_config(tmp_path, "3pc_aby3", connect_timeout_s=3)
    start = time.monotonic()
    with Supervisor(tmp_path / "logs") as sup:
        for role in ("p0", "p1", MODEL_OWNER):  # p2 never starts
            sup.start(role, node_command(path, role))
        sup.start(DATA_OWNER, node_command(path, DATA_OWNER, "--query", "-"), stdin=QUERY)
        for proc in sup.procs.values():
            proc.wait(timeout=90)
    assert time.monotonic() - start < 90
    for role, proc in sup.procs.items():
        assert proc.returncode == 2, role
        log = (tmp_path / "logs" / f"{role}.log").read_text()
        assert "could not connect the I/O link" in log and "p2 at 127.0.0.1" in log
    # started by hand (no plan from a launch): each node reran itself under its machine's plan, in the same process
    _check_threads(logged_by_nodes(tmp_path / "logs", list(sup.procs), "threads"), list(sup.procs), 3)


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
            path, TEXT, RunSpec(tiny_checkpoint[0], 16), log_dir=tmp_path / "logs", timeout=120, on_start=kill_p1_once_connected,
        )
    assert time.monotonic() - start < 60  # well inside the 300 s receive timeout: the supervisor ends it


def test_data_owner_input_error_ends_the_run(tmp_path, tiny_checkpoint):
    path = local_config(tmp_path, "3pc_aby3", connect_timeout_s=60)
    with pytest.raises(LaunchError, match=r"data_owner exited with status 2(.|\n)*text is empty"):
        launch_inference(path, "   ", RunSpec(tiny_checkpoint[0], 16), log_dir=tmp_path / "logs", timeout=120)


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
        sup.start(DATA_OWNER, node_command(path, DATA_OWNER, "--query", "-", "--max-length", "16", "--model", str(tiny_checkpoint[0])), stdin=QUERY)
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
    assert simulated["private"] is clustered["private"] is False  # SEMI2K, and --dealer-seed masks


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


def _processes_naming(needle: str) -> list[str]:
    """Command lines of this machine's processes that contain `needle`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline and int(pid) != os.getpid():
            found.append(cmdline)
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_signalled_launch_leaves_no_process_behind(tmp_path, tiny_checkpoint, signum):
    """`secformer launch` stopped mid-run: SIGTERM and SIGINT end every child and exit 128 + signal with one
    line; SIGKILL (no cleanup possible) takes the children with it (their parent-death signal). The text
    reaches the data owner on stdin: no process's command line holds it."""
    path = local_config(tmp_path, "3pc_aby3", recv_timeout_s=300)
    query = tmp_path / "query.json"
    query.write_text(QUERY.decode())
    logs = tmp_path / "logs"
    cmd = [sys.executable, "-m", "secformer_jax.cli", "launch", "--config", str(path), "--query", str(query), "--model", str(tiny_checkpoint[0]),
           "--max-length", "16", "--log-dir", str(logs)]
    launch = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while "connected" not in ((logs / "p2.log").read_text() if (logs / "p2.log").exists() else ""):
        assert launch.poll() is None and time.monotonic() < deadline, launch.communicate()
        time.sleep(0.1)
    assert len(_processes_naming(str(path))) == 1 + 6  # the launch and its six nodes
    assert not _processes_naming(TEXT)
    launch.send_signal(signum)
    _, err = launch.communicate(timeout=60)
    assert launch.returncode == (-signum if signum == signal.SIGKILL else 128 + signum)
    if signum != signal.SIGKILL:
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1] == f"secformer: stopped by {signal.Signals(signum).name}: every process of the run was ended"
    deadline = time.monotonic() + 10  # the parent-death signal is delivered at once; a node's exit takes a moment
    while _processes_naming(str(path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_naming(str(path))
    # ended, not finished: no result, and no node reached its end (where it logs its peak memory); a node
    # left running without its supervisor would finish the inference within that wait
    assert not (logs / "data_owner.json").exists()
    assert not [log.name for log in logs.glob("*.log") if ": peak_rss_bytes " in log.read_text(errors="replace")]


def test_a_busy_or_foreign_address_is_named_before_anything_starts(tmp_path, capsys):
    path = local_config(tmp_path, "3pc_aby3")
    config = load_config(path)
    busy = socket.socket()
    busy.bind(tuple(config.model_owner.split(":")[0:1]) + (int(config.model_owner.split(":")[1]),))
    busy.listen()
    try:
        start = time.monotonic()
        assert main(["launch", "--config", str(path), "--text", "x", "--log-dir", str(tmp_path / "logs")]) == 2
        assert f"model_owner's I/O address {config.model_owner} is in use by another process" in capsys.readouterr().err
        assert not (tmp_path / "logs").exists()  # no process was started
        assert time.monotonic() - start < 5
    finally:
        busy.close()
    raw = json.loads(path.read_text())
    raw["parties"][1]["mpc_address"] = "192.0.2.1:61530"  # TEST-NET-1: never this machine's
    path.write_text(json.dumps(raw))
    assert main(["launch", "--config", str(path), "--text", "x"]) == 2
    assert "p1's MPC address 192.0.2.1:61530 is not an address of this machine" in capsys.readouterr().err


@pytest.mark.parametrize(
    "query, message",
    [
        ("{not json", "is not valid JSON"),
        ('["a text"]', "expected"),
        ('{"text": 3}', "expected"),
        ('{"text": "x", "label": 1}', "expected"),
        ('{"text": "x", "text_pair": 2}', "expected"),
    ],
)
def test_a_malformed_query_is_refused(tmp_path, query, message):
    from secformer_jax.cluster.commands import read_query

    (tmp_path / "q.json").write_text(query)
    with pytest.raises(ValueError, match=message):
        read_query(str(tmp_path / "q.json"))
    with pytest.raises(FileNotFoundError, match="not found"):
        read_query(str(tmp_path / "none.json"))
    (tmp_path / "q.json").write_text('{"text": "x", "text_pair": "y"}')
    assert read_query(str(tmp_path / "q.json")) == ("x", "y")
