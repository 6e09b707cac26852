"""``python -m od ...``: the same command line as ``od ...`` (od.cli)."""
import sys

from od.cli import main

sys.exit(main())
