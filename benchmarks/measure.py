"""How the benchmarks measure: a command's wall time and its own peak RSS (``wait4``'s rusage of that child), and the
machine the numbers come from."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from typing import Optional, Sequence, Tuple


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


GNU_TIME = "/usr/bin/time"
# Peak RSS must be the command's own: a child forked from this (large) process would count this process's memory
# until its exec, so the command is started by a small launcher process that reports its child's rusage.
LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
os.write(int(sys.argv[1]), f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}".encode())
sys.exit(0)
"""


def measured(args: Sequence[str], cwd=None, env=None) -> Tuple[subprocess.CompletedProcess, float, float]:
    """Run a command to the end; (its result, wall seconds, peak RSS in MB). A failure raises with its output. GNU
    time reports the RSS where it is installed; else the launcher above (whose ~10 MB is then the floor)."""
    args = [str(a) for a in args]
    read_end, write_end = os.pipe()
    try:
        if os.access(GNU_TIME, os.X_OK):
            command = [GNU_TIME, "-o", f"/dev/fd/{write_end}", "-f", "%x %M", *args]
        else:
            command = [sys.executable, "-c", LAUNCHER, str(write_end), *args]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, pass_fds=(write_end,))
        wall = time.perf_counter() - started
        os.close(write_end)
        write_end = -1
        code, maxrss = os.read(read_end, 200).decode().split()[-2:]
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    if int(code):
        raise subprocess.CalledProcessError(int(code), args, done.stdout, done.stderr)
    return subprocess.CompletedProcess(args, 0, done.stdout, done.stderr), wall, round(int(maxrss) / 1024, 1)


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
