"""The one error type users see: a file and what is wrong with it."""

from __future__ import annotations

import os
from typing import Iterable, Optional, Union


class NncToolsError(Exception):
    """A problem the user can act on; the CLI prints it as one line and exits with 2."""

    def __init__(self, path: Optional[Union[str, os.PathLike]], problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class SettingError(NncToolsError):
    """A setting's value the library cannot take: ``SETTING: problem``. Given through a flag (no file named), the CLI
    says the flag (``--frozen-bn``) where the library says the setting (``frozen_bn``)."""

    def __init__(self, path: Optional[Union[str, os.PathLike]], setting: str, problem: str):
        self.setting = setting
        super().__init__(path, f"{setting}: {problem}")


def first_few(names: Iterable[str], limit: int = 3) -> str:
    """The first ``limit`` names, comma-separated, with ``...`` when there are more: a message's examples."""
    names = list(names)
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def about(path: Optional[Union[str, os.PathLike]], error: NncToolsError) -> NncToolsError:
    """``error`` naming ``path`` when it names no file and no flag: every message about a file names the file."""
    if error.path is not None or error.problem.startswith("--") or isinstance(error, SettingError):
        return error
    return NncToolsError(path, error.problem)


def reject_unknown_keys(mapping: dict, allowed: Iterable[str], path: Optional[Union[str, os.PathLike]], where: str = "") -> None:
    """The one check every YAML file we read makes: a key we do not know is an error that lists the known ones."""
    allowed = set(allowed)
    unknown = sorted(set(map(str, mapping)) - allowed)
    if unknown:
        prefix = f"{where}: " if where else ""
        raise NncToolsError(path, f"{prefix}unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")
