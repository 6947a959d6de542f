"""The project as it is trained, the graphs NNabla's loader builds from it, seeded per epoch, and feeding a batch into
them."""

from __future__ import annotations

import io
from typing import Dict, List

import nnabla as nn
import numpy as np

from ..errors import NncToolsError, first_few
from ..formats.naming import is_computed, repeat_expansions
from ..formats.nnp import load_project, multipliers
from ..formats.schema import network_of, nnabla_pb2
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


def frozen_parameters(proto: nnabla_pb2.NNablaProtoBuf, optimizer: str) -> List[str]:
    """Parameters of the optimizer's network that it does not train (multiplier 0 or not listed)."""
    opt = next(o for o in proto.optimizer if o.name == optimizer)
    m = multipliers(opt)
    net = network_of(proto, opt.network_name)
    names = [v.name for v in net.variable if v.type == "Parameter"] if net else list(m)
    return [n for n in names if m.get(n, 0.0) == 0.0]


def training_proto(project, options) -> nnabla_pb2.NNablaProtoBuf:
    """The project as it will be trained (``options``: a ``TrainOptions``): epochs and batch size overridden, a frozen
    BN on running statistics (``frozen_bn`` inference) or batch statistics (batch), no parameter data."""
    proto = nnabla_pb2.NNablaProtoBuf()
    proto.CopyFrom(project.proto)
    if options.epochs is not None:
        proto.training_config.max_epoch = options.epochs
    if options.batch_size is not None:
        for net in proto.network:
            net.batch_size = options.batch_size
        for d in proto.dataset:
            d.batch_size = options.batch_size
    for opt in proto.optimizer:  # a frozen BN: on running statistics (inference), or on batch statistics (batch)
        frozen = set(frozen_parameters(proto, opt.name))
        net = network_of(proto, opt.network_name)
        for f in net.function if net is not None else ():
            if f.type == "BatchNormalization" and len(f.input) >= 3 and f.input[1] in frozen and f.input[2] in frozen:
                f.batch_normalization_param.batch_stat = options.frozen_bn == "batch"
    return proto


def refuse_frozen_at_random(project, proto: nnabla_pb2.NNablaProtoBuf, weights, where) -> None:
    """A parameter the run keeps frozen (multiplier 0) that neither the project nor ``weights`` gives values would
    train frozen at its random initial value, a result that looks fine and is not (an ``.sdcproj`` whose ``W.File``
    references are not found, a text project without its ``.h5``): one line naming them, before any work."""
    given = set(project.parameters)
    frozen = [n for n in frozen_parameters(proto, proto.optimizer[0].name)
              if n not in given and not is_computed(n) and not repeat_expansions(n, given)]
    if frozen and weights is not None:
        given = set(load_project(weights).parameters)
        frozen = [n for n in frozen if n not in given and not repeat_expansions(n, given)]
    if frozen:
        raise NncToolsError(where, f"has no values for {len(frozen)} parameters it keeps frozen ({first_few(frozen)}): "
                            "they would train frozen at their random initial values; give them (--weights FROM.nnp, "
                            "or the weights the project references) or pass --allow-frozen-initial")
