"""The one error type users see: a file and what is wrong with it."""

from __future__ import annotations

import os
from typing import Optional, Union


class NncToolsError(Exception):
    """A problem the user can act on; the CLI prints it as one line and exits with 2."""

    def __init__(self, path: Optional[Union[str, os.PathLike]], problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
