"""snakestream: blockwise 3D registration of large microscopy volumes.

Conventions used everywhere in this package
-------------------------------------------
* Arrays are indexed (z, y, x).
* Spacing, origins and every transform are in physical units (µm), z, y, x order.
* An affine is a 4x4 matrix mapping *fixed* physical coordinates to *moving*
  physical coordinates.
* A displacement field is a (Z, Y, X, 3) float32 array on the fixed grid, in µm.
* The full transform is ``[affine, deform]``: fixed point x maps to A @ (x + d(x)).
"""

__version__ = "0.1.0"
