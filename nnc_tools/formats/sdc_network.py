"""One network of an ``.sdcproj`` compiled into NNabla's ``Network`` message, as NNC's converter writes it: Units
expanded (``nnc_graph``), every function with its NNabla type and ``*_param``, every variable with its shape (batch
-1) and every parameter with its initializer. ``drop`` names the layers the derived validation and runtime networks
leave out; a dropped layer's readers read its input instead."""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Set, Tuple

from nnabla.utils import nnabla_pb2

from ..errors import NncToolsError
from .nnc_graph import Function, Wire
from .sdc_fields import param_message
from .sdc_layers import layer_type
from .sdc_shapes import Shape
from .sdc_values import Values, expressions, int_list, number


class CompiledNetwork:
    """The network message and what the project sections need of it: data inputs, loss targets, outputs."""

    def __init__(self, name: str, batch_size: int):
        self.proto = nnabla_pb2.Network(name=name, batch_size=batch_size)
        self.shapes: Dict[str, Shape] = {}
        self.inputs: List[Tuple[str, str]] = []  # (variable, dataset variable) of the Input layers
        self.targets: List[Tuple[str, str]] = []  # (variable, dataset variable) of the losses' T inputs
        self.losses: List[str] = []  # functions with no reader
        self.parameters: List[Tuple[str, float]] = []  # (name, multiplier) in order of first use
        self.readers: Dict[str, int] = {}
        self.generators: Dict[str, Tuple[str, float]] = {}
        self.block_last: Dict[str, str] = {}
        self.block_times: Dict[str, str] = {}  # a variable a generator fills: (type, multiplier)
        self.named_outputs: List[Tuple[str, str]] = []  # Output layers: (variable, VariableName)
        self.batchless: Set[str] = set()  # a Parameter layer's value and what is computed from it alone (no batch axis)
        self.dropped_losses: List[Tuple[str, str]] = []  # (the variable a dropped loss read, its T dataset variable)

    def outputs(self) -> List[Tuple[str, str]]:
        """The executor's outputs: the variables nothing reads and those a dropped loss compared with a target, each
        with its data name (``y'`` for the one compared with ``y``; else its own name)."""
        compared = dict(self.dropped_losses)  # (one output per loss: a variable two losses read is listed twice)
        return [(name, f"{compared[name]}'" if name in compared else name) for name in self.losses] + \
            [(name, f"{data}'") for name, data in self.dropped_losses if name not in self.losses and name in self.shapes] + \
            [(name, data) for name, data in self.named_outputs if name in self.shapes]

    def variable(self, name: str, shape: Shape, kind: str = "Buffer", batch: bool = True, repeats=()):
        if name in self.shapes:
            return None
        self.shapes[name] = tuple(shape)
        var = self.proto.variable.add(name=name, type=kind)
        var.repeat_id.extend(repeats)
        var.shape.dim.extend(([-1] if batch else []) + [int(n) for n in shape])
        return var


def compile_network(path, name: str, batch_size: int, functions: Sequence[Function], wires: Sequence[Wire],
                    drop: Set[str] = frozenset(), argument=lambda units, macro, unit_shapes: None,
                    test: bool = False) -> CompiledNetwork:
    """``argument(units, macro, unit_shapes)``: a macro's value where the Unit chain ``units`` (outermost first)
    defines it, a Unit's ``Input[k]`` over its input shape in ``unit_shapes``;
    ``test``: a network NNC derives for validation or runtime (Batch Normalization on running statistics)."""
    net = CompiledNetwork(name, batch_size)
    net.test = test
    unit_shapes: Dict[Tuple[int, ...], Shape] = {}  # a Unit call's input shape: its arguments' ``Input[k]``
    given_argument = argument
    argument = lambda units, macro: given_argument(units, macro, unit_shapes)  # noqa: E731
    sources: Dict[str, List[Tuple[int, str, int]]] = {}
    for wire in wires:
        sources.setdefault(wire.dest, []).append((wire.dest_pin, wire.source, wire.source_pin))
    for items in sources.values():
        items.sort(key=lambda item: item[0])  # by input pin; links into one pin keep their order
    readers = _count_readers(net, functions, sources, drop)
    net.block_last = {f.repeat_end_of: sources[f.name][0][1] for f in functions
                      if f.repeat_end_of and sources.get(f.name)}  # a Repeat block's id -> its last layer's output
    net.block_times = {f.repeats[-1]: f.layer.properties.get("Times", "1") for f in functions
                       if f.layer.type == "RepeatStart" and f.repeats}
    alias: Dict[str, str] = {}  # a dropped layer's output: the variable it passes on
    given = [f for f in functions if f.layer.type in ("Input", "WorkingMemory") and not sources.get(f.name)]
    for f in given:  # the data (and unwritten buffers) come first, wherever the converter's order puts their layers
        _variable_layer(path, net, f, argument=argument)
    loss_names: Set[str] = set()  # the dropped losses
    sized_later = _SizedByReader(path, net, functions, sources, argument)
    for f in functions:
        ins = [alias.get(src, src) for _, src, _ in sources.get(f.name, [])]
        if f in given or sized_later.waits(f, ins):
            continue
        if f.layer.type == "Output":  # no function: its input among the executor's outputs, named VariableName
            net.named_outputs += [(ins[0], f.layer.properties.get("VariableName", "y"))] if ins else []
            continue
        if f.layer.type == "Input":  # a called network's Input: the caller's value
            alias[f.name] = ins[0]
            unit_shapes.setdefault(unit_key(f.units), net.shapes.get(ins[0], ()))
            continue
        if f.name in drop:
            alias[f.name] = ins[0] if ins else f.name
            kind = layer_type(f.layer.type)
            read = sources.get(f.name, [(0, "", 0)])[0][1]  # (a loss of a loss compares nothing the runtime has)
            if kind is not None and kind.is_loss and ins and read not in loss_names:
                loss_names.add(f.name)
                net.dropped_losses.append((ins[0], kind.omitted(f.layer.properties)[f"{kind.pins[0].short}.Dataset"]))
            continue
        if not f.is_function:
            _variable_layer(path, net, f, ins, argument)
            continue
        sized_later.settle_pins(f, ins)
        _function(path, net, f, ins, argument)
        sized_later.flush()
    sized_later.check()
    fed = {src for src, n in readers.items() if n}
    net.losses = [f.name for f in functions if f.is_function and f.name not in drop and f.name not in fed
                  and f.layer.type != "Output"]  # (NNC's converter lists an Output layer as a loss NNabla lacks)
    return net


def unit_key(units) -> Tuple[int, ...]:
    """One call of a Unit (the chain of Unit layers reaching it), as a key."""
    return tuple(id(u) for u in units)


def _count_readers(net: CompiledNetwork, functions: Sequence[Function], sources, drop: Set[str]) -> Dict[str, int]:
    """Each variable's readers in the network (dropped layers read through); also ``net.all_readers``: in the whole
    network, dropped layers too (an operation is in place only if it is the one reader there: decided once for the
    training network and those derived from it)."""
    alias: Dict[str, str] = {}  # a dropped layer's output: the variable it passes on
    readers: Dict[str, int] = {}
    net.all_readers, called = {}, {}
    for f in functions:
        for _, src, _ in sources.get(f.name, []) if f.is_function or f.layer.type == "WorkingMemory" else ():
            net.all_readers[called.get(src, src)] = net.all_readers.get(called.get(src, src), 0) + 1
            if f.name not in drop:  # (a Unit's Input layer reads the caller's value)
                readers[alias.get(src, src)] = readers.get(alias.get(src, src), 0) + 1
        if f.name in drop or (f.layer.type == "Input" and sources.get(f.name)):
            ins = sources.get(f.name, [])
            alias[f.name] = alias.get(ins[0][1], ins[0][1]) if ins else f.name
            if f.layer.type == "Input" and ins:
                called[f.name] = called.get(ins[0][1], ins[0][1])
    net.readers = readers
    return readers


class _SizedByReader:
    """Parameter layers sized ``*GraphOutput``: the shape of the parameter pin they feed, directly (02_l1's Parameter
    as an Affine's W) or through element-wise layers (unetlike's Parameter -> AddScalar -> MulScalar -> a
    Convolution's W). Such a layer, and what reads it, waits until the layer with that pin is compiled."""

    def __init__(self, path, net: CompiledNetwork, functions: Sequence[Function], sources, argument):
        self.path, self.net, self.argument = path, net, argument
        by_name = {f.name: f for f in functions}  # a Parameter layer's site: its first reader's (``nnc_graph``)
        net.layer_sites = {src: site for f in functions for site in f.parameters if site.layer.type == "Parameter"
                           for _, src, _ in sources.get(f.name, [])
                           if src in by_name and by_name[src].layer is site.layer}
        self.pending = {f.name: f for f in functions if f.layer.type == "Parameter"
                        and overridden(f).get("Size", "").strip() == "*GraphOutput"}
        self.waiting: Dict[str, Tuple[Function, List[str]]] = {}  # in the converter's order
        self.settled: Set[str] = set()

    def waits(self, f: Function, ins: List[str]) -> bool:
        if f.name in self.pending or f.name in self.settled:
            return True
        kind = layer_type(f.layer.type)
        by_pin = kind is not None and kind.params is not None  # (its other inputs: parameter pins, settled by it)
        if any(name in self.pending or name in self.waiting for name in (ins[:1] if by_pin else ins)):
            self.waiting[f.name] = (f, ins)
            return True
        return False

    def settle_pins(self, f: Function, ins: List[str]) -> None:
        """The Parameter layers (and the layers between) feeding ``f``'s parameter pins, sized by those pins."""
        kind = layer_type(f.layer.type)
        fed = [i for i, name in enumerate(ins) if i and (name in self.pending or name in self.waiting)]
        if not fed or kind is None or kind.params is None or ins[0] not in self.net.shapes:
            return
        shapes = [self.net.shapes[ins[0]]]
        props = _properties(self.path, self.net, f, kind, kind.omitted(overridden(f)), shapes[0], self.argument)
        params = kind.params(props, shapes)
        for i in fed:
            if i - 1 < len(params):
                self._settle(ins[i], params[i - 1][1])

    def _settle(self, name: str, shape) -> None:
        if name in self.pending:
            self.settled.add(name)
            _parameter_layer(self.net, self.pending.pop(name), shape)
        elif name in self.waiting:
            f, ins = self.waiting.pop(name)
            self._settle(ins[0], shape)
            _function(self.path, self.net, f, ins, self.argument)

    def flush(self) -> None:
        """The waiting layers whose inputs all have values now (what else reads a settled Parameter)."""
        for name, (f, ins) in list(self.waiting.items()):
            if name in self.waiting and all(i in self.net.shapes for i in ins):
                del self.waiting[name]
                _function(self.path, self.net, f, ins, self.argument)

    def check(self) -> None:
        for name in list(self.pending) + list(self.waiting):
            raise NncToolsError(self.path, f"layer {name}: Size *GraphOutput reaches no layer's parameter pin")


def size(path, f: Function, argument=lambda units, macro: None) -> List[int]:
    """An Input, Parameter, WorkingMemory or Delay layer's ``Size``: integers, or expressions over the arguments of the
    Units calling it (``NumAnchor*InputHeight/16``)."""
    text = overridden(f).get("Size", "1")
    value = Values(path, f.name, {"Size": text}, None, lambda macro: argument(f.units, macro)).get("Size")
    try:
        return [int(n) for n in int_list(expressions(value, (), lambda name: argument(f.units, name)), ()).split(",")]
    except ValueError:
        raise NncToolsError(path, f"layer {f.name}: Size={text!r} is not a shape") from None


def _variable_layer(path, net: CompiledNetwork, f: Function, ins: Sequence[str] = (), argument=None) -> None:
    layer = f.layer
    shape = size(path, f, argument or (lambda units, macro: None))
    if layer.type == "Input":
        net.variable(f.name, shape)
        net.inputs.append((f.name, layer.properties.get("Dataset", "x")))
        _generator(net, f.name, layer.properties, "")
    elif layer.type == "WorkingMemory":  # a buffer with the batch axis, the optimizers' (multiplier 0), written by an
        var = net.variable(f.name, shape)  # Identity if linked
        if var is not None:
            _initializer(var, layer.properties, "")
            net.parameters.extend((site.name, site.multiplier()) for site in f.parameters)
        if ins:
            net.proto.function.add(name=f.name, type="Identity", input=ins[:1], output=[f.name])
    elif layer.type == "Parameter":
        _parameter_layer(net, f, shape)


def _parameter_layer(net: CompiledNetwork, f: Function, shape) -> None:
    """A Parameter layer's variable: its site is its first reader's (``nnc_graph`` moves it there)."""
    for site in f.parameters + ([net.layer_sites[f.name]] if f.name in net.layer_sites else []):
        _parameter(net, site.name, shape, f.layer.properties, "", site.multiplier())
        net.batchless.add(site.name)


def overridden(f: Function) -> Dict[str, str]:
    """The layer's properties as the Units calling it set them: a Unit's ``<Layer>.<Property>`` (through inner Units
    ``<Unit>.<Layer>.<Property>``) overrides the layer's own, the outermost that exists winning (as for multipliers)."""
    properties = dict(f.layer.properties)
    for key in list(properties):
        for k, unit in enumerate(f.units):
            path = ".".join([u.name for u in f.units[k + 1:]] + [f.layer.name, key])
            if path in unit.properties:
                properties[key] = unit.properties[path]
                break
    return properties


def _generator(net: CompiledNetwork, variable: str, properties: Dict[str, str], prefix: str) -> None:
    kind = properties.get(f"{prefix}Generator", "None")
    if kind != "None":
        net.generators[variable] = (kind, float(number(properties.get(f"{prefix}GeneratorMultiplier", "1"))))


def _parameter(net: CompiledNetwork, name: str, shape, properties, short: str, multiplier: float,
               repeats=()) -> None:
    prefix = f"{short}." if short else ""
    var = net.variable(name, shape, "Parameter", batch=False, repeats=repeats)
    if var is None:
        return
    _initializer(var, properties, prefix)
    net.parameters.append((name, multiplier))


def _initializer(var, properties: Dict[str, str], prefix: str) -> None:
    var.initializer.type = properties.get(f"{prefix}Initializer", "Constant")
    var.initializer.multiplier = float(properties.get(f"{prefix}InitializerMultiplier", "0"))


def _function(path, net: CompiledNetwork, f: Function, ins: List[str], argument) -> None:
    layer = f.layer
    kind = layer_type(layer.type)
    if kind is None:
        raise NncToolsError(path, f"layer {f.name}: type {layer.type} is not one NNabla can run")
    if layer.type == "RepeatStart":  # its second input: the block's last output, from the previous repetition
        ins = ins[:1] + [net.block_last[f.repeats[-1]]] if f.repeats and f.repeats[-1] in net.block_last else ins
    if layer.type == "Delay":  # the step's previous value (linked from later in the block), then its initial one
        ins = ins[:2] if len(ins) > 1 else ins[:1] + [_delay_initial(path, net, f, argument)]  # (linked: NNC's import of an nntxt)
    known = ins[:1] if layer.type == "RepeatStart" else ins[1:] if layer.type == "Delay" else ins
    for src in known:
        if src not in net.shapes:
            raise NncToolsError(path, f"layer {f.name}: its input {src} has no value before it (a cycle?)")
    shapes = [net.shapes[src] for src in known]
    if not shapes:
        raise NncToolsError(path, f"layer {f.name} ({layer.type}) has no input link")
    properties = kind.omitted(overridden(f))  # what the project omits, as the catalogue has it
    props = _properties(path, net, f, kind, properties, shapes[0], argument)
    if layer.type == "RecurrentOutput":
        props["Length"] = net.block_times.get(f.repeat_end_of or "", "1")
    try:
        out = kind.out(props, shapes)
        if any(n <= 0 for n in out):
            raise ValueError(f"it would be {list(out)}")
    except (KeyError, ValueError, IndexError, ZeroDivisionError) as e:
        raise NncToolsError(path, f"layer {f.name} ({layer.type}): its output shape does not follow from input "
                            f"{list(shapes[0])} ({e})") from None
    fn = net.proto.function.add(name=f.name, type=kind.function or layer.type)
    fn.repeat_id.extend(f.repeats)
    fn.input.extend(ins)
    _target_and_parameters(net, fn, f, kind, props, properties, ins, shapes)
    fn.output.append(f.name)
    batchless = all(src in net.batchless for src in known)  # (its axes then count from the value's first)
    if batchless:
        net.batchless.add(f.name)
    net.variable(f.name, out, batch=not batchless, repeats=f.repeats)
    if kind.message is not None:
        param_message(path, net, fn, kind, props, ins, shift=not batchless)
    if layer.type in ("RepeatStart", "RepeatEnd"):
        _repeat(path, net, fn, f, shapes[0], argument)
    elif layer.type in ("RecurrentInput", "RecurrentOutput", "Delay"):
        _recurrent(net, fn, f, props, shapes[0])


def _properties(path, net: CompiledNetwork, f: Function, kind, properties, shape, argument) -> Dict[str, str]:
    """The layer's properties as the converter reads them: macros resolved, the values a derived network sets,
    expressions evaluated, shapes as plain integers."""
    props = Values(path, f.name, properties, shape, lambda macro: argument(f.units, macro)).resolved()
    if net.test:
        props.update({key: value for key, value in kind.at_test.items() if key in props})
    if props.get("Value") == "Input":  # a scalar layer's value: the size of its input (03_attention's 14x14 = 196)
        props["Value"] = str(math.prod(shape))
    for key, value in props.items():
        props[key] = expressions(value, shape, lambda name: argument(f.units, name))
    for key in ("OutShape", "Shape", "Stop", "Start"):
        if key in props and props[key] and not props[key].startswith("*"):
            try:
                props[key] = int_list(props[key], shape)
            except ValueError:
                raise NncToolsError(path, f"layer {f.name}: {key}={props[key]!r} is not a shape") from None
    return props


def _target_and_parameters(net: CompiledNetwork, fn, f: Function, kind, props, properties, ins, shapes) -> None:
    """The data pins no link feeds (a loss's target, a constant operand) from the data or a generator, then the
    layer's parameters (those a link feeds left out: an Affine whose W comes from a Parameter layer)."""
    for index, pin in enumerate(kind.pins, start=1):
        if index < len(ins):
            continue
        name = f"{f.name}_{pin.short}"
        net.variable(name, pin.shape(shapes[0]))
        (net.targets if pin.target else net.inputs).append((name, properties[f"{pin.short}.Dataset"]))
        _generator(net, name, properties, f"{pin.short}.")
        fn.input.append(name)
    if kind.params is not None:
        for i, (short, shape) in enumerate(kind.params(props, shapes)):
            site = next((s for s in f.parameters if s.short == short), None)
            if i >= len(ins) - 1 and site is not None:
                shared = tuple(r for r in f.repeats if r not in f.recurrent)  # one value for every step
                _parameter(net, site.name, shape, properties, short, site.multiplier(), shared)
                fn.input.append(site.name)


def _delay_initial(path, net: CompiledNetwork, f: Function, argument) -> str:
    """A Delay's first value: ``<Delay>_Initial``, from its ``Initial.Dataset`` or ``Initial.Generator`` (as the Units
    calling it set them: an LSTM layer's ``H.Initial.Generator``)."""
    name = f"{f.name}_Initial"
    properties = overridden(f)
    net.variable(name, size(path, f, argument))
    net.inputs.append((name, properties.get("Initial.Dataset", "")))
    _generator(net, name, properties, "Initial.")
    return name


def _recurrent(net: CompiledNetwork, fn, f: Function, props, shape) -> None:
    """A recurrent block: its id on RecurrentInput, Delay and RecurrentOutput, its steps (the input's size along the
    axis) in repeat_info and as the RecurrentOutput's length."""
    kind = f.layer.type
    block = f.repeat_end_of if kind == "RecurrentOutput" else f.repeats[-1] if f.repeats else ""
    fn.recurrent_param.repeat_id = block or ""
    if kind == "RecurrentInput":
        steps = shape[int(props.get("Axis", "0"))]
        net.block_times[block] = str(steps)
        net.proto.repeat_info.add(id=block, times=steps)
    elif kind == "RecurrentOutput":
        fn.recurrent_param.length = int(props["Length"])


def _repeat(path, net: CompiledNetwork, fn, f: Function, shape, argument) -> None:
    """A Repeat block's ends: the block's id on both, its count on the RepeatEnd and in the network's repeat_info."""
    block = f.repeats[-1] if f.layer.type == "RepeatStart" else f.repeat_end_of
    fn.repeat_param.repeat_id = block or ""
    if f.layer.type == "RepeatEnd":
        try:
            fn.repeat_param.times = int(expressions(net.block_times.get(block, "1"), shape,
                                                    lambda name: argument(f.units, name)))
        except ValueError:
            raise NncToolsError(path, f"layer {f.name}: its RepeatStart's Times is not a count") from None
        net.proto.repeat_info.add(id=block or "", times=fn.repeat_param.times)
