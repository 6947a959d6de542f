"""Batch Normalization on batch statistics, synchronised over data-parallel workers by exchanging per-channel sums."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np


def _channels(values: np.ndarray) -> np.ndarray:
    return values.reshape(values.shape[0], values.shape[1], -1)


@dataclass
class SyncBatchNorm:
    """Batch Normalization on batch statistics as a synchronised BN that exchanges per-channel statistics instead of
    activations: each worker sums x and x² over its slice, the sums give the global mean and variance (NNabla's formula,
    E[x²] − E[x]²) and the running statistics (updated once), and each worker normalises its slice; in backward each
    worker sums dy and dy·x, and the sums give beta's and gamma's gradients and x's gradient ``dy·s + A + B·x`` per
    channel, the terms through the batch mean and variance included. The per-slice work is numpy in the worker threads
    (it releases the GIL); NNabla's BN on given statistics has a slow backward (6× its batch-statistics one).

    The per-slice steps (``sum_forward``, ``normalise``, ``sum_backward``, ``input_grad``) run in the workers on a
    replica (``holders``, ``boundaries``, ``rows``); ``forward`` and ``backward`` run once, between them."""
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

    @classmethod
    def of(cls, f) -> "SyncBatchNorm":
        x = f.inputs[0]
        return cls(f, hash(x), hash(f.outputs[0]), x.size // x.shape[1])

    def _x(self, r) -> np.ndarray:
        """The BN input's values for a slice after the sync point (from the whole batch where the layout changes)."""
        return self.whole_x[r.rows] if self.regroups else r.holders[self.x].d

    def _totals(self, replicas: List) -> tuple:
        """The slices' per-channel sums added up, in slice order (not the order they finished: the same bits every
        run)."""
        parts = [self.sums[r.start] for r in replicas]
        return sum(a for a, _ in parts), sum(b for _, b in parts)

    def sum_forward(self, r) -> None:
        """Forward, in the worker: Σx and Σx² per channel over its slice."""
        x = _channels(r.holders[self.x].d)
        self.sums[r.start] = (x.sum(axis=(0, 2), dtype=np.float64), np.einsum("ncl,ncl->c", x, x, dtype=np.float64))

    def forward(self, before: List) -> None:
        """The global mean and variance, the running statistics updated once (as one graph updates them) and the
        per-channel scale and shift every worker applies (``before``: the slices that summed x)."""
        f = self.function
        beta, gamma, running_mean, running_var = f.inputs[1:]
        n = self.count
        sum_x, sum_xx = self._totals(before)
        if self.regroups:
            self.whole_x = np.concatenate([r.holders[self.x].d for r in before])
        self.mean = sum_x / n
        self.var = np.maximum(sum_xx / n - self.mean ** 2, 0)
        shape = running_mean.shape
        decay = np.float32(f.info.args["decay_rate"])
        running_mean.d = decay * running_mean.d + (1 - decay) * self.mean.astype(np.float32).reshape(shape)
        unbiased = self.var * (n / (n - 1) if n > 1 else 1.0)
        running_var.d = decay * running_var.d + (1 - decay) * unbiased.astype(np.float32).reshape(shape)
        rstd = 1 / np.sqrt(self.var + f.info.args["eps"])
        scale = gamma.d.reshape(-1).astype(np.float64) * rstd
        self.scale = scale.astype(np.float32).reshape(shape)
        self.shift = (beta.d.reshape(-1) - self.mean * scale).astype(np.float32).reshape(shape)

    def normalise(self, r) -> None:
        """Forward, in the worker: y = x·scale + shift on its slice."""
        y = r.boundaries[self.y].d
        np.multiply(self._x(r), self.scale, out=y)
        y += self.shift

    def sum_backward(self, r) -> None:
        """Backward, in the worker: Σdy and Σdy·x per channel over its slice."""
        dy = _channels(r.boundaries[self.y].g)
        x = _channels(self._x(r))
        self.sums[r.start] = (dy.sum(axis=(0, 2), dtype=np.float64), np.einsum("ncl,ncl->c", dy, x, dtype=np.float64))

    def backward(self, after: List) -> None:
        """beta's and gamma's gradients, and the per-channel terms of x's gradient through the batch mean and variance
        (NNabla's batch-statistics backward, written as A + B·x; ``after``: the slices that summed dy)."""
        f = self.function
        x, beta, gamma = f.inputs[:3]
        n, eps = self.count, f.info.args["eps"]
        db, sum_dyx = self._totals(after)
        if self.regroups:
            self.whole_dy = np.concatenate([r.boundaries[self.y].g for r in after])
        centred = sum_dyx - self.mean * db  # Σdy·(x − mean)
        rstd = 1 / np.sqrt(self.var + eps)
        if beta.need_grad:
            beta.g += db.astype(np.float32).reshape(beta.shape)
        if gamma.need_grad:
            gamma.g += (centred * rstd).astype(np.float32).reshape(gamma.shape)
        g = gamma.d.reshape(-1).astype(np.float64)
        dvar = -0.5 * g * centred * rstd ** 3
        dmean = -g * db * rstd  # the term through the variance's mean is 2·dvar·Σ(x − mean)/n, zero up to rounding
        b = 2 * dvar / n
        shape = f.inputs[3].shape
        self.correction = ((dmean / n - b * self.mean).astype(np.float32).reshape(shape), b.astype(np.float32).reshape(shape))

    def input_grad(self, r) -> None:
        """Backward, in the worker: x's gradient dy·scale + A + B·x added to its slice."""
        if self.x not in r.boundaries or not self.function.inputs[0].need_grad:
            return
        a, b = self.correction
        g = r.boundaries[self.x].g
        g += (self.whole_dy[r.rows] if self.regroups else r.boundaries[self.y].g) * self.scale
        g += r.holders[self.x].d * b
        g += a
