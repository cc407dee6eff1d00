"""Which block covers a fixed voxel or point (kept for old instructions):
``snakestream which-block`` does it.

    python scripts/which_block.py --configfile my.yaml --voxel 40 512 300
    python scripts/which_block.py --configfile my.yaml --um 16.0 83.2 48.75
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from snakestream.smk.cli import script_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(script_main("which-block"))
