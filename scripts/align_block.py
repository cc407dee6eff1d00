"""Rule align_block: one block's affine + deformable registration -> its own small file.

The rule's shell command passes the job's threads and the job as JSON (worker.Job).
Until it knows whether a warm worker (snakestream.smk.worker, local runs) takes the job,
this script imports the standard library only; without a worker it runs the job itself.
"""
import json
import sys

from snakestream.smk import worker

TASK = "snakestream.smk.blockjob:run"

snakemake = worker.Job(json.loads(sys.argv[2]), threads=int(sys.argv[1]))
sys.exit(worker.run_here_or_in_worker(TASK, snakemake))
