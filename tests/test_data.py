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
        (np.ones((4, 3)), np.ones((4, 2)), "shape"),
        (np.ones((4, 3)), np.array([0, 1, 0.5, 1]), "0 or 1"),
        (np.ones((4, 3)), np.array([0, 1, np.nan, 1]), "NaN"),
        (np.ones((2, 2)) * 1j, np.ones(2), "numeric"),
        ([[1, 2], [3]], [0, 1], "numeric"),
    ],
)
def test_refused(X, y, message):
    with pytest.raises(InvalidInput, match=message):
        make_problem(X, y)


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
    np.save(tmp_path / "y.npy", np.full(100, 2.0))
    with pytest.raises(InvalidInput, match="labels must be 0 or 1"):
        data.load(tmp_path)
    np.save(tmp_path / "X.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInput, match=r"not a numeric \.npy pair"):
        data.load(tmp_path)
