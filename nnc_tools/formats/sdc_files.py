"""NNC's weight references in an ``.sdcproj``: a layer's ``W.File`` (any ``<param>.File``, or a Unit's
``<Layer>.W.File`` override, the outermost that exists deciding, as for multipliers) holds ``<job id>/<parameter name,
'/' written '~'>``, and NNC's runner loads that parameter from ``results.nnp`` in the job's folder of the project's
results (``results/<job id>/``). ``nnc-tl apply-freeze --weights`` writes such references and puts the weights in
``<OUT stem>.weights/<job id>/`` for the user to move there; both folders are looked in."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from .nnc_graph import ParameterSite, expand
from .sdcproj import MULTIPLIER_SUFFIX, Layer, SdcProject

FILE_SUFFIX = ".File"
log = logging.getLogger(__name__)


def file_keys(site: ParameterSite) -> List[Tuple[Layer, str]]:
    """The properties that may hold a parameter's weight reference, outermost first (those of its multiplier, ``.File``)."""
    return [(layer, key[: -len(MULTIPLIER_SUFFIX)] + FILE_SUFFIX if key.endswith(MULTIPLIER_SUFFIX) else "File")
            for layer, key in site.keys]


def weight_references(sdc: SdcProject) -> Dict[str, Tuple[str, str]]:
    """Each parameter that references weights: (job id, the parameter's name in that job's ``results.nnp``)."""
    out: Dict[str, Tuple[str, str]] = {}
    seen = set()
    for network in sdc.network_names():
        for f in expand(sdc, network):
            for site in f.parameters:
                if site.name in seen:
                    continue
                seen.add(site.name)
                value = next((layer.properties[key] for layer, key in file_keys(site) if key in layer.properties), "")
                job, slash, name = value.strip().partition("/")
                if job and slash and name:
                    out[site.name] = (job, name.replace("~", "/"))
    return out


def job_results(project: Path, job: str) -> Optional[Path]:
    """Where a job's ``results.nnp`` is: NNC's ``results/<job>/`` beside the project, or ``<stem>.weights/<job>/``."""
    for folder in (project.parent / "results" / job, project.with_suffix(".weights") / job):
        if (folder / "results.nnp").is_file():
            return folder / "results.nnp"
    return None


def compiled_with_weights(path: Path, load: Callable[[Path], "OrderedDict"]):
    """An ``.sdcproj`` compiled as NNC's converter would, with the weights its references name where the job's
    ``results.nnp`` is found (``load``: a project file's parameters): (proto, parameters, the files read). A job or a
    parameter not found is a warning (those start from their initializers); a weight of another shape is refused."""
    from .parameters import check_parameter_shapes
    from .sdc_compile import compile_sdcproj
    from .sdcproj import load_sdcproj

    sdc = load_sdcproj(path)
    proto = compile_sdcproj(sdc)
    by_job: Dict[str, List[Tuple[str, str]]] = {}
    for name, (job, source) in weight_references(sdc).items():
        by_job.setdefault(job, []).append((name, source))
    params, sources = OrderedDict(), []
    for job, wanted in by_job.items():
        results = job_results(path, job)
        if results is None:
            log.warning(f"{path.name}: {len(wanted)} parameters reference NNC job {job}, whose results.nnp is in neither "
                        f"results/{job}/ nor {path.with_suffix('.weights').name}/{job}/ beside it: they start from their "
                        "initializers")
            continue
        given = load(results)
        missing = [source for _, source in wanted if source not in given]
        if missing:
            log.warning(f"{results}: has no {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} "
                        f"({len(missing)} parameters {path.name} references): they start from their initializers")
        loaded = OrderedDict((name, given[source]) for name, source in wanted if source in given)
        check_parameter_shapes(proto, loaded, results, path)
        params.update(loaded)
        sources.append(str(results))
    return proto, params, sources
