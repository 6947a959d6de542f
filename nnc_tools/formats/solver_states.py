"""Solver states a project carries (NNabla's ``save(..., include_solver_state=True)``): an ``.nnp`` member
``<optimizer>_<solver>_optimizer.h5.optimizer`` (h5 or protobuf), or ``optimizer.solver.states`` in a project text.
NNabla's loader puts only the parameters whose multiplier is above 0 into the solver and then refuses states for any
other ("Set weight parameter for … first"), so a freeze must take the frozen parameters' states out."""

from __future__ import annotations

import fnmatch
import io
import zipfile
from typing import Dict, Set

from .schema import nnabla_pb2

STATE_SUFFIX = ".optimizer"


def trained(optimizer: nnabla_pb2.Optimizer) -> Set[str]:
    """The names the loader gives the solver: listed with a multiplier above 0 (a name may be a glob, as NNabla allows)."""
    return {pv.variable_name for pv in optimizer.parameter_variable if pv.learning_rate_multiplier > 0}


def _kept(name: str, patterns: Set[str]) -> bool:
    return name in patterns or any(fnmatch.fnmatchcase(name, p) for p in patterns if any(c in p for c in "*?["))


def prune_text_states(proto: nnabla_pb2.NNablaProtoBuf) -> int:
    """Take the states of parameters no longer trained out of a project text's optimizers; how many were taken out."""
    dropped = 0
    for optimizer in proto.optimizer:
        keep = trained(optimizer)
        for name in [n for n in optimizer.solver.states if not _kept(n, keep)]:
            del optimizer.solver.states[name]
            dropped += 1
    return dropped


def pruned_state_members(proto: nnabla_pb2.NNablaProtoBuf, zin: zipfile.ZipFile) -> Dict[str, bytes]:
    """The ``.optimizer`` members of an ``.nnp`` that hold states of parameters no longer trained, rewritten without
    them (member name -> new bytes); members that need no change are left out of the result."""
    by_name = {o.name: o for o in proto.optimizer}
    out = {}
    for info in zin.infolist():
        if not info.filename.endswith(STATE_SUFFIX):
            continue
        owner = next((o for name, o in by_name.items() if info.filename.startswith(f"{name}_")), None)
        if owner is None:
            continue
        raw = zin.read(info)
        new = _pruned_h5(raw, trained(owner)) if raw[:8] == b"\x89HDF\r\n\x1a\n" else _pruned_protobuf(raw, by_name)
        if new is not None:
            out[info.filename] = new
    return out


def _pruned_h5(raw: bytes, keep: Set[str]):
    import h5py

    with h5py.File(io.BytesIO(raw), "r") as h5:
        names = []
        h5.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Group) and
                      any(isinstance(v, h5py.Dataset) for v in obj.values()) else None)
        drop = [n for n in names if not _kept(n, keep)]
        if not drop:
            return None
        buffer = io.BytesIO()
        with h5py.File(buffer, "w") as out:
            for name in names:
                if name not in drop:
                    h5.copy(h5[name], out, name=name)
    return buffer.getvalue()


def _pruned_protobuf(raw: bytes, by_name: Dict[str, nnabla_pb2.Optimizer]):
    message = nnabla_pb2.NNablaProtoBuf()
    try:
        message.MergeFromString(raw)
    except Exception:  # not a state file we can read: left as it is
        return None
    dropped = 0
    for optimizer in message.optimizer:
        owner = by_name.get(optimizer.name)
        if owner is None:
            continue
        keep = trained(owner)
        for name in [n for n in optimizer.solver.states if not _kept(n, keep)]:
            del optimizer.solver.states[name]
            dropped += 1
    return message.SerializeToString() if dropped else None
