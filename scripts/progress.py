"""How far a run is: blocks done (ok / fallback / skipped), failed, left; slabs gathered and warped.

    python scripts/progress.py --configfile my.yaml [--watch 30]
"""
import argparse
import glob
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from snakestream.fields.blockfile import load_block  # noqa: E402
from snakestream.config import load  # noqa: E402
from snakestream.errors import BlockFileError  # noqa: E402
from snakestream.grid.layout import Layout  # noqa: E402


def block_counts(out, layout):
    """Counts of block files by status, plus blocks whose job failed and blocks left.

    Blocks below the foreground threshold are never jobs: counted apart, not 'left'.
    """
    counts = {"ok": 0, "fallback": 0, "skipped": 0, "unreadable": 0}
    for path in glob.glob(f"{out}/blocks/z*/y*/*.npz"):
        try:
            counts[load_block(path)[1]["status"]] += 1
        except BlockFileError:
            counts["unreadable"] += 1
    done = sum(counts.values())
    failed = _failed_blocks(out)
    counts["failed"] = len(failed)
    counts["left"] = max(int(layout.blocks.aligned.sum()) - done, 0)
    counts["below threshold"] = int((~layout.blocks.aligned).sum())
    return counts, failed


def _failed_blocks(out):
    """Blocks whose log ends in an error and that have no file yet."""
    failed = []
    for log in glob.glob(f"{out}/logs/blocks/z*/y*/*.log"):
        bid = os.path.basename(log)[:-4]
        block = log.replace("/logs/blocks/", "/blocks/")[:-4] + ".npz"
        if not os.path.exists(block):
            with open(log) as fh:
                text = fh.read()
            if "ERROR" in text or "Traceback" in text:
                failed.append(bid)
    return sorted(failed)


def report(cfg):
    out = cfg["output"].rstrip("/")
    layout = Layout.from_config(cfg)
    lines = []
    if layout.blocks is not None:
        counts, failed = block_counts(out, layout)
        lines.append(f"blocks: {len(layout.blocks.ids)} total | " +
                     " | ".join(f"{k} {v}" for k, v in counts.items()))
        if failed:
            lines.append("failed: " + " ".join(failed[:20]) + (" ..." if len(failed) > 20 else ""))
    for stage in ("gather", "warp"):
        n = len(glob.glob(f"{out}/{stage}/slab_*.json"))
        lines.append(f"{stage}: {n} of {layout.n_slabs} slabs")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", required=True)
    parser.add_argument("--watch", type=float, default=0, help="repeat every N seconds")
    args = parser.parse_args(argv)
    cfg = load(args.configfile)
    while True:
        print(time.strftime("%H:%M:%S"), report(cfg), sep="\n", flush=True)
        if not args.watch:
            break
        time.sleep(args.watch)


if __name__ == "__main__":
    main()
