"""Neural Network Console's ``.sdcproj``: an INI-style reader/writer that keeps every byte it does not change.

Layers are ``[Layer_i]`` (single network) or ``[<Net>_Layer_i]`` (``[Global] NumNetwork``/``Network_i``) sections with
``Property_i_Name``/``Property_i_Value`` pairs; learning-rate multipliers are the ``<param>.LRateMultiplier`` properties.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import NncToolsError
from ..fileio import PathLike

SINGLE_NETWORK = "Main"
MULTIPLIER_SUFFIX = ".LRateMultiplier"

# NNC's layer catalogue (settings/NNabla/layer_component): parameter scope and parameters of the parameterised layers.
LAYER_PARAMETERS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "Affine": ("affine", ("W", "b")),
    "Convolution": ("conv", ("W", "b")),
    "Deconvolution": ("deconv", ("W", "b")),
    "DeformableConvolution": ("deformable_conv", ("W", "b")),
    "DepthwiseConvolution": ("depthwise_conv", ("W", "b")),
    "DepthwiseDeconvolution": ("depthwise_deconv", ("W", "b")),
    "Embed": ("embed", ("W",)),
    "PReLU": ("prelu", ("slope",)),
    "BatchNormalization": ("bn", ("beta", "gamma", "mean", "var")),
    "FusedBatchNormalization": ("bn", ("beta", "gamma", "mean", "var")),
    "GroupNormalization": ("group_normalization", ("beta", "gamma")),
    "InstanceNormalization": ("instance_normalization", ("beta", "gamma")),
    "LayerNormalization": ("layer_normalization", ("beta", "gamma")),
    "SpectralNorm": ("sn", ("u",)),
    "WeightNormalization": ("wn", ("g",)),
    "MeanSubtraction": ("mean_subtraction", ("mean", "t")),
    "BinaryConnectAffine": ("bicon_affine", ("W", "Wb", "b")),
    "BinaryConnectConvolution": ("bicon_conv", ("W", "Wb", "b")),
    "BinaryWeightAffine": ("bwn_affine", ("W", "Wb", "b")),
    "BinaryWeightConvolution": ("bwn_conv", ("W", "Wb", "b")),
}
# Multipliers NNC assumes when the property is absent: statistics are not trained, everything else is.
DEFAULT_ZERO = {("BatchNormalization", "mean"), ("BatchNormalization", "var"), ("FusedBatchNormalization", "mean"),
                ("FusedBatchNormalization", "var"), ("MeanSubtraction", "mean"), ("MeanSubtraction", "t"),
                ("WorkingMemory", ""), ("BinaryConnectAffine", "Wb"), ("BinaryConnectConvolution", "Wb"),
                ("BinaryWeightAffine", "Wb"), ("BinaryWeightConvolution", "Wb")}
# Layers NNC's converter makes variables of, not functions.
VARIABLE_LAYERS = ("Input", "Argument", "Comment", "Parameter", "WorkingMemory", "TestNetwork", "StructureSearch")
EDITOR_LAYERS = ("Comment", "Argument", "TestNetwork", "StructureSearch")  # notes and settings: nothing compiled
# Layers that are a parameter themselves, named by the layer's Name, their multiplier in ``LRateMultiplier``.
VARIABLE_PARAMETERS = ("Parameter", "WorkingMemory")

_LINE = re.compile(r"([^\r\n]*)(\r\n|\n|\r|)")
_SECTION = re.compile(r"^\[(.*)\]\s*$")


@dataclass
class Line:
    text: str
    ending: str


@dataclass(frozen=True)
class Link:
    source: str
    source_pin: int
    dest: str
    dest_pin: int


@dataclass
class Layer:
    """One layer of one network, with where its properties live in the file."""

    network: str
    section: str
    id: str
    type: str
    name: str
    scope: str
    properties: Dict[str, str] = field(default_factory=dict)

    def parameter_names(self) -> List[str]:
        """Short parameter names (W, b, beta…) from the layer's multiplier properties and NNC's catalogue."""
        if self.type in VARIABLE_PARAMETERS:
            return [""]
        names = [k[: -len(MULTIPLIER_SUFFIX)] for k in self.properties
                 if k.endswith(MULTIPLIER_SUFFIX) and k != MULTIPLIER_SUFFIX[1:] and self.type != "Unit"]
        for p in LAYER_PARAMETERS.get(self.type, ("", ()))[1]:
            if p not in names:
                names.append(p)
        if self.properties.get("WithBias") == "False" and "b" in names:
            names.remove("b")  # a Convolution or Affine without bias has no b, whatever its properties say
        return names

    def parameter(self, short: str) -> str:
        """The NNabla parameter name NNC gives this layer's parameter: ``<scope>/<type scope>/<short>`` (a Parameter or
        WorkingMemory layer: its name)."""
        if self.type in VARIABLE_PARAMETERS:
            return self.name
        type_scope = LAYER_PARAMETERS.get(self.type, ("", ()))[0]
        return "/".join(part for part in (self.scope, type_scope, short) if part)

    def multiplier_key(self, short: str) -> str:
        """The property holding a parameter's multiplier: ``W.LRateMultiplier``, or ``LRateMultiplier`` for a Parameter
        or WorkingMemory layer."""
        return f"{short}{MULTIPLIER_SUFFIX}" if short else MULTIPLIER_SUFFIX[1:]

    def multiplier(self, short: str) -> float:
        value = self.properties.get(self.multiplier_key(short))
        if value is None:
            return 0.0 if (self.type, short) in DEFAULT_ZERO else 1.0
        return parse_float(value)


def parse_float(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float("nan")


def format_multiplier(value: float) -> str:
    """NNC writes floats as ``1.0``/``0.0``/``0.5``; never an exponent."""
    import numpy as np  # here, not at the top: editing a project's multipliers never needs numpy otherwise

    return np.format_float_positional(float(value), trim="0")


def file_encoding(raw: bytes) -> str:
    """How an ``.sdcproj`` is encoded: UTF-8 (what NNC writes), else Japanese Windows' cp932 (Shift_JIS) when the whole
    file decodes as that and encodes back to the same bytes, else UTF-8 with undecodable bytes kept as they are."""
    try:
        raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        if raw.decode("cp932").encode("cp932") == raw:
            return "cp932"
    except (UnicodeDecodeError, UnicodeEncodeError):
        pass
    return "utf-8"


class SdcProject:
    """An ``.sdcproj`` held as its lines; edits replace or insert whole lines and leave all other bytes as they were."""

    def __init__(self, path: PathLike, raw: bytes):
        self.path = Path(path)
        self.encoding = file_encoding(raw)
        text = raw.decode(self.encoding, "surrogateescape")
        self.lines: List[Line] = [Line(m.group(1), m.group(2)) for m in _LINE.finditer(text) if m.group(0)]
        self.newline = max(("\r\n", "\n", "\r"), key=lambda e: sum(1 for line in self.lines if line.ending == e))
        self._index()

    # -- raw access --------------------------------------------------------------------------------------------------

    def _index(self) -> None:
        self._sections: Dict[str, Tuple[int, int]] = {}
        self._order: List[str] = []
        current, start = None, 0
        for i, line in enumerate(self.lines):
            m = _SECTION.match(line.text)
            if m:
                if current is not None:
                    self._sections.setdefault(current, (start, i))
                current, start = m.group(1), i
                self._order.append(current)
        if current is not None:
            self._sections.setdefault(current, (start, len(self.lines)))

    def to_bytes(self) -> bytes:
        return "".join(line.text + line.ending for line in self.lines).encode(self.encoding, "surrogateescape")

    def sections(self) -> List[str]:
        return list(self._order)

    def section_items(self, section: str) -> Dict[str, str]:
        start, end = self._sections[section]
        items: Dict[str, str] = {}
        for line in self.lines[start + 1 : end]:
            key, sep, value = line.text.partition("=")
            if sep:
                items.setdefault(key, value)
        return items

    def get(self, section: str, key: str) -> Optional[str]:
        if section not in self._sections:
            return None
        return self.section_items(section).get(key)

    def _find(self, section: str, key: str) -> Optional[int]:
        start, end = self._sections[section]
        for i in range(start + 1, end):
            k, sep, _ = self.lines[i].text.partition("=")
            if sep and k == key:
                return i
        return None

    def set(self, section: str, key: str, value: str) -> None:
        i = self._find(section, key)
        if i is None:
            raise KeyError(f"[{section}] {key}")
        self.lines[i].text = f"{key}={value}"

    # -- NNC structure -----------------------------------------------------------------------------------------------

    def network_names(self) -> List[str]:
        count = self.get("Global", "NumNetwork")
        if count is None:
            return [SINGLE_NETWORK]
        if not count.strip().isdigit():  # read as 0 it would make a project without networks, which every rule misses
            raise NncToolsError(self.path, f"[Global] NumNetwork={count!r} is not a count of networks")
        return [self.get("Global", f"Network_{i}") or f"Network_{i}" for i in range(int(count))]

    def _prefix(self, network: str) -> str:
        return "" if self.get("Global", "NumNetwork") is None else f"{network}_"

    def layers(self, network: str) -> List[Layer]:
        """The network's layers in network order: NNC's converter's order within one network (see ``network_order``)."""
        return network_order(self.file_layers(network), [(link.source, link.dest) for link in self.links(network)],
                             is_variable_layer)

    def file_layers(self, network: str) -> List[Layer]:
        """The network's layers in file order."""
        pattern = re.compile(rf"^{re.escape(self._prefix(network))}Layer_\d+$")
        layers = []
        for section in self._order:
            if not pattern.match(section):
                continue
            items = self.section_items(section)
            props = {}
            for i in range(_count(items.get("NumProperty"))):
                name = items.get(f"Property_{i}_Name")
                if name is not None:
                    props[name] = items.get(f"Property_{i}_Value", "")
            name = props.get("Name", section)
            scope = props.get("ParameterScope", "*Name")
            scope = name if scope == "*Name" else scope
            layers.append(Layer(network, section, items.get("ID", ""), items.get("Type", ""), name, scope, props))
        return layers

    def links(self, network: str) -> List[Link]:
        """The network's links in file order."""
        pattern = re.compile(rf"^{re.escape(self._prefix(network))}Link_\d+$")
        links = []
        for section in self._order:
            if pattern.match(section):
                items = self.section_items(section)
                links.append(Link(items.get("SourceLayerID", ""), _count(items.get("SourcePinIndex")),
                                  items.get("DestLayerID", ""), _count(items.get("DestPinIndex"))))
        return links

    def optimizers(self) -> List[Dict[str, str]]:
        """``[Optimizer_i]`` sections as dicts with ``name`` and ``network`` (their network's name)."""
        out = []
        for section in self._order:
            if re.match(r"^Optimizer_\d+$", section):
                items = self.section_items(section)
                network = items.get("Optimizer_NetworkName", SINGLE_NETWORK)
                if self.get("Global", "NumNetwork") is None:
                    network = SINGLE_NETWORK
                out.append({"section": section, "name": items.get("Optimizer_Name", section), "network": network, **items})
        return out

    def set_property(self, layer: Layer, key: str, text: str) -> None:
        """Set a layer property's value, adding the property (and bumping NumProperty) when the layer lacks it."""
        index = next((k for k, v in self._property_slots(layer.section) if v == key), None)
        if index is not None:
            self.set(layer.section, f"Property_{index}_Value", text)
        else:
            count = _count(self.get(layer.section, "NumProperty"))
            at = self._find(layer.section, "NumProperty")
            if at is None:
                at = self._sections[layer.section][1]
            new = [Line(f"Property_{count}_Name={key}", self.newline), Line(f"Property_{count}_Value={text}", self.newline)]
            if at == len(self.lines) and self.lines and not self.lines[-1].ending:
                self.lines[-1].ending = self.newline
                new[-1].ending = ""
            self.lines[at:at] = new
            self._index()
            if self._find(layer.section, "NumProperty") is not None:
                self.set(layer.section, "NumProperty", str(count + 1))
        layer.properties[key] = text

    def _property_slots(self, section: str) -> List[Tuple[int, str]]:
        items = self.section_items(section)
        return [(i, items.get(f"Property_{i}_Name")) for i in range(_count(items.get("NumProperty")))]


def network_order(nodes: Sequence, links: Sequence[Tuple[str, str]], given=lambda node: False) -> list:
    """NNC's converter's function order: Kahn's topological order with a first-in first-out queue, the nodes whose
    inputs are all ``given`` (variables: Input, Parameter …) queued first, in file order, and each node's successors
    queued in link order as they become ready (checked on NNC's 61 samples: the converter's order for 47 of them; in
    the others it breaks some ties otherwise). A Delay's input is the previous step's, so links into a Delay do not
    order it: it runs once the RecurrentInput layers have. ``nodes`` are layers, or have ``id`` and ``layer``; nodes on
    a cycle keep file order, at the end."""
    by_id = {node.id: node for node in nodes}
    successors: Dict[str, List[str]] = {node.id: [] for node in nodes}
    indegree = {node.id: 0 for node in nodes}
    recurrent = [node.id for node in nodes if _kind(node) == "RecurrentInput"]
    for src, dst in list(links) + _delay_steps(by_id, links, recurrent):  # a Delay runs after its step's input
        if src in by_id and dst in by_id and (_kind(by_id[dst]) != "Delay" or src in recurrent):
            successors[src].append(dst)
            if not given(by_id[src]):
                indegree[dst] += 1
    ready = deque(node.id for node in nodes if indegree[node.id] == 0)
    order = []
    while ready:
        current = ready.popleft()
        order.append(by_id[current])
        if given(by_id[current]):
            continue
        for nxt in successors[current]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    seen = {node.id for node in order}
    return order + [node for node in nodes if node.id not in seen]


def _delay_steps(by_id, links, recurrent: List[str]) -> List[Tuple[str, str]]:
    """(RecurrentInput, Delay) for each Delay of that RecurrentInput's block: what it reaches before a RecurrentOutput
    (LSTM_auto_encoder's decoder block starts after the encoder's ends: its Delays wait for its own step only)."""
    successors: Dict[str, List[str]] = {}
    for src, dst in links:
        successors.setdefault(src, []).append(dst)
    pairs = []
    for r in recurrent:
        seen, stack = {r}, [r]
        while stack:
            for nxt in successors.get(stack.pop(), []):
                if nxt not in seen and nxt in by_id:
                    seen.add(nxt)
                    if _kind(by_id[nxt]) != "RecurrentOutput":
                        stack.append(nxt)
        pairs += [(r, d) for d in by_id if d in seen and _kind(by_id[d]) == "Delay"]  # (in node order)
    placed = {d for _, d in pairs}  # (a Delay no block's step reaches: after every RecurrentInput, as before)
    return pairs + [(r, d) for r in recurrent for d in by_id if _kind(by_id[d]) == "Delay" and d not in placed]


def _kind(node) -> str:
    return getattr(node, "layer", node).type


def is_variable_layer(node) -> bool:
    """A layer NNC's converter makes a variable of, not a function (its values are there before any function runs)."""
    return _kind(node) in VARIABLE_LAYERS


def _count(value: Optional[str]) -> int:
    """A count or index field (``NumProperty``, ``DestPinIndex``); one that is not a number reads as 0."""
    try:
        return max(0, int(value or 0))
    except ValueError:
        return 0


def load_sdcproj(path: PathLike) -> SdcProject:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NncToolsError(path, "no such file") from None
    except OSError as e:
        raise NncToolsError(path, f"cannot read: {e.strerror or e}") from None
    project = SdcProject(path, raw)
    if not project.sections():
        raise NncToolsError(path, "not an NNC project: no [Section] headers")
    if project.get("Engine", "SDeepEngineType") is None and project.get("Network_Global", "NumLayer") is None and \
            project.get("Global", "NumNetwork") is None:
        raise NncToolsError(path, "not an NNC project: no [Engine], [Network_Global] or [Global] section")
    return project
