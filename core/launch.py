"""Starting xptrain on several devices or processes of this machine, as a user would: JAX with
emulated CPU devices (``XLA_FLAGS``), and process groups under torchrun (torch's own launcher,
which sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT for torch and JAX alike). Used by
``xptrain check --scale-out``, the scaling benchmark and the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence

from .errors import InvalidInput


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
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """Run :func:`xptrain_command` (with ``cpu_devices`` emulated JAX CPU devices per process)
    and wait at most ``timeout`` seconds; its output captured."""
    env = cpu_devices_env(cpu_devices) if cpu_devices else dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return subprocess.run(
        xptrain_command(args, processes),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
