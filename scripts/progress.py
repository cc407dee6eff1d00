"""How far a run is (kept for old instructions): ``snakestream progress`` does it.

    python scripts/progress.py --configfile my.yaml [--watch 30]
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from snakestream.smk.cli import script_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(script_main("progress"))
