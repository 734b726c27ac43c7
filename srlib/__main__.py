"""`python -m srlib ...`: the `srlib` command (`srlib.tools.cli`)."""

import sys

from srlib.tools.cli import main

sys.exit(main())
