"""Volumes on disk: reading, writing and chunked access, whatever the format.

Owns every file format the pipeline reads or writes for images and fields (Zarr v2/v3
and OME-Zarr, N5, HDF5, NRRD, TIFF), the spacing found in their metadata, atomic
writes, and iteration over an array's chunks. Arrays handed out are indexed (z, y, x);
spacing is µm, z, y, x.

May import: :mod:`snakestream.errors` only.
"""
