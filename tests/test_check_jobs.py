"""``check --jobs N``: single-device CPU configurations run in spawned worker processes, with
the same rows, in the planned order, as one after another here; a worker that dies fails its
rows instead of losing them or hanging the check."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

import pytest
import workers
from helpers import run_python, xptrain

from xptrain import backends, check, check_jobs
from xptrain.backends import threads
from xptrain.commands import check as check_command


def _rows(report):
    """The rows as records, less their wall time (which no two runs share)."""
    return [{k: v for k, v in asdict(row).items() if k != "seconds"} for row in report.rows]


@pytest.mark.needs("array_api_strict")  # two backends: two groups, so workers run them
def test_rows_from_workers_are_the_rows_run_here():
    configs, _ = check.plan(["seed"], ["numpy", "array_api_strict"])
    here = check.run(configs, progress_bar=False, jobs=1)
    spread = check.run(configs, progress_bar=False, jobs=2)
    assert _rows(spread) == _rows(here) and here.passed
    assert [row.config for row in spread.rows] == configs  # the planned order
    [note] = [n for n in spread.notes if "worker processes" in n]
    assert note.startswith(f"{len(configs)} configurations ran in 2 worker processes")
    assert not any("worker processes" in n for n in here.notes)


def test_only_single_device_cpu_built_in_problems_spread():
    configs, _ = check.plan(["seed"], ["numpy"])
    config = configs[0]
    assert check_jobs._may_spread(config)
    assert not check_jobs._may_spread(config.__class__(**{**asdict(config), "device": "cuda:0"}))
    assert not check_jobs._may_spread(config.__class__(**{**asdict(config), "data_parallel": 2}))


def test_a_worker_that_dies_fails_its_rows():
    configs, _ = check.plan(["seed"], ["numpy"])
    groups = [list(range(len(configs)))]
    done = list(check_jobs._in_workers(configs, groups, 2, False, work=workers.dies))
    assert sorted(i for i, _, _ in done) == list(range(len(configs)))
    assert all(not row.passed and row.error for _, row, _ in done)


def test_the_cli_takes_jobs(tmp_path):
    run = xptrain("check", "--problems", "seed", "--backends", "numpy", "--jobs", "2", "--quiet")
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1].startswith("PASS: all 2 configurations")
    bad = xptrain("check", "--jobs", "0")
    assert bad.returncode == 2 and "--jobs: must be a whole number ≥ 1" in bad.stderr


def test_workers_keep_compiled_code_where_this_process_does(tmp_path, monkeypatch):
    configs, _ = check.plan(["seed"], ["numpy"])
    monkeypatch.setattr(backends, "_KEEP", [tmp_path])  # as keep_compiled() sets it
    work = workers.reports_kept_compiled
    done = list(check_jobs._in_workers(configs, [[0], [1]], 2, False, work=work))
    assert [kept for _, kept, _ in done] == [(tmp_path,), (tmp_path,)]


def test_workers_share_the_cores(monkeypatch):
    configs, _ = check.plan(["seed"], ["numpy"])
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # no smaller limit of the user's
    monkeypatch.setattr(threads, "cores", lambda: 4)  # two workers: two threads each
    work = workers.reports_threads
    done = list(check_jobs._in_workers(configs, [[0], [1]], 2, False, work=work))
    for _, seen, _ in done:
        assert seen["share"] == 2 and seen["omp"] == "2" and seen["numpy_workers"] <= 2


@pytest.mark.backends("torch")
def test_a_share_of_one_thread_reaches_every_library():
    code = """
import os, json, threadpoolctl
os.environ["MKL_NUM_THREADS"] = "3"
os.environ["OPENBLAS_NUM_THREADS"] = "1"  # the user's smaller limit is kept
from xptrain.backends import threads
threads.share(2)
two = {k: os.environ[k] for k in ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
import torch
threads.share(1)  # torch already started: resized
pools = {p["user_api"]: p["num_threads"] for p in threadpoolctl.threadpool_info()}
print(json.dumps({"two": two, "env": {k: os.environ[k] for k in threads._POOL_VARIABLES},
                  "torch": torch.get_num_threads(), "blas": pools.get("blas")}))
"""
    ran = run_python("-c", code)
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert seen["two"] == {"MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "1"}
    assert set(seen["env"].values()) == {"1"} and seen["torch"] == 1 and seen["blas"] == 1
    with pytest.raises(ValueError, match="≥ 1 thread"):
        threads.share(0)


@pytest.mark.slow  # a check of JAX in a subprocess
@pytest.mark.backends("jax")
def test_the_check_keeps_jax_compiled_code_between_checks(tmp_path, monkeypatch):
    monkeypatch.setenv("XPTRAIN_CACHE_DIR", str(tmp_path))
    args = ("--backends", "jax", "--problems", "seed", "--dtypes", "float32", "--jobs", "1")
    kept = xptrain("check", *args)
    assert kept.returncode == 0, kept.stderr
    folder = tmp_path / "compiled" / "jax"
    assert f"jax compilation cache {folder}" in kept.stdout
    assert len(list(folder.iterdir())) > 10  # eager JAX's operations each compiled, each kept


@pytest.mark.backends("jax")
def test_no_compile_cache_keeps_nothing_and_says_so(tmp_path):
    import jax

    names = (
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
        "jax_compilation_cache_max_size",
    )
    before = {name: getattr(jax.config, name) for name in names}
    jax_bk = backends.get("jax")
    try:
        jax_bk.keep_compiled(tmp_path)  # a cache set first, as a check before this one did
        assert jax.config.jax_compilation_cache_dir == str(tmp_path)
        assert jax_bk.keep_compiled(None) is None
        assert jax.config.jax_compilation_cache_dir is None
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
        for name, value in before.items():
            jax.config.update(name, value)
    cold = check_command.cache_note(argparse.Namespace(compile_cache=False), [])
    assert cold == ["compiled code: every compilation paid in this check (--no-compile-cache)"]


@pytest.mark.backends("jax")
def test_a_cache_folder_that_cannot_be_made_keeps_nothing_and_says_so(tmp_path):
    (tmp_path / "file").write_text("")
    note = backends.get("jax").keep_compiled(tmp_path / "file" / "jax")
    assert note.startswith("jax compilation cache not kept") and "file/jax" in note
