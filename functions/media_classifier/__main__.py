"""``python -m media_classifier``: see :mod:`media_classifier.ops.cli`."""

import sys

from media_classifier.ops.cli import main

sys.exit(main())
