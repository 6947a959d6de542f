"""Where nnc-tl keeps what it can make again: downloaded and generated archives, decoded datasets."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$NNC_TL_CACHE``, else ``~/.cache/nnc-tl``."""
    return Path(os.environ.get("NNC_TL_CACHE") or Path.home() / ".cache" / "nnc-tl")
