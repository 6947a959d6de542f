"""How the benchmarks measure: a command's wall time and its own peak RSS (``wait4``'s rusage of that child), and the
machine the numbers come from."""

from __future__ import annotations

import os
import platform
import subprocess
import tempfile
import time
from importlib import metadata
from typing import Optional, Sequence, Tuple


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


def measured(args: Sequence[str], cwd=None, env=None) -> Tuple[subprocess.CompletedProcess, float, float]:
    """Run a command to the end; (its result, wall seconds, peak RSS in MB). A failure raises with its output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(map(str, args)), stdout=out, stderr=err, cwd=cwd, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, list(map(str, args)), stdout, stderr)
    return subprocess.CompletedProcess(args, 0, stdout, stderr), wall, round(usage.ru_maxrss / 1024, 1)


def _first(path: str, key: str) -> Optional[str]:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def machine() -> dict:
    flags = (_first("/proc/cpuinfo", "flags") or "").split()
    memory = _first("/proc/meminfo", "MemTotal")
    try:
        nnabla = metadata.version("nnabla")
    except metadata.PackageNotFoundError:
        nnabla = None
    return {
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor(),
        "cores": usable_cores(),
        "avx2": "avx2" in flags,
        "memory_gb": round(int(memory.split()[0]) / 2**20, 1) if memory else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "nnabla": nnabla,
    }


def describe(m: dict) -> str:
    return (f"{m['cpu']}, {m['cores']} cores{' (AVX2)' if m['avx2'] else ''}, {m['memory_gb']} GB RAM, "
            f"{m['platform']}, Python {m['python']}, NNabla {m['nnabla']}")
