"""``python -m flow_backend.cli`` is the ``flow`` command."""

import sys

from flow_backend.cli import main

sys.exit(main())
