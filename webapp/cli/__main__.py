"""``python -m webapp.cli``: the same as the ``flowbridge`` command."""

import sys

from . import main

sys.exit(main())
