"""Bring-your-own libraries that give only what the Array API standard promises: arrays back to
the host without DLPack or ``__array__``, and ``asarray`` that ignores ``dtype=``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import NAMESPACES, xptrain

from xptrain.backends.namespace import NamespaceBackend
from xptrain.errors import BackendUnavailable

LAST_EPOCH = "Epoch: 19 Loss: 0.203407060401"  # good_namespace's, as NumPy's


@pytest.fixture
def own(monkeypatch):
    """A bring-your-own backend of tests/namespaces, imported in this process."""
    monkeypatch.syspath_prepend(str(NAMESPACES))
    return NamespaceBackend


@pytest.mark.needs("array_api_strict")
@pytest.mark.parametrize("namespace", ["no_host_protocols", "no_dlpack"])
def test_train_brings_back_arrays_without_dlpack(namespace):
    result = xptrain("train", "--backend", namespace, extra_path=NAMESPACES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == LAST_EPOCH


@pytest.mark.needs("array_api_strict")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_to_numpy_goes_element_by_element_when_nothing_else_works(own, dtype):
    bk = own("no_host_protocols")
    x = bk.xp.asarray([[1.5, 2.0], [3.0, -4.25]], dtype=getattr(bk.xp, dtype))
    host = bk.to_numpy(x)
    assert host.dtype == dtype and host.tolist() == [[1.5, 2.0], [3.0, -4.25]]
    scalar = bk.to_numpy(bk.xp.sum(x))
    assert scalar.shape == () and scalar.dtype == dtype and float(scalar) == 2.25


@pytest.mark.needs("array_api_strict")
def test_to_numpy_refuses_what_is_no_array_naming_the_library(own):
    with pytest.raises(BackendUnavailable, match=r"^cannot bring no_host_protocols's arrays"):
        own("no_host_protocols").to_numpy(object())  # np.asarray would make a 0-d object array


@pytest.mark.needs("array_api_strict")
def test_data_is_cast_on_the_host_for_an_asarray_that_ignores_dtype(tmp_path):
    result = xptrain("train", "--backend", "ignores_dtype", "--dtype", "float32",
                     extra_path=NAMESPACES)  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = tmp_path / "r.json"
    result = xptrain("check", "--quiet", "--backends", "ignores_dtype", "--problems", "seed",
                     "--json", str(out), extra_path=NAMESPACES)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(out.read_text())["results"]
    assert sorted(row["dtype"] for row in rows) == ["float32", "float64"]
    assert np.all([row["passed"] for row in rows])
