"""python -m eval.bench: the same as camcodec bench."""

import sys

from eval.bench import main

sys.exit(main())
