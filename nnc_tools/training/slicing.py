"""How data-parallel training cuts a graph and its batch: which functions may run on a slice of the batch (a sample's
result from that sample alone), the stages between the points where the workers meet, what each sync point is, and how
many images each slice gets (``slice_sizes``, ``smallest_slice``). ``SlicePlan`` is the whole decision for one graph;
``parallel.DataParallel`` runs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import nnabla as nn
import nnabla.function as _functions

from ..formats.functions import PER_SAMPLE, RANDOM_FUNCTIONS
from .sync_bn import SyncBatchNorm


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


def output_maps(kind: str, weight_shape: tuple, group: int) -> int:
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
        if f.info.type_name not in WEIGHTED or len(f.inputs) < 2:
            continue
        out, weight = f.outputs[0], f.inputs[1]
        if not out.shape or out.shape[0] != batch:
            continue
        maps = output_maps(f.info.type_name, weight.shape, f.info.args.get("group", 1))
        per_image += (out.size // batch) * (weight.size // max(maps, 1))  # multiply-adds: each output, its weights
        if f.info.type_name == "Affine":
            per_slice += SLICE_COST_PER_AFFINE_WEIGHT * weight.size
    return max(at_least, -(-4 * per_slice // per_image) if per_image else at_least)


WEIGHTED = ("Affine", "Convolution", "Deconvolution")


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def per_sample(f, batch: int, parameters: Dict[int, nn.Variable]) -> bool:
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


def replay(f, inputs: Sequence[nn.Variable], batch: Optional[int] = None):
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
class MaskAhead:
    """A Dropout whose mask (its output on ones: 0 or 1/(1 − p)) is drawn for the global batch before the step; the
    workers run ``x · mask`` on their slices, whose backward is NNabla's Dropout backward ``dy · mask``."""
    function: object
    key: int  # the Dropout's output
    ones: nn.Variable
    mask: nn.Variable

    @classmethod
    def of(cls, f) -> "MaskAhead":
        ones = nn.Variable(f.inputs[0].shape)
        ones.data.fill(1.0)
        return cls(f, hash(f.outputs[0]), ones, nn.Variable(f.outputs[0].shape))


@dataclass
class WholeBatchSync:
    """A sync point run as one worker runs it: the graph's own function instance on its own whole-batch variables (a
    random function thus draws exactly what it draws without workers)."""
    function: object
    inputs: List[Optional[int]]  # per input: its key when the workers hold slices of it, else None (a parameter …)
    outputs: List[int]


class SlicePlan:
    """A graph (``outputs`` at batch size ``batch``) cut for ``workers`` threads: its functions in forward order, which
    run per slice, the stages between sync points (``syncs[s]`` sits between stage s and s + 1), the variables that cross
    a stage boundary, the Dropout masks drawn ahead and the layouts (slice sizes and the stages they run)."""

    def __init__(self, outputs: Sequence[nn.Variable], parameters: Dict[str, nn.Variable], workers: int, batch: int):
        self.outputs = list(outputs)
        self.batch = batch
        self.workers = max(1, min(workers, batch))
        self.functions = functions = graph_functions(self.outputs)
        self.output_keys = {hash(v) for v in self.outputs}
        # The graph's own parameter variables: they share data and gradient with ``parameters`` but carry the graph's
        # need_grad (NNabla's loader links unlinked copies into the graph), which decides what backward skips.
        registered = {hash(v) for v in parameters.values()}
        self.parameters = {hash(v): v for f in functions for v in f.inputs if hash(v) in registered}
        self.per_sample = [per_sample(f, batch, self.parameters) for f in functions]
        self.masks_ahead = {i: MaskAhead.of(functions[i]) for i in self._dropouts_ahead()}  # forward order
        for i in self.masks_ahead:
            self.per_sample[i] = True
        self.produced = {hash(v): i for i, f in enumerate(functions) for v in f.outputs}
        self.leaves: Dict[int, nn.Variable] = {hash(v): v for f in functions for v in f.inputs
                                               if hash(v) not in self.produced and hash(v) not in self.parameters}
        self.stage_of, stage = [], 0
        for par in self.per_sample:
            self.stage_of.append(stage)
            if not par:
                stage += 1
        self.stage_count = stage + 1
        self.crossing, self.read_later = self._crossings()
        self.syncs: list = [
            SyncBatchNorm.of(f) if self.workers > 1 and self._exchangeable(f)
            else WholeBatchSync(f, [hash(v) if self.sliced(v) else None for v in f.inputs], [hash(v) for v in f.outputs])
            for f, par in zip(functions, self.per_sample) if not par]
        self.layouts = self._layouts()  # (slice sizes, stages) per layout

    def sliced(self, v: nn.Variable) -> bool:
        """A batch-sized variable that is not a parameter: each worker holds its slice."""
        return hash(v) not in self.parameters and bool(v.shape) and v.shape[0] == self.batch

    def _crossings(self) -> tuple:
        """The variables that cross a boundary (a sync point or a later stage reads them, or a sync point made them),
        and those of them that stage outputs a later stage reads (their values are copied to a leaf)."""
        crossing, read_later = set(), set()
        for i, f in enumerate(self.functions):
            for v in f.inputs:
                key = hash(v)
                if key not in self.produced:
                    continue
                maker = self.produced[key]
                if not self.per_sample[i] or not self.per_sample[maker] or self.stage_of[maker] != self.stage_of[i]:
                    crossing.add(key)
                    if self.per_sample[i] and self.per_sample[maker]:
                        read_later.add(key)
        return crossing, read_later

    def _layouts(self) -> List[tuple]:
        """(slice sizes, stages) per layout: the whole graph cut one way (``slice_sizes`` for its ``smallest_slice``), or,
        where the stages from some BN on hold the Affine layers that make a tail too costly and the stages before it
        are convolutions that gain from one, a tail up to that BN and none after it (``_regroup``)."""
        everything = range(self.stage_count)
        per_stage = [[] for _ in everything]
        for f, par, s in zip(self.functions, self.per_sample, self.stage_of):
            if par:
                per_stage[s].append(f)

        def cut(stages):
            return slice_sizes(self.batch, self.workers, smallest_slice([f for s in stages for f in per_stage[s]], self.batch))

        whole = [(cut(everything), everything)]
        weighted = [s for s in everything if any(f.info.type_name in WEIGHTED and len(f.inputs) > 1 for f in per_stage[s])]
        with_tail = [s for s in weighted if len(cut([s])) > self.workers]
        if self.workers == 1 or not with_tail or with_tail[-1] + 1 >= self.stage_count:
            return whole
        change = with_tail[-1] + 1
        head, tail = range(change), range(change, self.stage_count)
        if cut(head) == cut(tail) or not self._regroup(change):
            return whole
        self.syncs[change - 1].regroups = True
        return [(cut(head), head), (cut(tail), tail)]

    def _regroup(self, change: int) -> bool:
        """Whether the batch may be cut anew at the sync point before stage ``change``: a BN exchanging statistics,
        whose output is all that the stages and sync points after it read of what came before (besides the graph's
        leaves and parameters). Its input and output's gradient then pass as whole batches (``SyncBatchNorm.regroups``)."""
        if not isinstance(self.syncs[change - 1], SyncBatchNorm):
            return False
        made_after = {self.syncs[change - 1].y}
        for f, s in zip(self.functions, self.stage_of):
            if s >= change:
                made_after.update(hash(v) for v in f.outputs)
        return all(hash(v) in made_after or hash(v) in self.leaves or hash(v) in self.parameters
                   for f, s in zip(self.functions, self.stage_of) if s >= change for v in f.inputs)

    def _dropouts_ahead(self) -> List[int]:
        """The Dropout functions (indices) whose masks can be drawn ahead: all of the graph's random functions, when
        each is a Dropout on a sliced variable (drawing some ahead and others in place would reorder the draws)."""
        functions = self.functions
        random = [i for i, f in enumerate(functions) if f.info.type_name in RANDOM_FUNCTIONS]
        if all(functions[i].info.type_name == "Dropout" and self.sliced(functions[i].inputs[0]) for i in random):
            return random
        return []

    def _exchangeable(self, f) -> bool:
        """A Batch Normalization on batch statistics over the channel axis, with beta, gamma, mean and variance as
        parameters and only its output: the workers can exchange its statistics (else it runs on the whole batch)."""
        return (f.info.type_name == "BatchNormalization" and f.info.args.get("batch_stat", True)
                and list(f.info.args["axes"]) == [1] and not f.info.args.get("no_scale") and not f.info.args.get("no_bias")
                and len(f.inputs) == 5 and len(f.outputs) == 1 and self.sliced(f.inputs[0])
                and all(hash(v) in self.parameters for v in f.inputs[1:]))
