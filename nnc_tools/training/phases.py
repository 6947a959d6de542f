"""Training in phases (``nnc-tl train --phases OVERLAY.yaml``): e.g. the new head alone for a few epochs, then every
layer at a tenth of the rate (fastai's ``fine_tune``, Lightning's ``BackboneFinetuning``). Each phase is the project
with that phase's overlay applied to it as it was (not to the previous phase's) and its learning rate scaled; at a
boundary the run rebuilds its graphs, solvers and frozen-prefix cache and carries every parameter's solver state into
the solver that trains it next (a parameter entering the solver starts a fresh state, as NNabla's own solver would)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import List

from ..errors import NncToolsError
from ..formats.schema import learning_rate_field, nnabla_pb2
from ..project.freeze import apply_to_proto
from ..project.overlay import load_overlay
from .frozen_cache import find_frozen_prefix
from .graphs import training_proto
from .solvers import storable_rate


@dataclass
class PhasePlan:
    index: int  # 0-based
    first: int  # its first and last epoch, 1-based, inclusive
    last: int
    saved: nnabla_pb2.NNablaProtoBuf  # the project as the phase has it (its multipliers): what results.nnp holds
    trained: nnabla_pb2.NNablaProtoBuf  # as it trains: training_proto of it, the learning rate scaled


def plan_phases(project, options, project_path: Path) -> List[PhasePlan]:
    """Every phase checked against the project before anything trains; their epochs add up to the run's."""
    overlay = load_overlay(options.phases)
    if not overlay.phases:
        raise NncToolsError(options.phases, "has no 'phases': for one set of multipliers use apply-freeze")
    total = sum(p.epochs for p in overlay.phases)
    if options.epochs is not None and options.epochs != total:
        raise NncToolsError(options.phases, f"its phases take {total} epochs; --epochs {options.epochs} says otherwise")
    plans, first = [], 1
    for k, phase in enumerate(overlay.phases):
        saved = nnabla_pb2.NNablaProtoBuf()
        saved.CopyFrom(project.proto)
        try:
            apply_to_proto(saved, phase.overlay, project_path)
        except NncToolsError as e:
            raise NncToolsError(options.phases, f"phases[{k}]: {e.problem}") from None
        saved.training_config.max_epoch = total
        trained = training_proto(type(project)(saved, {}), replace(options, epochs=total))
        if phase.lr_scale != 1.0:
            for optimizer in trained.optimizer:
                which = optimizer.solver.WhichOneof("parameter")
                param = getattr(optimizer.solver, which) if which else None
                field = learning_rate_field(param) if param is not None else None
                if field is not None:
                    setattr(param, field, storable_rate(getattr(param, field) * phase.lr_scale, options.phases,
                                                        f"phases[{k}].lr_scale {phase.lr_scale:g}"))
        if options.cache_frozen == "on":  # a phase without a prefix to cache fails here, not when it is reached
            prefix = find_frozen_prefix(trained, trained.optimizer[0].name)
            if prefix.cut is None:
                raise NncToolsError(options.phases, f"phases[{k}]: --cache-frozen on, but it has no frozen prefix to cache "
                                    f"({prefix.stopped_at}: {prefix.reason})")
        plans.append(PhasePlan(k, first, first + phase.epochs - 1, saved, trained))
        first += phase.epochs
    return plans


def phase_at(plans: List[PhasePlan], epoch: int) -> PhasePlan:
    return next((p for p in plans if p.first <= epoch <= p.last), plans[-1])


def solver_states(solvers) -> dict:
    """Every trained parameter's solver state, by name."""
    states = {}
    for group in solvers:
        states.update(group.solver.get_states())
    return states


def carry_states(states: dict, solvers) -> None:
    """Each parameter's state into the solver that trains it now (one per multiplier); new ones start fresh."""
    for group in solvers:
        kept = {name: state for name, state in states.items() if name in group.parameters}
        if kept:
            group.solver.set_states(kept)
