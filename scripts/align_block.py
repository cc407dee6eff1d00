"""Rule align_block: one block's affine + deformable registration -> its own small file.

The rule's shell command passes the job's threads, input table and affine, output,
log, and its settings as JSON (rules/common.smk's block_job).
Until it knows whether a warm worker (snakestream.smk.worker, local runs) takes the job,
this script imports the standard library only; without a worker it runs the job itself.
"""
import json
import sys

from snakestream.smk import worker

TASK = "snakestream.smk.blockjob:run"

threads, table, affine, output, log, settings = sys.argv[1:7]
snakemake = worker.Job(json.loads(settings), rule="align_block", threads=int(threads),
                       input={"table": table, "affine": affine}, output=[output], log=[log])
sys.exit(worker.run_here_or_in_worker(TASK, snakemake))
