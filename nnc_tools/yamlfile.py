"""The one way nnc-tl reads a user's YAML file (overlays, recipes, experiment configs): ``yaml.safe_load``'s loader,
refusing what it would accept silently or expensively: a key given twice (the first value was dropped), and anchors and
aliases (a few lines of them expand to gigabytes, the "billion laughs"; no nnc-tl file needs them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

from .errors import NncToolsError

_MAX_BYTES = 1 << 20  # an overlay, recipe or config is a few hundred bytes


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
