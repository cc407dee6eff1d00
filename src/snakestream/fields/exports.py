"""Files other tools open: ITK transforms for ANTs, ITK, BigWarp, Fiji.

ITK's resampling transforms map output (fixed) points to input (moving) points,
which is our convention, but ITK works in x, y, z. So ``itk/affine.tfm`` is the
global affine with its axes reversed, and ``itk/deform_field.nrrd`` stores
d(x) as x, y, z vectors. An ``itk::CompositeTransform`` holding
``[affine, field]`` (the field applied first) reproduces snakestream's warp.

Coordinates are physical with the volumes' origins: the affine maps fixed points
(the fixed image's origin included) to moving points (the moving origin included),
and the field image's 'space origin' is the fixed origin (x, y, z). ITK reads the
original NRRD / ``space: left-posterior-superior`` inputs in the same coordinates,
so ITK or ANTs applied to the original files gives snakestream's result.
"""

import numpy as np
import SimpleITK as sitk

from snakestream.fields.transform import apply_transform
from snakestream.grid.geometry import physical_grid
from snakestream.io.zarr_store import grid_origin
from snakestream.register.sitk_transforms import affine_to_sitk


def write_itk_affine(path, affine):
    """Write a 4x4 z,y,x affine (fixed -> moving, µm) as an ITK ``AffineTransform`` file."""
    sitk.WriteTransform(affine_to_sitk(affine), str(path))


def nrrd_vector_header(shape, spacing, origin=(0.0, 0.0, 0.0), dtype="float", encoding="raw"):
    """NRRD header text for a (Z, Y, X, 3) field stored as x,y,z vectors.

    `spacing` and `origin` (voxel 0's position) are µm, z, y, x; written x, y, z.
    `encoding` is NRRD's: ``raw`` or ``gzip``.
    """
    sx, sy, sz = np.asarray(spacing, float)[::-1]
    ox, oy, oz = (repr(float(v)) for v in np.asarray(origin, float)[::-1])
    z, y, x = shape
    return ("NRRD0004\n"
            f"type: {dtype}\ndimension: 4\nspace dimension: 3\n"
            f"sizes: 3 {x} {y} {z}\n"
            f"space directions: none ({sx},0,0) (0,{sy},0) (0,0,{sz})\n"
            f"kinds: vector domain domain domain\nendian: little\nencoding: {encoding}\n"
            f"space origin: ({ox},{oy},{oz})\nspace units: \"microns\" \"microns\" \"microns\"\n")


def write_itk_field(path, field, chunk_z=16, add_affine=None, *, step=(1, 1, 1),
                    compress=True):
    """Stream a displacement field to an NRRD displacement image for ITK.

    Parameters
    ----------
    path : str
        ``.nrrd`` (one file) or ``.nhdr`` (header, with the data in ``.raw`` /
        ``.raw.gz`` beside it).
    field : zarr array (Z, Y, X, 3)
        Displacements d, µm, z, y, x vectors, with ``attrs["spacing"]`` and
        ``attrs["origin"]`` (µm; the image's 'space origin').
    chunk_z : int
        z planes of the output held in memory at a time.
    add_affine : (4, 4) array, optional
        With it the total displacement ``A @ (x + d(x)) - x`` is written instead
        (one field holding the whole transform).
    step : sequence of 3 int
        Write every ``step``-th voxel of the field per axis (z, y, x): the image's
        spacing is the field's times ``step``, its origin the field's. ITK
        interpolates it linearly, as snakestream does the stored field.
    compress : bool
        gzip the data (NRRD ``encoding: gzip``), streamed chunk by chunk.

    Returns
    -------
    tuple of int
        The written image's shape (z, y, x).

    Vectors are written in x, y, z order, as ITK expects.
    """
    import gzip

    step = tuple(int(s) for s in step)
    spacing, origin = np.asarray(field.attrs["spacing"], float), grid_origin(field.attrs)
    shape = tuple(-(-n // s) for n, s in zip(field.shape[:3], step))
    out_spacing = spacing * np.asarray(step)
    header = nrrd_vector_header(shape, out_spacing, origin,
                                encoding="gzip" if compress else "raw")
    detached = str(path).endswith(".nhdr")
    data_path = str(path)[:-5] + (".raw.gz" if compress else ".raw") if detached else None
    with open(path, "wb") as head:
        if detached:
            head.write((header + f"data file: {data_path.split('/')[-1]}\n\n").encode())
        else:
            head.write((header + "\n").encode())
        raw = open(data_path, "wb") if detached else head
        try:
            out = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=4) if compress else raw
            for k0 in range(0, shape[0], chunk_z):
                z0, z1 = k0 * step[0], min((k0 + chunk_z) * step[0], field.shape[0])
                block = np.asarray(field[z0:z1:step[0], ::step[1], ::step[2]], dtype=np.float64)
                if add_affine is not None:
                    x = physical_grid((k0, 0, 0), block.shape[:3], out_spacing, origin=origin)
                    block = apply_transform(add_affine, x, block) - x
                out.write(np.ascontiguousarray(block[..., ::-1], dtype="<f4").tobytes())
            if compress:
                out.close()
        finally:
            if detached:
                raw.close()
    return shape
