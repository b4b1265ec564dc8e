"""python -m camcodec: the same as the camcodec command."""

import sys

from camcodec.cli import main

sys.exit(main())
