"""`python -m inspector.sim.mooncake`: the same command as `inspector sim mooncake`."""

import sys

from inspector.sim.mooncake.cli import main

sys.exit(main(prog="python -m inspector.sim.mooncake"))
