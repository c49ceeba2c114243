"""One ``train`` call on big data makes at most one copy of X (issue 18): validation reads X in
place, a chunk at a time; the one copy is the one that puts X on the device in the run's dtype
(none when the backend can use the caller's array as it is); ``val_split`` and
``standardize`` write their rows once. Memory is held with tracemalloc, whose peak counts every
NumPy allocation and is the same on every run (not a timing test)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import xptrain
from xptrain import data
from xptrain.backends import get as backend_named
from xptrain.data import Problem, copy_rows, feature_scaling, make_problem
from xptrain.errors import InvalidInput
from xptrain.options import Options
from xptrain.placement import place

N, D = 1 << 18, 64  # float32 X: 64 MiB
ELSEWHERE = 0.10  # what a call may hold beside its copies of X, as a fraction of X
BLOCKS = f"block:{N // 16}"  # the one-pass path: an epoch holds one block's temporaries
# A split also copies the labels: y's float64 parts and their float32 copies on the device
# (12 bytes a row; X's row is 256), beside the float64 y every run holds.
SPLIT_LABELS = 12


@pytest.fixture(scope="module")
def big() -> tuple[np.ndarray, np.ndarray]:
    """The caller's data: a 64 MiB float32 X and 0/1 labels."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D), dtype=np.float32)
    return X, (X[:, 0] > 0).astype(np.float32)


def traced_peak(run) -> int:
    """The most memory NumPy (and Python) held at once during ``run()``, above what was held
    before: deterministic, whatever else the machine runs."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("options", "caller_dtype", "copies"),
    [
        ({}, np.float32, 0.0),  # the caller's X is used as it is
        ({}, np.float64, 0.5),  # one copy, in float32: half the caller's float64 X
        ({"val_split": 0.25}, np.float32, 1.0),  # the two parts, written once
        ({"standardize": True}, np.float32, 1.0),
        ({"val_split": 0.25, "standardize": True}, np.float32, 1.0),
    ],
    ids=["as-is", "float64-cast", "val-split", "standardize", "both"],
)
def test_one_call_makes_at_most_one_copy_of_x(big, options, caller_dtype, copies):
    """The whole call's peak above the caller's data: its copies of X plus 10% of X (and,
    with a split, the labels' parts). The one-pass path, whose epoch holds a block's
    temporaries only (the full batch's working memory is the path's, not a copy of X: see
    test_the_default_path_measures_within_a_fifth_of_x)."""
    X, y = big
    X = X if caller_dtype == np.float32 else X.astype(caller_dtype)
    options = {**options, "path": BLOCKS}
    xptrain.train(X[:64], y[:64], dtype="float32", epochs=1, **options)  # first-call caches
    peak = traced_peak(lambda: xptrain.train(X, y, dtype="float32", epochs=1, **options))
    labels = SPLIT_LABELS * N if "val_split" in options else 0
    assert peak <= (copies + ELSEWHERE) * X.nbytes + labels, f"{peak / X.nbytes:.3f} × X"


FULL_BATCH = 0.20  # the full batch's N-vectors (12 of them: 0.19 × X at D = 64, float32)


def test_the_default_path_measures_within_a_fifth_of_x(big, monkeypatch, tmp_path):
    """The default path's first call on a new machine and size times the full batch against
    blocks: its peak holds the full batch's working memory once, then a cached call's does
    not (the blocks won here; where the full batch wins, every call holds it)."""
    X, y = big
    monkeypatch.setenv("XPTRAIN_CACHE_DIR", str(tmp_path))
    xptrain.train(X[:64], y[:64], dtype="float32", epochs=1)  # first-call caches
    first = traced_peak(lambda: xptrain.train(X, y, dtype="float32", epochs=1))
    assert first <= FULL_BATCH * X.nbytes, f"{first / X.nbytes:.3f} × X"
    result = xptrain.train(X, y, dtype="float32", epochs=1)
    if result.block is not None:
        # A cached call holds the chosen block's working memory (the full batch's, scaled to
        # the block, on each of the backend's row-group threads at once), not the measurement's
        # full batch as well. The block is the one measured fastest here: 16384-131072 rows on
        # the machines seen, so the bound is machine-made, not a constant.
        threads = backend_named("numpy").workers
        block = threads * FULL_BATCH * min(1.0, result.block / N)
        again = traced_peak(lambda: xptrain.train(X, y, dtype="float32", epochs=1))
        assert again <= (ELSEWHERE + block) * X.nbytes, f"{again / X.nbytes:.3f} × X"


def test_an_npz_file_is_materialised_once(big, tmp_path):
    """Loading an .npz reads X once; training on it copies nothing more."""
    X, y = big
    np.savez(tmp_path / "big.npz", X=X, y=y)

    def run() -> None:
        problem = data.load(tmp_path / "big.npz")
        xptrain.api.train_problem(
            problem, backend_named("numpy"), "cpu", Options(dtype="float32", epochs=1, path=BLOCKS)
        )

    assert traced_peak(run) <= (1 + ELSEWHERE) * X.nbytes


def test_validation_keeps_the_callers_array():
    """float32 and float64 X are checked in place and kept; other dtypes become float64."""
    X32 = np.ones((10, 3), dtype=np.float32)
    X64 = np.ones((10, 3))
    assert make_problem(X32, np.zeros(10)).X is X32
    assert make_problem(X64, np.zeros(10)).X is X64
    assert make_problem(X32.astype(np.int16), np.zeros(10)).X.dtype == np.float64
    assert make_problem(X32.astype(">f4"), np.zeros(10)).X.dtype == np.float64


@pytest.mark.parametrize("row", [0, 37, 99])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_bad_value_in_any_chunk_is_refused_as_before(monkeypatch, row, bad):
    """X checked a chunk at a time (here 8 rows) still refuses NaN and inf anywhere, with the
    message a whole-array check gave."""
    monkeypatch.setattr(data, "CHUNK_BYTES", 8 * 3 * 4)
    X = np.ones((100, 3), dtype=np.float32)
    X[row, 1] = bad
    with pytest.raises(InvalidInput, match=r"^X holds NaN or inf; clean the data first$"):
        make_problem(X, np.zeros(100))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_a_longdouble_too_large_for_float64_is_refused():
    """Other dtypes are checked after the cast to float64, where a huge value becomes inf."""
    X = np.ones((4, 2), dtype=np.longdouble)
    X[2, 1] = np.longdouble(10) ** 400
    if not np.isfinite(X).all():  # a platform whose longdouble is float64
        pytest.skip("longdouble is float64 here")
    with pytest.raises(InvalidInput, match="X holds NaN or inf"):
        make_problem(X, np.zeros(4))


@pytest.mark.parametrize("d", [1, 7])
@pytest.mark.parametrize("order", ["C", "F"])
def test_scaling_in_chunks_gives_numpys_numbers(monkeypatch, d, order):
    """The chunked mean and deviation, and the scaled rows, are the bits NumPy's whole-array
    ``X.mean(0)``, ``X.std(0)`` and ``(X - mean) / std`` give on a float64 C-ordered X."""
    monkeypatch.setattr(data, "CHUNK_BYTES", 5 * d * 8)  # five rows a chunk: many chunks
    rng = np.random.default_rng(3)
    X64 = rng.standard_normal((1001, d)) * np.exp(3 * rng.standard_normal(d)) + 1e3
    X = np.asarray(X64.astype(np.float32), order=order)
    whole = X.astype(np.float64, order="C")
    rows = rng.random(1001) < 0.7
    for index, part in ((None, whole), (rows, whole[rows])):
        mean, scale = feature_scaling(Problem(X, np.zeros((1001, 1))), index)
        assert np.array_equal(mean.ravel(), part.mean(axis=0))
        assert np.array_equal(scale.ravel(), part.std(axis=0))
        scaled = copy_rows(X, index, (mean, scale), np.float32)
        assert scaled.flags.c_contiguous and scaled.dtype == np.float32
        assert np.array_equal(scaled, ((part - mean) / scale).astype(np.float32))


def test_the_callers_x_is_read_only_to_a_run():
    """A run (with minibatches, a split and scaling) leaves the caller's arrays as they were."""
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((500, 4), dtype=np.float32), (rng.random(500) > 0.5) * 1.0
    before = X.copy(), y.copy()
    for options in ({}, {"batch_size": 64, "val_split": 0.2, "standardize": True}):
        xptrain.train(X, y, dtype="float32", epochs=2, **options)
        assert np.array_equal(X, before[0]) and np.array_equal(y, before[1])


def _placed_x(name: str, X: np.ndarray) -> object:
    bk = backend_named(name)
    problem = make_problem(X, (X[:, 0] > 0) * 1.0)
    params = [np.zeros((X.shape[1], 1)), np.zeros((1, 1))]
    with bk.float_scope("float32"):
        return place(problem, bk, "cpu", Options(dtype="float32"), params).X


def test_numpy_trains_on_the_callers_array():
    X = np.ones((100, 3), dtype=np.float32)
    assert _placed_x("numpy", X) is X


@pytest.mark.backends("torch")
def test_torch_on_the_cpu_shares_the_callers_array():
    X = np.ones((100, 3), dtype=np.float32)
    assert _placed_x("torch", X).data_ptr() == X.ctypes.data


def test_a_strided_x_is_copied_once_in_the_runs_dtype():
    """A Fortran-ordered or strided X becomes one C-contiguous array in the run's dtype (not
    a copy in its own dtype and another in the run's)."""
    X = np.asfortranarray(np.ones((100, 3)))
    placed = _placed_x("numpy", X)
    assert placed.flags.c_contiguous and placed.dtype == np.float32


@pytest.mark.backends("jax")
def test_jax_puts_x_on_the_cpu_with_one_copy():
    """An unaligned X is copied once into an aligned buffer that XLA then uses as it is; an
    aligned one is used as it is."""
    raw = np.empty(100 * 3 * 4 + 64, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64
    aligned = raw[start : start + 1200].view(np.float32).reshape(100, 3)
    aligned[...] = 1.0
    unaligned = raw[start + 4 : start + 1204].view(np.float32).reshape(100, 3)
    assert _placed_x("jax", aligned).unsafe_buffer_pointer() == aligned.ctypes.data
    on_device = _placed_x("jax", unaligned)
    assert on_device.unsafe_buffer_pointer() % 64 == 0
    assert np.array_equal(np.asarray(on_device), unaligned)


@pytest.mark.backends("dask")
def test_a_lazy_x_stays_lazy_through_a_split_and_scaling():
    """A Dask X (data larger than memory) is not copied into memory by val_split or
    standardize: its library evaluates them a chunk at a time when the run reads them."""
    from xptrain.api import training_rows
    from xptrain.backends import dask_data

    X, y = dask_data.lazy_linear(1000, 4)
    rows, held_out, _ = training_rows(
        Problem(X, y), Options(val_split=0.2, standardize=True, epochs=1)
    )
    assert not isinstance(rows.X, np.ndarray) and not isinstance(held_out.X, np.ndarray)
    assert rows.X.shape == (800, 4) and held_out.X.shape == (200, 4)


@pytest.mark.backends("jax")
def test_jax_still_refuses_float64_outside_its_x64_scope():
    """The one-copy path keeps Backend.asarray's refusal of a silent change of dtype."""
    from xptrain.errors import BackendUnavailable

    bk = backend_named("jax")
    with pytest.raises(BackendUnavailable, match="made float32 when float64 was asked for"):
        bk.asarray(np.ones((3, 2)), "float64", bk.native_device("cpu"))
