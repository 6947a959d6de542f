"""Atomic output: write to a temporary name in the target folder, rename into place only on success."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, List, Sequence, Union

PathLike = Union[str, os.PathLike]


def temp_beside(target: Path) -> Path:
    """A fresh, unused name beside ``target`` (reserved by mkstemp, then released): writers create the file anew. Handing
    them an existing empty file instead makes their "w" a truncation, and ext4 then writes the whole file to disk on
    close (its replace-via-truncate safeguard): 0.3 s more for a 500 MB project."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.unlink(name)
    return Path(name)


@contextlib.contextmanager
def atomic_outputs(targets: Sequence[PathLike], made: Sequence[Path] = ()) -> Iterator[List[Path]]:
    """Yield temporary paths beside each target; rename them all into place when the block succeeds, else delete them.
    ``made``: temporary paths (from ``temp_beside``) already started for the first targets."""
    finals = [Path(t) for t in targets]
    temps: List[Path] = list(made)
    try:
        for final in finals[len(temps):]:
            temps.append(temp_beside(final))
        yield temps
        for temp, final in zip(temps, finals):
            temp.touch()  # a block that wrote nothing still leaves an (empty) output, as before
            os.replace(temp, final)
    finally:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()


@contextlib.contextmanager
def atomic_output(target: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` when the block succeeds, else delete it."""
    with atomic_outputs([target]) as temps:
        yield temps[0]


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when both paths name the same existing file (or the same path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)
