"""`secformer launch`: every process of a cluster config started on this machine, supervised.

Each process is `secformer node --config FILE --party NAME` with its output in `LOG_DIR/NAME.log`; the data
owner's text reaches it on its stdin (never on a command line, which every local user can read). Before
anything starts, every address of the config is checked: a busy port or an address that is not this
machine's is named with the role that owns it. The supervisor polls the processes: the first to exit with
an error (or be killed) ends the run, the others are terminated, and the error names that process and
quotes the end of its log; a run past `timeout` seconds is ended the same way. SIGTERM or SIGINT to the
supervisor ends every child and raises `Interrupted`; a supervisor that dies without cleaning up takes its
children with it (Linux's parent-death signal). So no process of a run outlives it or waits on a peer
that is gone. `LocalCluster` does the same for the benchmark harness, with this process as both owners and
the dealer.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .config import DATA_OWNER, DEALER, MODEL_OWNER, load_config
from ..run import RunSpec
from .roles import Driver
from .wire import PeerError, check_listenable
from ..threads import Plan, child_environment, cores

POLL_S = 0.1
TERMINATE_GRACE_S = 5.0


class LaunchError(RuntimeError):
    """A process of the cluster failed or the run timed out."""


class Interrupted(LaunchError):
    """The supervisor was sent SIGTERM or SIGINT; every child has been ended. `signum`: which."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}: every process of the run was ended")


@contextlib.contextmanager
def _signals_end_run():
    """SIGTERM and SIGINT raise `Interrupted` in the main thread (so `with Supervisor` ends the children);
    further ones are ignored while the children are being ended. Elsewhere than the main thread: nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


SUPERVISOR_ENV = "SECFORMER_SUPERVISOR_PID"


def die_with_supervisor() -> None:
    """In a process a `Supervisor` started (`secformer node` calls this first): SIGTERM when the supervisor
    dies (Linux prctl PR_SET_PDEATHSIG); if it is already gone, exit now."""
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor is None or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != int(supervisor):  # it died before the line above
        sys.exit(f"the supervisor (pid {supervisor}) is gone")


def check_addresses(config) -> None:
    """Every endpoint of `config` must be this machine's and free (`wire.check_listenable`), checked before
    any process starts: the error names the role that owns the address."""
    for what, address in config.endpoints():
        try:
            check_listenable(what, address)
        except PeerError as e:
            raise LaunchError(f"{config.source}: {e}") from e


def node_command(config_path, party: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "secformer_jax.cli", "node", "--config", str(config_path), "--party", party, *extra]


_SPU_LOG_LINE = re.compile(r"^\[?\d{4}-\d\d-\d\d \d")  # SPU/brpc's own timestamped log lines


def _tail(path: Path, lines: int = 8) -> str:
    """The end of a process's log: our messages and tracebacks, without SPU's timestamped log lines."""
    text = path.read_text(errors="replace") if path.exists() else ""
    keep = [l for l in text.splitlines() if l.strip() and not _SPU_LOG_LINE.match(l)]
    return "\n".join("    " + l for l in keep[-lines:])


class Supervisor:
    """Child processes with their logs; `wait` returns when all named ones exited cleanly and raises
    LaunchError on the first failure or on timeout. Leaving the `with` block terminates what still runs.
    `threads`: the thread plan every child runs under (`party_threads`)."""

    def __init__(self, log_dir: Path, threads: Plan | None = None):
        self.log_dir = Path(log_dir)
        self.threads = threads  # each child's thread plan (`secformer_jax.threads`); None: a node finds its own
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self._failed: dict[str, float] = {}  # name -> when its failure was first seen

    def start(self, name: str, cmd: list[str], stdin: bytes | None = None) -> None:
        """Start `cmd` as `name` (stdout and stderr to its log), `stdin` written to its standard input. A
        `secformer node` child gets SIGTERM if the thread that started it ends (`die_with_supervisor`), so
        start children from the main thread."""
        log = open(self.log_dir / f"{name}.log", "w")
        env = child_environment(self.threads) | {"PYTHONUNBUFFERED": "1", SUPERVISOR_ENV: str(os.getpid())}
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE, env=env)
        self.procs[name] = proc
        log.close()
        if stdin is not None:
            proc.stdin.write(stdin)
            proc.stdin.close()

    def failure(self) -> str | None:
        """A description of the first process seen to fail (others often fail after it, because of it)."""
        for name, proc in self.procs.items():
            if proc.poll() and name not in self._failed:
                self._failed[name] = time.monotonic()
        if not self._failed:
            return None
        name = min(self._failed, key=self._failed.get)
        rc = self.procs[name].returncode
        how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
        log = self.log_dir / f"{name}.log"
        return f"{name} {how}; end of {log}:\n{_tail(log)}"

    def wait(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(self.procs[n].poll() is None for n in names):
            failed = self.failure()
            if failed:
                raise LaunchError(failed)
            if time.monotonic() > deadline:
                running = [n for n in names if self.procs[n].poll() is None]
                raise LaunchError(f"timed out after {timeout:.0f} s waiting for {', '.join(running)}; logs in {self.log_dir}")
            time.sleep(POLL_S)
        failed = self.failure()
        if failed:
            raise LaunchError(failed)

    def terminate(self) -> None:
        live = [p for p in self.procs.values() if p.poll() is None]
        for p in live:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + TERMINATE_GRACE_S
        for p in live:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.terminate()


def launch_inference(config_path, text: str, spec: RunSpec, *, text_pair=None, timeout: float = 900.0, log_dir=None, on_start=None) -> dict:
    """Start all parties, the model owner, the dealer and the data owner of `config_path` on this machine, the
    owners and the dealer with the same `spec` (its JSON as --spec: what to compile, share and deal cannot
    differ between them); return the data owner's record (`node.classify_text`) as "kind" "launch", with
    "log_dir" and each process's "peak_rss_bytes" and "threads". `on_start(supervisor)` is called once all started."""
    config = load_config(config_path)  # refuse a bad config or address before starting anything
    spec = RunSpec.from_json(spec.to_json())  # the spec every process will read, checked here first
    if (spec.protocol, spec.field) != (config.protocol, config.field):
        raise ValueError(f"the run spec says {spec.protocol} over {spec.field}, the config {config_path} {config.protocol} over {config.field}")
    check_addresses(config)
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="secformer-launch-"))
    result_path = log_dir / "data_owner.json"
    spec_args = ["--spec", json.dumps(spec.to_json())]
    with _signals_end_run(), Supervisor(log_dir, Plan(1, len(config.parties), cores())) as sup:  # all on this machine
        for party in config.parties:
            sup.start(party.id, node_command(config_path, party.id))
        sup.start(MODEL_OWNER, node_command(config_path, MODEL_OWNER, *spec_args))
        sup.start(DEALER, node_command(config_path, DEALER, *spec_args))
        query = json.dumps({"text": text, "text_pair": text_pair}).encode()
        sup.start(DATA_OWNER, node_command(config_path, DATA_OWNER, "--query", "-", *spec_args, "--json", str(result_path)), stdin=query)
        if on_start:
            on_start(sup)
        sup.wait(list(sup.procs), timeout)
    result = json.loads(result_path.read_text())
    logged = lambda key: logged_by_nodes(log_dir, list(sup.procs), key)
    return result | {"kind": "launch", "log_dir": str(log_dir), "peak_rss_bytes": logged("peak_rss_bytes"), "threads": logged("threads")}


def logged_by_nodes(log_dir: Path, roles: list[str], key: str) -> dict:
    """What each process logged last as `ROLE: KEY JSON` (`secformer node`: "threads" when it starts,
    "peak_rss_bytes" when it ends), by role; roles that did not log it are left out."""
    found = {}
    for role in roles:
        lines = re.findall(rf"^{re.escape(role)}: {key} (.+)$", (log_dir / f"{role}.log").read_text(errors="replace"), re.M)
        if lines:
            found[role] = json.loads(lines[-1])
    return found


class LocalCluster:
    """The computing parties of `config_path` as processes on this machine and this process as both owners:
    `run(program, *args)` -> (outputs, Cost), like `Simulation.run`. Use as a context manager."""

    def __init__(self, config_path, log_dir=None):
        self.config = load_config(config_path)
        self.protocol = self.config.protocol
        self.supervisor = Supervisor(
            Path(log_dir or tempfile.mkdtemp(prefix="secformer-cluster-")), Plan(1, len(self.config.parties), cores())
        )
        try:
            for party in self.config.parties:
                self.supervisor.start(party.id, node_command(config_path, party.id))
            self.driver = Driver(self.config)
        except BaseException as e:
            failed = self.supervisor.failure()
            self.supervisor.terminate()
            if failed:
                raise LaunchError(failed) from e
            raise

    def run(self, program, *args, **kwargs):
        failed = self.supervisor.failure()
        if failed:
            raise LaunchError(failed)
        return self.driver.run(program, *args, **kwargs)

    def threads(self) -> dict:
        """Each party process's thread setting, as it logged it on start (`threads.setting`)."""
        return logged_by_nodes(self.supervisor.log_dir, [p.id for p in self.config.parties], "threads")

    def close(self) -> None:
        try:
            self.driver.close()
            self.supervisor.wait([p.id for p in self.config.parties], self.config.recv_timeout_s)
        finally:
            self.supervisor.terminate()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
