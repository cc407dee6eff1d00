"""Where things are: the fixed grid, the block grid, and the crops a block reads.

Owns the run's :class:`~snakestream.grid.layout.Layout` (fixed grid, blocks, regions,
cores, overlap, slabs and which blocks touch a slab, all computed once), the block
index table on disk, the crops of each volume a block needs, and the coordinate
geometry they share (voxel <-> µm, affines on points).

May import: :mod:`snakestream.errors`, :mod:`snakestream.io`.
"""
