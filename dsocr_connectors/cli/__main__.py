import sys

from dsocr_connectors.cli import main

sys.exit(main())
