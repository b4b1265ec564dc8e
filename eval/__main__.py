"""``python -m eval rd ...``: the harness without the camcodec console script."""

import sys

from eval.cli import main

sys.exit(main())
