"""`make demo`: the reference transfer experiment on built-in synthetic data (arrives with `nnc-tl experiment`)."""

from __future__ import annotations

import sys


def main() -> int:
    print(
        "nnc-tl demo: the scratch-vs-transfer experiment is not built yet; for now try\n"
        "  .venv/bin/nnc-tl info PROJECT.nnp      (networks, parameters, learning-rate multipliers)\n"
        "  .venv/bin/nnc-tl convert SRC DST       (.nnp <-> .nntxt/.prototxt (+ .h5) <-> .protobuf)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
