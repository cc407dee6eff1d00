"""Which block covers a fixed voxel or point, and the command to re-run or inspect it.

    python scripts/which_block.py --configfile my.yaml --voxel 40 512 300
    python scripts/which_block.py --configfile my.yaml --um 16.0 83.2 48.75
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from snakestream.grid.blocks import block_relpath, read_table  # noqa: E402
from snakestream.config import load  # noqa: E402
from snakestream.grid.layout import Layout  # noqa: E402
from snakestream.grid.locate import blocks_at, voxel_of  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", required=True)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--voxel", nargs=3, type=int, metavar=("Z", "Y", "X"))
    where.add_argument("--um", nargs=3, type=float, metavar=("Z", "Y", "X"))
    args = parser.parse_args(argv)
    cfg = load(args.configfile)
    out = cfg["output"].rstrip("/")
    if args.voxel:
        voxel = args.voxel
    else:
        layout = Layout.from_config(cfg)
        voxel = voxel_of(args.um, layout.spacing, origin=layout.origin).tolist()
    hits = blocks_at(read_table(f"{out}/blocks/table.tsv"), voxel)
    if hits.empty:
        sys.exit(f"voxel {voxel} is outside the fixed image")
    for _, row in hits.iterrows():
        role = "core" if row["core"] else "overlap"
        print(f"{row['id']}\t{role}\taligned={bool(row['aligned'])}\t"
              f"{out}/blocks/{block_relpath(row['id'])}")
    bid = hits.iloc[0]["id"]
    print(f"# re-run:  snakemake {out}/blocks/{block_relpath(bid)} --forcerun align_block "
          f"--cores 1 --configfile {args.configfile}")
    print(f"# inspect: snakemake {out}/debug/{bid} --cores 1 --configfile {args.configfile}")


if __name__ == "__main__":
    main()
