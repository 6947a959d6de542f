"""The frozen-prefix cache: when a network's prefix, from the input up to some layer, is frozen and deterministic, compute
its output once per training image and train the rest of the network on those features.

A function belongs to the prefix when every input is the data input, a prefix output or a frozen parameter, it draws no
random numbers (Dropout, RandomShift, ImageAugmentation, …) and, for Batch Normalization, runs on running statistics.
The cut is the last point in function order where exactly one prefix variable is still needed by the rest. Repeat
blocks are read expanded, as the loader builds them (``formats.repeat``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Set

import nnabla as nn
import numpy as np

from ..errors import NncToolsError
from ..formats.functions import LOSS_FUNCTIONS, draws_random
from ..formats.naming import repeat_expansions
from ..formats.nnp import multipliers
from ..formats.repeat import expand_repeats
from ..formats.schema import network_of

log = logging.getLogger(__name__)


@dataclass
class PrefixPlan:
    cut: Optional[str]  # the variable whose values are cached (None: no legal prefix)
    layers: List[str]  # the functions computed once
    stopped_at: Optional[str]  # the first function that could not join, and why
    reason: str


def find_frozen_prefix(proto, optimizer_name: str) -> PrefixPlan:
    """The longest legal frozen prefix of the optimizer's network (see the module docstring)."""
    opt = next(o for o in proto.optimizer if o.name == optimizer_name)
    net = expand_repeats(network_of(proto, opt.network_name))
    if net is None:
        return PrefixPlan(None, [], None, "a recurrent network (RecurrentInput, Delay) is not cached")
    parameters = {v.name for v in net.variable if v.type == "Parameter"}
    m = _expanded_multipliers(opt, parameters)
    frozen = {p for p in parameters if m.get(p, 0.0) == 0.0}
    data_names = {d.variable_name for d in opt.data_variable}
    consumers: Dict[str, List[int]] = {}
    for i, f in enumerate(net.function):
        for name in f.input:
            consumers.setdefault(name, []).append(i)
    inputs = {name for name in data_names if any(_is_image_input(net, name, c) for c in consumers.get(name, []))}
    known: Set[str] = set(inputs)
    best: Optional[int] = None
    stopped, reason = None, "every function is frozen and deterministic"
    for i, f in enumerate(net.function):
        why = _illegal(f, known, frozen, parameters)
        if why:
            stopped, reason = _layer(f.name), why
            break
        known.update(f.output)
        live = {v for v in known if any(c > i for c in consumers.get(v, []))}
        if len(live) == 1 and not (live & inputs):
            best = i
    if best is None:
        return PrefixPlan(None, [], stopped, reason if stopped else "no layer to cache")
    cut_function = net.function[best]
    live = [v for v in known if any(c > best for c in consumers.get(v, []))]
    cut = next(v for v in cut_function.output if v in live) if any(v in live for v in cut_function.output) else live[0]
    return PrefixPlan(cut, [_layer(f.name) for f in net.function[: best + 1]], stopped, reason)


def plan_prefix_cache(proto, optimizer_name: str, choice: str, project_path: Path) -> Optional[PrefixPlan]:
    """The frozen prefix to compute once per image, or None: ``choice`` (``--cache-frozen``) is off, or auto and there
    is none; with ``on`` and none, one line saying where the prefix stopped and why. The decision is logged."""
    if choice == "off":
        return None
    plan = find_frozen_prefix(proto, optimizer_name)
    if plan.cut is None:
        if choice == "on":
            raise NncToolsError(project_path, f"--cache-frozen on: no frozen prefix to cache ({plan.stopped_at}: {plan.reason})")
        log.info(f"frozen-prefix cache: not used ({plan.stopped_at or 'first layer'}: {plan.reason})")
        return None
    log.info(f"frozen-prefix cache: {len(plan.layers)} functions up to {plan.layers[-1]} computed once per image "
             f"(stopped at {plan.stopped_at or 'the end'}: {plan.reason})")
    return plan


def shared_cut(proto, optimizer_name: str, network_name: str, plan: PrefixPlan) -> Optional[str]:
    """The cut variable's name in another network (a monitor's, e.g. ``MainValidation``) when that network starts with
    the same functions as the plan's prefix and needs nothing of it but the cut, so that the cached features of an image
    are its features there too; else None. Names are compared without NNabla's ``@Network/`` prefix."""
    if plan.cut is None:
        return None
    opt = next(o for o in proto.optimizer if o.name == optimizer_name)
    nets = {n.name: n for n in proto.network}
    main, other = (expand_repeats(nets[n]) if n in nets else None for n in (opt.network_name, network_name))
    n = len(plan.layers)
    if main is None or other is None or len(other.function) <= n:
        return None

    same = _correspondence(main.function[:n], other.function[:n], {v.name for v in main.variable if v.type == "Parameter"})
    if same is None:
        return None
    cut = same.get(plan.cut)
    made = {v for f in other.function[:n] for v in list(f.output) + list(f.input)}
    parameters = {v.name for v in other.variable if v.type == "Parameter"}
    if cut is None or any(v != cut and v in made and v not in parameters for f in other.function[n:] for v in f.input):
        return None
    return cut


def _correspondence(mine, theirs, parameters: Set[str]) -> Optional[Dict[str, str]]:
    """When two function lists compute the same thing (same types and settings, inputs wired alike, the same
    parameters; variable and function names may differ, NNabla's ``@Network/`` prefix aside), my variables' names in
    theirs; else None."""
    names: Dict[str, str] = {}
    for a, b in zip(mine, theirs):
        if a.type != b.type or len(a.input) != len(b.input) or len(a.output) != len(b.output):
            return None
        settings = [type(a)(), type(b)()]
        for copy, f in zip(settings, (a, b)):
            copy.CopyFrom(f)
            copy.name = ""
            del copy.input[:], copy.output[:]
        if settings[0] != settings[1]:
            return None
        for x, y in zip(a.input, b.input):
            if (x in parameters and _layer(x) != _layer(y)) or names.setdefault(x, y) != y:
                return None
        for x, y in zip(a.output, b.output):
            names[x] = y
    return names


def _expanded_multipliers(optimizer, parameters: Set[str]) -> Dict[str, float]:
    """The optimizer's multipliers under the names the loader gives Repeat blocks' parameters (``[i]`` per repetition)."""
    out = {}
    for name, value in multipliers(optimizer).items():
        for expanded in [name] if name in parameters else repeat_expansions(name, parameters):
            out[expanded] = value
    return out


def _layer(name: str) -> str:
    """A function's (or variable's) name without the ``@Network/`` prefix NNabla's save() gives it."""
    return name.split("/", 1)[1] if name.startswith("@") and "/" in name else name


def _is_image_input(net, name: str, consumer: int) -> bool:
    f = net.function[consumer]
    return not (f.type in LOSS_FUNCTIONS and list(f.input).index(name) > 0)


def _illegal(f, known: Set[str], frozen: Set[str], parameters: Set[str]) -> Optional[str]:
    if draws_random(f):
        return f"{f.type} draws random numbers"
    for name in f.input:
        if name in parameters and name not in frozen:
            return f"its parameter {name} is trained"
        if name not in parameters and name not in known:
            return f"it reads {name}, which the prefix does not compute"
    if f.type == "BatchNormalization" and f.batch_normalization_param.batch_stat:
        return "Batch Normalization on batch statistics"
    if not f.input:
        return "it has no inputs"
    return None


def memory_budget() -> int:
    """Default feature-cache budget: a quarter of physical memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError):
        return 2 << 30


class FeatureCache:
    """The cut variable's values for every training image, in RAM within the budget, else memory-mapped in ``folder``."""

    def __init__(self, cut: nn.Variable, size: int, budget: int, folder: Path):
        per_example = int(np.prod(cut.shape[1:]))
        shape = (size, *cut.shape[1:])
        self.nbytes = size * per_example * 4
        self.in_memory = self.nbytes <= budget
        if self.in_memory:
            self.values = np.empty(shape, np.float32)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            self.values = np.lib.format.open_memmap(folder / "frozen_features.npy", mode="w+", dtype=np.float32, shape=shape)

    def fill(self, feed, forward, dataset, batch_size: int) -> None:
        """Run the prefix once over the dataset, batch by batch: ``feed(batch)``, then ``forward()`` returns the cut's
        values for it."""
        for start in range(0, dataset.size, batch_size):
            idx = np.arange(start, min(start + batch_size, dataset.size))
            feed(dataset.batch(np.resize(idx, batch_size)))
            self.values[idx] = forward()[: len(idx)]


def detach(cut: nn.Variable) -> None:
    """Make the cut variable a leaf, so that the network's forward and backward start there. (NNabla's public
    ``rewire_on`` needs a variable with a parent to take over; ``_clear_parent`` is how a graph is cut.)"""
    cut._clear_parent()
    cut.need_grad = False
