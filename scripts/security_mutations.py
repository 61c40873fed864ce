"""Mutation check for issue 28: apply each single-edit privacy break to a copy of the project and run the
tests that must catch it (the first entry, "unmutated", runs every one of those tests on the project as it is and must pass); writes results/security/mutations.json. Usage: .venv/bin/python scripts/security_mutations.py [NAME ...]"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

SEC = "tests/test_security.py"
L = "tests/test_cluster.py::test_launch_equals_simulation[3pc_aby3-secformer-fixed-mask]"
M = [
 dict(name="unmutated", tests=[SEC, L, "tests/test_cluster.py::test_a_signalled_launch_leaves_no_process_behind",
   "tests/test_cluster.py::test_a_busy_or_foreign_address_is_named_before_anything_starts",
   "tests/test_cluster.py::test_malformed_config_names_the_field", "tests/test_checkpoint.py",
   "tests/test_cli.py::test_nan_weights_are_refused_not_reported_as_agreement", "tests/test_program.py"], edits=[]),
 dict(name="gelu-stream-built-directly", tests=[SEC], edits=[dict(file="secformer_jax/program.py",
   old='dealer.stream("gelu/" + "/".join(path))', new='__import__("secformer_jax.randomness", fromlist=["Stream"]).Stream(dealer._Dealer__key, "gelu")')]),
 dict(name="gelu-masks-one-for-all-layers", tests=[SEC], edits=[dict(file="secformer_jax/program.py",
   old='dealer.stream("gelu/" + "/".join(path))', new='Dealer.from_seed(0).stream("gelu")')]),
 dict(name="stages-share-one-key", tests=[SEC], edits=[dict(file="secformer_jax/private_run.py", old='dealer.scope(stage.name)', new='Dealer.from_seed(7)')]),
 dict(name="fixed-mask-A-one-for-all-sites", tests=[SEC], edits=[dict(file="secformer_jax/linear.py",
   old='dealer.stream("A/" + "/".join(site.path))', new='Dealer.from_seed(1).stream("A")')]),
 dict(name="fixed-mask-B-on-32-bits", tests=[SEC], edits=[dict(file="secformer_jax/linear.py",
   old='dealer.stream("B/" + "/".join(path)).uint64(shape)', new='(dealer.stream("B/" + "/".join(path)).uint64(shape) >> np.uint64(32))')]),
 dict(name="fixed-mask-B-zero", tests=[SEC], edits=[dict(file="secformer_jax/linear.py",
   old='dealer.stream("B/" + "/".join(path)).uint64(shape)', new='np.zeros(shape, np.uint64)')]),
 dict(name="fixed-mask-A-on-32-bits", tests=[SEC], edits=[dict(file="secformer_jax/linear.py",
   old='dealer.stream("A/" + "/".join(site.path)).uint64(site.shape)', new='(dealer.stream("A/" + "/".join(site.path)).uint64(site.shape) >> np.uint64(32))')]),
 dict(name="gelu-mask-high-word-zero", tests=[SEC], edits=[dict(file="secformer_jax/approx/sine.py",
   old='SineCorrelation(t_int, words(), words(),', new='SineCorrelation(t_int, np.zeros(shape, np.int32), words(),')]),
 dict(name="gelu-masks-reused-across-runs", tests=[SEC], edits=[dict(file="secformer_jax/inference.py",
   old='self.data(encoded), Dealer(), record_openings)', new='self.data(encoded), Dealer.from_seed(3), record_openings)')]),
 dict(name="data-owner-appends-one-hots", tests=[L], edits=[dict(file="secformer_jax/cluster/roles.py",
   old='        send_inputs(io, config, make_inputs(facts))\n',
   new='        values = make_inputs(facts)\n        msgs = share_messages(config, values)\n        msgs[0][1].append(values[-1].tobytes())\n        for (h, b), r in zip(msgs, _party_ranks(config)):\n            io.send(r, h, b)\n')]),
 dict(name="dealer-sends-party0-seed-to-party1", tests=[L], edits=[dict(file="secformer_jax/cluster/roles.py",
   old='    for bundle, rank in zip(bundles, _party_ranks(config)):\n        io.send(rank, *bundle.to_wire())',
   new='    for bundle, rank in zip(bundles, _party_ranks(config)):\n        h, b = bundle.to_wire()\n        io.send(rank, h, b + ([bundles[0].seeds[min(bundles[0].seeds)]] if rank == 4 and bundles[0].seeds else []))')]),
 dict(name="dealer-reads-weights-past-the-ledger", tests=[L], edits=[dict(file="secformer_jax/cluster/roles.py",
   old='        send_inputs(io, config, weights)\n        log(f"{MODEL_OWNER}: weights shared',
   new='        send_inputs(io, config, weights)\n        io.send(DEALER_RANK, {"kind": "shares"}, [w.tobytes() for w in weights[:2]])\n        log(f"{MODEL_OWNER}: weights shared'),
   dict(file="secformer_jax/cluster/roles.py", old='        header, _ = io.recv(MO_RANK)\n        if header["kind"] != "stop":',
        new='        io._Link__ctx.recv(MO_RANK)\n        header, _ = io.recv(MO_RANK)\n        if header["kind"] != "stop":')]),
 dict(name="party-copies-outputs-to-model-owner", tests=[L], edits=[dict(file="secformer_jax/cluster/roles.py",
   old='            jobs += 1\n',
   new='            if header["receiver"] != MO_RANK:\n                io.send(MO_RANK, {"kind": "kept", "outputs": entries}, out_blobs)\n            jobs += 1\n')]),
 dict(name="ledger-skips-received", tests=[L], edits=[dict(file="secformer_jax/cluster/wire.py",
   old='        RECEIVED[-1] = (peer, str(header.get("kind")), len(data), sum(sizes))', new='        RECEIVED.pop()')]),
 dict(name="launch-ignores-signals", tests=["tests/test_cluster.py::test_a_signalled_launch_leaves_no_process_behind"], edits=[dict(file="secformer_jax/cluster/launch.py",
   old='with _signals_end_run(), Supervisor(', new='with Supervisor(')]),
 dict(name="nodes-outlive-a-killed-launch", tests=["tests/test_cluster.py::test_a_signalled_launch_leaves_no_process_behind"], edits=[dict(file="secformer_jax/cli.py",
   old='    die_with_supervisor()  # started', new='    pass  # started')]),
 dict(name="text-on-the-data-owners-argv", tests=["tests/test_cluster.py::test_a_signalled_launch_leaves_no_process_behind"], edits=[dict(file="secformer_jax/cluster/launch.py",
   old='DATA_OWNER, "--query", "-", *spec_args', new='DATA_OWNER, "--query", "-", "--log-dir=" + text, *spec_args'),
   dict(file="secformer_jax/cluster/commands.py", old='    node.add_argument("--json"', new='    node.add_argument("--log-dir")\n    node.add_argument("--json"')]),
 dict(name="no-address-check", tests=["tests/test_cluster.py::test_a_busy_or_foreign_address_is_named_before_anything_starts"], edits=[dict(file="secformer_jax/cluster/launch.py",
   old='    check_addresses(config)\n    log_dir', new='    log_dir')]),
 dict(name="localhost-beside-127", tests=["tests/test_cluster.py::test_malformed_config_names_the_field"], edits=[dict(file="secformer_jax/cluster/config.py",
   old='return a == b or (local(a) and local(b))', new='return a == b')]),
 dict(name="nan-weights-loaded", tests=["tests/test_checkpoint.py", "tests/test_cli.py::test_nan_weights_are_refused_not_reported_as_agreement"], edits=[dict(file="secformer_jax/checkpoint.py",
   old='        if bad:\n            raise CheckpointError', new='        if False:\n            raise CheckpointError')]),
 dict(name="nan-logits-reported", tests=["tests/test_checkpoint.py::test_non_finite_logits_are_refused_never_compared"], edits=[dict(file="secformer_jax/inference.py",
   old='    if not np.isfinite(logits).all():', new='    if False:')]),
 dict(name="dealer-seed-called-private", tests=["tests/test_program.py"], edits=[dict(file="secformer_jax/program.py",
   old='    elif dealt and reproducible:', new='    elif False:')]),
 dict(name="dealer-deals-its-own-key-twice", tests=[SEC], edits=[dict(file="secformer_jax/randomness.py",
   old='os.urandom(', new='(lambda n: b"\\x07" * n)(')]),
]


WORK = tempfile.mkdtemp(prefix="secformer-mutations-")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = f"{ROOT}/.venv/bin/python"
OUT = os.path.join(ROOT, "results", "security", "mutations.json")
os.makedirs(os.path.dirname(OUT), exist_ok=True)


def _portable(line: str) -> str:
    """A failure line without this machine's paths (the checkout, the copies, pytest's temporary folders)."""
    line = re.sub(r"/tmp/pytest-of-[^/]+/pytest-\d+/", "<pytest-tmp>/", line)
    return line.replace(ROOT + "/", "").replace(WORK + "/", "<copy>/")


only = sys.argv[1:]
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
results = {"commit": commit, "command": "python scripts/security_mutations.py", "mutations": {}}
if os.path.exists(OUT) and json.load(open(OUT)).get("commit") == commit:
    results = json.load(open(OUT))
BASE = os.path.join(WORK, "base")  # the committed tree (HEAD), so that edits in the working tree do not leak in
os.makedirs(BASE)
subprocess.run(f"git archive HEAD | tar -x -C {BASE}", shell=True, cwd=ROOT, check=True)
os.symlink(f"{ROOT}/.venv", f"{BASE}/.venv")
for m in M:
    name = m["name"]
    if (only and name not in only) or (not only and name in results["mutations"]):  # named: rerun; else resume
        continue
    dst = os.path.join(WORK, name)
    shutil.copytree(BASE, dst, symlinks=True)
    for edit in m["edits"]:
        p = f"{dst}/{edit['file']}"
        s = open(p).read()
        assert s.count(edit["old"]) >= 1, (name, edit["old"])
        s = s.replace(edit["old"], edit["new"])
        open(p, "w").write(s)
    start = time.time()
    r = subprocess.run([PY, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *m["tests"]], cwd=dst, capture_output=True, text=True,
                       env=os.environ | {"COLUMNS": "400"})  # wide: the summary keeps each failure's message
    tail = r.stdout.strip().splitlines()
    failed = [_portable(l) for l in tail if l.startswith("FAILED") or l.startswith("ERROR")]
    results["mutations"][name] = {"rc": r.returncode, "caught_by": failed, "summary": tail[-1] if tail else "", "seconds": round(time.time() - start)}
    print(name, results["mutations"][name], flush=True)
    json.dump(results, open(OUT, "w"), indent=1)
    shutil.rmtree(dst, ignore_errors=True)
shutil.rmtree(WORK, ignore_errors=True)
