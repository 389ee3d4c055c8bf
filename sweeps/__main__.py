"""python -m sweeps: the launcher behind scripts/sweep.sh (see sweeps.cli)."""
import sys

from runfolder.exit_codes import EXIT_INTERRUPTED

try:
    from .cli import main

    sys.exit(main())
except KeyboardInterrupt:  # Ctrl-C before the sweep's own handlers (sweeps.runner) are in place, e.g. in an import
    print("stopped by SIGINT", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)
