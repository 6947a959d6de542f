"""An ``.sdcproj`` compiled into the NNabla project NNC's converter (``create_prototxt``) makes of it: the networks (a
single-network project's ``Main`` also as ``MainValidation`` and ``MainRuntime``), datasets, optimizers with their
solvers and schedules, monitors, executors and the configuration. No engine runs: shapes follow from NNC's layer
rules (``sdc_layers``)."""

from __future__ import annotations

from typing import Dict, List

from nnabla.utils import nnabla_pb2

from ..errors import NncToolsError
from .nnc_graph import expand_with_wires
from .sdc_layers import layer_type
from .sdc_network import CompiledNetwork, compile_network, unit_key
from .sdc_values import expressions
from .sdcproj import SdcProject


def compile_sdcproj(sdc: SdcProject) -> nnabla_pb2.NNablaProtoBuf:
    proto = nnabla_pb2.NNablaProtoBuf()
    config = sdc.section_items("Config") if "Config" in sdc.sections() else {}
    batch = _int(sdc, config.get("BatchSize", "64"), "[Config] BatchSize")
    networks = _networks(sdc, batch)
    proto.global_config.default_context.array_class = "CpuCachedArray"
    proto.global_config.default_context.backends.append("cpu:float")
    datasets = _datasets(sdc, proto, batch)
    tc = proto.training_config
    tc.max_epoch = _int(sdc, config.get("MaxEpoch", "100"), "[Config] MaxEpoch")
    main_index = _int(sdc, sdc.get("Dataset", "MainIndex") or "0", "[Dataset] MainIndex")  # the main dataset's size
    main = list(datasets.values())[main_index] if 0 <= main_index < len(datasets) else {}
    tc.iter_per_epoch = _int(sdc, main.get("NumData", "0"), "NumData") // max(batch, 1)
    tc.save_best = config.get("SaveBest", "1") == "1"
    tc.monitor_interval = _int(sdc, config.get("MonitorInterval", "10"), "[Config] MonitorInterval")
    for net in networks.values():
        proto.network.add().CopyFrom(net.proto)
    _optimizers(sdc, proto, networks, datasets)
    _monitors(sdc, proto, networks, datasets)
    _executors(sdc, proto, networks, datasets)
    return proto


def name_datasets(proto: nnabla_pb2.NNablaProtoBuf, sdc: SdcProject) -> List[str]:
    """Give the optimizers and monitors the datasets their sections name where the converter left them out (a dataset
    without a URI, as in NNC's ImageNet projects), as datasets that point nowhere yet: a retarget points them at the
    user's CSVs. Returns the datasets added."""
    batch = _int(sdc, (sdc.section_items("Config") if "Config" in sdc.sections() else {}).get("BatchSize", "64"),
                 "[Config] BatchSize")
    declared = {d.name for d in proto.dataset}
    added: List[str] = []
    for prefix, messages in (("Optimizer", proto.optimizer), ("Monitor", proto.monitor)):
        for items, message in zip(_sections(sdc, prefix), messages):
            name = items.get(f"{prefix}_DatasetName", "")
            if name and not message.dataset_name:
                message.dataset_name.append(name)
                if name not in declared:
                    declared.add(name)
                    added.append(name)
                    proto.dataset.add(name=name, batch_size=batch, shuffle=prefix == "Optimizer")
    return added


def _int(sdc: SdcProject, text: str, what: str) -> int:
    try:
        return int(float(text))
    except ValueError:
        raise NncToolsError(sdc.path, f"{what}={text!r} is not a number") from None


def _networks(sdc: SdcProject, batch: int) -> Dict[str, CompiledNetwork]:
    """The networks the optimizers, monitors and executors use, in the order they are first used: a project's own,
    or derived from one of them (``<N>Validation`` without the layers skipped at test, ``<N>Runtime`` without losses
    and the layers skipped at inspection, as NNC derives them for a single-network project's ``Main``)."""
    own = sdc.network_names()
    wanted: List[str] = []
    for prefix, key, default in (("Optimizer", "Optimizer_NetworkName", "Main"),
                                 ("Monitor", "Monitor_NetworkName", "MainValidation"),
                                 ("Executor", "Executor_NetworkName", "MainRuntime")):
        for items in _sections(sdc, prefix):
            name = items.get(key, default)
            if name not in wanted:
                wanted.append(name)
    out: Dict[str, CompiledNetwork] = {}
    for name in wanted:
        base, drop = _derived(sdc, name, own)
        if base is None:
            continue  # refused where it is used, naming the optimizer, monitor or executor
        functions, wires = expand_with_wires(sdc, base)
        out[name] = compile_network(sdc.path, name, batch, functions, wires, drop(functions, wires),
                                    _arguments(sdc, base), test=name != base)
    return out


def _derived(sdc: SdcProject, name: str, own: List[str]):
    if name in own:
        return name, lambda functions, wires: set()
    for suffix, key in (("Validation", "SkipAtTest"), ("Runtime", "SkipAtTest")):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and base in own:
            if suffix == "Validation":
                return base, lambda functions, wires: {f.name for f in functions if _skipped(f.layer, key)}
            return base, lambda functions, wires: _runtime_drop(
                functions, wires, {f.name for f in functions if _skipped(f.layer, key)})
    return None, None


def _arguments(sdc: SdcProject, network: str):
    """A macro's value for a layer reached through ``units``: the innermost Unit's property of that name (itself
    perhaps a macro, looked up one Unit further out), else the called network's Argument layer of that name."""
    def argument_layer(net: str, macro: str):
        return next((layer.properties.get("Value") for layer in sdc.file_layers(net)
                     if layer.type == "Argument" and layer.name == macro), None)

    def lookup(units, macro: str, unit_shapes=None, depth: int = 0):
        """``unit_shapes``: a Unit's input shape by its call (``unit_key``): its arguments' ``Input[k]``."""
        if depth > 64:
            return None
        if not units:
            value = argument_layer(network, macro)
            return _plain(value, lambda name: lookup((), name, unit_shapes, depth + 1) if name != macro else None)
        unit = units[-1]
        value = unit.properties.get(macro)
        if value is None:  # the called network's default, in its own terms
            value = argument_layer(unit.properties.get("Network", ""), macro)
            return _plain(value, lambda name: lookup(units, name, unit_shapes, depth + 1) if name != macro else None)
        if value.startswith("*") and value[1:] != "Name":
            return lookup(units[:-1], value[1:], unit_shapes, depth + 1)
        return _plain(value, lambda name: lookup(units[:-1], name, unit_shapes, depth + 1),  # the caller's terms
                      (unit_shapes or {}).get(unit_key(units), ()))  # (``Input``: what the Unit layer reads)

    return lookup


def _skipped(layer, key: str) -> bool:
    kind = layer_type(layer.type)
    default = kind is not None and (kind.skip_at_test if key == "SkipAtTest" else kind.skip_at_inspection)
    value = layer.properties.get(key)
    return default if value is None else value == "True"


def _runtime_drop(functions, wires, inspect) -> set:
    """The runtime network: what the data inputs reach, without the losses (every layer nothing reads: compared with a
    target or not, a regularisation term) and the layers skipped at inspection; then, repeatedly, without the layers
    that fed only dropped ones, except what a loss compared with a target (that value is the output, ``y'``)."""
    successors: Dict[str, List[str]] = {}
    for w in wires:
        successors.setdefault(w.source, []).append(w.dest)
    reach, stack = set(), [f.name for f in functions if f.layer.type == "Input"]
    while stack:
        name = stack.pop()
        if name not in reach:
            reach.add(name)
            stack += successors.get(name, [])
    for name in list(successors):  # a skipped layer is bypassed: its readers read what it read
        successors[name] = _through(successors, name, inspect)
    layers = [f for f in functions if f.is_function]
    drop = {f.name for f in layers if f.name not in reach or f.name in inspect or not successors.get(f.name)
            or _is_loss(f.layer)}
    compared = {w.source for w in wires if w.dest in drop and _is_loss(_layer(functions, w.dest))}
    while True:
        more = {f.name for f in layers if f.name not in drop and f.name not in compared and successors.get(f.name)
                and all(d in drop for d in successors[f.name])}
        if not more:
            return drop
        drop |= more


def _through(successors, name: str, skipped, depth: int = 0) -> List[str]:
    out: List[str] = []
    for d in successors.get(name, []):
        out += _through(successors, d, skipped, depth + 1) if d in skipped and depth < 256 else [d]
    return out


def _is_loss(layer) -> bool:
    kind = layer_type(layer.type)
    return kind is not None and kind.is_loss


def _layer(functions, name: str):
    return next(f.layer for f in functions if f.name == name)


def _plain(value, names, shape=()):
    """A Unit argument's value with the names in it (``Stage2Maps``, ``Maps/4``) evaluated where they are defined,
    ``Input[k]`` over ``shape`` (the Unit layer's input: unetlike's ``ConvMaps=Input[0]*2``)."""
    return None if value is None else expressions(value, shape, names)


def _datasets(sdc: SdcProject, proto, batch: int) -> Dict[str, Dict[str, str]]:
    out = {}
    count = _int(sdc, sdc.get("Dataset", "Num") or "0", "[Dataset] Num")
    for i in range(count):
        items = sdc.section_items(f"Dataset_{i}") if f"Dataset_{i}" in sdc.sections() else {}
        name = items.get("Name", f"Dataset_{i}")
        out[name] = items
        uri = items.get("URI", "")
        if not uri:
            continue
        d = proto.dataset.add(name=name, uri=uri, batch_size=batch)
        d.cache_dir = uri[:-4] + ".cache"  # the converter cuts four characters (``.csv``) off whatever the URI is
        d.overwrite_cache = items.get("EnableCache", "0") != "1"
        d.create_cache_explicitly = True
        d.shuffle = items.get("Shuffle", "0") == "1"
        d.no_image_normalization = items.get("ImageNormalization", "1") != "1"
    return out


def _sections(sdc: SdcProject, prefix: str) -> List[Dict[str, str]]:
    config = sdc.section_items("Config") if "Config" in sdc.sections() else {}
    count = _int(sdc, config.get(f"Num{prefix}", "0"), f"[Config] Num{prefix}")
    return [sdc.section_items(f"{prefix}_{i}") for i in range(count) if f"{prefix}_{i}" in sdc.sections()]


def _network(sdc: SdcProject, networks, name: str, what: str) -> CompiledNetwork:
    if name not in networks:
        raise NncToolsError(sdc.path, f"{what} uses network '{name}', which the project does not have")
    return networks[name]


def _data_variables(message, net: CompiledNetwork) -> None:
    """Inputs and the losses' targets (none in a derived runtime network) from the dataset, or from a generator
    (``Generator``/``T.Generator`` not None)."""
    for variable, data in net.inputs + net.targets:
        generator = net.generators.get(variable)
        if generator is None:
            message.data_variable.add(variable_name=variable, data_name=data)
        else:
            message.generator_variable.add(variable_name=variable, type=generator[0], multiplier=generator[1])


def _section_message(sdc: SdcProject, messages, items: Dict[str, str], prefix: str, default: str, networks, datasets):
    """A new optimizer or monitor from its ``[<Prefix>_i]`` section: name, network, and its dataset when that has a URI
    (the converter leaves a URI-less one out)."""
    name = items.get(f"{prefix}_Name", prefix)
    net = _network(sdc, networks, items.get(f"{prefix}_NetworkName", default), f"{prefix.lower()} {name}")
    message = messages.add(name=name, network_name=net.proto.name)
    dataset = items.get(f"{prefix}_DatasetName", "")
    if datasets.get(dataset, {}).get("URI"):
        message.dataset_name.append(dataset)
    return message, net


def _optimizers(sdc: SdcProject, proto, networks, datasets) -> None:
    from .sdc_solvers import set_solver  # the solver table is its own module

    for items in _sections(sdc, "Optimizer"):
        o, net = _section_message(sdc, proto.optimizer, items, "Optimizer", "Main", networks, datasets)
        o.update_interval = _int(sdc, items.get("UpdateInterval", "1"), "UpdateInterval")
        set_solver(sdc, o.solver, items, proto.training_config)
        _data_variables(o, net)
        for loss in net.losses:
            o.loss_variable.add(variable_name=loss)
        for param, multiplier in net.parameters:
            o.parameter_variable.add(variable_name=param, learning_rate_multiplier=multiplier)


def _monitors(sdc: SdcProject, proto, networks, datasets) -> None:
    for items in _sections(sdc, "Monitor"):
        m, net = _section_message(sdc, proto.monitor, items, "Monitor", "MainValidation", networks, datasets)
        _data_variables(m, net)
        for loss in net.losses:
            m.monitor_variable.add(type="Error", variable_name=loss)


def _executors(sdc: SdcProject, proto, networks, datasets) -> None:
    for items in _sections(sdc, "Executor"):
        name = items.get("Executor_Name", "Executor")
        net = _network(sdc, networks, items.get("Executor_NetworkName", "MainRuntime"), f"executor {name}")
        e = proto.executor.add(name=name, network_name=net.proto.name)
        e.num_evaluations = _int(sdc, items.get("NumEvaluations", "1"), "NumEvaluations")
        e.repeat_evaluation_type = "last" if items.get("RepeatEvaluationType", "0") == "1" else "mean"
        e.need_back_propagation = items.get("NeedBackPropagation", "0") == "1"
        dataset = datasets.get(items.get("Executor_DatasetName", ""), next(iter(datasets.values()), {}))
        e.no_image_normalization = dataset.get("ImageNormalization", "1") != "1"
        _data_variables(e, net)  # (a loss kept in its network: its target too)
        for out, data in net.outputs():
            e.output_variable.add(variable_name=out, data_name=data)
        if e.need_back_propagation:  # its losses, and the multipliers its backward pass honours
            e.loss_variable.extend(nnabla_pb2.LossVariable(variable_name=loss) for loss in net.losses)
        for param, multiplier in net.parameters:
            p = e.parameter_variable.add(variable_name=param)
            if e.need_back_propagation:
                p.learning_rate_multiplier = multiplier
