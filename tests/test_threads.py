"""SPU's thread counts: the rule, and that a process really runs under it (libgomp's own limit, read back)."""

import json
import os
import subprocess
import sys

import pytest

from secformer_jax import threads
from secformer_jax.threads import VARIABLES, Plan


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 6, 16, 64])
@pytest.mark.parametrize("here, sharing", [(1, 1), (1, 2), (2, 2), (1, 3), (3, 3)])
def test_parties_never_compute_on_more_threads_than_cores(cores, here, sharing):
    plan = Plan(here, sharing, cores)
    env = plan.environment()
    n = plan.per_party
    assert int(env["OMP_THREAD_LIMIT"]) == int(env["OMP_NUM_THREADS"]) == n >= 1
    # the process's computing threads: each party's own, plus the yacl pool's (YACL_NUM_THREADS - 1)
    assert here + int(env["YACL_NUM_THREADS"]) - 1 == here * n
    assert n * sharing <= max(cores, sharing)  # all parties of the machine together: at most one thread per core
    assert n * sharing > cores - sharing  # and no core left idle for want of a thread


def test_the_rule_on_this_projects_machines():
    assert Plan.parse("3/3", 2).environment() == {"OMP_THREAD_LIMIT": "1", "OMP_NUM_THREADS": "1", "YACL_NUM_THREADS": "1"}
    assert Plan.parse("1/2", 16).environment() == {"OMP_THREAD_LIMIT": "8", "OMP_NUM_THREADS": "8", "YACL_NUM_THREADS": "8"}
    assert Plan.parse("3/3", 16).environment() == {"OMP_THREAD_LIMIT": "5", "OMP_NUM_THREADS": "5", "YACL_NUM_THREADS": "13"}


@pytest.mark.parametrize("spec", ["", "3", "a/b", "0/3", "3/2", "1/3/3"])
def test_a_bad_plan_is_named(spec):
    with pytest.raises(ValueError, match="SECFORMER_THREADS"):
        Plan.parse(spec)


def _setting_in_a_fresh_process(env: dict, first: str = "import secformer_jax.spu_runner") -> tuple[dict, str]:
    code = f"import json; {first}; from secformer_jax import threads; print(json.dumps(threads.setting()))"
    clean = {k: v for k, v in os.environ.items() if k not in VARIABLES and k != threads.SPEC_ENV}
    r = subprocess.run([sys.executable, "-c", code], env=clean | env, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr


def test_a_process_runs_under_its_plan_and_libgomp_holds_it():
    cores = threads.cores()
    simulation, _ = _setting_in_a_fresh_process({})
    assert (simulation["parties_here"], simulation["parties_sharing_cores"], simulation["applied"]) == (3, 3, True)
    assert simulation["omp_thread_limit_in_effect"] == int(simulation["OMP_THREAD_LIMIT"]) == max(1, cores // 3)
    alone, _ = _setting_in_a_fresh_process({threads.SPEC_ENV: "1/1"})
    assert alone["omp_thread_limit_in_effect"] == int(alone["YACL_NUM_THREADS"]) == cores
    assert alone["set_by_user"] == []


def test_what_the_user_set_is_kept_and_recorded_as_theirs():
    t, _ = _setting_in_a_fresh_process({"OMP_THREAD_LIMIT": "7"})
    assert t["OMP_THREAD_LIMIT"] == "7" and t["omp_thread_limit_in_effect"] == 7 and t["set_by_user"] == ["OMP_THREAD_LIMIT"]
    assert t["YACL_NUM_THREADS"] == Plan(3, 3, t["cores"]).environment()["YACL_NUM_THREADS"]


def test_spu_imported_first_is_warned_and_recorded_as_not_applied():
    t, err = _setting_in_a_fresh_process({}, first="import spu.libspu, secformer_jax")
    assert t["applied"] is False and t["omp_thread_limit_in_effect"] > 1000  # libgomp's "no limit"
    assert "spu was imported before secformer_jax" in err


def test_spu_defaults_on_request_set_nothing():
    t, _ = _setting_in_a_fresh_process({threads.SPEC_ENV: "spu"})
    assert (t["plan"], t["applied"], t["OMP_THREAD_LIMIT"], t["YACL_NUM_THREADS"]) == ("spu", False, None, None)


def test_a_setting_that_would_not_take_effect_is_refused():
    with pytest.raises(RuntimeError, match="cannot switch"):
        threads.configure(Plan(1, 1, threads.cores()))  # this process's plan is the simulation's, set at import


def test_a_child_gets_the_users_variables_back_and_its_own_plan(monkeypatch):
    monkeypatch.setitem(threads._applied, "user", {"YACL_NUM_THREADS": "3"})
    monkeypatch.setenv("OMP_THREAD_LIMIT", "1")  # as `configure` set it here
    env = threads.child_environment(Plan(1, 3, 2))
    assert "OMP_THREAD_LIMIT" not in env and env["YACL_NUM_THREADS"] == "3" and env[threads.SPEC_ENV] == "1/3"
    assert threads.SPEC_ENV not in threads.child_environment(None)
