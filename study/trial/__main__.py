"""`python -m study.trial KEY=VALUE ... [out=DIR]`: see study.trial.cli."""
import sys

from study.trial.cli import main

sys.exit(main())
