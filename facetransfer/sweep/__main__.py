"""``python -m facetransfer.sweep --config FILE``: the same as ``facetransfer sweep``."""

import sys

from .cli import main

sys.exit(main())
