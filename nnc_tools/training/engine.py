"""NNabla called quietly and quickly: its project loader without the "Using context ..." lines, its arrays without a
module search on every access; the context (CPU threads, or a CUDA device) a run asks for."""

from __future__ import annotations

import logging
import os
import sys
from typing import Optional, Sequence

from ..errors import NncToolsError
from ..yamlfile import whole_number

CUDA_PIP = "pip install nnabla-ext-cuda120==1.39.0"

# NNabla 1.39's Cython modules import the way Python 2 did: ``from nnabla_ext.cpu import context``, which runs on every
# ``.d`` and ``.g`` of a Variable, first looks for a module ``nnabla.nnabla_ext``, searching NNabla's folder on disk each
# time (about 40 µs of an access's 60). It never exists; None in sys.modules gives the same ImportError at once.
NEVER_THERE = "nnabla.nnabla_ext"


def quick_array_access() -> None:
    """Spare every later ``.d``/``.g`` the failing module search (data-parallel training does hundreds a step)."""
    sys.modules.setdefault(NEVER_THERE, None)


def nnabla_load(files: Sequence, **kwargs):
    """``nnabla.utils.load.load`` with NNabla's console log muted for the call."""
    from nnabla.utils.load import load

    log = logging.getLogger("nnabla")
    level = log.level
    log.setLevel(100)  # above the level-99 lines NNabla logs
    try:
        return load(list(files), **kwargs)
    finally:
        log.setLevel(level)


def resolve_workers(workers: Optional[int], context: str) -> int:
    """Data-parallel threads: every usable core by default on CPU; one process per device on GPU."""
    if workers is not None:
        whole_number(workers, None, "workers")
    if context != "cpu":
        if workers not in (None, 1):
            raise NncToolsError(None, f"--workers {workers} is for CPU training; on GPU run one process per device "
                                "(mpirun, see the README's multi-GPU section)")
        return 1
    return workers or len(os.sched_getaffinity(0))


def make_context(context: str, device_id: int = 0) -> str:
    """The context string NNabla's loader takes; ``cudnn`` without the CUDA extension is an error with the pip line."""
    if context == "cpu":
        return "cpu"
    if context in ("cudnn", "cuda"):
        try:
            import nnabla_ext.cudnn  # noqa: F401
        except ImportError:
            raise NncToolsError(None, f"--context {context} needs NNabla's CUDA extension: {CUDA_PIP} "
                                "(CUDA 12 and cuDNN 8 on the host)") from None
        return f"cudnn:{device_id}"
    raise NncToolsError(None, f"unknown context '{context}' (cpu or cudnn)")
