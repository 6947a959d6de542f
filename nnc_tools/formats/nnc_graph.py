"""An ``.sdcproj`` network as NNC's converter (``create_prototxt``) sees it: Unit layers expanded into the networks they
call, every function under the name the converter gives it (``VGG11/Convolution_3``), every parameter under its
converted name (``Convolution_2{Unit/RepeatStart_3}/conv/W``) with the layer properties that decide its multiplier,
outermost first (see FORMATS: the outermost property that exists wins)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import NncToolsError
from . import sdc_lstm as lstm
from .sdcproj import (
    DEFAULT_ZERO,
    EDITOR_LAYERS,
    LAYER_PARAMETERS,
    MULTIPLIER_SUFFIX,
    VARIABLE_PARAMETERS,
    Layer,
    SdcProject,
    is_variable_layer,
    network_order,
    parse_float,
)

REPEAT_START, REPEAT_END, UNIT = "RepeatStart", "RepeatEnd", "Unit"
CALLS = (UNIT, lstm.LSTM)  # layers that stand for a network
BLOCK_ENDS = {REPEAT_START: REPEAT_END, "RecurrentInput": "RecurrentOutput"}  # a block's first layer -> its last


@dataclass
class ParameterSite:
    """A parameter of an expanded network and the properties that may set its multiplier, outermost first: each Unit
    layer on the way in (``<Unit>.….<Layer>.<param>.LRateMultiplier``), then the layer's own ``<param>.LRateMultiplier``."""

    name: str
    short: str
    layer: Layer
    keys: List[Tuple[Layer, str]]

    def deciding(self) -> Optional[Tuple[Layer, str]]:
        """The outermost property that exists: the one NNC's converter copies."""
        return next(((layer, key) for layer, key in self.keys if key in layer.properties), None)

    def multiplier(self) -> float:
        found = self.deciding()
        if found is None:
            return 0.0 if (self.layer.type, self.short) in DEFAULT_ZERO else 1.0
        layer, key = found
        return parse_float(layer.properties[key])


@dataclass
class Function:
    """A function of the converted network (or, with ``is_function`` false, a layer the converter makes a variable of)."""

    name: str
    layer: Layer
    parameters: List[ParameterSite] = field(default_factory=list)
    is_function: bool = True
    units: Tuple[Layer, ...] = ()  # the Unit layers on the way in, outermost first
    repeats: Tuple[str, ...] = ()  # the Repeat blocks holding it, outermost first, named as the converter's repeat_id
    repeat_end_of: Optional[str] = None  # a RepeatEnd: its block's id
    recurrent: Tuple[str, ...] = ()  # those of ``repeats`` that are recurrent blocks (their steps share parameters)


@dataclass
class _Call:
    """How the layers of a called network are reached: the Unit layers on the way, their names and parameter scopes."""

    units: Tuple[Layer, ...] = ()
    scopes: Tuple[str, ...] = ()
    repeats: Tuple[str, ...] = ()  # the Repeat blocks the Unit layers on the way sit in (``Unit/RepeatStart``)


@dataclass(frozen=True)
class Wire:
    """A link of the expanded graph, between functions (or variable layers) named as the converter names them."""

    source: str
    source_pin: int
    dest: str
    dest_pin: int


def expand(sdc: SdcProject, network: str) -> List[Function]:
    """The network's functions (and variable layers) in the converter's order, Units expanded: the called network's
    layers join the caller's graph, a Unit's input pin k feeding the called network's k-th Input layer and its outputs
    coming from the called network's last layers, and the whole graph is ordered at once (``network_order``)."""
    return expand_with_wires(sdc, network)[0]


def expand_with_wires(sdc: SdcProject, network: str) -> Tuple[List[Function], List[Wire]]:
    """``expand``, and the expanded graph's links with their pins (in link order)."""
    networks = sdc.network_names()
    if network not in networks:
        raise NncToolsError(sdc.path, f"no network '{network}' (networks: {', '.join(networks)})")
    graph = _Graph(sdc)
    graph.add(network, _Call(), (network,), "")
    fed = {dst for _, dst in graph.links}  # a Unit's Input layers take the caller's values: not there from the start

    def given(node) -> bool:
        return is_variable_layer(node) and node.id not in fed

    ordered = network_order(graph.nodes, graph.links, given)
    functions = {node.id: Function(_function_name(node.call, node.layer), node.layer,
                                   _sites(node.layer, node.call, node.repeat, node.fed_pins, sdc.encoding),
                                   not is_variable_layer(node), node.call.units,
                                   node.call.repeats + tuple(_repeat_id(node.call, b) for b in node.chain),
                                   _repeat_id(node.call, node.end_of) if node.end_of else None,
                                   tuple(_repeat_id(node.call, b) for b in node.chain if b in node.recurrent))
                 for node in ordered}
    position = {node.id: i for i, node in enumerate(ordered)}
    readers: Dict[str, List[str]] = {}
    for src, dst in graph.links:
        if functions[dst].is_function:
            readers.setdefault(src, []).append(dst)
    for node in ordered:  # a Parameter layer's parameter is read where its first reader runs
        if node.layer.type == "Parameter" and functions[node.id].parameters and node.id in readers:
            first = min(readers[node.id], key=position.get)
            functions[first].parameters[:0] = functions[node.id].parameters
            functions[node.id].parameters = []
    wires = [Wire(functions[a].name, a_pin, functions[b].name, b_pin) for a, a_pin, b, b_pin in graph.wires]
    return list(functions.values()), wires


def parameters(functions: Sequence[Function]) -> Dict[str, ParameterSite]:
    """Each parameter once, in order of first use: the first use decides a shared parameter's multiplier."""
    out: Dict[str, ParameterSite] = {}
    for f in functions:
        for site in f.parameters:
            out.setdefault(site.name, site)
    return out


@dataclass
class _Node:
    id: str  # unique in the expanded graph: the Unit layers' IDs on the way in, then the layer's
    layer: Layer
    call: _Call
    repeat: Optional[str]  # the innermost Repeat block of its own network holding it, if any
    chain: Tuple[str, ...] = ()  # the Repeat blocks of its own network holding it, outermost first
    end_of: Optional[str] = None  # a RepeatEnd: its block's RepeatStart
    recurrent: frozenset = frozenset()  # the recurrent blocks of its own network (by their RecurrentInput's name)
    fed_pins: set = field(default_factory=set)  # input pins a link feeds: pin k > 0 of a parameterised layer replaces
    # its (k - 1)-th parameter (an Affine whose W comes from a Parameter layer has no W of its own)


class _Graph:
    """The expanded graph: every layer of every network instance a Unit reaches, and the links between them."""

    def __init__(self, sdc: SdcProject):
        self.sdc = sdc
        self.nodes: List[_Node] = []
        self.by_id: Dict[str, _Node] = {}
        self.links: List[Tuple[str, str]] = []
        self.wires: List[Tuple[str, int, str, int]] = []

    def add(self, network: str, call: _Call, stack: Tuple[str, ...], prefix: str) -> Tuple[Dict[int, List[str]], List[str]]:
        """Add one instance of ``network``; returns its entry points (per input pin) and its exits."""
        layers, links = lstm.cell() if network == lstm.CELL else (self.sdc.file_layers(network), self.sdc.links(network))
        repeats, chains, end_of = _repeat_blocks(layers, links)
        ends: Dict[str, Tuple[Dict[int, List[str]], List[str]]] = {}
        for layer in layers:
            if layer.type in CALLS:  # (an LSTM layer calls NNC's cell)
                unit = lstm.as_call(layer) if layer.type == lstm.LSTM else layer
                inner, target = self._unit_call(unit, call, repeats.get(layer.id), stack)
                inner.repeats = call.repeats + tuple(_repeat_id(call, b) for b in chains.get(layer.id, ()))
                ends[layer.id] = self.add(target, inner, stack + (target,), f"{prefix}{layer.id}/")
            else:
                node = _Node(prefix + layer.id, layer, call, repeats.get(layer.id), tuple(chains.get(layer.id, ())),
                             end_of.get(layer.id), frozenset(x.name for x in layers if x.type == "RecurrentInput"))
                self.nodes.append(node)
                self.by_id[node.id] = node
                ends[layer.id] = ({0: [prefix + layer.id]}, [prefix + layer.id])
        units = {layer.id for layer in layers if layer.type in CALLS}
        for link in sorted(links, key=_rewired(layers, units, called=bool(prefix))):  # (the wires' order)
            if link.dest not in units and prefix + link.dest in self.by_id:
                self.by_id[prefix + link.dest].fed_pins.add(link.dest_pin)
            if link.source in ends and link.dest in ends:
                entries = ends[link.dest][0]
                targets = entries.get(link.dest_pin, []) if link.dest in units else entries[0]
                self.links += [(src, dst) for src in ends[link.source][1] for dst in targets]
                pin = 0 if link.dest in units else link.dest_pin
                self.wires += [(src, link.source_pin, dst, pin) for src in ends[link.source][1] for dst in targets]
        inputs = [layer for layer in layers if layer.type == "Input"]
        entry = {k: [prefix + layer.id] for k, layer in enumerate(inputs)}
        fed = {link.source for link in links}
        exits = [x for layer in layers if layer.id not in fed and layer.type not in EDITOR_LAYERS
                 for x in ends[layer.id][1]]
        return entry, exits

    def _unit_call(self, unit: Layer, call: _Call, repeat: Optional[str], stack: Tuple[str, ...]) -> Tuple[_Call, str]:
        target = unit.properties.get("Network", "")
        if target not in self.sdc.network_names() and target != lstm.CELL:
            raise NncToolsError(self.sdc.path, f"Unit layer {unit.name} calls network '{target}', which the project "
                                "does not have")
        if target in stack:
            raise NncToolsError(self.sdc.path, f"Unit layer {unit.name} calls network '{target}' inside itself "
                                f"({' -> '.join(stack + (target,))})")
        scope = unit.properties.get("ParameterScope", "*Name")
        scope = _ascii(unit.name if scope == "*Name" else scope, self.sdc.encoding)
        if scope and repeat:
            scope += _repeat_suffix(call, repeat)
        return _Call(call.units + (unit,), call.scopes + ((scope,) if scope else ())), target


def _rewired(layers: List[Layer], units: set, called: bool):
    """The order NNC's converter leaves one network's links in, which orders the inputs of a multi-input pin (a
    Concatenate's): it expands the Units in file order, and each expansion moves the links at that Unit to the end
    (re-made to its inner layers); a called network's links from its Input layers move last (re-made to the caller's
    values when it is expanded). unetlike's skip connection and densenet's ``Concatenate(Convolution_3, InputConv)``."""
    position = {layer.id: i for i, layer in enumerate(layers)}
    inputs = {layer.id for layer in layers if layer.type == "Input"} if called else set()

    def key(link) -> int:
        moved = [position[end] for end in (link.source, link.dest) if end in units]
        return len(layers) if link.source in inputs else max(moved, default=-1)
    return key


def _repeat_blocks(layers: List[Layer], links: Sequence) -> Tuple[Dict[str, str], Dict[str, List[str]], Dict[str, str]]:
    """The innermost Repeat block (its RepeatStart's name) holding each layer of one network: the layers after a
    RepeatStart and before the nearest RepeatEnd it reaches; every block holding it, outermost first, recurrent ones
    (RecurrentInput … RecurrentOutput) included; and each block end's block."""
    successors: Dict[str, List[str]] = {layer.id: [] for layer in layers}
    predecessors: Dict[str, List[str]] = {layer.id: [] for layer in layers}
    for link in links:
        if link.source in successors and link.dest in successors:
            successors[link.source].append(link.dest)
            predecessors[link.dest].append(link.source)
    by_id = {layer.id: layer for layer in layers}
    blocks, end_of = [], {}
    for start in (layer for layer in layers if layer.type in BLOCK_ENDS):
        after = _reach(start.id, successors)
        end = next((x for x in _reach(start.id, successors, ordered=True)
                    if by_id[x].type == BLOCK_ENDS[start.type]), None)
        inside = (after & _reach(end, predecessors)) - {end} if end is not None else set()
        blocks.append((len(inside), start.name, inside | {start.id}, start.type == REPEAT_START))
        if end is not None:
            end_of[end] = start.name
    holder: Dict[str, str] = {}
    chains: Dict[str, List[str]] = {}
    for _, name, inside, names_parameters in sorted(blocks, reverse=True):  # larger first: an inner block overwrites
        for x in inside:
            if names_parameters:  # a recurrent block's parameters are shared by its steps: no {block} in their names
                holder[x] = name
            chains.setdefault(x, []).append(name)
    return holder, chains, end_of


def _reach(start: str, edges: Dict[str, List[str]], ordered: bool = False):
    """The nodes reachable from ``start`` (breadth first; as a list in that order with ``ordered``)."""
    seen, queue, order = {start}, deque([start]), []
    while queue:
        for nxt in edges[queue.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
                order.append(nxt)
    return order if ordered else seen


def _function_name(call: _Call, layer: Layer) -> str:
    return "/".join([u.name for u in call.units] + [layer.name])


def _repeat_id(call: _Call, repeat: str) -> str:
    return "/".join([u.name for u in call.units] + [repeat])


def _repeat_suffix(call: _Call, repeat: str) -> str:
    return "{" + "/".join([u.name for u in call.units] + [repeat]) + "}"


def _sites(layer: Layer, call: _Call, repeat: Optional[str], fed_pins=frozenset(),
           encoding: str = "utf-8") -> List[ParameterSite]:
    """The layer's parameters: converted names and the properties that may decide each multiplier."""
    type_scope, catalogue = LAYER_PARAMETERS.get(layer.type, ("", ()))
    replaced = {catalogue[pin - 1] for pin in fed_pins if 0 < pin <= len(catalogue)}
    own = layer.name if layer.type in VARIABLE_PARAMETERS else layer.scope
    head, slash, tail = _ascii(own, encoding).partition("/")  # the block after the scope's first part, as NNC names
    scope = head + (_repeat_suffix(call, repeat) if repeat and layer.type != REPEAT_START else "") + slash + tail
    sites = []
    for short in (p for p in layer.parameter_names() if p not in replaced):
        name = "/".join(part for part in (*call.scopes, scope, type_scope, short) if part)
        keys = []
        for k, unit in enumerate(call.units):
            path = [u.name for u in call.units[k + 1:]] + [layer.name] + ([short] if short else [])
            keys.append((unit, ".".join(path) + MULTIPLIER_SUFFIX))
        keys.append((layer, layer.multiplier_key(short)))
        sites.append(ParameterSite(name, short, layer, keys))
    return sites


def _ascii(text: str, encoding: str = "utf-8") -> str:
    """NNC drops a name's non-ASCII bytes from parameter names, byte by byte in the file's encoding: in UTF-8 every byte
    of a non-ASCII character goes, in cp932 (Shift_JIS) a two-byte character's trail byte stays when it is ASCII
    (``oConv2`` where UTF-8 gives ``Conv2``)."""
    raw = text.encode(encoding, "surrogateescape")
    return bytes(b for b in raw if b < 128).decode("ascii")
