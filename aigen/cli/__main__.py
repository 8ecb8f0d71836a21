"""`python -m aigen.cli`, the same as the `aigen` command."""

import sys

from . import main

sys.exit(main())
