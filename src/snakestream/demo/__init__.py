"""Generated demo pairs with known truth, for the demo, the tests and the benchmarks.

Owns the analytic scene (nuclei-like blobs in a tissue), its known transform and the
files it is written to, in memory (:mod:`~snakestream.demo.scene`) or slab by slab
(:mod:`~snakestream.demo.large`). ``python -m snakestream.demo OUT_DIR`` writes one.

May import: :mod:`snakestream.errors`, :mod:`snakestream.io`, :mod:`snakestream.grid`,
:mod:`snakestream.register`, :mod:`snakestream.fields`, :mod:`snakestream.qc`.
"""
