"""``python -m infogap ...`` is the ``infogap`` console script."""
import sys

from infogap.cli import run

if __name__ == "__main__":
    sys.exit(run())
