"""`python -m inspector.sim`: the same command as `inspector sim`."""

import sys

from inspector.sim.cli import main

sys.exit(main(prog="python -m inspector.sim"))
