"""Quality control: metrics, the per-block QC table, overlays, the HTML report, debugging.

Owns the target registration error, blocks/qc.tsv, the red/green overlays, report.html
and the per-block debug files; the other numbers a run is judged by are computed where
they are needed (NCC in :mod:`snakestream.register.similarity`, Jacobian statistics in
:mod:`snakestream.fields.jacobian`).

May import: :mod:`snakestream.errors`, :mod:`snakestream.io`, :mod:`snakestream.grid`,
:mod:`snakestream.register`, :mod:`snakestream.fields`.
"""
