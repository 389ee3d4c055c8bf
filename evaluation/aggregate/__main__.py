"""python -m evaluation.aggregate SWEEP_DIR [--results DIR] [--baseline FILE] [--separate KEY ...]"""

import argparse
import sys

from runfolder.exit_codes import EXIT_BAD_INPUT, EXIT_OK, EXIT_WRITE

from ..run_record import RunError
from . import aggregate
from .collect import RESULTS


def main(argv=None):
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python3 -m evaluation.aggregate",
                                description="Tables (markdown, CSV) and test curves (PNG) from a sweep folder: "
                                            "mean ± std over seeds per (method, weighting), Δm, Welch t-tests "
                                            "with Holm's correction. "
                                            "The runs must share every setting that changes results.")
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="runs/<sweep>, a folder of run folders")
    p.add_argument("--results", default=None, metavar="DIR",
                   help=f"where <sweep>.md, .csv and _curves.png go (default: SWEEP_DIR/{RESULTS})")
    p.add_argument("--baseline", default=None, metavar="FILE",
                   help="single-task baseline JSON (python3 -m evaluation.baseline); default: the sweep's own "
                        "single-task runs, if any")
    p.add_argument("--separate", nargs="+", default=(), metavar="KEY",
                   help="settings (config.json keys, e.g. lr) whose values make separate rows on purpose: a row per "
                        "(method, weighting, KEY=value ...), tested against adam + ew with the same values")
    args = p.parse_args(argv)
    try:
        paths = aggregate(args.sweep_dir, args.results, args.baseline, args.separate)
    except (RunError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as e:  # reading was checked run by run: this is the output
        print(f"error: cannot write the tables to {e.filename or args.results}: {e.strerror}; give --results a "
              f"writable folder", file=sys.stderr)
        return EXIT_WRITE
    print(paths["md"].read_text())
    print("written: " + ", ".join(str(p) for p in paths.values()))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
