"""NNabla called quietly and quickly: its project loader without the "Using context ..." lines, its arrays without a
module search on every access."""

from __future__ import annotations

import logging
import sys
from typing import Sequence

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
