"""`make bench`: run the benchmarks (or those named: `python -m benchmarks training project_io`), write
benchmarks/results/<name>.json and machine.json, and print (and write to benchmarks/results/report.md) markdown tables
that state the machine."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

logging.getLogger("nnabla").setLevel(logging.WARNING)

from . import data_pipeline, imagenet, project_io, training  # noqa: E402
from .measure import describe, machine  # noqa: E402

BENCHMARKS = {"project_io": project_io, "data_pipeline": data_pipeline, "training": training, "imagenet": imagenet}
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv=None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {', '.join(unknown)} (have: {', '.join(BENCHMARKS)})", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    work = Path("bench-results")
    about = machine()
    (RESULTS / "machine.json").write_text(json.dumps(about, indent=2) + "\n")
    results = {}
    for name in names:
        print(f"running {name} …", file=sys.stderr, flush=True)
        results[name] = BENCHMARKS[name].run(work / name)
        (RESULTS / f"{name}.json").write_text(json.dumps(dict(results[name], machine=about), indent=2) + "\n")
    report = [f"Machine: {describe(about)}", ""]
    for name, result in results.items():
        report += [BENCHMARKS[name].table(result), ""]
    if "training" in results and "data_pipeline" in results:
        fastest = max(r["img_s"] for r in results["training"]["runs"])
        loader = results["data_pipeline"]["batch_assembly_img_s"]
        report.append(f"Loader vs fastest training: {loader:,.0f} / {fastest:.1f} img/s = **{loader / fastest:,.0f}×**")
    text = "\n".join(report).rstrip() + "\n"
    (RESULTS / "report.md").write_text(text)
    print(text)
    print(f"wrote {RESULTS}/*.json and report.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
