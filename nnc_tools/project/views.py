"""A network as an overlay's rules see it: every parameter as a ``Slot`` with the names a rule may call its layer by, in
network order, and the position of every named layer or function (``NetworkView``); both back-ends (NNabla projects and
``.sdcproj``) build their views with ``view_of``, so that they name layers alike."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..formats.naming import layer_of


@dataclass
class Slot:
    """A parameter as the overlay sees it, in one network: full name, NNC layer name, last name component, position,
    and every name a rule may call its layer by (``names``)."""

    parameter: str
    layer: str
    short: str
    position: int
    names: frozenset = frozenset()


@dataclass
class NetworkView:
    """What rules match against in one network: parameter slots and the network order of every named layer/function."""

    slots: List[Slot]
    positions: Dict[str, int] = field(default_factory=dict)
    current: Dict[str, float] = field(default_factory=dict)  # each parameter's multiplier before the overlay


def view_of(functions: Sequence[Tuple[str, Sequence[str]]], prefix: str = "", extra: Sequence[str] = ()) -> NetworkView:
    """The view of a network given as (function name, parameters it reads) in network order; ``prefix`` is the
    network's own name prefix on function names (``Main/``), ``extra`` parameters the optimizer lists that no
    function reads (they come last). Both back-ends build their views here, so that they name layers alike."""
    view = NetworkView([])
    seen = set()
    for i, (function, parameters) in enumerate(functions):
        aliases = _aliases(function, prefix)
        for name in aliases:
            view.positions.setdefault(name, i)
        for name in parameters:
            if name not in seen:
                seen.add(name)
                view.slots.append(_slot(name, i, aliases))
    for k, name in enumerate(n for n in extra if n not in seen):
        view.slots.append(_slot(name, len(functions) + k, ()))
    return view


def _aliases(function: str, prefix: str) -> List[str]:
    """A function's names: as it stands, without its network's prefix, and (inside a Unit) the layer's own Name."""
    names = [function]
    if prefix and function.startswith(prefix):
        names.append(function[len(prefix):])
    names.append(function.rsplit("/", 1)[-1])
    return list(dict.fromkeys(n for n in names if n))


def _slot(parameter: str, position: int, aliases: Sequence[str]) -> Slot:
    layer = layer_of(parameter)
    names = {layer, _REPEAT.sub("", layer), *aliases}
    return Slot(parameter, layer, parameter.rsplit("/", 1)[-1], position, frozenset(names))


_REPEAT = re.compile(r"\{[^}]*\}")  # NNC's converter marks a parameter inside a Repeat block: Convolution_2{RepeatStart}


def glob_matches(pattern: str, slot: Slot) -> bool:
    """A rule's glob against a parameter: its full name (when the pattern has a '/') or any name of its layer."""
    if "/" in pattern and fnmatch.fnmatchcase(slot.parameter, pattern):
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for name in slot.names)


def position_of(name: str, view: NetworkView) -> Optional[int]:
    """Where a named layer or function stands in network order (a layer: its first parameter's function)."""
    if name in view.positions:
        return view.positions[name]
    layer_positions = [s.position for s in view.slots if name in s.names]
    return min(layer_positions) if layer_positions else None
