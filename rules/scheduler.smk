# How jobs run: one thread each unless a rule says otherwise, and Snakemake's scheduler
# kept to one pending wake-up timer.
import os

from snakestream.smk.scheduler_timers import coalesce_reevaluation_timers

# Numerical libraries start one thread per core unless told; a block job is one core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

# Thousands of ready block jobs make Snakemake's re-evaluation timers multiply (one
# chain per finished job, snakemake/snakemake#3804); keep one
# (src/snakestream/smk/scheduler_timers.py; SNAKESTREAM_KEEP_SNAKEMAKE_TIMERS=1 opts out).
coalesce_reevaluation_timers()
