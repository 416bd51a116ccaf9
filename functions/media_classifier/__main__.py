"""``python -m media_classifier``: see :mod:`media_classifier.cli`."""

import sys

from .cli import main

sys.exit(main())
