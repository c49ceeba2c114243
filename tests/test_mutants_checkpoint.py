"""Checkpoints written, read back and refused, checked value by value and message by message: the
tests that kill core/checkpoint.py's mutants (``tox -e mutate``)."""

from __future__ import annotations

import hashlib
import json
import re
import socket
from dataclasses import replace

import numpy as np
import pytest

from xptrain import checkpoint as ck
from xptrain.data import SEED_X, SEED_Y, seed_problem
from xptrain.errors import InvalidInput, OptionError
from xptrain.options import Options

W = np.array([[0.5], [-1.25], [2.0]])
B = np.array([[0.125]])


def _refused(message: str, kind=InvalidInput):
    return pytest.raises(kind, match=f"^{re.escape(message)}$")


def _says(message: str):
    return pytest.raises(InvalidInput, match=re.escape(message))


def _ckpt(epoch=2, **changes):
    options = Options(epochs=10).for_labels(seed_problem().y)  # as a run records it: bce
    meta = {**options.to_json(), "data": ck.fingerprint(seed_problem())}
    base = ck.Checkpoint(
        epoch=epoch,
        params=[W, B],
        history={
            "loss": [0.75, 0.5, 0.25, 0.125][:epoch],
            "accuracy": [0.5, 1.0, 1.0, 1.0][:epoch],
        },
        meta=meta,
    )
    return replace(base, **changes)


def test_fingerprint_is_sha256_of_shapes_and_float64_bytes():
    p = seed_problem()
    digest = hashlib.sha256()
    for a in (p.X, p.y):
        digest.update(str(a.shape).encode())
        digest.update(np.ascontiguousarray(a, dtype=np.float64).tobytes())
    assert ck.fingerprint(p) == digest.hexdigest()[:16]
    other = replace(p, y=1 - p.y)
    assert ck.fingerprint(other) != ck.fingerprint(p)


def test_fingerprint_of_big_data_reads_it_in_pieces_alike():
    """More than 64 MiB of rows: hashed in pieces, the same digest as in one piece."""
    X = np.zeros((8_400_000, 1))
    X[-1, 0] = 1.0
    p = replace(seed_problem(), X=X, y=np.zeros((8_400_000, 1)))
    digest = hashlib.sha256()
    for a in (p.X, p.y):
        digest.update(str(a.shape).encode())
        digest.update(a.tobytes())
    assert ck.fingerprint(p) == digest.hexdigest()[:16]


def test_fingerprint_hashes_pieces_of_64_mib(monkeypatch):
    """A memory-mapped X is copied to float64 64 MiB at a time (8 Mi rows of one column), the
    rest last: memory bounded, yet no more pieces than that bound needs."""
    X = np.zeros((8_400_000, 1), np.float32)
    p = replace(seed_problem(), X=X, y=np.zeros((8_400_000, 1)))
    pieces = []
    contiguous = np.ascontiguousarray

    def spy(a, *args, **kwargs):
        pieces.append(len(a))
        assert len(pieces) <= 4, "more pieces than X and y need"
        return contiguous(a, *args, **kwargs)

    monkeypatch.setattr(np, "ascontiguousarray", spy)
    ck.fingerprint(p)
    assert pieces == [8 << 20, 8_400_000 - (8 << 20)] * 2


def test_path_for_latest_and_newest_valid(tmp_path):
    assert ck.path_for(tmp_path, 12) == tmp_path / "epoch-000012.npz"
    assert ck.latest(tmp_path) is None and ck.newest_valid(tmp_path) == (None, [])
    for name in ("epoch-000009.npz", "epoch-000010.npz", "epoch-2.npz", "epoch-000011.npz.corrupt"):
        (tmp_path / name).write_text("")
    (tmp_path / "epoch-x.npz").write_text("")
    assert ck.latest(tmp_path).name == "epoch-000010.npz"  # by number, not by name
    with pytest.raises(InvalidInput, match=r"epoch-000010\.npz' is not a valid \.npz file"):
        ck.newest_valid(tmp_path)  # none reads: the newest one's error


def test_a_folder_saves_reads_back_and_keeps_the_newest(tmp_path):
    with ck.Folder(tmp_path / "run", keep=2) as folder:
        owner = json.loads((tmp_path / "run" / ".xptrain.owner").read_text())
        assert owner["host"] == socket.gethostname() and owner["pid"] > 0
        for epoch in (1, 2, 3):
            folder.save(_ckpt(epoch, state=[np.full((3, 1), float(epoch))]))
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["epoch-000002.npz", "epoch-000003.npz", "history.jsonl"]
    log = (tmp_path / "run" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["first"] for line in log] == [0, 1, 2]
    back, skipped = ck.newest_valid(tmp_path / "run")
    assert skipped == [] and back.epoch == 3 and back.source.endswith("epoch-000003.npz")
    assert back.history == {"loss": [0.75, 0.5, 0.25], "accuracy": [0.5, 1.0, 1.0]}
    assert back.losses == [0.75, 0.5, 0.25]
    assert [p.tolist() for p in back.params] == [W.tolist(), B.tolist()]
    assert [s.tolist() for s in back.state] == [[[3.0], [3.0], [3.0]]]
    assert back.meta == _ckpt().meta
    older = ck.load(tmp_path / "run" / "epoch-000002.npz")
    assert older.losses == [0.75, 0.5] and older.state[0][0, 0] == 2.0


def test_keep_none_keeps_all_and_an_empty_new_folder_is_removed(tmp_path):
    with ck.Folder(tmp_path / "all", keep=None) as folder:
        for epoch in (1, 2, 3, 4):
            folder.save(_ckpt(epoch))
    assert len(list((tmp_path / "all").glob("epoch-*.npz"))) == 4
    with ck.Folder(tmp_path / "empty"):
        pass
    assert not (tmp_path / "empty").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / ".xpt-half").write_text("")  # a killed run's temporary
    with ck.Folder(tmp_path / "kept"):
        pass
    assert (tmp_path / "kept").is_dir() and list((tmp_path / "kept").iterdir()) == []


def test_a_held_folder_is_refused_naming_its_owner(tmp_path):
    with ck.Folder(tmp_path) as folder:
        folder.save(_ckpt(1))
        message = (
            f"checkpoint folder {str(tmp_path)!r} is in use by process "
            f"{json.loads((tmp_path / '.xptrain.owner').read_text())['pid']} (another xptrain "
            "run); wait for it or choose another --checkpoint-dir"
        )
        with _refused(message), ck.Folder(tmp_path):
            pass
        (tmp_path / ".xptrain.owner").write_text('{"pid": 7, "host": "elsewhere"}')
        with (
            pytest.raises(InvalidInput, match="in use by process 7 on elsewhere "),
            ck.Folder(tmp_path),
        ):
            pass
        (tmp_path / ".xptrain.owner").write_text("not json")
        with pytest.raises(InvalidInput, match="in use by another process "), ck.Folder(tmp_path):
            pass


def test_set_aside(tmp_path):
    with ck.Folder(tmp_path) as folder:
        folder.save(_ckpt(1))
        bad = tmp_path / "epoch-000001.npz"
        assert folder.set_aside([bad]) == [tmp_path / "epoch-000001.npz.corrupt"]
    assert (tmp_path / "epoch-000001.npz.corrupt").exists() and not bad.exists()


def _write(tmp_path, history=None, **arrays):
    path = tmp_path / "epoch-000002.npz"
    base = {
        "format": np.array(2),
        "epoch": np.array(2),
        "param_0": W,
        "param_1": B,
        "meta": np.array(json.dumps({"lr": 0.1})),
    }
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    if history is not None:
        (tmp_path / "history.jsonl").write_text(history)
    return path


LOG2 = '{"first": 0, "loss": [0.5, 0.25]}\n'


def test_load_refusals(tmp_path):
    path = _write(tmp_path, LOG2, meta=None, param_1=None)
    with _refused(f"{path}: not an xptrain checkpoint (missing meta, param_1)"):
        ck.load(path)
    path = _write(tmp_path, LOG2, losses=None, format=np.array(1))
    with _refused(f"{path}: not an xptrain checkpoint (missing losses)"):
        ck.load(path)
    path = _write(tmp_path, LOG2, format=np.array(3))
    with _refused(f"{path}: checkpoint format 3, expected 2"):
        ck.load(path)
    path = _write(tmp_path, LOG2, format=np.array([2]))
    with _refused(f"{path}: checkpoint format [2], expected 2"):
        ck.load(path)
    path = _write(tmp_path, LOG2, param_0=W.astype(complex))
    with _refused(f"{path}: checkpoint holds complex parameters; xptrain trains real ones only"):
        ck.load(path)
    path = _write(tmp_path, LOG2, meta=np.array("{not json"))
    with pytest.raises(InvalidInput, match=f"^{re.escape(str(path))}: unreadable checkpoint \\("):
        ck.load(path)
    assert ck.load(_write(tmp_path, LOG2)).losses == [0.5, 0.25]


@pytest.mark.parametrize(
    ("arrays", "log", "shown"),
    [
        ({"epoch": np.array(3)}, LOG2, "epoch 3, 2 losses, 2 parameter arrays, finite: True"),
        ({"epoch": np.array(0)}, LOG2, "epoch 0, 0 losses, 2 parameter arrays, finite: True"),
        ({"epoch": np.array(2.0)}, LOG2, "epoch 2.0, 0 losses, 2 parameter arrays, finite: True"),
        ({"param_2": W}, LOG2, "epoch 2, 2 losses, 3 parameter arrays, finite: True"),
        ({"param_1": B[0]}, LOG2, "epoch 2, 2 losses, 2 parameter arrays, finite: True"),
        ({"param_0": W * np.inf}, LOG2, "epoch 2, 2 losses, 2 parameter arrays, finite: False"),
        ({"state_0": W * np.nan}, LOG2, "epoch 2, 2 losses, 2 parameter arrays, finite: False"),
        (
            {},
            '{"first": 0, "loss": [0.5, NaN]}\n',
            "epoch 2, 2 losses, 2 parameter arrays, finite: False",
        ),
        ({}, '{"first": 0, "loss": [0.5, 0.25], "val_loss": [1]}\n', "epoch 2, 2 losses"),
    ],
)
def test_inconsistent_checkpoints_are_refused(tmp_path, arrays, log, shown):
    path = _write(tmp_path, log, **arrays)
    with pytest.raises(
        InvalidInput, match=f"^{re.escape(f'{path}: inconsistent checkpoint ({shown}')}"
    ):
        ck.load(path)


def test_empty_metadata_is_refused(tmp_path):
    path = _write(tmp_path, LOG2, meta=np.array("[]"))
    with _refused(
        f"{path}: inconsistent checkpoint (epoch 2, 2 losses, 2 parameter arrays, finite: True, "
        "metadata: False)"
    ):
        ck.load(path)


def test_the_history_log(tmp_path):
    two = '{"first": 0, "loss": [0.5], "accuracy": [0]}\n'
    two += '{"first": 1, "loss": [0.25], "accuracy": [1]}\n'
    back = ck.load(_write(tmp_path, two))
    assert back.history == {"loss": [0.5, 0.25], "accuracy": [0.0, 1.0]}
    more = LOG2 + '{"first": 2, "loss": [0.125]}\n{"torn'
    assert ck.load(_write(tmp_path, more)).losses == [0.5, 0.25]  # lines past it: not read
    gap = '{"first": 0, "loss": [0.5]}\n{"first": 2, "loss": [0.25]}\n'
    path = _write(tmp_path, gap)
    log = str(tmp_path / "history.jsonl")
    # (load wraps this message in "PATH: unreadable checkpoint (...)": searched, not matched)
    with _says(f"{path}: line 2 of its history log {log!r} is not the next stretch of epochs"):
        ck.load(path)
    path = _write(tmp_path, '{"loss": [0.5, 0.25]}\n')
    with _says(f"{path}: line 1 of its history log {log!r} is not the next stretch of epochs"):
        ck.load(path)
    (tmp_path / "history.jsonl").unlink()
    with _says(f"{path}: its history log {log!r} is unreadable ("):
        ck.load(path)


def test_a_format_1_checkpoint_holds_its_history(tmp_path):
    path = _write(
        tmp_path,
        None,
        format=np.array(1),
        losses=np.array([0.5, 0.25]),
        val_loss=np.array([0.75, 0.5]),
        other=np.array([1.0]),
    )
    back = ck.load(path)
    assert back.history == {"loss": [0.5, 0.25], "val_loss": [0.75, 0.5]}


def test_check_compatible(tmp_path):
    p = seed_problem()
    ok = Options(epochs=10)
    ck.check_compatible(_ckpt(2), p, ok)
    ck.check_compatible(_ckpt(2, meta={**_ckpt().meta, "unknown": 1}), p, ok)
    where = f"{tmp_path}/e.npz: "
    with _refused(
        f"{where}checkpoint was made on other data; resume with the same data", OptionError
    ):
        ck.check_compatible(_ckpt(2, source=f"{tmp_path}/e.npz"), replace(p, y=1 - p.y), ok)
    with _refused("checkpoint was made with lr 0.1; resume with the same lr", OptionError):
        ck.check_compatible(_ckpt(2, meta={**_ckpt().meta, "lr": 0.1}), p, ok)
    with _refused(
        "checkpoint already holds 2 epochs; ask for more than that with epochs", OptionError
    ):
        ck.check_compatible(_ckpt(2), p, Options(epochs=2))
    with _refused("checkpoint parameters do not fit this data and model"):
        ck.check_compatible(_ckpt(2, params=[W[:2], B]), p, ok)
    with _refused("checkpoint's optimizer state does not fit the sgd optimizer and this model"):
        ck.check_compatible(_ckpt(2, state=[W]), p, ok)
    with _refused("start: checkpoint holds complex parameters; xptrain trains real ones only"):
        ck.check_compatible(_ckpt(2, params=[W.astype(complex), B]), p, ok)


def test_old_checkpoints_ran_with_the_old_defaults():
    p = seed_problem()
    meta = {k: v for k, v in _ckpt().meta.items() if k not in ck._OLD_DEFAULTS}
    ck.check_compatible(_ckpt(2, meta=meta), p, Options(epochs=10))
    with pytest.raises(OptionError, match="made with optimizer sgd; resume with the same"):
        ck.check_compatible(_ckpt(2, meta=meta), p, Options(epochs=10, optimizer="adam"))
    assert SEED_X.shape == (4, 3) and SEED_Y.shape == (4, 1)


def test_check_compatible_with_an_mlp_and_momentum():
    p = seed_problem()
    options = Options(epochs=10, model="mlp", hidden=(5,), optimizer="momentum")
    params = [np.zeros((3, 5)), np.zeros((1, 5)), np.zeros((5, 1)), np.zeros((1, 1))]
    meta = {**options.for_labels(p.y).to_json(), "data": ck.fingerprint(p)}
    state = [np.ones_like(a) for a in params]
    ckpt = ck.Checkpoint(2, params, {"loss": [1.0, 0.5]}, meta, state)
    ck.check_compatible(ckpt, p, options)
    with _refused(
        "checkpoint's optimizer state does not fit the momentum optimizer and this model"
    ):
        ck.check_compatible(replace(ckpt, state=state[:2]), p, options)
    with _refused("checkpoint parameters do not fit this data and model"):
        ck.check_compatible(replace(ckpt, params=params[:2], state=state[:2]), p, options)


def test_fingerprint_is_of_the_values_not_their_dtype():
    """A folder's X stays memory-mapped in its own dtype: float32 data is hashed as the same
    float64 values, as when it came from a file of float64."""
    p = seed_problem()
    assert ck.fingerprint(replace(p, X=p.X.astype(np.float32))) == ck.fingerprint(p)


def test_a_checkpoint_file_holds_float64_arrays_and_sorted_metadata(tmp_path):
    path = tmp_path / "epoch-000001.npz"
    meta = {"z": 1, "a": 2}
    ckpt = ck.Checkpoint(1, [W.astype(np.float32), B], {"loss": [0.5]}, meta, [B.astype(int)])
    ck.save(path, ckpt)
    with np.load(path) as f:
        assert f["param_0"].dtype == np.float64 and f["state_0"].dtype == np.float64
        assert str(f["meta"]) == '{"a": 2, "z": 1}'
        assert int(f["format"]) == 2 and int(f["epoch"]) == 1


def test_save_refuses_complex_state_naming_the_file(tmp_path):
    path = tmp_path / "epoch-000001.npz"
    ckpt = _ckpt(1, state=[W.astype(complex)])
    with _refused(f"{path}: checkpoint holds complex parameters; xptrain trains real ones only"):
        ck.save(path, ckpt)
    assert not path.exists()


def test_load_refuses_complex_optimizer_state(tmp_path):
    path = _write(tmp_path, LOG2, state_0=W.astype(complex))
    with _refused(f"{path}: checkpoint holds complex parameters; xptrain trains real ones only"):
        ck.load(path)


def test_metadata_must_be_a_table(tmp_path):
    path = _write(tmp_path, LOG2, meta=np.array("[1]"))
    with _refused(
        f"{path}: inconsistent checkpoint (epoch 2, 2 losses, 2 parameter arrays, finite: True, "
        "metadata: False)"
    ):
        ck.load(path)
    path = _write(tmp_path, LOG2, epoch=np.array(3))
    with _refused(
        f"{path}: inconsistent checkpoint (epoch 3, 2 losses, 2 parameter arrays, finite: True, "
        "metadata: True)"
    ):
        ck.load(path)


def test_a_checkpoint_after_one_epoch_reads_back(tmp_path):
    with ck.Folder(tmp_path) as folder:
        folder.save(_ckpt(1))
    back = ck.load(tmp_path / "epoch-000001.npz")
    assert back.epoch == 1 and back.losses == [0.75]


def test_a_held_folder_is_refused_at_once(tmp_path):
    import time

    with ck.Folder(tmp_path):
        start = time.monotonic()
        with pytest.raises(InvalidInput, match="is in use by"), ck.Folder(tmp_path):
            pass
        assert time.monotonic() - start < 0.9  # no waiting for the lock
