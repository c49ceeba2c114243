"""Starting xptrain on several devices or processes of this machine, as a user would: JAX with
emulated CPU devices (``XLA_FLAGS``), and process groups under torchrun (torch's own launcher,
which sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT for torch and JAX alike). Used by
``xptrain check --scale-out``, the scaling benchmark and the tests."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from . import backends, matrix
from .errors import InvalidInput, XptrainError

LAUNCH_TIMEOUT = 3600.0  # seconds a launched check or bench may take in all


@dataclass(frozen=True)
class Launch:
    """One launch of xptrain: the options that spread its rows, and what it starts."""

    options: tuple[str, ...]
    processes: int | None = None  # under torchrun
    cpu_devices: int | None = None  # emulated JAX CPU devices per process

    def run(self, args: Sequence[str]) -> subprocess.CompletedProcess:
        """:func:`run_xptrain` of ``args`` (which hold :attr:`options`) so launched."""
        return run_xptrain(args, processes=self.processes, cpu_devices=self.cpu_devices)


@dataclass(frozen=True)
class ScaleOut:
    """One data-parallel engine that ``--scale-out`` launches in processes of its own."""

    backend: str
    spread: str  # "devices" (emulated JAX CPU devices), "processes" (torchrun), "workers" (dask)
    option: str  # the check or bench option that spreads the rows so
    check: bool = True  # check --scale-out checks it too (bench times every one)

    def launches(self, counts: Sequence[int]) -> list[Launch]:
        """The launches that spread the rows over each of ``counts`` replicas: one per count for
        a process group (its size is torchrun's); one for every count of devices (emulating as
        many CPU devices as the most of them) or workers."""
        if self.spread == "processes":
            return [Launch((self.option,), processes=k) for k in counts]
        cpu_devices = max(counts) if self.spread == "devices" else None
        return [Launch((self.option, ",".join(map(str, counts))), cpu_devices=cpu_devices)]


# What check --scale-out and bench --scale-out launch, in this order.
SCALE_OUT = (
    ScaleOut("jax", "devices", "--data-parallel"),
    ScaleOut("jax", "processes", "--distributed"),
    ScaleOut("torch", "processes", "--distributed"),
    ScaleOut("dask", "workers", "--workers", check=False),
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_devices_env(count: int, env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with JAX's host platform split into ``count`` CPU
    devices, other XLA flags kept."""
    env = dict(os.environ if env is None else env)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={count}"])
    return env


def xptrain_command(args: Sequence[str], processes: int | None = None) -> list[str]:
    """``python -m xptrain ARGS``, or the same under torchrun with ``processes`` processes on
    this machine (each told its rank; a free port for their rendezvous)."""
    if processes is None:
        return [sys.executable, "-m", "xptrain", *args]
    if processes < 1:
        raise InvalidInput(f"processes must be ≥ 1, got {processes}")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(processes),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        "-m",
        "xptrain",
        *args,
    ]


def run_xptrain(
    args: Sequence[str],
    *,
    processes: int | None = None,
    cpu_devices: int | None = None,
    timeout: float = LAUNCH_TIMEOUT,
) -> subprocess.CompletedProcess:
    """Run :func:`xptrain_command` (with ``cpu_devices`` emulated JAX CPU devices per process)
    and wait at most ``timeout`` seconds, its output captured. Past the timeout the whole
    process tree (torchrun and its workers) is killed and the result says so: exit code -9,
    the reason as stderr's last line."""
    env = cpu_devices_env(cpu_devices) if cpu_devices else dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    command = xptrain_command(args, processes)
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: a timeout ends torchrun's workers too
    ) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(child)
            out, err = child.communicate()
            err += f"\nerror: {' '.join(args[:1])} timed out after {timeout:g} s and was killed\n"
            return subprocess.CompletedProcess(command, -9, out, err)
        except BaseException:  # Ctrl-C: the launched tree is in its own session, end it too
            _kill_tree(child)
            raise
    return subprocess.CompletedProcess(command, child.returncode, out, err)


def _kill_tree(child: subprocess.Popen) -> None:
    """SIGKILL to the child's process group (torchrun and its workers), if it still exists."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)


def unavailable(backend: str, spread: str) -> str | None:
    """Why ``backend`` cannot be launched here with its rows spread over ``spread``
    ("devices", "processes", "workers"); None when it can."""
    try:
        bk = backends.get(backend)
    except XptrainError as err:
        return str(err)
    reason = matrix.cannot_spread(bk, spread)
    if reason is not None:
        return reason
    if spread == "processes" and importlib.util.find_spec("torch") is None:
        return "processes are started by torchrun, which comes with torch: pip install torch"
    return None


def failure(done: subprocess.CompletedProcess) -> str:
    """What a launch that failed said: its exit code and its last line that says error
    (torchrun's own summary is mostly rules and tracebacks)."""
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip(" =-")]
    said = [line for line in lines if "error" in line.lower()] or lines or ["no output"]
    return f"exit code {done.returncode}: {said[-1]}"
