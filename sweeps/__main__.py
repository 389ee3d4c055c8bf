"""python -m sweeps: the launcher behind scripts/sweep.sh (see sweeps.cli)."""
import sys

from .cli import main

sys.exit(main())
