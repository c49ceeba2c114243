"""A checkpoint folder belongs to one run: a second run at once is refused (naming the first's
process), a killed run's lock and temporary files do not outlive it, a corrupt latest checkpoint
is set aside for the newest readable one, old checkpoints are pruned, and the loss history lives
in a log beside them (so checkpoints stay one size), read back exactly, a torn last line
skipped."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from helpers import xptrain

from xptrain import checkpoint
from xptrain.api import train_problem
from xptrain.cli import main
from xptrain.commands import train as train_command
from xptrain.data import load
from xptrain.errors import InvalidInput
from xptrain.options import Options
from xptrain.reference import SEED_PRINTED_LOSSES

SEED_LINES = [f"Epoch: {i} Loss: {v!r}" for i, v in enumerate(SEED_PRINTED_LOSSES)]


def train(capsys, *args: str) -> tuple[int, str, str]:
    """``xptrain train ARGS`` in this process: (exit code, stdout, stderr)."""
    code = main(["train", *args])
    out, err = capsys.readouterr()
    return code, out, err


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_second_run_on_a_held_folder_is_refused_naming_the_owner(tmp_path):
    ck = tmp_path / "ck"
    with checkpoint.Folder(ck):  # this process holds it; the run below is another process
        held = names(ck)
        run = xptrain("train", "--checkpoint-dir", str(ck), "--resume", "--epochs", "3")
        assert names(ck) == held  # nothing written, nothing removed
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        f"xptrain train: error: checkpoint folder {str(ck)!r} is in use by process "
        f"{os.getpid()} (another xptrain run); wait for it or choose another --checkpoint-dir"
    ]
    assert not ck.exists()  # the holder made the folder and wrote nothing: it is gone again


def test_a_killed_runs_lock_and_temporary_files_do_not_outlive_it(tmp_path, capsys):
    ck = tmp_path / "ck"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from xptrain.checkpoint import Folder; "
            f"Folder({str(ck)!r}).__enter__(); "
            f"open({str(ck / '.xpt-half.npz')!r}, 'w').write('half a checkpoint'); "
            "print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert names(ck) == [".xpt-half.npz", ".xptrain.lock", ".xptrain.owner"]
    code, out, err = train(capsys, "--checkpoint-dir", str(ck), "--epochs", "4")
    assert code == 0, err
    assert out.splitlines() == SEED_LINES[:4]
    assert names(ck) == ["epoch-000004.npz", "history.jsonl"]


def test_a_corrupt_latest_checkpoint_falls_back_to_the_newest_readable_one(tmp_path, capsys):
    ck = tmp_path / "ck"
    code, _, err = train(
        capsys, "--checkpoint-dir", str(ck), "--epochs", "6", "--checkpoint-every", "2"
    )
    assert code == 0, err
    (ck / "epoch-000006.npz").write_bytes(b"cut short by a full disk")
    out_json = tmp_path / "r.json"
    code, _, err = train(
        capsys, "--checkpoint-dir", str(ck), "--resume", "--json", str(out_json), "--quiet"
    )
    assert code == 0, err
    assert err.splitlines() == [
        f"xptrain train: checkpoint '{ck / 'epoch-000006.npz'}' is not a valid .npz file (not "
        f"a zip archive); resuming from {ck / 'epoch-000004.npz'} (epoch 4) instead; set aside: "
        "epoch-000006.npz.corrupt"
    ]
    assert names(ck) == [  # the newest three kept
        "epoch-000002.npz",
        "epoch-000004.npz",
        "epoch-000006.npz.corrupt",
        "epoch-000020.npz",
        "history.jsonl",
    ]
    # the log's epochs 4 and 5 of the first run were replaced by the resumed run's
    assert json.loads(out_json.read_text())["losses"] == _straight_losses(20)


def _straight_losses(epochs: int) -> list[float]:
    """The losses of the seed's run of ``epochs`` epochs, uninterrupted."""
    return train_problem(load("seed"), *_numpy(), Options(epochs=epochs)).losses


def _numpy():
    from xptrain import backends

    return backends.get("numpy"), "cpu"


def test_only_the_newest_checkpoints_are_kept(tmp_path, capsys):
    every = ["--epochs", "6", "--checkpoint-every", "1"]
    for keep, kept in ((None, [4, 5, 6]), ("2", [5, 6]), ("all", [1, 2, 3, 4, 5, 6])):
        ck = tmp_path / f"keep-{keep}"
        extra = [] if keep is None else ["--keep-checkpoints", keep]
        code, _, err = train(capsys, "--checkpoint-dir", str(ck), *every, *extra)
        assert code == 0, err
        assert names(ck) == [f"epoch-{e:06d}.npz" for e in kept] + ["history.jsonl"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--checkpoint-dir", "{ck}", "--keep-checkpoints", "0"], "whole number ≥ 1 or all"),
        (["--checkpoint-dir", "{ck}", "--keep-checkpoints", "some"], "whole number ≥ 1 or all"),
        (["--keep-checkpoints", "2"], "need --checkpoint-dir"),
    ],
)
def test_keep_checkpoints_refusals_are_one_line(tmp_path, args, message):
    run = xptrain("train", *(a.format(ck=tmp_path / "ck") for a in args))
    assert run.returncode == 2
    assert len(run.stderr.splitlines()) == 1 and message in run.stderr, run.stderr
    assert not (tmp_path / "ck").exists()


def test_checkpoints_stay_one_size_and_the_log_holds_the_history(tmp_path, capsys):
    ck = tmp_path / "ck"
    args = ["--checkpoint-dir", str(ck), "--checkpoint-every", "1", "--keep-checkpoints", "all"]
    code, _, err = train(capsys, *args, "--epochs", "150", "--lr", "0.1", "--quiet")
    assert code == 0, err
    sizes = {p.stat().st_size for p in ck.glob("epoch-*.npz")}
    assert len(sizes) == 1  # the 150th as small as the first: no history inside
    lines = (ck / "history.jsonl").read_text().splitlines()
    eighth = checkpoint.load(ck / "epoch-000008.npz")
    assert len(lines) == 150 and json.loads(lines[7]) == {
        "first": 7,
        "loss": [eighth.losses[7]],
        "accuracy": [eighth.history["accuracy"][7]],
    }
    assert checkpoint.load(ck / "epoch-000150.npz").losses == _straight(150, lr=0.1)


def _straight(epochs: int, **options) -> list[float]:
    return train_problem(load("seed"), *_numpy(), Options(epochs=epochs, **options)).losses


def test_a_torn_last_log_line_is_skipped_and_replaced_on_resume(tmp_path, capsys):
    ck = tmp_path / "ck"
    code, _, err = train(
        capsys, "--checkpoint-dir", str(ck), "--epochs", "4", "--checkpoint-every", "2"
    )
    assert code == 0, err
    with open(ck / "history.jsonl", "a") as log:
        log.write('{"first": 4, "loss": [0.35')  # killed mid-line
    assert checkpoint.load(ck / "epoch-000004.npz").losses == _straight(4)
    out_json = tmp_path / "r.json"
    code, out, err = train(capsys, "--checkpoint-dir", str(ck), "--resume", "--json", str(out_json))
    assert code == 0, err
    assert out.splitlines() == SEED_LINES[4:]
    assert json.loads(out_json.read_text())["losses"] == _straight(20)
    assert (ck / "history.jsonl").read_text().endswith("]}\n")


def test_a_checkpoint_whose_log_lacks_its_epochs_is_not_resumed(tmp_path, capsys):
    ck = tmp_path / "ck"
    code, _, err = train(
        capsys, "--checkpoint-dir", str(ck), "--epochs", "4", "--checkpoint-every", "2"
    )
    assert code == 0, err
    lines = (ck / "history.jsonl").read_text().splitlines(keepends=True)
    (ck / "history.jsonl").write_text(lines[0])  # epochs 0, 1 only
    code, _, err = train(capsys, "--checkpoint-dir", str(ck), "--resume", "--epochs", "6")
    assert code == 0, err
    assert "epoch-000004.npz" in err and "resuming from" in err and "(epoch 2)" in err


def test_an_old_checkpoint_holding_its_history_still_resumes_exactly(tmp_path, capsys):
    ck = tmp_path / "ck"
    code, _, err = train(capsys, "--checkpoint-dir", str(ck), "--epochs", "7")
    assert code == 0, err
    ckpt = checkpoint.load(ck / "epoch-000007.npz")
    with np.load(ck / "epoch-000007.npz", allow_pickle=False) as npz:
        arrays = dict(npz)
    # as format 1 wrote it: the losses inside, no log
    np.savez(ck / "epoch-000007.npz", **arrays | {"format": np.array(1), "losses": ckpt.losses})
    (ck / "history.jsonl").unlink()
    out_json = tmp_path / "r.json"
    code, out, err = train(capsys, "--checkpoint-dir", str(ck), "--resume", "--json", str(out_json))
    assert code == 0, err
    assert out.splitlines() == SEED_LINES[7:]
    assert json.loads(out_json.read_text())["losses"] == _straight(20)
    assert checkpoint.load(ck / "epoch-000020.npz").losses == _straight(20)  # the log now


def test_complex_parameters_in_a_checkpoint_are_refused(tmp_path, capsys):
    ck = tmp_path / "ck"
    code, _, err = train(capsys, "--checkpoint-dir", str(ck), "--epochs", "3")
    assert code == 0, err
    with np.load(ck / "epoch-000003.npz", allow_pickle=False) as npz:
        arrays = dict(npz)
    np.savez(ck / "epoch-000003.npz", **arrays | {"param_0": arrays["param_0"] * (1 + 1j)})
    code, _, err = train(capsys, "--checkpoint-dir", str(ck), "--resume")
    assert code == 2
    assert len(err.splitlines()) == 1 and "complex parameters" in err, err


def test_complex_parameters_given_to_resume_from_python_are_refused(tmp_path):
    saved: list[checkpoint.Checkpoint] = []
    problem = load("seed")
    train_problem(problem, *_numpy(), Options(epochs=2), on_checkpoint=saved.append)
    ckpt = saved[-1]
    bad = checkpoint.Checkpoint(
        ckpt.epoch, [ckpt.params[0] * 1j, ckpt.params[1]], ckpt.history, ckpt.meta, ckpt.state
    )
    with pytest.raises(InvalidInput, match="complex parameters"):
        train_problem(problem, *_numpy(), Options(epochs=4), start=bad)
    with pytest.raises(InvalidInput, match="complex parameters"):
        checkpoint.save(tmp_path / "c.npz", bad)


def test_only_the_writing_rank_of_a_group_holds_the_folder(tmp_path, monkeypatch):
    ck = tmp_path / "ck"
    args = argparse.Namespace(
        checkpoint_dir=str(ck),
        checkpoint_every=None,
        keep_checkpoints=None,
        resume=True,
        distributed=True,
    )
    with checkpoint.Folder(ck):  # rank 0's, say
        monkeypatch.setenv("RANK", "1")
        with train_command._checkpointing(args) as (start, save):
            assert (start, save) == (None, None)  # reads, never locks or writes
        monkeypatch.setenv("RANK", "0")
        refused = pytest.raises(InvalidInput, match="in use by process")
        with refused, train_command._checkpointing(args):
            pass


def test_held_out_history_resumes_exactly_through_the_log(tmp_path, capsys):
    ck, data = tmp_path / "ck", ["--data", "linear:200,3", "--val-split", "0.25", "--quiet"]
    code, _, err = train(capsys, *data, "--checkpoint-dir", str(ck), "--epochs", "5")
    assert code == 0, err
    out_json = tmp_path / "r.json"
    code, _, err = train(
        capsys, *data, "--checkpoint-dir", str(ck), "--resume", "--json", str(out_json)
    )
    assert code == 0, err
    straight = train_problem(
        load("linear:200,3"), *_numpy(), Options(val_split=0.25), data="linear:200,3"
    )
    record = json.loads(out_json.read_text())
    assert record["losses"] == straight.losses
    assert record["val_losses"] == straight.val_losses
    assert record["val_accuracy"] == straight.val_accuracy
