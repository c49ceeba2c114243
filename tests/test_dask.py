"""The dask backend: the seed's numbers, chunked problems within the float64 tolerance, a graph
that does not grow with the epochs, data read lazily from disk, and a dask.distributed cluster
(a LocalCluster here), including one that cannot be reached."""

from __future__ import annotations

import collections
import json
import threading
import time

import numpy as np
import pytest
from helpers import initial_params

import xptrain
from xptrain import api, backends
from xptrain.conformance import tolerance
from xptrain.data import Problem, linear, seed_problem
from xptrain.errors import BackendUnavailable, InvalidInput
from xptrain.loop import fit
from xptrain.options import Options
from xptrain.steps import StepSpec, initial_carry, make_step

pytestmark = pytest.mark.backends("dask")


@pytest.fixture
def bk():
    """The dask backend, its chunking restored after the test."""
    impl = backends.get("dask")
    saved = impl.chunk_rows, impl.chunk_bytes, impl._chunks_to_share
    yield impl
    impl.chunk_rows, impl.chunk_bytes, impl._chunks_to_share = saved
    impl.disconnect()


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster in this process: 2 workers, 1 thread each, reached over TCP (a test using
    it declares it needs ``distributed``)."""
    import distributed

    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        dashboard_address=":0",
    ) as local:
        yield local


def within_float64(result, reference, n: int, d: int) -> None:
    tau = tolerance("float64", n, d)
    for epoch, (got, want) in enumerate(zip(result.losses, reference.losses, strict=True)):
        assert abs(got - want) <= tau * (abs(want) + 1), (epoch, got, want, tau)
    for got, want in zip(result.params, reference.params, strict=True):
        np.testing.assert_allclose(got, want, rtol=tau * np.sqrt(result.epochs), atol=1e-14)


def test_reproduces_the_seed_on_numpy(bk):
    p = seed_problem()
    want = xptrain.train(p.X, p.y, backend="numpy", epochs=50)
    got = xptrain.train(p.X, p.y, backend="dask", epochs=50)
    assert got.backend == "dask" and got.device == "cpu"
    np.testing.assert_allclose(got.losses, want.losses, rtol=1e-12, atol=0)
    np.testing.assert_allclose(got.W, want.W, rtol=1e-12, atol=0)
    assert got.versions["dask"] == bk.version


@pytest.mark.parametrize("exact", [False, True], ids=["default", "exact"])
def test_several_chunks_agree_with_numpy(bk, exact):
    bk.chunk_rows = 4096  # linear:20000,16 in 5 chunks, the last one short
    p = linear("20000,16")
    want = xptrain.train(p.X, p.y, backend="numpy", epochs=12, exact=exact)
    got = xptrain.train(p.X, p.y, backend="dask", epochs=12, exact=exact)
    within_float64(got, want, 20000, 16)


def test_arrays_are_row_chunked_and_y_like_x(bk):
    bk.chunk_rows = None
    bk.chunk_bytes = 1 << 16  # 64 KiB: 512 rows of 16 float64
    X = bk.asarray(np.zeros((2000, 16)), "float64", "cpu")
    y = bk.asarray(np.zeros((2000, 1)), "float64", "cpu")
    assert X.chunks == ((512, 512, 512, 464), (16,))
    assert y.chunks[0] == X.chunks[0]
    assert bk.asarray(np.zeros((16, 1)), "float32", "cpu").dtype == np.float32


def test_settle_makes_a_lazy_tree_concrete(bk):
    xp = bk.xp
    X = bk.asarray(np.ones((100, 3)), "float64", "cpu")
    tree = ((xp.sum(X, axis=0), (xp.mean(X),)), [X[:2, ...] * 2], 7)
    settled = bk.settle(tree)
    assert settled[2] == 7 and isinstance(settled[1], list)
    for array in (settled[0][0], settled[0][1][0], settled[1][0]):
        assert len(array.__dask_graph__()) == 1  # one chunk, no tasks behind it
    np.testing.assert_array_equal(bk.to_numpy(settled[0][0]), [100.0, 100.0, 100.0])


def _graph_tasks(epochs: int, bk) -> int:
    p = linear("3000,4")
    X, y = (bk.asarray(a, "float64", "cpu") for a in (p.X, p.y))
    params = tuple(bk.asarray(a, "float64", "cpu") for a in initial_params(p))
    step = make_step(bk, StepSpec())
    carry, history = fit(step, initial_carry(bk, params), X, y, bk, epochs=epochs)
    assert len(history["loss"]) == epochs
    return max(len(a.__dask_graph__()) for a in carry[0])


def test_the_graph_does_not_grow_with_the_epochs(bk):
    bk.chunk_rows = 500
    assert _graph_tasks(10, bk) == _graph_tasks(2, bk) == 1


def test_npy_on_disk_is_read_lazily_once_per_epoch(bk, tmp_path, monkeypatch):
    from xptrain.backends import dask_data

    p = linear("6000,8")
    np.save(tmp_path / "X.npy", p.X)
    np.save(tmp_path / "y.npy", p.y)
    reads: collections.Counter = collections.Counter()
    lock = threading.Lock()
    load = dask_data.Copying.__getitem__

    def counted(self, index):
        rows = index[0]
        if rows.stop > rows.start:  # not dask's empty probe for the dtype
            with lock:
                reads[self.path.name, rows.start] += 1
        return load(self, index)

    monkeypatch.setattr(dask_data.Copying, "__getitem__", counted)
    X = dask_data.open_array(tmp_path / "X.npy", chunk_rows=1000)
    y = dask_data.open_array(tmp_path / "y.npy", chunk_rows=1000)
    assert X.chunks == ((1000,) * 6, (8,)) and not reads  # nothing read yet
    monkeypatch.setattr(api, "fingerprint", lambda problem: "lazy")  # it would read all of X
    epochs = 4
    got = api.train_problem(Problem(X, y), bk, "cpu", Options(epochs=epochs, exact=True))
    want = xptrain.train(p.X, p.y, backend="numpy", epochs=epochs, exact=True)
    within_float64(got, want, 6000, 8)
    per_chunk = {start: count for (name, start), count in reads.items() if name == "X.npy"}
    assert sorted(per_chunk) == list(range(0, 6000, 1000))
    # each epoch is one computation (settled), in which every chunk is read once
    assert set(per_chunk.values()) == {epochs}


def test_zarr_needs_zarr_and_other_files_are_refused(tmp_path):
    from xptrain.backends.dask_data import open_array

    store = tmp_path / "X.zarr"
    X = np.arange(60.0).reshape(20, 3)
    try:
        import zarr
    except ImportError:
        store.mkdir()
        with pytest.raises(InvalidInput, match="pip install zarr"):
            open_array(store)
    else:
        zarr.save_array(str(store), X)
        got = open_array(store, chunk_rows=8)
        assert got.chunks[0] == (8, 8, 4)
        np.testing.assert_array_equal(got.compute(), X)
    (tmp_path / "X.csv").write_text("1,2\n")
    with pytest.raises(InvalidInput, match=r"\.npy file or a \.zarr store"):
        open_array(tmp_path / "X.csv")
    with pytest.raises(InvalidInput, match="does not exist"):
        open_array(tmp_path / "missing.npy")


def test_lazy_linear_is_made_chunk_by_chunk(bk):
    from xptrain.backends.dask_data import LAZY_ROWS, lazy_linear

    X, y = lazy_linear(LAZY_ROWS + 10, 5, seed=3)
    assert X.shape == (LAZY_ROWS + 10, 5) and y.shape == (LAZY_ROWS + 10, 1)
    assert X.chunks[0] == (LAZY_ROWS, 10)
    head = X[:10, ...].compute()
    assert np.array_equal(head, lazy_linear(20, 5, seed=3)[0][:10, ...].compute())
    labels = np.unique(y.compute())
    assert set(labels) <= {0.0, 1.0}


@pytest.mark.needs("distributed")
def test_runs_on_a_local_cluster(bk, cluster):
    bk.chunk_rows = 4096
    p, sp = linear("20000,16"), seed_problem()
    alone = xptrain.train(p.X, p.y, backend="dask", epochs=6, exact=True)
    want = xptrain.train(p.X, p.y, backend="numpy", epochs=6, exact=True)
    with bk.scheduler(cluster.scheduler_address, timeout=10) as client:
        assert client is bk.client
        got = xptrain.train(p.X, p.y, backend="dask", epochs=6, exact=True)
        seed = xptrain.train(sp.X, sp.y, backend="dask", epochs=20)
    assert bk.client is None
    within_float64(got, want, 20000, 16)
    assert got.device_name.startswith("dask cluster tcp://")
    np.testing.assert_allclose(got.losses, alone.losses, rtol=1e-13, atol=0)
    numpy_seed = xptrain.train(sp.X, sp.y, backend="numpy", epochs=20)
    np.testing.assert_allclose(seed.losses, numpy_seed.losses, rtol=1e-12, atol=0)


def test_an_unreachable_scheduler_fails_fast(bk):
    began = time.perf_counter()
    with pytest.raises(BackendUnavailable, match=r"cannot reach the dask scheduler at tcp://"):
        bk.connect("tcp://127.0.0.1:1", timeout=2)
    assert time.perf_counter() - began < 10
    assert bk.client is None


@pytest.mark.needs("distributed")
def test_a_scheduler_without_workers_fails_fast(bk):
    import distributed

    with distributed.LocalCluster(
        n_workers=0, processes=False, protocol="tcp", dashboard_address=":0"
    ) as empty:
        began = time.perf_counter()
        with pytest.raises(BackendUnavailable, match="has no worker after 1 s"):
            bk.connect(empty.scheduler_address, timeout=1)
        assert time.perf_counter() - began < 10
    assert bk.client is None


@pytest.mark.needs("distributed")
@pytest.mark.parametrize("address", ["", "no port", "foo://127.0.0.1:1"])
def test_a_malformed_address_is_refused(bk, address):
    with pytest.raises(InvalidInput, match="address"):
        bk.connect(address, timeout=2)


@pytest.mark.needs("distributed")
def test_cli_trains_on_a_cluster_and_refuses_bad_schedulers(cluster, tmp_path):
    """``xptrain train --backend dask --scheduler ADDRESS``: the seed's numbers computed on the
    cluster; an unreachable address or another backend is one line and exit code 2."""
    from helpers import xptrain as cli

    out = tmp_path / "r.json"
    address = cluster.scheduler_address
    run = cli("train", "--backend", "dask", "--scheduler", address, "--json", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "Epoch: 19 Loss: 0.203407060401"
    assert "dask cluster tcp://" in json.loads(out.read_text())["device_name"]
    began = time.perf_counter()
    lost = cli(
        "train", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:1", "--scheduler-timeout", "2"
    )
    assert lost.returncode == 2 and "cannot reach the dask scheduler" in lost.stderr
    assert len(lost.stderr.strip().splitlines()) == 1 and time.perf_counter() - began < 30
    other = cli("train", "--scheduler", address)
    assert other.returncode == 2 and "--scheduler is for --backend dask" in other.stderr


def test_a_data_folder_is_memory_mapped_and_read_a_chunk_at_a_time(bk, tmp_path, monkeypatch):
    """``--data FOLDER`` (X.npy, y.npy): X stays a memory map in its own dtype, and dask reads
    each chunk of it once per epoch, nothing before."""
    from xptrain.backends import dask_data
    from xptrain.cli import main as cli

    p = linear("6000,8")
    np.save(tmp_path / "X.npy", p.X.astype(np.float32))
    np.save(tmp_path / "y.npy", p.y)
    problem = xptrain.load(tmp_path)
    assert isinstance(problem.X, np.memmap) and problem.X.dtype == np.float32
    reads: collections.Counter = collections.Counter()
    load = dask_data.Copying.__getitem__

    def counted(self, index):
        if index[0].stop > index[0].start and len(index) == 2 and self.array.ndim == 2:
            reads[index[0].start] += 1
        return load(self, index)

    monkeypatch.setattr(dask_data.Copying, "__getitem__", counted)
    bk.chunk_rows = 1000
    out = tmp_path / "run.json"
    args = ["train", "--backend", "dask", "--data", str(tmp_path), "--dtype", "float32"]
    assert cli([*args, "--epochs", "3", "--quiet", "--json", str(out)]) == 0
    assert sorted(reads) == list(range(0, 6000, 1000)) and set(reads.values()) == {3}
    want = xptrain.train(p.X.astype(np.float32), p.y, dtype="float32", epochs=3)
    tau = tolerance("float32", 6000, 8)
    for got, expected in zip(json.loads(out.read_text())["losses"], want.losses, strict=True):
        assert abs(got - expected) <= tau * (abs(expected) + 1)


def test_one_chunk_computes_here_and_gives_the_bits_the_pool_gives(bk, monkeypatch):
    """Data of one row chunk is computed in this thread, unfused (nothing for the pool's
    threads to share): the same tasks, so the same bits; a chunked array brings the pool back."""
    import dask

    problem = linear("2000,8,3")
    bk.chunk_rows, bk._chunks_to_share = None, False  # one chunk of 64 MiB
    schedulers = []
    persist = dask.persist
    monkeypatch.setattr(dask, "persist", lambda *a, **k: schedulers.append(k) or persist(*a, **k))
    here = api.train_problem(problem, bk, "cpu", Options(epochs=5))
    assert schedulers and all(
        k == {"scheduler": "sync", "optimize_graph": False} for k in schedulers
    )
    bk._chunks_to_share = True
    pooled = api.train_problem(problem, bk, "cpu", Options(epochs=5))
    assert schedulers[-1] == {} and here.losses == pooled.losses
    bk._chunks_to_share = False
    bk.chunk_rows = 500
    bk.asarray(problem.X, "float64", "cpu")
    assert bk._chunks_to_share
