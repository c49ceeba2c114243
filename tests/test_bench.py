"""`xptrain bench` as a user runs it: records with every field, resume after a kill, failures
recorded, bad input refused. Timings are measured, never asserted: speed lives in bench/."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import FORK_THEN_EXEC, NAMESPACES, ctrl_c_as_in_a_terminal, xptrain

from xptrain import bench, bench_table

FIELDS = {
    "backend",
    "model",
    "model_args",
    "loss",
    "device",
    "device_name",
    "dtype",
    "n",
    "d",
    "epochs",
    "transfer_s",
    "compile_s",
    "epoch_s",
    "epoch_s_min",
    "epoch_s_max",
    "path",
    "block",
    "samples_per_s",
    "bytes_per_epoch",
    "gbps",
    "bound_gbps",
    "bound",
    "stream",
    "ratio_to_bound",
    "threads",
    "versions",
    "precision",
    "status",
}


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.needs("matplotlib")
def test_quick_run_writes_every_field_for_every_backend(tmp_path):
    out, plot = tmp_path / "r.jsonl", tmp_path / "r.png"
    run = xptrain("bench", "--quick", "--quiet", "--out", str(out), "--plot", str(plot))
    assert run.returncode == 0, run.stderr
    written = records(out)
    assert {r["backend"] for r in written} >= {"numpy"}
    for r in written:
        assert set(r) >= FIELDS, FIELDS - set(r)
        assert r["status"] == "ok", r["status"]
        assert r["n"] == 4096 and r["d"] == 32 and r["dtype"] == "float32"
        assert r["bytes_per_epoch"] == 4096 * 32 * 4
        assert r["epoch_s_min"] <= r["epoch_s"] <= r["epoch_s_max"]
        assert r["gbps"] == pytest.approx(r["bytes_per_epoch"] / r["epoch_s"] / 1e9)
        # 4096x32 float32 (512 KiB) fits in any last-level cache: no memory bound is claimed
        assert r["bound"]["in_cache"] and r["bound_gbps"] is r["ratio_to_bound"] is None
        assert r["stream"]["copy_gbps"] > 0 and r["stream"]["triad_gbps"] > 0
        assert r["transfer_s"] > 0 and r["compile_s"] >= 0 and r["threads"]["cpu_count"]
    modes = {(r["backend"], r["mode"]) for r in written}
    for name in ("torch", "jax"):
        if any(b == name for b, _ in modes):
            assert (name, "jit") in modes and (name, "eager") in modes
    table = run.stdout.splitlines()
    assert table[0].split()[:7] == ["backend", "model", "device", "mode", "path", "N", "D"]
    assert table[-1] == "crossover: no GPU configurations in these records"
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.backends("array_api_strict")
@FORK_THEN_EXEC
def test_a_killed_sweep_resumes_without_redoing_anything(tmp_path):
    out = tmp_path / "sweep.jsonl"
    args = [
        "bench",
        "--backends",
        "numpy",
        "array_api_strict",
        "--modes",
        "eager",
        "--sizes",
        "256x8,512x8,1024x8,2048x8,4096x8,8192x8,16384x8,32768x8",
        "--epochs",
        "20",
        "--repeat",
        "5",
        "--quiet",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "xptrain", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )
    deadline = time.monotonic() + 120
    while (not out.exists() or len(out.read_text().splitlines()) < 3) and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    _, stderr = proc.communicate(timeout=120)
    first = records(out)
    if proc.returncode == 0:
        pytest.skip("the sweep finished before it could be interrupted")
    assert proc.returncode == 130 and "--resume" in stderr and "Traceback" not in stderr
    assert 3 <= len(first) < 16
    with open(out, "a") as f:
        f.write('{"backend": "numpy", "dev')  # what a kill in mid-write would leave
    rerun = xptrain(*args, "--resume")
    assert rerun.returncode == 0, rerun.stderr
    lines = out.read_text().splitlines()
    assert lines[len(first)] == '{"backend": "numpy", "dev'  # the torn line, on its own
    complete = [json.loads(line) for i, line in enumerate(lines) if i != len(first)]
    assert complete[: len(first)] == first  # finished configurations untouched
    keys = [bench.record_key(r) for r in complete]
    assert len(keys) == len(set(keys)) == 16  # every configuration once
    size = out.stat().st_size
    again = xptrain(*args, "--resume")  # nothing left to do: nothing is added
    assert again.returncode == 0 and out.stat().st_size == size


@pytest.mark.needs("array_api_strict")  # oom_namespace wraps it
def test_failures_are_recorded_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "r.jsonl"
    run = xptrain(
        "bench",
        "--backends",
        "oom_namespace",
        "numpy",
        "--modes",
        "eager",
        "--sizes",
        "128x4",
        "--epochs",
        "2",
        "--repeat",
        "1",
        "--quiet",
        "--out",
        str(out),
        extra_path=NAMESPACES,
    )
    assert run.returncode == 0, run.stderr
    by_backend = {r["backend"]: r for r in records(out)}
    assert by_backend["oom_namespace"]["status"] == "oom"
    assert by_backend["numpy"]["status"] == "ok"


def test_crossover_names_the_first_winning_size():
    def rec(backend, device, n, epoch_s):
        return {
            "backend": backend,
            "device": device,
            "mode": "eager",
            "n": n,
            "d": 64,
            "epoch_s": epoch_s,
            "status": "ok",
        }

    rows = [
        rec("numpy", "cpu", 1000, 1e-4),
        rec("numpy", "cpu", 100000, 1e-2),
        rec("torch", "cpu", 1000, 2e-4),
        rec("torch", "cpu", 100000, 5e-3),
        rec("cupy", "cuda:0", 1000, 3e-4),
        rec("cupy", "cuda:0", 100000, 5e-4),
    ]
    assert bench_table.crossover(rows) == [
        "crossover: cupy/cuda:0 eager beats the best CPU configuration from N=100000 (D=64); "
        "10x at N=100000, D=64"
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sizes", "1000"], "write NxD"),
        (["--sizes", "0x5"], "must be ≥ 1"),
        (["--epochs", "0"], "must be ≥ 1"),
        (["--modes", "fast"], "unknown mode"),
        (["--dims", "a"], "whole numbers"),
        (["--dtype", "float16"], "invalid choice"),
        (["--backends", "nosuchlib"], "unknown backend"),
        (["--devices", "tpu"], "unknown device"),
        (["--out", "no/such/dir/r.jsonl"], "does not exist"),
        pytest.param(
            ["--plot", "r.pgf"], "cannot draw a plot", marks=pytest.mark.needs("matplotlib")
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message, tmp_path):
    run = xptrain(
        "bench",
        "--quiet",
        "--sizes",
        "64x4",
        "--out",
        str(tmp_path / "r.jsonl"),
        *args,
        cwd=tmp_path,
    )
    assert run.returncode == 2, run.stdout
    assert len(run.stderr.splitlines()) == 1 and message in run.stderr, run.stderr
    assert list(tmp_path.iterdir()) == []


def test_fast_and_exact_paths_side_by_side(tmp_path):
    """--paths fast,exact times both gradient paths in one run; on the CPU, a problem larger
    than a block takes the one-pass gradient on the fast path and records its block."""
    out = tmp_path / "p.jsonl"
    args = ["--backends", "numpy", "--sizes", "40000x64", "--epochs", "2", "--repeat", "1"]
    run = xptrain("bench", *args, "--paths", "fast,exact", "--out", str(out), "--quiet")
    assert run.returncode == 0, run.stderr
    records = {r["path"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert records["exact"]["block"] is None and records["exact"]["status"] == "ok"
    assert records["fast"]["status"] == "ok"
    assert ("block " in run.stdout) == (records["fast"]["block"] is not None)
    bad = xptrain("bench", *args, "--paths", "fastest", "--out", str(out))
    assert bad.returncode == 2 and "unknown path 'fastest'" in bad.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data-parallel", "2", "--workers", "2"], "one of --data-parallel, --workers"),
        (["--distributed"], "give --backends torch or jax"),
        (["--backends", "numpy", "--workers", "1"], "none of these backends spreads over workers"),
        (["--data-parallel", "0"], "every value must be ≥ 1"),
    ],
)
def test_bad_spreads_are_refused(args, message, tmp_path):
    out = tmp_path / "r.jsonl"
    run = xptrain("bench", "--quiet", "--sizes", "64x4", "--out", str(out), *args, cwd=tmp_path)
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert len(run.stderr.splitlines()) == 1 and not out.exists()


def test_old_records_read_as_one_device():
    old = {f: 1 for f in bench.BenchConfig.__dataclass_fields__} | {"path": "fast"}
    del old["spread"], old["replicas"]
    key = dict(zip(bench.BenchConfig.__dataclass_fields__, bench.record_key(old), strict=True))
    assert (key["spread"], key["replicas"]) == ("", 1)


@pytest.mark.backends("torch", "jax", "dask")
def test_scale_out_times_one_and_two_replicas(tmp_path):
    """--scale-out 1,2: torch over 1 and 2 gloo ranks (torchrun), dask over 1 and 2 LocalCluster
    workers, JAX over 1 and 2 emulated CPU devices and processes; every record in one file,
    written by one process each, with the all-reduce's size."""
    out = tmp_path / "s.jsonl"
    args = ["--sizes", "4096x8", "--epochs", "2", "--repeat", "1", "--modes", "eager", "jit"]
    args += ["--backends", "torch", "jax", "dask", "--scale-out", "1,2", "--out", str(out)]
    run = xptrain("bench", *args, "--quiet", timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    found = {(r["backend"], r["spread"], r["replicas"], r["mode"]): r for r in records(out)}
    want = {("torch", "processes", k, m) for k in (1, 2) for m in ("eager", "jit")}
    want |= {("jax", s, k, "jit") for s in ("devices", "processes") for k in (1, 2)}
    want |= {("dask", "workers", k, "eager") for k in (1, 2)}
    assert set(found) == want
    assert all(r["status"] == "ok" for r in found.values()), [r["status"] for r in found.values()]
    two = found[("torch", "processes", 2, "eager")]
    assert two["replicas_record"]["replicas"] == 2 and two["allreduce_bytes"] == (8 + 2) * 4
    assert "×2 processes" in run.stdout and "×2 workers" in run.stdout


@pytest.mark.backends("dask")
def test_the_bound_reads_x_even_on_a_lazy_library():
    """dask's sum is a graph until computed: the bound's read must compute it (timed without
    that, it measured the graph's construction, 137-187 GB/s on 2 cores)."""
    import numpy as np

    from xptrain import backends

    bk = backends.get("dask")
    X = bk.asarray(np.ones((4096, 8)), "float64", "cpu")
    computed = []
    to_numpy = bk.to_numpy

    def counted(x):
        computed.append(x)
        return to_numpy(x)

    bk.to_numpy = counted
    try:
        assert bench.read_rate(bk, X, repeat=2) > 0
    finally:
        del bk.to_numpy
    assert len(computed) == 3 and all(float(c) == 4096 * 8 for c in map(to_numpy, computed))


def test_runs_are_kept_only_with_out_and_marked_and_compared(tmp_path):
    """No file unless --out; each run's records carry its run_id and start; the table shows
    this run's rows only (a second run into the same file does not double them); --compare
    puts two runs side by side, by file or by run id."""
    quick = ["bench", "--quick", "--quiet", "--backends", "numpy", "--sizes", "256x4"]
    alone = xptrain(*quick, cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written without --out
    out = tmp_path / "r.jsonl"
    for _ in range(2):
        again = xptrain(*quick, "--out", str(out))
        assert again.returncode == 0, again.stderr
        assert len([line for line in again.stdout.splitlines() if line.startswith("numpy")]) == 1
    first, second = records(out)
    assert first["run_id"] != second["run_id"] and first["started"] <= second["started"]
    compared = xptrain("bench", "--compare", first["run_id"], second["run_id"], "--out", str(out))
    assert compared.returncode == 0, compared.stderr
    head, row = compared.stdout.splitlines()
    assert head.split()[:3] == ["configuration", "A", "ms"]
    ratio = second["epoch_s"] / first["epoch_s"]
    assert row.startswith("numpy logistic cpu eager full 256x4 float32")
    assert f"{ratio:.2f}" in row.split()
    by_file = xptrain("bench", "--compare", str(out), str(out))
    assert by_file.returncode == 0 and " 1.00 " in by_file.stdout  # a run against itself
    missing = xptrain("bench", "--compare", "nope", first["run_id"], "--out", str(out))
    assert missing.returncode == 2 and first["run_id"] in missing.stderr  # its runs listed
    resume = xptrain(*quick, "--resume", cwd=tmp_path)
    assert resume.returncode == 2 and "--resume needs --out" in resume.stderr


def test_a_device_no_backend_has_is_refused_and_a_missing_one_noted():
    refused = xptrain("bench", "--quick", "--backends", "numpy", "--devices", "cpu,cuda")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        "xptrain bench: error: no backend here has a cuda device (numpy: cpu)"
    )


def test_one_replica_reads_in_the_singular():
    record = {"backend": "torch", "model": "logistic", "device": "cpu", "mode": "eager",
              "path": "fast", "block": None, "n": 64, "d": 4, "dtype": "float32",
              "spread": "processes", "replicas": 1}  # fmt: skip
    assert bench_table.describe_config(record) == (
        "torch logistic cpu ×1 process eager full 64x4 float32"
    )


def test_a_read_faster_than_a_copy_is_refused_and_every_candidate_is_kept(monkeypatch):
    """The bound is a real read of X from memory: a reader that beats the device's STREAM
    copy by more than the noise (a cache, a lazy library) is refused with its reason, its
    figure kept; the fastest accepted reader is the bound; one that cannot run says why."""
    import numpy as np

    monkeypatch.setattr(bench, "cache_bytes", lambda level: 1024)  # X larger than the "LLC"
    monkeypatch.setattr(bench, "READERS", {"cpu": ("numpy", "no_such_library")})
    rate = [40e9]  # the device's copy does 10 GB/s: 40 is not a read of memory
    monkeypatch.setattr(bench, "read_rate", lambda bk, X, repeat=3: rate[0])
    X, copy = np.ones((64, 8)), {"copy_gbps": 10.0}
    bound = bench.memory_bound("cpu", X, "float64", copy)
    assert not bound["in_cache"] and bound["x_bytes"] == 64 * 8 * 8
    numpy, absent = bound["candidates"]["numpy"], bound["candidates"]["no_such_library"]
    assert numpy["read_gbps"] == 40.0 and numpy["status"].startswith("refused: 40 GB/s beats")
    assert absent["read_gbps"] is None and absent["status"].startswith("unavailable: ")
    assert bound["bound_gbps"] is None and bound["bound_by"] is None
    rate[0] = 12.4e9  # within the noise of the copy (25%): a read, and the bound
    bound = bench.memory_bound("cpu", X, "float64", copy)
    assert bound["candidates"]["numpy"] == {"read_gbps": 12.4, "status": "ok"}
    assert bound["bound_gbps"] == 12.4 and bound["bound_by"] == "numpy"
    rate[0] = 12.6e9  # beyond it: refused
    assert bench.memory_bound("cpu", X, "float64", copy)["bound_gbps"] is None


def test_x_in_the_last_level_cache_claims_no_memory_bound(monkeypatch):
    """A read of X that fits in the last-level cache measures the cache: ``in_cache``, no
    candidate asked, no bound."""
    import numpy as np

    monkeypatch.setattr(bench, "cache_bytes", lambda level: 1 << 20)
    bound = bench.memory_bound("cpu", np.ones((1024, 8)), "float32", {"copy_gbps": 10.0})
    assert bound["in_cache"] and bound["llc_bytes"] == 1 << 20 and bound["candidates"] == {}
    assert bound["bound_gbps"] is None


def test_the_stream_line_times_copy_and_triad_on_the_host():
    """STREAM on the host: copy (2 arrays of bytes) and triad (3) in GB/s, and who ran it."""
    line = bench.host_stream(8 << 20, repeat=1)
    assert line["copy_gbps"] > 0 and line["triad_gbps"] > 0 and line["array_bytes"] == 8 << 20
    assert line["by"].startswith("numpy, ") and "thread" in line["copy_by"]


@pytest.mark.slow  # imports and compiles every installed backend
@pytest.mark.backends("torch", "jax")
def test_the_targets_script_reports_each_target_and_where_the_time_goes(tmp_path):
    """bench/targets.py, small: every target with MET or MISS, the measured pieces that explain
    a miss, and its JSON record (the README's figures come from this script)."""
    from helpers import run_python

    out = tmp_path / "targets.json"
    root = Path(__file__).resolve().parents[1]
    args = ["--n", "4096", "--repeat", "1", "--epochs", "1", "--no-call", "--json", str(out)]
    run = run_python(str(root / "bench" / "targets.py"), *args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    targets = [line for line in lines if line.startswith(("  MET ", "  MISS"))]
    assert len(targets) >= 7
    assert any(line.startswith("where the time goes (large") for line in lines)
    assert any(line.startswith("where the time goes (small") for line in lines)
    record = json.loads(out.read_text())
    floors = record["large"]["bounds"]["floors"]
    assert floors["x_w_s"] > 0 and floors["products_s"] > 0 and floors["elementwise_s"] > 0
    assert {"numpy", "torch", "jax"} <= set(record["large"]) and record["small"]["numpy"] > 0
