"""``python -m keyturn.cli``: the same as the ``keyturn`` command."""

import sys

from keyturn.cli import main

if __name__ == "__main__":  # nothing runs on a plain import (tests import every module)
    sys.exit(main())
