"""How many threads SPU's kernels use: fitted to the cores that the parties of a machine share.

SPU 0.9.5 computes with two pools. Ring products run in Eigen under OpenMP (libgomp; SPU asks for
min(cores, 2) threads per product, so only `OMP_THREAD_LIMIT` caps them); elementwise kernels run in
yacl's intra-op pool of `YACL_NUM_THREADS` threads, the calling thread one of them. Left alone, every party
of a 2-core machine runs 2 threads per product and a pool as large as the machine, and they spin on each
other's cores.
libgomp reads its variables once, when libspu is loaded, so they are set in the environment before `spu` is
imported: `secformer_jax/__init__` calls `configure()` for what `SECFORMER_THREADS` says this process runs
(default: the parties of a simulation; `spu`: SPU's own counts), and a process started for one party gets
`child_environment`.

Rule (`Plan`): `parties_sharing` parties share `cores` CPUs (the ones this process may run on), each gets
`per_party = max(1, cores // parties_sharing)`: OMP_THREAD_LIMIT and OMP_NUM_THREADS = per_party (libgomp
counts the limit per thread that starts a parallel region, i.e. per party thread), and the process's yacl
pool YACL_NUM_THREADS = its parties x (per_party - 1) + 1 (each party's own thread computes beside the pool).
So at most `cores` threads compute at once, unless parties outnumber cores (then one each). A variable the
user set is kept and recorded as theirs. Owners and the dealer of a cluster get a party's share too; they
compute before and after the parties' online phase, not during it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import sys
import warnings

VARIABLES = ("OMP_THREAD_LIMIT", "OMP_NUM_THREADS", "YACL_NUM_THREADS")
SPEC_ENV = "SECFORMER_THREADS"  # "PARTIES_HERE/PARTIES_SHARING", e.g. "1/3" for one party of three on this machine
SIMULATION = "3/3"  # a simulation runs up to three parties (ABY3), all on this process's cores
SPU_DEFAULTS = "spu"  # SECFORMER_THREADS=spu: set nothing, in this process and its children (for comparisons)


def cores() -> int:
    """CPUs this process may run on (its affinity mask, which cgroup-pinned containers narrow)."""
    return len(os.sched_getaffinity(0))


@dataclasses.dataclass(frozen=True)
class Plan:
    parties_here: int  # SPU parties computing in this process
    parties_sharing: int  # SPU parties (in this process or beside it) that share these cores
    cores: int

    @classmethod
    def parse(cls, spec: str, cores_: int | None = None) -> "Plan":
        try:
            here, sharing = (int(x) for x in spec.split("/"))
        except ValueError:
            raise ValueError(f"{SPEC_ENV}={spec!r}: expected PARTIES_HERE/PARTIES_SHARING, e.g. 1/3") from None
        if not 1 <= here <= sharing:
            raise ValueError(f"{SPEC_ENV}={spec!r}: need 1 <= parties here <= parties sharing the cores")
        return cls(here, sharing, cores() if cores_ is None else cores_)

    @property
    def spec(self) -> str:
        return f"{self.parties_here}/{self.parties_sharing}"

    @property
    def per_party(self) -> int:
        return max(1, self.cores // self.parties_sharing)

    def environment(self) -> dict[str, str]:
        n = self.per_party
        return {"OMP_THREAD_LIMIT": str(n), "OMP_NUM_THREADS": str(n), "YACL_NUM_THREADS": str(self.parties_here * (n - 1) + 1)}


_applied: dict = {}  # what `configure` did in this process: the plan, the user's own values, the values set


def configure(plan: Plan) -> None:
    """Put `plan`'s thread counts into this process's environment, keeping any the user set. Must run
    before libspu (and with it libgomp) is loaded: a second call with another plan, or a call after the
    load, raises instead of leaving a setting that is recorded but not in effect."""
    if _applied:
        if _applied["plan"] != plan:
            raise RuntimeError(f"threads already set for {_applied['plan'].spec}; cannot switch to {plan.spec} in one process")
        return
    if _libgomp_loaded():
        raise RuntimeError("libgomp is already loaded: secformer_jax.threads.configure must run before spu is imported")
    user = {k: os.environ[k] for k in VARIABLES if k in os.environ}
    for key, value in plan.environment().items():
        os.environ.setdefault(key, value)
    _applied.update(plan=plan, user=user, values={k: os.environ[k] for k in VARIABLES})


def configure_from_environment() -> None:
    """`configure` for the plan `SECFORMER_THREADS` names (default: a simulation's parties); with a warning
    and nothing set where spu was imported first (`setting()["applied"]` is then False)."""
    spec = os.environ.get(SPEC_ENV, SIMULATION)
    if spec == SPU_DEFAULTS:
        return
    plan = Plan.parse(spec)
    if _libgomp_loaded():
        warnings.warn("spu was imported before secformer_jax: SPU keeps its own thread counts (secformer_jax.threads)", stacklevel=2)
        return
    configure(plan)


def child_environment(plan: Plan | None = None) -> dict[str, str]:
    """Environment for a child process: this one's, with the thread variables back to what the user set;
    the child computes its own from `plan` (`SECFORMER_THREADS`; None: the child's default)."""
    if os.environ.get(SPEC_ENV) == SPU_DEFAULTS:
        return dict(os.environ)
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES and k != SPEC_ENV}
    return env | _applied.get("user", {}) | ({SPEC_ENV: plan.spec} if plan else {})


def exec_under(plan: Plan) -> None:
    """Run this command again under `plan`, in this process (`os.execve`), unless it already runs under it.
    For `secformer node` started by hand: its plan follows from the cluster config, known only once parsed."""
    if (_applied and _applied["plan"] == plan) or os.environ.get(SPEC_ENV) == SPU_DEFAULTS:
        return
    if os.environ.get(SPEC_ENV) == plan.spec:
        raise RuntimeError(f"{SPEC_ENV}={plan.spec} is set but this process did not apply it")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "secformer_jax.cli", *sys.argv[1:]], child_environment(plan))


def setting() -> dict:
    """This process's thread setting, for results: the plan, each variable's value and who set it, and the
    OpenMP thread limit libgomp actually holds (None before SPU is loaded)."""
    plan = _applied.get("plan")
    values = _applied.get("values", {k: os.environ.get(k) for k in VARIABLES})
    user = _applied.get("user", {k: os.environ[k] for k in VARIABLES if k in os.environ})
    return {
        "plan": plan.spec if plan else os.environ.get(SPEC_ENV),
        "cores": plan.cores if plan else cores(),
        "parties_here": plan.parties_here if plan else None,
        "parties_sharing_cores": plan.parties_sharing if plan else None,
        "per_party": plan.per_party if plan else None,
        **values,
        "set_by_user": sorted(user),
        "applied": bool(_applied),
        "omp_thread_limit_in_effect": _omp_thread_limit(),
    }


def _libgomp_loaded() -> bool:
    with open("/proc/self/maps") as maps:
        return "libgomp" in maps.read()


def _omp_thread_limit() -> int | None:
    if not _libgomp_loaded():
        return None
    return int(ctypes.CDLL("libgomp.so.1").omp_get_thread_limit())
