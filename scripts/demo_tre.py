"""Print the demo's target registration error after each stage against the known truth.

    python scripts/demo_tre.py demo/data/truth.npz demo/results
"""
import argparse
import json
import os

import numpy as np

from snakestream.demo.scene import load_truth
from snakestream.io.zarr_store import grid_origin, open_zarr_array
from snakestream.qc.metrics import stage_tre


def results_tre(truth, results):
    """TRE (µm) of the identity, the global affine and, if present, the block stage."""
    affine = np.loadtxt(os.path.join(results, "global", "affine.mat"))
    field_path = os.path.join(results, "deform.zarr")
    if not os.path.exists(field_path):
        return stage_tre(truth.landmarks_fixed, truth.landmarks_moving, affine)
    field = open_zarr_array(field_path)
    return stage_tre(truth.landmarks_fixed, truth.landmarks_moving, affine, field[...],
                     field.attrs["spacing"], field_origin=grid_origin(field.attrs))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("truth")
    parser.add_argument("results")
    args = parser.parse_args()
    report = results_tre(load_truth(args.truth), args.results)
    for stage, t in report.items():
        print(f"TRE {stage:>7}: median {t['median']:.3f} µm, 95th percentile {t['p95']:.3f} µm "
              f"({t['n']} landmarks)")
    with open(os.path.join(args.results, "tre.json"), "w") as fh:
        json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
