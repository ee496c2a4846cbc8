"""``python -m poso_sim``: the ``poso-sim`` command."""

import sys

from poso_sim.cli import main

if __name__ == "__main__":
    sys.exit(main())
