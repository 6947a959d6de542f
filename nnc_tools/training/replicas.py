"""A slice's copy of the graph for data-parallel training: per stage one NNabla graph ending in
``F.sink(one_input_grad=False)``, so that its forward and backward are single GIL-free calls that take the gradients
arriving from later stages; leaves for the values it receives; its own parameters (the first slice of a layout: the
real ones)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import nnabla as nn
import nnabla.functions as F

from .slicing import SlicePlan, replay


@dataclass
class Stage:
    sink: Optional[nn.Variable] = None
    outputs: List[tuple] = field(default_factory=list)  # (key, variable in this stage)


@dataclass
class Replica:
    size: int
    start: int
    real: bool  # the first slice of its layout: its parameters are the real ones
    stages: range  # the stages it runs (all of them, or those before or after the change of layout)
    holders: Dict[int, nn.Variable] = field(default_factory=dict)  # a variable's values for this slice
    boundaries: Dict[int, nn.Variable] = field(default_factory=dict)  # leaves that later stages read; .g collects
    params: Dict[int, nn.Variable] = field(default_factory=dict)  # this slice's parameters (slice 0: the real ones)
    masks: Dict[int, nn.Variable] = field(default_factory=dict)  # per MaskAhead output key: this slice's mask
    graphs: List[Stage] = field(default_factory=list)  # per stage of the whole graph (empty outside ``stages``)

    @property
    def rows(self) -> slice:
        """This slice's rows of the global batch."""
        return slice(self.start, self.start + self.size)


def build_replica(plan: SlicePlan, k: int, size: int, start: int, stages: range) -> Replica:
    """Slice ``k`` of a layout (``size`` images from ``start``): its graphs for ``stages``."""
    r = Replica(size, start, k == 0, stages)
    _hold_leaves(plan, r)
    graphs = [Stage() for _ in range(plan.stage_count)]
    stage_vars: Dict[int, Dict[int, nn.Variable]] = {s: {} for s in range(plan.stage_count)}
    for i, f in enumerate(plan.functions):
        s = plan.stage_of[i]
        if not plan.per_sample[i]:
            if s + 1 in stages:  # else read by stages after it, which another layout runs
                _receive_sync_outputs(plan, r, f)
        elif s in stages:
            _replay_in_slice(plan, r, i, stage_vars[s], graphs[s])
    for st in graphs:
        for _, out in st.outputs:
            out.persistent = True  # read after the stage's forward (by a sync point) or backward
        if st.outputs:
            st.sink = F.sink(*[out for _, out in st.outputs], one_input_grad=False)
    r.graphs = graphs
    return r


def _hold_leaves(plan: SlicePlan, r: Replica) -> None:
    """A variable for the slice's part of every graph leaf its stages (or the sync points they feed) read."""
    reads = {hash(v) for f, s in zip(plan.functions, plan.stage_of) if s in r.stages for v in f.inputs}
    for key, v in plan.leaves.items():
        if key in reads:
            shape = (r.size, *v.shape[1:]) if v.shape and v.shape[0] == plan.batch else v.shape
            r.holders[key] = nn.Variable(shape, need_grad=False)


def _receive_sync_outputs(plan: SlicePlan, r: Replica, f) -> None:
    """What a sync point made: a leaf per slice, its values scattered in."""
    for v in f.outputs:
        if plan.sliced(v):
            leaf = nn.Variable((r.size, *v.shape[1:]), need_grad=v.need_grad)
            r.holders[hash(v)] = r.boundaries[hash(v)] = leaf


def _slice_input(plan: SlicePlan, r: Replica, v: nn.Variable, stage_vars: Dict[int, nn.Variable]) -> nn.Variable:
    """The slice's variable for a function's input: its parameter, a value its stage made, or a leaf."""
    key = hash(v)
    if key in plan.parameters:
        if key not in r.params:
            p = plan.parameters[key]
            r.params[key] = p if r.real else nn.Variable(p.shape, need_grad=p.need_grad)
        return r.params[key]
    if key in stage_vars:
        return stage_vars[key]
    return r.boundaries[key] if key in r.boundaries else r.holders[key]


def _replay_in_slice(plan: SlicePlan, r: Replica, i: int, stage_vars: Dict[int, nn.Variable], stage: Stage) -> None:
    """Function ``i`` again on the slice's inputs (a Dropout drawn ahead: its input times the slice's mask)."""
    f = plan.functions[i]
    inputs = [_slice_input(plan, r, v, stage_vars) for v in f.inputs]
    if i in plan.masks_ahead:
        r.masks[plan.masks_ahead[i].key] = mask = nn.Variable((r.size, *f.outputs[0].shape[1:]), need_grad=False)
        outs = [F.mul2(inputs[0], mask)]
    else:
        outs = replay(f, inputs, r.size)
    for v, out in zip(f.outputs, outs):
        key = hash(v)
        stage_vars[key] = r.holders[key] = out
        if key in plan.crossing or key in plan.output_keys:
            stage.outputs.append((key, out))
            if key in plan.crossing:
                r.boundaries[key] = nn.Variable(out.shape, need_grad=v.need_grad)
