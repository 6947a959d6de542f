"""What `nnc-tl info` shows: networks, parameters, datasets and each optimizer's learning-rate multipliers."""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, Sequence

from ..data.models import resolve_source
from ..fileio import PathLike
from ..formats.naming import SDCPROJ_EXT, is_statistic
from ..formats.nnc_graph import ParameterSite, expand
from ..formats.nnp import Project, load_project, multipliers, solver_learning_rate
from ..formats.sdcproj import SdcProject, load_sdcproj


def describe_project(project: Project) -> Dict[str, Any]:
    """A JSON-ready summary of an NNabla project (parameters read for their shapes only where they are stored)."""
    proto = project.proto
    networks = []
    declared: Dict[str, List[int]] = {}
    for net in proto.network:
        for var in net.variable:
            if var.type == "Parameter":
                declared.setdefault(var.name, list(var.shape.dim))
        networks.append(
            {
                "name": net.name,
                "batch_size": net.batch_size,
                "functions": [
                    {"name": f.name, "type": f.type, "inputs": list(f.input), "outputs": list(f.output)} for f in net.function
                ],
            }
        )
    stored = project.parameters
    parameters = []
    for name, p in stored.items():
        parameters.append({"name": name, "shape": list(p.data.shape), "size": int(p.data.size), "need_grad": p.need_grad, "stored": True})
    for name, shape in declared.items():
        if name not in stored:
            parameters.append({"name": name, "shape": shape, "size": math.prod(shape), "stored": False})
    return {
        "file": str(project.path) if project.path else None,
        "format": project.path.suffix.lower() if project.path else None,
        "parameter_sources": project.parameter_sources,
        "networks": networks,
        "parameters": parameters,
        "datasets": [
            {"name": d.name, "uri": d.uri, "batch_size": d.batch_size, "shuffle": d.shuffle, "variables": list(d.variable)}
            for d in proto.dataset
        ],
        "optimizers": [
            {
                "name": o.name,
                "network": o.network_name,
                "datasets": list(o.dataset_name),
                "solver": o.solver.type,
                "learning_rate": solver_learning_rate(o.solver),
                "multipliers": multipliers(o),
            }
            for o in proto.optimizer
        ],
        "monitors": [{"name": m.name, "network": m.network_name, "datasets": list(m.dataset_name)} for m in proto.monitor],
        "executors": [{"name": e.name, "network": e.network_name} for e in proto.executor],
    }


def describe(path: PathLike, parameter_files: Sequence[PathLike] = ()) -> Dict[str, Any]:
    """Summarise any project file `nnc-tl info` accepts (NNabla projects, NNC's .sdcproj, ``imagenet:NAME``)."""
    path = resolve_source(path)
    if str(path).lower().endswith(SDCPROJ_EXT):
        return describe_sdcproj(load_sdcproj(path))
    return describe_project(load_project(path, parameter_files))


def format_description(info: Dict[str, Any]) -> str:
    """The human-readable form of :func:`describe`."""
    if info["format"] == SDCPROJ_EXT:
        return format_sdcproj_description(info)
    lines = [f"{info['file']}"]
    if info["parameter_sources"]:
        lines.append(f"  parameters from: {', '.join(info['parameter_sources'])}")
    for net in info["networks"]:
        lines.append(f"network {net['name']} (batch {net['batch_size']}, {len(net['functions'])} functions)")
        for f in net["functions"]:
            lines.append(f"  {f['name']:<32} {f['type']}")
    params = info["parameters"]
    total = sum(p["size"] for p in params)
    lines.append(f"parameters: {len(params)} ({total:,} values)")
    for p in params:
        shape = "x".join(str(d) for d in p["shape"]) or "scalar"
        note = "" if p.get("stored") else "  (declared, no data)"
        lines.append(f"  {p['name']:<40} {shape:<18} {p['size']:>12,}{note}")
    for d in info["datasets"]:
        lines.append(f"dataset {d['name']}: {d['uri']} (batch {d['batch_size']}, shuffle {str(d['shuffle']).lower()})")
    for o in info["optimizers"]:
        lr = "" if o["learning_rate"] is None else f", lr {o['learning_rate']:g}"
        trainable = [name for name in o["multipliers"] if not is_statistic(name)]
        frozen = [name for name in trainable if o["multipliers"][name] == 0]
        lines.append(f"optimizer {o['name']}: network {o['network']}, {o['solver']}{lr}; {len(frozen)} of {len(trainable)} "
                     "parameters frozen (Batch Normalization's running statistics not counted: no solver trains them)")
        for name, m in o["multipliers"].items():
            note = "  (running statistic)" if is_statistic(name) else "  (frozen)" if m == 0 else ""
            lines.append(f"  {name:<40} x{m:g}{note}")
    for m in info["monitors"]:
        lines.append(f"monitor {m['name']}: network {m['network']}")
    for e in info["executors"]:
        lines.append(f"executor {e['name']}: network {e['network']}")
    return "\n".join(lines)


def describe_sdcproj(project: SdcProject) -> Dict:
    """A JSON-ready summary: networks (Units expanded, layers in the order NNC's converter gives them, each parameter
    under its converted name with the multiplier NNC trains it with and the property that sets it), datasets,
    optimizers."""
    networks = []
    for net in project.network_names():
        layers = []
        for function in expand(project, net):
            if function.layer.type in ("Comment", "Argument"):
                continue
            entry = {"name": function.name, "type": function.layer.type}
            if function.parameters:
                entry["multipliers"] = {site.short or "LRateMultiplier": site.multiplier() for site in function.parameters}
                entry["parameters"] = [site.name for site in function.parameters]
                entry["set_by"] = {site.name: _setter(site) for site in function.parameters}
            layers.append(entry)
        networks.append({"name": net, "layers": layers})
    datasets = []
    for section in project.sections():
        if re.match(r"^Dataset_\d+$", section):
            items = project.section_items(section)
            datasets.append({"name": items.get("Name", section), "uri": items.get("URI", "")})
    optimizers = [{"name": o["name"], "network": o["network"], "solver": o.get("SolverName", "")} for o in project.optimizers()]
    return {"file": str(project.path), "format": SDCPROJ_EXT, "networks": networks, "datasets": datasets, "optimizers": optimizers}


def _setter(site: ParameterSite) -> str:
    """Which property sets a parameter's multiplier (``VGG11 Convolution_3.W.LRateMultiplier``), or NNC's default."""
    found = site.deciding()
    return f"{found[0].name} {found[1]}" if found else "NNC's default"


def format_sdcproj_description(info: Dict) -> str:
    lines = [info["file"]]
    for net in info["networks"]:
        lines.append(f"network {net['name']} ({len(net['layers'])} layers)")
        for layer in net["layers"]:
            mults = "  ".join(f"{p}.LRateMultiplier={v:g}" if p != "LRateMultiplier" else f"{p}={v:g}"
                              for p, v in layer.get("multipliers", {}).items())
            names = f"  ({', '.join(layer['parameters'])})" if layer.get("parameters") else ""
            lines.append(f"  {layer['name']:<28} {layer['type']:<22} {mults}{names}".rstrip())
    for d in info["datasets"]:
        lines.append(f"dataset {d['name']}: {d['uri']}")
    for o in info["optimizers"]:
        lines.append(f"optimizer {o['name']}: network {o['network']}, {o['solver']}")
    return "\n".join(lines)
