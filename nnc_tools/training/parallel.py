"""Data-parallel training on CPU cores: the training graph replayed once per worker on a slice of the batch, in threads
(NNabla's graph forward and backward release the GIL), gradients summed before the one solver update.

Exactness is the point. A function is run per slice only when its result for a sample depends on that sample alone
(convolutions, affine, pooling, activations, per-sample losses, Batch Normalization on running statistics …). Everything
else is a *sync point*. Batch Normalization on batch statistics is a synchronised BN whose workers exchange per-channel
sums, not activations (``_StatSync``): mean, variance, their gradients and the running statistics are those of the global
batch. Dropout draws its mask for the global batch before the step (``_MaskAhead``: the graph's own Dropout
instances on ones, in forward order, so the random generator gives exactly the draws one graph takes) and each worker
multiplies its slice by its part of the mask; this is done when every random function in the graph is such a Dropout,
else all of them are sync points. The other sync points run once on the whole batch in the main thread with the slices
gathered and scattered around them: random functions (one draw for the global batch, as one worker draws it) and any
function this module does not know to be per-sample. The update therefore equals the single-graph update on the same global batch up
to the order of float additions.

The batch is cut into more slices than workers, largest first (``slice_sizes``: for 64 images on 2 workers 20, 20, 8,
8, 4, 4), and between two sync points each worker takes the next slice when it is done with its last: the small slices
at the end even out workers that run at different speeds (on a shared machine's cores they differ by up to a quarter,
and not the same core each time), at the cost of a few more, smaller graphs. A slice has a cost of its own where the
graph's Affine layers are large against its convolutions (their weights are read and their gradients written once per
slice, whatever its size): the smallest slice is then larger, or there is no tail (``smallest_slice``). Where those
Affine layers come after the last BN that exchanges statistics and its output is all they read of what came before
(mini_vggnet_mark2, whole or after its frozen prefix), the batch is cut twice: with a tail for the convolutions up to
that BN, into one slice per worker after it (``DataParallel._layouts``); the BN's input and its output's gradient pass
between the two as whole batches.

Each slice's part of the graph between two sync points is one NNabla graph ending in ``F.sink(one_input_grad=False)``,
so its forward and backward are single GIL-free calls that take the gradients arriving from later stages.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import nnabla as nn
import nnabla.function as _functions
import nnabla.functions as F
import numpy as np

from .engine import quick_array_access
from .frozen_cache import RANDOM_FUNCTIONS

# Function types whose output for one sample depends only on that sample (given the checks in ``_per_sample``).
PER_SAMPLE = {
    "Affine", "Convolution", "Deconvolution", "DepthwiseConvolution", "DepthwiseDeconvolution", "MaxPooling",
    "AveragePooling", "SumPooling", "Unpooling", "GlobalAveragePooling", "ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU",
    "CELU", "CReLU", "PReLU", "GELU", "Swish", "Sigmoid", "Tanh", "Softplus", "Softsign", "HardSigmoid", "HardTanh",
    "Identity", "Abs", "Exp", "Log", "Add2", "Sub2", "Mul2", "Div2", "Pow2", "Maximum2", "Minimum2", "AddScalar",
    "MulScalar", "PowScalar", "RSubScalar", "RDivScalar", "MaximumScalar", "MinimumScalar", "Softmax", "LogSoftmax",
    "SoftmaxCrossEntropy", "CategoricalCrossEntropy", "SigmoidCrossEntropy", "BinaryCrossEntropy", "SquaredError",
    "AbsoluteError", "HuberLoss", "EpsilonInsensitiveLoss", "KLMultinomial", "BatchNormalization", "Concatenate", "Split",
    "Reshape", "Transpose",
}


def slice_sizes(batch: int, workers: int, smallest: int = 4) -> List[int]:
    """How a batch is cut for ``workers`` threads: one large slice per worker, then a tail of ``workers`` slices of
    ``batch / (4 · workers)`` and ``workers`` of half that, none under ``smallest`` images (else no tail; a slice costs
    a graph and, but for the first, a copy of the parameters). The tail, about a third of the batch, is taken by whichever
    worker is free first."""
    workers = max(1, min(workers, batch))
    tail: List[int] = []
    size = batch // (4 * workers)
    for _ in range(2):
        if workers == 1 or size < smallest:
            break
        tail += [size] * workers
        size //= 2
    rest = batch - sum(tail)
    return [rest // workers + (1 if k < rest % workers else 0) for k in range(workers)] + tail


# Measured with NNabla 1.39 on the development machine (mini_vggnet_mark2's layers after its sixth convolution, slices of
# 4, 20 and 64 images): a convolution and an Affine layer take the same time per multiply-add, and an Affine layer costs
# per slice, whatever its size, as much as 24 images' worth of its multiply-adds (packing the weights, writing their
# gradient); a convolution's per-slice cost was not measurable.
SLICE_COST_PER_AFFINE_WEIGHT = 24


def _output_maps(kind: str, weight_shape: tuple, group: int) -> int:
    """How many output maps (units) a weight of this layer type has: its first axis for a Convolution, its last for an
    Affine, the second times the groups for a Deconvolution."""
    if kind == "Convolution":
        return weight_shape[0]
    if kind == "Affine":
        return weight_shape[-1]
    return weight_shape[1] * group


def smallest_slice(functions: Sequence, batch: int, at_least: int = 4) -> int:
    """The smallest slice worth cutting for a graph: one whose own cost (``SLICE_COST_PER_AFFINE_WEIGHT``) is at most a
    quarter of its images' work, and at least ``at_least`` images."""
    per_image = per_slice = 0
    for f in functions:
        if f.info.type_name not in _WEIGHTED or len(f.inputs) < 2:
            continue
        out, weight = f.outputs[0], f.inputs[1]
        if not out.shape or out.shape[0] != batch:
            continue
        maps = _output_maps(f.info.type_name, weight.shape, f.info.args.get("group", 1))
        per_image += (out.size // batch) * (weight.size // max(maps, 1))  # multiply-adds: each output, its weights
        if f.info.type_name == "Affine":
            per_slice += SLICE_COST_PER_AFFINE_WEIGHT * weight.size
    return max(at_least, -(-4 * per_slice // per_image) if per_image else at_least)


_WEIGHTED = ("Affine", "Convolution", "Deconvolution")


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _per_sample(f, batch: int, parameters: Dict[int, nn.Variable]) -> bool:
    """Whether ``f`` may run on a slice of the batch (see ``PER_SAMPLE``); anything unsure is a sync point."""
    kind = f.info.type_name
    if kind not in PER_SAMPLE or kind in RANDOM_FUNCTIONS:
        return False
    args = f.info.args
    data_inputs = [v for v in f.inputs if hash(v) not in parameters]
    if not data_inputs or any(len(v.shape) == 0 or v.shape[0] != batch for v in list(data_inputs) + list(f.outputs)):
        return False
    ndim = len(data_inputs[0].shape)
    if kind == "BatchNormalization" and args.get("batch_stat", True):
        return False
    if args.get("base_axis", 1) < 1:
        return False
    if "axis" in args and args["axis"] % max(ndim, 1) == 0:
        return False
    if "axes" in args and kind != "Transpose" and any(a % max(ndim, 1) == 0 for a in args["axes"]):
        return False
    if kind == "Transpose" and args["axes"][0] != 0:
        return False
    if "kernel" in args and len(args["kernel"]) >= ndim:
        return False
    if kind == "Reshape" and (not args["shape"] or args["shape"][0] != batch):
        return False
    return True


def _replay(f, inputs: Sequence[nn.Variable], batch: Optional[int] = None):
    """``f`` applied again to other inputs (a new function instance with the same arguments); a Reshape gets the slice's
    batch size."""
    args = dict(f.info.args)
    if f.info.type_name == "Reshape" and batch is not None:
        args["shape"] = [batch] + list(args["shape"][1:])
    made = getattr(_functions, f.info.type_name)(nn.get_current_context(), **args)
    out = made(*inputs, n_outputs=len(f.outputs), auto_forward=False)
    return list(out) if isinstance(out, (list, tuple)) else [out]


def graph_functions(roots: Sequence[nn.Variable]) -> list:
    """The functions computing ``roots``, in forward order, each once."""
    seen, order = set(), []

    def add(f):
        key = hash(f.outputs[0])
        if key not in seen:
            seen.add(key)
            order.append(f)

    for root in roots:
        root.visit(add)
    return order


@dataclass
class _Stage:
    sink: Optional[nn.Variable] = None
    outputs: List[tuple] = field(default_factory=list)  # (key, variable in this stage)


@dataclass
class _Replica:
    size: int
    start: int
    real: bool  # the first slice of its layout: its parameters are the real ones
    stages: range  # the stages it runs (all of them, or those before or after the change of layout)
    holders: Dict[int, nn.Variable] = field(default_factory=dict)  # a variable's values for this slice
    boundaries: Dict[int, nn.Variable] = field(default_factory=dict)  # leaves that later stages read; .g collects
    params: Dict[int, nn.Variable] = field(default_factory=dict)  # this slice's parameters (slice 0: the real ones)
    masks: Dict[int, nn.Variable] = field(default_factory=dict)  # per _MaskAhead output key: this slice's mask
    graphs: List[_Stage] = field(default_factory=list)  # per stage of the whole graph (empty outside ``stages``)


@dataclass
class _StatSync:
    """Batch Normalization on batch statistics as a synchronised BN that exchanges per-channel statistics instead of
    activations: each worker sums x and x² over its slice, the sums give the global mean and variance (NNabla's formula,
    E[x²] − E[x]²) and the running statistics (updated once), and each worker normalises its slice; in backward each
    worker sums dy and dy·x, and the sums give beta's and gamma's gradients and x's gradient ``dy·s + A + B·x`` per
    channel, the terms through the batch mean and variance included. The per-slice work is numpy in the worker threads
    (it releases the GIL); NNabla's BN on given statistics has a slow backward (6× its batch-statistics one)."""
    function: object
    x: int
    y: int
    count: int  # values per channel in the global batch
    sums: Dict[int, tuple] = field(default_factory=dict)  # per slice (its start): per-channel (Σx, Σx²), or in backward (Σdy, Σdy·x)
    scale: Optional[np.ndarray] = None  # y = x·scale + shift, per channel
    shift: Optional[np.ndarray] = None
    mean: Optional[np.ndarray] = None  # float64, per channel
    var: Optional[np.ndarray] = None
    correction: Optional[tuple] = None  # (A, B): x's gradient is dy·scale + A + B·x
    regroups: bool = False  # the stages after it cut the batch otherwise: x and dy pass as whole batches
    whole_x: Optional[np.ndarray] = None
    whole_dy: Optional[np.ndarray] = None


@dataclass
class _MaskAhead:
    """A Dropout whose mask (its output on ones: 0 or 1/(1 − p)) is drawn for the global batch before the step; the
    workers run ``x · mask`` on their slices, whose backward is NNabla's Dropout backward ``dy · mask``."""
    function: object
    key: int  # the Dropout's output
    ones: nn.Variable
    mask: nn.Variable


@dataclass
class _Sync:
    """A sync point run as one worker runs it: the graph's own function instance on its own whole-batch variables (a
    random function thus draws exactly what it draws without workers)."""
    function: object
    inputs: List[Optional[int]]  # per input: its key when the workers hold slices of it, else None (a parameter …)
    outputs: List[int]


class DataParallel:
    """A graph (``outputs`` at batch size B, its leaves fed as usual) run by ``workers`` threads on slices of the batch
    (``slice_sizes``).
    ``forward`` returns the outputs' values; ``forward_backward`` also leaves in every trained parameter's ``.g`` the
    gradient of the single-graph ``outputs[0].backward(grad=1/outputs[0].size)``. The caller zeroes the gradients
    before and updates after, as with one graph. ``batch_size``: the first dimension of the graph's data."""

    def __init__(self, outputs: Sequence[nn.Variable], parameters: Dict[str, nn.Variable], workers: int, batch_size: int):
        quick_array_access()
        self.outputs = list(outputs)
        self.loss = self.outputs[0]
        self.batch = batch_size
        self.workers = max(1, min(workers, self.batch))
        functions = graph_functions(self.outputs)
        self._output_keys = {hash(v) for v in self.outputs}
        # The graph's own parameter variables: they share data and gradient with ``parameters`` but carry the graph's
        # need_grad (NNabla's loader links unlinked copies into the graph), which decides what backward skips.
        registered = {hash(v) for v in parameters.values()}
        self.parameters = {hash(v): v for f in functions for v in f.inputs if hash(v) in registered}
        self.per_sample = [_per_sample(f, self.batch, self.parameters) for f in functions]
        self.masks_ahead = {i: self._mask_ahead(functions[i]) for i in self._dropouts_ahead(functions)}  # forward order
        for i in self.masks_ahead:
            self.per_sample[i] = True
        produced = {}
        for i, f in enumerate(functions):
            for v in f.outputs:
                produced[hash(v)] = i
        self.leaves: Dict[int, nn.Variable] = {}
        for f in functions:
            for v in f.inputs:
                if hash(v) not in produced and hash(v) not in self.parameters:
                    self.leaves[hash(v)] = v
        stage_of, stage = [], 0
        for par in self.per_sample:
            stage_of.append(stage)
            if not par:
                stage += 1
        self.stage_count = stage + 1
        # A variable crosses a boundary when a sync point or a later stage reads it, or a sync point made it.
        crossing = set()
        self._read_later: set = set()  # stage outputs a later stage reads (their values are copied to a leaf)
        for i, f in enumerate(functions):
            for v in f.inputs:
                key = hash(v)
                if key in produced and (not self.per_sample[i] or not self.per_sample[produced[key]]
                                        or stage_of[produced[key]] != stage_of[i]):
                    crossing.add(key)
                    if self.per_sample[i] and self.per_sample[produced[key]]:
                        self._read_later.add(key)
        # The sync point between stage s and s + 1 is self.syncs[s]; BN on batch statistics exchanges statistics.
        self.syncs: list = [
            self._build_stat_sync(f) if self.workers > 1 and self._exchangeable(f)
            else _Sync(f, [hash(v) if self._sliced(v) else None for v in f.inputs], [hash(v) for v in f.outputs])
            for f, par in zip(functions, self.per_sample) if not par]
        # One layout (how the batch is cut) for the whole graph, or one up to a BN and another after it (``_regroup``).
        self.layouts: List[List[_Replica]] = []
        for sizes, stages in self._layouts(functions, stage_of):
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
            self.layouts.append([self._build_replica(k, int(n), int(s), stages, functions, stage_of, crossing)
                                 for k, (n, s) in enumerate(zip(sizes, starts))])
        self.replicas = [r for layout in self.layouts for r in layout]
        self._stage_replicas = [next(layout for layout in self.layouts if s in layout[0].stages)
                                for s in range(self.stage_count)]
        self._stage_outputs = {key for r in self.replicas for st in r.graphs for key, _ in st.outputs}
        self.pool = ThreadPoolExecutor(self.workers - 1) if self.workers > 1 else None
        self._sources: Dict[int, np.ndarray] = {}  # during a step: the parameters' values, for the slices' copies
        self._gradient_groups = self._balanced([key for key, p in self.parameters.items() if p.need_grad])

    def close(self) -> None:
        """Stop the worker threads."""
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None

    def describe_slices(self) -> str:
        """E.g. ``2 workers on 6 slices of each batch (20, 20, 8, 8, 4, 4 images), each worker taking the next when
        done``, and where another layout takes over: ``, then after the 3rd BatchNormalization on 2 slices (32, 32 images)``."""
        parts = []
        for layout in self.layouts:
            sizes = [r.size for r in layout]
            part = f"{len(sizes)} slices{' of each batch' if not parts else ''} ({', '.join(map(str, sizes))} images)"
            if parts:
                sync = self.syncs[layout[0].stages[0] - 1].function
                nth = sum(other.function.info.type_name == sync.info.type_name
                          for other in self.syncs[:layout[0].stages[0]])
                part = f"after the {_ordinal(nth)} {sync.info.type_name} on {part}"
            parts.append(part + (", each worker taking the next when done" if len(sizes) > self.workers else ""))
        return f"{self.workers} workers on " + ", then ".join(parts)

    def describe_sync_points(self) -> str:
        """Where the workers meet, e.g. ``9 BatchNormalization (batch statistics exchanged), 1 Softmax (whole batch)``,
        and the Dropout masks drawn ahead."""
        counts: Dict[str, int] = {}
        for sync in self.syncs:
            kind = sync.function.info.type_name
            kind += " (batch statistics exchanged)" if isinstance(sync, _StatSync) else " (whole batch)"
            counts[kind] = counts.get(kind, 0) + 1
        text = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "nothing"
        if self.masks_ahead:
            text += f"; {len(self.masks_ahead)} Dropout masks drawn for the whole batch before each step"
        return text

    # ---------------------------------------------------------------------------------------------------- building

    def _layouts(self, functions, stage_of) -> List[tuple]:
        """(slice sizes, stages) per layout: the whole graph cut one way (``slice_sizes`` for its ``smallest_slice``), or,
        where the stages from some BN on hold the Affine layers that make a tail too costly and the stages before it
        are convolutions that gain from one, a tail up to that BN and none after it (``_regroup``)."""
        everything = range(self.stage_count)
        per_sample = [[] for _ in everything]
        for f, par, s in zip(functions, self.per_sample, stage_of):
            if par:
                per_sample[s].append(f)

        def cut(stages):
            return slice_sizes(self.batch, self.workers, smallest_slice([f for s in stages for f in per_sample[s]], self.batch))

        whole = [(cut(everything), everything)]
        weighted = [s for s in everything if any(f.info.type_name in _WEIGHTED and len(f.inputs) > 1 for f in per_sample[s])]
        with_tail = [s for s in weighted if len(cut([s])) > self.workers]
        if self.workers == 1 or not with_tail or with_tail[-1] + 1 >= self.stage_count:
            return whole
        change = with_tail[-1] + 1
        head, tail = range(change), range(change, self.stage_count)
        if cut(head) == cut(tail) or not self._regroup(change, functions, stage_of):
            return whole
        self.syncs[change - 1].regroups = True
        return [(cut(head), head), (cut(tail), tail)]

    def _regroup(self, change: int, functions, stage_of) -> bool:
        """Whether the batch may be cut anew at the sync point before stage ``change``: a BN exchanging statistics,
        whose output is all that the stages and sync points after it read of what came before (besides the graph's
        leaves and parameters). Its input and output's gradient then pass as whole batches (``_StatSync.regroups``)."""
        if not isinstance(self.syncs[change - 1], _StatSync):
            return False
        made_after = {self.syncs[change - 1].y}
        for f, s in zip(functions, stage_of):
            if s >= change:
                made_after.update(hash(v) for v in f.outputs)
        return all(hash(v) in made_after or hash(v) in self.leaves or hash(v) in self.parameters
                   for f, s in zip(functions, stage_of) if s >= change for v in f.inputs)

    def _build_replica(self, k, size, start, stages, functions, stage_of, crossing) -> _Replica:
        """Slice ``k`` of a layout (``size`` images from ``start``): its graphs for ``stages``."""
        r = _Replica(size, start, k == 0, stages)
        reads = {hash(v) for f, s in zip(functions, stage_of) if s in stages for v in f.inputs}  # sync point s reads stage s
        for key, v in self.leaves.items():
            if key in reads:
                shape = (size, *v.shape[1:]) if v.shape and v.shape[0] == self.batch else v.shape
                r.holders[key] = nn.Variable(shape, need_grad=False)
        graphs = [_Stage() for _ in range(self.stage_count)]
        stage_vars: Dict[int, Dict[int, nn.Variable]] = {s: {} for s in range(self.stage_count)}
        for i, f in enumerate(functions):
            s = stage_of[i]
            if not self.per_sample[i]:
                if s + 1 not in stages:  # read by stages after it, which another layout runs
                    continue
                for v in f.outputs:  # made by a sync point: a leaf per slice, its values scattered in
                    if self._sliced(v):
                        leaf = nn.Variable((size, *v.shape[1:]), need_grad=v.need_grad)
                        r.holders[hash(v)] = r.boundaries[hash(v)] = leaf
                continue
            if s not in stages:
                continue
            inputs = []
            for v in f.inputs:
                key = hash(v)
                if key in self.parameters:
                    if key not in r.params:
                        p = self.parameters[key]
                        r.params[key] = p if r.real else nn.Variable(p.shape, need_grad=p.need_grad)
                    inputs.append(r.params[key])
                elif key in stage_vars[s]:
                    inputs.append(stage_vars[s][key])
                elif key in r.boundaries:
                    inputs.append(r.boundaries[key])
                else:
                    inputs.append(r.holders[key])
            if i in self.masks_ahead:
                r.masks[self.masks_ahead[i].key] = mask = nn.Variable((size, *f.outputs[0].shape[1:]), need_grad=False)
                outs = [F.mul2(inputs[0], mask)]
            else:
                outs = _replay(f, inputs, size)
            for v, out in zip(f.outputs, outs):
                key = hash(v)
                stage_vars[s][key] = r.holders[key] = out
                if key in crossing or key in self._output_keys:
                    graphs[s].outputs.append((key, out))
                    if key in crossing:
                        r.boundaries[key] = nn.Variable(out.shape, need_grad=v.need_grad)
        for st in graphs:
            for _, out in st.outputs:
                out.persistent = True  # read after the stage's forward (by a sync point) or backward
            if st.outputs:
                st.sink = F.sink(*[out for _, out in st.outputs], one_input_grad=False)
        r.graphs = graphs
        return r

    def _dropouts_ahead(self, functions) -> List[int]:
        """The Dropout functions (indices) whose masks can be drawn ahead: all of the graph's random functions, when
        each is a Dropout on a sliced variable (drawing some ahead and others in place would reorder the draws)."""
        random = [i for i, f in enumerate(functions) if f.info.type_name in RANDOM_FUNCTIONS]
        if all(functions[i].info.type_name == "Dropout" and self._sliced(functions[i].inputs[0]) for i in random):
            return random
        return []

    @staticmethod
    def _mask_ahead(f) -> _MaskAhead:
        ones = nn.Variable(f.inputs[0].shape)
        ones.data.fill(1.0)
        return _MaskAhead(f, hash(f.outputs[0]), ones, nn.Variable(f.outputs[0].shape))

    def _exchangeable(self, f) -> bool:
        """A Batch Normalization on batch statistics over the channel axis, with beta, gamma, mean and variance as
        parameters and only its output: the workers can exchange its statistics (else it runs on the whole batch)."""
        return (f.info.type_name == "BatchNormalization" and f.info.args.get("batch_stat", True)
                and list(f.info.args["axes"]) == [1] and not f.info.args.get("no_scale") and not f.info.args.get("no_bias")
                and len(f.inputs) == 5 and len(f.outputs) == 1 and self._sliced(f.inputs[0])
                and all(hash(v) in self.parameters for v in f.inputs[1:]))

    def _build_stat_sync(self, f) -> _StatSync:
        x = f.inputs[0]
        return _StatSync(f, hash(x), hash(f.outputs[0]), x.size // x.shape[1])

    def _sliced(self, v: nn.Variable) -> bool:
        """A batch-sized variable that is not a parameter: each worker holds its slice."""
        return hash(v) not in self.parameters and bool(v.shape) and v.shape[0] == self.batch

    # ---------------------------------------------------------------------------------------------------- running

    def _each(self, work, items=None) -> None:
        """``work(item)`` for every replica (or item), in order, each taken by the next worker (this thread or one of
        the pool's) that is free."""
        items = self.replicas if items is None else items
        queue, lock = iter(items), threading.Lock()

        def drain():
            while True:
                with lock:
                    item = next(queue, None)
                if item is None:
                    return
                work(item)

        futures = [self.pool.submit(drain) for _ in range(self.workers - 1)] if self.pool is not None else []
        try:
            drain()
        finally:
            for future in futures:
                future.result()

    def _balanced(self, keys: List[int]) -> List[List[int]]:
        """``keys`` (parameters) in one group per worker, of about equal size."""
        groups: List[List[int]] = [[] for _ in range(self.workers)]
        sizes = [0] * self.workers
        for key in sorted(keys, key=lambda k: -self.parameters[k].size):
            k = sizes.index(min(sizes))
            groups[k].append(key)
            sizes[k] += self.parameters[key].size
        return [g for g in groups if g]

    def _slice(self, r: _Replica) -> slice:
        return slice(r.start, r.start + r.size)

    def _holding(self, key: int, where: str = "holders") -> List[_Replica]:
        """The slices that hold a variable (its values, or with ``where="boundaries"`` a leaf for them): those of one
        layout, or none when the variable is not sliced."""
        return next(([r for r in layout if key in getattr(r, where)] for layout in self.layouts
                     if key in getattr(layout[0], where)), [])

    def forward(self) -> List[np.ndarray]:
        """Forward of the global batch held in the graph's leaves; the outputs' values, whole batch."""
        for key, v in self.leaves.items():
            whole = v.d
            for r in self.replicas:
                if key in r.holders:
                    r.holders[key].d = whole[self._slice(r)] if v.shape and v.shape[0] == self.batch else whole
        # Copies, made by each slice's worker: NNabla's arrays are not for two threads to read at once (SyncedArray);
        # the numpy views taken here are.
        copies = any(not r.real for r in self.replicas)
        self._sources = {key: p.d for key, p in self.parameters.items()} if copies else {}
        for ahead in self.masks_ahead.values():  # in forward order: the draws one graph takes
            ahead.function.forward([ahead.ones], [ahead.mask])
            mask = ahead.mask.d
            for r in self.replicas:
                if ahead.key in r.masks:
                    r.masks[ahead.key].d = mask[self._slice(r)]
        for s in range(self.stage_count):
            self._each(lambda r, s=s: self._stage_forward(r, s), self._stage_replicas[s])
            if s < self.stage_count - 1:
                self._sync_forward(s)
        outputs = []
        for v in self.outputs:
            holding = self._holding(hash(v))
            outputs.append(np.concatenate([r.holders[hash(v)].d for r in holding]) if holding else v.d.copy())
        return outputs

    def forward_backward(self) -> float:
        """Forward and backward of the global batch held in the graph's leaves; returns the mean of ``outputs[0]``."""
        loss = self.forward()[0]
        for r in self.replicas:  # the first slice's parameters are the real ones: the caller zeroes those
            if not r.real:
                for p in r.params.values():
                    if p.need_grad:
                        p.grad.zero()
        for r in self.replicas:
            for b in r.boundaries.values():
                b.grad.zero()
        seed = 1.0 / self.loss.size
        for sync in self.syncs:  # whole-batch outputs that are not sliced (a batch mean …) gather their gradient as one
            if isinstance(sync, _Sync):
                for key, v in zip(sync.outputs, sync.function.outputs):
                    if v.need_grad and not self._holding(key):
                        v.grad.zero()
        key = hash(self.loss)
        seeded = self._holding(key, "boundaries")  # a sliced loss that a sync point made
        if seeded and key not in self._stage_outputs:
            for r in seeded:
                r.boundaries[key].grad.fill(seed)
        elif not self._holding(key):
            self.loss.grad.fill(seed)
        for s in reversed(range(self.stage_count)):
            if s < self.stage_count - 1:
                self._sync_backward(s)
            self._each(lambda r, s=s: self._stage_backward(r, s, seed), self._stage_replicas[s])
        if len(self.replicas) > 1:
            self._each(self._reduce_gradients, self._gradient_groups)
        return float(np.mean(loss))

    def _reduce_gradients(self, keys: List[int]) -> None:
        """The slices' gradients added to the real parameters' (a group of parameters per worker), in slice order."""
        for key in keys:
            total = self.parameters[key].g
            for r in self.replicas:
                if not r.real and key in r.params:
                    total += r.params[key].g

    def _stat_syncs(self, s: int) -> tuple:
        """The exchanged-statistics sync points before and after stage ``s`` (None where there is none)."""
        before = self.syncs[s - 1] if s > 0 else None
        after = self.syncs[s] if s < len(self.syncs) else None
        return (before if isinstance(before, _StatSync) else None, after if isinstance(after, _StatSync) else None)

    def _stage_forward(self, r: _Replica, s: int) -> None:
        if s == r.stages[0] and not r.real:
            for key, p in r.params.items():
                p.d = self._sources[key]
        before, after = self._stat_syncs(s)
        if before is not None:
            self._stat_normalise(r, before)
        st = r.graphs[s]
        if st.sink is not None:
            st.sink.forward(clear_no_need_grad=True)
            for key, out in st.outputs:
                if key in self._read_later:  # sync points read the stage's own variable
                    r.boundaries[key].d = out.d
        if after is not None:
            self._stat_sums(r, after)

    def _stage_backward(self, r: _Replica, s: int, seed: float) -> None:
        before, after = self._stat_syncs(s)
        if after is not None:
            self._stat_grad(r, after)
        st = r.graphs[s]
        if st.sink is not None:
            for key, out in st.outputs:
                if key == hash(self.loss):
                    out.g = np.full(out.shape, seed, np.float32)
                elif key in r.boundaries:
                    out.g = r.boundaries[key].g
                else:
                    out.grad.zero()
            st.sink.backward(clear_buffer=True)
        if before is not None:
            self._stat_grad_sums(r, before)

    @staticmethod
    def _channels(values: np.ndarray) -> np.ndarray:
        return values.reshape(values.shape[0], values.shape[1], -1)

    def _stat_x(self, r: _Replica, sync: _StatSync) -> np.ndarray:
        """The BN input's values for a slice after the sync point (from the whole batch where the layout changes)."""
        return sync.whole_x[self._slice(r)] if sync.regroups else r.holders[sync.x].d

    def _stat_sums(self, r: _Replica, sync: _StatSync) -> None:
        """Forward, in the worker: Σx and Σx² per channel over its slice."""
        x = self._channels(r.holders[sync.x].d)
        sync.sums[r.start] = (x.sum(axis=(0, 2), dtype=np.float64), np.einsum("ncl,ncl->c", x, x, dtype=np.float64))

    def _stat_forward(self, sync: _StatSync, before: List[_Replica]) -> None:
        """The global mean and variance, the running statistics updated once (as one graph updates them) and the
        per-channel scale and shift every worker applies (``before``: the slices that summed x)."""
        f = sync.function
        beta, gamma, running_mean, running_var = f.inputs[1:]
        n = sync.count
        sum_x, sum_xx = self._totals(sync, before)
        if sync.regroups:
            sync.whole_x = np.concatenate([r.holders[sync.x].d for r in before])
        sync.mean = sum_x / n
        sync.var = np.maximum(sum_xx / n - sync.mean ** 2, 0)
        shape = running_mean.shape
        decay = np.float32(f.info.args["decay_rate"])
        running_mean.d = decay * running_mean.d + (1 - decay) * sync.mean.astype(np.float32).reshape(shape)
        unbiased = sync.var * (n / (n - 1) if n > 1 else 1.0)
        running_var.d = decay * running_var.d + (1 - decay) * unbiased.astype(np.float32).reshape(shape)
        rstd = 1 / np.sqrt(sync.var + f.info.args["eps"])
        scale = gamma.d.reshape(-1).astype(np.float64) * rstd
        sync.scale = scale.astype(np.float32).reshape(shape)
        sync.shift = (beta.d.reshape(-1) - sync.mean * scale).astype(np.float32).reshape(shape)

    def _totals(self, sync: _StatSync, replicas: List[_Replica]) -> tuple:
        """The slices' per-channel sums added up, in slice order (not the order they finished: the same bits every
        run)."""
        parts = [sync.sums[r.start] for r in replicas]
        return sum(a for a, _ in parts), sum(b for _, b in parts)

    def _stat_normalise(self, r: _Replica, sync: _StatSync) -> None:
        """Forward, in the worker: y = x·scale + shift on its slice."""
        y = r.boundaries[sync.y].d
        np.multiply(self._stat_x(r, sync), sync.scale, out=y)
        y += sync.shift

    def _stat_grad_sums(self, r: _Replica, sync: _StatSync) -> None:
        """Backward, in the worker: Σdy and Σdy·x per channel over its slice."""
        dy = self._channels(r.boundaries[sync.y].g)
        x = self._channels(self._stat_x(r, sync))
        sync.sums[r.start] = (dy.sum(axis=(0, 2), dtype=np.float64), np.einsum("ncl,ncl->c", dy, x, dtype=np.float64))

    def _stat_backward(self, sync: _StatSync, after: List[_Replica]) -> None:
        """beta's and gamma's gradients, and the per-channel terms of x's gradient through the batch mean and variance
        (NNabla's batch-statistics backward, written as A + B·x; ``after``: the slices that summed dy)."""
        f = sync.function
        x, beta, gamma = f.inputs[:3]
        n, eps = sync.count, f.info.args["eps"]
        db, sum_dyx = self._totals(sync, after)
        if sync.regroups:
            sync.whole_dy = np.concatenate([r.boundaries[sync.y].g for r in after])
        centred = sum_dyx - sync.mean * db  # Σdy·(x − mean)
        rstd = 1 / np.sqrt(sync.var + eps)
        if beta.need_grad:
            beta.g += db.astype(np.float32).reshape(beta.shape)
        if gamma.need_grad:
            gamma.g += (centred * rstd).astype(np.float32).reshape(gamma.shape)
        g = gamma.d.reshape(-1).astype(np.float64)
        dvar = -0.5 * g * centred * rstd ** 3
        dmean = -g * db * rstd  # the term through the variance's mean is 2·dvar·Σ(x − mean)/n, zero up to rounding
        b = 2 * dvar / n
        shape = f.inputs[3].shape
        sync.correction = ((dmean / n - b * sync.mean).astype(np.float32).reshape(shape), b.astype(np.float32).reshape(shape))

    def _stat_grad(self, r: _Replica, sync: _StatSync) -> None:
        """Backward, in the worker: x's gradient dy·scale + A + B·x added to its slice."""
        if sync.x not in r.boundaries or not sync.function.inputs[0].need_grad:
            return
        a, b = sync.correction
        g = r.boundaries[sync.x].g
        g += (sync.whole_dy[self._slice(r)] if sync.regroups else r.boundaries[sync.y].g) * sync.scale
        g += r.holders[sync.x].d * b
        g += a

    def _sync_forward(self, s: int) -> None:
        """Sync point ``s``: between the slices of stage s and those of stage s + 1."""
        sync, before, after = self.syncs[s], self._stage_replicas[s], self._stage_replicas[s + 1]
        if isinstance(sync, _StatSync):
            return self._stat_forward(sync, before)
        f = sync.function
        for key, v in zip(sync.inputs, f.inputs):
            if key is not None:
                v.d = np.concatenate([r.holders[key].d for r in before])
        f.forward(list(f.inputs), list(f.outputs))  # main thread only: holding the GIL costs nothing here
        for key, v in zip(sync.outputs, f.outputs):
            if key in after[0].boundaries:
                values = v.d
                for r in after:
                    r.boundaries[key].d = values[self._slice(r)]

    def _sync_backward(self, s: int) -> None:
        sync, before, after = self.syncs[s], self._stage_replicas[s], self._stage_replicas[s + 1]
        if isinstance(sync, _StatSync):
            return self._stat_backward(sync, after)
        f = sync.function
        for key, v in zip(sync.outputs, f.outputs):
            if key in after[0].boundaries:
                v.g = np.concatenate([r.boundaries[key].g for r in after])
        propagate = [v.need_grad for v in f.inputs]
        accum = [key is None for key in sync.inputs]  # parameters add to their gradient; sliced inputs are written
        f.backward(list(f.inputs), list(f.outputs), accum)  # inputs without need_grad get nothing
        for key, v, down in zip(sync.inputs, f.inputs, propagate):
            if key is None or not down:
                continue
            g = v.g
            for r in before:
                if key in r.boundaries:
                    grad = r.boundaries[key].g
                    grad += g[self._slice(r)]
