"""``python -m facetransfer.sweep --config FILE`` (works without jsonargparse)."""

import sys

from .cli import main

sys.exit(main())
