"""Failures of a cluster or a process group end the run within its timeout, in one line, exit
code 2 (issue 15, items 4 and 5): a dask worker or scheduler lost or stalled mid-run, addresses
and timeouts dask cannot use, torch ranks that disagree on WORLD_SIZE or cannot reach their
master. Every subprocess has a hard timeout: a regression fails the test, never hangs it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from xptrain import backends, launch
from xptrain.cli import main as cli
from xptrain.errors import BackendUnavailable, InvalidInput

HARD = 60  # seconds any subprocess may take before the test fails (instead of hanging)
SHORT = 3  # the timeout the runs here are given

# -- the dask watch, on a fake client: no cluster needed ----------------------------------------


class FakeClient:
    """What :class:`Watch` asks of a Client: the scheduler's identity (its workers with their
    last heartbeats) through ``sync``, and the client's status."""

    def __init__(self) -> None:
        self.workers: dict[str, dict] = {"tcp://w:1": {"last_seen": 1.0}}
        self.status = "running"
        self.scheduler = SimpleNamespace(identity=lambda n_workers: {"workers": self.workers})

    def sync(self, call, *args, callback_timeout=None, **kwargs):
        return call(*args, **kwargs)


@pytest.fixture
def watch(monkeypatch):
    """A Watch of a FakeClient with a 0.2 s timeout (a test moves the workers, then waits)."""
    pytest.importorskip("distributed")
    from xptrain.backends.dask import Watch

    client = FakeClient()
    return Watch(client, "tcp://s:1", 0.2), client


@pytest.mark.backends("dask")
def test_a_silent_worker_stops_the_wait(watch, monkeypatch):
    import distributed.scheduler

    monkeypatch.setattr(distributed.scheduler, "heartbeat_interval", lambda n: 0.01)
    w, client = watch
    w.check()
    client.workers["tcp://w:1"] = {"last_seen": 2.0}  # a heartbeat: all is well
    time.sleep(0.15)
    w.check()
    time.sleep(0.1)
    w.check()  # 0.1 s since the last heartbeat
    time.sleep(0.15)  # 0.25 s since: past the timeout
    with pytest.raises(BackendUnavailable, match=r"worker tcp://w:1 .* silent for 0.2 s"):
        w.check()


@pytest.mark.backends("dask")
def test_a_scheduler_without_workers_stops_the_wait(watch):
    w, client = watch
    client.workers = {}
    w.check()
    time.sleep(0.25)
    with pytest.raises(BackendUnavailable, match=r"has had no worker for 0\.2 s"):
        w.check()


@pytest.mark.backends("dask")
def test_a_scheduler_that_does_not_answer_stops_the_wait(watch):
    w, client = watch

    def no_answer(n_workers):
        raise TimeoutError

    client.scheduler.identity = no_answer
    with pytest.raises(BackendUnavailable, match=r"lost the dask scheduler .*no answer in 0\.2 s"):
        w.check()


@pytest.mark.backends("dask")
def test_a_cancelled_future_says_what_was_lost(watch):
    from distributed.client import FutureCancelledError

    w, client = watch
    assert "lost this run's data" in str(w.lost(FutureCancelledError("k", "lost dependencies")))
    client.status = "connecting"
    gone = w.lost(FutureCancelledError("k", "scheduler-connection-lost"))
    assert "lost the dask scheduler" in str(gone) and "scheduler-connection-lost" in str(gone)


# -- dask addresses and timeouts, refused before any Client -------------------------------------


@pytest.mark.backends("dask")
@pytest.mark.needs("distributed")
@pytest.mark.parametrize(
    "address, error, message",
    [
        ("ucx://127.0.0.1:1", BackendUnavailable, "needs distributed-ucxx"),
        ("tls://127.0.0.1:1", BackendUnavailable, "needs TLS certificates"),
        ("wss://127.0.0.1:1", BackendUnavailable, "needs TLS certificates"),
        ("inproc://x", InvalidInput, "unknown scheme inproc://"),
        ("tcp://127.0.0.1", InvalidInput, "missing port"),
    ],
)
def test_unusable_addresses_are_refused_at_once(address, error, message):
    if address.startswith("ucx") and _has("distributed_ucxx"):
        pytest.skip("distributed-ucxx is installed here")
    bk = backends.get("dask")
    began = time.monotonic()
    with pytest.raises(error, match=message):
        bk.connect(address, timeout=5)
    assert time.monotonic() - began < 1 and bk.client is None


@pytest.mark.backends("dask")
@pytest.mark.parametrize("timeout", [float("inf"), float("nan"), 0, -1, "10"])
def test_a_scheduler_timeout_must_be_finite(timeout):
    with pytest.raises(InvalidInput, match="dask scheduler timeout"):
        backends.get("dask").connect("tcp://127.0.0.1:1", timeout=timeout)


@pytest.mark.parametrize("flag", ["--scheduler-timeout", "--distributed-timeout"])
@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1", "1e9", "x"])
def test_timeout_flags_are_checked_in_one_line(flag, value, capsys):
    with pytest.raises(SystemExit) as stop:
        cli(["train", flag, value])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1
    assert f"argument {flag}: must be a number of seconds > 0" in err


@pytest.mark.slow
@pytest.mark.backends("dask")
@pytest.mark.needs("distributed")
def test_a_bad_address_is_one_line_without_client_noise():
    """A Client that failed to start spent 4-6 s in Client.__del__, printing a traceback."""
    began = time.monotonic()
    done = _xptrain("train", "--backend", "dask", "--scheduler", "tls://127.0.0.1:1")
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "needs TLS certificates" in done.stderr
    assert time.monotonic() - began < 8  # Python and dask starting; no clean-up after


# -- a dask cluster losing its worker or scheduler mid-run ---------------------------------------


@pytest.fixture
def cluster() -> Iterator[SimpleNamespace]:
    """A dask scheduler and one worker (no nanny: a lost worker stays lost) started with the
    dask command, each in a session of its own; killed after the test."""
    pytest.importorskip("distributed")
    port = launch.free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    scheduler = subprocess.Popen([*dask, "--port", str(port), "--dashboard-address", ":0"], **quiet)
    worker_cli = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--no-nanny"]
    worker = subprocess.Popen(
        [*worker_cli, "--nthreads", "1", "--dashboard-address", ":0"], **quiet
    )
    try:
        _wait_for_a_worker(address)
        yield SimpleNamespace(address=address, scheduler=scheduler, worker=worker)
    finally:
        for process in (worker, scheduler):
            _kill(process, signal.SIGKILL)
            process.wait(HARD)


@pytest.mark.slow
@pytest.mark.backends("dask")
@pytest.mark.needs("distributed")
@pytest.mark.parametrize(
    "victim, how, message",
    [
        ("worker", signal.SIGSTOP, r"worker tcp://\S+ of tcp://\S+ has been silent for 3 s"),
        ("worker", signal.SIGKILL, "lost this run's data mid-run"),
        ("scheduler", signal.SIGKILL, "lost the dask scheduler at tcp://"),
    ],
)
def test_a_lost_cluster_ends_the_run_within_the_timeout(cluster, victim, how, message):
    """Before: a stalled worker (or a host that died without closing its connections) hung
    the run for the scheduler's worker-ttl (5 min); a killed worker or scheduler was exit
    code 1, the latter with distributed's traceback."""
    args = ["train", "--backend", "dask", "--scheduler", cluster.address, "--data"]
    args += ["linear:20000,8", "--epochs", "100000000", "--scheduler-timeout", str(SHORT)]
    run = _start(*args)
    try:
        assert run.stdout.readline().startswith("Epoch: 0")  # training on the cluster
        _kill(getattr(cluster, victim), how)
        began = time.monotonic()
        _, err = run.communicate(timeout=HARD)
        took = time.monotonic() - began
    finally:
        _kill(run, signal.SIGKILL)
    assert run.returncode == 2, err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert took < SHORT + 3


# -- torch ranks: disagreeing sizes, an unreachable master --------------------------------------


def _rank(rank: int, size: int, port: int, *args: str) -> subprocess.Popen:
    env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1")
    env["MASTER_PORT"] = str(port)
    train = ["train", "--backend", "torch", "--distributed", "--quiet", *args]
    return _start(*train, "--distributed-timeout", str(SHORT), env=env)


@pytest.mark.slow
@pytest.mark.backends("torch")
def test_ranks_that_disagree_on_world_size_stop_within_the_timeout():
    """Before: 24 s against a 4 s timeout (gloo's mesh retried five times), C++ warnings."""
    port = launch.free_port()
    began = time.monotonic()
    ranks = [_rank(0, 2, port), _rank(1, 3, port)]
    errs = _stderr_of(ranks)
    took = time.monotonic() - began
    for rank, err in zip(ranks, errs, strict=True):
        assert rank.returncode == 2, err
        assert err.count("\n") == 1 and "the ranks disagree on WORLD_SIZE" in err, err
    assert took < SHORT + 8  # Python and torch starting (about 3 s), then the timeout at most


@pytest.mark.slow
@pytest.mark.backends("torch")
def test_a_rank_that_cannot_reach_its_master_is_one_line_within_the_timeout():
    """Before: ~40 lines of torch's C++ stack frames before the error, and twice the timeout."""
    began = time.monotonic()
    alone = _rank(1, 2, launch.free_port())
    try:
        _, err = alone.communicate(timeout=HARD)
    finally:
        _kill(alone, signal.SIGKILL)
    assert alone.returncode == 2, err
    assert err.count("\n") == 1 and "rank 1 could not reach the master" in err, err
    assert time.monotonic() - began < SHORT + 8


@pytest.mark.slow
@pytest.mark.backends("torch")
def test_what_torch_prints_in_c_plus_plus_goes_to_a_debug_log():
    """Rank 0 waits for a third rank that never comes; rank 1 waits on rank 0's store, and
    torch's C++ logs its socket time-outs: in a debug log that the one-line error names."""
    port = launch.free_port()
    ranks = [_rank(0, 3, port), _rank(1, 2, port)]
    errs = _stderr_of(ranks)
    assert [rank.returncode for rank in ranks] == [2, 2], errs
    assert all(err.count("\n") == 1 for err in errs), errs
    named = re.search(r"\(torch's log: (\S+)\)$", errs[1].strip())
    assert named, errs[1]
    log = Path(named.group(1))
    try:
        assert "[c10d]" in log.read_text()
    finally:
        log.unlink()


# -- helpers -------------------------------------------------------------------------------------


def _stderr_of(ranks: list[subprocess.Popen]) -> list[str]:
    """Each rank's stderr once it has ended (within HARD seconds); every rank killed after."""
    try:
        return [rank.communicate(timeout=HARD)[1] for rank in ranks]
    finally:
        for rank in ranks:
            _kill(rank, signal.SIGKILL)


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m xptrain ARGS``, its output piped, in a session of its own."""
    return subprocess.Popen(
        launch.xptrain_command(list(args)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


def _xptrain(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        launch.xptrain_command(list(args)), capture_output=True, text=True, timeout=HARD
    )


def _wait_for_a_worker(address: str) -> None:
    """Till the cluster at ``address`` has its worker (the run's own timeout is short)."""
    from distributed import Client

    with Client(address, timeout=HARD, set_as_default=False) as client:
        client.wait_for_workers(1, timeout=HARD)


def _kill(process: subprocess.Popen, how: int) -> None:
    """Signal ``process``'s session (a stopped one is killed after by the fixture)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, how)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
