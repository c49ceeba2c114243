"""Writing files whole or not at all, and refusing bad output names and bad .npz files with the
exact message: the tests that kill core/files.py's mutants (``tox -e mutate``)."""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xptrain import files
from xptrain.errors import InvalidInput


def _refused(message: str):
    return pytest.raises(InvalidInput, match=f"^{re.escape(message)}$")


def test_check_writable(tmp_path):
    target = tmp_path / "out.json"
    assert files.check_writable(str(target), "--json") == target
    with _refused("--json needs a file name"):
        files.check_writable("", "--json")
    with _refused(f"--json {str(tmp_path)!r} is a folder; give a file name"):
        files.check_writable(tmp_path, "--json")
    with _refused("--json '/dev/null' is not a regular file; give a file name"):
        files.check_writable("/dev/null", "--json")
    missing = tmp_path / "no" / "out.json"
    with _refused(f"--json {str(missing)!r}: folder {str(missing.parent)!r} does not exist"):
        files.check_writable(missing, "--json")
    long = tmp_path / ("x" * 300)
    with _refused(f"--json {str(long)!r}: File name too long"):
        files.check_writable(long, "--json")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_check_writable_refuses_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    with _refused(f"--json {str(ro / 'a')!r}: folder {str(ro)!r} is not writable"):
        files.check_writable(ro / "a", "--json")


def test_check_output_dir(tmp_path):
    assert files.check_output_dir(tmp_path, "--out") == tmp_path
    assert files.check_output_dir(str(tmp_path / "new"), "--out") == tmp_path / "new"
    (tmp_path / "f").write_text("")
    with _refused(f"--out {str(tmp_path / 'f')!r} is a file, not a folder"):
        files.check_output_dir(tmp_path / "f", "--out")
    deep = tmp_path / "a" / "b"
    with _refused(f"--out {str(deep)!r}: folder {str(deep.parent)!r} does not exist"):
        files.check_output_dir(deep, "--out")


def test_write_all_writes_every_file_with_ordinary_permissions(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    b.write_text("old")
    files.write_all([(a, lambda t: Path(t).write_text("A")), (str(b), files.json_writer([1]))])
    assert a.read_text() == "A" and b.read_text() == "[\n  1\n]\n"
    mask = os.umask(0o022)
    try:
        files.atomic_write(a, lambda t: Path(t).write_text("B"))
    finally:
        os.umask(mask)
    assert a.stat().st_mode & 0o777 == 0o644 and a.read_text() == "B"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_write_all_writes_none_when_one_writer_fails(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old")

    def fail(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.write_all([(a, lambda t: Path(t).write_text("new")), (b, fail)])
    assert a.read_text() == "old" and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # no temporary left


def test_write_all_writes_a_link_through_to_its_target(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    files.atomic_write(link, files.json_writer({"a": 1}))
    assert link.is_symlink() and json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]


def test_json_writer_refuses_nan():
    with pytest.raises(ValueError):
        files.json_writer({"loss": float("nan")})


def test_umask_is_read_and_left_as_it_was():
    before = os.umask(0o027)
    try:
        assert files._umask() == 0o027 and files._umask() == 0o027
    finally:
        os.umask(before)


def test_parse_toml():
    assert files.parse_toml("a = 1\n[b]\nc = [1, 2]") == {"a": 1, "b": {"c": [1, 2]}}
    with _refused("not valid TOML (nested too deeply)"):
        files.parse_toml("a = " + "[" * 100_000 + "]" * 100_000)


def test_size():
    assert [files._size(n) for n in (0, 999, 1000, 1_234_567, 5e9, 2.5e12, 7e15)] == [
        "0 B",
        "999 B",
        "1 kB",
        "1.23 MB",
        "5 GB",
        "2.5 TB",
        "7e+03 TB",
    ]


def test_load_npz_reads_every_array(tmp_path):
    path = tmp_path / "d.npz"
    np.savez_compressed(path, X=np.arange(6.0).reshape(3, 2), y=np.array([1, 0, 1]))
    arrays = files.load_npz(path, "data")
    assert sorted(arrays) == ["X", "y"] and np.array_equal(arrays["y"], [1, 0, 1])


def test_load_npz_refusals(tmp_path):
    missing = tmp_path / "none.npz"
    with _refused(f"data {str(missing)!r} does not exist (or is not a file)"):
        files.load_npz(missing, "data")
    with _refused(f"file {str(tmp_path)!r} does not exist (or is not a file)"):
        files.load_npz(tmp_path)
    text = tmp_path / "t.npz"
    text.write_text("hello")
    with _refused(f"data {str(text)!r} is not a valid .npz file (not a zip archive)"):
        files.load_npz(text, "data")
    obj = tmp_path / "o.npz"
    np.savez(obj, a=np.array([{"x": 1}], dtype=object))
    with _refused(
        f"data {str(obj)!r} holds object arrays, which xptrain never unpickles; "
        "save plain numeric arrays"
    ):
        files.load_npz(obj, "data")
    not_npy = tmp_path / "z.npz"
    with zipfile.ZipFile(not_npy, "w") as z:
        z.writestr("a.npy", b"not an npy file at all")
    with pytest.raises(InvalidInput, match=f"^data {re.escape(repr(str(not_npy)))} is not a valid"):
        files.load_npz(not_npy, "data")


def test_load_npz_refuses_an_array_claiming_more_than_it_holds(tmp_path):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros(1000))
    path = tmp_path / "lie.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("X.npy", buf.getvalue()[:200])  # the header says 8000 bytes of data
    header = len(buf.getvalue()) - 8000
    with _refused(
        f"data {str(path)!r} is not a valid .npz file (X.npy declares a float64 array of "
        f"shape (1000,), {files._size(header + 8000)}, but holds 200 B)"
    ):
        files.load_npz(path, "data")
    exact = tmp_path / "exact.npz"
    with zipfile.ZipFile(exact, "w") as z:
        z.writestr("X.npy", buf.getvalue())
    assert files.load_npz(exact)["X"].shape == (1000,)


def test_load_npz_refuses_a_bomb_past_the_ratio(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "SMALL_INFLATION", 1000)
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, X=np.zeros(100_000))
    with zipfile.ZipFile(path) as z:
        (info,) = z.infolist()
    ratio = info.file_size / info.compress_size
    assert ratio > 100
    with _refused(
        f"data {str(path)!r} would inflate from {files._size(info.compress_size)} to "
        f"{files._size(info.file_size)} ({ratio:.0f}x); xptrain inflates compressed arrays "
        "beyond 1 kB only up to 100x (a zip bomb inflates ~1000x); if the data really is that "
        "sparse, save it uncompressed (np.savez) or as a folder of X.npy and y.npy"
    ):
        files.load_npz(path, "data")
    # the same inflation under the threshold, or stored uncompressed, is read
    monkeypatch.setattr(files, "SMALL_INFLATION", info.file_size)
    assert files.load_npz(path)["X"].shape == (100_000,)
    monkeypatch.setattr(files, "SMALL_INFLATION", 1000)
    monkeypatch.setattr(files, "MAX_RATIO", int(ratio) + 1)
    assert files.load_npz(path)["X"].shape == (100_000,)
    stored = tmp_path / "stored.npz"
    np.savez(stored, X=np.zeros(100_000))
    assert files.load_npz(stored)["X"].shape == (100_000,)


def test_temporaries_are_hidden_beside_the_target_with_its_suffix(tmp_path):
    seen = []
    files.atomic_write(
        tmp_path / "r.json", lambda t: (seen.append(Path(t)), Path(t).write_text(""))
    )
    (tmp,) = seen
    assert tmp.parent == tmp_path and tmp.name.startswith(".xpt-") and tmp.suffix == ".json"


def test_an_unwritable_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(files.os, "access", lambda *a: False)
    with _refused(f"--json {str(tmp_path / 'a')!r}: folder {str(tmp_path)!r} is not writable"):
        files.check_writable(tmp_path / "a", "--json")


def test_a_damaged_member_is_not_a_valid_npz(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.arange(1000.0))
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0xFF  # a byte of the array's data: the zip's CRC no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises(
        InvalidInput, match=f"^data {re.escape(repr(str(path)))} is not a valid .npz"
    ):
        files.load_npz(path, "data")


def test_a_damaged_compressed_header_is_not_a_valid_npz(tmp_path):
    path = tmp_path / "d.npz"
    np.savez_compressed(path, X=np.arange(1000.0))
    raw = bytearray(path.read_bytes())
    raw[200:240] = b"\x00" * 40  # inside the deflated data
    path.write_bytes(bytes(raw))
    with pytest.raises(InvalidInput, match=r"is not a valid \.npz"):
        files.load_npz(path, "data")


def test_a_version_2_header_claiming_too_much_is_refused(tmp_path):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros(1000), version=(2, 0))
    path = tmp_path / "lie2.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("X.npy", buf.getvalue()[:200])
    with pytest.raises(InvalidInput, match="declares a float64 array of shape"):
        files.load_npz(path, "data")
