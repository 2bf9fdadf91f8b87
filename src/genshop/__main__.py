"""`python -m genshop` (and `torchrun -m genshop`) runs the CLI."""

import sys

from genshop.cli import main

sys.exit(main())
