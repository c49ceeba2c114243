"""Host-side problems: the seed's initialisation, validation and file loading."""

from __future__ import annotations

import numpy as np
import pytest

from xptrain import InvalidInput, load, make_problem
from xptrain.data import SEED_X, SEED_Y, initial_weights


def test_initial_weights_follow_the_seed_rule_without_touching_global_state():
    state = np.random.get_state()
    W = initial_weights(3, 1)
    assert np.array_equal(np.random.get_state()[1], state[1])
    np.random.seed(1)
    assert np.array_equal(W, 2 * np.random.random((3, 1)) - 1)
    np.random.set_state(state)


def test_problem_is_float64_and_y_a_column():
    p = make_problem(SEED_X, SEED_Y.ravel())
    assert p.X.dtype == p.y.dtype == np.float64
    assert p.y.shape == (4, 1) and p.W is None and p.b is None
    assert make_problem([[1, 0], [0, 1]], [True, False]).y.ravel().tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    "X, y, message",
    [
        (np.ones((4, 3, 1)), np.ones(4), "2-D"),
        (np.ones((4, 0)), np.ones(4), "empty"),
        (np.ones((4, 3)), np.ones((4, 2, 1)), "shape"),
        (np.ones((4, 3)), np.ones((4, 0)), "shape"),
        (np.ones((4, 3)), np.ones(3), "rows but y has"),
        (np.ones((4, 3)), np.array([0, 1, np.nan, 1]), "NaN"),
        (np.ones((2, 2)) * 1j, np.ones(2), "numeric"),
        ([[1, 2], [3]], [0, 1], "numeric"),
    ],
)
def test_refused(X, y, message):
    with pytest.raises(InvalidInput, match=message):
        make_problem(X, y)


def test_y_is_any_finite_target_n_by_k():
    """Which values a target may take is the loss's check: the data takes any finite y."""
    X = np.ones((4, 3))
    assert make_problem(X, [0, 1, 0.5, -2]).y.ravel().tolist() == [0, 1, 0.5, -2]
    assert make_problem(X, np.arange(4)).y.ravel().tolist() == [0, 1, 2, 3]
    y = np.arange(12.0).reshape(4, 3) / 7
    p = make_problem(X, y)
    assert p.y.shape == (4, 3) and p.y.dtype == np.float64 and np.array_equal(p.y, y)


# the first rows of blobs:6,3,5 and its labels, from the code before K was added (then the third
# value was the seed); blobs:N,D,2,SEED must give these same numbers
OLD_BLOBS_6_3_5_X = [
    [-0.20697472135806566, 0.14922988456202013, 0.8389418123749475],
    [1.9804556421367443, 1.2067790157510203, -1.1431326223904152],
    [-1.3039378046142556, 0.666008849092813, 0.11268639886825206],
]
OLD_BLOBS_6_3_5_Y = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]


def test_blobs_with_two_classes_are_the_former_blobs():
    p = load("blobs:6,3,2,5")
    assert p.X[:3].tolist() == OLD_BLOBS_6_3_5_X
    assert p.y.ravel().tolist() == OLD_BLOBS_6_3_5_Y
    assert float(p.X.sum()) == -1.2388677221287367
    old_default = load("blobs:6,3")  # K 2 and SEED 0 by default
    assert p.X.shape == (6, 3) and p.y.shape == (6, 1)
    for spec in ("blobs:6,3,2", "blobs:6,3,2,0"):
        same = load(spec)
        assert np.array_equal(same.X, old_default.X) and np.array_equal(same.y, old_default.y)
    assert old_default.X[0].tolist() == [
        1.4642142081073017,
        0.12895203646366415,
        -0.15147037060682822,
    ]


def test_blobs_with_k_classes():
    p = load("blobs:500,4,5,3")
    assert p.X.shape == (500, 4) and p.y.shape == (500, 1)
    assert np.unique(p.y).tolist() == [0, 1, 2, 3, 4]
    again = load("blobs:500,4,5,3")
    assert np.array_equal(p.X, again.X) and np.array_equal(p.y, again.y)
    assert not np.array_equal(p.X, load("blobs:500,4,5,4").X)
    means = np.array([p.X[p.y[:, 0] == c].mean(axis=0) for c in range(5)])
    assert np.allclose(np.linalg.norm(means, axis=1), 2, atol=0.5)  # centres 2 from the origin


@pytest.mark.parametrize(
    "spec",
    [
        "blobs:10,2,1",
        "blobs:10,2,0,3",
        "blobs:10,2,-3",
        "blobs:0,2",
        "blobs:10,0,3",
        "blobs:10",
        "blobs:10,2,3,4,5",
        "blobs:10,2,x",
        "blobs:10,2,3,-1",
    ],
)
def test_blobs_refuse_bad_counts(spec):
    with pytest.raises(InvalidInput, match=r"blobs:N,D\[,K\[,SEED\]\]") as err:
        load(spec)
    assert "\n" not in str(err.value)


@pytest.mark.needs("sklearn")
def test_digits10_has_all_ten_classes():
    p = load("digits10")
    assert p.X.shape == (1797, 64) and p.y.shape == (1797, 1)
    assert np.unique(p.y).tolist() == list(range(10))
    assert np.array_equal(load("digits").y, (p.y >= 5).astype(np.float64))  # still binary


@pytest.mark.needs("sklearn")
def test_diabetes_is_a_regression_set():
    p = load("diabetes")
    assert p.X.shape == (442, 10) and p.y.shape == (442, 1) and p.y.dtype == np.float64
    # scikit-learn's targets are whole numbers, but a regression's: 25 to 346, 214 values
    assert p.y.min() == 25 and p.y.max() == 346 and len(np.unique(p.y)) > 100
    assert not np.array_equal(p.X, np.round(p.X))  # features centred and scaled


def test_npz_with_n_by_k_float_targets(tmp_path):
    X = np.arange(20.0).reshape(5, 4)
    y = np.linspace(-1, 1, 15).reshape(5, 3)
    for name, target in [("k.npz", y), ("int.npz", np.arange(5)), ("col.npz", y[:, :1])]:
        np.savez(tmp_path / name, X=X, y=target)
        p = load(tmp_path / name)
        assert p.y.dtype == np.float64 and np.array_equal(p.y, target.reshape(5, -1))
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    assert np.array_equal(load(tmp_path).y, y)


def test_csv_with_float_targets_and_integer_labels(tmp_path):
    (tmp_path / "reg.csv").write_text("a,b,target\n1,2,0.25\n3,4,-17.5\n5,6,3e2\n")
    p = load(tmp_path / "reg.csv")
    assert p.X.tolist() == [[1, 2], [3, 4], [5, 6]] and p.y.ravel().tolist() == [0.25, -17.5, 300]
    (tmp_path / "cls.csv").write_text("1,2,0\n3,4,7\n5,6,2\n")
    assert load(tmp_path / "cls.csv").y.ravel().tolist() == [0, 7, 2]


def test_csv_with_and_without_header(tmp_path):
    body = "0,1,0,0\n1,0,0,1\n1,1,1,1\n0,1,1,0\n"
    (tmp_path / "plain.csv").write_text(body)
    (tmp_path / "header.csv").write_text("x1,x2,x3,label\n" + body)
    for name in ("plain.csv", "header.csv"):
        p = load(tmp_path / name)
        assert np.array_equal(p.X, SEED_X) and np.array_equal(p.y, SEED_Y)


def test_npz_never_unpickles(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, X=np.array([[1, 0]], dtype=object), y=np.array([1]), allow_pickle=True)
    with pytest.raises(InvalidInput, match="never unpickles"):
        load(path)


def test_seed_name():
    p = load("seed")
    assert np.array_equal(p.X, SEED_X)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(
    "row, chunk_rows, chunk",  # 95 rows: the last chunk (90-94) is a short one
    [(0, 10, 0), (43, 10, 40), (94, 10, 90), (0, None, 0), (94, None, 0)],
    ids=["first-chunk", "middle-chunk", "last-chunk", "one-chunk-start", "one-chunk-end"],
)
def test_a_bad_value_is_found_in_any_chunk(tmp_path, monkeypatch, bad, row, chunk_rows, chunk):
    """NaN or inf in the first, a middle or the last chunk, or in a file under one chunk
    (``chunk_rows`` None: the default size)."""
    from xptrain import data

    X = np.ones((95, 3), dtype=np.float32)
    X[row, 2] = bad
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", np.zeros(95))
    if chunk_rows is not None:
        monkeypatch.setattr(data, "CHECK_BYTES", chunk_rows * 3 * 4)
    with pytest.raises(InvalidInput, match=rf"NaN or inf \(from row {chunk}\)"):
        data.load(tmp_path)
    X[row, 2] = 1.0
    np.save(tmp_path / "X.npy", X)
    assert data.load(tmp_path).X.shape == (95, 3)


def test_a_data_folder_is_checked_a_chunk_at_a_time(tmp_path, monkeypatch):
    from xptrain import data
    from xptrain.errors import InvalidInput

    X = np.ones((100, 3), dtype=np.float32)
    X[77, 1] = np.nan
    np.save(tmp_path / "X.npy", X)
    with pytest.raises(InvalidInput, match=r"needs X\.npy and y\.npy; no .*y\.npy"):
        data.load(tmp_path)
    np.save(tmp_path / "y.npy", np.zeros(100))
    monkeypatch.setattr(data, "CHECK_BYTES", 10 * 3 * 4)  # ten rows at a time
    with pytest.raises(InvalidInput, match=r"NaN or inf \(from row 70\)"):
        data.load(tmp_path)
    np.save(tmp_path / "X.npy", np.ones((100, 3)))
    np.save(tmp_path / "y.npy", np.full(100, 2.0))  # any finite target: the loss checks it
    assert data.load(tmp_path).y.shape == (100, 1)
    np.save(tmp_path / "y.npy", np.full(99, 2.0))
    with pytest.raises(InvalidInput, match="X has 100 rows but y has 99"):
        data.load(tmp_path)
    np.save(tmp_path / "X.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInput, match=r"not a numeric \.npy pair"):
        data.load(tmp_path)


@pytest.mark.parametrize("header", ["a,b,y\n", ""])
def test_a_csv_error_names_the_line_and_column_as_an_editor_counts(header, tmp_path):
    path = tmp_path / "d.csv"
    path.write_text(header + "1,2,0\n3,4,1\n5,x,1\n")
    with pytest.raises(InvalidInput, match=f"at line {3 + bool(header)}, column 2"):
        load(str(path))
