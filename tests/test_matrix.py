"""The one planner of the backend × device × dtype × grad × mode matrix (xptrain.matrix), on
backends of chosen capabilities; check, bench and experiments plan through it; one scale-out
table for check and bench."""

from __future__ import annotations

import itertools
import subprocess

import pytest

from xptrain import backends, bench, check, experiment, launch, matrix
from xptrain.backends.base import Backend, Capabilities
from xptrain.errors import BackendUnavailable, InvalidInput

NOTHING = Capabilities()  # the plain Array API: eager, analytic gradients, one device
EVERYTHING = Capabilities(jit=True, autodiff=True, spreads=("devices", "processes"))


class Fake(Backend):
    """A backend with the capabilities and devices a test gives it; ``refuse``: what its
    replicas() says when asked for them."""

    def __init__(self, name: str, caps: Capabilities = NOTHING, devices=("cpu",), refuse=None):
        self.name, self.caps, self._devices, self._refuse = name, caps, list(devices), refuse
        self.asked: list[tuple] = []

    def devices(self) -> list[str]:
        return list(self._devices)

    def replicas(self, devices: int, distributed: bool, device: str) -> object:
        self.asked.append((devices, distributed, device))
        if self._refuse is not None:
            raise InvalidInput(self._refuse)
        return object()


@pytest.fixture
def registry(monkeypatch):
    """The built-in names served by fakes a test puts here; every other one does not start."""
    found: dict[str, Backend] = {}

    def get(name: str) -> Backend:
        key = backends.canonical_name(name)
        if key not in found:
            raise BackendUnavailable(f"backend {key!r} is not here")
        return found[key]

    monkeypatch.setattr(backends, "get", get)
    return found


def labels(cells) -> list[str]:
    return [cell.label for cell in cells]


def test_the_order_is_backend_device_dtype_grad_mode(registry):
    registry["torch"] = Fake("torch", EVERYTHING, devices=("cpu", "cuda:0"))
    registry["jax"] = Fake("jax", EVERYTHING)
    cells, notes = matrix.plan(["torch", "jax"])
    expected = [
        "-".join(parts)
        for parts in itertools.chain(
            itertools.product(
                ["torch"], ["cpu", "cuda:0"], backends.DTYPES, matrix.GRADS, matrix.MODES
            ),
            itertools.product(["jax"], ["cpu"], backends.DTYPES, matrix.GRADS, matrix.MODES),
        )
    ]
    assert labels(cells) == expected
    assert notes == []
    assert all(cell.backend is registry[cell.backend.name] for cell in cells)


def test_by_default_each_backend_gives_only_what_it_has_and_notes_nothing(registry):
    registry["numpy"] = Fake("numpy")
    registry["dask"] = Fake("dask", Capabilities(jit=True))
    registry["array_api_strict"] = Fake("array_api_strict", Capabilities(autodiff=True))
    cells, _ = matrix.plan(["numpy", "dask", "strict"], dtypes=["float32"])
    assert labels(cells) == [
        "numpy-cpu-float32-analytic-eager",
        "dask-cpu-float32-analytic-eager",
        "dask-cpu-float32-analytic-jit",
        "array_api_strict-cpu-float32-analytic-eager",
        "array_api_strict-cpu-float32-autodiff-eager",
    ]


def test_grads_and_modes_asked_for_are_skipped_where_a_backend_lacks_them(registry):
    registry["numpy"] = Fake("numpy")
    registry["torch"] = Fake("torch", EVERYTHING)
    cells, notes = matrix.plan(
        ["numpy", "torch"],
        dtypes=["float64"],
        grads=["analytic", "autodiff"],
        modes=["eager", "jit"],
    )
    assert labels(cells) == [
        "numpy-cpu-float64-analytic-eager",
        *(f"torch-cpu-float64-{g}-{m}" for g in matrix.GRADS for m in matrix.MODES),
    ]
    assert notes == [  # one per combination left out; no autodiff is said before no jit
        "numpy-cpu-float64-analytic-jit: numpy has no jit compiler",
        "numpy-cpu-float64-autodiff-eager: numpy has no automatic differentiation",
        "numpy-cpu-float64-autodiff-jit: numpy has no automatic differentiation",
    ]


def test_unnamed_backends_are_every_one_that_starts_with_a_note_for_the_rest(registry):
    registry["jax"] = Fake("jax", EVERYTHING)
    registry["numpy"] = Fake("numpy")
    cells, notes = matrix.plan(dtypes=["float32"], grads=["analytic"], modes=["eager"])
    assert labels(cells) == [  # in the registry's order, not the order they were added
        "numpy-cpu-float32-analytic-eager",
        "jax-cpu-float32-analytic-eager",
    ]
    missing = [n for n in backends.names() if n not in registry]
    assert notes == [f"backend {n!r} is not here" for n in missing]


@pytest.mark.parametrize(
    ("names", "error", "message"),
    [
        (["numpy", "cupy"], BackendUnavailable, "backend 'cupy' is not here"),
        (["numpy", "nosuchlib"], InvalidInput, "unknown backend 'nosuchlib'"),
    ],
)
def test_a_named_backend_that_cannot_start_is_the_error(registry, names, error, message):
    registry["numpy"] = Fake("numpy")
    with pytest.raises(error, match=message):
        matrix.plan(names)
    with pytest.raises(error, match=message):  # as check reports it, and bench, and experiments
        check.plan(["seed"], names)
    with pytest.raises(error, match=message):
        bench.plan(names, None, "float32", [(8, 2)], 1, 1)
    with pytest.raises(error, match=message):
        experiment._plan({**experiment.SCHEMA["runs"], "backends": names}, "e")


def test_aliases_name_one_backend_once(registry):
    registry["numpy"] = Fake("numpy")
    cells, notes = matrix.plan(["numpy", "np", "NumPy"], dtypes=["float64"])
    assert labels(cells) == ["numpy-cpu-float64-analytic-eager"] and notes == []


def test_devices_are_filtered(registry):
    registry["torch"] = Fake("torch", devices=("cpu", "cuda:0", "cuda:1"))
    registry["numpy"] = Fake("numpy", devices=("default",))  # an own namespace's: always kept
    some = dict(dtypes=["float64"], grads=["analytic"], modes=["eager"])
    assert labels(matrix.plan(["torch", "numpy"], ["gpu"], **some)[0]) == [
        "torch-cuda:0-float64-analytic-eager",
        "torch-cuda:1-float64-analytic-eager",
        "numpy-default-float64-analytic-eager",
    ]
    assert [c.device for c in matrix.plan(["torch"], ["cuda:1", "cpu"], **some)[0]] == [
        "cpu",
        "cuda:1",
    ]
    with pytest.raises(InvalidInput, match="unknown device 'tpu'"):
        matrix.plan(["torch"], ["tpu"])


def test_a_declared_spread_skips_backends_without_it_and_eager_where_compiled_only(registry):
    registry["numpy"] = Fake("numpy", devices=("cpu", "cuda:0"))
    registry["torch"] = Fake("torch", Capabilities(jit=True, spreads=("processes",)))
    jit_only = Capabilities(jit=True, spreads=("devices",), replicas_jit_only=True)
    registry["jax"] = Fake("jax", jit_only, devices=("cpu", "cuda:0"))
    cells, notes = matrix.plan(
        ["numpy", "torch", "jax"], dtypes=["float32"], spread=matrix.Spread("devices")
    )
    assert labels(cells) == ["jax-cpu-float32-analytic-jit", "jax-cuda:0-float32-analytic-jit"]
    assert notes == [
        "numpy/cpu: numpy does not spread rows over devices",
        "numpy/cuda:0: numpy does not spread rows over devices",
        "torch/cpu: torch does not spread rows over devices",
        "jax/cpu eager: a data-parallel step runs compiled only",
        "jax/cuda:0 eager: a data-parallel step runs compiled only",
    ]
    assert registry["jax"].asked == []  # declared: nothing is asked of the backend


def test_a_probed_spread_asks_each_backend_and_its_refusal_is_the_note(registry):
    registry["numpy"] = Fake("numpy", refuse="numpy has no data-parallel training here")
    registry["jax"] = Fake("jax", Capabilities(jit=True, replicas_jit_only=True))
    spread = matrix.Spread("processes", replicas=(1, True))
    cells, notes = matrix.plan(["numpy", "jax"], dtypes=["float64"], spread=spread)
    assert labels(cells) == ["jax-cpu-float64-analytic-jit"]
    assert notes == [
        "numpy/cpu: numpy has no data-parallel training here",
        "jax/cpu eager: a data-parallel step runs compiled only",
    ]
    assert registry["jax"].asked == [(1, True, "cpu")]


def test_the_generator_notes_as_it_goes(registry):
    registry["numpy"] = Fake("numpy", devices=("cpu", "cuda:0"), refuse="no")
    skipped = ["an earlier note"]
    cells = matrix.combinations(
        ["numpy"], spread=matrix.Spread("devices", (2, False)), skipped=skipped
    )
    assert list(cells) == [] and skipped == ["an earlier note", "numpy/cpu: no", "numpy/cuda:0: no"]


def test_unknown_dtypes_are_refused():
    with pytest.raises(InvalidInput, match="unknown dtype 'float16'; choose from float64, float32"):
        matrix.check_dtypes(["float32", "float16"])


# -- the planners that use it ------------------------------------------------------------------


def test_check_runs_every_problem_of_a_device_before_the_next(registry):
    registry["torch"] = Fake("torch", EVERYTHING, devices=("cpu", "cuda:0"))
    configs, skipped = check.plan(["seed", "synthetic"], ["torch"], None, ["float64"])
    assert [(c.device, c.problem, c.grad, c.mode) for c in configs] == [
        (device, problem, grad, mode)
        for device in ("cpu", "cuda:0")
        for problem in ("seed", "synthetic")
        for grad in matrix.GRADS
        for mode in matrix.MODES
    ]
    assert skipped == []


def test_a_device_no_backend_has_is_refused_naming_what_each_found(registry):
    registry["torch"] = Fake("torch", devices=("cpu",))
    registry["numpy"] = Fake("numpy", devices=("cpu",))
    with pytest.raises(InvalidInput) as refused:
        matrix.plan(["torch", "numpy"], ["cpu", "cuda"])
    assert str(refused.value) == "no backend here has a cuda device (torch: cpu; numpy: cpu)"


def test_a_device_some_backends_lack_is_a_note_for_each(registry):
    registry["torch"] = Fake("torch", devices=("cpu", "cuda:0"))
    registry["numpy"] = Fake("numpy", devices=("cpu",))
    some = dict(dtypes=["float64"], grads=["analytic"], modes=["eager"])
    cells, notes = matrix.plan(["torch", "numpy"], ["cpu", "cuda"], **some)
    assert len(cells) == 3 and notes == ["numpy: no cuda device here (it has cpu)"]


def test_check_spreads_as_each_backend_says_it_can(registry):
    registry["numpy"] = Fake("numpy", refuse="numpy has no data-parallel training here")
    registry["jax"] = Fake("jax", Capabilities(jit=True, autodiff=True, replicas_jit_only=True))
    configs, skipped = check.plan(["seed"], ["numpy", "jax"], None, ["float32"], 2)
    assert [(c.backend, c.grad, c.mode, c.data_parallel, c.processes) for c in configs] == [
        ("jax", "analytic", "jit", 2, None),
        ("jax", "autodiff", "jit", 2, None),
    ]
    assert skipped == [
        "numpy/cpu: numpy has no data-parallel training here",
        "jax/cpu eager: a data-parallel step runs compiled only",
    ]
    assert registry["jax"].asked == [(2, False, "cpu")]
    with pytest.raises(InvalidInput, match="nothing to check"):
        check.plan(["seed"], ["numpy"], None, None, None, 2)


def test_bench_keeps_what_each_backend_declares_it_can_spread(registry):
    registry["torch"] = Fake("torch", Capabilities(jit=True, spreads=("processes",)))
    jit_only = Capabilities(jit=True, spreads=("devices", "processes"), replicas_jit_only=True)
    registry["jax"] = Fake("jax", jit_only)
    configs = bench.plan(None, None, "float32", [(8, 2)], 1, 1, spread="processes", counts=(1, 2))
    assert [(c.backend, c.mode, c.replicas) for c in configs] == [
        ("torch", "eager", 1),
        ("torch", "eager", 2),
        ("torch", "jit", 1),
        ("torch", "jit", 2),
        ("jax", "jit", 1),
        ("jax", "jit", 2),
    ]
    assert registry["jax"].asked == []  # a plan made before the launch asks nothing
    with pytest.raises(InvalidInput, match="none of these backends spreads over workers"):
        bench.plan(None, None, "float32", [(8, 2)], 1, 1, spread="workers")


def test_bench_times_the_grad_it_is_given_everywhere(registry):
    """bench's grad is every run's, not an axis: a backend without it records its refusal."""
    registry["numpy"] = Fake("numpy")
    configs = bench.plan(["numpy"], None, "float64", [(8, 2)], 1, 1, grad="autodiff")
    assert [(c.backend, c.grad, c.mode) for c in configs] == [("numpy", "autodiff", "eager")]


def test_an_experiment_runs_the_reference_first_and_once(registry):
    registry["numpy"] = Fake("numpy")
    registry["torch"] = Fake("torch", EVERYTHING)
    runs = {**experiment.SCHEMA["runs"], "backends": ["torch", "numpy"], "modes": ["jit"]}
    configs, skipped = experiment._plan(runs, "e")
    assert [experiment._label(c) for c in configs] == [
        "numpy-cpu-float64-analytic-eager",
        "torch-cpu-float64-analytic-jit",
        "torch-cpu-float32-analytic-jit",
    ]
    assert skipped == [
        "numpy-cpu-float64-analytic-jit: numpy has no jit compiler",
        "numpy-cpu-float32-analytic-jit: numpy has no jit compiler",
    ]
    runs |= {"modes": ["eager"], "dtypes": ["float64"]}
    assert len(experiment._plan(runs, "e")[0]) == 2  # numpy's own float64 run is the reference


# -- one scale-out table -----------------------------------------------------------------------


def test_each_engine_says_how_it_is_launched():
    by = {(e.backend, e.spread): e for e in launch.SCALE_OUT}
    assert list(by) == [
        ("jax", "devices"),
        ("jax", "processes"),
        ("torch", "processes"),
        ("dask", "workers"),
    ]
    assert by["jax", "devices"].launches([1, 2]) == [
        launch.Launch(("--data-parallel", "1,2"), cpu_devices=2)
    ]
    assert by["torch", "processes"].launches([1, 2]) == [
        launch.Launch(("--distributed",), processes=1),
        launch.Launch(("--distributed",), processes=2),
    ]
    assert by["dask", "workers"].launches([1, 4]) == [launch.Launch(("--workers", "1,4"))]
    assert [e.check for e in launch.SCALE_OUT] == [True, True, True, False]


@pytest.fixture
def launched(monkeypatch):
    """Every launch scale-out makes, none run: (args, processes, cpu_devices); each fails."""
    calls = []

    def run_xptrain(args, *, processes=None, cpu_devices=None, timeout=None):
        calls.append((list(args), processes, cpu_devices))
        return subprocess.CompletedProcess(args, 3, "", "error: not launched in this test\n")

    monkeypatch.setattr(launch, "run_xptrain", run_xptrain)
    monkeypatch.setattr(launch, "unavailable", lambda name, how: None)
    return calls


def test_check_and_bench_scale_out_read_the_one_table(launched, tmp_path):
    report = check.Report()
    check.scale_out(report, None, None, None, 5.0, tmp_path)

    def args(name: str, how: str, *spread: str) -> list[str]:
        out = str(tmp_path / f"{name}-{how}.json")
        head = ["check", "--backends", name, "--devices", "cpu", *spread, "--quiet"]
        return [*head, "--json", out, "--distributed-timeout", "5.0"]

    assert launched == [  # dask's workers are timed, not checked
        (args("jax", "devices", "--data-parallel", "2"), None, 2),
        (args("jax", "processes", "--distributed"), 2, None),
        (args("torch", "processes", "--distributed"), 2, None),
    ]
    assert [(r.backend, r.data_parallel, r.processes, r.passed) for r in report.rows] == [
        ("jax", 2, None, False),
        ("jax", None, 2, False),
        ("torch", None, 2, False),
    ]
    assert report.rows[0].error == "exit code 3: error: not launched in this test"
    launched.clear()
    ran, notes = bench.scale_out([1, 2], None, ["--quiet"])
    assert ran == [(e.backend, e.spread) for e in launch.SCALE_OUT]
    assert [(a[2], a[6:], p, d) for a, p, d in launched] == [
        ("jax", ["--data-parallel", "1,2"], None, 2),
        ("jax", ["--distributed"], 1, None),
        ("jax", ["--distributed"], 2, None),
        ("torch", ["--distributed"], 1, None),
        ("torch", ["--distributed"], 2, None),
        ("dask", ["--workers", "1,2"], None, None),
    ]
    assert len(notes) == 6 and notes[-1].startswith("dask over workers: exit code 3")
