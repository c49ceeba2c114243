"""``python -m xptrain``: the same as the ``xptrain`` command."""

import sys

from .cli import main

sys.exit(main())
