"""`python -m study.run`: run a study (a search space) through Ray Tune, then build its report.

The command line lives in study.sweep.cli; this module is its stable entry point.
"""
import sys

from study.sweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
