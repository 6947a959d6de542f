"""NNabla's project loader, called quietly: it logs "Using context ..." at level 99 on every call."""

from __future__ import annotations

import logging
from typing import Sequence


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
