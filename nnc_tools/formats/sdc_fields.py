"""A compiled function's ``*_param`` message from its layer's resolved properties, as NNC's converter fills it: axes
shifted past the batch axis, shapes with the batch's -1, ``*AutoInPlace`` decided from the network's readers."""

from __future__ import annotations

from dataclasses import replace
from typing import Dict, List

from ..errors import NncToolsError
from .sdc_layers import AXIS, BATCH
from .sdc_values import number

_AUTO_IN_PLACE = ("*AutoInPlace", "*AutoInPlaceOnce")


def param_message(path, net, fn, kind, props: Dict[str, str], ins: List[str], shift=True) -> None:
    """``shift``: axes count past the batch axis (not in a value computed from Parameter layers alone)."""
    message = getattr(fn, kind.message)
    message.SetInParent()
    for arg in kind.args:
        value = props.get(arg.prop, arg.default)
        if value is None:
            continue
        if value in _AUTO_IN_PLACE:
            data = ins[:1] if value == "*AutoInPlaceOnce" else ins  # in place when nothing else reads them and
            given = {name for name, _ in net.inputs}  # they are not the data
            value = str(all(net.all_readers.get(name, 0) <= 1 and name not in given for name in data))
        if value.startswith("*"):
            raise NncToolsError(path, f"layer {fn.name}: {arg.prop}={value} names nothing the project defines")
        _set_field(path, fn.name, message, arg if shift or arg.how != AXIS else replace(arg, how=""), value, kind)


def _set_field(path, where: str, message, arg, value: str, kind) -> None:
    name = arg.field.split(".", 1)[1]
    descriptor = message.DESCRIPTOR.fields_by_name[name]
    try:
        if descriptor.message_type is not None:  # a Shape
            dims = [int(float(v)) for v in value.split(",") if v.strip()]
            dims = [d + 1 for d in dims] if arg.how == AXIS else dims
            getattr(message, name).dim.extend(([-1] if arg.how == BATCH else []) + dims)
        elif descriptor.label == descriptor.LABEL_REPEATED:
            items = [int(float(v)) for v in value.split(",") if v.strip()]
            items = [i + 1 for i in items] if arg.how == AXIS else items
            if kind.extra.get("zero_first") == name:
                items = [0] + items
            getattr(message, name).extend(items)
        elif descriptor.type == descriptor.TYPE_BOOL:
            setattr(message, name, value.strip().lower() == "true")
        elif descriptor.type in (descriptor.TYPE_FLOAT, descriptor.TYPE_DOUBLE):
            setattr(message, name, number(value))
        elif descriptor.type == descriptor.TYPE_STRING:
            setattr(message, name, value)
        else:
            setattr(message, name, int(float(value)) + (1 if arg.how == AXIS else 0))
    except ValueError:
        raise NncToolsError(path, f"layer {where}: {arg.prop}={value!r} is not a valid {name}") from None
