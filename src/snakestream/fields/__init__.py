"""Transforms and displacement fields: block files, stitching, warping, inverses, points.

Owns the transform ``[affine, deform]`` (a fixed point x maps to A·(x + d(x))), the
per-block files, the linear blending of blocks into one (Z, Y, X, 3) float32 field in
µm on the fixed grid and its Jacobian statistics, resampling images through it, its
inverse, carrying points between the frames, and the ITK exports.

May import: :mod:`snakestream.errors`, :mod:`snakestream.io`, :mod:`snakestream.grid`,
:mod:`snakestream.register`.
"""
