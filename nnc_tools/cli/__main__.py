"""`python -m nnc_tools.cli`: the `nnc-tl` command."""

import sys

from . import main

sys.exit(main())
