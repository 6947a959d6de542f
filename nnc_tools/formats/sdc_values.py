"""Property values of an ``.sdcproj`` layer as NNC's converter reads them: ``*Name`` macros naming another property or a
Unit's argument, ``*ConvolutionPaddingSize`` from the border mode, and shape expressions such as ``Input[1]*Input[2]``
(integers, ``Input[k]``, ``+ - * / //`` and parentheses; nothing else is evaluated)."""

from __future__ import annotations

import ast
import operator
from typing import Callable, Dict, Optional, Sequence

from ..errors import NncToolsError

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.floordiv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}


def evaluate(text: str, shape: Sequence[int]) -> int:
    """One integer expression over the input shape ``Input``; ValueError for anything else."""
    return int(_evaluate(text, shape, integer=True))


def number(text: str) -> float:
    """A float property, which NNC lets be an expression (``1.0/255``)."""
    return float(_evaluate(text, (), integer=False))


def expressions(value: str, shape: Sequence[int], names: Callable[[str], Optional[str]]) -> str:
    """A property value with each comma-separated item that is an expression (``Stage2Maps/4``, ``Input[0]*2``,
    ``NumAnchor*InputHeight/16``: a Unit's arguments by name, the input shape as ``Input``) replaced by its value;
    items that are not (``valid``, ``True``, ``NormalConvolutionGlorot``) are left as they are."""
    if not any(c in value for c in "[*/+-()") and not value.replace(",", "").replace("_", "").isalnum():
        return value
    out = []
    for item in value.split(","):
        try:
            result = _evaluate(item, shape, integer=False, names=names)
        except ValueError:
            out.append(item)
            continue
        out.append(str(int(result)) if float(result).is_integer() else repr(float(result)))
    return ",".join(out)


def _evaluate(text: str, shape: Sequence[int], integer: bool, names=lambda name: None):
    ops = dict(_OPS)
    if not integer:
        ops[ast.Div] = operator.truediv

    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return int(node.value) if integer else node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
            return value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return ops[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Input":
            return int(shape[int(value(node.slice))])
        if isinstance(node, ast.Name) and node.id != "Input":
            found = names(node.id)
            if found is None or found == text:
                raise ValueError(text)
            return _evaluate(found, shape, integer, lambda name: None)
        raise ValueError(text)
    try:
        return value(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, IndexError, ZeroDivisionError, RecursionError, OverflowError) as e:
        raise ValueError(text) from e


def int_list(text: str, shape: Sequence[int]) -> str:
    """A comma-separated list whose items may be expressions, as plain integers."""
    return ",".join(str(evaluate(item, shape)) for item in text.split(",") if item.strip())


class Values:
    """A layer's properties with its macros resolved. ``argument(name)`` looks a macro up where the layer's Unit
    chain defines it (the caller's property or the called network's Argument layer)."""

    def __init__(self, path, layer_name: str, properties: Dict[str, str], input_shape: Optional[Sequence[int]],
                 argument: Callable[[str], Optional[str]]):
        self.path, self.layer_name, self.properties = path, layer_name, properties
        self.input_shape = input_shape
        self.argument = argument

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        if key not in self.properties:
            return default
        return self.resolve(key, self.properties[key], set())

    def __getitem__(self, key: str) -> str:
        value = self.get(key)
        if value is None:
            raise NncToolsError(self.path, f"layer {self.layer_name}: no property {key}")
        return value

    def resolve(self, key: str, value: str, seen: set) -> str:
        if not value.startswith("*"):
            return value
        macro = value[1:]
        if macro == "Name":
            return self.layer_name
        if macro in ("Input", "GraphInput", "GraphIO") and self.input_shape is not None:
            return ",".join(str(n) for n in self.input_shape)
        if macro == "ConvolutionPaddingSize":
            return self._padding()
        if macro in self.properties and macro not in seen:
            return self.resolve(macro, self.properties[macro], seen | {macro})
        found = self.argument(macro)
        if found is None:
            return value  # left to the caller (AutoInPlace…) or refused there
        return found

    def _padding(self) -> str:
        kernel = [int(v) for v in self["KernelShape"].split(",")]
        dilation = [int(v) for v in (self.get("Dilation") or ",".join("1" for _ in kernel)).split(",")]
        mode = self.get("BorderMode", "valid")
        if mode == "same":
            return ",".join(str(d * (k - 1) // 2) for k, d in zip(kernel, dilation))
        if mode == "full":
            return ",".join(str(d * (k - 1)) for k, d in zip(kernel, dilation))
        return ",".join("0" for _ in kernel)

    def resolved(self) -> Dict[str, str]:
        return {key: self.get(key) for key in self.properties}
