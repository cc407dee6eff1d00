# The warm worker (src/snakestream/smk/worker.py): on a local run with blocks to align,
# one process imports the block job's libraries once and forks a child per block job,
# so a block job costs a small client instead of a fresh Python with numpy, SimpleITK,
# scipy and zarr (~0.4 s each). Cluster jobs run in their own processes.
# SNAKESTREAM_WARM_WORKER=0 turns it off.
from snakestream.smk import worker as _worker

_WARM = {}


def _warm_worker_wanted():
    """A local, non-touch run with the worker allowed and block jobs to run."""
    if not (BLOCKS and workflow.local_exec and not workflow.touch):
        return False
    if os.environ.get(_worker.ENV_SWITCH) == "0":
        return False
    try:
        return any(job.rule.name == "align_block" for job in workflow.dag.needrun_jobs())
    except Exception:  # an internal API of Snakemake's; assume there are
        return True


def start_warm_worker():
    """Start the worker and advertise it to this run's jobs, when it is wanted."""
    if _warm_worker_wanted():
        try:
            _WARM["proc"], _WARM["path"] = _worker.start(f"{OUT}/logs/warm_worker.log")
            os.environ[_worker.ENV_ADDRESS] = _worker.advertise(_WARM["path"])
        except OSError as err:
            print(f"snakestream: {err}; block jobs run in their own processes.",
                  file=sys.stderr)


def stop_warm_worker():
    """Stop the worker, if this run started one."""
    if _WARM:
        os.environ.pop(_worker.ENV_ADDRESS, None)
        _worker.stop(_WARM.pop("proc"), _WARM.pop("path"))
