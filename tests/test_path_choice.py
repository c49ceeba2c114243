"""The gradient's path on the CPU is measured, not ruled: the fastest candidate wins, the
decision is cached per machine under a key of everything it depends on, and ``--path`` asks
for one outright."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from helpers import xptrain

import xptrain as xpt
from xptrain import grad, path_choice
from xptrain.path_choice import CACHE_FILE, candidates, fastest, measured

SLOW = 0.02  # seconds: far above one call of the fast candidate, far below a test's patience
BLOCKS_SLOWED = 0.2  # seconds added to a block epoch: far above a 40000×64 full batch's


def _sleeper(seconds: float):
    return lambda: time.sleep(seconds)


@pytest.mark.parametrize("slow", [None, 4096])
def test_the_faster_candidate_wins(slow):
    runs = {b: _sleeper(SLOW if b == slow else 0) for b in (None, 4096)}
    best, seconds = fastest(runs)
    assert best != slow and seconds[slow] >= SLOW > seconds[best]


def test_candidates_are_the_full_batch_and_blocks_around_the_rule():
    assert candidates(16384, 1 << 20, 256) == [None, 4096, 16384, 65536]
    assert candidates(16384, 20000, 256) == [None, 4096, 16384]  # never a block of every row
    assert candidates(256, 1 << 20, 256) == [None, 256, 1024]  # never under the floor


def test_a_decision_is_measured_once_then_read_back(tmp_path):
    key, calls = {"backend": "numpy", "versions": {"numpy": "2.0"}}, []

    def runs():
        calls.append(1)
        return {None: _sleeper(SLOW), 512: _sleeper(0)}

    first = measured(key, runs, tmp_path)
    again = measured(key, runs, tmp_path)
    assert (first.block, again.block, len(calls)) == (512, 512, 1)
    assert "measured now" in first.why and "cached" in again.why
    assert first.seconds > 0 and again.seconds == 0


def test_another_version_measures_again(tmp_path):
    calls = []

    def runs():
        calls.append(1)
        return {None: _sleeper(0), 512: _sleeper(SLOW)}

    measured({"versions": {"numpy": "2.0"}}, runs, tmp_path)
    assert measured({"versions": {"numpy": "2.1"}}, runs, tmp_path).block is None
    assert len(calls) == 2
    assert len(json.loads((tmp_path / CACHE_FILE).read_text())) == 2


def test_an_unreadable_cache_only_costs_a_measurement(tmp_path):
    (tmp_path / CACHE_FILE).write_text("{not json")
    choice = measured({"k": 1}, lambda: {None: _sleeper(0)}, tmp_path)
    assert choice.block is None and "measured now" in choice.why
    assert json.loads((tmp_path / CACHE_FILE).read_text())  # written anew, whole


def _large():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40000, 64)).astype(np.float32)  # more rows than one cache-sized block
    return X, (X[:, 0] > 0).astype(np.float32)


def test_a_run_records_the_path_it_took_and_why(monkeypatch, tmp_path):
    X, y = _large()
    monkeypatch.setenv("XPTRAIN_CACHE_DIR", str(tmp_path))  # nothing measured before
    # a 32 MiB L3, whatever this machine's: the rule's block (16384 rows) is below N, so a path
    # is measured (a 300 MiB L3 makes one block of every row: nothing to measure)
    monkeypatch.setattr(grad, "cache_bytes", lambda level=2: 32 << 20)
    # make every block slow: the measurement must choose the full batch
    monkeypatch.setattr(path_choice, "fastest", _blocks_slowed(path_choice.fastest))
    result = xpt.train(X, y, dtype="float32", epochs=2)
    assert result.block is None and "full batch: the fastest measured now" in result.path
    (key,) = (json.loads(k) for k in json.loads((tmp_path / CACHE_FILE).read_text()))
    assert key["versions"] == result.versions and key["device"] == result.device_name
    assert key["size"] == [65536, 64] and key["backend"] == "numpy"
    assert {"dtype", "grad", "jit", "model", "loss", "optimizer"} <= set(key)
    asked = xpt.train(X, y, dtype="float32", epochs=2, path="block:4096")
    assert asked.block == 4096 and asked.path == "blocks of 4096 rows (asked)"
    exact = xpt.train(X, y, dtype="float32", epochs=2, exact=True)
    assert exact.block is None and exact.path == "full batch (exact: the seed's arithmetic)"


def _blocks_slowed(real):
    def slowed(runs, epochs=path_choice.EPOCHS):
        def slow(run):
            return lambda: (time.sleep(BLOCKS_SLOWED), run())

        return real({b: run if b is None else slow(run) for b, run in runs.items()}, epochs)

    return slowed


def test_the_cli_takes_path_and_records_the_choice(tmp_path):
    out = tmp_path / "r.json"
    run = xptrain("train", "--path", "block:2", "--json", str(out), "--quiet")
    assert run.returncode == 0, run.stderr
    record = json.loads(out.read_text())
    assert record["path"] == "block:2" and record["block"] == 2
    assert record["path_chosen"] == "blocks of 2 rows (asked)"
    bad = xptrain("train", "--path", "blocks")
    assert bad.returncode == 2 and "must be auto, full or block:ROWS" in bad.stderr


def test_check_rows_record_the_path():
    from xptrain import check

    configs, _ = check.plan(["seed"], ["numpy"], dtypes=["float64"])
    (row,) = check.run(configs, progress_bar=False, explain=False).rows
    assert row.path == "full batch (one cache-sized block would hold every row)"
