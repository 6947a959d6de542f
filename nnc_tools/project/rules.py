"""The kinds of overlay rule, one class each, in a table keyed by the YAML key that names the kind (``RULE_KINDS``):
``match`` (a glob on layer or parameter names), ``up_to`` (every parameter up to a layer, in network order), ``decay``
(layer-wise decay back from a layer) and ``all_but_last`` (every parameterised layer but the last N). Each kind reads
itself from YAML (``parse``), picks the parameters it sets in a network and their multipliers (``select``) and names
itself in messages (``describe``). A new kind is one class here and one row in the table."""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, FrozenSet, List, Optional, Tuple, Type

from ..errors import NncToolsError, reject_unknown_keys
from ..formats.naming import is_statistic
from ..formats.schema import FLOAT32_TINY, as_float32
from ..yamlfile import finite_number, name, names, whole_number
from .views import NetworkView, Slot, glob_matches, position_of


def parse_multiplier(value: Any, path: Path, setting: str) -> float:
    """A multiplier the project can hold: finite, >= 0, and the same kind of number as a float32 (1e300 would be stored
    as inf, 1e-320 as 0, i.e. frozen)."""
    value = finite_number(value, path, setting, or_equal=True)
    try:
        stored = as_float32(value)
    except OverflowError:
        stored = math.inf
    if not math.isfinite(stored) or (value > 0 and stored < FLOAT32_TINY):
        raise NncToolsError(path, f"{setting}: {value!r} cannot be stored as a multiplier (a float32 holds {FLOAT32_TINY:g} to "
                            "3.4e+38)")
    return value


def _params(item: dict, path: Path, where: str) -> Optional[Tuple[str, ...]]:
    """The optional ``params`` filter on a parameter's last name component."""
    if item.get("params") is None:
        return None
    return tuple(names(item["params"], path, f"{where}.params", "a list of parameter names such as [W, b]"))


@dataclass
class Rule:
    """What every kind has: the optional ``params`` filter and where in the file the rule stands."""

    params: Optional[Tuple[str, ...]]
    where: str
    KEYS: ClassVar[FrozenSet[str]] = frozenset()

    def keeps(self, slot: Slot) -> bool:
        """The ``params`` filter; Batch Normalization's running statistics only when ``params`` names them: they are not
        trained by a solver, and a rule such as ``match: '*'`` at 1 would put them into one (weight decay would then
        shrink them)."""
        if self.params is None:
            return not is_statistic(slot.parameter)
        return slot.short in self.params

    def select(self, view: NetworkView, chosen: Dict[str, float]) -> Dict[str, float]:
        """The multiplier of every parameter of ``view`` the rule sets, given what the rules before it ``chosen``."""
        raise NotImplementedError

    def describe(self) -> str:
        """The rule as a message names it (``match 'Affine*'``)."""
        raise NotImplementedError

    def wanted(self) -> str:
        """The name the rule looks for, to find the closest existing ones when it matches nothing."""
        raise NotImplementedError

    def candidates(self, view: NetworkView) -> List[str]:
        """Names the rule could have meant in ``view``."""
        return [n for s in view.slots if self.keeps(s) for n in (s.layer, s.parameter)]


@dataclass
class NamedRule(Rule):
    """A kind whose key names a layer or parameter (``KEY: NAME``) and which sets ``multiplier``."""

    target: str = ""
    multiplier: float = 0.0
    KEY: ClassVar[str] = ""

    @classmethod
    def parse(cls, item: dict, path: Path, where: str) -> "NamedRule":
        return cls(_params(item, path, where), where, name(item[cls.KEY], path, where, "a layer or parameter name"),
                   parse_multiplier(_required(item, "multiplier", path, where), path, f"{where}.multiplier"))

    def describe(self) -> str:
        return f"{self.KEY} '{self.target}'"

    def wanted(self) -> str:
        return self.target


@dataclass
class MatchRule(NamedRule):
    """``match: GLOB`` (with ``multiplier``): every parameter whose layer (or, with a '/', whose full name) matches."""

    KEY: ClassVar[str] = "match"
    KEYS: ClassVar[FrozenSet[str]] = frozenset({"match", "params", "multiplier"})

    def select(self, view: NetworkView, chosen: Dict[str, float]) -> Dict[str, float]:
        named = "/" in self.target and self.params is None  # a full parameter name: what it names, statistics too
        return {s.parameter: self.multiplier for s in view.slots if glob_matches(self.target, s) and (
            self.keeps(s) or (named and fnmatch.fnmatchcase(s.parameter, self.target)))}


@dataclass
class UpToRule(NamedRule):
    """``up_to: LAYER`` (with ``multiplier``): every parameter of every layer up to and including LAYER, in network order."""

    KEY: ClassVar[str] = "up_to"
    KEYS: ClassVar[FrozenSet[str]] = frozenset({"up_to", "params", "multiplier"})

    def select(self, view: NetworkView, chosen: Dict[str, float]) -> Dict[str, float]:
        limit = position_of(self.target, view)
        if limit is None:
            return {}
        return {s.parameter: self.multiplier for s in view.slots if self.keeps(s) and s.position <= limit}

    def candidates(self, view: NetworkView) -> List[str]:
        return super().candidates(view) + list(view.positions)


@dataclass
class DecayRule(Rule):
    """``decay: F, from: LAYER`` (optional ``to``): the ``from`` layer keeps the multiplier the rules before it left it
    (or the project's), and each parameterised layer before it in network order, back to ``to`` (or the first), gets the
    previous one's times F. Batch Normalization's running statistics are left alone."""

    factor: float = 1.0
    start: str = ""
    to: Optional[str] = None
    KEYS: ClassVar[FrozenSet[str]] = frozenset({"decay", "from", "to", "params"})

    @classmethod
    def parse(cls, item: dict, path: Path, where: str) -> "DecayRule":
        factor = finite_number(item["decay"], path, f"{where}.decay")
        if "from" not in item:
            raise NncToolsError(path, f"{where}: a decay rule needs 'from' (the layer that keeps its multiplier)")
        to = name(item["to"], path, where, "a layer or parameter name") if "to" in item else None
        return cls(_params(item, path, where), where, factor, name(item["from"], path, where, "a layer or parameter name"), to)

    def select(self, view: NetworkView, chosen: Dict[str, float]) -> Dict[str, float]:
        layers: Dict[str, List[Slot]] = {}
        for slot in sorted(view.slots, key=lambda s: s.position):
            if not is_statistic(slot.parameter) and self.keeps(slot):
                layers.setdefault(slot.layer, []).append(slot)
        order = list(layers)
        start = next((k for k, layer in enumerate(order) if any(self.start in s.names for s in layers[layer])), None)
        stop = 0 if self.to is None else next((k for k, layer in enumerate(order)
                                               if any(self.to in s.names for s in layers[layer])), None)
        if start is None or stop is None or stop > start:
            return {}
        top = layers[order[start]]
        anchor = next((s for s in top if s.short == "W"), top[0]).parameter
        base = chosen.get(anchor, view.current.get(anchor, 1.0))
        values = {}
        for k in range(start - 1, stop - 1, -1):
            value = base * self.factor ** (start - k)
            if 0 < value < FLOAT32_TINY or not math.isfinite(value):
                raise NncToolsError(None, f"{self.where}: decay {self.factor:g} from {self.start} gives {value:g} at "
                                    f"{order[k]}, which a float32 multiplier cannot hold (use 'to' to stop earlier)")
            values.update({s.parameter: value for s in layers[order[k]]})
        return values

    def describe(self) -> str:
        return f"decay from '{self.start}'" + (f" to '{self.to}'" if self.to is not None else "")

    def wanted(self) -> str:
        return self.start


@dataclass
class AllButLastRule(Rule):
    """``all_but_last: N`` (with ``multiplier``): every parameter of every parameterised layer but the last N in network
    order (``all_but_last: 1, multiplier: 0`` freezes everything but the head); Batch Normalization's running statistics
    are left alone. A rule stated without naming a layer, so one overlay fits any network."""

    count: int = 1
    multiplier: float = 0.0
    KEYS: ClassVar[FrozenSet[str]] = frozenset({"all_but_last", "params", "multiplier"})

    @classmethod
    def parse(cls, item: dict, path: Path, where: str) -> "AllButLastRule":
        return cls(_params(item, path, where), where, whole_number(item["all_but_last"], path, f"{where}.all_but_last", low=0),
                   parse_multiplier(_required(item, "multiplier", path, where), path, f"{where}.multiplier"))

    def select(self, view: NetworkView, chosen: Dict[str, float]) -> Dict[str, float]:
        first = {}
        for slot in view.slots:
            if not is_statistic(slot.parameter):
                first[slot.layer] = min(first.get(slot.layer, slot.position), slot.position)
        layers = sorted(first, key=first.get)
        kept = set(layers[len(layers) - self.count:]) if self.count else set()
        return {s.parameter: self.multiplier for s in view.slots if self.keeps(s) and not is_statistic(s.parameter)
                and s.layer in first and s.layer not in kept and len(layers) > self.count}

    def describe(self) -> str:
        return f"all_but_last {self.count}"

    def wanted(self) -> str:
        return ""


def _required(item: dict, key: str, path: Path, where: str) -> Any:
    if key not in item:
        raise NncToolsError(path, f"{where}: '{key}' is missing")
    return item[key]


# The kinds, by the YAML key that names each: a rule has exactly one of these keys.
RULE_KINDS: Dict[str, Type[Rule]] = {"match": MatchRule, "up_to": UpToRule, "decay": DecayRule,
                                     "all_but_last": AllButLastRule}


def parse_rule(item: Any, path: Path, where: str) -> Rule:
    """One entry of ``rules:``: the kind its key names, its keys checked, then parsed by that kind."""
    if not isinstance(item, dict):
        raise NncToolsError(path, f"{where}: expected a mapping with one of {', '.join(RULE_KINDS)}")
    kinds = [key for key in RULE_KINDS if key in item]
    if len(kinds) != 1:
        raise NncToolsError(path, f"{where}: give exactly one of {', '.join(repr(k) for k in RULE_KINDS)}")
    kind = RULE_KINDS[kinds[0]]
    reject_unknown_keys(item, kind.KEYS, path, where)
    return kind.parse(item, path, where)
