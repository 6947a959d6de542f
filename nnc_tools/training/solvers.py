"""One solver per distinct learning-rate multiplier, built by NNabla's own factory at learning rate × multiplier."""

from __future__ import annotations

import inspect
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List

import nnabla as nn

from ..errors import NncToolsError
from ..formats.schema import FLOAT32_TINY, as_float32, learning_rate_field, nnabla_pb2


@dataclass
class SolverGroup:
    """The parameters trained at one multiplier and the solver that trains them."""

    multiplier: float
    created: object  # NNabla's created optimizer: .solver, .scheduler, .weight_decay
    parameters: Dict[str, nn.Variable]

    @property
    def solver(self):
        return self.created.solver


def group_solvers(proto_optimizer, parameters: Dict[str, nn.Variable]) -> List[SolverGroup]:
    """One solver per distinct multiplier m > 0, built by NNabla's own factory at learning rate x m."""
    groups: Dict[float, Dict[str, nn.Variable]] = OrderedDict()
    for pv in proto_optimizer.parameter_variable:
        m = float(pv.learning_rate_multiplier)
        if m > 0 and pv.variable_name in parameters:
            groups.setdefault(m, OrderedDict())[pv.variable_name] = parameters[pv.variable_name]
    out = []
    for m, params in groups.items():
        scaled = nnabla_pb2.Optimizer()
        scaled.CopyFrom(proto_optimizer)
        which = scaled.solver.WhichOneof("parameter")
        if which is None:
            raise NncToolsError(None, f"optimizer {proto_optimizer.name} has no solver parameters")
        param = getattr(scaled.solver, which)
        key = learning_rate_field(param)
        setattr(param, key, storable_rate(getattr(param, key) * m, None, f"multiplier {m:g} of optimizer {proto_optimizer.name}"))
        created = create_solver(scaled)
        created.solver.set_parameters(params)
        out.append(SolverGroup(m, created, params))
    return out


def storable_rate(rate: float, where, what: str) -> float:
    """A learning rate the solver (a float32 field) holds as it is: not infinite, not rounded to 0 (a frozen layer)."""
    stored = as_float32(rate) if math.isfinite(rate) and abs(rate) < 3.4e38 else math.inf
    if not math.isfinite(stored) or (rate > 0 and stored < FLOAT32_TINY):
        raise NncToolsError(where, f"{what} makes the learning rate {rate:g}, which a float32 cannot hold: it would train "
                            "to inf/NaN or not at all")
    return rate


def create_solver(optimizer_proto):
    """NNabla's own solver factory (solver, scheduler, weight decay); for the proto's solver types that factory lacks
    (Lamb, Lion in NNabla 1.39) the solver comes from ``nnabla.solvers`` with the proto's hyper-parameters."""
    import nnabla.solvers as S
    from nnabla.utils.load import _create_optimizer

    try:
        return _create_optimizer(nn.get_current_context(), optimizer_proto, None)
    except ValueError:
        kind = optimizer_proto.solver.type
        factory = getattr(S, kind, None)
        which = optimizer_proto.solver.WhichOneof("parameter")
        if factory is None or which is None:
            raise NncToolsError(None, f"solver {kind} is not one NNabla provides") from None
        param = getattr(optimizer_proto.solver, which)
        accepted = inspect.signature(factory).parameters
        kwargs = {f.name: getattr(param, f.name) for f in param.DESCRIPTOR.fields if f.name in accepted}
        lr = kwargs[learning_rate_field(kwargs)]
        stand_in = nnabla_pb2.Optimizer()
        stand_in.CopyFrom(optimizer_proto)
        stand_in.solver.type = "Sgd"
        stand_in.solver.sgd_param.lr = lr  # NNabla builds the scheduler and weight decay; the update is the real solver's
        created = _create_optimizer(nn.get_current_context(), stand_in, None)
        created.solver = factory(**kwargs)
        return created


def loader_safe(proto: nnabla_pb2.NNablaProtoBuf) -> nnabla_pb2.NNablaProtoBuf:
    """The proto NNabla's loader is given: a solver type it cannot build becomes Sgd (we build the real solvers)."""
    from nnabla.utils.load import _create_optimizer

    safe = nnabla_pb2.NNablaProtoBuf()
    safe.CopyFrom(proto)
    for o in safe.optimizer:
        try:
            _create_optimizer(nn.get_current_context(), o, None)
        except ValueError:
            o.solver.type = "Sgd"
            o.solver.sgd_param.lr = 0.0
    return safe
