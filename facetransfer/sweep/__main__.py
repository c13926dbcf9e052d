"""``python -m facetransfer.sweep --config FILE``: the same as ``facetransfer sweep``."""

import sys

from ..cli.sweep import main

sys.exit(main())
