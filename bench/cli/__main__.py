"""`python -m bench.cli ...` is `optimise ...`."""

import sys

from bench.cli import main

sys.exit(main())
