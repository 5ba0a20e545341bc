"""``python -m infogap ...`` is the ``infogap`` console script."""
import sys

from infogap.cli import main

if __name__ == "__main__":
    sys.exit(main())
