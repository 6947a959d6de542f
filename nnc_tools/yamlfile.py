"""The one way nnc-tl reads a user's YAML file (overlays, recipes, experiment configs): ``yaml.safe_load``'s loader,
refusing what it would accept silently or expensively: a key given twice (the first value was dropped), and anchors and
aliases (a few lines of them expand to gigabytes, the "billion laughs"; no nnc-tl file needs them). And the one set of
checks on the values read (``whole_number``, ``finite_number``, ``one_of``, ``name``, ``names``): each error names the
file and the setting, ``SETTING: expected …, got …``."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Collection, List, Optional, Union

from .errors import NncToolsError, SettingError

_MAX_BYTES = 1 << 20  # an overlay, recipe or config is a few hundred bytes
Where = Optional[Union[str, os.PathLike]]
MAX_COUNT = 1 << 20  # the largest count (epochs, seeds, images per class) a setting may ask for


def read_yaml(path: Union[str, os.PathLike], what: str) -> Any:
    """The file's YAML document (None when empty); any problem is one line naming the file and ``what`` it should be."""
    import yaml  # here, not at start-up: apply-freeze imports it while a large project is being copied

    path = Path(path)
    try:
        if path.stat().st_size > _MAX_BYTES:
            raise NncToolsError(path, f"is {path.stat().st_size:,} bytes: too large for {what}")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NncToolsError(path, f"no such {what}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise NncToolsError(path, f"cannot read {what}: {' '.join(str(e).split())}") from None
    try:
        return yaml.load(text, Loader=_loader(yaml))  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        problem = " ".join(str(e).split())
        raise NncToolsError(path, f"not valid YAML for {what}: {problem[:300]}") from None


def _loader(yaml):
    class StrictSafeLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.YAMLError(f"line {event.start_mark.line + 1}: aliases (*{event.anchor}) are not accepted")
            event = self.peek_event()
            if getattr(event, "anchor", None):
                raise yaml.YAMLError(f"line {event.start_mark.line + 1}: anchors (&{event.anchor}) are not accepted")
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    repeated = key in seen
                except TypeError:  # an unhashable key: the base loader says what is wrong with it
                    break
                if repeated:
                    raise yaml.YAMLError(f"line {key_node.start_mark.line + 1}: key {key!r} given twice")
                seen.add(key)
            return super().construct_mapping(node, deep)

    return StrictSafeLoader


def whole_number(value: Any, where: Where, setting: str, low: int = 1, high: int = MAX_COUNT) -> int:
    """An integer from ``low`` to ``high`` (a YAML ``true`` is not 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SettingError(where, setting, f"expected a whole number from {low:,} to {high:,}, got {value!r}")
    return value


def finite_number(value: Any, where: Where, setting: str, above: float = 0.0, or_equal: bool = False,
                  at_most: Optional[float] = None) -> float:
    """A finite number greater than ``above`` (or equal to it, with ``or_equal``), and at most ``at_most`` when given."""
    low = f"{'>=' if or_equal else '>'} {above:g}"
    bound = low if at_most is None else f"{low} and <= {at_most:g}"
    try:  # a 400-digit integer is a YAML int no float holds
        number = float(value) if not isinstance(value, bool) and isinstance(value, (int, float)) else None
    except OverflowError:
        number = None
    ok = number is not None and math.isfinite(number) and (number >= above if or_equal else number > above) and \
        (at_most is None or number <= at_most)
    if not ok:
        shown = repr(value) if len(repr(value)) < 40 else f"{repr(value)[:20]}... ({len(repr(value))} digits)"
        raise SettingError(where, setting, f"expected a finite number {bound}, got {shown}")
    return number


def one_of(value: Any, allowed: Collection[str], where: Where, setting: str) -> str:
    """One of the allowed values of a setting."""
    if not isinstance(value, str) or value not in allowed:
        choices = list(allowed)
        listed = " or ".join(choices) if len(choices) <= 2 else ", ".join(choices[:-1]) + f" or {choices[-1]}"
        raise SettingError(where, setting, f"expected {listed}, got {value!r}")
    return value


def name(value: Any, where: Where, setting: str, what: str = "a name") -> str:
    """A non-empty string (a layer, network, file or recipe name)."""
    if not isinstance(value, str) or not value:
        raise SettingError(where, setting, f"expected {what}, got {value!r}")
    return value


def names(value: Any, where: Where, setting: str, what: str = "a list of names") -> List[str]:
    """A non-empty list of non-empty strings; one string stands for a list of one."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise SettingError(where, setting, f"expected {what}, got {value!r}")
    return list(items)
