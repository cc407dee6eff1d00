"""Volumes on disk: reading, writing and chunked access, whatever the format.

Owns every file format the pipeline reads or writes for images and fields (Zarr v2/v3
and OME-Zarr, N5, HDF5, NRRD, TIFF), the spacing found in their metadata, atomic
writes, and iteration over an array's chunks. Arrays handed out are indexed (z, y, x);
spacing is µm, z, y, x. Modules: :mod:`~snakestream.io.volumes` (the :class:`Volume`
handle, ``open_volume``, ``write_volume``, format dispatch), one module per format
(:mod:`~snakestream.io.zarr_store` incl. ``create_zarr``/``open_zarr_array`` for
outputs, :mod:`~snakestream.io.n5`, :mod:`~snakestream.io.hdf5`,
:mod:`~snakestream.io.nrrd_format`, :mod:`~snakestream.io.tiff`),
:mod:`~snakestream.io.ngff` (OME-Zarr image outputs and pyramids),
:mod:`~snakestream.io.metadata` (spacing, OME-Zarr axes and channel labels in metadata,
units), :mod:`~snakestream.io.selection` (one 3-D volume out of an array with time and
channel axes: the ``channel``/``timepoint`` of a volume entry),
:mod:`~snakestream.io.datasets` (which dataset of a file, what an opener returns),
:mod:`~snakestream.io.tensorstore_arrays` (how N5 and Zarr chunks are read and N5
written through tensorstore),
:mod:`~snakestream.io.downsample` (block means), :mod:`~snakestream.io.pyramids`
(the levels of a multiscale group, and reading the coarsest one a stage can use),
:mod:`~snakestream.io.atomic`
(atomic writes) and :mod:`~snakestream.io.chunks` (chunk grids). Import names from
these modules; the package re-exports nothing.

May import: :mod:`snakestream.errors` only.
"""
