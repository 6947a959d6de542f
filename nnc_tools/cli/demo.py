"""`make demo`: the transfer experiment on generated CIFAR-format data (experiments/demo.yaml), then where the report is."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from . import main as cli_main

CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "demo.yaml"


def main(argv=None) -> int:
    run_dir = (argv or sys.argv[1:] or ["demo-run"])[0]
    started = time.perf_counter()
    code = cli_main(["experiment", "transfer", "-c", str(CONFIG), "--synthetic", "-o", run_dir])
    if code == 0:
        print(f"demo finished in {time.perf_counter() - started:.0f} s; open {run_dir}/report.html")
    return code


if __name__ == "__main__":
    sys.exit(main())
