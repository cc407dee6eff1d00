"""The RnR-ExM challenge's submission format: the total transform in voxels.

The challenge's evaluator (github.com/ebesier/rnr-exm, ``challenge_eval/evaluation.py``)
reads one HDF5 dataset per pair, shape (Z, Y, X, 3) on the fixed grid, and warps the
moving labels with the *pull* convention::

    identity = np.meshgrid(np.arange(Z), np.arange(Y), np.arange(X), indexing="ij")
    warped = map_coordinates(moving, identity + disp.transpose(3, 0, 1, 2), order=0)

so ``disp[i] = (moving voxel index of fixed voxel i) - i``, z, y, x, in voxels, and it
refuses any dtype but float16. Writing it is one pass over the fixed grid, one z slab
at a time (the stored deform field read slab by slab), so the field is never held
whole in memory.
"""

import h5py
import numpy as np

from snakestream.fields.warp import field_on_region, moving_points
from snakestream.grid.geometry import physical_grid
from snakestream.io.chunks import slab_bounds

__all__ = ["voxel_displacement", "write_submission"]


def voxel_displacement(start, shape, fix_spacing, mov_spacing, affine, field=None, *,
                       fix_origin=(0, 0, 0), mov_origin=(0, 0, 0)):
    """The challenge's displacement on a region of the fixed grid.

    Parameters
    ----------
    start, shape : sequences of 3 int
        The region, fixed voxels, z, y, x.
    fix_spacing, mov_spacing : sequences of 3 float
        Voxel sizes of the fixed and moving images, µm, z, y, x.
    affine : (4, 4) array
        Fixed -> moving affine, µm.
    field : (Z, Y, X, 3) array, optional
        d on the region, µm (:func:`~snakestream.fields.warp.field_on_region`).
    fix_origin, mov_origin : sequences of 3 float
        Physical position (µm) of each image's voxel 0.

    Returns
    -------
    (Z, Y, X, 3) float32: moving voxel index minus fixed voxel index, z, y, x, voxels.
    """
    points = moving_points(start, shape, fix_spacing, affine, field,
                           fix_origin=np.asarray(fix_origin, float))
    moving_index = (points - np.asarray(mov_origin, float)) / np.asarray(mov_spacing, float)
    return (moving_index - physical_grid(start, shape, (1, 1, 1))).astype(np.float32)


def write_submission(path, name, fixed_shape, fix_spacing, mov_spacing, affine, *,
                     field=None, slab_z=16, fix_origin=(0, 0, 0), mov_origin=(0, 0, 0)):
    """Write (or replace) dataset ``name`` of the submission file ``path``.

    Parameters
    ----------
    path : str
        HDF5 file; created if missing, other pairs' datasets in it are kept.
    name : str
        The pair's dataset name, e.g. ``"pair5"``.
    fixed_shape : sequence of 3 int
        Fixed grid, voxels, z, y, x.
    fix_spacing, mov_spacing, affine, fix_origin, mov_origin
        As in :func:`voxel_displacement`.
    field : zarr array (Z, Y, X, 3), optional
        The stored deform field (``deform.zarr``, µm, with ``attrs["spacing"]``); None
        writes the affine alone.
    slab_z : int
        z thickness of the slabs written one at a time (and of the HDF5 chunks).

    Returns
    -------
    float
        The largest displacement magnitude written, voxels.
    """
    shape = tuple(int(n) for n in fixed_shape)
    chunks = (min(slab_z, shape[0]), min(256, shape[1]), min(256, shape[2]), 3)
    largest = 0.0
    with h5py.File(path, "a") as f:
        if name in f:
            del f[name]
        out = f.create_dataset(name, shape=shape + (3,), dtype=np.float16, chunks=chunks,
                               compression="gzip")
        for slab in range(-(-shape[0] // chunks[0])):
            z0, z1 = slab_bounds(shape, chunks, slab)
            start, size = (z0, 0, 0), (z1 - z0,) + shape[1:]
            d = None if field is None else field_on_region(field, start, size, fix_spacing)
            disp = voxel_displacement(start, size, fix_spacing, mov_spacing, affine, d,
                                      fix_origin=fix_origin, mov_origin=mov_origin)
            out[z0:z1] = disp.astype(np.float16)
            largest = max(largest, float(np.sqrt((disp ** 2).sum(-1)).max()))
    return largest
