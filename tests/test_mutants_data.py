"""Data validation as a user meets it: what is accepted (and as what), and each refusal's
message: the tests that kill core/data.py's mutants (``tox -e mutate``)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from xptrain import data
from xptrain.errors import InvalidInput


def _refused(message: str):
    return pytest.raises(InvalidInput, match=f"^{re.escape(message)}$")


def test_make_problem_accepts_and_converts():
    p = data.make_problem([[1, 2], [3, 4], [5, 6]], [True, False, True], W=[0.5, 1], b=[[2]])
    assert p.X.dtype == np.float64 and p.X.tolist() == [[1, 2], [3, 4], [5, 6]]
    assert p.y.shape == (3, 1) and p.y[:, 0].tolist() == [1, 0, 1]
    assert p.W.shape == (2, 1) and p.b == 2.0 and isinstance(p.b, float)
    assert data.make_problem(np.ones((2, 1)), np.ones((2, 3))).y.shape == (2, 3)
    assert data.make_problem(np.ones((2, 1)), [0, 1], b=np.float32(1.5)).b == 1.5
    assert data.make_problem(np.ones((2, 1)), [0, 1], W=[[1.0]]).W.tolist() == [[1.0]]


EMPTY = "it needs at least one row and column"
Y_SHAPES = "y must have shape (N,), (N, 1) or (N, K), got"
W_SHAPES = "W must have shape (2, 1) or (2,) for D=2, got"
B_SHAPES = "b must be a scalar, (1,) or (1, 1), got shape"
ONES = np.ones((2, 2))


@pytest.mark.parametrize(
    ("X", "y", "extra", "message"),
    [
        (np.ones(3), [0, 1, 0], {}, "X must be 2-D (N samples × D features), got shape (3,)"),
        (np.ones((0, 2)), [], {}, f"X is empty (shape (0, 2)); {EMPTY}"),
        (np.ones((2, 0)), [0, 1], {}, f"X is empty (shape (2, 0)); {EMPTY}"),
        (ONES, [0, 1, 1], {}, "X has 2 rows but y has 3; they must match"),
        (ONES, np.ones((2, 1, 1)), {}, f"{Y_SHAPES} (2, 1, 1)"),
        (ONES, np.ones((2, 0)), {}, f"{Y_SHAPES} (2, 0)"),
        (ONES, [0, 1], {"W": np.ones((2, 2))}, f"{W_SHAPES} (2, 2)"),
        (ONES, [0, 1], {"W": np.ones(3)}, f"{W_SHAPES} (3,)"),
        (ONES, [0, 1], {"b": [1.0, 2.0]}, f"{B_SHAPES} (2,)"),
        (ONES, [0, 1], {"b": np.ones((1, 1, 1))}, f"{B_SHAPES} (1, 1, 1)"),
        (np.array([["a", "b"]]), [0], {}, "X must be numeric (int or float), got dtype <U1"),
        (ONES, [0, np.nan], {}, "y holds NaN or inf; clean the data first"),
        (np.array([[1.0, np.inf]]), [0], {}, "X holds NaN or inf; clean the data first"),
        (np.ones((1, 1)), [0], {"W": [[np.nan]]}, "W holds NaN or inf; clean the data first"),
    ],
)
def test_make_problem_refusals(X, y, extra, message):
    with _refused(message):
        data.make_problem(X, y, **extra)


def test_a_ragged_list_is_not_a_numeric_array():
    with pytest.raises(InvalidInput, match=r"^X is not a numeric array: "):
        data.make_problem([[1, 2], [3]], [0, 1])


def test_split():
    p = data.make_problem(np.arange(20.0).reshape(10, 2), np.arange(10.0), W=[1.0, 2.0], b=0.5)
    train, val = data.split(p, 0.3, seed=4)
    assert len(val.y) == 3 and len(train.y) == 7
    assert sorted([*train.y[:, 0], *val.y[:, 0]]) == list(range(10))
    assert list(train.y[:, 0]) == sorted(train.y[:, 0]) and list(val.y[:, 0]) == sorted(val.y[:, 0])
    assert np.array_equal(train.X[:, 0], 2 * train.y[:, 0])  # rows kept whole
    assert train.W.tolist() == [[1.0], [2.0]] and train.b == 0.5 and val.W is None
    again = data.split(p, 0.3, seed=4)[1]
    assert np.array_equal(again.y, val.y)
    assert not all(np.array_equal(data.split(p, 0.3, seed=s)[1].y, val.y) for s in range(5, 10))
    with _refused(
        "a validation split of 0.01 of 10 samples leaves no validation sample; "
        "use more data or another fraction"
    ):
        data.split(p, 0.01, seed=0)
    with _refused(
        "a validation split of 0.99 of 10 samples leaves no training sample; "
        "use more data or another fraction"
    ):
        data.split(p, 0.99, seed=0)


def test_initial_weights_and_batch_order_are_the_seeds_rules():
    np.random.seed(5)
    want = 2 * np.random.random((4, 1)) - 1
    assert np.array_equal(data.initial_weights(4, 5), want)
    order = data.batch_order(10, 3, 2)
    assert order.dtype == np.int32 and sorted(order) == list(range(10))
    assert np.array_equal(order, np.random.default_rng([3, 2]).permutation(10))


def test_standardize():
    p = data.make_problem([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]], [0, 1, 0])
    s = data.standardize(p)
    np.testing.assert_allclose(s.X[:, 0], [-(1.5**0.5), 0, 1.5**0.5], rtol=1e-15)
    assert s.X[:, 1].tolist() == [0, 0, 0]
    other = data.make_problem([[3.0, 7.0]], [1])
    np.testing.assert_allclose(data.standardize(other, like=p).X, [[0.0, 2.0]], rtol=1e-15)
    scaling = data.feature_scaling(p)
    assert scaling[0].shape == (1, 2) and scaling[1].tolist() == [[np.sqrt(8 / 3), 1.0]]
    assert np.array_equal(data.standardize(other, like=scaling).X, data.standardize(other, p).X)


def test_generators():
    p = data.load("linear:50,3,7")
    assert p.X.shape == (50, 3) and set(p.y[:, 0]) == {0.0, 1.0}
    assert np.array_equal(data.load("linear:50,3").X, data.load("linear:50,3,0").X)
    assert not np.array_equal(data.load("linear:50,3,1").X, p.X)
    b = data.load("blobs:60,2")
    assert b.X.shape == (60, 2) and set(b.y[:, 0]) == {0.0, 1.0}
    assert np.array_equal(data.load("blobs:60,2").X, data.load("blobs:60,2,2,0").X)
    k = data.load("blobs:300,5,4,1")
    assert set(k.y[:, 0]) == {0.0, 1.0, 2.0, 3.0}
    means = np.array([k.X[k.y[:, 0] == c].mean(axis=0) for c in range(4)])
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), 2.0, atol=0.5)
    two = data.load("blobs:400,3")
    centre = two.X[two.y[:, 0] == 1].mean(axis=0)
    np.testing.assert_allclose(np.linalg.norm(centre), 1.0, atol=0.2)
    np.testing.assert_allclose(two.X[two.y[:, 0] == 0].mean(axis=0), -centre, atol=0.3)
    assert data.load("seed").X.shape == (4, 3)


LINEAR = "give linear:N,D or linear:N,D,SEED with N, D ≥ 1, SEED ≥ 0"
BLOB_COUNT = "give blobs:N,D[,K[,SEED]], two to four integers (K default 2, SEED 0)"
BLOB_SIZES = "give blobs:N,D[,K[,SEED]] with N, D ≥ 1, K ≥ 2, SEED ≥ 0"
SPECS = (
    "use seed, linear:N,D[,SEED], blobs:N,D[,K[,SEED]], breast_cancer, digits, digits10, "
    "diabetes, a .npz or .csv file, or a folder of X.npy and y.npy"
)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("seed:1", "data 'seed:1': seed takes no parameters; give seed alone"),
        ("digits:x", "data 'digits:x': digits takes no parameters; give digits alone"),
        *((s, f"{s}: {LINEAR}") for s in ("linear:5", "linear:0,3", "linear:3,0")),
        *((s, f"{s}: {LINEAR}") for s in ("linear:3,2,-1", "linear:3,x", "linear:1,2,3,4")),
        *((s, f"{s}: {BLOB_COUNT}") for s in ("blobs:5", "blobs:1,2,3,4,5", "blobs:a,b")),
        *((s, f"{s}: {BLOB_SIZES}") for s in ("blobs:0,2", "blobs:2,0", "blobs:2,2,1")),
        ("blobs:2,2,2,-1", f"blobs:2,2,2,-1: {BLOB_SIZES}"),
        ("nothing", f"data 'nothing': {SPECS}"),
    ],
)
def test_spec_refusals(spec, message):
    with _refused(message):
        data.load(spec)


def test_smallest_generated_problems():
    assert data.load("linear:1,1").X.shape == (1, 1)
    assert data.load("blobs:1,1,2,0").X.shape == (1, 1)


def test_npz_files(tmp_path):
    path = tmp_path / "d.NPZ"
    with open(path, "wb") as f:
        np.savez(f, X=np.ones((3, 2)), y=np.array([0, 1, 1]), W=np.ones(2), b=np.array(0.5))
    p = data.load(path)  # the suffix in any case
    assert p.X.shape == (3, 2) and p.W.shape == (2, 1) and p.b == 0.5
    np.savez(tmp_path / "noy.npz", X=np.ones((3, 2)), Z=np.ones(1))
    with _refused(f"{tmp_path / 'noy.npz'}: needs arrays X and y, missing y; found X, Z"):
        data.load(tmp_path / "noy.npz")
    np.savez(tmp_path / "none.npz")
    with _refused(f"{tmp_path / 'none.npz'}: needs arrays X and y, missing X, y; found none"):
        data.load(tmp_path / "none.npz")


def test_csv_files(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n1,2,0\n3,4,1\n")
    p = data.load(path)
    assert p.X.tolist() == [[1, 2], [3, 4]] and p.y[:, 0].tolist() == [0, 1]
    path.write_text("\ufeff1,2,0\n3,4,1\n5,6,1\n")  # no header, Excel's BOM
    assert data.load(path).X.shape == (3, 2)
    path.write_text("x,y\n1,2\n3,oops\n")
    with _refused(
        f"{path}: not a numeric CSV (could not convert string 'oops' to float64 at line 3, "
        "column 2.)"
    ):
        data.load(path)
    path.write_text("1,2\n3,oops\n")
    with pytest.raises(InvalidInput, match="at line 2, column 2"):
        data.load(path)
    path.write_text("a,b\n")
    with _refused(f"{path}: holds no data rows"):
        data.load(path)
    path.write_text("1\n2\n")
    with _refused(f"{path}: needs at least 2 columns (features, then the label or target)"):
        data.load(path)
    with _refused(f"data file {str(tmp_path / 'no.csv')!r} does not exist (or is not a file)"):
        data.load(tmp_path / "no.csv")


def test_folders(tmp_path):
    np.save(tmp_path / "X.npy", np.arange(6, dtype=np.float32).reshape(3, 2))
    with _refused(f"data folder {str(tmp_path)!r} needs X.npy and y.npy; no {tmp_path / 'y.npy'}"):
        data.load(tmp_path)
    np.save(tmp_path / "y.npy", np.array([0.0, 1.0, 1.0]))
    p = data.load(tmp_path)
    assert p.X.shape == (3, 2) and p.y.shape == (3, 1) and p.X[2, 1] == 5
    np.save(tmp_path / "X.npy", np.ones(3))
    with _refused(f"{tmp_path / 'X.npy'}: needs a non-empty 2-D numeric array, got float64 (3,)"):
        data.load(tmp_path)
    np.save(tmp_path / "X.npy", np.ones((3, 0)))
    with _refused(f"{tmp_path / 'X.npy'}: needs a non-empty 2-D numeric array, got float64 (3, 0)"):
        data.load(tmp_path)
    np.save(tmp_path / "X.npy", np.array([["a"], ["b"], ["c"]]))
    with _refused(f"{tmp_path / 'X.npy'}: needs a non-empty 2-D numeric array, got <U1 (3, 1)"):
        data.load(tmp_path)
    np.save(tmp_path / "X.npy", np.array([[{}]] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInput, match=f"^{re.escape(str(tmp_path))}: not a numeric .npy pair"):
        data.load(tmp_path)


def test_a_folder_reports_the_chunk_holding_nan(tmp_path, monkeypatch):
    X = np.ones((10, 2))
    X[7, 1] = np.nan
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.zeros(10))
    monkeypatch.setattr(data, "CHECK_BYTES", 3 * 2 * 8)  # three rows at a time
    with _refused("X holds NaN or inf (from row 6); clean the data first"):
        data.load(tmp_path)


def test_generated_data_stays_the_same_from_version_to_version():
    """A spec names one data set: these sums were taken when the generators were written."""
    p = data.load("linear:200,3,5")
    assert (int(p.y.sum()), int(np.arange(200) @ p.y[:, 0])) == (99, 9962)
    np.testing.assert_allclose(p.X.sum(), -19.66773945313402, rtol=1e-12)
    for spec, labels, total, weighted in (
        ("blobs:200,3,4,5", 298, 19.349812120202834, 211.5924538696539),
        ("blobs:200,3,2,5", 98, 15.96606833208171, -110.252219542468),
    ):
        b = data.load(spec)
        assert int(b.y.sum()) == labels
        np.testing.assert_allclose([b.X.sum(), (b.X * b.y).sum()], [total, weighted], rtol=1e-12)


def test_one_validation_row_is_enough():
    p = data.make_problem(np.arange(20.0).reshape(10, 2), np.arange(10.0))
    train, val = data.split(p, 0.1, seed=0)
    assert len(val.y) == 1 and len(train.y) == 9


def test_b_is_named_in_its_refusal():
    with _refused("b holds NaN or inf; clean the data first"):
        data.make_problem(np.ones((1, 1)), [0], b=np.nan)


def test_standardize_keeps_w_and_b_and_scales_small_deviations():
    p = data.make_problem([[0.0], [1.0]], [0, 1], W=[2.0], b=3.0)
    s = data.standardize(p)
    assert s.W.tolist() == [[2.0]] and s.b == 3.0
    assert s.X[:, 0].tolist() == [-1.0, 1.0]  # std 0.5: divided by it, not by 1


def test_a_folder_is_memory_mapped_and_refuses_object_targets(tmp_path):
    np.save(tmp_path / "X.npy", np.ones((3, 2)))
    np.save(tmp_path / "y.npy", np.zeros(3))
    assert isinstance(data.load(tmp_path).X, np.memmap)
    np.save(tmp_path / "y.npy", np.array([{}, {}, {}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInput, match=f"^{re.escape(str(tmp_path))}: not a numeric .npy pair"):
        data.load(tmp_path)


def test_a_row_wider_than_a_chunk_is_checked_one_row_at_a_time(tmp_path, monkeypatch):
    X = np.ones((10, 2))
    X[7, 1] = np.inf
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.zeros(10))
    monkeypatch.setattr(data, "CHECK_BYTES", 8)  # less than a row
    with _refused("X holds NaN or inf (from row 7); clean the data first"):
        data.load(tmp_path)


def test_a_bad_npz_data_file_is_named_so(tmp_path):
    path = tmp_path / "d.npz"
    path.write_text("not a zip")
    with _refused(f"data file {str(path)!r} is not a valid .npz file (not a zip archive)"):
        data.load(path)


def test_csv_edge_cases(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("1,0\n2,1\n")
    p = data.load(path)  # two columns: one feature and the label
    assert p.X.tolist() == [[1.0], [2.0]] and p.y[:, 0].tolist() == [0.0, 1.0]
    path.write_bytes(b"1,0\n" * 5000 + b"\xff\xfe,1\n")  # past the first line's read
    with pytest.raises(InvalidInput, match=r"not a numeric CSV \('utf-8' codec can't decode"):
        data.load(path)


def test_a_csv_that_is_not_utf8_from_its_start_is_refused(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xff\xfe1,0\n")
    with pytest.raises(InvalidInput, match="not a numeric CSV"):
        data.load(path)


def test_without_scikit_learn_its_sets_say_how_to_get_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "sklearn", None)
    with _refused("data 'digits' ships with scikit-learn: pip install 'xptrain[datasets]'"):
        data.load("digits")


@pytest.mark.needs("sklearn")
def test_scikit_learns_sets():
    shapes = {n: data.load(n) for n in ("breast_cancer", "digits", "digits10", "diabetes")}
    assert shapes["breast_cancer"].X.shape == (569, 30)
    assert set(shapes["breast_cancer"].y[:, 0]) == {0.0, 1.0}
    assert shapes["digits"].X.shape == (1797, 64) and set(shapes["digits"].y[:, 0]) == {0.0, 1.0}
    assert shapes["digits"].y.sum() == (shapes["digits10"].y >= 5).sum()
    assert set(shapes["digits10"].y[:, 0]) == set(range(10))
    assert shapes["diabetes"].X.shape == (442, 10) and shapes["diabetes"].y.max() == 346.0


class _Lazy:
    """A stand-in for a lazy library's X (Dask's): not a NumPy array; indexing and arithmetic
    give new lazy arrays, its reductions NumPy values."""

    def __init__(self, a):
        self.a = np.asarray(a)

    def __getitem__(self, key):
        return _Lazy(self.a[key])

    def __sub__(self, other):
        return _Lazy(self.a - other)

    def __truediv__(self, other):
        return _Lazy(self.a / other)

    def mean(self, axis):
        return self.a.mean(axis=axis)

    def std(self, axis):
        return self.a.std(axis=axis)


# six rows, four features: a constant one, one of deviation below 1
X_LAZY = np.array(
    [
        [1.0, 2.0, 5.0, 0.1],
        [3.0, 2.0, 7.0, 0.4],
        [5.0, 2.0, 6.0, 0.2],
        [7.0, 2.0, 9.0, 0.3],
        [0.0, 2.0, 1.0, 0.9],
        [2.0, 2.0, 3.0, 0.5],
    ]
)
ROWS = np.array([True, False, True, True, False, True])


def test_a_lazy_x_is_scaled_by_its_own_reductions():
    p = data.Problem(_Lazy(X_LAZY), np.zeros((6, 1)))
    for rows, part in ((None, X_LAZY), (ROWS, X_LAZY[ROWS])):
        mean, scale = data.feature_scaling(p, rows)
        assert mean.shape == scale.shape == (1, 4)
        assert np.array_equal(mean[0], part.mean(axis=0))
        want = part.std(axis=0)
        assert want[1] == 0 and 0 < want[3] < 1
        want[1] = 1.0  # a constant feature: scaled to 0, not divided by 0
        assert np.array_equal(scale[0], want)


def test_a_lazy_x_stays_lazy_through_rows_of():
    W = np.ones((4, 1))
    y = np.arange(6.0).reshape(6, 1)
    p = data.Problem(_Lazy(X_LAZY), y, W, 0.5)
    scaling = data.feature_scaling(p)
    got = data.rows_of(p, ROWS, scaling)
    assert isinstance(got.X, _Lazy)
    assert np.array_equal(got.X.a, (X_LAZY[ROWS] - scaling[0]) / scaling[1])
    assert np.array_equal(got.y, y[ROWS]) and got.W is W and got.b == 0.5
    whole = data.rows_of(p)
    assert whole.X is p.X and whole.y is y and whole.W is W and whole.b == 0.5
    scaled = data.rows_of(p, scaling=scaling)
    assert np.array_equal(scaled.X.a, (X_LAZY - scaling[0]) / scaling[1])
    bare = data.rows_of(p, ROWS, weights=False)
    assert np.array_equal(bare.X.a, X_LAZY[ROWS]) and bare.W is None and bare.b is None


def test_rows_of_asked_for_nothing_copies_nothing():
    X = np.ones((4, 2), np.float32)
    y = np.arange(4.0).reshape(4, 1)
    W = np.ones((2, 1))
    p = data.Problem(X, y, W, 0.5)
    for same in (data.rows_of(p), data.rows_of(p, dtype="float32")):
        assert same.X is X and same.y is y and same.W is W and same.b == 0.5
    bare = data.rows_of(p, weights=False)
    assert bare.X is X and bare.y is y and bare.W is None and bare.b is None


def test_rows_of_copies_in_the_dtype_asked_float64_when_scaled(monkeypatch):
    monkeypatch.setattr(data, "CHUNK_BYTES", 2 * 4 * 8)  # two rows a chunk: three chunks
    X32 = np.arange(24, dtype=np.float32).reshape(6, 4) ** 1.5
    p = data.Problem(X32, np.zeros((6, 1)))
    got = data.rows_of(p, ROWS)
    assert got.X.dtype == np.float32 and np.array_equal(got.X, X32[ROWS])
    mean, scale = data.feature_scaling(p)
    want = (X32[ROWS].astype(np.float64) - mean) / scale
    scaled = data.rows_of(p, ROWS, (mean, scale))
    assert scaled.X.dtype == np.float64 and np.array_equal(scaled.X, want)
    scaled32 = data.rows_of(p, ROWS, (mean, scale), dtype="float32")
    assert scaled32.X.dtype == np.float32 and np.array_equal(scaled32.X, want.astype(np.float32))


def test_split_copies_both_parts_in_the_dtype_asked():
    p = data.make_problem(np.arange(40.0).reshape(10, 4), np.arange(10.0) % 2)
    train, val = data.split(p, 0.3, 5, dtype="float32")
    assert train.X.dtype == val.X.dtype == np.float32
    assert len(train.y) == 7 and len(val.y) == 3
    assert sorted(train.X[:, 0].tolist() + val.X[:, 0].tolist()) == p.X[:, 0].tolist()


def test_a_non_finite_0d_array_is_bad_at_its_first_and_only_place():
    assert data.first_non_finite(np.array(np.nan)) == 0
    assert data.first_non_finite(np.array(-np.inf, np.float32)) == 0
    assert data.first_non_finite(np.array(1.5)) is None


def test_non_numeric_targets_are_named():
    with _refused("y must be numeric (int or float), got dtype <U1"):
        data.make_problem([[1.0], [2.0]], ["a", "b"])
