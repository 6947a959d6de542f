"""Run every benchmark, print the numbers and write them to bench-results/results.json."""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from pathlib import Path

logging.getLogger("nnabla").setLevel(logging.WARNING)

from . import data_pipeline, project_io, training  # noqa: E402

BENCHMARKS = [project_io, data_pipeline, training]


def main() -> int:
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    results = {}
    for module in BENCHMARKS:
        name = module.__name__.rsplit(".", 1)[-1]
        results[name] = module.run(out / name)
        for key, value in results[name].items():
            print(f"{name}.{key}: {value}")
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
