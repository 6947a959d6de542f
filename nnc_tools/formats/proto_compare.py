"""Two NNabla projects compared as graphs, not as text: the same networks, and per network the same functions (type,
parameters, inputs and outputs by name) and variables (type, shape, initializer); the same optimizers, monitors,
executors, datasets and configuration. Function order is not compared: within a network any topological order runs
the same (NNC's converter breaks ties its own way, see ``network_order``)."""

from __future__ import annotations

from typing import Dict, List

from google.protobuf import text_format
from nnabla.utils import nnabla_pb2

_TOP = ("global_config", "training_config")
_NAMED = ("optimizer", "monitor", "executor", "dataset")


def _text(message) -> str:
    return text_format.MessageToString(message, as_one_line=True, float_format=".9g")


def _by_name(messages) -> Dict[str, object]:
    return {m.name: m for m in messages}


def _unordered(message, fields) -> str:
    """The message as text with its repeated ``fields`` sorted (their order carries no meaning)."""
    copy = type(message)()
    copy.CopyFrom(message)
    for name in fields:
        items = sorted(getattr(copy, name), key=_text)
        del getattr(copy, name)[:]
        getattr(copy, name).extend(items)
    return _text(copy)


_UNORDERED = {"optimizer": ("parameter_variable", "data_variable", "loss_variable", "generator_variable"),
              "monitor": ("data_variable", "generator_variable", "monitor_variable"),
              "executor": ("parameter_variable", "data_variable", "generator_variable", "loss_variable",
                           "output_variable"),
              "dataset": ()}


def compare_projects(ours: nnabla_pb2.NNablaProtoBuf, theirs: nnabla_pb2.NNablaProtoBuf) -> List[str]:
    """The differences, one line each (empty: equal as graphs)."""
    out: List[str] = []
    for field in _TOP:
        if _text(getattr(ours, field)) != _text(getattr(theirs, field)):
            out.append(f"{field}: {_text(getattr(ours, field))!r} != {_text(getattr(theirs, field))!r}")
    out += _compare_named("network", ours.network, theirs.network, _compare_network)
    for field in _NAMED:
        out += _compare_named(field, getattr(ours, field), getattr(theirs, field),
                              lambda a, b, f=field: _differ(f"{f} {a.name}", _unordered(a, _UNORDERED[f]),
                                                            _unordered(b, _UNORDERED[f])))
    return out


def _differ(what: str, a: str, b: str) -> List[str]:
    """Nothing when equal, else one line with the two texts from a little before where they part."""
    if a == b:
        return []
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    start = max(0, at - 40)
    return [f"{what}: ours …{a[start:at + 80]} | the converter's …{b[start:at + 80]}"]


def _compare_named(kind: str, ours, theirs, compare) -> List[str]:
    a, b = _by_name(ours), _by_name(theirs)
    out = [f"{kind} {name}: only ours" for name in a if name not in b]
    out += [f"{kind} {name}: only the converter's" for name in b if name not in a]
    for name in a:
        if name in b:
            out += compare(a[name], b[name])
    return out


def _compare_network(ours, theirs) -> List[str]:
    where = f"network {ours.name}"
    out = _differ(f"{where} batch_size", str(ours.batch_size), str(theirs.batch_size))
    out += _differ(f"{where} repeat_info", _unordered(_only(ours, "repeat_info"), ("repeat_info",)),
                   _unordered(_only(theirs, "repeat_info"), ("repeat_info",)))
    out += _compare_named(f"{where} variable", ours.variable, theirs.variable,
                          lambda a, b: _differ(f"{where} variable {a.name}", _text(a), _text(b)))
    out += _compare_named(f"{where} function", ours.function, theirs.function,
                          lambda a, b: _differ(f"{where} function {a.name}", _text(a), _text(b)))
    return out


def _only(network, field: str):
    copy = nnabla_pb2.Network()
    getattr(copy, field).extend(getattr(network, field))
    return copy
