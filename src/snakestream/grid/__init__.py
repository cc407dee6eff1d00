"""Where things are: the fixed grid, the block grid, and the crops a block reads.

Owns the run's :class:`~snakestream.grid.layout.Layout` and its
:class:`~snakestream.grid.layout.BlockGrid` (fixed grid, blocks, regions, cores,
overlap, slabs and which blocks touch a slab, all computed once, in ``layout``), the
block index table on disk (``blocks``), the input volumes and masks opened from their
config entries (``inputs``), the foreground masks ``mask: auto`` computes (``automask``), the crops of each volume a block needs (``crops``), and
the coordinate geometry they share (voxel <-> µm, affines on points).

May import: :mod:`snakestream.errors`, :mod:`snakestream.io`.
"""
