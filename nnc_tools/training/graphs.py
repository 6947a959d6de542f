"""The training graphs NNabla's loader builds from a project, seeded per epoch, and feeding a batch into them."""

from __future__ import annotations

import io
from typing import Dict

import nnabla as nn
import numpy as np

from ..errors import NncToolsError
from .engine import nnabla_load


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s data order and random functions: a run's epochs depend only on (seed, epoch)."""
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**31 - 1)


class TrainingGraphs:
    """NNabla's loader on the training proto, rebuilt each epoch so that random functions are seeded by (seed, epoch)."""

    def __init__(self, text: str, batch_size: int, context: str):
        self.text, self.batch_size, self.context = text, batch_size, context

    def build(self, seed: int):
        nn.seed(seed)
        return nnabla_load([io.StringIO(self.text)], prepare_data_iterator=False, batch_size=self.batch_size,
                           extension=".nntxt", context=self.context)


def feed(assign, data: Dict[str, np.ndarray], skip=()) -> None:
    """Put a batch into the network's data variables (``skip``: data names the frozen-prefix cache has cut off)."""
    for variable, name in assign.items():
        if name in skip:
            continue
        if name not in data:
            raise NncToolsError(None, f"variable {variable.name} wants data '{name}', which the dataset does not have")
        v = variable.variable_instance
        value = data[name]
        v.d = value.reshape(v.shape) if value.size == v.size else value


def padded(indices: np.ndarray, batch_size: int) -> np.ndarray:
    """A last, short batch's indices filled up to the batch size (the extra rows are not counted)."""
    if len(indices) == batch_size:
        return indices
    return np.concatenate([indices, np.resize(indices, batch_size - len(indices))])
