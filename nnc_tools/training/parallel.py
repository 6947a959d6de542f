"""Data-parallel training on CPU cores: the training graph replayed once per worker on a slice of the batch, in threads
(NNabla's graph forward and backward release the GIL), gradients summed before the one solver update, which equals the
single-graph update up to the order of float additions. How functions are split, synchronised and sliced is told in the
README's "Design: data parallelism"; this module runs the plan (``slicing``) on the slices' graphs (``replicas``): the
worker threads, the stages in turn, the sync points between them and the gradients summed at the end.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Sequence

import nnabla as nn
import numpy as np

from .engine import quick_array_access
from .replicas import Replica, build_replica
from .slicing import SlicePlan, WholeBatchSync, ordinal
from .sync_bn import SyncBatchNorm


class WorkerPool:
    """``workers`` threads: this one and ``workers - 1`` of a pool."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = ThreadPoolExecutor(workers - 1) if workers > 1 else None

    def each(self, work: Callable, items: Sequence) -> None:
        """``work(item)`` for every item, in order, each taken by the next worker (this thread or one of the pool's)
        that is free."""
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

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None


class DataParallel:
    """A graph (``outputs`` at batch size B, its leaves fed as usual) run by ``workers`` threads on slices of the batch
    (``slice_sizes``).
    ``forward`` returns the outputs' values; ``forward_backward`` also leaves in every trained parameter's ``.g`` the
    gradient of the single-graph ``outputs[0].backward(grad=1/outputs[0].size)``. The caller zeroes the gradients
    before and updates after, as with one graph. ``batch_size``: the first dimension of the graph's data."""

    def __init__(self, outputs: Sequence[nn.Variable], parameters: Dict[str, nn.Variable], workers: int, batch_size: int):
        quick_array_access()
        self.plan = plan = SlicePlan(outputs, parameters, workers, batch_size)
        self.outputs, self.loss, self.batch, self.workers = plan.outputs, plan.outputs[0], plan.batch, plan.workers
        self.parameters, self.leaves, self.syncs, self.stage_count = plan.parameters, plan.leaves, plan.syncs, plan.stage_count
        # One layout (how the batch is cut) for the whole graph, or one up to a BN and another after it.
        self.layouts: List[List[Replica]] = []
        for sizes, stages in plan.layouts:
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
            self.layouts.append([build_replica(plan, k, int(n), int(s), stages) for k, (n, s) in enumerate(zip(sizes, starts))])
        self.replicas = [r for layout in self.layouts for r in layout]
        self._stage_replicas = [next(layout for layout in self.layouts if s in layout[0].stages)
                                for s in range(self.stage_count)]
        self._stage_outputs = {key for r in self.replicas for st in r.graphs for key, _ in st.outputs}
        self.pool = WorkerPool(self.workers)
        self._sources: Dict[int, np.ndarray] = {}  # during a step: the parameters' values, for the slices' copies
        self._gradient_groups = self._balanced([key for key, p in self.parameters.items() if p.need_grad])

    def close(self) -> None:
        """Stop the worker threads."""
        self.pool.close()

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
                part = f"after the {ordinal(nth)} {sync.info.type_name} on {part}"
            parts.append(part + (", each worker taking the next when done" if len(sizes) > self.workers else ""))
        return f"{self.workers} workers on " + ", then ".join(parts)

    def describe_sync_points(self) -> str:
        """Where the workers meet, e.g. ``9 BatchNormalization (batch statistics exchanged), 1 Softmax (whole batch)``,
        and the Dropout masks drawn ahead."""
        counts: Dict[str, int] = {}
        for sync in self.syncs:
            kind = sync.function.info.type_name
            kind += " (batch statistics exchanged)" if isinstance(sync, SyncBatchNorm) else " (whole batch)"
            counts[kind] = counts.get(kind, 0) + 1
        text = ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "nothing"
        if self.plan.masks_ahead:
            text += f"; {len(self.plan.masks_ahead)} Dropout masks drawn for the whole batch before each step"
        return text

    # ---------------------------------------------------------------------------------------------------- running

    def _each(self, work, items=None) -> None:
        self.pool.each(work, self.replicas if items is None else items)

    def _balanced(self, keys: List[int]) -> List[List[int]]:
        """``keys`` (parameters) in one group per worker, of about equal size."""
        groups: List[List[int]] = [[] for _ in range(self.workers)]
        sizes = [0] * self.workers
        for key in sorted(keys, key=lambda k: -self.parameters[k].size):
            k = sizes.index(min(sizes))
            groups[k].append(key)
            sizes[k] += self.parameters[key].size
        return [g for g in groups if g]

    def _holding(self, key: int, where: str = "holders") -> List[Replica]:
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
                    r.holders[key].d = whole[r.rows] if v.shape and v.shape[0] == self.batch else whole
        # Copies, made by each slice's worker: NNabla's arrays are not for two threads to read at once (SyncedArray);
        # the numpy views taken here are.
        copies = any(not r.real for r in self.replicas)
        self._sources = {key: p.d for key, p in self.parameters.items()} if copies else {}
        for ahead in self.plan.masks_ahead.values():  # in forward order: the draws one graph takes
            ahead.function.forward([ahead.ones], [ahead.mask])
            mask = ahead.mask.d
            for r in self.replicas:
                if ahead.key in r.masks:
                    r.masks[ahead.key].d = mask[r.rows]
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
        self._zero_gradients()
        seed = 1.0 / self.loss.size
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

    def _zero_gradients(self) -> None:
        """The slices' own parameters' and leaves' gradients, and those of whole-batch outputs that are not sliced (a
        batch mean …), which gather their gradient as one; the first slice's parameters are the real ones: the caller
        zeroes those."""
        for r in self.replicas:
            if not r.real:
                for p in r.params.values():
                    if p.need_grad:
                        p.grad.zero()
        for r in self.replicas:
            for b in r.boundaries.values():
                b.grad.zero()
        for sync in self.syncs:
            if isinstance(sync, WholeBatchSync):
                for key, v in zip(sync.outputs, sync.function.outputs):
                    if v.need_grad and not self._holding(key):
                        v.grad.zero()

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
        return (before if isinstance(before, SyncBatchNorm) else None, after if isinstance(after, SyncBatchNorm) else None)

    def _stage_forward(self, r: Replica, s: int) -> None:
        if s == r.stages[0] and not r.real:
            for key, p in r.params.items():
                p.d = self._sources[key]
        before, after = self._stat_syncs(s)
        if before is not None:
            before.normalise(r)
        st = r.graphs[s]
        if st.sink is not None:
            st.sink.forward(clear_no_need_grad=True)
            for key, out in st.outputs:
                if key in self.plan.read_later:  # sync points read the stage's own variable
                    r.boundaries[key].d = out.d
        if after is not None:
            after.sum_forward(r)

    def _stage_backward(self, r: Replica, s: int, seed: float) -> None:
        before, after = self._stat_syncs(s)
        if after is not None:
            after.input_grad(r)
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
            before.sum_backward(r)

    def _sync_forward(self, s: int) -> None:
        """Sync point ``s``: between the slices of stage s and those of stage s + 1."""
        sync, before, after = self.syncs[s], self._stage_replicas[s], self._stage_replicas[s + 1]
        if isinstance(sync, SyncBatchNorm):
            return sync.forward(before)
        f = sync.function
        for key, v in zip(sync.inputs, f.inputs):
            if key is not None:
                v.d = np.concatenate([r.holders[key].d for r in before])
        f.forward(list(f.inputs), list(f.outputs))  # main thread only: holding the GIL costs nothing here
        for key, v in zip(sync.outputs, f.outputs):
            if key in after[0].boundaries:
                values = v.d
                for r in after:
                    r.boundaries[key].d = values[r.rows]

    def _sync_backward(self, s: int) -> None:
        sync, before, after = self.syncs[s], self._stage_replicas[s], self._stage_replicas[s + 1]
        if isinstance(sync, SyncBatchNorm):
            return sync.backward(after)
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
                    grad += g[r.rows]
