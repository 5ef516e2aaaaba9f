"""``python -m DicomToPrintLib``: the same as the ``dicomtoprint`` command."""

import sys

from .cli import main

sys.exit(main())
