"""``python -m devserver``: see devserver.server."""

import sys

from devserver.server import main

sys.exit(main(sys.argv[1:]))
