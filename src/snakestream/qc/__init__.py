"""Quality control: metrics, the per-block QC table, overlays, the HTML report, debugging.

Owns the numbers a user judges a run by (NCC, TRE, Jacobian determinant statistics),
blocks/qc.tsv, the red/green overlays, report.html and the per-block debug files.

May import: :mod:`snakestream.errors`, :mod:`snakestream.io`, :mod:`snakestream.grid`,
:mod:`snakestream.register`, :mod:`snakestream.fields`.
"""
