"""The per-epoch checkpoint: parameters, every solver's state, the epoch, the best epoch and the history, in one zip
written atomically, so that a run killed at any moment resumes where its last epoch ended."""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import nnabla as nn

from ..errors import NncToolsError
from ..fileio import atomic_output, file_digest
from ..formats.parameters import Parameter, decode_parameters, encode_parameters
from .records import EpochRecord, history_as_dicts

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.zip"


def current_parameters() -> "OrderedDict[str, Parameter]":
    """A copy of every parameter NNabla holds now."""
    return OrderedDict((k, Parameter(k, v.d.copy(), v.need_grad)) for k, v in nn.get_parameters(grad_only=False).items())


def save_checkpoint(path: Path, epoch: int, solvers, history: List[EpochRecord], best: Tuple[int, float], seed: int,
                    settings: Optional[Dict] = None) -> None:
    """Parameters, every solver's state, the epoch, the history and the run's settings (epochs, batch size: what
    ``--resume`` continues with), in one zip renamed into place."""
    with atomic_output(path) as temp, zipfile.ZipFile(temp, "w") as zf:
        zf.writestr("parameters.h5", encode_parameters(current_parameters(), ".h5"))
        for i, group in enumerate(solvers):
            state = path.with_name(f".solver{i}.h5")  # NNabla picks the format from the extension
            try:
                group.solver.save_states(str(state))
                zf.writestr(f"solver_{i}.h5", state.read_bytes())
            finally:
                state.unlink(missing_ok=True)
        zf.writestr("state.json", json.dumps({"epoch": epoch, "seed": seed, "best": list(best),
                                              "history": history_as_dicts(history), "settings": settings or {}}))


def load_checkpoint(path: Path, solvers) -> Tuple[int, List[EpochRecord], Tuple[int, float]]:
    """Restore the parameters and solver states; returns (epoch, history, best)."""
    with zipfile.ZipFile(path) as zf:
        params = decode_parameters(zf.read("parameters.h5"), ".h5", str(path))
        current = nn.get_parameters(grad_only=False)
        for name, p in params.items():
            if name in current:
                current[name].d = p.data
        for i, group in enumerate(solvers):
            tmp = path.with_name(f".solver{i}.h5")
            tmp.write_bytes(zf.read(f"solver_{i}.h5"))
            try:
                group.solver.load_states(str(tmp))
            finally:
                tmp.unlink()
        state = json.loads(zf.read("state.json"))
    return state["epoch"], [EpochRecord(**r) for r in state["history"]], tuple(state["best"])


def checkpoint_settings(path: Path) -> Dict:
    """The settings a checkpoint's run was started with and ``trained_epochs``, the epochs it holds, after checking the
    checkpoint is whole (before a resumed run touches its result folder): a damaged or truncated one is one line naming it."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if not {"parameters.h5", "state.json"} <= names or zf.testzip() is not None:
                raise zipfile.BadZipFile("members missing or damaged")
            state = json.loads(zf.read("state.json"))
        int(state["epoch"])
        [EpochRecord(**r) for r in state["history"]]
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError) as e:
        raise NncToolsError(path, f"damaged checkpoint, cannot resume ({' '.join(str(e).split())}); "
                            "start in another folder") from None
    return {**(state.get("settings") or {}), "trained_epochs": int(state["epoch"])}


def parameter_signature(proto) -> str:
    """What a checkpoint's parameters must fit: every parameter variable's name and shape (not the multipliers or BN
    modes: changing those between --resume runs is how phases are done by hand)."""
    declared = sorted({(v.name, tuple(int(d) for d in v.shape.dim)) for n in proto.network for v in n.variable
                       if v.type == "Parameter"})
    return hashlib.sha256(repr(declared).encode()).hexdigest()[:16]


RESUMED = ("batch_size", "seed", "frozen_bn", "cache_frozen", "workers", "solver", "lr")  # what --resume takes back


def resumed_options(options, checkpoint: Path):
    """The options a resumed run goes on with: its own (batch size, seed, frozen BN, cache choice, workers), a flag
    that contradicts one of them refused; ``--epochs`` may differ (the run then trains to that many, and says so) but
    not fall below the epochs already trained."""
    saved = checkpoint_settings(checkpoint)
    restored = {}
    for key in RESUMED:
        given, was = getattr(options, key), saved.get(key)
        if was is None:
            continue
        if given is not None and given != was:
            flag = "--" + key.replace("_", "-")
            raise NncToolsError(checkpoint.parent, f"{flag} {given} contradicts the run's own {flag} {was}: resume "
                                f"without {flag}, or start in another folder")
        restored[key] = was
    _same_phases(options, saved, checkpoint)
    epochs, was, done = options.epochs, saved.get("epochs"), saved["trained_epochs"]
    if epochs is not None and epochs < done:
        raise NncToolsError(checkpoint.parent, f"--epochs {epochs}: the run has trained {done} epochs already")
    if epochs is not None and was is not None and epochs != was:
        log.info(f"resuming: training to {epochs} epochs (the run was started for {was})")
    return replace(options, epochs=epochs if epochs is not None else was, **restored)


def _same_phases(options, saved: Dict, checkpoint: Path) -> None:
    """A run trained in phases resumes with the same phases file (its bytes), and only such a run takes one."""
    given = None if options.phases is None else file_digest(options.phases)
    if saved.get("phases") != given:
        what = "without --phases" if given is None else f"--phases {options.phases}"
        was = "in phases (give the same --phases file again)" if saved.get("phases") else "without phases"
        raise NncToolsError(checkpoint.parent, f"resuming {what}: the run was trained {was}")
