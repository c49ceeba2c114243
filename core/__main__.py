"""``python -m xptrain``: the same as the ``xptrain`` command."""

import sys

from .cli import main

if __name__ == "__main__":  # not when a spawned worker process imports it (check --jobs)
    sys.exit(main())
