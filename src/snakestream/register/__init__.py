"""Registration of in-memory images: bigstream-style steps and the engines that run them.

Owns the step dictionaries (bigstream's keys, checked key by key), the SimpleITK steps,
the sparse B-spline engine, the feature (ransac) and search (random) steps, image
similarity (NCC), the conversion of our z, y, x transforms to SimpleITK's, and the
two stages built on them: the global alignment of the downsampled images and the
alignment of one block on top of it. Images are :class:`~snakestream.register.align.Image`
records (z, y, x array, spacing and origin in µm).

May import: :mod:`snakestream.errors`, :mod:`snakestream.io`, :mod:`snakestream.grid`.
"""
