"""Parameters carried from one project to another where name and shape match (NNC's "Open in EDIT Tab with Weight")."""

from __future__ import annotations

import difflib
from typing import List, Tuple

import numpy as np

from ..errors import NncToolsError
from ..fileio import PathLike
from ..formats.nnp import load_project
from ..formats.parameters import Parameter, Parameters


def copy_weights(params: Parameters, source: PathLike) -> Tuple[List[str], List[Tuple[str, str]]]:
    """Copy every parameter of ``source`` whose name and shape match (NNC's "Open in EDIT Tab with Weight").

    Returns the names copied and ``(name, reason)`` for those left at their initial values; a shape mismatch is never
    truncated. Weights that share no parameter at all are refused, naming the closest names on both sides.
    """
    weights = load_project(source).parameters
    copied, reinitialised = [], []
    for name, p in params.items():
        w = weights.get(name)
        if w is None:
            reinitialised.append((name, "not in the weights file"))
        elif tuple(w.data.shape) != tuple(p.data.shape):
            reinitialised.append((name, f"shape {tuple(w.data.shape)} in the weights file, {tuple(p.data.shape)} here"))
        else:
            params[name] = Parameter(name, np.array(w.data, dtype=p.data.dtype), p.need_grad)
            copied.append(name)
    if params and not copied:
        raise NncToolsError(source, _nothing_shared(params, weights))
    return copied, reinitialised


def _nothing_shared(params: Parameters, weights: Parameters) -> str:
    wanted = next(iter(params))
    close = difflib.get_close_matches(wanted, list(weights), n=3, cutoff=0.3) or list(weights)[:3]
    return (f"shares no parameter (name and shape) with the project: weights of another network? ({len(weights)} "
            f"parameters there; for {wanted} the closest are {', '.join(close) or 'none'})")
