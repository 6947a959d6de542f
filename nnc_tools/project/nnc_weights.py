"""NNC's "Open in EDIT Tab with Weight" from the command line: an ``.sdcproj`` pointed at a trained project's parameters.

How NNC reads them (its runner, ``nnabla_console.callback.get_info_from_sdcproj``, and its converter): a layer's
``W.File`` (or a Unit's ``<Layer>.W.File`` override, the outermost that exists deciding, as for multipliers) holds
``<job id>/<source parameter name, '/' written '~'>``; ``create_prototxt -p`` turns each into a ``file,parameter`` row;
the runner maps the job id to that job's folder in the project's results (``.../results/<job id>``), loads its
``results.nnp`` and copies each named parameter in. So the weights must sit as ``results.nnp`` in a folder named by
the job id: a ``FROM.nnp`` that already is NNC's ``results/<job id>/results.nnp`` is used where it is; any other is
copied to ``<output stem>.weights/<job id>/results.nnp`` (or ``--job-dir``), to be put into the NNC project's
``results`` folder."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..errors import NncToolsError, first_few
from ..fileio import PathLike, file_digest
from ..formats.naming import is_statistic, repeat_expansions
from ..formats.nnc_graph import ParameterSite, expand
from ..formats.sdc_files import file_keys
from ..formats.sdcproj import SdcProject

# A job id as NNC's runner reads it from a reference (``<job id>/<parameter>``) and finds its folder in the results.
JOB_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass
class WeightAssignment:
    job_id: str
    results: Path  # where NNC must find the weights: <job folder>/results.nnp
    copy_from: Optional[Path]  # the file to copy there (None: it is there already)
    assigned: List[Tuple[str, str]] = field(default_factory=list)  # (parameter, File value)
    left: List[str] = field(default_factory=list)  # parameters FROM.nnp has no values for: left to their initializer
    sites: List[ParameterSite] = field(default_factory=list)
    # left parameters inside a Repeat block that FROM.nnp holds only under the loader's names (``Conv[0]/conv/W`` …)
    expanded: Dict[str, List[str]] = field(default_factory=dict)


def assign_weights(sdc: SdcProject, weights: PathLike, output: PathLike, job_dir: Optional[PathLike] = None) -> WeightAssignment:
    """Which parameter of every network gets which reference, and where the weights must be for NNC."""
    from ..formats.nnp import load_project  # protobuf and h5py only when weights are asked for

    weights = Path(weights)
    source = load_project(weights).parameters
    if job_dir is not None:
        results, copy_from = Path(job_dir) / "results.nnp", weights
    elif weights.name == "results.nnp" and weights.parent.parent.name == "results":
        results, copy_from = weights, None  # already in an NNC project's results: its folder's name is the job id
    else:
        digest = file_digest(weights)[:12]
        results, copy_from = Path(output).with_suffix(".weights") / f"nnctl_{digest}" / "results.nnp", weights
    job_id = results.parent.name
    if not JOB_ID.fullmatch(job_id) or job_id in (".", "..") or (job_dir is not None and ".." in Path(job_dir).parts):
        raise NncToolsError(results.parent, f"{job_id!r} is no folder name NNC can take as a job id (letters, digits, "
                            "'_', '-', '.'; it is written into every *.File reference)")
    assignment = WeightAssignment(job_id, results, copy_from)
    # every layer of every network that holds a parameter, with the Unit layers calling it there: NNC's converter
    # refuses a project where layers sharing a parameter (in one network or across them) reference different files
    sites: List[ParameterSite] = [site for network in sdc.network_names() for f in expand(sdc, network) for site in f.parameters]
    for name in dict.fromkeys(site.name for site in sites):
        if name in source:
            assignment.assigned.append((name, f"{job_id}/{name.replace('/', '~')}"))
        else:
            assignment.left.append(name)
            forms = repeat_expansions(name, source)
            if forms:
                assignment.expanded[name] = forms
    if not assignment.assigned:
        raise NncToolsError(weights, f"shares no parameter name with {sdc.path.name}: weights of another network? "
                            f"(it has {', '.join(list(source)[:3])}; the project wants {', '.join(assignment.left[:3])})")
    assignment.sites = sites
    return assignment


def write_references(sdc: SdcProject, assignment: WeightAssignment) -> List[Tuple[str, str, str]]:
    """Set the references: each on the property NNC reads for it, unless that property also decides a parameter that
    must get another reference (a Unit network called twice with separate parameters): then on its outermost Unit.
    Returns (layer property, old, new) for the table."""
    chosen = dict(assignment.assigned)
    groups: Dict[Tuple[str, str], List[ParameterSite]] = {}
    for site in assignment.sites:
        keys = file_keys(site)
        layer, key = next(((lay, k) for lay, k in keys if k in lay.properties), keys[0])
        groups.setdefault((layer.section, key), []).append(site)
    edits = {}
    for group in groups.values():
        wanted = [s for s in group if s.name in chosen]
        values = {chosen.get(s.name) for s in group}
        for site in wanted:
            keys = file_keys(site)
            layer, key = next(((lay, k) for lay, k in keys if k in lay.properties), keys[0]) if len(values) == 1 else keys[0]
            old = layer.properties.get(key, "")
            if old != chosen[site.name]:
                sdc.set_property(layer, key, chosen[site.name])
            edits[(layer.section, key)] = (f"{layer.network}:{layer.name} {key}", old, chosen[site.name])
    return list(edits.values())


def refuse_frozen_without_weights(sdc: SdcProject, assignment: WeightAssignment, weights: PathLike) -> None:
    """A parameter the project trains at multiplier 0 (Batch Normalization's statistics aside) that FROM.nnp gives no
    weights would stay at its random initial value for the whole run: one line naming them, unless the caller allows
    it. A Repeat block's parameters that FROM.nnp holds only as the loader's per-repetition names are said so: an NNC
    weight reference names one parameter and cannot give each repetition its own."""
    left = set(assignment.left)
    frozen = list(dict.fromkeys(s.name for network in sdc.network_names() for f in expand(sdc, network)
                                for s in f.parameters if s.name in left and not is_statistic(s.name) and s.multiplier() == 0))
    if not frozen:
        return
    shown = first_few(frozen)
    repeat = [n for n in frozen if n in assignment.expanded]
    why = (f"; {Path(weights).name} holds {repeat[0]} only as {', '.join(assignment.expanded[repeat[0]][:2])}"
           f"{' ...' if len(assignment.expanded[repeat[0]]) > 2 else ''} (NNabla's loader names each repetition of a "
           "Repeat block), and an NNC weight reference names one parameter" if repeat else "")
    raise NncToolsError(weights, f"gives no weights to {len(frozen)} parameters the project freezes ({shown}): they would "
                        f"train frozen at their random initial values{why}; pass --allow-frozen-initial to write it "
                        "anyway")
