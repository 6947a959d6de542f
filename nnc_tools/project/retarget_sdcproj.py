"""`nnc-tl retarget` on NNC's own project: an ``.sdcproj`` edited in place of NNC's EDIT tab (with ``--weights``, after
NNC's "Open in EDIT Tab with Weight", ``project.nnc_weights``), only the lines that must
change: the head layer's output property (Affine ``OutShape``, Convolution ``OutMaps``) in every network that has it, a
Reshape's ``OutShape`` after it, the head's ``*.File`` weight references cleared (the old ones no longer fit; NNC then
initialises the head, and keeps loading every other layer's ``*.File``), the ``[Dataset_i]`` URIs, ``[Config]``
epochs and batch size, and an overlay's multipliers and ``BatchStat`` (``apply-freeze``'s own code). NNC recomputes
every other shape from the layers' properties when it reads the project."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import NncToolsError
from ..formats.functions import CLASSIFIER_LOSSES, LOSS_FUNCTIONS, SCORE_READERS
from ..formats.nnc_csv import check_first_image, check_split_csvs, class_count_for, read_header_and_count
from ..formats.sdcproj import Layer, SdcProject, load_sdcproj
from .freeze import apply_to_sdcproj, write_sdcproj
from .heads import HEAD_TYPES, Head, output_count_for, renamed_classes, training_class_names
from .nnc_weights import assign_weights, refuse_frozen_without_weights, write_references
from .overlay import load_overlay
from .retarget_result import RetargetResult

OUTPUT_PROPERTY = {"Affine": "OutShape", "Convolution": "OutMaps"}
# Layers that turn a convolution's maps into one score per class (NiN, SqueezeNet); without one the head is per pixel.
REDUCERS = frozenset({"GlobalAveragePooling", "AveragePooling", "SumPooling", "MaxPooling", "Reshape", "Mean", "Sum", "Max"})


def retarget_sdcproj(source: Path, target: Path, options) -> RetargetResult:
    """``source`` (.sdcproj) retargeted into ``target`` (.sdcproj); see the module docstring."""
    sdc = load_sdcproj(source)
    classes, classes_from = class_count_for(options.classes, options.train_csv)
    check_split_csvs(options.train_csv, options.val_csv)
    head, head_layer = _find(sdc, options.head)
    classes = output_count_for(head, classes, options.train_csv)
    # --weights: NNC's "Open in EDIT Tab with Weight" first (every parameter FROM.nnp has), then the head's references
    # are emptied below when it is resized (the old ones no longer fit)
    assignment = assign_weights(sdc, options.weights, target, None) if options.weights is not None else None
    edits = write_references(sdc, assignment) if assignment is not None else []
    networks = []
    training = {o.get("Optimizer_DatasetName") for o in sdc.optimizers()}
    uri = next((sdc.get(f"Dataset_{i}", "URI") or "" for i in range(int(sdc.get("Dataset", "Num") or 0))
                if (sdc.get(f"Dataset_{i}", "Name") or f"Dataset_{i}") in training), "")
    renamed = renamed_classes(training_class_names(uri, source), options.train_csv, head.classes) \
        if classes == head.classes else None
    if classes != head.classes or options.reset_head or renamed:
        for network in sdc.network_names():
            for layer in sdc.file_layers(network):
                if layer.type == head_layer.type and layer.parameter("W") == head.weight:
                    networks.append(network)
                    edits += _resize(sdc, layer, head.classes, classes)
                    edits += _following(sdc, layer, head.classes, classes)
                elif layer.type == "Unit":
                    edits += _clear_files(sdc, layer, f"{head_layer.name}.")
    if assignment is not None and networks:  # the resized head starts from its initializer, not from FROM.nnp
        head_names = {site.name for site in assignment.sites if site.layer.name == head_layer.name}
        assignment.left += sorted(n for n, _ in assignment.assigned if n in head_names)
        assignment.assigned = [(n, v) for n, v in assignment.assigned if n not in head_names]
    edits = _merged(edits)
    datasets = _datasets(sdc, options)
    _check_input(sdc, Path(options.train_csv))
    for key, value in (("MaxEpoch", options.epochs), ("BatchSize", options.batch_size)):
        if value is not None and sdc.get("Config", key) is not None:
            edits.append((f"[Config] {key}", sdc.get("Config", key), str(value)))
            sdc.set("Config", key, str(value))
    changes = apply_to_sdcproj(sdc, load_overlay(options.overlay)) if options.overlay else []
    if assignment is not None and not options.allow_frozen_initial:
        refuse_frozen_without_weights(sdc, assignment, options.weights)
    if target.exists() and target.resolve() == source.resolve():
        raise NncToolsError(target, "is the source project; write the retargeted project to another file")
    outputs = write_sdcproj(target, sdc, assignment)
    return RetargetResult(target, head, classes, classes_from, networks, datasets, changes, outputs, edits=edits,
                          weights=assignment, renamed=renamed)


def _merged(edits: List[Tuple[str, str, str]]) -> List[Tuple[str, str, str]]:
    """One row a property: its value before and after (a reference set, then emptied with the head, is no change)."""
    merged: Dict[str, Tuple[str, str]] = {}
    for what, old, new in edits:
        merged[what] = (merged[what][0] if what in merged else old, new)
    return [(what, old, new) for what, (old, new) in merged.items() if old != new]


def _layers_by_id(sdc: SdcProject, network: str) -> Dict[str, Layer]:
    return {layer.id: layer for layer in sdc.file_layers(network)}


def _find(sdc: SdcProject, named: Optional[str]) -> Tuple[Head, Layer]:
    """The head: ``named``, else the layer every classifier loss reaches back to through layers without parameters."""
    found: Dict[str, Tuple[Head, Layer]] = {}
    for network in sdc.network_names():
        layers, links = _layers_by_id(sdc, network), sdc.links(network)
        for layer in layers.values():
            if named is not None and layer.name == named:
                return _head(sdc, layer, "named with --head", None), layer
            if named is None and layer.type in CLASSIFIER_LOSSES:
                head = _walk_back(sdc, layer, layers, links, network)
                found.setdefault(head[1].name, head)
    if named is not None:
        raise NncToolsError(sdc.path, f"--head {named}: no layer of that name")
    if not found:
        raise NncToolsError(sdc.path, f"no classifier loss ({', '.join(sorted(CLASSIFIER_LOSSES))}) in any network: cannot "
                            "tell the head; name it with --head")
    if len(found) > 1:
        raise NncToolsError(sdc.path, f"{len(found)} heads reach a loss ({', '.join(found)}): choose one with --head")
    return next(iter(found.values()))


def _walk_back(sdc: SdcProject, loss: Layer, layers: Dict[str, Layer], links, network: str) -> Tuple[Head, Layer]:
    """From a loss's first input back through layers without parameters, into the networks Unit layers call (their
    output is the called network's last layer), to the layer that has parameters."""
    layer, path = _only_input(sdc, loss, layers, links, network, pin=0), []
    while True:
        if layer.type == "Unit":
            called = layer.properties.get("Network", "")
            if called not in sdc.network_names():
                raise NncToolsError(sdc.path, f"{network}: Unit {layer.name} calls network {called!r}, which the project lacks")
            path.append(f"Unit {layer.name}")
            network, layers, links = called, _layers_by_id(sdc, called), sdc.links(called)
            layer = _network_output(sdc, network, layers, links)
            continue
        if layer.parameter_names():
            if layer.type == "Convolution" and not REDUCERS & set(path):
                raise NncToolsError(sdc.path, f"{layer.name}: a Convolution whose maps reach the {loss.type} per pixel "
                                    "(segmentation): NNC's other layers may depend on its class count; retarget takes "
                                    "classifiers (or name a head with --head)")
            through = f" through {', '.join(path)}" if path else ""
            return _head(sdc, layer, f"its output reaches {loss.network}'s {loss.type}{through}", loss.type), layer
        path.append(layer.type)
        layer = _only_input(sdc, layer, layers, links, network)


def _only_input(sdc: SdcProject, layer: Layer, layers: Dict[str, Layer], links, network: str, pin: Optional[int] = None) -> Layer:
    inputs = [layers.get(link.source) for link in links if link.dest == layer.id and (pin is None or link.dest_pin == pin)]
    if len(inputs) != 1 or inputs[0] is None:
        raise NncToolsError(sdc.path, f"{network}: {layer.name} has {len(inputs)} inputs between the loss and the head; "
                            "name the head with --head")
    return inputs[0]


def _network_output(sdc: SdcProject, network: str, layers: Dict[str, Layer], links) -> Layer:
    """A called network's output: its one linked layer that no link reads (an Argument layer stands apart)."""
    read, fed = {link.source for link in links}, {link.dest for link in links}
    ends = [layer for layer in layers.values() if layer.id not in read and layer.id in fed]
    if len(ends) != 1:
        raise NncToolsError(sdc.path, f"network {network} (called by a Unit) ends in {len(ends)} layers; name the head with --head")
    return ends[0]


def _head(sdc: SdcProject, layer: Layer, why: str, loss: Optional[str]) -> Head:
    if layer.type not in HEAD_TYPES:
        raise NncToolsError(sdc.path, f"{layer.name} is a {layer.type}: only an Affine or Convolution head can be resized "
                            "(name another layer with --head)")
    value = layer.properties.get(OUTPUT_PROPERTY[layer.type], "")
    counts = [part for part in value.split(",") if part.strip()]
    if len(counts) != 1 or not counts[0].strip().isdigit():
        raise NncToolsError(sdc.path, f"{layer.name}: {OUTPUT_PROPERTY[layer.type]}={value!r} is not one count of outputs")
    names = layer.parameter_names()
    bias = layer.parameter("b") if "b" in names else None
    return Head(layer.name, layer.type, layer.parameter("W"), bias, int(counts[0]), why, loss)


def _resize(sdc: SdcProject, layer: Layer, old: int, new: int) -> List[Tuple[str, str, str]]:
    key = OUTPUT_PROPERTY[layer.type]
    edits = [(f"{layer.network}:{layer.name} {key}", str(old), str(new))]
    sdc.set_property(layer, key, str(new))
    return edits + _clear_files(sdc, layer, "")


def _clear_files(sdc: SdcProject, layer: Layer, prefix: str) -> List[Tuple[str, str, str]]:
    """The head's weight references emptied (its own ``W.File``/``b.File``, or a Unit's ``<head>.W.File`` overrides,
    nested Units' ``<Unit>.<head>.W.File`` too): NNC then initialises the resized head."""
    edits = []
    for key, stored in list(layer.properties.items()):
        own = not prefix and key in ("W.File", "b.File")
        override = prefix and key.endswith((f"{prefix}W.File", f"{prefix}b.File")) and \
            (key.startswith(prefix) or f".{prefix}" in key)
        if (own or override) and stored:
            edits.append((f"{layer.network}:{layer.name} {key}", stored, ""))
            sdc.set_property(layer, key, "")
    return edits


def _following(sdc: SdcProject, head: Layer, old: int, new: int) -> List[Tuple[str, str, str]]:
    """Layers after the head up to the loss: a Reshape's OutShape holding the classes is set; one with parameters, or
    joining the head's output with another, is refused (NNC computes the other shapes itself)."""
    layers, links = _layers_by_id(sdc, head.network), sdc.links(head.network)
    edits, queue, seen = [], [head], set()
    while queue:
        layer = queue.pop()
        for link in [link for link in links if link.source == layer.id]:
            reader = layers.get(link.dest)
            if reader is None or reader.id in seen or reader.type in LOSS_FUNCTIONS | SCORE_READERS:
                continue
            seen.add(reader.id)
            if reader.parameter_names() or sum(1 for k in links if k.dest == reader.id) > 1:
                raise NncToolsError(sdc.path, f"{head.network}: {reader.name} ({reader.type}) follows the head and has "
                                    "parameters or another input: cannot follow the classes past it")
            if reader.type == "Reshape":
                edits += _reshape(sdc, reader, old, new)
            queue.append(reader)
    return edits


def _reshape(sdc: SdcProject, layer: Layer, old: int, new: int) -> List[Tuple[str, str, str]]:
    value = layer.properties.get("OutShape", "")
    parts = [p.strip() for p in value.split(",")]
    if not all(p.lstrip("-").isdigit() for p in parts):
        return []  # an expression (``Input[0]``…): NNC computes the shape from the layer's input
    hits = [k for k, p in enumerate(parts) if p == str(old)]
    if len(hits) != 1:
        raise NncToolsError(sdc.path, f"{layer.network}: {layer.name} OutShape={value!r} does not hold the head's {old} "
                            "outputs on one axis: cannot follow the classes past it")
    parts[hits[0]] = str(new)
    sdc.set_property(layer, "OutShape", ",".join(parts))
    return [(f"{layer.network}:{layer.name} OutShape", value, ",".join(parts))]


def _check_input(sdc: SdcProject, csv: Path) -> None:
    """The training CSV's first image against the ``Size`` of the optimizer network's Input layer for ``x``."""
    networks = [o["network"] for o in sdc.optimizers()][:1]
    for layer in (sdc.file_layers(networks[0]) if networks else []):
        size = [p.strip() for p in layer.properties.get("Size", "").split(",")]
        if layer.type == "Input" and layer.properties.get("Dataset") == "x" and len(size) == 3 and all(p.isdigit() for p in size):
            check_first_image(csv, [int(p) for p in size], sdc.path)
            return


def _datasets(sdc: SdcProject, options) -> Dict[str, str]:
    """``[Dataset_i]`` URIs: the optimizers' dataset gets the training CSV, every other the validation CSV (absolute
    paths: NNC resolves a dataset against its own working folder, not the project's)."""
    training = {o.get("Optimizer_DatasetName") for o in sdc.optimizers()} or {"Training"}
    uris = {}
    count = int(sdc.get("Dataset", "Num") or 0)
    for i in range(count):
        section = f"Dataset_{i}"
        name = sdc.get(section, "Name") or section
        csv = Path(options.train_csv if name in training else options.val_csv)
        read_header_and_count(csv)
        uri = str(csv.resolve())
        if sdc.get(section, "URI") is None:
            raise NncToolsError(sdc.path, f"[{section}] has no URI line to point at {csv}")
        sdc.set(section, "URI", uri)
        uris[name] = uri
    return uris
